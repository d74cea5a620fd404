//! The route table: first matching route (host, path, method) decides what a request needs.

use std::fmt;
use std::sync::Arc;

use crate::identity::Principal;

/// A route's name from the config; the only route identity that reaches metrics and logs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RouteName(Arc<str>);

impl RouteName {
    pub fn new(name: &str) -> Self {
        Self(Arc::from(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a metric label: shared, not copied, on every check.
    pub fn label(&self) -> Arc<str> {
        self.0.clone()
    }
}

impl fmt::Debug for RouteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for RouteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a matched route asks of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Open to everyone; identity headers sent by the client are still removed.
    Public,
    /// Browser route: a bearer token or a session. Until the login flow exists it answers like `Api`.
    Login,
    /// API route: a bearer token or a session, and a 401 (never a redirect) without one.
    Api,
    /// Always 403.
    Deny,
}

/// Whether a route's decisions are carried out, or only recorded while everything is let through
/// (how a team puts portcullis in front of a running service without locking anyone out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteMode {
    #[default]
    Enforce,
    /// Every request is allowed: with the identity headers when it would have been allowed,
    /// without them (the client's copies still removed) otherwise; what would have been decided is
    /// counted and logged.
    Shadow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Whole-segment prefix: `/health` matches `/health` and `/health/x`, never `/healthz`.
    Prefix(String),
    Exact(String),
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => path == p,
            Self::Prefix(p) => match path.strip_prefix(p.as_str()) {
                None => false,
                Some(rest) => p.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// `amundsen.example.com`, compared without the port and case-insensitively.
    Exact(String),
    /// `*.example.com`: any host ending in `.example.com`, stored as that suffix.
    Subdomain(String),
}

impl HostMatch {
    /// `pattern` is lowercased by the config loader; a trailing dot is dropped, as [`host_of`]
    /// drops it from requests.
    pub fn parse(pattern: &str) -> Self {
        let pattern = pattern.strip_suffix('.').unwrap_or(pattern);
        match pattern.strip_prefix('*') {
            Some(suffix) => Self::Subdomain(suffix.to_owned()),
            None => Self::Exact(pattern.to_owned()),
        }
    }

    /// `host` as [`host_of`] gives it.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(h) => host.eq_ignore_ascii_case(h),
            Self::Subdomain(suffix) => {
                host.len() > suffix.len()
                    && host.is_char_boundary(host.len() - suffix.len())
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

/// The host of an authority (`host[:port]`) in the one form routes compare: without the port and
/// without a trailing dot (`admin.example.:443` is `admin.example`; case is ignored by every
/// comparison). `None` when the authority is not a host name, an IPv4 address or a bracketed
/// IPv6 address, with an optional port: such a request cannot be matched against host routes, so
/// it is refused rather than let past them.
pub fn host_of(authority: &str) -> Option<&str> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let end = rest.find(']')?;
            let literal = &rest[..end];
            if literal.is_empty()
                || !literal
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            {
                return None;
            }
            (&authority[..end + 2], &rest[end + 1..])
        }
        None => match authority.rfind(':') {
            Some(i) => (&authority[..i], &authority[i..]),
            None => (authority, ""),
        },
    };
    if !port.is_empty() {
        let digits = port.strip_prefix(':')?;
        if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    if host.starts_with('[') {
        return Some(host);
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let labels_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    labels_ok.then_some(host)
}

/// A claim value the route requires: the claim equals one of these strings, or (for an array claim)
/// contains one of them. Booleans and numbers are compared by their JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequirement {
    pub claim: String,
    pub any_of: Vec<String>,
}

/// What an authenticated principal must also have on this route. Empty means nothing more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    pub claims: Vec<ClaimRequirement>,
    /// At least one of these groups.
    pub groups: Vec<String>,
    /// The email's domain is one of these (lowercase), and the email is verified.
    pub email_domains: Vec<String>,
}

/// Which requirement a principal failed. Bounded: a log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmet {
    Claim,
    Group,
    EmailDomain,
}

impl Requirements {
    pub fn check(&self, who: &Principal) -> Result<(), Unmet> {
        for req in &self.claims {
            if !who.claim_matches(&req.claim, &req.any_of) {
                return Err(Unmet::Claim);
            }
        }
        if !self.groups.is_empty() && !who.groups.iter().any(|g| self.groups.contains(g)) {
            return Err(Unmet::Group);
        }
        if !self.email_domains.is_empty() {
            let domain = who.verified_email_domain().ok_or(Unmet::EmailDomain)?;
            if !self
                .email_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain))
            {
                return Err(Unmet::EmailDomain);
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: RouteName,
    pub host: Option<HostMatch>,
    pub path: PathMatch,
    /// Uppercase method names; `None` matches every method.
    pub methods: Option<Vec<String>>,
    pub action: Action,
    pub require: Requirements,
    pub mode: RouteMode,
    /// The provider (by name) that signs this route's browsers in; `None`: the host's, else the
    /// first.
    pub provider: Option<Arc<str>>,
}

impl Route {
    /// A route for tests: `prefix` (whole segments) on any host and method, enforced, no
    /// requirements.
    #[cfg(test)]
    pub fn prefix(name: &str, prefix: &str, action: Action) -> Self {
        Self {
            name: RouteName::new(name),
            host: None,
            path: PathMatch::Prefix(prefix.into()),
            methods: None,
            action,
            require: Requirements::default(),
            mode: RouteMode::Enforce,
            provider: None,
        }
    }

