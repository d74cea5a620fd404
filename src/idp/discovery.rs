//! OpenID Connect discovery: the provider's metadata, fetched from its issuer URL.

use serde::Deserialize;
use url::Url;

use super::client::{IdpClient, IdpError};
use crate::metrics::IdpEndpoint;

/// The part of the discovery document portcullis uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub jwks_uri: Url,
    #[serde(default)]
    pub authorization_endpoint: Option<Url>,
    #[serde(default)]
    pub token_endpoint: Option<Url>,
    #[serde(default)]
    pub end_session_endpoint: Option<Url>,
    /// Absent means `client_secret_basic` only (OIDC Discovery 3).
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// RFC 7662 introspection (RFC 8414 names it here); for `bearer[].opaque: introspect`.
    #[serde(default)]
    pub introspection_endpoint: Option<Url>,
    /// Absent means `client_secret_basic` (RFC 8414 2).
    #[serde(default)]
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    /// For `bearer[].opaque: userinfo`.
    #[serde(default)]
    pub userinfo_endpoint: Option<Url>,
}

/// `https://t.auth0.com/` -> `https://t.auth0.com/.well-known/openid-configuration` (OIDC Discovery 4).
pub fn discovery_url(issuer: &str) -> Result<Url, url::ParseError> {
    Url::parse(&format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    ))
}

/// Whether two issuer identifiers name the same issuer. Only a trailing `/` may differ: Auth0's
/// issuer ends in one and users often leave it off; the discovered value is used from then on.
pub fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

impl ProviderMetadata {
    #[tracing::instrument(
        target = "portcullis::span",
        level = "trace",
        name = "oidc.discovery",
        skip_all
    )]
    pub async fn discover(client: &IdpClient, issuer: &str) -> Result<Self, IdpError> {
        let url = discovery_url(issuer).map_err(|e| IdpError::Document {
            url: issuer.to_owned(),
            detail: e.to_string(),
        })?;
        let body = client.get_json(IdpEndpoint::discovery, &url).await?;
        let metadata: Self = serde_json::from_slice(&body).map_err(|e| IdpError::Document {
            url: url.to_string(),
            detail: e.to_string(),
        })?;
        // OIDC Discovery 4.3: the document must be about the issuer we asked for.
        if !same_issuer(&metadata.issuer, issuer) {
            return Err(IdpError::Document {
                url: url.to_string(),
                detail: format!("issuer is {:?}, expected {issuer:?}", metadata.issuer),
            });
        }
        Ok(metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_url_drops_one_trailing_slash() {
        assert_eq!(
            discovery_url("https://t.auth0.com/").unwrap().as_str(),
            "https://t.auth0.com/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://idp.example/realms/x")
                .unwrap()
                .as_str(),
            "https://idp.example/realms/x/.well-known/openid-configuration"
        );
    }

    #[test]
    fn issuers_differ_only_by_trailing_slash() {
        assert!(same_issuer("https://t.auth0.com/", "https://t.auth0.com"));
        assert!(!same_issuer("https://t.auth0.com/", "https://u.auth0.com/"));
        assert!(!same_issuer(
            "https://t.auth0.com/a",
            "https://t.auth0.com/"
        ));
    }
}
