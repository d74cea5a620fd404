//! What the filter decides for one request, over any header map (Envoy's through `abi`, a plain
//! one in the tests).

#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The filter's config, as `portcullis envoy-config --fast-path-filter native` writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The session cookie's name: it and every `<session>-...` cookie are portcullis's.
    pub session: String,
    /// The pass's cookie, where `jwt_authn` reads the pass from.
    pub pass_cookie: String,
    /// The pass's issuer: a verified JWT of this issuer came from the cookie, any other from
    /// `Authorization`.
    pub pass_issuer: String,
    /// The header `jwt_authn` sets (`claim_to_headers`, the `iss` claim) when it verified a JWT;
    /// the client's copies are removed before `jwt_authn` runs.
    pub verified_header: String,
    /// The longest life (`exp - iat`) portcullis accepts, in seconds.
    pub max_lifetime: u64,
    pub user_claim: String,
    pub groups_claim: String,
    pub user_header: String,
    pub email_header: String,
    pub groups_header: String,
    /// The claims read from a token: the ones below and the two configured ones.
    #[serde(skip)]
    wanted: Vec<String>,
}

/// The claims the filter reads whatever the config says.
const CLAIMS: [&str; 9] = [
    "iss",
    "sub",
    "exp",
    "iat",
    "nbf",
    "email",
    "email_verified",
    "user",
    "groups",
];

impl Settings {
    pub fn from_json(json: &[u8]) -> Result<Self, String> {
        let mut s: Self =
            serde_json::from_slice(json).map_err(|e| format!("the filter's config: {e}"))?;
        s.wanted = CLAIMS.iter().map(|c| (*c).to_owned()).collect();
        for claim in [s.user_claim.clone(), s.groups_claim.clone()] {
            if !s.wanted.contains(&claim) {
                s.wanted.push(claim);
            }
        }
        Ok(s)
    }
}

/// The request as the filter reads and changes it.
pub trait Request {
    /// Every value of header `name` (lower case), in order.
    fn values(&self, name: &str) -> Vec<Vec<u8>>;
    /// Header `name` set to `value`, replacing every value it had.
    fn set(&mut self, name: &str, value: &str);
    fn remove(&mut self, name: &str);
    fn add(&mut self, name: &str, value: &str);
    /// The request marked decided, for `ext_authz`'s `filter_enabled_metadata` and access logs.
    fn decided(&mut self, user: Option<&str>);
}

/// One request's request headers. Whatever is not certain leaves the request to `ext_authz`, which
/// answers it as it does today: no verified JWT, more than one, a token that cannot be found again
/// exactly where `jwt_authn` read it, or one outside portcullis's rules.
pub fn on_request_headers(s: &Settings, req: &mut impl Request) {
    let verified = req.values(&s.verified_header);
    if verified.is_empty() {
        return;
    }
    // Only this filter reads it: never the upstream's.
    req.remove(&s.verified_header);
    let [issuer] = verified.as_slice() else {
        return;
    };
    let from_pass = issuer.as_slice() == s.pass_issuer.as_bytes();
    let cookies = req.values("cookie");
    let authorization;
    let token = if from_pass {
        only_cookie(&cookies, &s.pass_cookie)
    } else {
        authorization = req.values("authorization");
        only_bearer(&authorization)
    };
    let Some(json) = token.and_then(payload) else {
        return;
    };
    let Some(claims) = read_claims(s, &json) else {
        return;
    };
    if usable(claims.get("iss")).map(str::as_bytes) != Some(issuer.as_slice())
        || !acceptable(&claims, s.max_lifetime)
    {
        return;
    }
    let user = if from_pass {
        pass_identity(s, &claims, req)
    } else {
        bearer_identity(s, &claims, req)
    };
    strip_cookies(&s.session, &cookies, req);
    req.decided(user.as_deref());
}

/// The `;`-separated pieces of a Cookie header.
fn pieces(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    split(b';', header)
}

/// `bytes` split at every `sep`, found with memchr: a session cookie is kilobytes, and a byte-by-byte
/// split over it cost Envoy 19 000 instructions a request (BENCHMARKS.md).
fn split(sep: u8, bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(sep, bytes)
        .chain(std::iter::once(bytes.len()))
        .map(move |end| {
            let part = &bytes[start..end];
            start = end + 1;
            part
        })
}

