//! The HTTP forward-auth adapter behind real nginx (Debian's, auth_request) running the shipped
//! deploy/nginx config, with the Auth0-shaped OpenID provider, real Chromium and the portcullis
//! binary in front of the recording upstream. Needs `scripts/setup`; run by `scripts/test`.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

struct Stack {
    op: Op,
    secret: String,
    portcullis: Portcullis,
    nginx: Nginx,
    upstream: EchoUpstream,
}

impl Stack {
    /// With the provider's access tokens living `ttl` seconds (its default when `None`).
    async fn start(ttl: Option<u64>) -> Self {
        let upstream = EchoUpstream::start().await;
        let (site_port, http_authz) = (free_port(), free_port());
        let site = format!("http://127.0.0.1:{site_port}");
        let op = Op::start(OpOptions {
            access_token_ttl: ttl,
            redirect_uris: vec![format!("{site}/authorization-code/callback")],
            post_logout_uris: vec![format!("{site}/")],
            backchannel_logout_uri: Some(format!("{site}/backchannel-logout")),
            ..OpOptions::auth0()
        })
        .await;
        // session.secure stays true (the default): Chromium keeps __Host- cookies on http://127.0.0.1.
        let secret = session_secret();
        let portcullis = Portcullis::start(&format!(
            "listen: {{http_authz: '127.0.0.1:{http_authz}', trusted_proxies: [127.0.0.1]}}\n\
             provider:\n  issuer: '{issuer}'\n  client_id: {CLIENT_ID}\n  client_secret: {CLIENT_SECRET}\n\
             \x20 audience: '{AUDIENCE}'\n  extra_auth_params: {{prompt: consent}}\n\
             bearer: [{{issuer: '{issuer}', audiences: ['{AUDIENCE}']}}]\n\
             login: {{backchannel_logout_path: /backchannel-logout}}\n\
             session: {{secret: '{secret}'}}\n\
             routes:\n\
             - {{name: health, path_prefix: /healthcheck, action: public}}\n\
             - {{name: admin, path_prefix: /admin, action: deny}}\n\
             - {{name: api, path_prefix: /api/, action: api}}\n\
             - {{name: app, path_prefix: /, action: login}}\n\
             log: {{format: json}}\n",
            issuer = op.issuer,
        ))
        .await;
        let nginx = Nginx::start(site_port, http_authz, upstream.port).await;
        Self {
            op,
            secret,
            portcullis,
            nginx,
            upstream,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.nginx.url)
    }

    /// portcullis's audit events so far (JSON lines on the `audit` target).
    fn audit_events(&self) -> Vec<Value> {
        self.portcullis
            .proc
            .stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["target"] == "audit")
            .collect()
    }

    fn port(&self) -> u16 {
        self.nginx.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// The last request under `prefix` that reached the upstream.
    fn seen(&self, prefix: &str) -> Seen {
        self.upstream.last_under(prefix)
    }
}

