//! The config file (YAML, unknown keys refused), the environment overlay, and its validation into
//! the [`Config`] the service runs with. Every problem is reported, one line each, before any port
//! is bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};
use thiserror::Error;
use url::Url;

use crate::authz::policy::{
    ClaimRequirement, HostMatch, PathMatch, Requirements, Route, RouteName,
};
use crate::authz::{Action, IdentityHeaders, Policy};
use crate::secret::Secret;

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

// ---------------------------------------------------------------------------------------------
// The file schema: what users write. Defaults live here.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    listen: ListenFile,
    provider: Option<ProviderFile>,
    bearer: Option<Vec<BearerFile>>,
    #[serde(default)]
    login: LoginFile,
    #[serde(default)]
    session: SessionFile,
    routes: Option<Vec<RouteFile>>,
    #[serde(default)]
    upstream: UpstreamFile,
    #[serde(default)]
    log: LogFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ListenFile {
    grpc: SocketAddr,
    admin: SocketAddr,
    /// After SIGTERM, how long to keep answering while reporting NOT_SERVING, so load balancers
    /// (Envoy health checks, Kubernetes endpoints) stop sending before the listeners close.
    #[serde(with = "humantime_serde")]
    drain_delay: Duration,
}

impl Default for ListenFile {
    fn default() -> Self {
        Self {
            grpc: ([0, 0, 0, 0], 9001).into(),
            admin: ([0, 0, 0, 0], 9090).into(),
            drain_delay: Duration::ZERO,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderFile {
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    client_secret_file: Option<PathBuf>,
    #[serde(default = "default_scopes")]
    scopes: Vec<String>,
    audience: Option<String>,
    #[serde(default)]
    extra_auth_params: BTreeMap<String, String>,
    #[serde(default = "default_user_id_claim")]
    user_id_claim: String,
    #[serde(default = "default_groups_claim")]
    groups_claim: String,
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    jwks_refresh_interval: Duration,
    #[serde(default = "default_jwks_min_refetch", with = "humantime_serde")]
    jwks_min_refetch_interval: Duration,
    #[serde(default = "default_leeway", with = "humantime_serde")]
    leeway: Duration,
    /// How the client authenticates at the token endpoint; by default `client_secret_basic`
    /// unless discovery lists only `client_secret_post`.
    token_endpoint_auth_method: Option<TokenEndpointAuth>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuth {
    ClientSecretBasic,
    ClientSecretPost,
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
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BearerFile {
    issuer: String,
    audiences: Vec<String>,
    /// Skips discovery for an issuer that publishes no discovery document.
    jwks_uri: Option<Url>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LoginFile {
    callback_path: String,
    redirect_uri: Option<Url>,
    logout_path: String,
    post_logout_redirect: String,
    allowed_redirect_hosts: Vec<String>,
}

impl Default for LoginFile {
    fn default() -> Self {
        Self {
            callback_path: "/authorization-code/callback".into(),
            redirect_uri: None,
            logout_path: "/logout".into(),
            post_logout_redirect: "/".into(),
            allowed_redirect_hosts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    Cookie,
    Memory,
    Redis,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisFile {
    url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SessionFile {
    store: StoreKind,
    cookie_name: String,
    secure: bool,
    secret: Option<OneOrMany>,
    secret_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    refresh_before: Duration,
    #[serde(with = "humantime_serde")]
    absolute_timeout: Duration,
    #[serde(with = "humantime_serde")]
    idle_timeout: Duration,
    redis: Option<RedisFile>,
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
enum ActionFile {
    Public,
    Login,
    Api,
    Deny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    name: String,
    path_prefix: Option<String>,
    path: Option<String>,
    host: Option<String>,
    methods: Option<Vec<String>>,
    action: ActionFile,
    #[serde(default)]
    require: RequireFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RequireFile {
    claims: BTreeMap<String, OneOrMany>,
    groups: Vec<String>,
    email_domains: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct UpstreamFile {
    headers: HeadersFile,
    authorization: UpstreamAuthorization,
}

impl Default for UpstreamFile {
    fn default() -> Self {
        Self {
            headers: HeadersFile::default(),
            authorization: UpstreamAuthorization::AccessToken,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct HeadersFile {
    user: String,
    email: String,
    groups: String,
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

/// What `Authorization` the upstream gets for a session-authenticated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamAuthorization {
    None,
    AccessToken,
    IdToken,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LogFile {
    format: LogFormat,
    level: String,
    envoy_metadata: EnvoyMetadata,
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

// ---------------------------------------------------------------------------------------------
// The validated config: what the service runs with.
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
pub struct Config {
    pub listen: Listen,
    pub provider: Provider,
    pub bearer: Vec<BearerIssuer>,
    pub login: Login,
    pub session: Session,
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
pub struct Session {
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
        overlay_flaskoidc(&mut value, env, base, &mut problems);
        overlay_env(&mut value, env, &mut problems);
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
        let config = validate(file, base, &mut problems);
        match config {
            Some(c) if problems.is_empty() => Ok(c),
            _ => Err(ConfigError::Invalid(problems)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Environment overlays
// ---------------------------------------------------------------------------------------------

/// `PORTCULLIS_SECTION__KEY=value` sets `section.key`; the list sections are whole variables
/// (`PORTCULLIS_ROUTES`, `PORTCULLIS_BEARER`). A value starting with `[` or `{` is YAML (lists,
/// maps); `true`/`false` are booleans; anything else is a string, so ids made of digits stay strings.
fn overlay_env(root: &mut Value, env: &Env, problems: &mut Vec<String>) {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("PORTCULLIS_") else {
            continue;
        };
        if !rest.contains("__") && !TOP_LEVEL_LISTS.contains(&rest) {
            continue; // PORTCULLIS_CONFIG and friends are not config keys
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            problems.push(format!("{name}: empty key segment"));
            continue;
        }
        match env_value(raw) {
            Ok(v) => set_path(root, &path, v),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
}

const TOP_LEVEL_LISTS: [&str; 2] = ["ROUTES", "BEARER"];

fn env_value(raw: &str) -> Result<Value, serde_yaml_ng::Error> {
    let t = raw.trim();
    if t.starts_with('[') || t.starts_with('{') {
        serde_yaml_ng::from_str(t)
    } else if t == "true" || t == "false" {
        Ok(Value::Bool(t == "true"))
    } else {
        Ok(Value::String(raw.to_owned()))
    }
}

fn set_path(root: &mut Value, path: &[String], v: Value) {
    let mut cur = root;
    for key in &path[..path.len() - 1] {
        let map = match cur {
            Value::Mapping(m) => m,
            other => {
                *other = Value::Mapping(Mapping::new());
                let Value::Mapping(m) = other else {
                    unreachable!()
                };
                m
            }
        };
        cur = map
            .entry(Value::String(key.clone()))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
    }
    if let Value::Mapping(m) = cur {
        m.insert(Value::String(path[path.len() - 1].clone()), v);
    } else {
        let mut m = Mapping::new();
        m.insert(Value::String(path[path.len() - 1].clone()), v);
        *cur = Value::Mapping(m);
    }
}

fn set(root: &mut Value, path: &[&str], v: Value) {
    let owned: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
    set_path(root, &owned, v);
}

fn string_list(raw: &str) -> Value {
    Value::Sequence(
        raw.split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_owned()))
            .collect(),
    )
}

/// The variable names of a flaskoidc `.env` (Amundsen's OIDC guide), so that migrating is
/// "source your .env, start portcullis". `PORTCULLIS_*` variables win over these.
fn overlay_flaskoidc(root: &mut Value, env: &Env, base: Option<&Path>, problems: &mut Vec<String>) {
    let get = |k: &str| env.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    if let Some(path) = get("OIDC_CLIENT_SECRETS") {
        overlay_client_secrets(root, &resolve(base, Path::new(path)), problems);
    }
    if let Some(url) = get("FLASK_OIDC_CONFIG_URL") {
        // flaskoidc is given the discovery URL; the issuer is what precedes the well-known suffix.
        match url.strip_suffix(".well-known/openid-configuration") {
            Some(issuer) if !issuer.is_empty() => {
                set(root, &["provider", "issuer"], Value::String(issuer.into()))
            }
            _ => problems.push(format!(
                "FLASK_OIDC_CONFIG_URL: {url:?} does not end in /.well-known/openid-configuration"
            )),
        }
    }
    for (var, path) in [
        ("FLASK_OIDC_CLIENT_ID", ["provider", "client_id"]),
        ("FLASK_OIDC_CLIENT_SECRET", ["provider", "client_secret"]),
        ("FLASK_OIDC_USER_ID_FIELD", ["provider", "user_id_claim"]),
        ("OIDC_CALLBACK_ROUTE", ["login", "callback_path"]),
        ("OVERWRITE_REDIRECT_URI", ["login", "redirect_uri"]),
    ] {
        if let Some(v) = get(var) {
            set(root, &path, Value::String(v.into()));
        }
    }
    if let Some(v) = get("FLASK_OIDC_SCOPES") {
        set(root, &["provider", "scopes"], string_list(v));
    }
    if let Some(v) = get("FLASK_OIDC_SECRET_KEY") {
        set(root, &["session", "secret"], Value::String(v.into()));
    }
    if let Some(v) = get("FLASK_OIDC_WHITELISTED_ENDPOINTS") {
        // flaskoidc names Flask endpoints; Amundsen's (status, healthcheck, health) are served at
        // the path of the same name, so each becomes a public path prefix ahead of the other routes.
        let mut routes: Vec<Value> = Vec::new();
        let Value::Sequence(names) = string_list(v) else {
            unreachable!()
        };
        for name in names {
            let Value::String(name) = name else { continue };
            let mut r = Mapping::new();
            r.insert("name".into(), Value::String(format!("flaskoidc-{name}")));
            r.insert("path_prefix".into(), Value::String(format!("/{name}")));
            r.insert("action".into(), Value::String("public".into()));
            routes.push(Value::Mapping(r));
        }
        let existing = match root.get("routes") {
            Some(Value::Sequence(s)) => s.clone(),
            _ => default_routes_yaml(),
        };
        routes.extend(existing);
        set(root, &["routes"], Value::Sequence(routes));
    }
}

/// A flaskoidc `client_secrets.json`: `{"web": {"client_id", "client_secret", "issuer"?, ...}}`.
fn overlay_client_secrets(root: &mut Value, path: &Path, problems: &mut Vec<String>) {
    #[derive(Deserialize)]
    struct Secrets {
        web: Web,
    }
    #[derive(Deserialize)]
    struct Web {
        client_id: Option<String>,
        client_secret: Option<String>,
        issuer: Option<String>,
        redirect_uris: Option<Vec<String>>,
    }
    let parsed = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str::<Secrets>(&t).map_err(|e| e.to_string()));
    match parsed {
        Err(e) => problems.push(format!("OIDC_CLIENT_SECRETS: {}: {e}", path.display())),
        Ok(Secrets { web }) => {
            for (v, p) in [
                (web.client_id, ["provider", "client_id"]),
                (web.client_secret, ["provider", "client_secret"]),
                (web.issuer, ["provider", "issuer"]),
                (
                    web.redirect_uris.and_then(|u| u.into_iter().next()),
                    ["login", "redirect_uri"],
                ),
            ] {
                if let Some(v) = v {
                    set(root, &p, Value::String(v));
                }
            }
        }
    }
}

fn default_routes_yaml() -> Vec<Value> {
    serde_yaml_ng::from_str("[{name: app, path_prefix: /, action: login}]").expect("static YAML")
}

fn resolve(base: Option<&Path>, p: &Path) -> PathBuf {
    match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

fn validate(file: FileConfig, base: Option<&Path>, problems: &mut Vec<String>) -> Option<Config> {
    let Some(p) = file.provider else {
        problems.push("provider: missing (issuer and client_id are required)".into());
        return None;
    };
    let provider = validate_provider(p, base, problems);
    let bearer = validate_bearer(file.bearer, &provider, problems);
    let login = validate_login(file.login, problems);
    let session = validate_session(file.session, base, problems);
    let routes = file.routes.unwrap_or_else(|| {
        vec![RouteFile {
            name: "app".into(),
            path_prefix: Some("/".into()),
            path: None,
            host: None,
            methods: None,
            action: ActionFile::Login,
            require: RequireFile::default(),
        }]
    });
    let policy = validate_routes(routes, problems);
    let identity_headers = validate_headers(&file.upstream.headers, problems);
    let log = Log {
        format: file.log.format,
        level: file.log.level,
        envoy_metadata: file.log.envoy_metadata,
    };
    if tracing_subscriber::EnvFilter::try_new(&log.level).is_err() {
        problems.push(format!("log.level: {:?} is not a valid filter", log.level));
    }
    if file.listen.drain_delay > Duration::from_secs(60) {
        problems.push("listen.drain_delay: at most 60s".into());
    }
    if file.listen.grpc == file.listen.admin {
        problems.push("listen: grpc and admin must use different ports".into());
    }
    Some(Config {
        listen: Listen {
            grpc: file.listen.grpc,
            admin: file.listen.admin,
            drain_delay: file.listen.drain_delay,
        },
        provider,
        bearer,
        login,
        session,
        policy,
        identity_headers,
        upstream_authorization: file.upstream.authorization,
        log,
    })
}

fn validate_issuer(field: &str, issuer: &str, problems: &mut Vec<String>) {
    match Url::parse(issuer) {
        Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u)) => {
            if u.query().is_some() || u.fragment().is_some() {
                problems.push(format!("{field}: an issuer has no query or fragment"));
            }
        }
        Ok(_) => problems.push(format!(
            "{field}: {issuer:?} must be https (http only on loopback, for development)"
        )),
        Err(e) => problems.push(format!("{field}: {issuer:?} is not a URL: {e}")),
    }
}

fn is_loopback(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn validate_provider(p: ProviderFile, base: Option<&Path>, problems: &mut Vec<String>) -> Provider {
    validate_issuer("provider.issuer", &p.issuer, problems);
    if p.client_id.trim().is_empty() {
        problems.push("provider.client_id: empty".into());
    }
    let client_secret = match (p.client_secret, p.client_secret_file) {
        (Some(_), Some(_)) => {
            problems.push("provider: set client_secret or client_secret_file, not both".into());
            None
        }
        (Some(s), None) => Some(Secret::new(s)),
        (None, Some(f)) => {
            read_secret_file("provider.client_secret_file", &resolve(base, &f), problems)
        }
        (None, None) => None,
    };
    if p.leeway > Duration::from_secs(60) {
        problems.push("provider.leeway: at most 60s".into());
    }
    if p.jwks_min_refetch_interval.is_zero() {
        problems.push("provider.jwks_min_refetch_interval: must be more than 0".into());
    }
    if p.jwks_refresh_interval < Duration::from_secs(10) {
        problems.push("provider.jwks_refresh_interval: at least 10s".into());
    }
    if !p.scopes.iter().any(|s| s == "openid") {
        problems.push("provider.scopes: must include openid".into());
    }
    for (field, claim) in [
        ("user_id_claim", &p.user_id_claim),
        ("groups_claim", &p.groups_claim),
    ] {
        if claim.is_empty() {
            problems.push(format!("provider.{field}: empty"));
        }
    }
    Provider {
        issuer: p.issuer,
        client_id: p.client_id,
        client_secret,
        scopes: p.scopes,
        audience: p.audience,
        extra_auth_params: p.extra_auth_params,
        user_id_claim: p.user_id_claim,
        groups_claim: p.groups_claim,
        jwks_refresh_interval: p.jwks_refresh_interval,
        jwks_min_refetch_interval: p.jwks_min_refetch_interval,
        leeway: p.leeway,
        token_endpoint_auth_method: p.token_endpoint_auth_method,
    }
}

/// Without a `bearer` list, access tokens of the provider for its `audience` are accepted (what an
/// Auth0 API client sends); without an audience either, no bearer tokens are.
fn validate_bearer(
    b: Option<Vec<BearerFile>>,
    provider: &Provider,
    problems: &mut Vec<String>,
) -> Vec<BearerIssuer> {
    let list = match b {
        Some(list) => list,
        None => {
            return provider
                .audience
                .iter()
                .map(|aud| BearerIssuer {
                    issuer: provider.issuer.clone(),
                    audiences: vec![aud.clone()],
                    jwks_uri: None,
                })
                .collect();
        }
    };
    let mut out: Vec<BearerIssuer> = Vec::new();
    for (i, entry) in list.into_iter().enumerate() {
        let field = format!("bearer[{i}]");
        validate_issuer(&format!("{field}.issuer"), &entry.issuer, problems);
        if entry.audiences.is_empty() || entry.audiences.iter().any(|a| a.is_empty()) {
            problems.push(format!(
                "{field}.audiences: at least one non-empty audience"
            ));
        }
        if out
            .iter()
            .any(|o| crate::oidc::provider::same_issuer(&o.issuer, &entry.issuer))
        {
            problems.push(format!(
                "{field}.issuer: listed twice; put all its audiences in one entry"
            ));
        }
        out.push(BearerIssuer {
            issuer: entry.issuer,
            audiences: entry.audiences,
            jwks_uri: entry.jwks_uri,
        });
    }
    out
}

fn validate_login(l: LoginFile, problems: &mut Vec<String>) -> Login {
    for (field, path) in [
        ("login.callback_path", &l.callback_path),
        ("login.logout_path", &l.logout_path),
    ] {
        if !crate::authz::path::is_valid_config_path(path) {
            problems.push(format!("{field}: {path:?} is not a plain absolute path"));
        }
    }
    if l.callback_path == l.logout_path {
        problems.push("login: callback_path and logout_path must differ".into());
    }
    Login {
        callback_path: l.callback_path,
        redirect_uri: l.redirect_uri,
        logout_path: l.logout_path,
        post_logout_redirect: l.post_logout_redirect,
        allowed_redirect_hosts: l
            .allowed_redirect_hosts
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
    }
}

fn validate_session(s: SessionFile, base: Option<&Path>, problems: &mut Vec<String>) -> Session {
    let raw: Vec<Secret> = match (s.secret, s.secret_file) {
        (Some(_), Some(_)) => {
            problems.push("session: set secret or secret_file, not both".into());
            Vec::new()
        }
        (Some(list), None) => list.into_vec().into_iter().map(Secret::new).collect(),
        (None, Some(f)) => read_secret_file("session.secret_file", &resolve(base, &f), problems)
            .map(|s| {
                s.expose()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(Secret::new)
                    .collect()
            })
            .unwrap_or_default(),
        (None, None) => Vec::new(),
    };
    let mut keys = Vec::new();
    for (i, secret) in raw.iter().enumerate() {
        match base64::engine::general_purpose::STANDARD.decode(secret.expose().trim()) {
            Ok(bytes) if bytes.len() >= 32 => keys.push(secret.clone()),
            // Never echo the value: it is a secret even when it is a bad one.
            Ok(_) => problems.push(format!(
                "session.secret[{i}]: too short; use at least 32 random bytes (portcullis gen-secret)"
            )),
            Err(_) => problems.push(format!(
                "session.secret[{i}]: not base64; use the output of portcullis gen-secret"
            )),
        }
    }
    if s.cookie_name.is_empty()
        || !s
            .cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        problems.push("session.cookie_name: letters, digits, - and _ only".into());
    }
    if let Some(r) = &s.redis
        && !(r.url.starts_with("redis://")
            || r.url.starts_with("rediss://")
            || r.url.starts_with("redis+unix://"))
    {
        problems.push("session.redis.url: redis://, rediss:// (TLS) or redis+unix:// URL".into());
    }
    if s.store == StoreKind::Redis && s.redis.is_none() {
        problems.push("session.redis.url: required with store: redis".into());
    }
    if s.idle_timeout > s.absolute_timeout {
        problems.push("session.idle_timeout: longer than absolute_timeout".into());
    }
    Session {
        store: s.store,
        cookie_name: s.cookie_name,
        secure: s.secure,
        keys,
        refresh_before: s.refresh_before,
        absolute_timeout: s.absolute_timeout,
        idle_timeout: s.idle_timeout,
        redis_url: s.redis.map(|r| Secret::new(r.url)),
    }
}

fn read_secret_file(field: &str, path: &Path, problems: &mut Vec<String>) -> Option<Secret> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Some(Secret::new(s.trim())),
        Ok(_) => {
            problems.push(format!("{field}: {} is empty", path.display()));
            None
        }
        Err(e) => {
            problems.push(format!("{field}: cannot read {}: {e}", path.display()));
            None
        }
    }
}

fn validate_routes(routes: Vec<RouteFile>, problems: &mut Vec<String>) -> Policy {
    let mut out: Vec<Route> = Vec::new();
    if routes.is_empty() {
        problems.push("routes: empty; every request would be denied".into());
    }
    for (i, r) in routes.into_iter().enumerate() {
        let field = format!("routes[{i}]");
        if r.name.is_empty()
            || !r
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            problems.push(format!(
                "{field}.name: letters, digits, '-', '_' and '.' only"
            ));
        }
        if r.name == "none" || out.iter().any(|o| o.name.as_str() == r.name) {
            problems.push(format!(
                "{field}.name: {:?} is reserved or already used",
                r.name
            ));
        }
        let path = match (r.path_prefix, r.path) {
            (Some(p), None) => PathMatch::Prefix(p),
            (None, Some(p)) => PathMatch::Exact(p),
            _ => {
                problems.push(format!("{field}: set exactly one of path_prefix and path"));
                PathMatch::Prefix("/".into())
            }
        };
        let (PathMatch::Prefix(p) | PathMatch::Exact(p)) = &path;
        if !crate::authz::path::is_valid_config_path(p) {
            problems.push(format!(
                "{field}: {p:?} is not a plain absolute path (no '..', '//', ';', '%' or '?')"
            ));
        }
        let methods = r.methods.map(|ms| {
            ms.into_iter()
                .map(|m| {
                    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                        problems.push(format!("{field}.methods: {m:?} is not a method name"));
                    }
                    m.to_ascii_uppercase()
                })
                .collect::<Vec<_>>()
        });
        let host = r.host.map(|h| {
            let h = h.to_ascii_lowercase();
            if h.is_empty()
                || h.contains(['/', ':', ' '])
                || h[1..].contains('*')
                || (h.starts_with('*') && !h.starts_with("*."))
            {
                problems.push(format!(
                    "{field}.host: {h:?} must be a host name or *.domain (no port)"
                ));
            }
            HostMatch::parse(&h)
        });
        let action = match r.action {
            ActionFile::Public => Action::Public,
            ActionFile::Login => Action::Login,
            ActionFile::Api => Action::Api,
            ActionFile::Deny => Action::Deny,
        };
        let require = Requirements {
            claims: r
                .require
                .claims
                .into_iter()
                .map(|(claim, v)| ClaimRequirement {
                    claim,
                    any_of: v.into_vec(),
                })
                .collect(),
            groups: r.require.groups,
            email_domains: r
                .require
                .email_domains
                .into_iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
        };
        let has_require = require != Requirements::default();
        if has_require && matches!(action, Action::Public | Action::Deny) {
            problems.push(format!(
                "{field}.require: only login and api routes authenticate anyone"
            ));
        }
        out.push(Route {
            name: RouteName::new(&r.name),
            host,
            path,
            methods,
            action,
            require,
        });
    }
    Policy::new(out)
}

fn validate_headers(h: &HeadersFile, problems: &mut Vec<String>) -> IdentityHeaders {
    let names = [
        ("user", &h.user),
        ("email", &h.email),
        ("groups", &h.groups),
    ];
    for (field, name) in names {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !matches!(
                name.to_ascii_lowercase().as_str(),
                "authorization" | "cookie" | "host"
            );
        if !ok {
            problems.push(format!(
                "upstream.headers.{field}: {name:?} is not a usable header name"
            ));
        }
    }
    if h.user.eq_ignore_ascii_case(&h.email)
        || h.user.eq_ignore_ascii_case(&h.groups)
        || h.email.eq_ignore_ascii_case(&h.groups)
    {
        problems.push("upstream.headers: user, email and groups need three different names".into());
    }
    IdentityHeaders::new(
        &h.user.to_ascii_lowercase(),
        &h.email.to_ascii_lowercase(),
        &h.groups.to_ascii_lowercase(),
    )
}

#[cfg(test)]
mod tests;