/// The one cookie named `name` among every Cookie header; none when it is missing, repeated or
/// quoted (Envoy would read the first, or unquote it: not worth being clever).
pub(crate) fn only_cookie<'a>(headers: &'a [Vec<u8>], name: &str) -> Option<&'a [u8]> {
    let mut found = None;
    for piece in headers.iter().flat_map(|h| pieces(h)) {
        let piece = piece.trim_ascii_start();
        let Some(value) = piece
            .strip_prefix(name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
        else {
            continue;
        };
        if found.is_some() {
            return None;
        }
        found = Some(value.trim_ascii_end());
    }
    found.filter(|v| !v.starts_with(b"\""))
}

/// The token of the one `Authorization: Bearer <token>` header.
pub(crate) fn only_bearer(headers: &[Vec<u8>]) -> Option<&[u8]> {
    let [header] = headers else {
        return None;
    };
    header.strip_prefix(b"Bearer ")
}

/// The payload (JSON) of a JWT `jwt_authn` has verified (its signature is not checked again).
/// Whatever Envoy's extraction took of the header or cookie, it starts where `token` starts, so the
/// part between the first two dots is the payload Envoy verified.
fn payload(token: &[u8]) -> Option<Vec<u8>> {
    let first = memchr::memchr(b'.', token)?;
    let rest = &token[first + 1..];
    let part = &rest[..memchr::memchr(b'.', rest)?];
    URL_SAFE_NO_PAD.decode(part).ok()
}

/// The claims the filter reads of `json`. A claim it reads named twice, which portcullis refuses
/// (RFC 8725) and Envoy reads, leaves the request to portcullis.
fn read_claims<'a, 's>(s: &'s Settings, json: &'a [u8]) -> Option<Claims<'a, 's>> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let claims = Wanted(&s.wanted, std::marker::PhantomData)
        .deserialize(&mut de)
        .ok()?;
    de.end().ok()?;
    Some(claims)
}

/// A claim's value as the filter reads it: strings borrowed from the payload where they can be.
#[derive(Debug, Clone, PartialEq)]
enum Claim<'a> {
    Str(Cow<'a, str>),
    /// A non-negative integer (a NumericDate is one).
    Int(u64),
    Bool(bool),
    /// An array's strings (other elements left out).
    Strs(Vec<Cow<'a, str>>),
    /// Anything else: a fraction, a negative number, an object, null.
    Other,
}

impl<'de> Deserialize<'de> for Claim<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ClaimVisitor)
    }
}

struct ClaimVisitor;

impl<'de> Visitor<'de> for ClaimVisitor {
    type Value = Claim<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Claim<'de>, E> {
        Ok(Claim::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Claim<'de>, E> {
        Ok(Claim::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Claim<'de>, E> {
        Ok(Claim::Int(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Claim<'de>, E> {
        Ok(u64::try_from(v).map_or(Claim::Other, Claim::Int))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Claim<'de>, E> {
        Ok(Claim::Other)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Claim<'de>, E> {
        Ok(Claim::Bool(v))
    }
    fn visit_unit<E>(self) -> Result<Claim<'de>, E> {
        Ok(Claim::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Claim<'de>, A::Error> {
        let mut strs = Vec::new();
        while let Some(item) = seq.next_element::<Claim<'de>>()? {
            if let Claim::Str(s) = item {
                strs.push(s);
            }
        }
        Ok(Claim::Strs(strs))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claim<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Claim::Other)
    }
}

/// The wanted claims of one payload, by name.
struct Claims<'a, 's> {
    names: &'s [String],
    values: Vec<Option<Claim<'a>>>,
}

impl<'a> Claims<'a, '_> {
    fn get(&self, name: &str) -> Option<&Claim<'a>> {
        let i = self.names.iter().position(|n| n == name)?;
        self.values[i].as_ref()
    }
}

/// Reads a JSON object keeping only the claims named, each at most once; skips the rest unbuilt.
struct Wanted<'a, 's>(&'s [String], std::marker::PhantomData<&'a ()>);

