//! The adapter over real HTTP on loopback, with the fixture keys (no IdP): who is believed, what
//! each asker gets back. The login flow through it is tested with nginx and Chromium
//! (tests/e2e_nginx.rs).

use std::sync::Arc;

use super::*;
use crate::authz::policy::{Action, Policy, Route};
use crate::authz::{Authorizer, IdentityHeaders};
use crate::testing::{claims, rs, verifier};

/// The adapter on a free loopback port, trusting `trusted`; its base URL.
async fn serve(trusted: &[&str]) -> String {
    let mut ops = Route::prefix("ops", "/ops", Action::Api);
    ops.require.groups = vec!["ops".into()];
    let authorizer = Authorizer::new(
        Policy::new(vec![
            Route::prefix("health", "/healthcheck", Action::Public),
            Route::prefix("admin", "/admin", Action::Deny),
            ops,
            Route::prefix("api", "/", Action::Api),
        ]),
        Arc::new(verifier(100)),
        IdentityHeaders::new(
            "x-auth-request-user",
            "x-auth-request-email",
            "x-auth-request-groups",
        ),
    );
    let trusted =
        TrustedProxies::parse(&trusted.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let app = router(
        Arc::new(arc_swap::ArcSwap::from_pointee(authorizer)),
        Arc::new(Metrics::new()),
        trusted,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<Peer>()).await
    });
    base
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// What nginx's auth_request sends for `GET uri` on amundsen.example.com.
fn nginx(base: &str, uri: &str) -> reqwest::RequestBuilder {
    client()
        .get(format!("{base}/_portcullis/auth"))
        .header("x-original-method", "GET")
        .header("x-original-uri", uri)
        .header("x-forwarded-host", "amundsen.example.com")
        .header("x-forwarded-proto", "https")
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn nginx_allows_with_the_identity_and_never_echoes_a_spoofed_header() {
    let base = serve(&["127.0.0.1"]).await;
    let token = rs(&claims());
    let r = nginx(&base, "/ops/x?y=1")
        .bearer_auth(&token)
        .header("x-auth-request-groups", "admins")
        .header("cookie", "theme=dark")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-auth-request-user").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(header(&r, "x-auth-request-groups").as_deref(), Some("ops"));
    // Copied back for a proxy that sets them from this answer: the client's own, unchanged.
    assert_eq!(header(&r, "cookie").as_deref(), Some("theme=dark"));
    assert_eq!(header(&r, "authorization"), Some(format!("Bearer {token}")));

    let mut c = claims();
    c.as_object_mut().unwrap().remove("groups");
    let r = nginx(&base, "/healthcheck")
        .header("x-auth-request-groups", "admins")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-auth-request-groups"), None, "absent: removed");
}

#[tokio::test]
async fn nginx_hears_only_the_statuses_it_understands() {
    let base = serve(&["127.0.0.1"]).await;
    let r = nginx(&base, "/anything").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        header(&r, "www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(nginx(&base, "/admin").send().await.unwrap().status(), 403);
    // A path trick is a 400 to Envoy's clients; nginx would turn 400 into its own 500.
    for trick in ["/ops/../admin", "/admin%2f", "/ops/%2e%2e/admin"] {
        let r = nginx(&base, trick)
            .bearer_auth(rs(&claims()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{trick}");
    }
    let mut c = claims();
    c["groups"] = serde_json::json!(["finance"]);
    let r = nginx(&base, "/ops")
        .bearer_auth(rs(&c))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "unmet group");
}

#[tokio::test]
async fn ingress_nginx_names_the_original_in_one_url() {
    let base = serve(&["127.0.0.1"]).await;
    let ask = |url: &str| {
        client()
            .get(format!("{base}/_portcullis/auth"))
            .header("x-original-method", "GET")
            .header("x-original-url", url)
            .bearer_auth(rs(&claims()))
    };
    let r = ask("https://amundsen.example.com/ops/table?x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = ask("https://amundsen.example.com/admin/x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = ask("https://amundsen.example.com/ops/..%2fadmin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn an_untrusted_peer_names_no_original_request() {
    // Nobody trusted: the same questions, even with a valid token, are refused.
    let base = serve(&["10.0.0.0/8"]).await;
    let r = nginx(&base, "/ops")
        .bearer_auth(rs(&claims()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "x-auth-request-user"), None);
    let r = client()
        .get(format!("{base}/_portcullis/forward"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-host", "amundsen.example.com")
        .header("x-forwarded-uri", "/ops")
        .bearer_auth(rs(&claims()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "invalid_request, said in full to Traefik");
    // The request as received needs no trust: what it asks is what it requests.
    let r = client()
        .get(format!("{base}/ops/x"))
        .bearer_auth(rs(&claims()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-auth-request-groups").as_deref(), Some("ops"));
}

#[tokio::test]
async fn traefik_and_direct_askers_get_the_answer_in_full() {
    let base = serve(&["127.0.0.1"]).await;
    let forward = |uri: &str| {
        client()
            .get(format!("{base}/_portcullis/forward"))
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "amundsen.example.com")
            .header("x-forwarded-uri", uri)
    };
    let r = forward("/ops")
        .bearer_auth(rs(&claims()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-auth-request-email").as_deref(),
        Some("alice@example.com")
    );
    let r = forward("/ops/../admin").send().await.unwrap();
    assert_eq!(r.status(), 400, "the ambiguous path's own status");
    let r = forward("/x").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap();
    assert!(body.contains("authentication required"), "{body}");
    // Missing one of the four: refused, not guessed.
    let r = client()
        .get(format!("{base}/_portcullis/forward"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-host", "amundsen.example.com")
        .bearer_auth(rs(&claims()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client().get(format!("{base}/admin")).send().await.unwrap();
    assert_eq!(r.status(), 403);
}

#[test]
fn the_return_target_stays_on_this_host() {
    let host = "amundsen.example.com";
    assert_eq!(return_path("/table?x=1", host), "/table?x=1");
    assert_eq!(
        return_path("https://amundsen.example.com/search?q=a", host),
        "/search?q=a"
    );
    assert_eq!(return_path("https://AMUNDSEN.example.com", host), "/");
    assert_eq!(return_path("https://evil.example/x", host), "/");
    assert_eq!(
        return_path("https://amundsen.example.com.evil/x", host),
        "/"
    );
    assert_eq!(
        return_path("https://amundsen.example.com@evil/x", host),
        "/"
    );
    assert_eq!(return_path("//evil/x", host), "/");
    assert_eq!(return_path("/\\evil", host), "/");
    assert_eq!(return_path("javascript:alert(1)", host), "/");
    assert_eq!(return_path("", host), "/");
}

/// The native filter's callout asks directly: every answer names its decision, and a bearer JWT's
/// allow says until when the token may stand for it (its `exp`). nginx and Traefik hear neither.
#[tokio::test]
async fn a_direct_asker_hears_the_decision_and_until_when_a_token_stands() {
    let base = serve(&["127.0.0.1"]).await;
    let c = claims();
    let exp = c["exp"].as_u64().unwrap();
    let token = rs(&c);
    let direct = |path: &str| client().get(format!("{base}{path}"));
    let r = direct("/x").bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, DECISION_HEADER).as_deref(), Some("allow bearer"));
    assert_eq!(
        header(&r, REUSE_HEADER),
        Some(format!("bearer {exp}")),
        "the token's own exp"
    );
    let r = direct("/x").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        header(&r, DECISION_HEADER).as_deref(),
        Some("deny missing_credential")
    );
    assert_eq!(header(&r, REUSE_HEADER), None);
    let r = direct("/admin").bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, REUSE_HEADER), None, "no allow, nothing to reuse");
    let r = nginx(&base, "/x").bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        (header(&r, DECISION_HEADER), header(&r, REUSE_HEADER)),
        (None, None)
    );
}
