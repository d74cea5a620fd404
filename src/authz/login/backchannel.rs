//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): the provider says a sign-in ended
//! elsewhere (another app, an admin). Its logout token is validated fully and used once; then every
//! session of that provider session (`sid`), or of that user when it names no `sid`, ends at its
//! next request, on every replica sharing Redis within [`crate::session::revoked::SYNC_EVERY`].

use super::LoginFlow;
use crate::audit::{self, Event, RevokedScope};
use crate::authz::response::DenyResponse;
use crate::session::Revoked;
use crate::token::logout_token::{self, LogoutRejection};
use crate::token::now_secs;

/// Why a logout token changed nothing. Bounded: a metric label and log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackchannelRefusal {
    Token(LogoutRejection),
    /// Its `jti` was used before.
    Replayed,
    /// The provider's discovery document is not loaded yet.
    LoginUnavailable,
    /// Redis, where replicas share used `jti`s and revocations, did not answer.
    StoreUnavailable,
}

impl BackchannelRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token(t) => t.as_str(),
            Self::Replayed => "logout_token_replayed",
            Self::LoginUnavailable => "login_unavailable",
            Self::StoreUnavailable => "session_store_unavailable",
        }
    }
}

/// The answer to the provider (2.8): 200 when done, 400 for a token that changed nothing, 503
/// when it could not be decided now; never cached.
pub fn response(outcome: Result<(), BackchannelRefusal>) -> DenyResponse {
    let (status, body) = match outcome {
        Ok(()) => (200, String::new()),
        Err(why) => {
            let status = match why {
                BackchannelRefusal::Token(_) | BackchannelRefusal::Replayed => 400,
                BackchannelRefusal::LoginUnavailable | BackchannelRefusal::StoreUnavailable => 503,
            };
            let body = serde_json::json!({
                "error": "invalid_request",
                "error_description": why.as_str(),
            });
            (status, body.to_string())
        }
    };
    let mut headers = vec![("cache-control", "no-store".to_owned())];
    if !body.is_empty() {
        headers.push(("content-type", "application/json".to_owned()));
    }
    DenyResponse {
        status,
        headers,
        body,
    }
}

impl LoginFlow {
    /// Ends what `logout_token` names, or says why not.
    pub async fn backchannel_logout(&self, logout_token: &str) -> Result<(), BackchannelRefusal> {
        let outcome = self.end_named(logout_token).await;
        match outcome {
            Ok(()) => self.metrics.backchannel_logout("ok"),
            Err(why) => {
                self.metrics.backchannel_logout(why.as_str());
                audit::emit(&Event::LogoutTokenRefused {
                    reason: why.as_str(),
                });
            }
        }
        outcome
    }

    async fn end_named(&self, logout_token: &str) -> Result<(), BackchannelRefusal> {
        let Some(metadata) = self.keys.metadata() else {
            return Err(BackchannelRefusal::LoginUnavailable);
        };
        let now = now_secs();
        let rules = self.settings.time_rules;
        let claims = logout_token::validate(
            logout_token,
            &self.keys,
            &metadata.issuer,
            self.token_endpoint.client_id(),
            now,
            rules,
        )
        .await
        .map_err(BackchannelRefusal::Token)?;
        // Once, in this process and among the replicas sharing Redis, for as long as the token
        // could be accepted at all.
        if self.used_jtis.get(&claims.jti).is_some() {
            return Err(BackchannelRefusal::Replayed);
        }
        self.used_jtis.insert(claims.jti.clone(), ());
        match self
            .sessions
            .claim_once(
                &format!("logout-jti:{}", claims.jti),
                logout_token::REPLAY_WINDOW,
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(BackchannelRefusal::Replayed),
            Err(_) => return Err(BackchannelRefusal::StoreUnavailable),
        }
        // A `sid` ends that sign-in only; a `sub` alone ends every session of the user (2.7).
        let (what, scope) = match (&claims.sid, &claims.sub) {
            (Some(sid), _) => (Revoked::Sid(sid), RevokedScope::ProviderSession),
            (None, Some(sub)) => (Revoked::Sub(sub), RevokedScope::User),
            (None, None) => return Err(BackchannelRefusal::Token(LogoutRejection::NoSubject)),
        };
        self.sessions
            .revoke(what, now)
            .await
            .map_err(|_| BackchannelRefusal::StoreUnavailable)?;
        audit::emit(&Event::SessionsRevoked {
            user: claims.sub.as_deref(),
            scope,
        });
        Ok(())
    }
}
