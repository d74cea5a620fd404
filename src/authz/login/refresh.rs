//! The refresh of a session's access token with its refresh token: early enough that the
//! upstream never gets an expired token, once per session however many requests arrive meanwhile.

use std::sync::Arc;

use super::{LoginFlow, Refreshed, access_expiry};
use crate::idp::{Grant, TokenError};
use crate::metrics::RefreshResult;
use crate::session::{Session, SessionMiss};

impl LoginFlow {
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
        let (Some(metadata), Some(refresh_token)) = (self.keys.metadata(), s.refresh_token.clone())
        else {
            return Arc::new(Refreshed::Failed);
        };
        let result = self
            .token_endpoint
            .grant(metadata, Grant::RefreshToken(&refresh_token))
            .await;
        let (outcome, label) = match result {
            Ok(tokens) => {
                s.access_expires_at =
                    access_expiry(tokens.expires_in, tokens.access_token.as_deref(), now);
                s.access_token = tokens.access_token.or(s.access_token);
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
            Err(TokenError::InvalidGrant) => (Refreshed::Ended, RefreshResult::ended),
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
}
