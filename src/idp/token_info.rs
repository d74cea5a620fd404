//! What the provider says about an access token it issued, for opaque tokens: RFC 7662
//! introspection (portcullis authenticates as a client) or the userinfo endpoint (the token is
//! its own credential). The answer's claims come back as they are; token/ judges them.

use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;
use url::Url;

use super::client::{ClientCredentials, IdpClient};
use super::discovery::ProviderMetadata;
use crate::metrics::IdpEndpoint;

/// The provider's verdict on one token.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenInfo {
    /// The token is good; its claims (introspection: `active` removed; userinfo: the user's).
    Active(Map<String, Value>),
    /// The provider does not know it, or no longer honours it.
    Inactive,
}

/// Why the provider gave no verdict. Bounded: a log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AskError {
    #[error("the provider's discovery document names no {0} endpoint")]
    NoEndpoint(&'static str),
    #[error("the provider could not be reached")]
    Unreachable,
    #[error("the provider answered with HTTP status {0}")]
    Status(u16),
    #[error("the provider's answer is not a valid document")]
    Malformed,
}

/// Which endpoint is asked.
#[derive(Debug, Clone)]
pub enum Ask {
    Introspect(ClientCredentials),
    Userinfo,
}

impl Ask {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Introspect(_) => "introspection",
            Self::Userinfo => "userinfo",
        }
    }

    /// The endpoint asked, as the provider's discovery document names it.
    pub fn endpoint<'m>(&self, provider: &'m ProviderMetadata) -> Result<&'m Url, AskError> {
        match self {
            Self::Introspect(_) => provider.introspection_endpoint.as_ref(),
            Self::Userinfo => provider.userinfo_endpoint.as_ref(),
        }
        .ok_or(AskError::NoEndpoint(self.kind()))
    }
}

/// Asks one provider about tokens.
pub struct TokenInfoClient {
    client: IdpClient,
    ask: Ask,
}

impl TokenInfoClient {
    pub fn new(client: IdpClient, ask: Ask) -> Self {
        Self { client, ask }
    }

    pub fn ask(&self) -> &Ask {
        &self.ask
    }

    /// One question: span `idp.token_info` with `endpoint` (never the token).
    #[tracing::instrument(
        target = "portcullis::span",
        level = "trace",
        name = "idp.token_info",
        skip_all,
        fields(endpoint = self.ask.kind())
    )]
    pub async fn info(
        &self,
        provider: &ProviderMetadata,
        token: &str,
    ) -> Result<TokenInfo, AskError> {
        match &self.ask {
            Ask::Introspect(credentials) => self.introspect(provider, credentials, token).await,
            Ask::Userinfo => self.userinfo(provider, token).await,
        }
    }

    async fn introspect(
        &self,
        provider: &ProviderMetadata,
        credentials: &ClientCredentials,
        token: &str,
    ) -> Result<TokenInfo, AskError> {
        let url = self.ask.endpoint(provider)?;
        let auth = credentials.auth(&provider.introspection_endpoint_auth_methods_supported);
        let (status, body) = self
            .client
            .post_form(
                IdpEndpoint::introspection,
                url,
                &credentials.client_id,
                auth,
                &[("token", token), ("token_type_hint", "access_token")],
            )
            .await
            .map_err(|_| AskError::Unreachable)?;
        if status != 200 {
            return Err(AskError::Status(status));
        }
        #[derive(Deserialize)]
        struct Introspection {
            active: bool,
            #[serde(flatten)]
            claims: Map<String, Value>,
        }
        let answer: Introspection =
            serde_json::from_slice(&body).map_err(|_| AskError::Malformed)?;
        Ok(if answer.active {
            TokenInfo::Active(answer.claims)
        } else {
            TokenInfo::Inactive
        })
    }

    async fn userinfo(
        &self,
        provider: &ProviderMetadata,
        token: &str,
    ) -> Result<TokenInfo, AskError> {
        let url = self.ask.endpoint(provider)?;
        let (status, body) = self
            .client
            .get_with_token(IdpEndpoint::userinfo, url, token)
            .await
            .map_err(|_| AskError::Unreachable)?;
        match status {
            200 => serde_json::from_slice::<Map<String, Value>>(&body)
                .map(TokenInfo::Active)
                .map_err(|_| AskError::Malformed),
            // RFC 6750 3.1: invalid_token is a 401; a token without the scope for it, a 403.
            401 | 403 => Ok(TokenInfo::Inactive),
            other => Err(AskError::Status(other)),
        }
    }
}
