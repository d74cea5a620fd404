//! Opaque access tokens end to end (`bearer[].opaque`): the test OpenID provider issues them
//! (client credentials, and a user's sign-in in Chromium), portcullis asks the provider about them
//! (RFC 7662 introspection, or userinfo), and a real Envoy runs the shipped config or, with
//! `PORTCULLIS_E2E_ENVOY=fast-path`, the fast path's bootstrap (where an opaque token fails
//! `jwt_authn` and falls through to ext_authz). Needs `scripts/setup`; run by `scripts/test`.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use support::*;

/// How long a positive answer is kept in these tests (`bearer[].opaque_cache`).
const CACHE: u64 = 3;
/// Provider calls a second at most (`bearer[].opaque_rate`).
const RATE: u64 = 5;

struct Stack {
    op: Op,
    portcullis: Portcullis,
    envoy: Envoy,
    upstream: EchoUpstream,
    http: reqwest::Client,
}

impl Stack {
    /// `mode`: `introspect` or `userinfo`.
    async fn start(mode: &str) -> Self {
        let upstream = EchoUpstream::start().await;
        let op = Op::start(OpOptions::auth0()).await;
        let (grpc, admin) = (free_port(), free_port());
        let ports = EnvoyPorts::free(grpc, upstream.port);
        let config = format!(
            "listen: {{grpc: '127.0.0.1:{grpc}', admin: '127.0.0.1:{admin}'}}\n\
             provider:\n  issuer: '{issuer}'\n  client_id: {CLIENT_ID}\n  client_secret: {CLIENT_SECRET}\n  \
             user_id_claim: email\n\
             bearer:\n- issuer: '{issuer}'\n  audiences: ['{AUDIENCE}', '{OPAQUE_AUDIENCE}']\n  \
             opaque: {mode}\n  opaque_cache: {CACHE}s\n  opaque_rate: {RATE}\n\
             session: {{secure: false, secret: '{secret}'}}\n\
             routes:\n\
             - {{name: api, path_prefix: /api/, action: api}}\n\
             - {{name: app, path_prefix: /, action: login}}\n",
            issuer = op.issuer,
            secret = session_secret(),
        );
        let (config, fast) = if fast_path() {
            (with_fast_path(config), true)
        } else {
            (config, false)
        };
        let portcullis = Portcullis::start(&config).await;
        let envoy = if fast {
            Envoy::start(&fast_path_config(&portcullis, ports)).await
        } else {
            Envoy::from_shipped("envoy/envoy.yaml", ports).await
        };
        Self {
            op,
            portcullis,
            envoy,
            upstream,
            http: http_client(),
        }
    }

    async fn api(&self, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/api/tables", self.envoy.url))
            .bearer_auth(token)
            .header("x-auth-request-user", "spoofed")
            .send()
            .await
            .unwrap()
    }

    /// Questions the provider answered (`endpoint`: introspection or userinfo), whatever the answer.
    async fn asked(&self, endpoint: &str) -> u64 {
        let mut n = 0;
        for result in ["ok", "error"] {
            n += self
                .portcullis
                .metric(&format!(
                    "portcullis_idp_request_duration_seconds_count{{endpoint=\"{endpoint}\",result=\"{result}\"}}"
                ))
                .await;
        }
        n
    }

    async fn denied(&self, reason: &str) -> u64 {
        self.portcullis
            .metric(&format!(
                "portcullis_checks_total{{route=\"api\",decision=\"deny\",reason=\"{reason}\"}}"
            ))
            .await
    }
}

fn is_opaque(token: &str) -> bool {
    !portcullis::token::validate::is_jws_shaped(token)
}

