//! The callback: the IdP sent the browser back. Everything is checked before the code is
//! exchanged (one exchange per state), the ID token is validated, and the session starts.

use std::sync::Arc;

use super::{LOGIN_TTL, LoginFlow, Transaction, access_expiry, is_issued_token, random_token};
use crate::authz::decision::{Decision, PageReason, Redirect, RedirectReason};
use crate::authz::request::AuthzRequest;
use crate::identity::Principal;
use crate::idp::{Grant, TokenError};
use crate::session::{Purpose, Session, StoreError};
use crate::token::{id_token, now_secs};

impl LoginFlow {
    /// Whether the browser holds this flow's login cookie for the callback's `state`: the sign-in
    /// it completes began here.
    pub(super) fn holds_login_for(&self, req: &AuthzRequest) -> bool {
        let query = req.path.split_once('?').map_or("", |(_, q)| q);
        let state = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v);
        state.is_some_and(|state| {
            is_issued_token(&state)
                && self
                    .sessions
                    .cookies()
                    .read(
                        &req.cookies(),
                        &self.sessions.cookies().login_name(&state[..16]),
                    )
                    .is_some()
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
        let Some(state) = state else {
            return self.page(PageReason::MissingState, "/", Vec::new());
        };
        // The state names the login cookie: nothing but what portcullis issued may go near one.
        if !is_issued_token(&state) {
            return self.page(PageReason::MalformedState, "/", Vec::new());
        }
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
        // One use per state, from here on, whatever happens next: claimed in one atomic step, so
        // that of parallel copies of this callback (a double submit, a prefetch, a retry) exactly
        // one exchanges the code. A code used twice may make the provider revoke every token
        // issued from it (RFC 6749 4.1.2), signing out the user who just signed in.
        match self.claim_state(&state).await {
            Ok(true) => {}
            Ok(false) => return self.page(PageReason::ReplayedState, &retry, clear_tx),
            Err(e) => {
                tracing::warn!(error = %e, "claiming a login state failed");
                return self.page(PageReason::LoginUnavailable, &retry, clear_tx);
            }
        }
        let grant = Grant::AuthorizationCode {
            code: &code,
            redirect_uri: &tx.redirect_uri,
            verifier: &tx.verifier,
        };
        let tokens = match self.token_endpoint.grant(metadata, grant).await {
            Ok(t) => t,
            Err(TokenError::NoEndpoint) => {
                return self.page(PageReason::LoginUnavailable, &retry, clear_tx);
            }
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
            self.token_endpoint.client_id(),
            &tx.nonce,
            now,
            self.settings.time_rules,
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
        let access_expires_at =
            access_expiry(tokens.expires_in, tokens.access_token.as_deref(), now);
        // After the provider ended this user's sessions: this one begins after it.
        let created_at = self.sessions.begins(&principal.subject, now);
        let session = Session {
            sid: random_token(),
            principal,
            id_token,
            access_token: tokens.access_token,
            access_expires_at,
            access_issued_at: now,
            refresh_token: tokens.refresh_token,
            created_at,
            seen_at: now,
        };
        let present = jar.names();
        let mut set_cookies = match self.sessions.save(&session, &present).await {
            Ok(cookies) => cookies,
            // Written anyway, it would never be read back: every page load would log in again.
            Err(e @ StoreError::TooLarge(_)) => {
                tracing::warn!(error = %e, "a new session is too large for the cookie store");
                return self.page(PageReason::SessionTooLarge, &retry, clear_tx);
            }
            Err(e) => {
                tracing::warn!(error = %e, "storing a new session failed");
                return self.page(PageReason::LoginUnavailable, &retry, clear_tx);
            }
        };
        set_cookies.extend(clear_tx);
        // A pass of an earlier login in this browser names someone else: gone with the new login.
        let pass = self.sessions.cookies().pass_name();
        if present.contains(&pass) {
            set_cookies.push(self.sessions.cookies().clear(pass));
        }
        Decision::Redirect(Redirect {
            route: self.route.clone(),
            reason: RedirectReason::LoginComplete,
            identity: Some(Arc::new(session.principal)),
            // flaskoidc's OVERWRITE_REDIRECT_URI: one landing page for every login.
            location: self.settings.after_login.clone().unwrap_or(tx.return_to),
            set_cookies,
        })
    }

    /// True for the first caller only, in this process and, with a shared session store, across
    /// every replica using it.
    async fn claim_state(&self, state: &str) -> Result<bool, StoreError> {
        // `or_insert_with`, not `or_insert`: moka coalesces concurrent initialisations of one key
        // only in the former, so exactly one caller sees a fresh entry (`or_insert` reads, then
        // writes: two copies of a callback both passed it in a test).
        let fresh = self
            .used_states
            .entry(state.to_owned())
            .or_insert_with(|| ())
            .is_fresh();
        if !fresh {
            return Ok(false);
        }
        self.sessions.claim_once(state, LOGIN_TTL).await
    }
}
