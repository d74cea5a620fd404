//! `portcullis envoy-config`: an Envoy bootstrap for the native fast path, generated from
//! portcullis's own config, so that Envoy checks what it can check itself and asks portcullis
//! (ext_authz) only when it cannot: logins, expired passes, refreshes, the callback, logout, and
//! every denial.
//!
//! The filters, in order: the client's copies of the identity headers removed; `jwt_authn`
//! verifying the pass (from its cookie) or a bearer token (from `Authorization`), a missing or
//! failed JWT allowed on to the next filter; a short Lua filter (or, with [`Step::Native`],
//! portcullis's own Envoy filter from `envoy-module/`) that holds a verified JWT to the rules
//! portcullis adds (`iat` present, whole-second dates, a bounded life, a `sub`) and, when it
//! passes, sets the identity headers exactly as portcullis would, removes portcullis's cookies, and
//! marks the request as decided; `ext_authz`, skipped for such requests only; the router. Each portcullis route becomes an
//! Envoy route (same order, same matching) that names it to ext_authz; a route whose decision
//! Envoy cannot make the same way (a `require`, `public`, `deny`, or a session whose upstream needs
//! the IdP's access token) keeps JWTs off and always asks portcullis. The output is deterministic:
//! the same config gives the same bytes.

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::authz::policy::{Action, HostMatch, PathMatch, Route};
use crate::authz::{ROUTE_EXTENSION, UpstreamAuthorization};
use crate::config::Config;
use crate::idp::{IdpClient, ProviderMetadata};
use crate::session::Cookies;

/// Where the parts are, as the Envoy running this bootstrap reaches them.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub listen: SocketAddr,
    pub upstream: HostPort,
    pub grpc: HostPort,
    pub admin: HostPort,
    /// portcullis's HTTP port (`listen.http_authz`), where the provider's logout tokens go.
    pub http: Option<HostPort>,
    pub envoy_admin: SocketAddr,
}

/// `host:port`, the host a name or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?}: expected host:port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port
            .parse()
            .map_err(|_| format!("{s:?}: {port:?} is not a port"))?;
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(format!("{s:?}: expected host:port"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl HostPort {
    /// A listen address as a peer reaches it: an unspecified address (0.0.0.0, ::) is loopback.
    pub fn reaching(addr: SocketAddr) -> Self {
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            addr.ip().to_string()
        };
        Self {
            host,
            port: addr.port(),
        }
    }
}

/// What holds a JWT Envoy verified to portcullis's rules and sets the identity headers (step 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Step {
    /// A Lua filter reading `jwt_authn`'s payload metadata: nothing to install besides Envoy.
    #[default]
    Lua,
    /// portcullis's own Envoy filter (`envoy-module/`, loaded as `libportcullis_envoy.so` from
    /// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`), told by one header what `jwt_authn` verified: the
    /// cheaper step (BENCHMARKS.md).
    Native,
    /// The same filter as the whole step: no `jwt_authn`, no `ext_authz`. It asks portcullis over
    /// HTTP (`listen.http_authz`) and, on the routes a JWT could decide, lets a bearer token or
    /// pass portcullis allowed through again until the time portcullis named, without asking.
    Callout,
}

impl std::str::FromStr for Step {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lua" => Ok(Self::Lua),
            "native" => Ok(Self::Native),
            "callout" => Ok(Self::Callout),
            _ => Err(format!("{s:?}: expected lua, native or callout")),
        }
    }
}

/// How many credentials the callout form remembers at most (a few MB of tokens).
const CALLOUT_CACHE_ENTRIES: usize = 10_000;

/// The header `jwt_authn` sets to a verified JWT's `iss` for the native step (`claim_to_headers`);
/// the client's copies go with the identity headers', and the step removes it.
pub const VERIFIED_HEADER: &str = "x-portcullis-jwt-issuer";

/// A bearer issuer as Envoy verifies it: the exact issuer, its audiences and where its keys are.
#[derive(Debug, Clone)]
struct BearerKeys {
    issuer: String,
    audiences: Vec<String>,
    jwks_uri: url::Url,
}

