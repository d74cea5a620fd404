//! The reason portcullis exists: the real Amundsen frontend and metadata service behind the shipped
//! Envoy config and portcullis, a user logged in at the provider in a real browser. Needs
//! `scripts/setup` (Amundsen in .venv-amundsen); run by `scripts/test`.

mod support;

use serde_json::{Value, json};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Amundsen, Chromium, Envoy and the OpenID provider: run scripts/test"]
async fn amundsen_knows_the_user_portcullis_logged_in() {
    let amundsen = Amundsen::start().await;
    amundsen.add_user("alice@example.com").await;
    amundsen.add_user("mallory@example.com").await;

    let grpc = free_port();
    let ports = EnvoyPorts::free(grpc, amundsen.frontend_port);
    let site = format!("http://127.0.0.1:{}", ports.listener);
    let op = Op::start(OpOptions {
        redirect_uris: vec![format!("{site}/authorization-code/callback")],
        post_logout_uris: vec![format!("{site}/")],
        ..OpOptions::auth0()
    })
    .await;
    let _portcullis = Portcullis::start(&format!(
        "listen: {{grpc: '127.0.0.1:{grpc}'}}\n\
         provider:\n  issuer: '{issuer}'\n  client_id: {CLIENT_ID}\n  client_secret: {CLIENT_SECRET}\n\
         \x20 audience: '{AUDIENCE}'\n  extra_auth_params: {{prompt: consent}}\n\
         session: {{secret: '{secret}'}}\n\
         routes:\n\
         - {{name: health, path: /healthcheck, action: public}}\n\
         - {{name: app, path_prefix: /, action: login}}\n",
        issuer = op.issuer,
        secret = session_secret(),
    ))
    .await;
    let envoy = Envoy::from_shipped("envoy/envoy.yaml", ports).await;

    // Log in from the frontend's own API, as the browser app does on load.
    let mut b = Browser::start();
    let at_idp = b.goto(&format!("{}/api/auth_user", envoy.url));
    assert!(
        at_idp["url"].as_str().unwrap().starts_with(&op.issuer),
        "{at_idp}"
    );
    let back = b.login("alice", &envoy.url);
    let user: Value =
        serde_json::from_str(back["text"].as_str().unwrap()).unwrap_or_else(|_| panic!("{back}"));
    assert_eq!(user["user"]["email"], "alice@example.com", "{user}");
    assert_eq!(user["user"]["user_id"], "alice@example.com");

    // The frontend asked metadata for that user with the access token portcullis put upstream.
    let log = amundsen.metadata_access_log();
    let line = log
        .lines()
        .find(|l| l.contains("GET /user/alice@example.com"))
        .unwrap_or_else(|| panic!("metadata never asked for alice:\n{log}"));
    assert!(line.contains("auth=Bearer ey"), "{line}");

    // A page script sending its own identity headers changes nothing.
    let spoofed = b.run(json!({"op": "fetch_spoofed", "url": format!("{}/api/auth_user", envoy.url),
        "headers": {"x-auth-request-email": "mallory@example.com", "x-auth-request-user": "mallory@example.com"}}));
    let user: Value = serde_json::from_str(spoofed["text"].as_str().unwrap())
        .unwrap_or_else(|_| panic!("{spoofed}"));
    assert_eq!(user["user"]["email"], "alice@example.com", "{user}");
    assert!(
        !amundsen.metadata_access_log().contains("/user/mallory"),
        "mallory was never looked up"
    );
}
