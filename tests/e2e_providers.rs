//! Several login providers (`providers:`): two test OpenID providers with keys of their own, one
//! Envoy (the shipped config) and one portcullis, picked by host (`corp.localhost`,
//! `partners.localhost`: Chromium takes every `*.localhost` to loopback) and by route (a partners
//! route on the corp host). Real Chromium signs in to both. Needs `scripts/setup`; run by
//! `scripts/test`.

mod support;

use serde_json::{Value, json};
use support::*;

struct Stack {
    /// Where both providers post logout tokens (portcullis's HTTP port).
    backchannel: String,
    corp: Op,
    partners: Op,
    portcullis: Portcullis,
    envoy: Envoy,
    upstream: EchoUpstream,
    _keys: tempfile::TempDir,
}

impl Stack {
    async fn start() -> Self {
        let upstream = EchoUpstream::start().await;
        let (grpc, http) = (free_port(), free_port());
        let ports = EnvoyPorts::free(grpc, upstream.port);
        let site = |host: &str| format!("http://{host}.localhost:{}", ports.listener);
        let callback = |host: &str| format!("{}/authorization-code/callback", site(host));
        let corp = Op::start(OpOptions {
            redirect_uris: vec![callback("corp")],
            post_logout_uris: vec![format!("{}/", site("corp"))],
            ..OpOptions::auth0()
        })
        .await;
        // The partners' provider signs with a key of its own (fixture rs256-b) and serves both
        // hosts: its own, and the corp host's partner route.
        let keys = tempfile::tempdir().unwrap();
        let jwks = keys.path().join("partners-jwks.json");
        let key: Value = serde_json::from_str(
            &std::fs::read_to_string(repo_root().join("tests/fixtures/keys/rs256-b.jwk.json"))
                .unwrap(),
        )
        .unwrap();
        std::fs::write(&jwks, json!({"keys": [key]}).to_string()).unwrap();
        let partners = Op::start(OpOptions {
            jwks_file: jwks,
            redirect_uris: vec![callback("partners"), callback("corp")],
            post_logout_uris: vec![format!("{}/", site("partners"))],
            ..OpOptions::plain()
        })
        .await;
        let portcullis = Portcullis::start(&format!(
            "listen: {{grpc: '127.0.0.1:{grpc}', admin: '127.0.0.1:{admin}', http_authz: '127.0.0.1:{http}'}}\n\
             providers:\n\
             - {{name: corp, issuer: '{corp}', client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}}}\n\
             - {{name: partners, issuer: '{partners}', client_id: {CLIENT_ID}, \
                client_secret: {CLIENT_SECRET}, hosts: [partners.localhost]}}\n\
             bearer:\n\
             - {{issuer: '{corp}', audiences: ['{AUDIENCE}']}}\n\
             - {{issuer: '{partners}', audiences: ['{AUDIENCE}']}}\n\
             login: {{post_logout_redirect: /, backchannel_logout_path: /backchannel-logout}}\n\
             session: {{secure: false, secret: '{secret}'}}\n\
             routes:\n\
             - {{name: partner-reports, path_prefix: /partner-reports, action: login, provider: partners}}\n\
             - {{name: api, path_prefix: /api/, action: api}}\n\
             - {{name: app, path_prefix: /, action: login}}\n",
            admin = free_port(),
            corp = corp.issuer,
            partners = partners.issuer,
            secret = session_secret(),
        ))
        .await;
        let envoy = Envoy::from_shipped("envoy/envoy.yaml", ports).await;
        Self {
            backchannel: format!("http://127.0.0.1:{http}/backchannel-logout"),
            corp,
            partners,
            portcullis,
            envoy,
            upstream,
            _keys: keys,
        }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}.localhost:{}{path}", self.envoy.port())
    }

    /// Goes to `path` on `host`, which must send the browser to `op`; signs `user` in there and
    /// checks the upstream got them.
    fn sign_in(&self, b: &mut Browser, host: &str, path: &str, op: &Op, user: &str) {
        let at = b.goto(&self.url(host, path));
        assert!(
            at["url"].as_str().unwrap().starts_with(&op.issuer),
            "{host}{path} goes to {}: {at}",
            op.issuer
        );
        let back = b.login(user, &self.url(host, ""));
        assert_eq!(back["url"], self.url(host, path), "{back}");
        assert_eq!(self.user_under(path), format!("{user}@example.com"));
    }

    /// Posts `op`'s logout token (signed with fixture `key`) for user `sub`; the answer's status.
    async fn logout_token(&self, key: &str, op: &Op, sub: &str, jti: &str) -> u16 {
        let token = mint(
            key,
            &json!({
                "iss": op.issuer, "aud": CLIENT_ID, "iat": now(), "exp": now() + 120, "jti": jti,
                "sub": sub, "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
            }),
        );
        http_client()
            .post(&self.backchannel)
            .form(&[("logout_token", token)])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Whether going to `path` on `host` passed through `op` (signed in again there).
    fn asks(&self, b: &mut Browser, host: &str, path: &str, op: &Op) -> bool {
        b.navigations();
        let back = b.goto(&self.url(host, path));
        assert_eq!(back["url"], self.url(host, path), "{back}");
        b.navigations().iter().any(|u| u.starts_with(&op.issuer))
    }

    /// The user the upstream last saw on a path under `prefix`.
    fn user_under(&self, prefix: &str) -> String {
        self.upstream.last_under(prefix).all("x-auth-request-user")[0].clone()
    }

    /// `host`'s cookies in the browser, by name.
    fn cookies(b: &mut Browser, host: &str) -> Vec<(String, String)> {
        let all = b.run(json!({"op": "cookies"}));
        all["cookies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["domain"] == format!("{host}.localhost"))
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_owned(),
                    c["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// What a script's request to `path` on `host` with just `cookie` gets.
    async fn status_with(&self, host: &str, path: &str, cookie: &str) -> u16 {
        let url = format!("http://127.0.0.1:{}{path}", self.envoy.port());
        let host = format!("{host}.localhost:{}", self.envoy.port());
        status_with_cookie(&url, Some(&host), cookie).await
    }
}

fn value<'c>(cookies: &'c [(String, String)], name: &str) -> &'c str {
    &cookies
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no cookie {name} in {cookies:?}"))
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and two OpenID providers: run scripts/test"]
async fn each_host_and_route_signs_in_with_its_own_provider_and_keeps_its_own_session() {
    let s = &Stack::start().await;
    let mut b = Browser::start();

    // By host: corp.localhost (no host listed: the first provider), partners.localhost.
    s.sign_in(&mut b, "corp", "/app/tables", &s.corp, "alice");
    s.sign_in(&mut b, "partners", "/app/tables", &s.partners, "bob");
    let back = b.goto(&s.url("corp", "/app/again"));
    assert_eq!(back["url"], s.url("corp", "/app/again"), "still signed in");
    assert_eq!(s.user_under("/app/again"), "alice@example.com");

    // By route: the partners' route on the corp host signs in at the partners' provider (where
    // bob is signed in already: it sends him straight back), and the corp session stays beside
    // the new one.
    b.navigations();
    let back = b.goto(&s.url("corp", "/partner-reports/q3"));
    assert_eq!(back["url"], s.url("corp", "/partner-reports/q3"), "{back}");
    let went = b.navigations();
    assert!(
        went.iter().any(|u| u.starts_with(&s.partners.issuer)),
        "{went:?}"
    );
    assert!(
        !went.iter().any(|u| u.starts_with(&s.corp.issuer)),
        "{went:?}"
    );
    assert_eq!(s.user_under("/partner-reports/q3"), "bob@example.com");
    b.goto(&s.url("corp", "/app/third"));
    assert_eq!(s.user_under("/app/third"), "alice@example.com");
    // Each sign-in is counted (and audited) under its provider.
    let completed = async |provider: &str| {
        s.portcullis
            .metric(&format!(
                "portcullis_checks_total{{route=\"login:{provider}\",decision=\"redirect\",reason=\"login_complete\"}}"
            ))
            .await
    };
    assert_eq!(
        (completed("corp").await, completed("partners").await),
        (1, 2)
    );
    b.goto(&s.url("corp", "/partner-reports/q4"));
    assert_eq!(s.user_under("/partner-reports/q4"), "bob@example.com");

    // A session is good on its own provider's routes only, whatever cookie name carries it.
    let jar = Stack::cookies(&mut b, "corp");
    let (corp, partners) = (
        value(&jar, "portcullis"),
        value(&jar, "portcullis_partners"),
    );
    let reports = "/partner-reports/q1";
    assert_eq!(
        s.status_with("corp", reports, &format!("portcullis_partners={partners}"))
            .await,
        200
    );
    assert_eq!(
        s.status_with("corp", "/app/x", &format!("portcullis={corp}"))
            .await,
        200
    );
    for (path, cookie) in [
        (reports, format!("portcullis={corp}")),
        (reports, format!("portcullis_partners={corp}")),
        ("/app/x", format!("portcullis={partners}")),
        ("/app/x", format!("portcullis_partners={partners}")),
    ] {
        assert_eq!(
            s.status_with("corp", path, &cookie).await,
            401,
            "{path} with {cookie:.40}"
        );
    }
    // On the partners' host, its provider's session is what counts, wherever it was signed in.
    let on_partners =
        |cookie: String| async move { s.status_with("partners", "/app/x", &cookie).await };
    assert_eq!(
        on_partners(format!("portcullis_partners={partners}")).await,
        200
    );
    assert_eq!(
        on_partners(format!("portcullis_partners={corp}")).await,
        401
    );
    assert_eq!(on_partners(format!("portcullis={corp}")).await, 401);
    // Neither provider's cookie reaches the upstream.
    for seen in s.upstream.requests() {
        for cookie in seen.all("cookie") {
            assert!(!cookie.contains("portcullis"), "{cookie}");
        }
    }

    // Back-channel logout: a provider's logout token ends its own sessions, of its own users.
    assert_eq!(
        s.logout_token("rs256-a", &s.corp, "bob", "corp-1").await,
        200
    );
    assert!(
        !s.asks(&mut b, "partners", "/app/bc1", &s.partners),
        "corp's bob is another"
    );
    assert_eq!(
        s.logout_token("rs256-b", &s.partners, "bob", "partners-1")
            .await,
        200
    );
    assert!(
        s.asks(&mut b, "partners", "/app/bc2", &s.partners),
        "bob signs in again"
    );
    assert!(
        !s.asks(&mut b, "corp", "/app/bc3", &s.corp),
        "alice is still in"
    );
    assert_eq!(s.user_under("/app/bc3"), "alice@example.com");

    // Logout on the corp host signs out of both of its sessions, and goes to the corp provider
    // (which sends the browser back to `/`, where it is asked to sign in again).
    b.navigations();
    b.goto(&s.url("corp", "/logout"));
    let went = b.navigations();
    assert!(
        went.iter().any(|u| u.starts_with(&s.corp.issuer)),
        "{went:?}"
    );
    let names: Vec<String> = Stack::cookies(&mut b, "corp")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n == "portcullis" || n == "portcullis_partners"),
        "{names:?}"
    );
    // The partners' host keeps its own.
    let back = b.goto(&s.url("partners", "/app/still"));
    assert_eq!(back["url"], s.url("partners", "/app/still"));
    assert_eq!(s.user_under("/app/still"), "bob@example.com");
}

