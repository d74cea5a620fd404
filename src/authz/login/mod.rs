//! The browser login flow, answered by portcullis itself. Each step takes the request and returns a
//! [`Decision`]: [`LoginFlow::start`] (the redirect to the IdP: authorization code + PKCE S256,
//! state, nonce), [`LoginFlow::callback`] (state checked against a sealed, browser-bound login
//! cookie; code exchanged; ID token validated; session created), [`LoginFlow::logout`], and
//! [`LoginFlow::fresh_session`] (the refresh of a session's access token).

pub mod backchannel;
mod callback;
mod logout;
pub mod providers;
mod refresh;
mod start;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use url::Url;

use super::decision::{Decision, Page, PageReason};
use super::pass::PassIssuer;
use super::path::safe_return_to;
use super::policy::{HostMatch, RouteName, host_of};
use super::request::AuthzRequest;
use crate::idp::TokenEndpoint;
use crate::metrics::Metrics;
use crate::session::Session;
use crate::session::SessionStore;
use crate::token::validate::{self, Origin};
use crate::token::{JwksCache, TimeRules};

/// How long a browser may take at the IdP before its login cookie expires.
const LOGIN_TTL: Duration = Duration::from_secs(600);

/// What the login cookie holds between the redirect and the callback.
#[derive(Serialize, Deserialize)]
struct Transaction {
    state: String,
    nonce: String,
    verifier: String,
    return_to: String,
    redirect_uri: String,
    created_at: u64,
}

/// The login settings from the config (the client's credentials are the [`TokenEndpoint`]'s).
pub struct LoginSettings {
    /// Which provider this flow signs in with (`provider.name`), and its issuer as configured.
    pub provider: Option<Arc<str>>,
    pub issuer: String,
    /// With several providers: the hosts whose requests sign in here.
    pub hosts: Vec<HostMatch>,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    pub extra_auth_params: Vec<(String, String)>,
    pub redirect_uri: Option<Url>,
    pub callback_path: String,
    pub logout_path: String,
    pub post_logout_redirect: String,
    pub allowed_redirect_hosts: Vec<String>,
    /// Where the provider POSTs back-channel logout tokens; `None`: not taken.
    pub backchannel_logout_path: Option<String>,
    /// Where every login lands (flaskoidc's `OVERWRITE_REDIRECT_URI`); `None`: back where it began.
    pub after_login: Option<String>,
    /// The scheme of this site's URLs built from the request (`login.scheme`).
    pub scheme: Scheme,
    pub user_id_claim: String,
    pub groups_claim: String,
    pub time_rules: TimeRules,
    /// Refresh the access token when less than this remains (at most half its lifetime).
    pub refresh_before: Duration,
}

/// `login.scheme`: which scheme the callback URL built from a request gets, when
/// `login.redirect_uri` does not say. Behind a proxy that ends TLS and tells Envoy nothing, the
/// request looks like plain http (flaskoidc's `FLASK_OIDC_FORCE_SCHEMA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// `http` when Envoy saw plain http, else `https`.
    #[default]
    FromRequest,
    Https,
    Http,
}

/// How a refresh ended, shared by every request that waited for it.
#[derive(Debug)]
enum Refreshed {
    Tokens(Box<Session>),
    /// The IdP refused the refresh token (`invalid_grant`): the session is over.
    Ended,
    /// The IdP could not be asked or answered badly: keep the session while its token lasts.
    Failed,
}

pub struct LoginFlow {
    settings: LoginSettings,
    /// The provider's keys, and its discovery document once loaded.
    keys: Arc<JwksCache>,
    token_endpoint: TokenEndpoint,
    sessions: SessionStore,
    /// States whose callback already ran: a replay is refused even if the browser kept the cookie.
    used_states: moka::sync::Cache<String, ()>,
    /// Logout tokens' `jti`s seen (back-channel logout), for as long as one could be accepted.
    used_jtis: moka::sync::Cache<String, ()>,
    /// One refresh per session and access token, shared by every request that arrives meanwhile
    /// (and by the ones still carrying the old cookie shortly after).
    flights: moka::future::Cache<(String, u64), Arc<Refreshed>>,
    metrics: Arc<Metrics>,
    route: RouteName,
    /// The fast path's pass, when `pass.enabled`.
    pass: Option<PassIssuer>,
}

