//! portcullis: an Envoy external-authorization service that puts OpenID Connect login and bearer
//! JWT checks in front of Amundsen, or anything else Envoy or an Istio mesh routes to.
//!
//! One check, top to bottom:
//!
//! ```text
//! Envoy ext_authz --CheckRequest--> grpc/ (proto -> AuthzRequest)
//!   -> authz::Authorizer::check       path cleaned; callback/logout answered by oidc::login;
//!                                     route picked; credential found
//!        -> token::Verifier           bearer: JWKS (token::jwks), signature and claims, token cache
//!        -> session::SessionStore     cookie: open, timeouts, refresh (oidc::login), store
//!   <- authz::Decision                Allow { headers, cookies } | Deny | Redirect | Page
//! grpc/convert.rs: Decision -> CheckResponse (OkHttpResponse | DeniedHttpResponse)
//! ```
#![forbid(unsafe_code)]

/// The running service: wiring, listeners, background tasks, shutdown.
pub mod app;
/// The pure authorization core: request, policy, credential, decision.
pub mod authz;
/// The config file, its environment overlays and validation.
pub mod config;
/// The gRPC adapter: `envoy.service.auth.v3.Authorization` and `grpc.health.v1`.
pub mod grpc;
/// The admin HTTP port: `/metrics`, `/healthz`, `/readyz`.
pub mod http;
/// Prometheus metrics.
pub mod metrics;
/// Talking to the OpenID provider.
pub mod oidc;
/// Generated protobuf code, fenced in one module.
pub mod proto;
/// Secrets that redact themselves.
pub mod secret;
/// Browser sessions: cookies, sealing, timeouts.
pub mod session;
/// Logging setup.
pub mod telemetry;
/// Bearer JWT validation and the key sets it needs.
pub mod token;
