//! The validated config: what the service runs with, each value checked (validate.rs makes it).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::authz::assertion::AssertionSettings;
use crate::authz::login::Scheme;
use crate::authz::pass::PassSettings;
use crate::authz::policy::HostMatch;
use crate::authz::{IdentityHeaders, Policy, UpstreamAuthorization};
use crate::idp::{Ask, ClientCredentials, TokenEndpointAuth};
use crate::listener::Limits;
use crate::proxies::TrustedProxies;
use crate::secret::Secret;
use crate::session::StoreKind;
use crate::telemetry::LogFormat;
use crate::token::OpaqueLimits;

#[derive(Debug)]
pub struct Config {
    pub listen: Listen,
    /// Every login provider, at least one; the first is the default (see [`Config::provider`]).
    pub providers: Vec<Provider>,
    pub bearer: Vec<BearerIssuer>,
    pub login: Login,
    pub session: SessionConfig,
    pub policy: Policy,
    pub identity_headers: IdentityHeaders,
    pub upstream_authorization: UpstreamAuthorization,
    /// The fast path's pass; `None` when `pass.enabled` is false.
    pub pass: Option<PassSettings>,
    /// The signed identity for the upstream (`upstream.assertion`).
    pub assertion: Option<AssertionSettings>,
    pub log: Log,
    /// What is allowed but worth knowing, found while reading (a stretched flaskoidc secret).
    pub warnings: Vec<String>,
    /// The config file, when it was read from one (`Config::load`): what a reload reads again.
    pub source: Option<PathBuf>,
    /// The secret files it names (`provider.client_secret_file`, `session.secret_file`).
    pub secret_files: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Listen {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    /// The HTTP forward-auth adapter's port, when on.
    pub http_authz: Option<SocketAddr>,
    pub trusted_proxies: TrustedProxies,
    pub drain_delay: Duration,
    pub limits: Limits,
}

impl Config {
    /// The first provider: the one requests that name none sign in with, and whose token and
    /// claim settings (`leeway`, `user_id_claim`, key intervals) bearer tokens follow.
    pub fn provider(&self) -> &Provider {
        &self.providers[0]
    }
}

#[derive(Debug)]
pub struct Provider {
    /// A name for people (flaskoidc's `FLASK_OIDC_PROVIDER_NAME`): logs, `check-config`. Required
    /// with several providers, where routes and sessions name the provider by it.
    pub name: Option<String>,
    /// With several providers: the hosts whose requests sign in with this one.
    pub hosts: Vec<HostMatch>,
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
    pub max_token_lifetime: Duration,
    pub token_endpoint_auth_method: Option<TokenEndpointAuth>,
}

impl Provider {
    /// The login client as it authenticates to the provider: at the token endpoint, and when it
    /// introspects its provider's opaque tokens.
    pub fn credentials(&self) -> ClientCredentials {
        ClientCredentials {
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            auth_method: self.token_endpoint_auth_method,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BearerIssuer {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks_uri: Option<Url>,
    /// How its opaque tokens are checked; `None`: only JWTs.
    pub opaque: Option<(Ask, OpaqueLimits)>,
}

#[derive(Debug)]
pub struct Login {
    pub callback_path: String,
    pub redirect_uri: Option<Url>,
    pub logout_path: String,
    pub post_logout_redirect: String,
    pub allowed_redirect_hosts: Vec<String>,
    pub backchannel_logout_path: Option<String>,
    pub after_login: Option<String>,
    pub scheme: Scheme,
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
