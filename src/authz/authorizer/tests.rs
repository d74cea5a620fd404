//! The whole core, request in, decision out, with the fixture keys installed (no IdP, no Envoy).

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::authz::decision::DecisionKind;
use crate::authz::policy::{self, RouteMode};
use crate::testing::{claims, rs, verifier};

fn authorizer() -> Authorizer {
    let mut ops = Route::prefix("ops", "/ops", Action::Api);
    ops.require.groups = vec!["ops".into()];
    let mut finance = Route::prefix("finance", "/finance", Action::Api);
    finance.require.groups = vec!["finance".into()];
    Authorizer::new(
        Policy::new(vec![
            Route::prefix("health", "/healthcheck", Action::Public),
            Route::prefix("admin", "/admin", Action::Deny),
            ops,
            finance,
            Route::prefix("app", "/", Action::Login),
        ]),
        Arc::new(verifier(100)),
        IdentityHeaders::new(
            "x-auth-request-user",
            "x-auth-request-email",
            "x-auth-request-groups",
        ),
    )
}

fn request(path: &str, token: Option<&str>) -> AuthzRequest {
    let mut r = AuthzRequest {
        method: "GET".into(),
        authority: "amundsen.example.com".into(),
        path: path.into(),
        ..Default::default()
    };
    if let Some(t) = token {
        r.headers
            .insert("authorization".into(), format!("Bearer {t}"));
    }
    r
}

fn denied(d: Decision) -> (String, DenyReason) {
    match d {
        Decision::Deny(d) => (d.route.to_string(), d.reason),
        other => panic!("not a deny: {other:?}"),
    }
}

fn allowed(d: Decision) -> Allow {
    match d {
        Decision::Allow(a) => a,
        other => panic!("not allowed: {other:?}"),
    }
}

fn set<'a>(a: &'a Allow, name: &str) -> Option<&'a str> {
    a.set_headers
        .iter()
        .find(|(n, _)| &**n == name)
        .map(|(_, v)| v.as_str())
}

fn removed(a: &Allow) -> Vec<String> {
    a.remove_headers.iter().map(|n| n.to_string()).collect()
}

#[tokio::test]
async fn a_valid_bearer_sets_every_identity_header_and_removes_only_the_rest() {
    let a = allowed(
        authorizer()
            .check(&request("/ops/x?y=1", Some(&rs(&claims()))))
            .await,
    );
    assert_eq!(a.reason, AllowReason::Bearer);
    assert_eq!(set(&a, "x-auth-request-user"), Some("alice@example.com"));
    assert_eq!(set(&a, "x-auth-request-email"), Some("alice@example.com"));
    assert_eq!(set(&a, "x-auth-request-groups"), Some("ops"));
    assert_eq!(
        removed(&a),
        [
            "x_auth_request_user",
            "x_auth_request_email",
            "x_auth_request_groups"
        ],
        "underscore spellings always go; set headers are overwritten, not removed"
    );
    assert_eq!(a.identity.unwrap().subject, "auth0|123");
}

#[tokio::test]
async fn public_routes_strip_client_identity_headers() {
    let a = allowed(authorizer().check(&request("/healthcheck", None)).await);
    assert_eq!(a.reason, AllowReason::Public);
    assert!(a.set_headers.is_empty());
    assert_eq!(removed(&a).len(), 6);
    assert!(a.identity.is_none());
}

#[tokio::test]
async fn missing_claims_mean_removed_headers() {
    let mut c = claims();
    c.as_object_mut().unwrap().remove("groups");
    let a = allowed(authorizer().check(&request("/", Some(&rs(&c)))).await);
    assert_eq!(set(&a, "x-auth-request-groups"), None);
    assert!(removed(&a).contains(&"x-auth-request-groups".to_owned()));
}

#[tokio::test]
async fn header_values_with_control_characters_are_never_set() {
    let mut c = claims();
    c["groups"] = json!(["ops\r\nx-injected: 1"]);
    let a = allowed(authorizer().check(&request("/", Some(&rs(&c)))).await);
    assert_eq!(set(&a, "x-auth-request-groups"), None);
    assert!(removed(&a).contains(&"x-auth-request-groups".to_owned()));
}

