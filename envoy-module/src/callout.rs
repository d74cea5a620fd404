//! The callout form (`--fast-path-filter callout`): the filter is the whole authorization step.
//! It asks portcullis itself (an HTTP callout to its `listen.http_authz` port, the request's
//! headers as Envoy's HTTP ext_authz would send them) and applies the answer; an allow that rests on
//! a credential alone (`x-portcullis-reuse`) is remembered, so that on the routes the generator
//! marks fast the same bearer token or pass is let through again, with the same identity headers,
//! until the time portcullis named, without asking. No `jwt_authn`, no `ext_authz` filter.

#![forbid(unsafe_code)]

use serde::Deserialize;

use crate::filter::{PlainRequest, Request, only_bearer, only_cookie, strip_cookies};
use crate::remembered::{Held, Remembered};

/// The header portcullis names a reusable allow in (`src/http/forward.rs`).
pub const REUSE_HEADER: &str = "x-portcullis-reuse";
/// The header on every answer of portcullis's: its decision and reason (`deny token_expired`). An
/// answer without it is Envoy's own (portcullis unreachable), and refused.
pub const DECISION_HEADER: &str = "x-portcullis-decision";
/// The route metadata (namespace `portcullis`) that says what may be decided from the cache.
pub const ROUTE_KEY: &str = "fast";

/// The filter's config, as `portcullis envoy-config --fast-path-filter callout` writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The session cookie's name: it and every `<session>-...` cookie are portcullis's.
    pub session: String,
    /// The pass's cookie.
    pub pass_cookie: String,
    /// The Envoy cluster of portcullis's HTTP port.
    pub cluster: String,
    /// How long an answer may take; past it the request is refused (403, as `ext_authz`'s).
    pub timeout_ms: u64,
    /// The headers an allow sets for the upstream (identity headers, the assertion): the client's
    /// copies go first, on every request.
    pub upstream_headers: Vec<String>,
    /// The one of them that names the user, for Envoy's access log.
    pub user_header: String,
    /// At most this many remembered credentials; past it the expired go, then all.
    pub cache_entries: usize,
    #[serde(skip, default = "nothing_remembered")]
    remembered: Remembered,
}

fn nothing_remembered() -> Remembered {
    Remembered::new(0)
}

impl Settings {
    pub fn from_json(json: &[u8]) -> Result<Self, String> {
        let mut s: Self =
            serde_json::from_slice(json).map_err(|e| format!("the filter's config: {e}"))?;
        if s.cache_entries == 0 || s.timeout_ms == 0 {
            return Err("the filter's config: cache_entries and timeout_ms must be above 0".into());
        }
        s.remembered = Remembered::new(s.cache_entries);
        Ok(s)
    }

    /// How many credentials are remembered (tests).
    pub fn remembered_count(&self) -> usize {
        self.remembered.len()
    }
}

/// What a route lets the cache decide (its metadata `portcullis.fast`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fast {
    /// Every request asks portcullis.
    Ask,
    /// A bearer token in `Authorization` (the route matched only with one).
    Bearer,
    /// The pass, when there is no `Authorization` header.
    Pass,
    /// Not portcullis's to decide: the provider's back-channel logout POST to portcullis itself.
    Through,
}

impl Fast {
    pub fn of(metadata: Option<&[u8]>) -> Self {
        match metadata {
            Some(b"bearer") => Self::Bearer,
            Some(b"pass") => Self::Pass,
            Some(b"through") => Self::Through,
            _ => Self::Ask,
        }
    }
}

/// A request as the callout form reads it, beyond what the native filter reads.
pub trait Routed: Request {
    /// The matched route's `portcullis.fast` metadata.
    fn fast(&self) -> Option<Vec<u8>>;
    /// Every request header, pseudo-headers included, in order.
    fn all(&self) -> Vec<(Vec<u8>, Vec<u8>)>;
    /// `value` in the stream's dynamic metadata, namespace `portcullis`, for the access log:
    /// `asked` (who portcullis let through), `reason` (why it refused). A request let through
    /// remembered has none: writing it would cost Envoy more than the rest of the lookup.
    fn note(&mut self, key: &str, value: &str);
}

