//! The pure core: one request in, one [`Decision`] out, with no gRPC or HTTP types in sight.
//!
//! Inside, too, each file uses only those listed below it:
//!
//! ```text
//! authorizer    Authorizer::check: path, route, credential, requirements, header changes
//! login/        the browser login flow: start, callback, logout, refresh (each returns a Decision)
//! pass          the fast path's pass for signed-in browsers, as a cookie
//! assertion     the signed identity for the upstream (upstream.assertion)
//! response      how a Decision is said in HTTP (status, headers, body), for every adapter
//! decision      what was decided and why (bounded reasons), and how it is counted
//! credentials   which credential a request carries (form only)
//! policy        the route table and its requirements
//! path          the request path cleaned to one reading; safe return targets
//! request       the request as the core sees it
//! ```

pub mod assertion;
pub mod authorizer;
pub mod credentials;
pub mod decision;
pub mod login;
pub mod pass;
pub mod path;
pub mod policy;
pub mod request;
pub mod response;

pub use authorizer::{Authorizer, IdentityHeaders, ROUTE_EXTENSION, UpstreamAuthorization};

/// The authorizer an adapter asks: read once per request (`load`), swapped whole on a reload.
pub type LiveAuthorizer = std::sync::Arc<arc_swap::ArcSwap<Authorizer>>;
pub use decision::{Allow, AllowReason, Decision, Deny, DenyReason, Held, Reuse};
pub use policy::{Action, Policy, Route, RouteMode, RouteName};
pub use request::AuthzRequest;
pub use response::DenyResponse;
