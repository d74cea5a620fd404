//! The refresh of a session's access token with its refresh token: early enough that the
//! upstream never gets an expired token, once per session however many requests arrive meanwhile,
//! in this process (a single flight) and, with Redis, among every replica (one takes the turn, the
//! others take its tokens): a refresh token used twice makes a provider that rotates them revoke
//! the grant.

use std::sync::Arc;

use super::{LoginFlow, Refreshed, access_expiry};
use crate::audit::{self, Event, RefreshOutcome};
use crate::idp::{Grant, TokenError};
use crate::metrics::RefreshResult;
use crate::session::{RefreshTurn, Session, SessionMiss};

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
        let Some(due) = self.refresh_due(&s) else {
            return Ok((s, false));
        };
        if now < due {
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

    /// When [`Self::fresh_session`] refreshes `s`'s access token: `refresh_before` ahead of its
    /// expiry, at most half its lifetime; `None` when its expiry is unknown.
    pub fn refresh_due(&self, s: &Session) -> Option<u64> {
        let exp = s.access_expires_at;
        if exp == 0 {
            return None;
        }
        let lifetime = exp.saturating_sub(s.access_issued_at);
        Some(exp - self.settings.refresh_before.as_secs().min(lifetime / 2))
    }

    async fn refresh(&self, s: Session, now: u64) -> Arc<Refreshed> {
        let (sid, exp) = (s.sid.clone(), s.access_expires_at);
        let turn = self
            .sessions
            .refresh_turn(&sid, exp)
            .await
            .unwrap_or_else(|e| {
                // Refreshing here may race another replica; not refreshing would end the session.
                tracing::warn!(error = %e, "Redis cannot share this refresh; refreshing here");
                RefreshTurn::Alone
            });
        match turn {
            RefreshTurn::Alone => self.refresh_at_idp(s, now).await,
            RefreshTurn::Mine => {
                let outcome = self.refresh_at_idp(s, now).await;
                let shared = match &*outcome {
                    Refreshed::Tokens(new) => self.sessions.publish_refresh(&sid, exp, new).await,
                    Refreshed::Ended | Refreshed::Failed => {
                        self.sessions.release_refresh(&sid, exp).await
                    }
                };
                if let Err(e) = shared {
                    tracing::warn!(error = %e, "a refresh could not be shared with other replicas");
                }
                outcome
            }
            RefreshTurn::Done(new) => {
                self.metrics.refresh(RefreshResult::from_replica);
                Arc::new(Refreshed::Tokens(new))
            }
            RefreshTurn::Lost => {
                tracing::warn!("another replica's refresh did not come; keeping the session");
                self.metrics.refresh(RefreshResult::failed);
                Arc::new(Refreshed::Failed)
            }
        }
    }

    /// Asks the provider for new tokens with the session's refresh token.
    async fn refresh_at_idp(&self, mut s: Session, now: u64) -> Arc<Refreshed> {
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
            Err(TokenError::InvalidGrant) => {
                audit::emit(&Event::RefreshRefused {
                    user: &s.principal.user,
                    outcome: RefreshOutcome::SessionEnded,
                });
                (Refreshed::Ended, RefreshResult::ended)
            }
            Err(why) => {
                tracing::warn!(
                    reason = why.as_str(),
                    "refreshing an access token failed; keeping the session while it lasts"
                );
                audit::emit(&Event::RefreshRefused {
                    user: &s.principal.user,
                    outcome: RefreshOutcome::KeptUntilExpiry,
                });
                (Refreshed::Failed, RefreshResult::failed)
            }
        };
        self.metrics.refresh(label);
        Arc::new(outcome)
    }
}
