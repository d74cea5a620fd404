//! Migrating from flaskoidc: portcullis started from nothing but a flaskoidc `.env` as Amundsen's
//! OIDC guide gives it (sourced by the shell, no config file), behind the shipped Envoy config,
//! with the OpenID provider and Chromium signing in. Needs `scripts/setup`; run by `scripts/test`.

mod support;

use std::process::Command;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Envoy and the OpenID provider: run scripts/test"]
async fn a_flaskoidc_env_alone_runs_portcullis_and_a_browser_signs_in() {
    let upstream = EchoUpstream::start().await;
    let (grpc, admin) = (free_port(), free_port());
    let ports = EnvoyPorts::free(grpc, upstream.port);
    let site = format!("http://127.0.0.1:{}", ports.listener);
    let op = Op::start(OpOptions {
        redirect_uris: vec![format!("{site}/auth")],
        post_logout_uris: vec![format!("{site}/")],
        ..OpOptions::auth0()
    })
    .await;
    // Amundsen's guide, with this provider's values; the two listen lines are the user's own.
    let dotenv = format!(
        "# Amundsen frontend with flaskoidc\n\
         FLASK_OIDC_PROVIDER_NAME=auth0\n\
         FLASK_OIDC_CONFIG_URL={issuer}.well-known/openid-configuration\n\
         FLASK_OIDC_CLIENT_ID={CLIENT_ID}\n\
         FLASK_OIDC_CLIENT_SECRET={CLIENT_SECRET}\n\
         FLASK_OIDC_REDIRECT_URI=/auth\n\
         FLASK_OIDC_OVERWRITE_REDIRECT_URI=/search\n\
         FLASK_OIDC_USER_ID_FIELD=email\n\
         FLASK_OIDC_SCOPES='openid email profile'\n\
         FLASK_OIDC_WHITELISTED_ENDPOINTS='status,healthcheck,health'\n\
         FLASK_OIDC_SECRET_KEY='my flask secret'\n\
         FLASK_OIDC_LOG_LEVEL=INFO\n\
         SQLALCHEMY_DATABASE_URI='sqlite:///sessions.db'\n\
         APP_WRAPPER=flaskoidc\n\
         APP_WRAPPER_CLASS=FlaskOIDC\n\
         PORTCULLIS_LISTEN__GRPC=127.0.0.1:{grpc}\n\
         PORTCULLIS_LISTEN__ADMIN=127.0.0.1:{admin}\n",
        issuer = op.issuer,
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), &dotenv).unwrap();
    let sourced = |args: &str| {
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(format!("set -a; . ./.env; exec \"$0\" {args}"))
            .arg(env!("CARGO_BIN_EXE_portcullis"))
            .current_dir(dir.path());
        for (var, _) in std::env::vars() {
            if var.starts_with("PORTCULLIS_") || var.starts_with("FLASK_OIDC_") {
                cmd.env_remove(var);
            }
        }
        cmd
    };

    // What a migrating user runs first: every variable and what it became, the secrets hidden.
    let checked = sourced("check-config --print").output().unwrap();
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(out.contains("callback_path: /auth"), "{out}");
    assert!(out.contains("after_login: /search"), "{out}");
    assert!(out.contains("name: auth0"), "{out}");
    assert!(
        !out.contains(CLIENT_SECRET) && !out.contains("my flask secret"),
        "{out}"
    );
    assert!(
        out.contains("warning: FLASK_OIDC_SECRET_KEY is 15 characters"),
        "{out}"
    );
    assert!(out.contains("config ok"), "{out}");

    let mut serve = sourced("serve");
    serve.env("RUST_LOG", "portcullis=debug,info");
    let mut proc = Proc::spawn("portcullis", serve, tempdir("portcullis"));
    proc.wait_for_http(&format!("http://127.0.0.1:{admin}/readyz"), 200, None)
        .await;
    let envoy = Envoy::from_shipped("envoy/envoy.yaml", ports).await;

    // flaskoidc's whitelisted endpoints are public; everything else signs in at /auth and lands
    // on flaskoidc's OVERWRITE_REDIRECT_URI.
    let health = http_client()
        .get(format!("{}/healthcheck", envoy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let mut b = Browser::start();
    let at_idp = b.goto(&format!("{}/table_detail/gold/hive/core/users", envoy.url));
    assert!(
        at_idp["url"].as_str().unwrap().starts_with(&op.issuer),
        "{at_idp}"
    );
    b.navigations();
    let back = b.login("hana", &envoy.url);
    assert_eq!(back["url"], format!("{}/search", envoy.url), "{back}");
    assert!(
        b.navigations()
            .iter()
            .any(|u| u.starts_with(&format!("{}/auth?", envoy.url))),
        "the provider came back to flaskoidc's callback path"
    );
    let seen = upstream
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.uri == "/search")
        .expect("the landing page reached the upstream");
    assert_eq!(seen.all("x-auth-request-user"), ["hana@example.com"]);
    proc.assert_running("after the login");
}