/// The bootstrap, or one line per reason it cannot be made (nothing is printed then).
pub async fn generate(
    config: &Config,
    endpoints: &Endpoints,
    step: Step,
    client: &IdpClient,
) -> Result<String, Vec<String>> {
    let mut problems = Vec::new();
    if config.pass.is_none() {
        problems.push(
            "pass.enabled: must be true (the fast path lets signed-in browsers through with the pass)"
                .to_owned(),
        );
    }
    if config.session.keys.is_empty() {
        problems.push("session.secret: required (the pass key is derived from it)".to_owned());
    }
    let mut bearer = Vec::new();
    for b in &config.bearer {
        let keys = match &b.jwks_uri {
            Some(uri) => Ok(BearerKeys {
                issuer: b.issuer.clone(),
                audiences: b.audiences.clone(),
                jwks_uri: uri.clone(),
            }),
            None => ProviderMetadata::discover(client, &b.issuer)
                .await
                .map(|m| BearerKeys {
                    issuer: m.issuer,
                    audiences: b.audiences.clone(),
                    jwks_uri: m.jwks_uri,
                })
                .map_err(|e| format!("bearer issuer {}: discovery failed: {e}", b.issuer)),
        };
        match keys {
            Ok(k) if matches!(k.jwks_uri.scheme(), "https" | "http") => bearer.push(k),
            Ok(k) => problems.push(format!(
                "bearer issuer {}: jwks_uri {} is not http(s)",
                k.issuer, k.jwks_uri
            )),
            Err(e) => problems.push(e),
        }
    }
    if step == Step::Callout && endpoints.http.is_none() {
        problems.push(
            "listen.http_authz (or --portcullis-http): required by --fast-path-filter callout, \
             which asks portcullis there"
                .to_owned(),
        );
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Writer::new(config, endpoints, step, &bearer).bootstrap())
}

/// YAML scalars are written as JSON strings: always valid, whatever they hold.
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// How an Envoy route decides, besides asking portcullis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fast {
    /// JWTs are not looked at: portcullis decides every request.
    Off,
    /// A bearer token in `Authorization` may let the request through.
    Bearer,
    /// The pass may let the request through (no `Authorization` header).
    Pass,
}

impl Fast {
    fn requirement(self) -> Option<&'static str> {
        match self {
            Self::Off => None,
            Self::Bearer => Some("bearer"),
            Self::Pass => Some("pass"),
        }
    }
}

struct Writer<'a> {
    config: &'a Config,
    endpoints: &'a Endpoints,
    step: Step,
    bearer: &'a [BearerKeys],
    cookies: Cookies,
    out: String,
}

impl<'a> Writer<'a> {
    fn new(
        config: &'a Config,
        endpoints: &'a Endpoints,
        step: Step,
        bearer: &'a [BearerKeys],
    ) -> Self {
        Self {
            config,
            endpoints,
            step,
            bearer,
            cookies: Cookies::new(&config.session.cookie_name, config.session.secure),
            out: String::new(),
        }
    }

    fn line(&mut self, indent: usize, text: &str) {
        let _ = writeln!(self.out, "{:indent$}{text}", "");
    }

    fn bootstrap(mut self) -> String {
        let e = self.endpoints.clone();
        if self.step == Step::Callout {
            self.out.push_str(
                "# Envoy with portcullis's native fast path, generated by `portcullis envoy-config` from\n\
                 # portcullis's config: regenerate it when routes change (do not edit). portcullis's own\n\
                 # filter is the whole step: it asks portcullis over HTTP and lets a bearer token or pass\n\
                 # portcullis allowed through again until the time portcullis named. Fails closed.\n",
            );
        } else {
            self.out.push_str(
            "# Envoy with portcullis's native fast path, generated by `portcullis envoy-config` from\n\
             # portcullis's config: regenerate it when routes or bearer issuers change (do not edit).\n\
             # Envoy verifies the pass (signed-in browsers) and bearer tokens itself and asks\n\
             # portcullis (ext_authz) only when no JWT was verified. Fails closed like envoy/envoy.yaml.\n",
            );
        }
        self.line(0, "admin:");
        self.line(
            2,
            "# Admin can change Envoy's state: never on a public address.",
        );
        self.line(
            2,
            &format!(
                "address: {{ socket_address: {{ address: {}, port_value: {} }} }}",
                q(&e.envoy_admin.ip().to_string()),
                e.envoy_admin.port()
            ),
        );
        self.line(0, "static_resources:");
        self.line(2, "listeners:");
        self.line(2, "- name: ingress");
        self.line(
            4,
            &format!(
                "address: {{ socket_address: {{ address: {}, port_value: {} }} }}",
                q(&e.listen.ip().to_string()),
                e.listen.port()
            ),
        );
        self.line(4, "filter_chains:");
        self.line(4, "- filters:");
        self.line(6, "- name: envoy.filters.network.http_connection_manager");
        self.line(8, "typed_config:");
        self.line(10, "\"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager");
        self.line(10, "stat_prefix: ingress");
        self.line(
            10,
            "# One path for everyone: Envoy's routes and portcullis match the same.",
        );
        self.line(10, "normalize_path: true");
        self.line(10, "merge_slashes: true");
        self.line(10, "path_with_escaped_slashes_action: REJECT_REQUEST");
        self.line(10, "use_remote_address: true");
        self.line(10, "common_http_protocol_options:");
        self.line(
            12,
            "# x_auth_request_user would slip past the removal of x-auth-request-user.",
        );
        self.line(12, "headers_with_underscores_action: REJECT_REQUEST");
        self.access_log();
        self.route_config();
        self.filters();
        self.clusters();
        self.out
    }