#[tokio::test]
async fn denials_carry_route_and_reason() {
    let z = authorizer();
    assert_eq!(
        denied(z.check(&request("/", None)).await),
        ("app".into(), DenyReason::MissingCredential)
    );
    assert_eq!(
        denied(z.check(&request("/admin", Some(&rs(&claims())))).await),
        ("admin".into(), DenyReason::RouteDenied)
    );
    assert_eq!(
        denied(z.check(&request("/finance/q", Some(&rs(&claims())))).await),
        (
            "finance".into(),
            DenyReason::Requirement(policy::Unmet::Group)
        )
    );
    assert_eq!(
        denied(z.check(&request("/healthcheck/../admin", None)).await),
        (
            "none".into(),
            DenyReason::Path(path::PathRejection::DotSegment)
        )
    );
    assert_eq!(
        denied(z.check(&request("/", Some("x.y.z"))).await).1,
        DenyReason::Token(crate::token::TokenRejection::Malformed)
    );
    let mut r = request("/", None);
    r.headers
        .insert("authorization".into(), "Bearer a b".into());
    assert_eq!(
        denied(z.check(&r).await).1,
        DenyReason::MalformedAuthorization
    );
    let empty = AuthzRequest::default();
    assert_eq!(denied(z.check(&empty).await).1, DenyReason::InvalidRequest);
}

#[tokio::test]
async fn envoy_can_name_the_route_through_context_extensions() {
    let z = authorizer();
    let mut r = request("/anything", None);
    r.context.insert(ROUTE_EXTENSION.into(), "health".into());
    assert_eq!(allowed(z.check(&r).await).route.as_str(), "health");
    r.context.insert(ROUTE_EXTENSION.into(), "admin".into());
    assert_eq!(
        denied(z.check(&r).await),
        ("admin".into(), DenyReason::RouteDenied)
    );
    r.context
        .insert(ROUTE_EXTENSION.into(), "no-such-route".into());
    assert_eq!(
        denied(z.check(&r).await),
        ("none".into(), DenyReason::NoRoute)
    );
    // Paths are still cleaned first.
    let mut r = request("/a/../b", None);
    r.context.insert(ROUTE_EXTENSION.into(), "health".into());
    assert_eq!(
        denied(z.check(&r).await).1,
        DenyReason::Path(path::PathRejection::DotSegment)
    );
}

/// The test authorizer with every route in shadow mode.
fn shadowing() -> Authorizer {
    let z = authorizer();
    let routes = z
        .policy
        .routes()
        .iter()
        .cloned()
        .map(|mut r| {
            r.mode = RouteMode::Shadow;
            r
        })
        .collect();
    Authorizer {
        policy: Policy::new(routes),
        ..z
    }
}

#[tokio::test]
async fn a_shadow_route_lets_through_what_it_would_deny_anonymously_and_says_why() {
    let z = shadowing();
    let mut forged = request("/ops/x", Some("not.a.token"));
    forged
        .headers
        .insert("x-auth-request-user".into(), "mallory".into());
    let mut bob = claims();
    bob["groups"] = json!(["finance"]);
    for (req, route, would, reason) in [
        (
            request("/ops/x", None),
            "ops",
            DecisionKind::Deny,
            "missing_credential",
        ),
        (forged, "ops", DecisionKind::Deny, "token_malformed"),
        (
            request("/ops/x", Some(&rs(&bob))),
            "ops",
            DecisionKind::Deny,
            "group_required",
        ),
        (
            request("/admin", None),
            "admin",
            DecisionKind::Deny,
            "route_denied",
        ),
    ] {
        let a = allowed(z.check(&req).await);
        assert_eq!(a.route.to_string(), route);
        assert_eq!(a.reason, AllowReason::Shadow { would, reason }, "{route}");
        assert!(a.set_headers.is_empty(), "no identity: {:?}", a.set_headers);
        // Who would have been refused, known only for an unmet requirement: for the audit event
        // (the adapters give Envoy the shadow's `would`, never this identity).
        assert_eq!(
            a.identity.as_ref().map(|p| p.user.as_str()),
            (reason == "group_required").then_some("alice@example.com")
        );
        assert!(removed(&a).contains(&"x-auth-request-user".to_owned()));
        assert!(a.set_cookies.is_empty());
        assert_eq!(a.reason.shadowed().unwrap(), format!("deny:{reason}"));
    }
}

#[tokio::test]
async fn a_shadow_route_allows_what_it_would_allow_exactly_as_enforced() {
    let token = rs(&claims());
    let shadow = allowed(shadowing().check(&request("/ops/x", Some(&token))).await);
    let enforced = allowed(authorizer().check(&request("/ops/x", Some(&token))).await);
    assert_eq!(shadow.reason, AllowReason::Bearer);
    assert_eq!(shadow.reason.shadowed(), None);
    assert_eq!(shadow.set_headers, enforced.set_headers);
    assert_eq!(shadow.remove_headers, enforced.remove_headers);
    // A request no route takes is refused in any mode: shadow belongs to routes.
    let mut bad = request("/x", None);
    bad.authority = "a b".into();
    assert!(matches!(shadowing().check(&bad).await, Decision::Deny(_)));
}

