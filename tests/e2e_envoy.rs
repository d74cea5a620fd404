//! End to end through a real Envoy running the shipped `envoy/envoy.yaml` (ports moved to free
//! loopback ones), the test OpenID provider (tests/op, Auth0-shaped, signing with fixture key
//! rs256-a), the portcullis binary, and an upstream that records what reached it.
//! Needs `scripts/setup`; `scripts/test` runs these with `--ignored --test-threads 1`.

mod support;

use portcullis::bootstrap::VERIFIED_HEADER;
use reqwest::StatusCode;
use serde_json::json;
use support::*;

/// One of everything, wired the way the README tells users to.
struct Stack {
    op: Op,
    portcullis: Portcullis,
    envoy: Envoy,
    upstream: EchoUpstream,
    http: reqwest::Client,
    /// The `session.secret`, to seal sessions as a login would leave them.
    secret: String,
}

impl Stack {
    /// The reference deployment's shape: Auth0 paths, issuer ending in "/".
    async fn start() -> Self {
        Self::with_op(OpOptions::auth0()).await
    }

    async fn with_op(op: OpOptions) -> Self {
        Self::with("envoy/envoy.yaml", op, |_| String::new()).await
    }

    /// `envoy_file`: the shipped Envoy config to run; all its upstream clusters go to the echo
    /// upstream. `extra`: more top-level config keys, given Envoy's listener port.
    async fn with(envoy_file: &str, op: OpOptions, extra: impl Fn(u16) -> String) -> Self {
        Self::with_mode(envoy_file, op, "enforce", extra).await
    }

    /// [`Stack::with`], the `api` route in `api_mode` (`enforce` or `shadow`).
    async fn with_mode(
        envoy_file: &str,
        op: OpOptions,
        api_mode: &str,
        extra: impl Fn(u16) -> String,
    ) -> Self {
        let upstream = EchoUpstream::start().await;
        let op = Op::start(op).await;
        let grpc = free_port();
        let admin = free_port();
        let ports = EnvoyPorts::free(grpc, upstream.port);
        let secret = session_secret();
        let config = format!(
            "listen: {{grpc: '127.0.0.1:{grpc}', admin: '127.0.0.1:{admin}'}}\n\
             provider:\n  issuer: '{issuer}'\n  client_id: {CLIENT_ID}\n  client_secret: {CLIENT_SECRET}\n  \
             user_id_claim: email\n\
             bearer: [{{issuer: '{issuer}', audiences: ['{audience}']}}]\n\
             session: {{secure: false, secret: '{secret}'}}\n\
             routes:\n\
             - {{name: admin-host, host: admin.example, path_prefix: /, action: deny}}\n\
             - {{name: health, path_prefix: /healthcheck, action: public}}\n\
             - {{name: api, path_prefix: /api/, action: api, mode: {api_mode}}}\n\
             - {{name: admin, path_prefix: /admin, action: deny}}\n\
             - {{name: app, path_prefix: /, action: login}}\n",
            issuer = op.issuer,
            audience = op.audience,
        ) + &extra(ports.listener);
        // The suite runs twice: with the shipped envoy.yaml, and with the fast path's bootstrap.
        let fast = fast_path() && envoy_file == "envoy/envoy.yaml";
        let config = if fast { with_fast_path(config) } else { config };
        let portcullis = Portcullis::start(&config).await;
        let envoy = if fast {
            Envoy::start(&fast_path_config(&portcullis, ports)).await
        } else {
            Envoy::from_shipped(envoy_file, ports).await
        };
        Self {
            op,
            portcullis,
            envoy,
            upstream,
            http: http_client(),
            secret,
        }
    }

    /// A token as Auth0 issues it for the API (aud also names the userinfo endpoint), signed with
    /// fixture `key`; `patch` replaces or adds claims.
    fn token(&self, key: &str, patch: serde_json::Value) -> String {
        let mut claims = json!({
            "iss": self.op.issuer,
            "aud": [AUDIENCE, format!("{}userinfo", self.op.issuer)],
            "sub": "auth0|alice", "email": "alice@example.com", "email_verified": true,
            "iat": now(), "exp": now() + 300,
        });
        for (k, v) in patch.as_object().unwrap() {
            match v {
                serde_json::Value::Null => claims.as_object_mut().unwrap().remove(k),
                v => claims.as_object_mut().unwrap().insert(k.clone(), v.clone()),
            };
        }
        mint(key, &claims)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.envoy.url))
    }
}

