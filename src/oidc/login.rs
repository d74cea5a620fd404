//! The browser login flow, answered by portcullis itself: the redirect to the IdP (authorization
//! code + PKCE S256, state, nonce), the callback (state checked against a sealed, browser-bound
//! login cookie; code exchanged; ID token validated; session created), and logout.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use url::Url;

use super::IdpClient;
use super::client::ClientAuth;
use super::id_token;
use crate::authz::decision::{Page, PageReason, Redirect, RedirectReason};
use crate::authz::policy::host_without_port;
use crate::authz::{AuthzRequest, Decision, Principal, RouteName};
use crate::config::TokenEndpointAuth;
use crate::metrics::{IdpEndpoint, Metrics, RefreshResult};
use crate::secret::Secret;
use crate::session::{Purpose, Session, SessionMiss, SessionStore};
use crate::token::JwksCache;
use crate::token::now_secs;

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

/// The provider settings the flow needs, from the config.
pub struct LoginSettings {
    pub client_id: String,
    pub client_secret: Option<Secret>,
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
    pub token_endpoint_auth_method: Option<TokenEndpointAuth>,
}

pub struct LoginFlow {
    settings: LoginSettings,
    keys: Arc<JwksCache>,
    client: IdpClient,
    sessions: SessionStore,
    /// States whose callback already ran: a replay is refused even if the browser kept the cookie.
    used_states: moka::sync::Cache<String, ()>,
    /// One refresh per session and access token, shared by every request that arrives meanwhile
    /// (and by the ones still carrying the old cookie shortly after).
    flights: moka::future::Cache<(String, u64), Arc<Refreshed>>,
    metrics: Arc<Metrics>,
    route: RouteName,
}

/// How a refresh ended.
#[derive(Debug)]
enum Refreshed {
    Tokens(Box<Session>),
    /// The IdP refused the refresh token (`invalid_grant`): the session is over.
    Ended,
    /// The IdP could not be asked or answered badly: keep the session while its token lasts.
    Failed,
}