#[tokio::test]
async fn recorded_decisions_are_audit_events_that_name_the_user_and_never_the_token() {
    let log = crate::testing::AuditLog::capture();
    let metrics = crate::metrics::Metrics::new();
    let mut finance = claims();
    finance["groups"] = json!(["finance"]);
    let token = rs(&finance);
    let z = authorizer();
    for (path, token) in [
        ("/ops/x", Some(token.as_str())),
        ("/admin", None),
        ("/ops/x", Some("not.a.token")),
        ("/healthcheck", None),
    ] {
        z.check(&request(path, token))
            .await
            .record(&metrics, std::time::Duration::ZERO);
    }
    // Shadowed: let through, the would-be refusal and its user recorded.
    shadowing()
        .check(&request("/ops/x", Some(&token)))
        .await
        .record(&metrics, std::time::Duration::ZERO);
    let events = log.events();
    let summary: Vec<(&str, &str, &str, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap(),
                e["route"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
                e["user"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "request_denied",
                "ops",
                "group_required",
                Some("alice@example.com")
            ),
            ("request_denied", "admin", "route_denied", None),
            ("request_denied", "ops", "token_malformed", None),
            (
                "request_shadowed",
                "ops",
                "group_required",
                Some("alice@example.com")
            ),
        ],
        "an allowed request is no audit event: {events:?}"
    );
    assert_eq!(events[3]["would"], "deny");
    assert!(events.iter().all(|e| e["target"] == "audit"));
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        !text.contains(&token[..20]) && !text.contains("not.a.token"),
        "{text}"
    );
}

#[tokio::test]
async fn a_failed_callback_and_a_logout_without_a_session_are_audit_events_too() {
    use crate::authz::decision::{Page, PageReason, Redirect, RedirectReason};
    let log = crate::testing::AuditLog::capture();
    let metrics = crate::metrics::Metrics::new();
    let route = RouteName::new("login");
    Decision::Page(Page {
        route: route.clone(),
        reason: PageReason::ReplayedState,
        retry: "/".into(),
        set_cookies: Vec::new(),
    })
    .record(&metrics, std::time::Duration::ZERO);
    Decision::Redirect(Redirect {
        route: route.clone(),
        reason: RedirectReason::Logout,
        identity: None,
        location: "/".into(),
        set_cookies: Vec::new(),
    })
    .record(&metrics, std::time::Duration::ZERO);
    // Sent to log in: no event (every first visit is one).
    Decision::Redirect(Redirect {
        route,
        reason: RedirectReason::Login,
        identity: None,
        location: "/".into(),
        set_cookies: Vec::new(),
    })
    .record(&metrics, std::time::Duration::ZERO);
    let events = log.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["event"], "login_failed");
    assert_eq!(events[0]["reason"], "callback_replayed_state");
    assert_eq!(events[1]["event"], "logout");
    assert!(events[1].get("user").is_none(), "{events:?}");
}

#[tokio::test]
async fn an_assertion_goes_with_every_caller_and_a_clients_own_never() {
    use crate::authz::assertion::{AssertionSettings, AssertionSigner};
    use crate::token::pass::PassKeys;
    let keys = Arc::new(PassKeys::derive(&[crate::secret::Secret::new(
        crate::secret::generate_base64(32),
    )]));
    let signer = AssertionSigner::new(
        AssertionSettings {
            header: Arc::from("x-portcullis-assertion"),
            issuer: "https://portcullis.invalid/".into(),
            audience: "amundsen".into(),
            lifetime: std::time::Duration::from_secs(60),
        },
        keys.clone(),
    );
    let authz = authorizer().with_assertion(signer);
    let mut req = request("/ops/x", Some(&rs(&claims())));
    req.headers
        .insert("x-portcullis-assertion".into(), "forged".into());
    let a = allowed(authz.check(&req).await);
    let jwt = set(&a, "x-portcullis-assertion").expect("signed for the caller");
    let said: serde_json::Value = keys.open_as(jwt).unwrap();
    assert_eq!(
        (said["route"].as_str(), said["aud"].as_str()),
        (Some("ops"), Some("amundsen"))
    );
    assert_eq!(said["user"], set(&a, "x-auth-request-user").unwrap());
    assert!(removed(&a).contains(&"x_portcullis_assertion".to_owned()));
    assert!(!removed(&a).contains(&"x-portcullis-assertion".to_owned()));

    // No caller, no assertion: the client's copies (both spellings) are removed.
    let a = allowed(authz.check(&request("/healthcheck", None)).await);
    assert_eq!(set(&a, "x-portcullis-assertion"), None);
    for name in ["x-portcullis-assertion", "x_portcullis_assertion"] {
        assert!(removed(&a).contains(&name.to_owned()), "{name}");
    }
}