#[tokio::test]
#[ignore = "needs Envoy and the OP: run scripts/test"]
async fn a_shadow_route_lets_everyone_through_and_counts_what_it_would_have_refused() {
    let s = Stack::with_mode("envoy/envoy.yaml", OpOptions::auth0(), "shadow", |_| {
        String::new()
    })
    .await;
    // No token, and a spoofed identity: through, anonymous.
    let r = s
        .get("/api/tables")
        .header("x-auth-request-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(s.upstream.last().all("x-auth-request-user").is_empty());
    // A forged token: through, anonymous. Its Authorization goes on: in shadow mode the upstream
    // still makes its own checks, as it did before portcullis stood in front of it.
    let forged = s.token("rs256-b", json!({}));
    let r = s
        .get("/api/tables")
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(s.upstream.last().all("x-auth-request-user").is_empty());
    assert_eq!(
        s.upstream.last().all("authorization"),
        [format!("Bearer {forged}")]
    );
    // A valid token: as enforced, with the identity.
    let token = s.token("rs256-a", json!({}));
    let r = s
        .get("/api/tables")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        s.upstream.last().all("x-auth-request-user"),
        ["alice@example.com"]
    );
    // Other routes still enforce.
    let r = s
        .get("/admin/users")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let metrics = s.portcullis.metrics().await;
    for line in [
        r#"portcullis_shadow_checks_total{route="api",would="deny",reason="missing_credential"} 1"#,
        r#"portcullis_checks_total{route="api",decision="allow",reason="shadow"} 2"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in:\n{metrics}"
        );
    }
    assert!(
        metrics.lines().any(|l| l.starts_with(
            r#"portcullis_shadow_checks_total{route="api",would="deny",reason="token_"#
        )),
        "{metrics}"
    );
}