/// What the request headers lead to.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Decided (remembered, or not portcullis's): on to the upstream.
    Continue,
    /// Ask portcullis with these headers, and wait.
    Ask(Vec<(Vec<u8>, Vec<u8>)>),
}

/// Headers portcullis gets no copy of: the callout has no body, and hop-by-hop ones are Envoy's.
const NOT_ASKED: [&[u8]; 7] = [
    b"content-length",
    b"transfer-encoding",
    b"expect",
    b"te",
    b"upgrade",
    b"connection",
    b"keep-alive",
];

/// One request's headers: the client's copies of the upstream headers go; a remembered credential
/// on a route that lets it decide goes on with its headers (portcullis's cookies stripped);
/// anything else asks portcullis.
pub fn on_request_headers(s: &Settings, req: &mut impl Routed, now: u64) -> Next {
    let fast = Fast::of(req.fast().as_deref());
    if fast == Fast::Through {
        return Next::Continue;
    }
    // Envoy refuses underscore spellings (`headers_with_underscores_action` in the bootstrap).
    for name in &s.upstream_headers {
        req.remove(name);
    }
    let cookies = req.values("cookie");
    let authorization = req.values("authorization");
    let credential = if !authorization.is_empty() {
        only_bearer(&authorization)
            .filter(|_| fast == Fast::Bearer)
            .map(|_| (Held::Bearer, authorization[0].as_slice()))
    } else {
        only_cookie(&cookies, &s.pass_cookie)
            .filter(|_| fast == Fast::Pass)
            .map(|pass| (Held::Pass, pass))
    };
    if let Some(headers) = credential.and_then(|(held, c)| s.remembered.get(held, c, now)) {
        for (name, value) in headers.iter() {
            req.set(name, value);
        }
        strip_cookies(&s.session, &cookies, req);
        return Next::Continue;
    }
    let asked = req
        .all()
        .into_iter()
        .filter(|(name, _)| !NOT_ASKED.contains(&name.as_slice()))
        .collect();
    Next::Ask(asked)
}

/// What portcullis's answer leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Answered {
    /// On to the upstream; these `Set-Cookie`s go on its response.
    Allow(Vec<String>),
    /// Portcullis's answer goes to the client as it is (a login redirect, a 401, a page).
    Respond {
        status: u32,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

/// Answer headers not passed on to the client: Envoy writes its own.
const NOT_PASSED: [&str; 8] = [
    ":status",
    "content-length",
    "transfer-encoding",
    "connection",
    "date",
    "server",
    REUSE_HEADER,
    DECISION_HEADER,
];

/// The answer to the callout: its headers (`:status` among them, names lower case) and body.
pub struct Answer<'a> {
    pub headers: &'a [(String, String)],
    pub body: Vec<u8>,
}

/// Portcullis's answer (`None`: none came in time, or the callout failed: refused, fail closed).
pub fn on_answer(
    s: &Settings,
    req: &mut impl Routed,
    answer: Option<Answer>,
    now: u64,
) -> Answered {
    let Some(Answer { headers, body }) = answer else {
        return unavailable();
    };
    let Some((kind, reason)) = value(headers, DECISION_HEADER).and_then(|v| v.split_once(' '))
    else {
        return unavailable();
    };
    let status = value(headers, ":status").and_then(|v| v.parse::<u32>().ok());
    match (status, kind) {
        (Some(200), "allow") => {}
        (Some(status @ 300..=599), "deny" | "redirect") => {
            req.note("reason", reason);
            return Answered::Respond {
                status,
                headers: headers
                    .iter()
                    .filter(|(n, _)| !NOT_PASSED.contains(&n.as_str()))
                    .cloned()
                    .collect(),
                body,
            };
        }
        // Anything else from portcullis is not an answer this filter understands.
        _ => return unavailable(),
    }
    let mut set = Vec::new();
    for name in &s.upstream_headers {
        if let Some(v) = value(headers, name) {
            req.set(name, v);
            set.push((name.clone(), v.to_owned()));
        }
    }
    if let Some(user) = value(headers, &s.user_header) {
        req.note("asked", user);
    }
    // The answer says the Cookie and Authorization the upstream gets: absent, none.
    let authorization = req.values("authorization");
    let sent_pass = only_cookie(&req.values("cookie"), &s.pass_cookie).map(<[u8]>::to_vec);
    for name in ["cookie", "authorization"] {
        match value(headers, name) {
            Some(v) => req.set(name, v),
            None => req.remove(name),
        }
    }
    let set_cookies: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v.clone())
        .collect();
    if let Some((held, until)) = value(headers, REUSE_HEADER).and_then(|v| v.split_once(' '))
        && let Ok(until) = until.parse::<u64>()
        && until > now
    {
        let credential = match held {
            "bearer" => {
                only_bearer(&authorization).map(|_| (Held::Bearer, authorization[0].as_slice()))
            }
            // The pass the browser holds now: the one this answer sets (none if it clears it),
            // else the one it sent.
            "pass" => match set_pass(&set_cookies, &s.pass_cookie) {
                Some(set) => set,
                None => sent_pass.as_deref(),
            }
            .map(|pass| (Held::Pass, pass)),
            _ => None,
        };
        if let Some((held, c)) = credential {
            s.remembered.put(held, c, until, set, now);
        }
    }
    Answered::Allow(set_cookies)
}