impl<'a, 's> DeserializeSeed<'a> for Wanted<'a, 's> {
    type Value = Claims<'a, 's>;

    fn deserialize<D: serde::Deserializer<'a>>(self, d: D) -> Result<Claims<'a, 's>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'a, 's> Visitor<'a> for Wanted<'a, 's> {
    type Value = Claims<'a, 's>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JWT payload (a JSON object)")
    }

    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Claims<'a, 's>, A::Error> {
        let mut values = vec![None; self.0.len()];
        while let Some(key) = map.next_key::<Cow<'a, str>>()? {
            match self.0.iter().position(|n| *n == key) {
                Some(i) if values[i].is_some() => {
                    return Err(A::Error::custom("a claim named twice"));
                }
                Some(i) => values[i] = Some(map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Claims {
            names: self.0,
            values,
        })
    }
}

/// A non-empty string without control characters.
fn usable<'c>(v: Option<&'c Claim>) -> Option<&'c str> {
    match v {
        Some(Claim::Str(s)) if !s.is_empty() && !s.chars().any(char::is_control) => Some(s),
        _ => None,
    }
}

/// A NumericDate as portcullis takes it (RFC 9068): whole seconds, within JSON's exact integers.
fn whole(v: Option<&Claim>) -> Option<u64> {
    match v {
        Some(Claim::Int(n)) if *n < (1 << 53) => Some(*n),
        _ => None,
    }
}

/// What portcullis checks beyond Envoy: `iat` present, whole-second dates, a bounded life, a `sub`.
fn acceptable(claims: &Claims, max_lifetime: u64) -> bool {
    let (Some(exp), Some(iat)) = (whole(claims.get("exp")), whole(claims.get("iat"))) else {
        return false;
    };
    if usable(claims.get("sub")).is_none() {
        return false;
    }
    if claims.get("nbf").is_some() && whole(claims.get("nbf")).is_none() {
        return false;
    }
    exp.saturating_sub(iat) <= max_lifetime
}

/// The pass carries the headers' values as portcullis made them.
fn pass_identity(s: &Settings, claims: &Claims, req: &mut impl Request) -> Option<String> {
    for (claim, header) in [
        ("user", &s.user_header),
        ("email", &s.email_header),
        ("groups", &s.groups_header),
    ] {
        if let Some(v) = usable(claims.get(claim)) {
            req.set(header, v);
        }
    }
    // The session let this request in; nothing the client put in Authorization was checked.
    req.remove("authorization");
    usable(claims.get("user")).map(str::to_owned)
}

/// The identity headers from a bearer token, as portcullis sets them: the user claim, else `sub`;
/// `email` unless marked unverified; the groups `%`- and `,`-encoded and joined.
fn bearer_identity(s: &Settings, claims: &Claims, req: &mut impl Request) -> Option<String> {
    let email = usable(claims.get("email"))
        .filter(|_| claims.get("email_verified") != Some(&Claim::Bool(false)));
    let user = if s.user_claim == "email" {
        email
    } else {
        usable(claims.get(&s.user_claim))
    }
    .or_else(|| usable(claims.get("sub")))?
    .to_owned();
    req.set(&s.user_header, &user);
    if let Some(email) = email {
        req.set(&s.email_header, email);
    }
    let groups: Vec<String> = match claims.get(&s.groups_claim) {
        Some(Claim::Str(g)) => vec![encode(g)],
        Some(Claim::Strs(gs)) => gs.iter().map(|g| encode(g)).collect(),
        _ => Vec::new(),
    };
    let joined = Claim::Str(groups.join(",").into());
    if let Some(groups) = usable(Some(&joined)) {
        req.set(&s.groups_header, groups);
    }
    Some(user)
}

fn encode(group: &str) -> String {
    group.replace('%', "%25").replace(',', "%2C")
}