/// The native fast path's filter learns what `jwt_authn` verified from one header: a client's copy
/// must never make a forged token pass, nor reach the upstream (in every Envoy form). Two removals
/// guard it: the generated header removal, and `jwt_authn`'s own of its `claim_to_headers` names
/// (with the first taken out, this still passed on Envoy 1.40).
#[tokio::test]
#[ignore = "needs Envoy and the OP: run scripts/test"]
async fn a_client_sent_verified_marker_lets_nothing_through() {
    let s = Stack::start().await;
    let forged = s.token("rs256-b", json!({"sub": "mallory"}));
    let r = s
        .get("/api/tables")
        .bearer_auth(&forged)
        .header(VERIFIED_HEADER, s.op.issuer.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.upstream.count(), 0);
    let token = s.token("rs256-a", json!({}));
    let r = s
        .get("/api/tables")
        .bearer_auth(&token)
        .header(VERIFIED_HEADER, "https://other.example/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen = s.upstream.last();
    assert_eq!(seen.all("x-auth-request-user"), ["alice@example.com"]);
    // Only the native filter reads it, and removes it; to anything else it is any client header.
    if fast_path_filter() == Some("native") {
        assert!(seen.all(VERIFIED_HEADER).is_empty(), "{:?}", seen.headers);
    }
}

#[tokio::test]
#[ignore = "needs Envoy and the OP: run scripts/test"]
async fn no_token_on_a_protected_path_is_401_with_a_bearer_challenge() {
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
#[ignore = "needs Envoy and the OP: run scripts/test"]
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
    assert_eq!(seen.uri, "/api/tables?x=1");
    assert_eq!(seen.all("x-auth-request-email"), ["alice@example.com"]);
    assert_eq!(seen.all("x-auth-request-user"), ["alice@example.com"]);
    assert!(
        seen.all("x-auth-request-groups").is_empty(),
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
        s.upstream.last().all("x-auth-request-email"),
        ["alice@example.com"]
    );
    // Envoy's access log carries the identity: from portcullis's dynamic metadata, or on the fast
    // path from the JWT Envoy verified itself.
    if fast_path_filter() == Some("callout") {
        // Asked once, then let through remembered.
        s.envoy
            .wait_for_log("user=alice@example.com asked=alice@example.com")
            .await;
    }
    if fast_path() {
        s.envoy
            .wait_for_log(&let_through_alone("alice@example.com"))
            .await;
    } else {
        s.envoy.wait_for_log("sub=auth0|alice").await;
        s.envoy.wait_for_log("email=alice@example.com").await;
    }
}

#[tokio::test]
#[ignore = "needs Envoy and the OP: run scripts/test"]
async fn a_real_access_token_from_the_op_gets_through() {
    // Client credentials with Auth0's `audience=`: a JWT (typ at+jwt) whose sub is the client_id
    // and which has no email, so the user falls back to sub.
    let s = Stack::start().await;
    let token = s.op.client_credentials_token().await;
    let r = s
        .get("/api/tables")
        .bearer_auth(&token)
        .header("x-auth-request-email", "attacker@evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let seen = s.upstream.last();
    assert_eq!(seen.all("x-auth-request-user"), [CLIENT_ID]);
    assert!(seen.all("x-auth-request-email").is_empty());
}

#[tokio::test]
#[ignore = "needs Envoy and the OP: run scripts/test"]
async fn an_issuer_without_a_trailing_slash_works_too() {
    // oidc-provider's own paths and an issuer without the "/" that Auth0's has.
    let s = Stack::with_op(OpOptions::plain()).await;
    assert!(!s.op.issuer.ends_with('/'));
    let r = s
        .get("/api/tables")
        .bearer_auth(s.token("rs256-a", json!({"aud": AUDIENCE})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let real = s.op.client_credentials_token().await;
    let r = s.get("/api/tables").bearer_auth(real).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
}

#[tokio::test]
#[ignore = "needs Envoy and the OP: run scripts/test"]
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
#[ignore = "needs Envoy and the OP: run scripts/test"]
async fn a_public_path_needs_no_token_and_a_deny_route_is_403() {
    let s = Stack::start().await;
    let r = s.get("/healthcheck").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(s.upstream.last().uri, "/healthcheck");
    assert!(
        s.upstream.last().all("x-auth-request-user").is_empty(),
        "no identity on a public path"
    );
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
#[ignore = "needs Envoy and the OP: run scripts/test"]
async fn a_public_prefix_never_reaches_a_protected_path() {
    // Sent byte for byte (an HTTP client would resolve the dots first): Envoy normalises, then
    // portcullis and the upstream see the same path, or the request is refused.
    let s = Stack::start().await;
    let port = s.envoy.port();
    for path in [
        "/healthcheck/../api/tables",
        "/healthcheck/./../api/tables",
        "/healthcheck/%2e%2e/api/tables",
        "/healthcheck/%2E%2E/api/tables",
        "/healthcheck/..%2fapi/tables",
        "/healthcheck%2f..%2fapi%2ftables",
        "/healthcheck/..%5capi/tables",
        "/healthcheck\\..\\api/tables",
        "/healthcheck;/../api/tables",
        "/healthcheck/..;/api/tables",
        "/healthcheck//../api/tables",
        "//healthcheck/../api/tables",
        "/healthcheck/../../api/tables",
        "/api/../healthcheck",
    ] {
        let status = raw_get(port, path, &[]).await;
        let public = |uri: &str| uri == "/healthcheck" || uri.starts_with("/healthcheck/");
        let leaked: Vec<String> = s
            .upstream
            .requests()
            .into_iter()
            .map(|seen| seen.uri)
            .filter(|uri| !public(uri))
            .collect();
        assert!(
            leaked.is_empty(),
            "{path}: the upstream saw {leaked:?} without a token (status {status})"
        );
        assert!(
            status != 200 || public(&s.upstream.last().uri),
            "{path}: 200"
        );
    }
}

#[tokio::test]
#[ignore = "needs Envoy and the OP: run scripts/test"]
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
        ("key unknown to the OP", s.token("rs256-b", json!({}))),
        (
            "wrong issuer",
            s.token("rs256-a", json!({"iss": "https://evil.example/"})),
        ),
        ("garbage", "not-a-jwt".to_owned()),
        // RFC 9068: iat required, NumericDates whole seconds, a bounded life.
        ("no iat", s.token("rs256-a", json!({"iat": null}))),
        (
            "exp that never comes",
            s.token("rs256-a", json!({"exp": 1e300})),
        ),
        (
            "fractional exp",
            s.token("rs256-a", json!({"exp": now() as f64 + 300.5})),
        ),
        (
            "a thirty-day life",
            s.token("rs256-a", json!({"exp": now() + 30 * 86400})),
        ),
    ];
    for (what, token) in &cases {
        let r = s
            .get("/api/tables")
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
    }
    assert_eq!(s.upstream.count(), 0);
    s.envoy.wait_for_log("deny=token_expired").await;
    // Tokens never reach a log, not even refused ones.
    let log = s.portcullis.proc.stderr() + &s.portcullis.proc.stdout();
    assert!(
        log.contains("token_expired"),
        "debug logs name the reason:\n{log}"
    );
    for (_, token) in &cases {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a token leaked into the log");
    }
    // Each refusal is counted with its bounded reason.
    let metrics = s.portcullis.metrics().await;
    for reason in [
        "token_expired",
        "token_wrong_audience",
        "token_unknown_key",
        "token_unknown_issuer",
        "token_malformed",
        "token_invalid_claims",
        "token_lifetime_too_long",
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
#[ignore = "needs Envoy and the OP: run scripts/test"]
async fn envoy_fails_closed_when_portcullis_is_gone() {
    let mut s = Stack::start().await;
    let token = s.token("rs256-a", json!({}));
    let r = s.get("/api/x").bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let status = s.portcullis.stop();
    assert!(status.success(), "graceful exit on SIGTERM, got {status}");
    // Whatever portcullis would decide is refused without it.
    for path in ["/api/x", "/", "/healthcheck"] {
        let r = s.get(path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} without a token");
    }
    let r = s
        .get("/healthcheck")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a public route asks portcullis"
    );
    if fast_path() {
        // The fast path: Envoy verifies a bearer token itself, with the keys it holds.
        for path in ["/api/x", "/"] {
            let r = s.get(path).bearer_auth(&token).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}: Envoy's own decision");
        }
        assert_eq!(s.upstream.count(), 3);
    } else {
        for path in ["/api/x", "/"] {
            let r = s.get(path).bearer_auth(&token).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        }
        assert_eq!(s.upstream.count(), 1, "only the request before the stop");
    }
}

#[tokio::test]
#[ignore = "needs Envoy and the OP: run scripts/test"]
async fn the_metrics_pass_promtool() {
    let s = Stack::start().await;
    let token = s.token("rs256-a", json!({}));
    s.get("/api/x").bearer_auth(&token).send().await.unwrap();
    s.get("/api/x").send().await.unwrap();
    // An expired token reaches portcullis on either path (Envoy's own check refuses it).
    let expired = s.token("rs256-a", json!({"exp": now() - 600, "iat": now() - 900}));
    s.get("/api/x").bearer_auth(&expired).send().await.unwrap();
    let scrape = s.portcullis.metrics().await;
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
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("envoy")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            // fast-path-native.yaml and -callout load portcullis's filter (scripts/test builds it).
            let out = std::process::Command::new(Venv::envoy())
                .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", module_dir())
                .args(["--mode", "validate", "-c"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}:\n{}{}",
                path.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            checked.push(path);
        }
    }
    assert!(
        checked.iter().any(|p| p.ends_with("envoy/envoy.yaml")),
        "{checked:?}"
    );
}

/// The fixtures agree with themselves: each key signs through `testing::mint` and verifies with its
/// public JWK, and the OP's JWKS holds exactly rs256-a. Needs nothing installed.
#[test]
fn fixture_keys_match_their_jwks() {
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header, jwk::Jwk};
    let dir = repo_root().join("tests/fixtures/keys");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    for key in ["rs256-a", "rs256-b", "es256-a"] {
        let token = mint(key, &json!({"sub": "x", "exp": now() + 60}));
        let header = decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key));
        let public: Jwk = serde_json::from_str(&read(&format!("{key}.pub.jwk.json"))).unwrap();
        let claims = decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_jwk(&public).unwrap(),
            &Validation::new(header.alg),
        )
        .unwrap_or_else(|e| panic!("{key}: {e}"))
        .claims;
        assert_eq!(claims["sub"], "x");
        let private: serde_json::Value =
            serde_json::from_str(&read(&format!("{key}.jwk.json"))).unwrap();
        assert!(
            private["d"].is_string(),
            "{key}.jwk.json is the private JWK"
        );
    }
    let op: serde_json::Value = serde_json::from_str(&read("op-jwks.json")).unwrap();
    let kids: Vec<_> = op["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert_eq!(kids, ["rs256-a"]);
}

