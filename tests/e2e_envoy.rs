//! End to end through a real Envoy running the shipped `envoy/envoy.yaml`, a real OpenID provider
//! (tests/op, Auth0-shaped) and the real portcullis binary. Needs `scripts/setup`; run by `scripts/test`.

mod support;

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;
use support::*;

struct Stack {
    op: Op,
    portcullis: Portcullis,
    envoy: Envoy,
    upstream: Upstream,
    http: reqwest::Client,
    _dir: Arc<tempfile::TempDir>,
}

impl Stack {
    async fn start() -> Self {
        let dir = tempdir();
        let upstream = Upstream::start().await;
        let op = Op::start(dir.clone()).await;
        let issuer = &op.issuer;
        let portcullis = Portcullis::start(
            &format!(
                "provider: {{issuer: '{issuer}', client_id: amundsen, client_secret: amundsen-secret}}\n\
                 bearer: [{{issuer: '{issuer}', audiences: ['{AUDIENCE}']}}]\n\
                 session: {{secure: false}}\n\
                 routes:\n\
                 - {{name: health, path_prefix: /healthcheck, action: public}}\n\
                 - {{name: api, path_prefix: /api/, action: api}}\n\
                 - {{name: admin, path_prefix: /admin, action: deny}}\n\
                 - {{name: app, path_prefix: /, action: login}}\n"
            ),
            dir.clone(),
        )
        .await;
        let envoy = Envoy::shipped(
            "envoy/envoy.yaml",
            portcullis.grpc_port,
            upstream.port,
            dir.clone(),
        )
        .await;
        Self {
            op,
            portcullis,
            envoy,
            upstream,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    fn token(&self, key: &str, patch: serde_json::Value) -> String {
        let mut claims = json!({
            "iss": self.op.issuer, "aud": [AUDIENCE, format!("{}userinfo", self.op.issuer)],
            "sub": "auth0|alice", "email": "alice@example.com", "email_verified": true,
            "iat": now(), "exp": now() + 300,
        });
        for (k, v) in patch.as_object().unwrap() {
            claims[k] = v.clone();
        }
        mint(key, &claims)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.envoy.url))
    }
}

#[tokio::test]
#[ignore = "needs Envoy and the OpenID provider: run scripts/test"]
async fn no_token_is_401_with_a_bearer_challenge() {
    let s = Stack::start().await;
    let r = s.get("/api/tables").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(s.upstream.count(), 0, "nothing reached the upstream");
}

#[tokio::test]
#[ignore = "needs Envoy and the OpenID provider: run scripts/test"]
async fn a_valid_token_reaches_the_upstream_with_trusted_identity_headers() {
    let s = Stack::start().await;
    let token = s.token("rs256-a", json!({}));
    let r = s
        .get("/api/tables?x=1")
        .bearer_auth(&token)
        .header("x-auth-request-email", "attacker@evil.example")
        .header("x-auth-request-user", "attacker")
        .header("x-auth-request-groups", "admins")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let seen = s.upstream.last();
    let all = |name: &str| {
        seen.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(all("x-auth-request-email"), ["alice@example.com"]);
    assert_eq!(all("x-auth-request-user"), ["alice@example.com"]);
    assert!(
        all("x-auth-request-groups").is_empty(),
        "the token has no groups: the spoofed header is removed"
    );
    // The same token again is served from portcullis's cache and still gets the same headers.
    let r = s
        .get("/api/tables")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        s.upstream.last()["x-auth-request-email"],
        "alice@example.com"
    );
    // Envoy's access log carries the identity from portcullis's dynamic metadata.
    s.envoy.wait_for_log("email=alice@example.com").await;
}

