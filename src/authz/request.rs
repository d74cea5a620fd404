//! The request as the core sees it: plain Rust, filled by an adapter (gRPC today, HTTP later).

use std::collections::HashMap;

use crate::session::Jar;

/// What the authorizer needs of one HTTP request. Header names are lowercase (Envoy sends them so).
#[derive(Debug, Clone, Default)]
pub struct AuthzRequest {
    pub method: String,
    /// The `:authority` (host and maybe port).
    pub authority: String,
    /// `http` or `https`, as Envoy saw the request; empty when unknown.
    pub scheme: String,
    /// The path exactly as received: query included, not percent-decoded.
    pub path: String,
    pub headers: HashMap<String, String>,
    /// Per-route settings from Envoy (`context_extensions`).
    pub context: HashMap<String, String>,
}

impl AuthzRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The `Cookie` header split into its pairs: parse once, read as often as needed.
    pub fn cookies(&self) -> Jar<'_> {
        Jar::parse(self.header("cookie").unwrap_or_default())
    }
}