#[tokio::test]
#[ignore = "needs Envoy and the OpenID provider: run scripts/test"]
async fn the_amundsen_config_routes_metadata_and_search_as_api_routes() {
    let s = Stack::with("envoy/amundsen.yaml", OpOptions::auth0(), |_| String::new()).await;
    // By path, /metadata/... is portcullis's `app` (login) route and a navigation would be sent to
    // the provider; Envoy's context_extensions make it the `api` route: a 401, never a redirect.
    for path in [
        "/metadata/user/alice@example.com",
        "/search/search?query_term=x",
    ] {
        let r = s
            .get(path)
            .header("sec-fetch-mode", "navigate")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let r = s
        .get("/")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FOUND,
        "the frontend's own routes log browsers in"
    );

    let token = s.token("rs256-a", json!({}));
    let r = s
        .get("/metadata/user/alice@example.com")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen = s.upstream.last();
    assert_eq!(
        seen.uri, "/user/alice@example.com",
        "the prefix is rewritten for the service"
    );
    assert_eq!(seen.all("x-auth-request-email"), ["alice@example.com"]);
}

/// The callback's `state` names the login cookie: a state portcullis cannot have issued never
/// reaches a cookie name or a header (CR/LF would add a header, `;` a cookie attribute).
#[tokio::test]
#[ignore = "needs Envoy and the OP: run scripts/test"]
async fn a_callback_state_cannot_write_a_header_or_a_cookie_attribute() {
    let s = Stack::start().await;
    for state in [
        "%0D%0AX-Injected:%20yes%20abcdefghijkl",
        "abcdefghijklmnop%3BDomain%3Devil.example%3Bx",
        "abcdefghijklmnop;Domain=evil.example;x",
        // The right length, one character outside base64url.
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.",
    ] {
        let head = raw_head(
            s.envoy.port(),
            &format!("/authorization-code/callback?code=c&state={state}"),
            &[],
        )
        .await;
        assert_eq!(head.status, 400, "{state}");
        assert!(head.all("x-injected").is_empty(), "{state}");
        for cookie in head.all("set-cookie") {
            assert!(
                !cookie.to_ascii_lowercase().contains("domain"),
                "{state}: {cookie}"
            );
        }
    }
    assert_eq!(s.upstream.count(), 0);
    let metrics = s.portcullis.metrics().await;
    assert!(
        metrics.contains("reason=\"callback_malformed_state\""),
        "{metrics}"
    );
}

