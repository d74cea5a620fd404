//! Audit events: one structured line per security event, on the `audit` log target (its own
//! stream for a log pipeline: `target == "audit"` in JSON, the message `audit` in plain lines).
//! An event carries a user id, a route and bounded reasons, never a token, cookie, code or secret;
//! user ids come from claims, so control characters are replaced before they reach a log line.

use std::borrow::Cow;

/// The log target every event is written to; `telemetry::init` keeps it at `info` whatever
/// `log.level` says.
pub const TARGET: &str = "audit";

/// What happened. Reasons are the bounded labels the metrics use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A callback exchanged its code and made a session.
    LoginSucceeded { user: &'a str, route: &'a str },
    /// A callback refused (replayed state, the provider's error, an invalid ID token, ...).
    LoginFailed { route: &'a str, reason: &'a str },
    /// A logout; `user` when the request still carried a session.
    Logout { user: Option<&'a str> },
    /// The provider would not refresh a session's tokens.
    RefreshRefused {
        user: &'a str,
        outcome: RefreshOutcome,
    },
    /// A request denied (not a login redirect: that is no security event).
    RequestDenied {
        route: &'a str,
        reason: &'a str,
        user: Option<&'a str>,
    },
    /// The provider ended a sign-in (back-channel logout): its sessions end at their next request.
    SessionsRevoked {
        user: Option<&'a str>,
        scope: RevokedScope,
    },
    /// A logout token that changed nothing (forged, replayed, for another client, ...).
    LogoutTokenRefused { reason: &'a str },
    /// A config reload (SIGHUP, a changed file), and how many problems refused it.
    ConfigReloaded {
        outcome: ReloadOutcome,
        problems: usize,
    },
    /// A shadow route let through a request it would have denied or redirected.
    RequestShadowed {
        route: &'a str,
        would: &'a str,
        reason: &'a str,
        user: Option<&'a str>,
    },
}

/// What a back-channel logout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedScope {
    /// Every session of one sign-in at the provider (`sid`).
    ProviderSession,
    /// Every session of the user begun before (`sub` alone).
    User,
}

impl RevokedScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProviderSession => "provider_session",
            Self::User => "user",
        }
    }
}

/// Whether a reloaded config was swapped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    Applied,
    /// A problem in it: the running config stays.
    Refused,
}

impl ReloadOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Refused => "refused",
        }
    }
}

/// What a refused refresh means for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The refresh token was refused (revoked, expired, reused): the session is over.
    SessionEnded,
    /// The provider failed (down, an error): the session lasts while its access token does.
    KeptUntilExpiry,
}

impl RefreshOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionEnded => "session_ended",
            Self::KeptUntilExpiry => "kept_until_expiry",
        }
    }
}

impl Event<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Self::LoginSucceeded { .. } => "login_succeeded",
            Self::LoginFailed { .. } => "login_failed",
            Self::Logout { .. } => "logout",
            Self::RefreshRefused { .. } => "refresh_refused",
            Self::RequestDenied { .. } => "request_denied",
            Self::RequestShadowed { .. } => "request_shadowed",
            Self::ConfigReloaded { .. } => "config_reloaded",
            Self::SessionsRevoked { .. } => "sessions_revoked",
            Self::LogoutTokenRefused { .. } => "logout_token_refused",
        }
    }
}

/// Writes `event` as one line on the audit target.
pub fn emit(event: &Event<'_>) {
    let name = event.name();
    match *event {
        Event::LoginSucceeded { user, route } => {
            tracing::info!(target: TARGET, event = name, user = %clean(user), route, "audit");
        }
        Event::LoginFailed { route, reason } => {
            tracing::info!(target: TARGET, event = name, route, reason, "audit");
        }
        Event::Logout { user } => {
            tracing::info!(target: TARGET, event = name, user = user.map(clean).as_deref(), "audit");
        }
        Event::RefreshRefused { user, outcome } => {
            tracing::info!(
                target: TARGET,
                event = name,
                user = %clean(user),
                outcome = outcome.as_str(),
                "audit"
            );
        }
        Event::RequestDenied {
            route,
            reason,
            user,
        } => {
            tracing::info!(
                target: TARGET,
                event = name,
                route,
                reason,
                user = user.map(clean).as_deref(),
                "audit"
            );
        }
        Event::SessionsRevoked { user, scope } => {
            tracing::info!(
                target: TARGET,
                event = name,
                user = user.map(clean).as_deref(),
                scope = scope.as_str(),
                "audit"
            );
        }
        Event::LogoutTokenRefused { reason } => {
            tracing::info!(target: TARGET, event = name, reason, "audit");
        }
        Event::ConfigReloaded { outcome, problems } => {
            tracing::info!(
                target: TARGET,
                event = name,
                outcome = outcome.as_str(),
                problems,
                "audit"
            );
        }
        Event::RequestShadowed {
            route,
            would,
            reason,
            user,
        } => {
            tracing::info!(
                target: TARGET,
                event = name,
                route,
                would,
                reason,
                user = user.map(clean).as_deref(),
                "audit"
            );
        }
    }
}

/// A claim value as one safe line: control characters become `?`, at most 256 characters.
fn clean(s: &str) -> Cow<'_, str> {
    const MAX: usize = 256;
    if s.len() <= MAX && !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .take(MAX)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_values_cannot_break_a_line() {
        assert_eq!(clean("alice@example.com"), "alice@example.com");
        assert_eq!(clean("eve\n{\"event\":\"x\"}\r"), "eve?{\"event\":\"x\"}?");
        assert_eq!(clean(&"a".repeat(1000)).len(), 256);
    }
}