/// No answer: refused (fail closed) with the generated `ext_authz`'s `status_on_error`, 403.
pub fn unavailable() -> Answered {
    Answered::Respond {
        status: 403,
        headers: Vec::new(),
        body: Vec::new(),
    }
}

/// The one value of `name` in the answer; none when absent or repeated.
fn value<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    let mut found = headers.iter().filter(|(n, _)| n == name);
    match (found.next(), found.next()) {
        (Some((_, v)), None) => Some(v.as_str()),
        _ => None,
    }
}

/// What the answer's `Set-Cookie`s do to the pass: nothing (`None`), set it (`Some(Some)`), or
/// clear it (`Some(None)`).
fn set_pass<'c>(set_cookies: &'c [String], name: &str) -> Option<Option<&'c [u8]>> {
    set_cookies.iter().find_map(|c| {
        let pair = c.split(';').next()?;
        let (n, v) = pair.split_once('=')?;
        (n.trim() == name)
            .then(|| (!v.is_empty() && !c.contains("Max-Age=0")).then_some(v.as_bytes()))
    })
}

/// A routed request as plain data: for the tests and the fuzz target, which run without Envoy.
#[derive(Debug, Default, Clone)]
pub struct PlainRouted {
    pub plain: PlainRequest,
    /// The route's `portcullis.fast` metadata.
    pub fast: Option<String>,
    /// What `note` was told.
    pub notes: Vec<(String, String)>,
}

impl PlainRouted {
    /// `headers` after `:method`, `:path` and `:authority`.
    pub fn new(fast: Option<&str>, headers: &[(&str, &str)]) -> Self {
        let mut all = vec![(":method", "GET"), (":path", "/x"), (":authority", "h")];
        all.extend_from_slice(headers);
        Self {
            plain: PlainRequest::with(&all),
            fast: fast.map(str::to_owned),
            notes: Vec::new(),
        }
    }
}

impl Request for PlainRouted {
    fn values(&self, name: &str) -> Vec<Vec<u8>> {
        self.plain.values(name)
    }
    fn set(&mut self, name: &str, value: &str) {
        self.plain.set(name, value)
    }
    fn remove(&mut self, name: &str) {
        self.plain.remove(name)
    }
    fn add(&mut self, name: &str, value: &str) {
        self.plain.add(name, value)
    }
    fn decided(&mut self, _: Option<&str>) {}
}