    fn access_log(&mut self) {
        self.line(10, "access_log:");
        self.line(10, "- name: envoy.access_loggers.stdout");
        self.line(12, "typed_config:");
        self.line(14, "\"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog");
        self.line(14, "log_format:");
        if self.step == Step::Callout {
            let user = self.config.identity_headers.user.clone();
            self.line(
                16,
                "# user=: who the request went upstream as; asked=: who portcullis named when asked (- when",
            );
            self.line(
                16,
                "# a remembered credential let it through); deny=: why portcullis refused.",
            );
            self.line(16, "text_format_source:");
            self.line(18, &format!("inline_string: \"[%START_TIME%] \\\"%REQ(:METHOD)% %PATH(NQ)% %PROTOCOL%\\\" %RESPONSE_CODE% %RESPONSE_FLAGS% %DURATION%ms user=%REQ({user})% asked=%DYNAMIC_METADATA(portcullis:asked)% deny=%DYNAMIC_METADATA(portcullis:reason)%\\n\""));
            return;
        }
        self.line(
            16,
            "# fast=: who a JWT Envoy verified named (no ext_authz); user=: who portcullis named.",
        );
        self.line(16, "text_format_source:");
        self.line(18, "inline_string: \"[%START_TIME%] \\\"%REQ(:METHOD)% %PATH(NQ)% %PROTOCOL%\\\" %RESPONSE_CODE% %RESPONSE_FLAGS% %DURATION%ms fast=%DYNAMIC_METADATA(portcullis:user)% sub=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:sub)% user=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:user)% email=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:email)% deny=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:reason)% shadow=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:shadow)%\\n\"");
    }

    /// One virtual host: portcullis's routes in its order, a route naming a host matching the
    /// `:authority` as portcullis's `host_of` reads it (any case, a trailing dot, any port).
    fn route_config(&mut self) {
        let routes: Vec<&Route> = self.config.policy.routes().iter().collect();
        self.line(10, "route_config:");
        self.line(12, "name: portcullis");
        self.line(12, "virtual_hosts:");
        self.virtual_host("*", &routes);
    }

    fn virtual_host(&mut self, domain: &str, routes: &[&Route]) {
        self.line(12, &format!("- name: {}", q(&format!("hosts {domain}"))));
        self.line(14, &format!("domains: [{}]", q(domain)));
        self.line(14, "routes:");
        let login = &self.config.login;
        self.line(
            14,
            "# an authority that is no host name or address: portcullis refuses it (400)",
        );
        self.line(
            14,
            &format!(
                "- match: {{ prefix: \"/\", headers: [{{ name: \":authority\", string_match: {{ safe_regex: {{ regex: {} }} }}, invert_match: true }}] }}",
                q(HOST_REGEX)
            ),
        );
        self.route_tail(None, Fast::Off);
        for (path, what) in [
            (login.callback_path.clone(), "the login callback"),
            (login.logout_path.clone(), "logout"),
        ] {
            self.line(
                14,
                &format!("# {what}: portcullis answers it, whatever the cookies say"),
            );
            self.envoy_route(&PathMatch::Exact(path), None, None, Fast::Off);
        }
        if let Some(path) = login.backchannel_logout_path.clone() {
            self.backchannel_route(&path);
        }
        for route in routes {
            let fast = self.fast(route);
            self.line(
                14,
                &format!(
                    "# route {}: {}",
                    route.name,
                    match (fast.0, fast.1) {
                        (Fast::Off, _) => "portcullis decides every request",
                        (_, Fast::Pass) => "a bearer token or the pass lets Envoy decide",
                        _ => "a bearer token lets Envoy decide; the session asks portcullis",
                    }
                ),
            );
            if fast.0 != Fast::Off {
                self.envoy_route(&route.path, route.methods.as_deref(), Some(route), fast.0);
            }
            self.envoy_route(&route.path, route.methods.as_deref(), Some(route), fast.1);
        }
        self.line(
            14,
            "# no route of portcullis's: portcullis refuses it (403)",
        );
        self.envoy_route(&PathMatch::Prefix("/".into()), None, None, Fast::Off);
    }

    /// How a route decides with and without an `Authorization` header.
    fn fast(&self, route: &Route) -> (Fast, Fast) {
        let authenticates = matches!(route.action, Action::Api | Action::Login);
        let plain = route.require == crate::authz::policy::Requirements::default();
        // Envoy cannot sign an upstream assertion: with one configured, portcullis decides.
        if !(authenticates && plain) || self.config.assertion.is_some() {
            return (Fast::Off, Fast::Off);
        }
        let bearer = if self.bearer.is_empty() {
            Fast::Off
        } else {
            Fast::Bearer
        };
        // Envoy cannot put the session's IdP access token upstream: such sessions ask portcullis.
        let pass = match (self.config.upstream_authorization, &self.config.pass) {
            (UpstreamAuthorization::None, Some(_)) => Fast::Pass,
            _ => Fast::Off,
        };
        (bearer, pass)
    }

