//! Talking to the OpenID provider: discovery now; the login flow builds on the same client.

pub mod client;
pub mod provider;

pub use client::{IdpClient, IdpError};
pub use provider::ProviderMetadata;