/// A route scoped to a host holds for every spelling of that host; odd ones are refused.
#[tokio::test]
#[ignore = "needs Envoy and the OP: run scripts/test"]
async fn a_host_scoped_route_holds_for_every_spelling_of_the_host() {
    let s = Stack::start().await;
    let token = s.token("rs256-a", json!({}));
    let bearer = format!("Bearer {token}");
    for host in [
        "admin.example",
        "ADMIN.example",
        "admin.example.",
        "admin.example:443",
        "admin.example.:8443",
    ] {
        let head = raw_head(
            s.envoy.port(),
            "/api/tables",
            &[("host", host), ("authorization", &bearer)],
        )
        .await;
        assert_eq!(head.status, 403, "{host}");
    }
    for odd in ["admin.example..", "admin..example"] {
        let head = raw_head(
            s.envoy.port(),
            "/api/tables",
            &[("host", odd), ("authorization", &bearer)],
        )
        .await;
        assert!(
            head.status == 400 || head.status == 403,
            "{odd}: {}",
            head.status
        );
    }
    assert_eq!(s.upstream.count(), 0, "no spelling reached the upstream");
    // Another host is not the admin host.
    let head = raw_head(
        s.envoy.port(),
        "/api/tables",
        &[("host", "amundsen.example"), ("authorization", &bearer)],
    )
    .await;
    assert_eq!(head.status, 200);
}

