//! The browser login flow, answered by portcullis itself. Each step takes the request and returns a
//! [`Decision`]: [`LoginFlow::start`] (the redirect to the IdP: authorization code + PKCE S256,
//! state, nonce), [`LoginFlow::callback`] (state checked against a sealed, browser-bound login
//! cookie; code exchanged; ID token validated; session created), [`LoginFlow::logout`], and
//! [`LoginFlow::fresh_session`] (the refresh of a session's access token).

mod callback;
mod logout;
mod refresh;
mod start;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use url::Url;

use super::decision::{Decision, Page, PageReason};
use super::path::safe_return_to;
use super::policy::RouteName;
use super::request::AuthzRequest;
use crate::idp::TokenEndpoint;
use crate::metrics::Metrics;
use crate::session::Session;
use crate::session::SessionStore;
use crate::token::JwksCache;

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
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    pub extra_auth_params: Vec<(String, String)>,
    pub redirect_uri: Option<Url>,
    pub callback_path: String,
    pub logout_path: String,
    pub post_logout_redirect: String,
    pub allowed_redirect_hosts: Vec<String>,
    pub user_id_claim: String,
    pub groups_claim: String,
    pub leeway: u64,
    /// Refresh the access token when less than this remains (at most half its lifetime).
    pub refresh_before: Duration,
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
    /// One refresh per session and access token, shared by every request that arrives meanwhile
    /// (and by the ones still carrying the old cookie shortly after).
    flights: moka::future::Cache<(String, u64), Arc<Refreshed>>,
    metrics: Arc<Metrics>,
    route: RouteName,
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
            route: RouteName::new("login"),
        }
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

    fn page(&self, reason: PageReason, retry: &str, set_cookies: Vec<String>) -> Decision {
        Decision::Page(Page {
            route: self.route.clone(),
            reason,
            retry: safe_return_to(retry),
            set_cookies,
        })
    }
}

fn origin(req: &AuthzRequest) -> String {
    let scheme = match req.scheme.as_str() {
        "http" => "http",
        _ => "https",
    };
    format!("{scheme}://{}", req.authority)
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the operating system's random source failed");
    B64.encode(bytes)
}
