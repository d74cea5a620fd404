//! The file schema: what users write, with every default. Unknown keys are refused. validate.rs
//! turns it into the types the service runs with.

use crate::authz::login::Scheme;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::settings::EnvoyMetadata;
use crate::authz::UpstreamAuthorization;
use crate::idp::TokenEndpointAuth;
use crate::session::StoreKind;
use crate::telemetry::LogFormat;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default)]
    pub(super) listen: ListenFile,
    pub(super) provider: Option<ProviderFile>,
    /// Several login providers (`provider` is the one-entry form).
    pub(super) providers: Option<Vec<ProviderFile>>,
    pub(super) bearer: Option<Vec<BearerFile>>,
    #[serde(default)]
    pub(super) login: LoginFile,
    #[serde(default)]
    pub(super) session: SessionFile,
    pub(super) routes: Option<Vec<RouteFile>>,
    #[serde(default)]
    pub(super) upstream: UpstreamFile,
    #[serde(default)]
    pub(super) pass: PassFile,
    #[serde(default)]
    pub(super) log: LogFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ListenFile {
    pub(super) grpc: SocketAddr,
    pub(super) admin: SocketAddr,
    /// After SIGTERM, how long to keep answering while reporting NOT_SERVING, so load balancers
    /// (Envoy health checks, Kubernetes endpoints) stop sending before the listeners close.
    #[serde(with = "humantime_serde")]
    pub(super) drain_delay: Duration,
    /// A connection that sends nothing this long after connecting is closed.
    #[serde(with = "humantime_serde")]
    pub(super) handshake_timeout: Duration,
    /// A connection whose peer sends nothing this long is closed (HTTP/2 keepalive answers count).
    #[serde(with = "humantime_serde")]
    pub(super) idle_timeout: Duration,
    /// Open connections per port at most; more wait in the kernel's backlog.
    pub(super) max_connections: usize,
    /// The HTTP forward-auth adapter (nginx `auth_request`, Traefik `forwardAuth`, Envoy's HTTP
    /// ext_authz); off unless set.
    pub(super) http_authz: Option<SocketAddr>,
    /// Peers whose `X-Original-*` / `X-Forwarded-*` headers name the original request.
    pub(super) trusted_proxies: Vec<String>,
}

