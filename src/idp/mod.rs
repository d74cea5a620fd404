//! The OpenID provider over HTTP: one bounded client, discovery, and the token endpoint. Knows
//! nothing of requests, sessions or decisions; token/ and authz/login/ call it.

pub mod client;
pub mod discovery;
pub mod token_endpoint;

pub use client::{ClientAuth, IdpClient, IdpError};
pub use discovery::{ProviderMetadata, same_issuer};
pub use token_endpoint::{Grant, TokenEndpoint, TokenEndpointAuth, TokenError, TokenResponse};