/// Every Cookie header (`headers`, as the request came) without portcullis's cookies (the session,
/// its chunks, login transactions, the pass); every other cookie kept byte for byte, in one header.
pub(crate) fn strip_cookies(session: &str, headers: &[Vec<u8>], req: &mut impl Request) {
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut changed = false;
    for piece in headers.iter().flat_map(|h| pieces(h)) {
        let piece = piece.trim_ascii();
        if piece.is_empty() {
            continue;
        }
        // Read as portcullis's own jar reads it (`,` separates too, names are trimmed): a piece
        // that holds one of ours by that reading goes whole.
        let ours = split(b',', piece).any(|part| {
            memchr::memchr(b'=', part).is_some_and(|eq| is_ours(session, part[..eq].trim_ascii()))
        });
        if ours {
            changed = true;
        } else {
            kept.push(piece);
        }
    }
    if !changed {
        return;
    }
    req.remove("cookie");
    if !kept.is_empty() {
        req.add("cookie", &String::from_utf8_lossy(&kept.join(&b"; "[..])));
    }
}

fn is_ours(session: &str, name: &[u8]) -> bool {
    name.strip_prefix(session.as_bytes())
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"-"))
}

/// A request as plain data: for the tests and the fuzz target, which run without Envoy.
#[derive(Debug, Default, Clone)]
pub struct PlainRequest {
    pub headers: Vec<(String, String)>,
    /// What `decided` was told, if it was.
    pub decided: Option<Option<String>>,
}

impl PlainRequest {
    pub fn with(headers: &[(&str, &str)]) -> Self {
        Self {
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            decided: None,
        }
    }

