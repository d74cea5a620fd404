//! portcullis: an Envoy external-authorization service that puts OpenID Connect login and bearer
//! JWT checks in front of Amundsen, or anything else Envoy or an Istio mesh routes to.
//!
//! The modules form layers. Each imports only from the layers below it, never in a loop
//! (`scripts/layers` checks it in `scripts/lint`; the order is written down there once):
//!
//! ```text
//! app bootstrap      wiring: config -> core -> listeners; the fast path's Envoy bootstrap
//! grpc  http         adapters: ext_authz gRPC (proto <-> core); HTTP forward-auth; the admin port
//! config             the YAML schema, environment overlays, validation into the types below
//! authz              the pure core: request -> Decision (policy, credentials, login flow)
//! session            browser sessions: cookies, sealing, stores
//! token              JWKS caches, bearer and ID token validation
//! idp                the provider over HTTP: client, discovery, token endpoint
//! audit identity listener metrics proxies readiness secret telemetry proto   leaves: import
//!                    nothing of the crate
//! ```
//!
//! One check, top to bottom:
//!
//! ```text
//! Envoy ext_authz --CheckRequest--> grpc/ (proto -> AuthzRequest)
//!   -> authz::Authorizer::check       path cleaned; callback/logout answered by authz::login;
//!                                     route picked; credential found
//!        -> token::Verifier           bearer: JWKS (token::jwks), signature and claims, token cache
//!        -> session::SessionStore     cookie: open, timeouts; refresh by authz::login (idp::TokenEndpoint)
//!   <- authz::Decision                Allow { headers, cookies } | Deny | Redirect | Page
//! grpc/convert.rs: Decision -> CheckResponse (OkHttpResponse | DeniedHttpResponse)
//! ```
#![forbid(unsafe_code)]

/// The running service: wiring, listeners, background tasks, shutdown.
pub mod app;
/// Audit events: one structured line per security event, on the `audit` log target.
pub mod audit;
/// The pure authorization core: request, policy, credential, login flow, decision.
pub mod authz;
/// `portcullis envoy-config`: the Envoy bootstrap of the native fast path.
pub mod bootstrap;
/// The config file, its environment overlays and validation.
pub mod config;
/// The gRPC adapter: `envoy.service.auth.v3.Authorization` and `grpc.health.v1`.
pub mod grpc;
/// HTTP: the forward-auth adapter (nginx, Traefik, Envoy's HTTP ext_authz) and the admin port.
pub mod http;
/// Who the caller is, once validated.
pub mod identity;
/// The OpenID provider over HTTP: client, discovery, token endpoint.
pub mod idp;
/// Listeners that bound connections: how many, and how long they may stay silent.
pub mod listener;
/// Prometheus metrics.
pub mod metrics;
/// Generated protobuf code, fenced in one module.
pub mod proto;
/// Which peers may say what the original request was (`listen.trusted_proxies`).
pub mod proxies;
/// Whether the service is ready for traffic.
pub mod readiness;
/// Secrets that redact themselves.
pub mod secret;
/// Browser sessions: cookies, sealing, timeouts.
pub mod session;
/// Logging setup.
pub mod telemetry;
/// Fixtures for tests and benchmarks: the test keys, a verifier without an IdP, signed tokens.
#[cfg(any(test, feature = "testing"))]
pub mod testing;
/// Bearer and ID token validation and the key sets it needs.
pub mod token;
