//! Back-channel logout across replicas: two portcullis processes sharing Redis (cookie-store
//! sessions), the provider's logout token posted to one, the session refused by the other within
//! a second. Asked over the HTTP adapter directly (no proxy needed for the question). Browser
//! sign-out at the real provider through nginx: tests/e2e_nginx.rs. Needs `scripts/setup`.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis and the OpenID provider: run scripts/test"]
async fn a_logout_token_posted_to_one_replica_ends_the_session_on_the_other() {
    let redis = Redis::start().await;
    let op = Op::start(OpOptions::auth0()).await;
    let secret = session_secret();
    let replica = async || {
        let port = free_port();
        let p = Portcullis::start(&format!(
            "listen: {{http_authz: '127.0.0.1:{port}'}}\n\
             provider: {{issuer: '{issuer}', client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}}}\n\
             login: {{backchannel_logout_path: /backchannel-logout}}\n\
             session: {{secure: false, secret: '{secret}', redis: {{url: '{redis}'}}}}\n\
             routes: [{{name: app, path_prefix: /, action: login}}]\n",
            issuer = op.issuer,
            redis = redis.url,
        ))
        .await;
        (p, format!("http://127.0.0.1:{port}"))
    };
    let ((_a, a), (_b, b)) = (replica().await, replica().await);
    let http = http_client();
    let cookie = session_cookie(&secret, false, "fay@example.com", "at").await;
    let other = session_cookie(&secret, false, "gus@example.com", "at").await;
    let status = async |base: &str, cookie: &str| {
        status_with_cookie(&format!("{base}/page"), Some("app.example"), cookie).await
    };
    assert_eq!(
        (status(&a, &cookie).await, status(&b, &cookie).await),
        (200, 200)
    );

    // The provider's logout token for fay (its key is fixture rs256-a), posted to replica a.
    let token = mint(
        "rs256-a",
        &json!({
            "iss": op.issuer, "aud": CLIENT_ID, "iat": now(), "exp": now() + 120,
            "jti": "one-logout", "sub": "auth0|fay@example.com",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        }),
    );
    let posted = http
        .post(format!("{a}/backchannel-logout"))
        .form(&[("logout_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let ended_at = Instant::now();
    assert_eq!(
        status(&a, &cookie).await,
        401,
        "at once where it was posted"
    );
    while status(&b, &cookie).await != 401 {
        assert!(
            ended_at.elapsed() < Duration::from_secs(1),
            "replica b still accepts the session a second later"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status(&b, &other).await,
        200,
        "another user's session goes on"
    );
    // The same token at the other replica is a replay there too.
    let again = http
        .post(format!("{b}/backchannel-logout"))
        .form(&[("logout_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
}

#[tokio::test]
#[ignore = "needs the OpenID provider: run scripts/test"]
async fn check_config_names_the_url_to_register_and_where_it_is_served() {
    let op = Op::start(OpOptions::auth0()).await;
    let run = |listen: &str| {
        let (ok, said) = check_config(&format!(
            "{listen}provider: {{issuer: '{issuer}', client_id: {CLIENT_ID}}}\n\
             login: {{backchannel_logout_path: /bc-logout, \
             redirect_uri: 'https://amundsen.example/authorization-code/callback'}}\n\
             session: {{secret: '{secret}'}}\n",
            issuer = op.issuer,
            secret = session_secret(),
        ));
        assert!(ok, "{said}");
        said
    };
    let served = run("listen: {http_authz: '127.0.0.1:9002'}\n");
    assert!(
        served.contains(
            "register at the provider: backchannel_logout_uri https://amundsen.example/bc-logout"
        ),
        "{served}"
    );
    assert!(!served.contains("nowhere to go"), "{served}");
    let unserved = run("");
    assert!(
        unserved.contains("warning: login.backchannel_logout_path is served on listen.http_authz"),
        "{unserved}"
    );
}

/// The fast path's generated bootstrap routes the provider's POST to portcullis's HTTP port,
/// past `jwt_authn` and ext_authz (its logout token is the credential).
#[tokio::test]
#[ignore = "needs Envoy and the OpenID provider: run scripts/test"]
async fn the_generated_envoy_routes_logout_tokens_to_portcullis() {
    let op = Op::start(OpOptions::auth0()).await;
    let upstream = EchoUpstream::start().await;
    let (grpc, admin, http) = (free_port(), free_port(), free_port());
    let secret = session_secret();
    let portcullis = Portcullis::start(&format!(
        "listen: {{grpc: '127.0.0.1:{grpc}', admin: '127.0.0.1:{admin}', http_authz: '127.0.0.1:{http}'}}\n\
         provider: {{issuer: '{issuer}', client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}}}\n\
         login: {{backchannel_logout_path: /backchannel-logout}}\n\
         session: {{secure: false, secret: '{secret}'}}\n\
         pass: {{enabled: true}}\nupstream: {{authorization: none}}\n\
         routes: [{{name: app, path_prefix: /, action: login}}]\n",
        issuer = op.issuer,
    ))
    .await;
    let envoy = Envoy::start(&fast_path_config(
        &portcullis,
        EnvoyPorts::free(grpc, upstream.port),
    ))
    .await;
    let cookie = session_cookie(&secret, false, "hal@example.com", "at").await;
    let page = async || status_with_cookie(&format!("{}/page", envoy.url), None, &cookie).await;
    assert_eq!(page().await, 200);
    let post = async |token: &str| {
        let r = http_client()
            .post(format!("{}/backchannel-logout", envoy.url))
            .form(&[("logout_token", token)])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    // A forged one: portcullis's own 400 with its reason, not ext_authz's 401.
    let forged = mint(
        "rs256-b",
        &json!({"iss": op.issuer, "aud": CLIENT_ID, "iat": now(), "exp": now() + 120,
            "jti": "forged", "sub": "auth0|hal@example.com",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}),
    );
    let (status, body) = post(&forged).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("error_description"), "{body}");
    let real = mint(
        "rs256-a",
        &json!({"iss": op.issuer, "aud": CLIENT_ID, "iat": now(), "exp": now() + 120,
            "jti": "through-envoy", "sub": "auth0|hal@example.com",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}),
    );
    assert_eq!(post(&real).await.0, 200);
    assert_eq!(page().await, 401, "the session ended");
    assert!(
        upstream
            .requests()
            .iter()
            .all(|r| !r.uri.contains("backchannel"))
    );
}