impl LoginFlow {
    pub fn new(
        settings: LoginSettings,
        keys: Arc<JwksCache>,
        token_endpoint: TokenEndpoint,
        sessions: SessionStore,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            settings,
            keys,
            token_endpoint,
            sessions,
            flights: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            metrics,
            used_states: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(LOGIN_TTL)
                .build(),
            used_jtis: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(crate::token::logout_token::REPLAY_WINDOW)
                .build(),
            route: RouteName::new("login"),
            pass: None,
        }
    }

    /// Gives signed-in browsers a pass for the native fast path.
    /// This flow, guarding with `previous`'s memory of spent login states and refreshes in
    /// flight: a reload must not let a replayed callback through, nor refresh a token twice.
    pub fn sharing_guards_with(mut self, previous: &LoginFlow) -> Self {
        self.used_states = previous.used_states.clone();
        self.used_jtis = previous.used_jtis.clone();
        self.flights = previous.flights.clone();
        self
    }

    /// With several providers, this flow's own decisions (callback, logout) are counted and
    /// audited under `login:<provider>`, so that a sign-in says where it happened.
    pub fn labelled(mut self, provider: &str) -> Self {
        self.route = RouteName::new(&format!("login:{provider}"));
        self
    }

    pub fn with_pass(mut self, pass: PassIssuer) -> Self {
        self.pass = Some(pass);
        self
    }

    pub fn pass(&self) -> Option<&PassIssuer> {
        self.pass.as_ref()
    }

    pub fn sessions(&self) -> &SessionStore {
        &self.sessions
    }

    pub fn callback_path(&self) -> &str {
        &self.settings.callback_path
    }

    pub fn logout_path(&self) -> &str {
        &self.settings.logout_path
    }

    pub fn backchannel_logout_path(&self) -> Option<&str> {
        self.settings.backchannel_logout_path.as_deref()
    }

    /// This site's origin (`scheme://host[:port]`): the configured `login.redirect_uri`'s when
    /// there is one. Without it, the request's own, but only for a host in
    /// `login.allowed_redirect_hosts` when that lists any: a `Host` header is the client's to
    /// choose, and the provider would send the browser wherever it names.
    fn site_origin(&self, req: &AuthzRequest) -> Option<String> {
        if let Some(configured) = &self.settings.redirect_uri {
            return Some(configured.origin().ascii_serialization());
        }
        let host = host_of(&req.authority)?;
        if !self.settings.allowed_redirect_hosts.is_empty() && !self.is_allowed_host(host) {
            return None;
        }
        Some(origin(req, self.settings.scheme))
    }

    fn is_allowed_host(&self, host: &str) -> bool {
        self.settings
            .allowed_redirect_hosts
            .iter()
            .any(|a| a.eq_ignore_ascii_case(host))
    }

    fn page(&self, reason: PageReason, retry: &str, set_cookies: Vec<String>) -> Decision {
        Decision::Page(Page {
            route: self.route.clone(),
            reason,
            retry: safe_return_to(retry),
            set_cookies,
        })
    }
}

fn origin(req: &AuthzRequest, choice: Scheme) -> String {
    let scheme = match (choice, req.scheme.as_str()) {
        (Scheme::Https, _) => "https",
        (Scheme::Http, _) | (Scheme::FromRequest, "http") => "http",
        (Scheme::FromRequest, _) => "https",
    };
    format!("{scheme}://{}", req.authority)
}

/// How long an access token whose lifetime the provider did not say (no `expires_in`, not a JWT)
/// is taken to live: short, so that it is refreshed (or the session ends) early rather than never.
const UNKNOWN_LIFETIME: u64 = 300;

/// When the access token of a token response expires: `expires_in`, else a JWT access token's own
/// `exp` (read, not verified: it came from the token endpoint over TLS and only sets when to
/// refresh), else [`UNKNOWN_LIFETIME`] from now.
fn access_expiry(expires_in: Option<u64>, access_token: Option<&str>, now: u64) -> u64 {
    if let Some(seconds) = expires_in {
        return now.saturating_add(seconds);
    }
    access_token
        .and_then(|t| validate::decode(t, Origin::TokenEndpoint).ok())
        .map_or(now + UNKNOWN_LIFETIME, |jwt| jwt.exp)
}

/// The random bytes in a state, nonce, PKCE verifier or session id.
const TOKEN_BYTES: usize = 32;
/// Their base64url length: what a `state` coming back must have.
const TOKEN_CHARS: usize = (TOKEN_BYTES * 4).div_ceil(3);

fn random_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    aws_lc_rs::rand::fill(&mut bytes).expect("the operating system's random source failed");
    B64.encode(bytes)
}

/// Whether `s` has the shape of a [`random_token`]: a `state` that is anything else is not ours,
/// and is refused before any of it reaches a cookie name or a header.
fn is_issued_token(s: &str) -> bool {
    s.len() == TOKEN_CHARS
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
