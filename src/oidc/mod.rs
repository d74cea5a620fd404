//! Talking to the OpenID provider: discovery, the browser login flow, ID tokens.

pub mod client;
pub mod id_token;
pub mod login;
pub mod provider;

pub use client::{IdpClient, IdpError};
pub use provider::ProviderMetadata;
