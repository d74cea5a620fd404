//! HTTP endpoints: the forward-auth adapter (nginx, Traefik, Envoy's HTTP ext_authz) and the admin
//! port.

pub mod admin;
pub mod forward;