    pub fn get(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl Request for PlainRequest {
    fn values(&self, name: &str) -> Vec<Vec<u8>> {
        self.get(name)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect()
    }
    fn set(&mut self, name: &str, value: &str) {
        self.remove(name);
        self.add(name, value);
    }
    fn remove(&mut self, name: &str) {
        self.headers.retain(|(k, _)| k != name);
    }
    fn add(&mut self, name: &str, value: &str) {
        self.headers.push((name.into(), value.into()));
    }
    fn decided(&mut self, user: Option<&str>) {
        self.decided = Some(user.map(str::to_owned));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    const PASS_ISS: &str = "https://portcullis.example/";
    const IDP: &str = "https://idp.example/";

    fn settings() -> Settings {
        Settings::from_json(
            serde_json::json!({
                "session": "portcullis",
                "pass_cookie": "portcullis-pass",
                "pass_issuer": PASS_ISS,
                "verified_header": "x-portcullis-jwt-issuer",
                "max_lifetime": 86400,
                "user_claim": "sub",
                "groups_claim": "groups",
                "user_header": "x-auth-request-user",
                "email_header": "x-auth-request-email",
                "groups_header": "x-auth-request-groups",
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    fn jwt(claims: Value) -> String {
        format!(
            "eyJhbGciOiJFZERTQSJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    /// A token of `payload` as written (for claims JSON cannot hold twice or unescaped).
    fn raw(payload: &str) -> String {
        format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(payload))
    }

    /// `token` verified by `jwt_authn` as the IdP's bearer token, decided on.
    fn decide_bearer(s: &Settings, token: &str) -> PlainRequest {
        let mut r = PlainRequest::with(&[
            ("x-portcullis-jwt-issuer", IDP),
            ("authorization", &format!("Bearer {token}")),
        ]);
        on_request_headers(s, &mut r);
        r
    }

    fn bearer_claims() -> Value {
        serde_json::json!({"iss": IDP, "sub": "u1", "iat": 1000, "exp": 1600,
            "email": "a@example.com", "groups": ["eng", "a,b%"]})
    }

    fn pass_claims() -> Value {
        serde_json::json!({"iss": PASS_ISS, "sub": "u1", "iat": 1000, "exp": 1300,
            "user": "u1", "email": "a@example.com", "groups": "eng"})
    }

    #[test]
    fn a_verified_bearer_token_sets_the_identity_headers_and_decides() {
        let token = jwt(bearer_claims());
        let mut r = PlainRequest::with(&[
            ("x-portcullis-jwt-issuer", IDP),
            ("authorization", &format!("Bearer {token}")),
            ("cookie", "a=1; portcullis=sealed; portcullis-2=x; b=2"),
        ]);
        on_request_headers(&settings(), &mut r);
        assert_eq!(r.decided, Some(Some("u1".into())));
        assert_eq!(r.get("x-auth-request-user"), ["u1"]);
        assert_eq!(r.get("x-auth-request-email"), ["a@example.com"]);
        assert_eq!(r.get("x-auth-request-groups"), ["eng,a%2Cb%25"]);
        assert_eq!(r.get("cookie"), ["a=1; b=2"]);
        assert!(r.get("x-portcullis-jwt-issuer").is_empty());
        // The bearer token goes on, as through portcullis.
        assert_eq!(r.get("authorization").len(), 1);
    }

    #[test]
    fn a_verified_pass_uses_its_own_claims_and_drops_authorization() {
        let pass = jwt(pass_claims());
        let mut r = PlainRequest::with(&[
            ("x-portcullis-jwt-issuer", PASS_ISS),
            ("authorization", "Bearer forged.x.y"),
            ("cookie", &format!("portcullis-pass={pass}; theme=dark")),
        ]);
        on_request_headers(&settings(), &mut r);
        assert_eq!(r.decided, Some(Some("u1".into())));
        assert_eq!(r.get("x-auth-request-groups"), ["eng"]);
        assert!(r.get("authorization").is_empty());
        assert_eq!(r.get("cookie"), ["theme=dark"]);
    }

    #[test]
    fn no_verified_jwt_leaves_the_request_to_ext_authz() {
        let mut r =
            PlainRequest::with(&[("authorization", &format!("Bearer {}", jwt(bearer_claims())))]);
        on_request_headers(&settings(), &mut r);
        assert_eq!(r.decided, None);
        assert!(r.get("x-auth-request-user").is_empty());
    }

    #[test]
    fn anything_uncertain_leaves_the_request_to_ext_authz_and_the_marker_goes() {
        let pass = jwt(pass_claims());
        let bearer = jwt(bearer_claims());
        let cases: Vec<Vec<(&str, String)>> = vec![
            // Two markers.
            vec![
                ("x-portcullis-jwt-issuer", IDP.into()),
                ("x-portcullis-jwt-issuer", IDP.into()),
                ("authorization", format!("Bearer {bearer}")),
            ],
            // Two passes: which one did Envoy verify?
            vec![
                ("x-portcullis-jwt-issuer", PASS_ISS.into()),
                (
                    "cookie",
                    format!("portcullis-pass={pass}; portcullis-pass={pass}"),
                ),
            ],
            // Two Authorization headers.
            vec![
                ("x-portcullis-jwt-issuer", IDP.into()),
                ("authorization", format!("Bearer {bearer}")),
                ("authorization", format!("Bearer {bearer}")),
            ],
            // A quoted pass, another scheme.
            vec![
                ("x-portcullis-jwt-issuer", PASS_ISS.into()),
                ("cookie", format!("portcullis-pass=\"{pass}\"")),
            ],
            vec![
                ("x-portcullis-jwt-issuer", IDP.into()),
                ("authorization", format!("bearer {bearer}")),
            ],
            // The marker names another issuer than the token's.
            vec![
                ("x-portcullis-jwt-issuer", "https://other.example/".into()),
                ("authorization", format!("Bearer {bearer}")),
            ],
            // A pass marker with only a bearer token.
            vec![
                ("x-portcullis-jwt-issuer", PASS_ISS.into()),
                ("authorization", format!("Bearer {}", jwt(pass_claims()))),
            ],
        ];
        for case in cases {
            let headers: Vec<(&str, &str)> = case.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut r = PlainRequest::with(&headers);
            on_request_headers(&settings(), &mut r);
            assert_eq!(r.decided, None, "{case:?}");
            assert!(r.get("x-portcullis-jwt-issuer").is_empty(), "{case:?}");
            assert!(r.get("x-auth-request-user").is_empty(), "{case:?}");
        }
    }

    /// Whatever Envoy took of the header after the prefix starts where the token starts, so the
    /// payload between the first two dots is the one it verified.
    #[test]
    fn the_payload_read_is_the_one_envoy_verified_whatever_follows_it() {
        let r = decide_bearer(&settings(), &format!("{} x", jwt(bearer_claims())));
        assert_eq!(r.decided, Some(Some("u1".into())));
    }

    #[test]
    fn a_wanted_claim_named_twice_is_left_to_portcullis_which_refuses_it() {
        let payload =
            r#"{"iss":"https://idp.example/","sub":"u1","sub":"admin","iat":1000,"exp":1600}"#;
        let r = decide_bearer(&settings(), &raw(payload));
        assert_eq!(r.decided, None);
        // Another claim named twice is not read, and changes nothing.
        let payload = r#"{"iss":"https://idp.example/","sub":"u1","aud":"a","aud":"b","iat":1000,"exp":1600}"#;
        let r = decide_bearer(&settings(), &raw(payload));
        assert_eq!(r.decided, Some(Some("u1".into())));
    }

    #[test]
    fn tokens_outside_portcullis_rules_are_left_to_ext_authz() {
        let base = bearer_claims();
        let mutations: Vec<(&str, Value)> = vec![
            ("iat", Value::Null),
            ("iat", serde_json::json!(1000.5)),
            ("exp", serde_json::json!("1600")),
            ("nbf", serde_json::json!(1.5)),
            ("sub", serde_json::json!("")),
            ("sub", serde_json::json!("a\nb")),
            ("exp", serde_json::json!(1000 + 86401)),
            ("iat", serde_json::json!(-5)),
            ("exp", serde_json::json!(9_007_199_254_740_993_u64)),
            ("exp", serde_json::json!(1600.0)),
            ("sub", serde_json::json!(["u1"])),
        ];
        for (claim, value) in mutations {
            let mut claims = base.clone();
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(claim);
            } else {
                claims[claim] = value.clone();
            }
            let r = decide_bearer(&settings(), &jwt(claims));
            assert_eq!(r.decided, None, "{claim}: {value}");
        }
    }

    #[test]
    fn escaped_strings_are_read_unescaped_and_only_string_groups_count() {
        let payload = r#"{"iss":"https:\/\/idp.example\/","sub":"u\u0031","iat":1000,"exp":1600,"email":"a\u0040example.com","groups":[1,"eng",{"x":1},null,"ops"]}"#;
        let r = decide_bearer(&settings(), &raw(payload));
        assert_eq!(r.decided, Some(Some("u1".into())));
        assert_eq!(r.get("x-auth-request-email"), ["a@example.com"]);
        assert_eq!(r.get("x-auth-request-groups"), ["eng,ops"]);
    }

    #[test]
    fn an_unverified_email_is_not_passed_and_the_user_falls_back_to_sub() {
        let mut s = settings();
        s.user_claim = "email".into();
        let mut claims = bearer_claims();
        claims["email_verified"] = Value::Bool(false);
        let r = decide_bearer(&s, &jwt(claims));
        assert_eq!(r.get("x-auth-request-user"), ["u1"]);
        assert!(r.get("x-auth-request-email").is_empty());
    }

    #[test]
    fn cookies_not_ours_are_kept_byte_for_byte_and_untouched_headers_stay() {
        let strip =
            |r: &mut PlainRequest| strip_cookies(&settings().session, &r.values("cookie"), r);
        let mut r = PlainRequest::with(&[("cookie", "a=1;b=2"), ("cookie", "portcullisx=3")]);
        strip(&mut r);
        // Nothing of ours: the headers are not rewritten.
        assert_eq!(r.get("cookie"), ["a=1;b=2", "portcullisx=3"]);
        let mut r = PlainRequest::with(&[
            ("cookie", " a=1 ; portcullis-login-abc=z;"),
            ("cookie", "portcullis=s"),
        ]);
        strip(&mut r);
        assert_eq!(r.get("cookie"), ["a=1"]);
        let mut r = PlainRequest::with(&[("cookie", "portcullis=s; portcullis-pass=p")]);
        strip(&mut r);
        assert!(r.get("cookie").is_empty());
        // Spellings portcullis's jar reads as ours go too; a piece with no `=` is no cookie.
        let mut r = PlainRequest::with(&[(
            "cookie",
            "portcullis =s; a=1, portcullis-2=x; portcullis-pass",
        )]);
        strip(&mut r);
        assert_eq!(r.get("cookie"), ["portcullis-pass"]);
    }

    #[test]
    fn a_bad_config_is_an_error_naming_it() {
        let err = Settings::from_json(b"{\"session\": 1}").unwrap_err();
        assert!(err.starts_with("the filter's config:"), "{err}");
    }
}