fn session_cookie_value(b: &mut Browser) -> Option<String> {
    let c = b.run(json!({"op": "cookies"}));
    c["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "__Host-portcullis")
        .map(|c| c["value"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx, Chromium and the OpenID provider: run scripts/test"]
async fn a_browser_signs_in_through_nginx_and_the_upstream_sees_only_portcullis_identity() {
    let s = Stack::start(None).await;
    let mut b = Browser::start();
    let deep = "/table_detail/gold/hive/core/users?tab=columns&x=%2Fy";
    let at_idp = b.goto(&s.url(deep));
    assert!(
        at_idp["url"].as_str().unwrap().starts_with(&s.op.issuer),
        "nginx's 401 became the login redirect: {at_idp}"
    );
    b.navigations();
    let back = b.login("alice", &s.nginx.url);
    assert_eq!(back["url"], s.url(deep), "back on the deep link");
    let callback = b
        .navigations()
        .into_iter()
        .find(|u| u.contains("/authorization-code/callback?"))
        .expect("the browser came back through the callback");
    assert!(
        back["text"].as_str().unwrap().contains("upstream ok"),
        "{back}"
    );
    let seen = s.seen("/table_detail/");
    assert_eq!(seen.uri, deep);
    assert_eq!(seen.all("x-auth-request-email"), ["alice@example.com"]);
    assert_eq!(seen.all("x-auth-request-user"), ["alice@example.com"]);
    let auth = seen.all("authorization");
    assert!(
        auth.len() == 1 && auth[0].starts_with("Bearer ey"),
        "{auth:?}"
    );
    for cookie in seen.all("cookie") {
        assert!(!cookie.contains("portcullis"), "{cookie}");
    }

    // A script's request with a session, and spoofed identity headers that never pass.
    let r = b.run(
        json!({"op": "fetch_spoofed", "url": s.url("/api/tables"), "headers": {
        "x-auth-request-email": "root@example.com", "x-auth-request-groups": "admins"}}),
    );
    assert_eq!(r["status"], 200, "{r}");
    let seen = s.seen("/api/tables");
    assert_eq!(seen.all("x-auth-request-email"), ["alice@example.com"]);
    assert!(
        seen.all("x-auth-request-groups").is_empty(),
        "alice has no groups"
    );

    let denied = b.fetch(&s.url("/admin/users"));
    assert_eq!(denied["status"], 403, "{denied}");

    // Logout goes to the provider and clears the session; the next page asks for a login again.
    let session = session_cookie_value(&mut b).expect("signed in");
    b.goto(&s.url("/logout"));
    assert_eq!(session_cookie_value(&mut b), None, "session cookie cleared");
    b.run(json!({"op": "click", "selector": "button[autofocus], button[type=submit]", "until": s.op.issuer}));
    let again = b.goto(&s.url("/after-logout"));
    assert!(
        again["url"].as_str().unwrap().starts_with(&s.op.issuer),
        "{again}"
    );

    // Each security event is one audit line, with the user where known.
    let events = s.audit_events();
    let said = |event: &str, field: &str, value: &str| {
        events
            .iter()
            .any(|e| e["event"] == event && e[field] == value)
    };
    assert!(
        said("login_succeeded", "user", "alice@example.com"),
        "{events:?}"
    );
    assert!(said("request_denied", "route", "admin"), "{events:?}");
    assert!(
        said("request_denied", "reason", "route_denied"),
        "{events:?}"
    );
    assert!(said("logout", "user", "alice@example.com"), "{events:?}");
    // No log line, audit or other, carries a token, a cookie, the code or a secret.
    let code = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code in the callback");
    let access_token = auth[0].trim_start_matches("Bearer ").to_owned();
    let logs = s.portcullis.proc.stderr();
    for (what, secret) in [
        ("the session secret", s.secret.as_str()),
        ("the client secret", CLIENT_SECRET),
        ("the session cookie", &session[..40]),
        ("the access token", &access_token[access_token.len() - 40..]),
        ("the authorization code", &code),
    ] {
        assert!(!logs.contains(secret), "{what} is in portcullis's log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx, Chromium and the OpenID provider: run scripts/test"]
async fn scripts_get_401_and_a_sign_in_link_brings_a_browser_back() {
    let s = Stack::start(None).await;
    let mut b = Browser::start();
    b.goto(&s.url("/healthcheck"));
    for path in ["/api/tables", "/"] {
        let r = b.fetch(&s.url(path));
        assert_eq!(r["status"], 401, "{path}: {r}");
        let body: Value = serde_json::from_str(r["text"].as_str().unwrap()).unwrap();
        assert_eq!(body["error"], "unauthorized", "{r}");
    }
    // ingress-nginx's auth-signin shape: /_portcullis/start?rd=<the whole URL>.
    let rd = s.url("/search?q=users&page=2");
    let link = format!(
        "/_portcullis/start?rd={}",
        url::form_urlencoded::byte_serialize(rd.as_bytes()).collect::<String>()
    );
    let at_idp = b.goto(&s.url(&link));
    assert!(
        at_idp["url"].as_str().unwrap().starts_with(&s.op.issuer),
        "{at_idp}"
    );
    let back = b.login("bob", &s.nginx.url);
    assert_eq!(back["url"], rd, "{back}");
    // Signed in, the same link goes straight back; a foreign rd stays on this site.
    let again = b.goto(&s.url(&link));
    assert_eq!(again["url"], rd, "{again}");
    let away = b.goto(&s.url("/_portcullis/start?rd=https%3A%2F%2Fevil.example%2F"));
    assert_eq!(away["url"], s.url("/"), "{away}");
    // The auth endpoint itself is nginx's internal location.
    assert_eq!(raw_get(s.port(), "/_portcullis/auth", &[]).await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx, Chromium and the OpenID provider: run scripts/test"]
async fn spoofed_headers_and_path_tricks_never_reach_the_upstream() {
    let s = Stack::start(None).await;
    let token = s.op.client_credentials_token().await;
    let bearer = format!("Bearer {token}");
    let spoof = [
        ("x-auth-request-user", "root@example.com"),
        ("x-auth-request-email", "root@example.com"),
        ("x-auth-request-groups", "admins"),
        ("x_auth_request_user", "root@example.com"),
        ("x-original-uri", "/healthcheck"),
        ("x-forwarded-host", "admin.example.com"),
    ];
    // A public path: anonymous, every spoofed identity removed (underscores dropped by nginx).
    assert_eq!(raw_get(s.port(), "/healthcheck", &spoof).await, 200);
    let seen = s.seen("/healthcheck");
    for (name, _) in &spoof[..4] {
        assert!(seen.all(name).is_empty(), "{name} reached the upstream");
    }
    // A token's identity replaces the spoofed one.
    let mut with_token = spoof.to_vec();
    with_token.push(("authorization", &bearer));
    assert_eq!(raw_get(s.port(), "/api/x", &with_token).await, 200);
    let seen = s.seen("/api/x");
    assert_ne!(seen.all("x-auth-request-user"), ["root@example.com"]);
    assert!(seen.all("x-auth-request-groups").is_empty());
    assert_eq!(seen.all("authorization"), [bearer.as_str()]);

    let before = s.upstream.count();
    for trick in [
        "/admin",
        "/admin/",
        "/api/../admin",
        "/api/%2e%2e/admin",
        "/api/..%2fadmin",
        "/api%2f..%2fadmin",
        "/api/./../admin",
        "//admin",
        "/healthcheck/../admin",
        "/healthcheck/%2E%2E/admin/x",
        "/healthcheck%2f..%2fadmin",
    ] {
        let status = raw_get(s.port(), trick, &[("authorization", &bearer)]).await;
        assert!(
            status == 400 || status == 403 || status == 404,
            "{trick}: {status}"
        );
    }
    let leaked: Vec<_> = s.upstream.requests()[before..]
        .iter()
        .map(|r| r.uri.clone())
        .collect();
    assert!(leaked.is_empty(), "reached the upstream: {leaked:?}");
    assert_eq!(raw_get(s.port(), "/api/x", &[]).await, 401);
    let m = s.portcullis.metrics().await;
    assert!(m.contains("reason=\"route_denied\""), "counted: {m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx, Chromium and the OpenID provider: run scripts/test"]
async fn a_refreshed_session_reaches_the_browser_through_nginx() {
    let s = Stack::start(Some(5)).await;
    let mut b = Browser::start();
    b.goto(&s.url("/start"));
    b.login("frank", &s.nginx.url);
    let first = session_cookie_value(&mut b).expect("signed in");
    // Past half of the 5 s lifetime (refresh_before is capped at half), before expiry.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let r = b.fetch(&s.url("/api/tables"));
    assert_eq!(r["status"], 200, "{r}");
    let renewed = session_cookie_value(&mut b).expect("still signed in");
    assert_ne!(
        renewed, first,
        "the refreshed session's cookie came back through nginx's numbered Set-Cookie"
    );
    // Well past the first token's expiry the user is still working, without a new login.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let page = b.goto(&s.url("/later"));
    assert_eq!(page["url"], s.url("/later"), "{page}");
    assert_eq!(
        s.seen("/later").all("x-auth-request-email"),
        ["frank@example.com"]
    );
}

/// Signs `user` in from `path` through nginx.
fn sign_in(s: &Stack, b: &mut Browser, path: &str, user: &str) {
    let at_idp = b.goto(&s.url(path));
    assert!(
        at_idp["url"].as_str().unwrap().starts_with(&s.op.issuer),
        "{at_idp}"
    );
    let back = b.login(user, &s.nginx.url);
    assert_eq!(back["url"], s.url(path), "{back}");
}

/// Whether the browser, going to `path`, is still signed in (not sent to the provider).
fn signed_in(s: &Stack, b: &mut Browser, path: &str) -> bool {
    let page = b.goto(&s.url(path));
    page["url"] == s.url(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx, Chromium and the OpenID provider: run scripts/test"]
async fn signing_out_at_the_provider_ends_the_session_through_back_channel_logout() {
    let s = Stack::start(None).await;
    let mut b = Browser::start();
    sign_in(&s, &mut b, "/reports", "dora");
    // The user signs out at the provider itself (another app's logout would do the same): it
    // POSTs a logout token to portcullis, server to server.
    b.goto(&format!("{}v2/logout", s.op.issuer));
    b.run(json!({"op": "click", "selector": "button[autofocus], button[type=submit]", "until": s.op.issuer}));
    let mut ended = false;
    for _ in 0..20 {
        if !signed_in(&s, &mut b, "/reports") {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ended,
        "the next request goes to log in again: {}",
        s.nginx.access_log()
    );
    let m = s.portcullis.metrics().await;
    assert!(
        m.contains("portcullis_backchannel_logouts_total{result=\"ok\"} 1"),
        "{m}"
    );
    let events = s.audit_events();
    assert!(
        events.iter().any(|e| e["event"] == "sessions_revoked"
            && e["user"] == "dora"
            && e["scope"] == "provider_session"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx, Chromium and the OpenID provider: run scripts/test"]
async fn a_forged_replayed_or_misaddressed_logout_token_changes_nothing() {
    let s = Stack::start(None).await;
    let mut b = Browser::start();
    sign_in(&s, &mut b, "/desk", "erin");
    // Logout tokens as the provider signs them (its key is fixture rs256-a), naming erin only.
    let claims = |patch: Value| {
        let mut c = json!({
            "iss": s.op.issuer, "aud": CLIENT_ID, "iat": now(), "exp": now() + 120,
            "jti": format!("jti-{}", rand::random::<u64>()), "sub": "erin",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        });
        for (k, v) in patch.as_object().unwrap() {
            match v {
                Value::Null => c.as_object_mut().unwrap().remove(k),
                v => c.as_object_mut().unwrap().insert(k.clone(), v.clone()),
            };
        }
        c
    };
    let post = async |token: &str| {
        let r = http_client()
            .post(s.url("/backchannel-logout"))
            .form(&[("logout_token", token)])
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let no_store = r
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, no_store, r.text().await.unwrap())
    };
    for (what, token, reason) in [
        (
            "forged",
            mint("rs256-b", &claims(json!({}))),
            "token_unknown_key",
        ),
        (
            "another client's",
            mint("rs256-a", &claims(json!({"aud": "other-app"}))),
            "token_wrong_audience",
        ),
        (
            "an ID token",
            mint("rs256-a", &claims(json!({"nonce": "n", "events": null}))),
            "not_a_logout_token",
        ),
        (
            "without jti",
            mint("rs256-a", &claims(json!({"jti": null}))),
            "logout_token_without_jti",
        ),
    ] {
        let (status, no_store, body) = post(&token).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(no_store.as_deref(), Some("no-store"), "{what}");
        assert!(body.contains(reason), "{what}: {body}");
    }
    assert!(signed_in(&s, &mut b, "/desk"), "nothing changed");
    // The real thing ends every session of the user; the same token again is a replay.
    let valid = mint("rs256-a", &claims(json!({})));
    assert_eq!(post(&valid).await.0, 200);
    assert!(!signed_in(&s, &mut b, "/desk"), "erin's session ended");
    let (status, _, body) = post(&valid).await;
    assert_eq!(status, 400);
    assert!(body.contains("logout_token_replayed"), "{body}");
    // Only a form with one token is one.
    let r = http_client()
        .post(s.url("/backchannel-logout"))
        .form(&[
            ("logout_token", valid.as_str()),
            ("logout_token", valid.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let m = s.portcullis.metrics().await;
    assert!(
        m.contains("portcullis_backchannel_logouts_total{result=\"logout_token_replayed\"} 1"),
        "{m}"
    );
}