impl LoginFlow {
    pub fn new(
        settings: LoginSettings,
        keys: Arc<JwksCache>,
        client: IdpClient,
        sessions: SessionStore,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            settings,
            keys,
            client,
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

    /// Sends the browser to the IdP; it comes back to the URL it asked for.
    pub fn start(&self, req: &AuthzRequest, route: &RouteName) -> Decision {
        let Some(metadata) = self.keys.metadata() else {
            return self.page(PageReason::LoginUnavailable, "/", Vec::new());
        };
        let Some(authorize) = metadata.authorization_endpoint.clone() else {
            return self.page(PageReason::LoginUnavailable, "/", Vec::new());
        };
        let state = random_token();
        let nonce = random_token();
        let verifier = random_token();
        let challenge = B64.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            verifier.as_bytes(),
        ));
        let redirect_uri = self.redirect_uri(req);
        let tx = Transaction {
            state: state.clone(),
            nonce: nonce.clone(),
            verifier,
            return_to: safe_return_to(&req.path),
            redirect_uri: redirect_uri.clone(),
            created_at: now_secs(),
        };
        let sealed = self.sessions.codec().seal(
            Purpose::Login,
            &serde_json::to_vec(&tx).expect("serializes"),
        );
        let cookie = self.sessions.cookies().set(
            &self.sessions.cookies().login_name(&state[..16]),
            &sealed,
            LOGIN_TTL,
            &[],
        );
        let mut location = authorize;
        {
            let mut q = location.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.settings.client_id)
                .append_pair("redirect_uri", &redirect_uri)
                .append_pair("scope", &self.settings.scopes.join(" "))
                .append_pair("state", &state)
                .append_pair("nonce", &nonce)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(aud) = &self.settings.audience {
                q.append_pair("audience", aud);
            }
            for (k, v) in &self.settings.extra_auth_params {
                q.append_pair(k, v);
            }
        }
        Decision::Redirect(Redirect {
            route: route.clone(),
            reason: RedirectReason::Login,
            location: location.into(),
            set_cookies: cookie,
        })
    }

    /// The IdP sent the browser back: check everything, exchange the code, start a session.
    pub async fn callback(&self, req: &AuthzRequest) -> Decision {
        let query = req.path.split_once('?').map_or("", |(_, q)| q);
        let mut params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        for key in ["state", "code", "iss", "error"] {
            if params.iter().filter(|(k, _)| k == key).count() > 1 {
                return self.page(PageReason::DuplicateParameter, "/", Vec::new());
            }
        }
        let mut take = |key: &str| {
            params
                .iter()
                .position(|(k, _)| k == key)
                .map(|i| params.swap_remove(i).1)
        };
        let (state, code, iss, error) = (take("state"), take("code"), take("iss"), take("error"));
        let Some(state) = state.filter(|s| s.len() >= 16 && s.is_ascii()) else {
            return self.page(PageReason::MissingState, "/", Vec::new());
        };
        let jar = req.cookies();
        let cookie_name = self.sessions.cookies().login_name(&state[..16]);
        let clear_tx = vec![self.sessions.cookies().clear(&cookie_name)];
        if self.used_states.contains_key(&state) {
            return self.page(PageReason::ReplayedState, "/", clear_tx);
        }
        let tx = self
            .sessions
            .cookies()
            .read(&jar, &cookie_name)
            .and_then(|sealed| self.sessions.codec().open(Purpose::Login, &sealed).ok())
            .and_then(|plain| serde_json::from_slice::<Transaction>(&plain).ok())
            .filter(|tx| tx.state == state && tx.created_at + LOGIN_TTL.as_secs() > now_secs());
        let Some(tx) = tx else {
            return self.page(PageReason::UnknownState, "/", clear_tx);
        };
        let retry = tx.return_to.clone();
        if error.is_some() {
            return self.page(PageReason::IdpError, &retry, clear_tx);
        }
        let Some(metadata) = self.keys.metadata() else {
            return self.page(PageReason::LoginUnavailable, &retry, clear_tx);
        };
        // RFC 9207: when the IdP names itself, it must be the one we sent the browser to.
        if iss.as_ref().is_some_and(|iss| *iss != metadata.issuer) {
            return self.page(PageReason::IssuerMismatch, &retry, clear_tx);
        }
        let Some(code) = code else {
            return self.page(PageReason::IdpError, &retry, clear_tx);
        };
        // One use per state, from here on, whatever happens next.
        self.used_states.insert(state, ());
        let Some(token_endpoint) = metadata.token_endpoint.clone() else {
            return self.page(PageReason::LoginUnavailable, &retry, clear_tx);
        };
        let tokens = match self
            .exchange(
                &token_endpoint,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", &tx.redirect_uri),
                    ("code_verifier", &tx.verifier),
                ],
            )
            .await
        {
            Ok(t) => t,
            Err(why) => {
                tracing::warn!(
                    reason = why.as_str(),
                    "token endpoint refused the code exchange"
                );
                return self.page(PageReason::TokenEndpointFailed, &retry, clear_tx);
            }
        };
        let now = now_secs();
        let Some(id_token) = tokens.id_token else {
            return self.page(PageReason::IdTokenInvalid, &retry, clear_tx);
        };
        let claims = match id_token::validate(
            &id_token,
            &self.keys,
            &metadata.issuer,
            &self.settings.client_id,
            &tx.nonce,
            now,
            self.settings.leeway,
        )
        .await
        {
            Ok(c) => c,
            Err(why) => {
                tracing::warn!(reason = why.as_str(), "ID token refused at the callback");
                return self.page(PageReason::IdTokenInvalid, &retry, clear_tx);
            }
        };
        let principal = Principal::from_claims(
            claims.sub,
            claims.claims,
            &self.settings.user_id_claim,
            &self.settings.groups_claim,
        );
        let session = Session {
            sid: random_token(),
            principal,
            id_token,
            access_token: tokens.access_token,
            access_expires_at: tokens.expires_in.map_or(0, |s| now + s),
            access_issued_at: now,
            refresh_token: tokens.refresh_token,
            created_at: now,
            seen_at: now,
        };
        let present = jar.names();
        let mut set_cookies = match self.sessions.save(&session, &present).await {
            Ok(cookies) => cookies,
            Err(e) => {
                tracing::warn!(error = %e, "storing a new session failed");
                return self.page(PageReason::LoginUnavailable, &retry, clear_tx);
            }
        };
        set_cookies.extend(clear_tx);
        Decision::Redirect(Redirect {
            route: self.route.clone(),
            reason: RedirectReason::LoginComplete,
            location: tx.return_to,
            set_cookies,
        })
    }

    /// Ends the session here and at the IdP. The query is ignored: logout never goes off-site.
    pub async fn logout(&self, req: &AuthzRequest) -> Decision {
        let jar = req.cookies();
        let id_token = self
            .sessions
            .end(&jar, now_secs())
            .await
            .map(|s| s.id_token);
        let present = jar.names();
        let set_cookies = self.sessions.cookies().clear_all(&present);
        let back = self.post_logout_url(req);
        let location = match self.keys.metadata() {
            Some(m) => match &m.end_session_endpoint {
                Some(end) => {
                    let mut url = end.clone();
                    {
                        let mut q = url.query_pairs_mut();
                        if let Some(hint) = &id_token {
                            q.append_pair("id_token_hint", hint);
                        }
                        q.append_pair("post_logout_redirect_uri", &back)
                            .append_pair("client_id", &self.settings.client_id);
                    }
                    url.to_string()
                }
                // Auth0 without RP-initiated logout enabled: its own logout endpoint.
                None => match Url::parse(&m.issuer).and_then(|i| i.join("/v2/logout")) {
                    Ok(mut url) => {
                        url.query_pairs_mut()
                            .append_pair("client_id", &self.settings.client_id)
                            .append_pair("returnTo", &back);
                        url.to_string()
                    }
                    Err(_) => back,
                },
            },
            None => back,
        };
        Decision::Redirect(Redirect {
            route: self.route.clone(),
            reason: RedirectReason::Logout,
            location,
            set_cookies,
        })
    }

    async fn exchange(
        &self,
        endpoint: &Url,
        form: &[(&str, &str)],
    ) -> Result<TokenResponse, ExchangeError> {
        let auth = self.client_auth();
        let (status, body) = self
            .client
            .post_form(
                IdpEndpoint::token,
                endpoint,
                &self.settings.client_id,
                auth,
                form,
            )
            .await
            .map_err(|_| ExchangeError::Unreachable)?;
        if status != 200 {
            #[derive(Deserialize)]
            struct OAuthError {
                error: String,
            }
            let invalid_grant = serde_json::from_slice::<OAuthError>(&body)
                .is_ok_and(|e| e.error == "invalid_grant");
            return Err(if invalid_grant {
                ExchangeError::InvalidGrant
            } else {
                ExchangeError::Status
            });
        }
        serde_json::from_slice(&body).map_err(|_| ExchangeError::Malformed)
    }

    /// The session with an access token fit for use: refreshed when less than `refresh_before`
    /// (at most half its lifetime, so short tokens don't refresh on every request) remains.
    /// `Ok((session, true))` when it was refreshed and the cookie must be reissued.
    pub async fn fresh_session(
        &self,
        s: Session,
        now: u64,
    ) -> Result<(Session, bool), SessionMiss> {
        let exp = s.access_expires_at;
        if exp == 0 {
            return Ok((s, false));
        }
        let lifetime = exp.saturating_sub(s.access_issued_at);
        let early = self.settings.refresh_before.as_secs().min(lifetime / 2);
        if now.saturating_add(early) < exp {
            return Ok((s, false));
        }
        let still_valid = now < exp;
        if s.refresh_token.is_none() {
            return if still_valid {
                Ok((s, false))
            } else {
                Err(SessionMiss::Expired)
            };
        }
        let key = (s.sid.clone(), exp);
        let outcome = self
            .flights
            .get_with(key, self.refresh(s.clone(), now))
            .await;
        match &*outcome {
            Refreshed::Tokens(new) => Ok(((**new).clone(), true)),
            Refreshed::Ended => Err(SessionMiss::Expired),
            Refreshed::Failed if still_valid => Ok((s, false)),
            Refreshed::Failed => Err(SessionMiss::Expired),
        }
    }

    async fn refresh(&self, mut s: Session, now: u64) -> Arc<Refreshed> {
        let endpoint = self.keys.metadata().and_then(|m| m.token_endpoint.clone());
        let (Some(endpoint), Some(refresh_token)) = (endpoint, s.refresh_token.clone()) else {
            return Arc::new(Refreshed::Failed);
        };
        let result = self
            .exchange(
                &endpoint,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &refresh_token),
                ],
            )
            .await;
        let (outcome, label) = match result {
            Ok(tokens) => {
                s.access_token = tokens.access_token.or(s.access_token);
                s.access_expires_at = tokens.expires_in.map_or(0, |e| now + e);
                s.access_issued_at = now;
                // Providers that rotate refresh tokens send a new one; the others keep the old.
                s.refresh_token = tokens.refresh_token.or(s.refresh_token);
                // A new ID token from the token endpoint (a direct TLS answer to an authenticated
                // client) only replaces the logout hint; who the user is was settled at login.
                if let Some(id) = tokens.id_token {
                    s.id_token = id;
                }
                s.seen_at = now;
                (Refreshed::Tokens(Box::new(s)), RefreshResult::ok)
            }
            Err(ExchangeError::InvalidGrant) => (Refreshed::Ended, RefreshResult::ended),
            Err(why) => {
                tracing::warn!(
                    reason = why.as_str(),
                    "refreshing an access token failed; keeping the session while it lasts"
                );
                (Refreshed::Failed, RefreshResult::failed)
            }
        };
        self.metrics.refresh(label);
        Arc::new(outcome)
    }

    /// As configured; else `client_secret_basic` unless the provider says it takes only
    /// `client_secret_post`.
    fn client_auth(&self) -> ClientAuth<'_> {
        let Some(secret) = self.settings.client_secret.as_ref().map(Secret::expose) else {
            return ClientAuth::None;
        };
        match self.settings.token_endpoint_auth_method {
            Some(TokenEndpointAuth::ClientSecretBasic) => return ClientAuth::Basic(secret),
            Some(TokenEndpointAuth::ClientSecretPost) => return ClientAuth::Post(secret),
            None => {}
        }
        let methods = self
            .keys
            .metadata()
            .map(|m| m.token_endpoint_auth_methods_supported.as_slice())
            .unwrap_or_default();
        let post_only = !methods.is_empty()
            && methods.iter().any(|m| m == "client_secret_post")
            && !methods.iter().any(|m| m == "client_secret_basic");
        if post_only {
            ClientAuth::Post(secret)
        } else {
            ClientAuth::Basic(secret)
        }
    }

    fn redirect_uri(&self, req: &AuthzRequest) -> String {
        match &self.settings.redirect_uri {
            Some(u) => u.to_string(),
            None => format!("{}{}", origin(req), self.settings.callback_path),
        }
    }

    /// `login.post_logout_redirect`: a path on the request's own origin, or an absolute URL whose
    /// host is allowed; anything else falls back to the origin's `/`.
    fn post_logout_url(&self, req: &AuthzRequest) -> String {
        let target = &self.settings.post_logout_redirect;
        if target.starts_with('/') {
            return format!("{}{}", origin(req), safe_return_to(target));
        }
        match Url::parse(target) {
            Ok(u)
                if matches!(u.scheme(), "https" | "http")
                    && u.host_str().is_some_and(|h| {
                        h.eq_ignore_ascii_case(host_without_port(&req.authority))
                            || self
                                .settings
                                .allowed_redirect_hosts
                                .iter()
                                .any(|a| a.eq_ignore_ascii_case(h))
                    }) =>
            {
                u.to_string()
            }
            _ => format!("{}/", origin(req)),
        }
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

#[derive(Debug, Clone, Copy)]
enum ExchangeError {
    Unreachable,
    InvalidGrant,
    Status,
    Malformed,
}

impl ExchangeError {
    fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::InvalidGrant => "invalid_grant",
            Self::Status => "error_status",
            Self::Malformed => "malformed_response",
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<u64>,
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

/// The return target: a path on this site. Anything that could leave it (`//host`, `/\host`, a
/// scheme, control or non-ASCII characters) becomes `/`.
pub fn safe_return_to(target: &str) -> String {
    let bytes = target.as_bytes();
    let ok = bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && bytes
            .iter()
            .all(|b| (0x21..=0x7e).contains(b) && *b != b'\\')
        && crate::authz::path::clean_path(target).is_ok();
    if ok {
        target.to_owned()
    } else {
        "/".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_targets_never_leave_the_site() {
        for ok in [
            "/",
            "/table_detail/gold/hive/core/users?tab=1",
            "/search?q=a%20b",
        ] {
            assert_eq!(safe_return_to(ok), ok);
        }
        for evil in [
            "//evil.example",
            "/\\evil.example",
            "/%09/evil.example",
            "/%2f/evil.example",
            "https:evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "/\t/evil.example",
            "/a\r\nLocation: //evil",
            "",
            "evil.example",
            "/./evil",
        ] {
            assert_eq!(safe_return_to(evil), "/", "{evil:?}");
        }
    }
}