    /// One Envoy route. `Bearer` routes match only requests with an `Authorization` header.
    fn envoy_route(
        &mut self,
        path: &PathMatch,
        methods: Option<&[String]>,
        route: Option<&Route>,
        fast: Fast,
    ) {
        let matcher = match path {
            PathMatch::Exact(p) => format!("path: {}", q(p)),
            // Whole segments, as portcullis matches: /health never matches /healthz.
            // A prefix ending in "/" is whole segments already (`/api/` never matches `/api`).
            PathMatch::Prefix(p) if p.ends_with('/') => format!("prefix: {}", q(p)),
            PathMatch::Prefix(p) => format!("path_separated_prefix: {}", q(p)),
        };
        let mut headers = Vec::new();
        if let Some(host) = route.and_then(|r| r.host.as_ref()) {
            let pattern = match host {
                HostMatch::Exact(h) => regex_escape(h),
                HostMatch::Subdomain(suffix) => format!(".+{}", regex_escape(suffix)),
            };
            headers.push(format!(
                "{{ name: \":authority\", string_match: {{ safe_regex: {{ regex: {} }} }} }}",
                q(&format!("(?i)^{pattern}\\.?(:[0-9]+)?$"))
            ));
        }
        if let Some(ms) = methods {
            let alternatives: Vec<String> = ms.iter().map(|m| regex_escape(m)).collect();
            headers.push(format!(
                "{{ name: \":method\", string_match: {{ safe_regex: {{ regex: {} }} }} }}",
                q(&format!("^({})$", alternatives.join("|")))
            ));
        }
        if fast == Fast::Bearer {
            headers.push("{ name: authorization, present_match: true }".to_owned());
        }
        let headers = if headers.is_empty() {
            String::new()
        } else {
            format!(", headers: [{}]", headers.join(", "))
        };
        self.line(14, &format!("- match: {{ {matcher}{headers} }}"));
        self.route_tail(route, fast);
    }

    /// The provider's back-channel logout: a POST straight to portcullis's HTTP port, with no
    /// JWT and no ext_authz (the logout token in the body is the credential, checked there).
    fn backchannel_route(&mut self, path: &str) {
        if self.endpoints.http.is_none() {
            self.line(
                14,
                "# back-channel logout: not routed (it is served on listen.http_authz, which is not set)",
            );
            return;
        }
        self.line(
            14,
            "# back-channel logout: the provider's POST goes to portcullis's HTTP port as it is",
        );
        self.line(
            14,
            &format!(
                "- match: {{ path: {}, headers: [{{ name: \":method\", string_match: {{ exact: POST }} }}] }}",
                q(path)
            ),
        );
        self.line(16, "route: { cluster: portcullis_http }");
        if self.step == Step::Callout {
            self.line(
                16,
                "metadata: { filter_metadata: { portcullis: { fast: through } } }",
            );
            return;
        }
        self.line(16, "typed_per_filter_config:");
        self.line(18, "envoy.filters.http.jwt_authn:");
        self.line(20, "\"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig");
        self.line(20, "disabled: true");
        self.line(18, "envoy.filters.http.ext_authz:");
        self.line(20, "\"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute");
        self.line(20, "disabled: true");
    }

    /// A route's action and per-filter settings, after its `match`.
    fn route_tail(&mut self, route: Option<&Route>, fast: Fast) {
        self.line(16, "route: { cluster: upstream }");
        if self.step == Step::Callout {
            // The filter asks portcullis, which matches the route itself; the metadata says what a
            // remembered credential may decide here.
            if let Some(name) = fast.requirement() {
                self.line(
                    16,
                    &format!(
                        "metadata: {{ filter_metadata: {{ portcullis: {{ fast: {name} }} }} }}"
                    ),
                );
            }
            return;
        }
        self.line(16, "typed_per_filter_config:");
        match fast.requirement() {
            Some(name) => {
                self.line(18, "envoy.filters.http.jwt_authn:");
                self.line(20, "\"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig");
                self.line(20, &format!("requirement_name: {name}"));
            }
            None => {
                self.line(18, "envoy.filters.http.jwt_authn:");
                self.line(20, "\"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig");
                self.line(20, "disabled: true");
            }
        }
        if let Some(r) = route {
            self.line(18, "envoy.filters.http.ext_authz:");
            self.line(20, "\"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute");
            self.line(
                20,
                &format!(
                    "check_settings: {{ context_extensions: {{ {ROUTE_EXTENSION}: {} }} }}",
                    q(r.name.as_str())
                ),
            );
        }
    }

