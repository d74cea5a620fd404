//! The config: read from YAML (unknown keys refused), overlaid with the environment (`PORTCULLIS_*`
//! and flaskoidc's names), and validated into the [`Config`] the service runs with. Every problem
//! is reported, one line each, before any port is bound.
//!
//! ```text
//! mod.rs        Config (what the service runs with), load
//! file.rs       the YAML schema and its defaults
//! env.rs        PORTCULLIS_SECTION__KEY
//! flaskoidc.rs  a flaskoidc .env's names
//! validate.rs   schema -> Config, every problem collected
//! ```

mod env;
mod file;
mod flaskoidc;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};
use thiserror::Error;
use url::Url;

use crate::authz::{IdentityHeaders, Policy, UpstreamAuthorization};
use crate::idp::TokenEndpointAuth;
use crate::secret::Secret;
use crate::session::StoreKind;
use crate::telemetry::LogFormat;
use file::FileConfig;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// One line per problem.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

#[derive(Debug)]
pub struct Config {
    pub listen: Listen,
    pub provider: Provider,
    pub bearer: Vec<BearerIssuer>,
    pub login: Login,
    pub session: SessionConfig,
    pub policy: Policy,
    pub identity_headers: IdentityHeaders,
    pub upstream_authorization: UpstreamAuthorization,
    pub log: Log,
}

#[derive(Debug, Clone, Copy)]
pub struct Listen {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub drain_delay: Duration,
}

#[derive(Debug)]
pub struct Provider {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    pub extra_auth_params: BTreeMap<String, String>,
    pub user_id_claim: String,
    pub groups_claim: String,
    pub jwks_refresh_interval: Duration,
    pub jwks_min_refetch_interval: Duration,
    pub leeway: Duration,
    pub token_endpoint_auth_method: Option<TokenEndpointAuth>,
}

#[derive(Debug, Clone)]
pub struct BearerIssuer {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks_uri: Option<Url>,
}

#[derive(Debug)]
pub struct Login {
    pub callback_path: String,
    pub redirect_uri: Option<Url>,
    pub logout_path: String,
    pub post_logout_redirect: String,
    pub allowed_redirect_hosts: Vec<String>,
}

#[derive(Debug)]
pub struct SessionConfig {
    pub store: StoreKind,
    pub cookie_name: String,
    pub secure: bool,
    /// Decoded keys; the first seals, all open. Empty until a secret is configured.
    pub keys: Vec<Secret>,
    pub refresh_before: Duration,
    pub absolute_timeout: Duration,
    pub idle_timeout: Duration,
    pub redis_url: Option<Secret>,
}

#[derive(Debug)]
pub struct Log {
    pub format: LogFormat,
    pub level: String,
    pub envoy_metadata: EnvoyMetadata,
}

/// Environment variables that are read as config. Passed in, so tests need not touch the process.
pub type Env = BTreeMap<String, String>;

pub fn process_env() -> Env {
    std::env::vars().collect()
}

impl Config {
    /// Reads, overlays the environment, and validates.
    pub fn load(path: &Path, env: &Env) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, env, path.parent())
    }

    /// `base` resolves relative `*_file` paths (the config file's folder).
    pub fn from_yaml(text: &str, env: &Env, base: Option<&Path>) -> Result<Self, ConfigError> {
        let mut value: Value = if text.trim().is_empty() {
            Value::Mapping(Mapping::new())
        } else {
            serde_yaml_ng::from_str(text)
                .map_err(|e| ConfigError::Invalid(vec![format!("config: {e}")]))?
        };
        if !value.is_mapping() {
            return Err(ConfigError::Invalid(vec![
                "config: the top level must be a mapping".into(),
            ]));
        }
        let mut problems = Vec::new();
        flaskoidc::overlay(&mut value, env, base, &mut problems);
        env::overlay(&mut value, env, &mut problems);
        let file: FileConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let mut all = problems.clone();
            all.push(if path == "." {
                format!("config: {}", e.inner())
            } else {
                format!("{path}: {}", e.inner())
            });
            ConfigError::Invalid(all)
        })?;
        let config = validate::validate(file, base, &mut problems);
        match config {
            Some(c) if problems.is_empty() => Ok(c),
            _ => Err(ConfigError::Invalid(problems)),
        }
    }
}

/// What an allow gives Envoy as dynamic metadata, for its access log and RBAC (a deny always
/// gives its reason). Envoy spends about 13k instructions per request on the identity's three
/// fields, 4 % of a bearer check through ext_authz; a log that reads the identity headers instead
/// does not need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvoyMetadata {
    /// `sub`, `user` and `email`.
    Identity,
    None,
}

/// `base` resolves a relative `*_file` path: the config file's folder.
fn resolve(base: Option<&Path>, p: &Path) -> PathBuf {
    match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p.to_owned(),
    }
}

#[cfg(test)]
mod tests;
