//! The OpenID provider over HTTP: one bounded client, discovery, the token endpoint, and what it
//! says of opaque tokens (introspection, userinfo). Knows nothing of requests, sessions or
//! decisions; token/ and authz/login/ call it.

pub mod client;
pub mod discovery;
pub mod token_endpoint;
pub mod token_info;

pub use client::{ClientAuth, ClientCredentials, IdpClient, IdpError, TokenEndpointAuth};
pub use discovery::{ProviderMetadata, same_issuer};
pub use token_endpoint::{Grant, TokenEndpoint, TokenError, TokenResponse};
pub use token_info::{Ask, AskError, TokenInfo, TokenInfoClient};