impl Default for ListenFile {
    fn default() -> Self {
        Self {
            grpc: ([0, 0, 0, 0], 9001).into(),
            admin: ([0, 0, 0, 0], 9090).into(),
            drain_delay: Duration::ZERO,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_connections: 10_000,
            http_authz: None,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProviderFile {
    /// A name for people (flaskoidc's provider name): logs and `check-config`.
    pub(super) name: Option<String>,
    pub(super) issuer: String,
    pub(super) client_id: String,
    pub(super) client_secret: Option<String>,
    pub(super) client_secret_file: Option<PathBuf>,
    #[serde(default = "default_scopes")]
    pub(super) scopes: Vec<String>,
    pub(super) audience: Option<String>,
    #[serde(default)]
    pub(super) extra_auth_params: BTreeMap<String, String>,
    #[serde(default = "default_user_id_claim")]
    pub(super) user_id_claim: String,
    #[serde(default = "default_groups_claim")]
    pub(super) groups_claim: String,
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub(super) jwks_refresh_interval: Duration,
    #[serde(default = "default_jwks_min_refetch", with = "humantime_serde")]
    pub(super) jwks_min_refetch_interval: Duration,
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub(super) leeway: Duration,
    /// `exp - iat` beyond this is refused (access tokens must carry `iat`, RFC 9068).
    #[serde(default = "default_max_token_lifetime", with = "humantime_serde")]
    pub(super) max_token_lifetime: Duration,
    /// How the client authenticates at the token endpoint; by default `client_secret_basic`
    /// unless discovery lists only `client_secret_post`.
    pub(super) token_endpoint_auth_method: Option<TokenEndpointAuth>,
    /// With several providers: the hosts whose requests sign in here (exact or `*.domain`).
    #[serde(default)]
    pub(super) hosts: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email", "offline_access"]
        .map(String::from)
        .to_vec()
}
fn default_user_id_claim() -> String {
    "email".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_jwks_refresh() -> Duration {
    Duration::from_secs(600)
}
fn default_jwks_min_refetch() -> Duration {
    Duration::from_secs(30)
}
fn default_max_token_lifetime() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BearerFile {
    pub(super) issuer: String,
    pub(super) audiences: Vec<String>,
    /// Skips discovery for an issuer that publishes no discovery document.
    pub(super) jwks_uri: Option<Url>,
    /// Accepts this issuer's opaque access tokens too, asking the provider about each.
    pub(super) opaque: Option<OpaqueFile>,
    /// The client that introspects (`opaque: introspect`); the provider's when the same issuer.
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<String>,
    pub(super) client_secret_file: Option<PathBuf>,
    #[serde(default = "default_opaque_cache", with = "humantime_serde")]
    pub(super) opaque_cache: Duration,
    #[serde(default = "default_opaque_rate")]
    pub(super) opaque_rate: u32,
}

/// How an opaque token is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum OpaqueFile {
    /// RFC 7662 introspection, authenticated as a client.
    Introspect,
    /// The userinfo endpoint (Auth0, which has no introspection).
    Userinfo,
}

fn default_opaque_cache() -> Duration {
    Duration::from_secs(60)
}
fn default_opaque_rate() -> u32 {
    20
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct LoginFile {
    pub(super) callback_path: String,
    pub(super) redirect_uri: Option<Url>,
    pub(super) logout_path: String,
    pub(super) post_logout_redirect: String,
    pub(super) allowed_redirect_hosts: Vec<String>,
    /// Where the provider POSTs back-channel logout tokens (served on `listen.http_authz`).
    pub(super) backchannel_logout_path: Option<String>,
    /// Where every login lands, instead of where it began (flaskoidc's OVERWRITE_REDIRECT_URI).
    pub(super) after_login: Option<String>,
    pub(super) scheme: Scheme,
}

impl Default for LoginFile {
    fn default() -> Self {
        Self {
            callback_path: "/authorization-code/callback".into(),
            redirect_uri: None,
            logout_path: "/logout".into(),
            post_logout_redirect: "/".into(),
            allowed_redirect_hosts: Vec::new(),
            backchannel_logout_path: None,
            after_login: None,
            scheme: Scheme::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RedisFile {
    pub(super) url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct SessionFile {
    pub(super) store: StoreKind,
    pub(super) cookie_name: String,
    pub(super) secure: bool,
    pub(super) secret: Option<OneOrMany>,
    pub(super) secret_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub(super) refresh_before: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) absolute_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) idle_timeout: Duration,
    pub(super) redis: Option<RedisFile>,
}

impl Default for SessionFile {
    fn default() -> Self {
        Self {
            store: StoreKind::Cookie,
            cookie_name: "portcullis".into(),
            secure: true,
            secret: None,
            secret_file: None,
            refresh_before: Duration::from_secs(60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            idle_timeout: Duration::from_secs(3600),
            redis: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ActionFile {
    Public,
    Login,
    Api,
    Deny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteFile {
    pub(super) name: String,
    pub(super) path_prefix: Option<String>,
    pub(super) path: Option<String>,
    pub(super) host: Option<String>,
    pub(super) methods: Option<Vec<String>>,
    pub(super) action: ActionFile,
    #[serde(default)]
    pub(super) require: RequireFile,
    #[serde(default)]
    pub(super) mode: ModeFile,
    /// Which provider signs this route's browsers in (with several).
    pub(super) provider: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ModeFile {
    #[default]
    Enforce,
    Shadow,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RequireFile {
    pub(super) claims: BTreeMap<String, OneOrMany>,
    pub(super) groups: Vec<String>,
    pub(super) email_domains: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct PassFile {
    /// Off by default: a pass cookie costs every browser request that Envoy passes on to
    /// portcullis; only the fast path (`portcullis envoy-config`) reads it.
    pub(super) enabled: bool,
    #[serde(with = "humantime_serde")]
    pub(super) lifetime: Duration,
    pub(super) issuer: String,
    pub(super) audience: String,
}

impl Default for PassFile {
    fn default() -> Self {
        Self {
            enabled: false,
            lifetime: Duration::from_secs(300),
            issuer: default_portcullis_issuer(),
            audience: "portcullis".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct UpstreamFile {
    pub(super) headers: HeadersFile,
    pub(super) authorization: UpstreamAuthorization,
    /// A signed identity for the upstream; off unless set.
    pub(super) assertion: Option<AssertionFile>,
}

impl Default for UpstreamFile {
    fn default() -> Self {
        Self {
            headers: HeadersFile::default(),
            authorization: UpstreamAuthorization::AccessToken,
            assertion: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AssertionFile {
    #[serde(default = "default_assertion_header")]
    pub(super) header: String,
    /// Who the assertion is for (the upstream checks it): required.
    pub(super) audience: String,
    #[serde(default = "default_portcullis_issuer")]
    pub(super) issuer: String,
    #[serde(default = "default_assertion_lifetime", with = "humantime_serde")]
    pub(super) lifetime: Duration,
}

fn default_assertion_header() -> String {
    "x-portcullis-assertion".into()
}
/// The `iss` of what portcullis signs itself (the pass, assertions) unless configured.
fn default_portcullis_issuer() -> String {
    "https://portcullis.invalid/".into()
}
fn default_assertion_lifetime() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct HeadersFile {
    pub(super) user: String,
    pub(super) email: String,
    pub(super) groups: String,
}

impl Default for HeadersFile {
    fn default() -> Self {
        Self {
            user: "x-auth-request-user".into(),
            email: "x-auth-request-email".into(),
            groups: "x-auth-request-groups".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct LogFile {
    pub(super) format: LogFormat,
    pub(super) level: String,
    pub(super) envoy_metadata: EnvoyMetadata,
}

impl Default for LogFile {
    fn default() -> Self {
        Self {
            format: LogFormat::Plain,
            level: "info".into(),
            envoy_metadata: EnvoyMetadata::Identity,
        }
    }
}

/// `base` resolves a relative `*_file` path: the config file's folder.
pub(super) fn resolve(base: Option<&Path>, p: &Path) -> PathBuf {
    match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p.to_owned(),
    }
}