    fn matches(&self, method: &str, host: &str, path: &str) -> bool {
        self.path.matches(path)
            && self.host.as_ref().is_none_or(|h| h.matches(host))
            && self
                .methods
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method)))
    }
}

/// The ordered route table.
#[derive(Debug, Clone)]
pub struct Policy {
    routes: Vec<Route>,
}

impl Policy {
    pub fn new(routes: Vec<Route>) -> Self {
        Self { routes }
    }

    /// The first route matching the request. `host` must come from [`host_of`] and `path` from
    /// [`super::path::clean_path`].
    pub fn route_for(&self, method: &str, host: &str, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(method, host, path))
    }

    /// The route of this name: Envoy may choose it per Envoy route through `context_extensions`.
    pub fn route_named(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name.as_str() == name)
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, path: PathMatch, action: Action) -> Route {
        Route {
            name: RouteName::new(name),
            host: None,
            path,
            methods: None,
            action,
            require: Requirements::default(),
            mode: RouteMode::Enforce,
            provider: None,
        }
    }

    fn prefix(p: &str) -> PathMatch {
        PathMatch::Prefix(p.into())
    }

    fn table() -> Policy {
        let mut admin = route("admin-post", prefix("/admin"), Action::Deny);
        admin.methods = Some(vec!["POST".into()]);
        let mut internal = route("internal", prefix("/"), Action::Deny);
        internal.host = Some(HostMatch::parse("*.internal.example"));
        Policy::new(vec![
            route("health", prefix("/healthcheck"), Action::Public),
            route(
                "exact",
                PathMatch::Exact("/robots.txt".into()),
                Action::Public,
            ),
            route("api", prefix("/api/"), Action::Api),
            admin,
            internal,
            route("app", prefix("/"), Action::Login),
        ])
    }

    fn name(p: &Policy, method: &str, host: &str, path: &str) -> String {
        let host = host_of(host).unwrap();
        p.route_for(method, host, path).unwrap().name.to_string()
    }

    #[test]
    fn prefixes_match_whole_segments_only() {
        let p = table();
        assert_eq!(name(&p, "GET", "h", "/healthcheck"), "health");
        assert_eq!(name(&p, "GET", "h", "/healthcheck/"), "health");
        assert_eq!(name(&p, "GET", "h", "/healthcheck/deep"), "health");
        assert_eq!(name(&p, "GET", "h", "/healthcheckX"), "app");
        assert_eq!(name(&p, "GET", "h", "/Healthcheck"), "app");
        assert_eq!(name(&p, "GET", "h", "/api/x"), "api");
        assert_eq!(name(&p, "GET", "h", "/api"), "app");
        assert_eq!(name(&p, "GET", "h", "/apix"), "app");
    }

    #[test]
    fn exact_paths_match_only_themselves() {
        let p = table();
        assert_eq!(name(&p, "GET", "h", "/robots.txt"), "exact");
        assert_eq!(name(&p, "GET", "h", "/robots.txt/x"), "app");
    }

    #[test]
    fn methods_and_hosts_narrow_a_route() {
        let p = table();
        assert_eq!(name(&p, "POST", "h", "/admin/x"), "admin-post");
        assert_eq!(name(&p, "post", "h", "/admin"), "admin-post");
        assert_eq!(name(&p, "GET", "h", "/admin/x"), "app");
        assert_eq!(name(&p, "GET", "a.internal.example:8443", "/x"), "internal");
        assert_eq!(name(&p, "GET", "A.INTERNAL.EXAMPLE", "/x"), "internal");
        assert_eq!(name(&p, "GET", "internal.example", "/x"), "app");
        assert_eq!(name(&p, "GET", "evilinternal.example", "/x"), "app");
        assert_eq!(name(&p, "GET", "a.internal.example.", "/x"), "internal");
    }

    #[test]
    fn no_match_is_none() {
        let p = Policy::new(vec![route("api", prefix("/api/"), Action::Api)]);
        assert!(p.route_for("GET", "h", "/").is_none());
    }

    #[test]
    fn hosts_are_compared_without_port_case_or_trailing_dot() {
        assert_eq!(host_of("example.com:8080"), Some("example.com"));
        assert_eq!(host_of("example.com"), Some("example.com"));
        assert_eq!(host_of("admin.example."), Some("admin.example"));
        assert_eq!(host_of("admin.example.:443"), Some("admin.example"));
        assert_eq!(host_of("[::1]:80"), Some("[::1]"));
        assert_eq!(host_of("127.0.0.1:10000"), Some("127.0.0.1"));
        let admin = HostMatch::parse("admin.example");
        assert!(admin.matches(host_of("ADMIN.example.:443").unwrap()));
        assert!(HostMatch::parse("admin.example.").matches("admin.example"));
        assert!(HostMatch::parse("*.example").matches(host_of("a.example.").unwrap()));
    }

    #[test]
    fn odd_authorities_have_no_host() {
        for odd in [
            "",
            ".",
            "admin.example..",
            "admin..example",
            ".admin.example",
            "admin.example:",
            "admin.example:80:80",
            "admin.example:x",
            "admin.example:123456",
            "admin example",
            "admin%2eexample",
            "admin.example\r\nx: y",
            "user@admin.example",
            "[::1",
            "[]:80",
            "[::1]x",
            "[::1]:80:80",
            "[vhost]",
        ] {
            assert_eq!(host_of(odd), None, "{odd:?}");
        }
    }
}
