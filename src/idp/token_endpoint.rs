//! The token endpoint (RFC 6749 3.2): the code exchange and the refresh, with the client
//! authenticated as configured or, by default, as the provider's discovery document allows.

use serde::Deserialize;
use thiserror::Error;

use super::client::{ClientCredentials, IdpClient};
use super::discovery::ProviderMetadata;
use crate::metrics::IdpEndpoint;

/// What the client asks the token endpoint for.
pub enum Grant<'a> {
    /// The callback's code, with the PKCE verifier and the redirect URI it was issued for.
    AuthorizationCode {
        code: &'a str,
        redirect_uri: &'a str,
        verifier: &'a str,
    },
    RefreshToken(&'a str),
}

impl Grant<'_> {
    /// The `grant_type`, for spans and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AuthorizationCode { .. } => "authorization_code",
            Self::RefreshToken(_) => "refresh_token",
        }
    }
}

/// The token endpoint's answer, as far as portcullis reads it.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub id_token: Option<String>,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
}

/// Why a grant gave no tokens. Bounded: a log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TokenError {
    #[error("the provider's discovery document names no token endpoint")]
    NoEndpoint,
    #[error("the token endpoint could not be reached")]
    Unreachable,
    /// The code or refresh token is no longer good (RFC 6749 5.2): a refresh ends the session.
    #[error("the token endpoint answered invalid_grant")]
    InvalidGrant,
    #[error("the token endpoint answered with an error status")]
    Status,
    #[error("the token endpoint's answer is not a token response")]
    Malformed,
}

impl TokenError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoEndpoint => "no_token_endpoint",
            Self::Unreachable => "unreachable",
            Self::InvalidGrant => "invalid_grant",
            Self::Status => "error_status",
            Self::Malformed => "malformed_response",
        }
    }
}

/// One client of one provider's token endpoint.
pub struct TokenEndpoint {
    client: IdpClient,
    credentials: ClientCredentials,
}

impl TokenEndpoint {
    pub fn new(client: IdpClient, credentials: ClientCredentials) -> Self {
        Self {
            client,
            credentials,
        }
    }

    pub fn client_id(&self) -> &str {
        &self.credentials.client_id
    }

    /// The code exchange or a refresh: span `idp.token` with `grant` (never the code or token).
    #[tracing::instrument(
        target = "portcullis::span",
        level = "trace",
        name = "idp.token",
        skip_all,
        fields(grant = grant.kind())
    )]
    pub async fn grant(
        &self,
        provider: &ProviderMetadata,
        grant: Grant<'_>,
    ) -> Result<TokenResponse, TokenError> {
        let endpoint = provider
            .token_endpoint
            .as_ref()
            .ok_or(TokenError::NoEndpoint)?;
        let form: &[(&str, &str)] = match &grant {
            Grant::AuthorizationCode {
                code,
                redirect_uri,
                verifier,
            } => &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ],
            Grant::RefreshToken(token) => {
                &[("grant_type", "refresh_token"), ("refresh_token", token)]
            }
        };
        let (status, body) = self
            .client
            .post_form(
                IdpEndpoint::token,
                endpoint,
                &self.credentials.client_id,
                self.credentials
                    .auth(&provider.token_endpoint_auth_methods_supported),
                form,
            )
            .await
            .map_err(|_| TokenError::Unreachable)?;
        if status != 200 {
            #[derive(Deserialize)]
            struct OAuthError {
                error: String,
            }
            let invalid_grant = serde_json::from_slice::<OAuthError>(&body)
                .is_ok_and(|e| e.error == "invalid_grant");
            return Err(if invalid_grant {
                TokenError::InvalidGrant
            } else {
                TokenError::Status
            });
        }
        serde_json::from_slice(&body).map_err(|_| TokenError::Malformed)
    }
}