#[tokio::test]
#[ignore = "needs Envoy and the OpenID provider: run scripts/test"]
async fn an_underscore_spelling_of_an_identity_header_is_refused_by_envoy() {
    let s = Stack::start().await;
    let token = s.token("rs256-a", json!({}));
    let r = s
        .get("/api/tables")
        .bearer_auth(&token)
        .header("x_auth_request_email", "attacker@evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(s.upstream.count(), 0);
}

#[tokio::test]
#[ignore = "needs Envoy and the OpenID provider: run scripts/test"]
async fn a_public_path_needs_no_token_and_a_deny_route_is_403() {
    let s = Stack::start().await;
    let r = s.get("/healthcheck").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.get("/healthcheckX").send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "only whole segments match a prefix"
    );
    let token = s.token("rs256-a", json!({}));
    let r = s
        .get("/admin/users")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
#[ignore = "needs Envoy and the OpenID provider: run scripts/test"]
async fn a_public_prefix_never_reaches_a_protected_path() {
    let s = Stack::start().await;
    for path in [
        "/healthcheck/../api/tables",
        "/healthcheck/%2e%2e/api/tables",
        "/healthcheck/..%2fapi/tables",
        "/healthcheck%2f..%2fapi%2ftables",
        "/healthcheck;/../api/tables",
        "/healthcheck/..;/api/tables",
    ] {
        let r = s.get(path).send().await.unwrap();
        let status = r.status();
        let reached = s
            .upstream
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|(uri, _)| uri.contains("api"));
        assert!(
            !reached,
            "{path}: the upstream saw a protected path without a token (status {status})"
        );
    }
}

#[tokio::test]
#[ignore = "needs Envoy and the OpenID provider: run scripts/test"]
async fn bad_tokens_are_401() {
    let s = Stack::start().await;
    let cases = [
        (
            "expired",
            s.token("rs256-a", json!({"exp": now() - 600, "iat": now() - 900})),
        ),
        (
            "wrong audience",
            s.token("rs256-a", json!({"aud": "https://other.example/api"})),
        ),
        ("unknown key", s.token("rs256-b", json!({}))),
        (
            "wrong issuer",
            s.token("rs256-a", json!({"iss": "https://evil.example/"})),
        ),
        ("garbage", "not-a-jwt".to_owned()),
    ];
    for (what, token) in &cases {
        let r = s
            .get("/api/tables")
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
    }
    assert_eq!(s.upstream.count(), 0);
    s.envoy.wait_for_log("deny=token_expired").await;
    // Tokens never reach a log, not even refused ones.
    let log = s.portcullis.proc.log();
    assert!(
        log.contains("token_expired"),
        "debug logs name the reason:\n{log}"
    );
    for (_, token) in &cases {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a token leaked into the log");
    }
    // Each refusal is counted with its bounded reason.
    let metrics = reqwest::get(format!("{}/metrics", s.portcullis.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in [
        "token_expired",
        "token_wrong_audience",
        "token_unknown_key",
        "token_unknown_issuer",
        "token_malformed",
    ] {
        assert!(
            metrics.contains(&format!(
                "route=\"api\",decision=\"deny\",reason=\"{reason}\""
            )),
            "{reason} missing from\n{metrics}"
        );
    }
}

#[tokio::test]
#[ignore = "needs Envoy and the OpenID provider: run scripts/test"]
async fn envoy_fails_closed_when_portcullis_is_gone() {
    let mut s = Stack::start().await;
    let token = s.token("rs256-a", json!({}));
    assert_eq!(
        s.get("/api/x")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let status = s
        .portcullis
        .proc
        .terminate()
        .expect("portcullis stops on SIGTERM");
    assert!(status.success(), "graceful exit, got {status:?}");
    for path in ["/api/x", "/", "/healthcheck"] {
        let r = s.get(path).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(s.upstream.count(), 1);
}

#[tokio::test]
#[ignore = "needs Envoy and the OpenID provider: run scripts/test"]
async fn the_metrics_pass_promtool() {
    let s = Stack::start().await;
    let token = s.token("rs256-a", json!({}));
    s.get("/api/x").bearer_auth(&token).send().await.unwrap();
    s.get("/api/x").send().await.unwrap();
    let scrape = reqwest::get(format!("{}/metrics", s.portcullis.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "portcullis_checks_total",
        "portcullis_check_duration_seconds_bucket",
        "portcullis_jwks_fetches_total",
        "portcullis_token_cache_requests_total",
        "portcullis_idp_request_duration_seconds_bucket",
        "portcullis_ready 1",
    ] {
        assert!(scrape.contains(name), "{name} missing from\n{scrape}");
    }
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed by scripts/setup");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs Envoy: run scripts/test"]
fn every_shipped_envoy_config_validates() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("envoy")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let out = std::process::Command::new(envoy_bin())
                .args(["--mode", "validate", "-c"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}:\n{}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 1);
}