impl Routed for PlainRouted {
    fn fast(&self) -> Option<Vec<u8>> {
        self.fast.as_ref().map(|f| f.as_bytes().to_vec())
    }
    fn all(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.plain
            .headers
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }
    fn note(&mut self, key: &str, value: &str) {
        self.notes.push((key.into(), value.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000;

    fn settings() -> Settings {
        Settings::from_json(
            br#"{"session": "portcullis", "pass_cookie": "portcullis-pass",
                 "cluster": "portcullis_http", "timeout_ms": 1000,
                 "upstream_headers": ["x-auth-request-user", "x-auth-request-email"],
                 "user_header": "x-auth-request-user", "cache_entries": 2}"#,
        )
        .unwrap()
    }

    fn answer(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn allow_bearer(until: u64) -> Vec<(String, String)> {
        answer(&[
            (":status", "200"),
            ("x-auth-request-user", "alice"),
            ("authorization", "Bearer t1"),
            (DECISION_HEADER, "allow bearer"),
            (REUSE_HEADER, &format!("bearer {until}")),
        ])
    }

    /// Asks for `req`, then answers `headers`.
    fn ask(s: &Settings, req: &mut PlainRouted, headers: &[(String, String)]) -> Answered {
        assert!(matches!(on_request_headers(s, req, NOW), Next::Ask(_)));
        let body = b"body".to_vec();
        on_answer(s, req, Some(Answer { headers, body }), NOW)
    }

    #[test]
    fn a_bearer_token_portcullis_allowed_is_let_through_again_until_it_said() {
        let s = settings();
        let mut first = PlainRouted::new(Some("bearer"), &[("authorization", "Bearer t1")]);
        assert_eq!(
            ask(&s, &mut first, &allow_bearer(NOW + 60)),
            Answered::Allow(Vec::new())
        );
        assert_eq!(first.plain.get("x-auth-request-user"), ["alice"]);
        assert_eq!(first.notes, [("asked".into(), "alice".into())]);
        let headers = [
            ("authorization", "Bearer t1"),
            ("x-auth-request-user", "mallory"),
            ("cookie", "portcullis=s; a=1"),
        ];
        let mut again = PlainRouted::new(Some("bearer"), &headers);
        assert_eq!(on_request_headers(&s, &mut again, NOW), Next::Continue);
        assert_eq!(again.plain.get("x-auth-request-user"), ["alice"]);
        assert_eq!(
            again.plain.get("cookie"),
            ["a=1"],
            "portcullis's cookies go"
        );
        assert!(
            again.notes.is_empty(),
            "nothing written for a remembered one"
        );
        // Not past the time portcullis named, not another token, not a route it may not decide.
        for (fast, token, now) in [
            (Some("bearer"), "Bearer t1", NOW + 60),
            (Some("bearer"), "Bearer t2", NOW),
            (None, "Bearer t1", NOW),
            (Some("pass"), "Bearer t1", NOW),
        ] {
            let mut other = PlainRouted::new(
                fast,
                &[("authorization", token), ("x-auth-request-user", "m")],
            );
            let Next::Ask(asked) = on_request_headers(&s, &mut other, now) else {
                panic!("{fast:?} {token} at {now}: let through");
            };
            assert!(
                !asked.iter().any(|(k, _)| k == b"x-auth-request-user"),
                "the client's identity header is never asked with"
            );
        }
    }

    #[test]
    fn a_pass_is_remembered_as_the_browser_holds_it_after_the_answer() {
        let s = settings();
        let allow = |set_cookie: &str| {
            answer(&[
                (":status", "200"),
                ("x-auth-request-user", "bob"),
                ("set-cookie", set_cookie),
                (DECISION_HEADER, "allow session"),
                (REUSE_HEADER, "pass 2000"),
            ])
        };
        let mut first = PlainRouted::new(
            Some("pass"),
            &[("cookie", "portcullis=s; portcullis-pass=old")],
        );
        let set = "portcullis-pass=new; Path=/; Max-Age=300; HttpOnly";
        assert_eq!(
            ask(&s, &mut first, &allow(set)),
            Answered::Allow(vec![set.to_owned()])
        );
        assert_eq!(
            first.plain.get("cookie"),
            Vec::<&str>::new(),
            "none in the answer: none"
        );
        let old = PlainRouted::new(Some("pass"), &[("cookie", "portcullis-pass=old")]);
        assert!(matches!(
            on_request_headers(&s, &mut { old }, NOW),
            Next::Ask(_)
        ));
        let mut new = PlainRouted::new(
            Some("pass"),
            &[("cookie", "portcullis=s; portcullis-pass=new")],
        );
        assert_eq!(on_request_headers(&s, &mut new, NOW), Next::Continue);
        assert_eq!(new.plain.get("x-auth-request-user"), ["bob"]);
        assert!(new.plain.get("cookie").is_empty());
        // An answer that clears the pass leaves nothing remembered for the one sent.
        let mut cleared = PlainRouted::new(Some("pass"), &[("cookie", "portcullis-pass=gone")]);
        ask(&s, &mut cleared, &allow("portcullis-pass=; Max-Age=0"));
        let mut again = PlainRouted::new(Some("pass"), &[("cookie", "portcullis-pass=gone")]);
        assert!(matches!(
            on_request_headers(&s, &mut again, NOW),
            Next::Ask(_)
        ));
        // A good pass the answer does not replace is remembered as it was sent.
        let mut kept = PlainRouted::new(Some("pass"), &[("cookie", "portcullis-pass=kept")]);
        ask(
            &s,
            &mut kept,
            &answer(&[
                (":status", "200"),
                (DECISION_HEADER, "allow session"),
                (REUSE_HEADER, "pass 2000"),
            ]),
        );
        let mut again = PlainRouted::new(Some("pass"), &[("cookie", "portcullis-pass=kept")]);
        assert_eq!(on_request_headers(&s, &mut again, NOW), Next::Continue);
    }

    #[test]
    fn refusals_go_to_the_client_and_anything_not_portcullis_s_is_refused() {
        let s = settings();
        let mut req = PlainRouted::new(None, &[("content-length", "5")]);
        let Next::Ask(asked) = on_request_headers(&s, &mut req, NOW) else {
            panic!("asked");
        };
        assert!(asked.iter().any(|(k, _)| k == b":path"));
        assert!(
            !asked.iter().any(|(k, _)| k == b"content-length"),
            "the callout has no body"
        );
        let deny = answer(&[
            (":status", "401"),
            ("www-authenticate", "Bearer"),
            ("content-length", "4"),
            (DECISION_HEADER, "deny token_expired"),
        ]);
        assert_eq!(
            on_answer(
                &s,
                &mut req,
                Some(Answer {
                    headers: &deny,
                    body: b"body".to_vec()
                }),
                NOW
            ),
            Answered::Respond {
                status: 401,
                headers: vec![("www-authenticate".into(), "Bearer".into())],
                body: b"body".to_vec(),
            }
        );
        assert_eq!(req.notes, [("reason".into(), "token_expired".into())]);
        let refused = unavailable();
        // Envoy's own answer when portcullis is gone, an allow that is not one, no answer at all.
        let envoys = answer(&[(":status", "503")]);
        let odd = answer(&[(":status", "204"), (DECISION_HEADER, "allow bearer")]);
        assert_eq!(
            on_answer(
                &s,
                &mut req,
                Some(Answer {
                    headers: &envoys,
                    body: Vec::new()
                }),
                NOW
            ),
            refused
        );
        assert_eq!(
            on_answer(
                &s,
                &mut req,
                Some(Answer {
                    headers: &odd,
                    body: Vec::new()
                }),
                NOW
            ),
            refused
        );
        assert_eq!(on_answer(&s, &mut req, None, NOW), refused);
        assert_eq!(s.remembered_count(), 0);
    }

    #[test]
    fn the_cache_stays_within_its_size_and_a_bad_config_is_named() {
        let s = settings();
        for (i, until) in [(1, NOW + 1), (2, NOW + 60), (3, NOW + 60), (4, NOW + 60)] {
            let mut req = PlainRouted::new(
                Some("bearer"),
                &[("authorization", &format!("Bearer t{i}"))],
            );
            ask(&s, &mut req, &allow_bearer(until));
            assert!(s.remembered_count() <= 2);
        }
        assert!(
            Settings::from_json(b"{}")
                .unwrap_err()
                .contains("the filter's config")
        );
        let zero = br#"{"session": "p", "pass_cookie": "p-pass", "cluster": "c", "timeout_ms": 0,
                        "upstream_headers": [], "user_header": "u", "cache_entries": 1}"#;
        assert!(Settings::from_json(zero).is_err());
    }
}