#[tokio::test]
#[ignore = "needs Envoy and the OP: run scripts/test"]
async fn an_opaque_token_is_introspected_once_for_many_concurrent_requests() {
    let s = Stack::start("introspect").await;
    let token =
        s.op.client_credentials_token_for(Some(OPAQUE_AUDIENCE))
            .await;
    assert!(is_opaque(&token), "{token}");
    let answers = futures::future::join_all((0..20).map(|_| s.api(&token))).await;
    for r in answers {
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    }
    assert_eq!(
        s.asked("introspection").await,
        1,
        "one question for 20 checks"
    );
    let seen = s.upstream.last();
    assert_eq!(
        seen.all("x-auth-request-user"),
        [CLIENT_ID],
        "the client is who asks"
    );
    assert_eq!(s.api(&token).await.status(), StatusCode::OK);
    assert_eq!(s.asked("introspection").await, 1, "served from the cache");
    // JWTs of the same issuer are verified as ever, with no question.
    let jwt = s.op.client_credentials_token().await;
    assert!(!is_opaque(&jwt));
    assert_eq!(s.api(&jwt).await.status(), StatusCode::OK);
    assert_eq!(s.asked("introspection").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OP: run scripts/test"]
async fn introspection_takes_a_users_token_for_this_api_and_nothing_else() {
    let s = Stack::start("introspect").await;
    let mut browser = Browser::start();
    let tokens =
        s.op.user_tokens(&mut browser, "alice", Some(OPAQUE_AUDIENCE))
            .await;
    let access = tokens["access_token"].as_str().unwrap();
    assert!(is_opaque(access), "{tokens}");
    let r = s.api(access).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let seen = s.upstream.last();
    assert_eq!(seen.all("x-auth-request-user"), ["alice@example.com"]);
    assert_eq!(seen.all("x-auth-request-email"), ["alice@example.com"]);

    // The provider calls a refresh token active too; it is not an access token.
    let refresh = tokens["refresh_token"].as_str().expect("offline_access");
    let r = s.api(refresh).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.denied("token_invalid_claims").await, 1);

    // Opaque tokens for no API (good at userinfo only), a user's and a machine's: not for us.
    browser.run(serde_json::json!({"op": "new_context"}));
    let userinfo_only = s.op.user_tokens(&mut browser, "bob", None).await;
    let machine = s.op.client_credentials_token_for(None).await;
    for token in [userinfo_only["access_token"].as_str().unwrap(), &machine] {
        assert!(is_opaque(token));
        let r = s.api(token).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains("invalid_token"), "{challenge}");
    }
    assert_eq!(s.denied("token_wrong_audience").await, 2);

    // A made-up token: the provider is asked once; the refusal is remembered.
    let before = s.asked("introspection").await;
    for _ in 0..3 {
        assert_eq!(
            s.api("made-up-opaque-token").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(s.asked("introspection").await, before + 1);
    assert_eq!(s.denied("token_inactive").await, 3);
}

#[tokio::test]
#[ignore = "needs Envoy and the OP: run scripts/test"]
async fn a_revoked_token_stops_working_once_its_answer_is_no_longer_cached() {
    let s = Stack::start("introspect").await;
    let token =
        s.op.client_credentials_token_for(Some(OPAQUE_AUDIENCE))
            .await;
    assert_eq!(s.api(&token).await.status(), StatusCode::OK);
    s.op.revoke(&token).await;
    let deadline = Instant::now() + Duration::from_secs(CACHE * 5);
    loop {
        let status = s.api(&token).await.status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            Instant::now() < deadline,
            "still let in {}s after revocation (opaque_cache: {CACHE}s)",
            CACHE * 5
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(s.denied("token_inactive").await >= 1);
}

#[tokio::test]
#[ignore = "needs Envoy and the OP: run scripts/test"]
async fn a_flood_of_made_up_tokens_costs_the_provider_at_most_the_configured_rate() {
    let s = Stack::start("introspect").await;
    let before = s.asked("introspection").await;
    let started = Instant::now();
    let flood = (0..60).map(|i| format!("flood-{i}-{:x}", rand::random::<u64>()));
    let s = &s;
    let answers = futures::future::join_all(flood.map(|t| async move { s.api(&t).await })).await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut not_asked = 0;
    for r in answers {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        if r.text()
            .await
            .unwrap()
            .contains("cannot be checked right now")
        {
            not_asked += 1;
        }
    }
    let asked = s.asked("introspection").await - before;
    // A bucket of RATE, refilled at RATE a second while the flood lasted.
    let bound = RATE + (elapsed * RATE as f64).ceil() as u64;
    assert!(
        asked <= bound,
        "{asked} questions in {elapsed:.1}s, at most {bound}"
    );
    assert_eq!(
        asked + not_asked,
        60,
        "every token asked about or refused unasked"
    );
    assert_eq!(s.denied("token_check_rate_limited").await, not_asked);
    // A real token still gets in once the bucket refills.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let token =
        s.op.client_credentials_token_for(Some(OPAQUE_AUDIENCE))
            .await;
    assert_eq!(s.api(&token).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OP: run scripts/test"]
async fn userinfo_takes_a_users_opaque_token_and_refuses_a_machines() {
    // Auth0's case: a sign-in that names no API gets an opaque token, good at userinfo.
    let s = Stack::start("userinfo").await;
    let mut browser = Browser::start();
    let tokens = s.op.user_tokens(&mut browser, "carol", None).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert!(is_opaque(access));
    for _ in 0..3 {
        let r = s.api(access).await;
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    }
    let seen = s.upstream.last();
    assert_eq!(seen.all("x-auth-request-user"), ["carol@example.com"]);
    assert_eq!(s.asked("userinfo").await, 1, "one question, then the cache");
    // A machine's token names no user: userinfo refuses it.
    let machine =
        s.op.client_credentials_token_for(Some(OPAQUE_AUDIENCE))
            .await;
    assert_eq!(s.api(&machine).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.denied("token_inactive").await, 1);
    assert_eq!(s.asked("introspection").await, 0);
}

/// `check-config` names the endpoint each opaque entry asks, and refuses one its provider does not
/// publish (Auth0 has no introspection endpoint).
#[tokio::test]
#[ignore = "needs the OP: run scripts/test"]
async fn check_config_finds_the_endpoint_opaque_tokens_need() {
    let run = |op: &Op, mode: &str| {
        check_config(&format!(
            "provider: {{issuer: '{issuer}', client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}}}\n\
             bearer: [{{issuer: '{issuer}', audiences: ['{AUDIENCE}'], opaque: {mode}}}]\n",
            issuer = op.issuer
        ))
    };
    let op = Op::start(OpOptions::auth0()).await;
    let (ok, said) = run(&op, "introspect");
    assert!(ok, "{said}");
    assert!(
        said.contains("ok: bearer[0] opaque tokens: introspection at http://127.0.0.1:"),
        "{said}"
    );
    let like_auth0 = Op::start(OpOptions {
        no_introspection: true,
        ..OpOptions::auth0()
    })
    .await;
    let (ok, said) = run(&like_auth0, "introspect");
    assert!(!ok, "{said}");
    assert!(
        said.contains("error: bearer[0].opaque: introspection, but")
            && said.contains("names no introspection_endpoint (Auth0 has none"),
        "{said}"
    );
    let (ok, said) = run(&like_auth0, "userinfo");
    assert!(ok, "{said}");
    assert!(
        said.contains("ok: bearer[0] opaque tokens: userinfo at"),
        "{said}"
    );
}