    fn filters(&mut self) {
        let h = self.config.identity_headers.clone();
        self.line(10, "http_filters:");
        if self.step == Step::Callout {
            self.callout();
            self.router();
            return;
        }
        self.line(
            10,
            "# 1. The client's copies of the identity headers go, whoever decides next.",
        );
        self.line(10, "- name: envoy.filters.http.header_mutation");
        self.line(12, "typed_config:");
        self.line(14, "\"@type\": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation");
        self.line(14, "mutations:");
        self.line(16, "request_mutations:");
        for name in [&h.user, &h.email, &h.groups] {
            self.line(16, &format!("- remove: {}", q(name)));
        }
        if self.step == Step::Native {
            self.line(16, &format!("- remove: {}", q(VERIFIED_HEADER)));
        }
        self.jwt_authn();
        match self.step {
            Step::Lua => self.lua(),
            Step::Native => self.native(),
            // The callout form has no step 3: its filter is the whole chain (`callout`).
            Step::Callout => {}
        }
        self.ext_authz();
        self.router();
    }

    fn router(&mut self) {
        self.line(10, "- name: envoy.filters.http.router");
        self.line(12, "typed_config:");
        self.line(
            14,
            "\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        );
    }

    /// The callout form: portcullis's filter is the whole step.
    fn callout(&mut self) {
        let h = &self.config.identity_headers;
        let mut upstream_headers = vec![&*h.user, &*h.email, &*h.groups];
        if let Some(a) = &self.config.assertion {
            upstream_headers.push(&a.header);
        }
        let settings = serde_json::json!({
            "session": self.cookies.session_name(),
            "pass_cookie": self.cookies.pass_name(),
            "cluster": "portcullis_http",
            "timeout_ms": 1000,
            "upstream_headers": upstream_headers,
            "user_header": &*h.user,
            "cache_entries": CALLOUT_CACHE_ENTRIES,
        });
        self.line(
            10,
            "# portcullis's own filter (libportcullis_envoy.so from ENVOY_DYNAMIC_MODULES_SEARCH_PATH) is",
        );
        self.line(10, "# the whole step: the client's copies of the identity headers go; a bearer token or pass");
        self.line(10, "# portcullis allowed is let through again with the same headers until the time portcullis");
        self.line(10, "# named, on the routes marked fast; anything else asks portcullis (listen.http_authz) and");
        self.line(
            10,
            "# gets its answer. Fails closed (403) when portcullis cannot answer within 1 s.",
        );
        self.dynamic_module("authorize", &settings);
    }

    fn dynamic_module(&mut self, filter_name: &str, settings: &serde_json::Value) {
        self.line(10, "- name: envoy.filters.http.dynamic_modules");
        self.line(12, "typed_config:");
        self.line(14, "\"@type\": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter");
        self.line(14, "dynamic_module_config: { name: portcullis_envoy }");
        self.line(14, &format!("filter_name: {filter_name}"));
        self.line(14, "filter_config:");
        self.line(
            16,
            "\"@type\": type.googleapis.com/google.protobuf.StringValue",
        );
        self.line(16, &format!("value: {}", q(&settings.to_string())));
    }

    fn jwt_authn(&mut self) {
        let leeway = self.config.provider().leeway.as_secs();
        let max_lifetime = self.config.provider().max_token_lifetime.as_secs();
        self.line(
            10,
            "# 2. JWTs Envoy verifies itself; a missing or failed one is left to portcullis.",
        );
        self.line(10, "- name: envoy.filters.http.jwt_authn");
        self.line(12, "typed_config:");
        self.line(14, "\"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication");
        self.line(14, "providers:");
        if let Some(pass) = self.config.pass.clone() {
            let pass_cookie = self.cookies.pass_name().to_owned();
            self.line(16, "pass:");
            self.line(18, "# portcullis's own short-lived JWT, from its cookie; keys from portcullis's admin port");
            self.line(18, &format!("issuer: {}", q(&pass.issuer)));
            self.line(18, &format!("audiences: [{}]", q(&pass.audience)));
            self.line(18, &format!("from_cookies: [{}]", q(&pass_cookie)));
            self.line(18, "remote_jwks:");
            let admin = self.endpoints.admin.clone();
            self.line(
                20,
                &format!(
                    "http_uri: {{ uri: {}, cluster: portcullis_admin, timeout: 2s }}",
                    q(&format!(
                        "http://{}:{}/.well-known/jwks.json",
                        admin.host, admin.port
                    ))
                ),
            );
            self.line(20, "cache_duration: 300s");
            self.line(20, "async_fetch: {}");
            self.provider_common(leeway, pass.lifetime.as_secs().max(max_lifetime));
        }
        for (i, b) in self.bearer.iter().enumerate() {
            self.line(16, &format!("bearer-{i}:"));
            self.line(18, &format!("# bearer tokens of {}", b.issuer));
            self.line(18, &format!("issuer: {}", q(&b.issuer)));
            let auds: Vec<String> = b.audiences.iter().map(|a| q(a)).collect();
            self.line(18, &format!("audiences: [{}]", auds.join(", ")));
            self.line(
                18,
                "from_headers: [{ name: authorization, value_prefix: \"Bearer \" }]",
            );
            self.line(
                18,
                "# The verified token goes on to the upstream, as through portcullis.",
            );
            self.line(18, "forward: true");
            self.line(18, "remote_jwks:");
            self.line(
                20,
                &format!(
                    "http_uri: {{ uri: {}, cluster: {}, timeout: 5s }}",
                    q(b.jwks_uri.as_str()),
                    q(&format!("jwks-{i}"))
                ),
            );
            self.line(20, "cache_duration: 600s");
            self.line(20, "async_fetch: {}");
            self.provider_common(leeway, max_lifetime);
        }
        self.line(14, "requirement_map:");
        self.line(16, "pass:");
        self.line(18, "requires_any:");
        self.line(20, "requirements:");
        if self.config.pass.is_some() {
            self.line(20, "- provider_name: pass");
        }
        self.line(20, "- allow_missing_or_failed: {}");
        // No bearer issuer, no bearer requirement (no route names it): Envoy refuses a
        // `requires_any` of fewer than two.
        if self.bearer.is_empty() {
            return;
        }
        self.line(16, "bearer:");
        self.line(18, "requires_any:");
        self.line(20, "requirements:");
        for i in 0..self.bearer.len() {
            self.line(20, &format!("- provider_name: bearer-{i}"));
        }
        self.line(20, "- allow_missing_or_failed: {}");
    }

    fn provider_common(&mut self, leeway: u64, max_lifetime: u64) {
        self.line(
            18,
            "# As portcullis holds them: exp required, iat within the maximum life, the leeway.",
        );
        self.line(18, "require_expiration: true");
        self.line(18, &format!("max_lifetime: {max_lifetime}s"));
        self.line(18, &format!("clock_skew_seconds: {leeway}"));
        match self.step {
            Step::Lua => self.line(18, "payload_in_metadata: verified"),
            Step::Native => self.line(
                18,
                &format!(
                    "claim_to_headers: [{{ header_name: {VERIFIED_HEADER}, claim_name: iss }}]"
                ),
            ),
            // No jwt_authn in the callout form.
            Step::Callout => {}
        }
        self.line(18, "jwt_cache_config: { jwt_cache_size: 1000 }");
    }

    fn ext_authz(&mut self) {
        self.line(
            10,
            "# 4. portcullis, asked when no JWT was verified and accepted. Fail closed.",
        );
        self.line(10, "- name: envoy.filters.http.ext_authz");
        self.line(12, "typed_config:");
        self.line(
            14,
            "\"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        );
        self.line(14, "transport_api_version: V3");
        self.line(
            14,
            "grpc_service: { envoy_grpc: { cluster_name: portcullis }, timeout: 1s }",
        );
        self.line(14, "failure_mode_allow: false");
        self.line(14, "status_on_error: { code: Forbidden }");
        self.line(14, "clear_route_cache: false");
        self.line(14, "allowed_headers:");
        self.line(16, "patterns:");
        for h in [
            "authorization",
            "cookie",
            "accept",
            "sec-fetch-mode",
            "sec-fetch-dest",
            "x-requested-with",
        ] {
            self.line(16, &format!("- exact: {h}"));
        }
        self.line(14, "filter_enabled_metadata:");
        self.line(16, "filter: portcullis");
        self.line(16, "path: [{ key: fast }]");
        self.line(16, "value: { bool_match: true }");
        self.line(16, "invert: true");
    }

    fn lua(&mut self) {
        let h = self.config.identity_headers.clone();
        let p = self.config.provider();
        let pass_issuer = self
            .config
            .pass
            .as_ref()
            .map_or(String::new(), |p| p.issuer.clone());
        let session = self.cookies.session_name().to_owned();
        let script = LUA
            .replace("@SESSION@", &lua_string(&session))
            .replace("@PASS_ISSUER@", &lua_string(&pass_issuer))
            .replace(
                "@MAX_LIFETIME@",
                &p.max_token_lifetime.as_secs().to_string(),
            )
            .replace("@USER_CLAIM@", &lua_string(&p.user_id_claim))
            .replace("@GROUPS_CLAIM@", &lua_string(&p.groups_claim))
            .replace("@USER_HEADER@", &lua_string(&h.user))
            .replace("@EMAIL_HEADER@", &lua_string(&h.email))
            .replace("@GROUPS_HEADER@", &lua_string(&h.groups));
        self.step_comment(None);
        self.line(10, "- name: envoy.filters.http.lua");
        self.line(12, "typed_config:");
        self.line(
            14,
            "\"@type\": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        );
        self.line(14, "default_source_code:");
        self.line(16, "inline_string: |");
        for line in script.lines() {
            if line.is_empty() {
                self.out.push('\n');
            } else {
                self.line(18, line);
            }
        }
    }

    /// Step 3's comment, the same for either filter; `what` names it when it is not Envoy's own.
    fn step_comment(&mut self, what: Option<&str>) {
        self.line(10, "# 3. A verified JWT held to portcullis's rules; then the identity headers as portcullis");
        let end = if what.is_some() { ':' } else { '.' };
        self.line(10, &format!("#    sets them, its cookies (session, chunks, login, pass) removed, ext_authz skipped{end}"));
        if let Some(what) = what {
            self.line(10, &format!("#    {what}"));
        }
    }

    fn native(&mut self) {
        let h = &self.config.identity_headers;
        let p = self.config.provider();
        let settings = serde_json::json!({
            "session": self.cookies.session_name(),
            "pass_cookie": self.cookies.pass_name(),
            "pass_issuer": self.config.pass.as_ref().map_or("", |p| p.issuer.as_str()),
            "verified_header": VERIFIED_HEADER,
            "max_lifetime": p.max_token_lifetime.as_secs(),
            "user_claim": p.user_id_claim,
            "groups_claim": p.groups_claim,
            "user_header": &*h.user,
            "email_header": &*h.email,
            "groups_header": &*h.groups,
        });
        self.step_comment(Some(
            "portcullis's own filter, libportcullis_envoy.so from ENVOY_DYNAMIC_MODULES_SEARCH_PATH.",
        ));
        self.dynamic_module("fast_path", &settings);
    }

    fn clusters(&mut self) {
        let e = self.endpoints.clone();
        self.line(2, "clusters:");
        if self.step == Step::Callout {
            self.cluster("upstream", &e.upstream, false, false);
            if let Some(http) = &e.http {
                self.cluster("portcullis_http", http, false, false);
            }
            return;
        }
        self.cluster("portcullis", &e.grpc, true, true);
        self.cluster("portcullis_admin", &e.admin, false, false);
        self.cluster("upstream", &e.upstream, false, false);
        if let (Some(http), Some(_)) = (&e.http, &self.config.login.backchannel_logout_path) {
            self.cluster("portcullis_http", http, false, false);
        }
        for (i, b) in self.bearer.iter().enumerate() {
            let host = b.jwks_uri.host_str().unwrap_or_default().to_owned();
            let port = b.jwks_uri.port_or_known_default().unwrap_or(443);
            let tls = b.jwks_uri.scheme() == "https";
            self.line(2, &format!("- name: {}", q(&format!("jwks-{i}"))));
            self.line(4, &format!("# the keys of {}", b.issuer));
            self.line(4, "type: STRICT_DNS");
            self.line(4, "connect_timeout: 2s");
            self.load_assignment(
                &format!("jwks-{i}"),
                &HostPort {
                    host: host.clone(),
                    port,
                },
            );
            if tls {
                self.line(4, "transport_socket:");
                self.line(6, "name: envoy.transport_sockets.tls");
                self.line(6, "typed_config:");
                self.line(8, "\"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext");
                self.line(8, &format!("sni: {}", q(&host)));
            }
        }
    }

    fn cluster(&mut self, name: &str, at: &HostPort, http2: bool, health: bool) {
        self.line(2, &format!("- name: {name}"));
        self.line(4, "type: STRICT_DNS");
        self.line(4, "connect_timeout: 1s");
        if http2 {
            self.line(4, "typed_extension_protocol_options:");
            self.line(6, "envoy.extensions.upstreams.http.v3.HttpProtocolOptions:");
            self.line(8, "\"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions");
            self.line(8, "explicit_http_config: { http2_protocol_options: {} }");
        }
        if health {
            self.line(4, "health_checks:");
            self.line(4, "- { timeout: 1s, interval: 5s, unhealthy_threshold: 2, healthy_threshold: 1, grpc_health_check: {} }");
        }
        self.load_assignment(name, at);
    }

    fn load_assignment(&mut self, name: &str, at: &HostPort) {
        self.line(4, "load_assignment:");
        self.line(6, &format!("cluster_name: {}", q(name)));
        self.line(
            6,
            &format!(
                "endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: {}, port_value: {} }} }} }} }}] }}]",
                q(&at.host),
                at.port
            ),
        );
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = !c.is_ascii_alphanumeric();
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

/// An authority as portcullis's `host_of` accepts it: DNS labels (and one trailing dot) or a
/// bracketed IPv6 address, and a port.
const HOST_REGEX: &str =
    r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$";

/// A Lua string literal.
fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => {
                let _ = write!(out, "\\{}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Sets the identity headers from the verified JWT (portcullis's rules: the user claim, else
/// `sub`; `email` only when not marked unverified; groups `%`- and `,`-encoded and joined), and
/// takes portcullis's cookies out of every Cookie header, keeping every other cookie byte for byte.
const LUA: &str = r#"local SESSION = @SESSION@
local PASS_ISSUER = @PASS_ISSUER@
local MAX_LIFETIME = @MAX_LIFETIME@
local USER_CLAIM, GROUPS_CLAIM = @USER_CLAIM@, @GROUPS_CLAIM@
local USER, EMAIL, GROUPS = @USER_HEADER@, @EMAIL_HEADER@, @GROUPS_HEADER@

local function usable(v)
  return type(v) == "string" and v ~= "" and not string.find(v, "%c")
end

-- A NumericDate as portcullis takes it (RFC 9068): whole seconds.
local function whole(v)
  return type(v) == "number" and v >= 0 and v == math.floor(v) and v < 9007199254740992
end

-- What portcullis checks beyond Envoy: iat present, whole-second dates, a bounded life, a sub.
local function acceptable(p)
  if not (whole(p.exp) and whole(p.iat) and usable(p.sub)) then return false end
  if p.nbf ~= nil and not whole(p.nbf) then return false end
  return p.exp - p.iat <= MAX_LIFETIME
end

local function encode(g)
  return (string.gsub(string.gsub(g, "%%", "%%25"), ",", "%%2C"))
end

-- The identity headers as portcullis sets them; returns the user.
local function identity(h, p)
  if p.iss == PASS_ISSUER then
    -- The pass carries the headers' values as portcullis made them.
    if usable(p.user) then h:replace(USER, p.user) end
    if usable(p.email) then h:replace(EMAIL, p.email) end
    if usable(p.groups) then h:replace(GROUPS, p.groups) end
    -- The session let this request in; nothing the client put in Authorization was checked.
    h:remove("authorization")
    return p.user
  end
  local email = nil
  if usable(p.email) and p.email_verified ~= false then email = p.email end
  local user = nil
  if USER_CLAIM == "email" then user = email elseif usable(p[USER_CLAIM]) then user = p[USER_CLAIM] end
  if user == nil then user = p.sub end
  h:replace(USER, user)
  if email ~= nil then h:replace(EMAIL, email) end
  local g = p[GROUPS_CLAIM]
  local names = {}
  if type(g) == "string" then names = { g } elseif type(g) == "table" then names = g end
  local out = {}
  for _, name in ipairs(names) do
    if type(name) == "string" then out[#out + 1] = encode(name) end
  end
  local joined = table.concat(out, ",")
  if usable(joined) then h:replace(GROUPS, joined) end
  return user
end

local function ours(name)
  return name == SESSION or string.sub(name, 1, #SESSION + 1) == SESSION .. "-"
end

-- Whether v[from..to] names one of ours as portcullis's jar reads it (a trimmed name before `=`).
local function names_ours(v, from, to)
  local first = string.find(v, "%S", from)
  if first == nil or first > to then return false end
  local eq = string.find(v, "=", first, true)
  if eq == nil or eq > to then return false end
  local last = eq - 1
  while last >= first and string.find(string.sub(v, last, last), "^%s$") do last = last - 1 end
  return ours(string.sub(v, first, last))
end

-- Every Cookie header without portcullis's cookies; every other cookie byte for byte. A piece
-- goes whole when any of its `,`-separated parts names one of ours, as portcullis's jar reads a
-- header. Only the names are read by pattern; values are skipped with plain finds: a pattern run
-- over a 3 KB session cookie cost Envoy over a million instructions a request (BENCHMARKS.md).
local function strip(h)
  local n = h:getNumValues("cookie")
  if n == 0 then return end
  local kept, changed = {}, false
  for i = 0, n - 1 do
    local v = h:getAtIndex("cookie", i)
    local pos, len = 1, #v
    local comma = string.find(v, ",", 1, true) or (len + 1)
    while pos <= len do
      local semi = string.find(v, ";", pos, true) or (len + 1)
      local first = string.find(v, "%S", pos)
      if first ~= nil and first < semi then
        local is_ours, from = false, first
        while not is_ours do
          while comma < from do comma = string.find(v, ",", comma + 1, true) or (len + 1) end
          local to = math.min(comma, semi) - 1
          is_ours = names_ours(v, from, to)
          if comma >= semi then break end
          from = comma + 1
        end
        if is_ours then
          changed = true
        else
          local last = semi - 1
          while string.find(string.sub(v, last, last), "^%s$") do last = last - 1 end
          kept[#kept + 1] = string.sub(v, first, last)
        end
      end
      pos = semi + 1
    end
  end
  if not changed then return end
  h:remove("cookie")
  if #kept > 0 then h:add("cookie", table.concat(kept, "; ")) end
end

function envoy_on_request(handle)
  local meta = handle:streamInfo():dynamicMetadata():get("envoy.filters.http.jwt_authn")
  local p = meta and meta.verified
  if p == nil or not acceptable(p) then return end
  local h = handle:headers()
  local user = identity(h, p)
  strip(h)
  local decided = handle:streamInfo():dynamicMetadata()
  decided:set("portcullis", "fast", true)
  decided:set("portcullis", "user", user)
end
"#;