#[tokio::test]
#[ignore = "needs Envoy and two OpenID providers: run scripts/test"]
async fn one_providers_bearer_tokens_are_not_for_anothers_routes() {
    let s = Stack::start().await;
    let token = |key: &str, op: &Op| {
        mint(
            key,
            &json!({"iss": op.issuer, "aud": AUDIENCE, "sub": "svc", "iat": now(), "exp": now() + 300}),
        )
    };
    let (corp, partners) = (token("rs256-a", &s.corp), token("rs256-b", &s.partners));
    let status = async |host: &str, path: &str, token: &str| {
        let r = http_client()
            .get(format!("http://127.0.0.1:{}{path}", s.envoy.port()))
            .header("host", format!("{host}.localhost"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.headers().contains_key("www-authenticate"),
        )
    };
    assert_eq!(status("corp", "/api/x", &corp).await, (200, false));
    assert_eq!(status("partners", "/api/x", &partners).await, (200, false));
    assert_eq!(
        status("corp", "/partner-reports/x", &partners).await,
        (200, false)
    );
    for (host, path, token) in [
        ("partners", "/api/x", &corp),
        ("corp", "/api/x", &partners),
        ("corp", "/partner-reports/x", &corp),
    ] {
        assert_eq!(status(host, path, token).await, (401, true), "{host}{path}");
    }
    let refused = s
        .portcullis
        .metric("portcullis_checks_total{route=\"api\",decision=\"deny\",reason=\"token_other_provider\"}")
        .await;
    assert_eq!(refused, 2);
}