/// The session let the request in, not the client's Authorization header: the upstream never gets
/// a value portcullis neither verified nor set.
#[tokio::test]
#[ignore = "needs Envoy and the OP: run scripts/test"]
async fn a_session_request_never_forwards_the_clients_own_authorization() {
    let s = Stack::start().await;
    // An unsigned JWT naming an admin, in forms that are no bearer credential portcullis checks
    // (a tab after the scheme, another scheme): a proper `Bearer <it>` would be verified and 401.
    let unsigned =
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiIsImVtYWlsIjoiYWRtaW5AZXhhbXBsZS5jb20ifQ.";
    let now = now();
    let session = portcullis::session::Session {
        sid: "e2e-session".into(),
        principal: portcullis::identity::Principal::from_claims(
            "auth0|alice".into(),
            json!({"email": "alice@example.com", "email_verified": true})
                .as_object()
                .unwrap()
                .clone(),
            "email",
            "groups",
        ),
        id_token: "unused.id.token".into(),
        access_token: None,
        access_expires_at: now + 3600,
        access_issued_at: now,
        refresh_token: None,
        created_at: now,
        seen_at: now,
    };
    let cookie = store_session(
        &s.secret,
        false,
        &session,
        portcullis::session::Backend::Cookie,
    )
    .await;
    for client_value in [
        format!("Bearer\t{unsigned}"),
        format!("JWT {unsigned}"),
        "Basic dXNlcjpwdw==".to_owned(),
    ] {
        let r = s
            .get("/private")
            .header("cookie", &cookie)
            .header("authorization", &client_value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{client_value}");
        let seen = s.upstream.last();
        assert!(
            seen.all("authorization").is_empty(),
            "{client_value} reached the upstream"
        );
        assert_eq!(seen.all("x-auth-request-email"), ["alice@example.com"]);
    }
}

/// Group names with commas stay whole; other sites' cookies pass byte for byte.
#[tokio::test]
#[ignore = "needs Envoy and the OP: run scripts/test"]
async fn groups_and_other_cookies_reach_the_upstream_unambiguous_and_unchanged() {
    let s = Stack::start().await;
    let token = s.token("rs256-a", json!({"groups": ["eng,admins", "ops", "100%"]}));
    let foreign = r#"prefs={"a":1,"b":2}; theme=dark"#;
    let r = s
        .get("/api/tables")
        .bearer_auth(&token)
        .header(
            "cookie",
            r#"prefs={"a":1,"b":2}; portcullis=stale; theme=dark"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen = s.upstream.last();
    assert_eq!(
        seen.all("x-auth-request-groups"),
        ["eng%2Cadmins,ops,100%25"]
    );
    assert_eq!(seen.all("cookie"), [foreign]);
    // Spellings portcullis's own cookie reading takes as its cookies go on every path: a name
    // with spaces around it, one after a `,`.
    let r = s
        .get("/api/tables")
        .bearer_auth(&token)
        .header(
            "cookie",
            "prefs=1; portcullis =stale; a=1, portcullis-2=x;theme=dark",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen = s.upstream.last();
    let sent = seen.all("cookie").join("; ");
    let names: Vec<&str> = sent
        .split([';', ','])
        .filter_map(|part| Some(part.trim().split_once('=')?.0.trim()))
        .collect();
    assert!(
        names.contains(&"prefs") && names.contains(&"theme"),
        "{sent}"
    );
    assert!(
        !names
            .iter()
            .any(|n| *n == "portcullis" || n.starts_with("portcullis-")),
        "{sent}"
    );
}

/// With `login.redirect_uri` set, logout sends the browser back to that origin, whatever `Host` said.
#[tokio::test]
#[ignore = "needs Envoy and the OP: run scripts/test"]
async fn logout_returns_to_the_configured_origin_whatever_the_host() {
    let s = Stack::with("envoy/envoy.yaml", OpOptions::auth0(), |port| {
        format!("login: {{redirect_uri: 'http://127.0.0.1:{port}/authorization-code/callback'}}\n")
    })
    .await;
    let head = raw_head(s.envoy.port(), "/logout", &[("host", "evil.example")]).await;
    assert_eq!(head.status, 302);
    let location = url::Url::parse(head.all("location")[0]).unwrap();
    assert!(location.as_str().starts_with(&s.op.issuer), "{location}");
    let back: Vec<String> = location
        .query_pairs()
        .filter(|(k, _)| k == "post_logout_redirect_uri" || k == "returnTo")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(back, [format!("http://127.0.0.1:{}/", s.envoy.port())]);
}

/// `portcullis envoy-config --config <config>`, with a fresh session secret from the environment.
fn envoy_config(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("envoy-config")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("PORTCULLIS_SESSION__SECRET", session_secret())
        .output()
        .unwrap()
}

/// envoy/fast-path.yaml (and fast-path-native.yaml, fast-path-callout.yaml: `--fast-path-filter`) is what
/// `portcullis envoy-config` makes of deploy/fast-path.portcullis.yaml today: it never drifts from
/// the generator.
#[test]
fn the_shipped_fast_path_bootstraps_are_the_generators_output() {
    for (file, filter) in [
        ("envoy/fast-path.yaml", "lua"),
        ("envoy/fast-path-native.yaml", "native"),
        ("envoy/fast-path-callout.yaml", "callout"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("envoy-config")
            .arg("--config")
            .arg(repo_root().join("deploy/fast-path.portcullis.yaml"))
            .args(["--fast-path-filter", filter])
            .env("PORTCULLIS_SESSION__SECRET", session_secret())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shipped = std::fs::read_to_string(repo_root().join(file)).unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout) == shipped,
            "{file} is stale: regenerate it with\n  PORTCULLIS_SESSION__SECRET=$(portcullis gen-secret) \
             portcullis envoy-config --config deploy/fast-path.portcullis.yaml --fast-path-filter {filter} > {file}"
        );
    }
}

/// A config the fast path cannot be made from is a clear `error:` line, exit 2, and no output.
#[test]
fn the_generator_refuses_what_it_cannot_express_and_prints_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = |yaml: &str| {
        let path = dir.path().join("portcullis.yaml");
        std::fs::write(&path, yaml).unwrap();
        envoy_config(&path, &[])
    };
    let base = "provider: {issuer: 'https://tenant.example/', client_id: a}\n";
    for (yaml, says) in [
        (base.to_owned(), "pass.enabled: must be true"),
        (
            format!(
                "{base}pass: {{enabled: true}}\nbearer: [{{issuer: 'http://127.0.0.1:9/', audiences: [x]}}]\n"
            ),
            "bearer issuer http://127.0.0.1:9/: discovery failed",
        ),
    ] {
        let out = run(&yaml);
        assert_eq!(out.status.code(), Some(2), "{yaml}");
        assert!(out.stdout.is_empty(), "no partial output");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: ") && err.contains(says), "{err}");
    }
}

/// Envoy cannot sign an upstream assertion: with `upstream.assertion`, every route of the
/// generated bootstrap asks portcullis.
#[test]
fn with_an_upstream_assertion_the_generated_routes_all_ask_portcullis() {
    let dir = tempfile::tempdir().unwrap();
    let routes = |extra: &str| {
        let path = dir.path().join("portcullis.yaml");
        std::fs::write(
            &path,
            format!(
                "provider: {{issuer: 'https://tenant.example/', client_id: a}}\n\
                 bearer: [{{issuer: 'https://tenant.example/', audiences: [x], \
                 jwks_uri: 'https://tenant.example/jwks'}}]\n\
                 upstream: {{authorization: none{extra}}}\npass: {{enabled: true}}\n\
                 routes: [{{name: api, path_prefix: /api/, action: api}}, \
                 {{name: app, path_prefix: /, action: login}}]\n"
            ),
        )
        .unwrap();
        let out = envoy_config(&path, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| l.trim_start().starts_with("# route "))
            .map(|l| l.trim().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        routes(""),
        [
            "# route api: a bearer token or the pass lets Envoy decide",
            "# route app: a bearer token or the pass lets Envoy decide"
        ]
    );
    assert_eq!(
        routes(", assertion: {audience: amundsen}"),
        [
            "# route api: portcullis decides every request",
            "# route app: portcullis decides every request"
        ]
    );
}

/// The callout form asks portcullis on its HTTP port: without one, an `error:` line naming it,
/// exit 2, no output. (Several providers never reach the generator: a pass takes one provider.)
#[test]
fn the_callout_form_refuses_a_config_it_cannot_serve() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.yaml");
    std::fs::write(
        &path,
        "pass: {enabled: true}\nupstream: {authorization: none}\n\
         provider: {issuer: 'https://tenant.example/', client_id: a}\n",
    )
    .unwrap();
    let out = envoy_config(&path, &["--fast-path-filter", "callout"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no partial output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ")
            && err.contains(
                "listen.http_authz (or --portcullis-http): required by --fast-path-filter callout"
            ),
        "{err}"
    );
}
