//! Validation: the file schema becomes the types the service runs with, and every problem is
//! collected, one line each, naming the key.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use url::Url;

use super::file::resolve;
use super::file::{
    ActionFile, AssertionFile, BearerFile, FileConfig, HeadersFile, LoginFile, ModeFile,
    OpaqueFile, PassFile, ProviderFile, RequireFile, RouteFile, SessionFile,
};
use super::settings::{BearerIssuer, Config, Listen, Log, Login, Provider, SessionConfig};
use crate::authz::assertion::AssertionSettings;
use crate::authz::pass::PassSettings;
use crate::authz::path::{is_valid_config_path, safe_return_to};
use crate::authz::policy::{
    ClaimRequirement, HostMatch, PathMatch, Requirements, Route, RouteMode, RouteName,
};
use crate::authz::{Action, IdentityHeaders, Policy};
use crate::idp::{Ask, ClientCredentials, same_issuer};
use crate::listener::Limits;
use crate::proxies::TrustedProxies;
use crate::secret::Secret;
use crate::session::StoreKind;
use crate::token::OpaqueLimits;

pub(super) fn validate(
    file: FileConfig,
    base: Option<&Path>,
    problems: &mut Vec<String>,
) -> Option<Config> {
    let (listed, provider_files) = match (file.provider, file.providers) {
        (Some(p), None) => (false, vec![p]),
        (None, Some(list)) if !list.is_empty() => (true, list),
        (None, Some(_)) => {
            problems.push("providers: at least one".into());
            return None;
        }
        (Some(_), Some(_)) => {
            problems.push("set provider (one) or providers (several), not both".into());
            return None;
        }
        (None, None) => {
            problems.push("provider: missing (issuer and client_id are required)".into());
            return None;
        }
    };
    // The files besides the config that a reload must watch.
    let provider_secrets = provider_files.iter().map(|p| &p.client_secret_file);
    let bearer_secrets = file.bearer.iter().flatten().map(|b| &b.client_secret_file);
    let secret_files = provider_secrets
        .chain([&file.session.secret_file])
        .chain(bearer_secrets)
        .flatten()
        .map(|f| resolve(base, f))
        .collect();
    let several = provider_files.len() > 1;
    let providers: Vec<Provider> = provider_files
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let field = if listed {
                format!("providers[{i}]")
            } else {
                "provider".to_owned()
            };
            validate_provider(&field, several, p, base, problems)
        })
        .collect();
    validate_provider_names(&providers, problems);
    let bearer = validate_bearer(file.bearer, &providers, base, problems);
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
            mode: ModeFile::Enforce,
            provider: None,
        }]
    });
    let policy = validate_routes(routes, &providers, problems);
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
    let pass = validate_pass(&file.pass, &session, problems);
    if pass.is_some() && several {
        problems.push(
            "pass.enabled: with one provider only (a pass does not say which provider signed its user in)"
                .into(),
        );
    }
    let assertion =
        file.upstream.assertion.as_ref().and_then(|a| {
            validate_assertion(a, &identity_headers, &session, pass.as_ref(), problems)
        });
    let l = &file.listen;
    if l.handshake_timeout.is_zero() || l.handshake_timeout > Duration::from_secs(120) {
        problems.push("listen.handshake_timeout: more than 0s, at most 2m".into());
    }
    if l.idle_timeout < l.handshake_timeout {
        problems.push("listen.idle_timeout: at least listen.handshake_timeout".into());
    }
    if l.max_connections == 0 {
        problems.push("listen.max_connections: at least 1".into());
    }
    if file.listen.grpc == file.listen.admin {
        problems.push("listen: grpc and admin must use different ports".into());
    }
    if let Some(http) = l.http_authz
        && (http == l.grpc || http == l.admin)
    {
        problems
            .push("listen.http_authz: must use a port of its own, not grpc's or admin's".into());
    }
    let trusted_proxies = TrustedProxies::parse(&l.trusted_proxies).unwrap_or_else(|bad| {
        problems.extend(
            bad.into_iter()
                .map(|p| format!("listen.trusted_proxies: {p}")),
        );
        TrustedProxies::default()
    });
    Some(Config {
        listen: Listen {
            grpc: file.listen.grpc,
            admin: file.listen.admin,
            http_authz: file.listen.http_authz,
            trusted_proxies,
            drain_delay: file.listen.drain_delay,
            limits: Limits {
                handshake: file.listen.handshake_timeout,
                idle: file.listen.idle_timeout,
                max_connections: file.listen.max_connections,
            },
        },
        providers,
        bearer,
        login,
        session,
        policy,
        identity_headers,
        upstream_authorization: file.upstream.authorization,
        pass,
        assertion,
        log,
        warnings: Vec::new(),
        source: None,
        secret_files,
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

fn validate_provider(
    at: &str,
    several: bool,
    p: ProviderFile,
    base: Option<&Path>,
    problems: &mut Vec<String>,
) -> Provider {
    validate_issuer(&format!("{at}.issuer"), &p.issuer, problems);
    if p.client_id.trim().is_empty() {
        problems.push(format!("{at}.client_id: empty"));
    }
    let client_secret = client_secret(at, p.client_secret, p.client_secret_file, base, problems);
    if p.leeway > Duration::from_secs(60) {
        problems.push(format!("{at}.leeway: at most 60s"));
    }
    if p.max_token_lifetime < Duration::from_secs(60) {
        problems.push(format!("{at}.max_token_lifetime: at least 1m"));
    }
    if p.jwks_min_refetch_interval.is_zero() {
        problems.push(format!(
            "{at}.jwks_min_refetch_interval: must be more than 0"
        ));
    }
    if p.jwks_refresh_interval < Duration::from_secs(10) {
        problems.push(format!("{at}.jwks_refresh_interval: at least 10s"));
    }
    if !p.scopes.iter().any(|s| s == "openid") {
        problems.push(format!("{at}.scopes: must include openid"));
    }
    for (field, claim) in [
        ("user_id_claim", &p.user_id_claim),
        ("groups_claim", &p.groups_claim),
    ] {
        if claim.is_empty() {
            problems.push(format!("{at}.{field}: empty"));
        }
    }
    if !several && !p.hosts.is_empty() {
        problems.push(format!(
            "{at}.hosts: only with several providers (one provider signs every host in)"
        ));
    }
    let hosts = p
        .hosts
        .iter()
        .map(|h| validate_host(&format!("{at}.hosts"), h, problems))
        .collect();
    Provider {
        name: p.name,
        hosts,
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
        max_token_lifetime: p.max_token_lifetime,
        token_endpoint_auth_method: p.token_endpoint_auth_method,
    }
}

/// With several providers each needs a name of its own, which cookie names are made of.
fn validate_provider_names(providers: &[Provider], problems: &mut Vec<String>) {
    if providers.len() < 2 {
        return;
    }
    for (i, p) in providers.iter().enumerate() {
        match &p.name {
            None => problems.push(format!(
                "providers[{i}].name: required with several providers (routes and sessions name it)"
            )),
            Some(name) if !is_provider_name(name) => problems.push(format!(
                "providers[{i}].name: {name:?} must be lowercase letters, digits, '-' or '_'"
            )),
            Some(name) if providers[..i].iter().any(|o| o.name.as_ref() == Some(name)) => {
                problems.push(format!("providers[{i}].name: {name:?} is taken"));
            }
            Some(_) => {}
        }
    }
}

fn is_provider_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Without a `bearer` list, access tokens of the provider for its `audience` are accepted (what an
/// Auth0 API client sends); without an audience either, no bearer tokens are.
fn validate_bearer(
    b: Option<Vec<BearerFile>>,
    providers: &[Provider],
    base: Option<&Path>,
    problems: &mut Vec<String>,
) -> Vec<BearerIssuer> {
    let list = match b {
        Some(list) => list,
        None => {
            let mut out: Vec<BearerIssuer> = Vec::new();
            for p in providers {
                let Some(aud) = &p.audience else { continue };
                match out.iter_mut().find(|o| same_issuer(&o.issuer, &p.issuer)) {
                    Some(known) if known.audiences.contains(aud) => {}
                    Some(known) => known.audiences.push(aud.clone()),
                    None => out.push(BearerIssuer {
                        issuer: p.issuer.clone(),
                        audiences: vec![aud.clone()],
                        jwks_uri: None,
                        opaque: None,
                    }),
                }
            }
            return out;
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
        if out.iter().any(|o| same_issuer(&o.issuer, &entry.issuer)) {
            problems.push(format!(
                "{field}.issuer: listed twice; put all its audiences in one entry"
            ));
        }
        let opaque = validate_opaque(&field, &entry, providers, base, problems);
        out.push(BearerIssuer {
            issuer: entry.issuer,
            audiences: entry.audiences,
            jwks_uri: entry.jwks_uri,
            opaque,
        });
    }
    out
}

/// `bearer[i].opaque` and what goes with it: the introspecting client and the bounds.
fn validate_opaque(
    field: &str,
    entry: &BearerFile,
    providers: &[Provider],
    base: Option<&Path>,
    problems: &mut Vec<String>,
) -> Option<(Ask, OpaqueLimits)> {
    let own_client = entry.client_id.is_some()
        || entry.client_secret.is_some()
        || entry.client_secret_file.is_some();
    let Some(mode) = entry.opaque else {
        if own_client {
            problems.push(format!(
                "{field}: client_id and client_secret are for opaque: introspect only"
            ));
        }
        return None;
    };
    if entry.jwks_uri.is_some() {
        problems.push(format!(
            "{field}.opaque: needs the issuer's discovery document (its {} endpoint); remove jwks_uri",
            match mode {
                OpaqueFile::Introspect => "introspection",
                OpaqueFile::Userinfo => "userinfo",
            }
        ));
    }
    if entry.opaque_cache < Duration::from_secs(1) || entry.opaque_cache > Duration::from_secs(3600)
    {
        problems.push(format!("{field}.opaque_cache: between 1s and 1h"));
    }
    if !(1..=10_000).contains(&entry.opaque_rate) {
        problems.push(format!(
            "{field}.opaque_rate: between 1 and 10000 provider calls a second"
        ));
    }
    let limits = OpaqueLimits {
        cache: entry.opaque_cache,
        rate: entry.opaque_rate,
    };
    let ask = match mode {
        OpaqueFile::Userinfo => {
            if own_client {
                problems.push(format!(
                    "{field}: client_id and client_secret are for opaque: introspect only (userinfo takes the token itself)"
                ));
            }
            Ask::Userinfo
        }
        OpaqueFile::Introspect if own_client => {
            let secret = client_secret(
                field,
                entry.client_secret.clone(),
                entry.client_secret_file.clone(),
                base,
                problems,
            );
            let client_id = entry.client_id.clone().unwrap_or_default();
            if client_id.trim().is_empty() || secret.is_none() {
                problems.push(format!(
                    "{field}: introspection needs a client_id and its client_secret (or client_secret_file)"
                ));
            }
            Ask::Introspect(ClientCredentials {
                client_id,
                client_secret: secret,
                auth_method: None,
            })
        }
        // The login client introspects the tokens of its own provider.
        OpaqueFile::Introspect
            if let Some(provider) = providers
                .iter()
                .find(|p| same_issuer(&entry.issuer, &p.issuer)) =>
        {
            if provider.client_secret.is_none() {
                problems.push(format!(
                    "{field}.opaque: introspection needs a client secret: set provider.client_secret, or a client_id and client_secret here"
                ));
            }
            Ask::Introspect(provider.credentials())
        }
        OpaqueFile::Introspect => {
            problems.push(format!(
                "{field}.opaque: introspection needs a client of {:?}: set client_id and client_secret (or client_secret_file)",
                entry.issuer
            ));
            return None;
        }
    };
    Some((ask, limits))
}

fn validate_login(l: LoginFile, problems: &mut Vec<String>) -> Login {
    for (field, path) in [
        ("login.callback_path", &l.callback_path),
        ("login.logout_path", &l.logout_path),
    ] {
        if !is_valid_config_path(path) {
            problems.push(format!("{field}: {path:?} is not a plain absolute path"));
        }
    }
    if l.callback_path == l.logout_path {
        problems.push("login: callback_path and logout_path must differ".into());
    }
    if let Some(path) = &l.after_login
        && safe_return_to(path) != *path
    {
        problems.push(format!(
            "login.after_login: {path:?} is not a path on this site (e.g. /, /search)"
        ));
    }
    if let Some(path) = &l.backchannel_logout_path {
        if !is_valid_config_path(path) {
            problems.push(format!(
                "login.backchannel_logout_path: {path:?} is not a plain absolute path"
            ));
        }
        if [&l.callback_path, &l.logout_path].contains(&path) {
            problems.push(
                "login.backchannel_logout_path: must differ from callback_path and logout_path"
                    .into(),
            );
        }
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
        backchannel_logout_path: l.backchannel_logout_path,
        after_login: l.after_login,
        scheme: l.scheme,
    }
}

fn validate_session(
    s: SessionFile,
    base: Option<&Path>,
    problems: &mut Vec<String>,
) -> SessionConfig {
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
    SessionConfig {
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

fn validate_pass(
    p: &PassFile,
    session: &SessionConfig,
    problems: &mut Vec<String>,
) -> Option<PassSettings> {
    if !p.enabled {
        return None;
    }
    if session.keys.is_empty() {
        problems
            .push("pass.enabled: needs session.secret (the pass key is derived from it)".into());
    }
    if p.lifetime < Duration::from_secs(30) || p.lifetime > Duration::from_secs(3600) {
        problems.push("pass.lifetime: from 30s to 1h".into());
    }
    for (field, value) in [("issuer", &p.issuer), ("audience", &p.audience)] {
        if value.is_empty() || value.chars().any(char::is_control) {
            problems.push(format!("pass.{field}: a non-empty string"));
        }
    }
    Some(PassSettings {
        lifetime: p.lifetime,
        issuer: p.issuer.clone(),
        audience: p.audience.clone(),
    })
}

fn validate_assertion(
    a: &AssertionFile,
    identity: &IdentityHeaders,
    session: &SessionConfig,
    pass: Option<&PassSettings>,
    problems: &mut Vec<String>,
) -> Option<AssertionSettings> {
    if session.keys.is_empty() {
        problems.push(
            "upstream.assertion: needs session.secret (its signing key is derived from it)".into(),
        );
    }
    let header = a.header.to_ascii_lowercase();
    let taken = [&*identity.user, &*identity.email, &*identity.groups];
    if !is_usable_header_name(&header) || taken.contains(&header.as_str()) {
        problems.push(format!(
            "upstream.assertion.header: {:?} is not a usable header name (nor an identity header's)",
            a.header
        ));
    }
    for (field, value) in [("issuer", &a.issuer), ("audience", &a.audience)] {
        if value.is_empty() || value.chars().any(char::is_control) {
            problems.push(format!("upstream.assertion.{field}: a non-empty string"));
        }
    }
    if pass.is_some_and(|p| p.audience == a.audience) {
        problems.push(
            "upstream.assertion.audience: must differ from pass.audience (one key signs both: a pass must never pass for an assertion)"
                .into(),
        );
    }
    if a.lifetime < Duration::from_secs(10) || a.lifetime > Duration::from_secs(600) {
        problems.push("upstream.assertion.lifetime: from 10s to 10m".into());
    }
    Some(AssertionSettings {
        header: header.into(),
        issuer: a.issuer.clone(),
        audience: a.audience.clone(),
        lifetime: a.lifetime,
    })
}

/// A header portcullis may set: a token of letters, digits, `-` and `_`, and not one whose
/// meaning is the transport's or portcullis's own.
fn is_usable_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !matches!(
            name.to_ascii_lowercase().as_str(),
            "authorization" | "cookie" | "host"
        )
}

/// `{at}.client_secret`, inline or from `{at}.client_secret_file`, never both.
fn client_secret(
    at: &str,
    inline: Option<String>,
    file: Option<PathBuf>,
    base: Option<&Path>,
    problems: &mut Vec<String>,
) -> Option<Secret> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            problems.push(format!(
                "{at}: set client_secret or client_secret_file, not both"
            ));
            None
        }
        (Some(s), None) => Some(Secret::new(s)),
        (None, Some(f)) => read_secret_file(
            &format!("{at}.client_secret_file"),
            &resolve(base, &f),
            problems,
        ),
        (None, None) => None,
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

fn validate_routes(
    routes: Vec<RouteFile>,
    providers: &[Provider],
    problems: &mut Vec<String>,
) -> Policy {
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
        if !is_valid_config_path(p) {
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
        let host = r
            .host
            .map(|h| validate_host(&format!("{field}.host"), &h, problems));
        let provider = r.provider.map(|name| {
            if !providers
                .iter()
                .any(|p| p.name.as_deref() == Some(name.as_str()))
            {
                problems.push(format!(
                    "{field}.provider: {name:?} names no provider (give the provider that name)"
                ));
            }
            Arc::<str>::from(name)
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
            mode: match r.mode {
                ModeFile::Enforce => RouteMode::Enforce,
                ModeFile::Shadow => RouteMode::Shadow,
            },
            provider,
        });
    }
    Policy::new(out)
}

/// A route's or a provider's host: a host name or `*.domain`, lowercased, no port.
fn validate_host(field: &str, h: &str, problems: &mut Vec<String>) -> HostMatch {
    let h = h.to_ascii_lowercase();
    if h.is_empty()
        || h.contains(['/', ':', ' '])
        || h[1..].contains('*')
        || (h.starts_with('*') && !h.starts_with("*."))
    {
        problems.push(format!(
            "{field}: {h:?} must be a host name or *.domain (no port)"
        ));
    }
    HostMatch::parse(&h)
}

fn validate_headers(h: &HeadersFile, problems: &mut Vec<String>) -> IdentityHeaders {
    let names = [
        ("user", &h.user),
        ("email", &h.email),
        ("groups", &h.groups),
    ];
    for (field, name) in names {
        if !is_usable_header_name(name) {
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
