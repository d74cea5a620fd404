//! What the core decides, with a bounded reason for each outcome, and how a decision is counted
//! (metrics and the check's log line). How it is said in HTTP is response.rs.

use std::sync::Arc;
use std::time::Duration;

use super::path::PathRejection;
use super::policy::{RouteName, Unmet};
use crate::audit::{self, Event};
use crate::identity::Principal;
use crate::metrics::{LoginStage, Metrics};
use crate::token::TokenRejection;

#[derive(Debug)]
pub enum Decision {
    Allow(Allow),
    Deny(Deny),
    /// A 302 answered by portcullis itself: to the IdP, back from the callback, or after logout.
    Redirect(Redirect),
    /// A small HTML page answered by portcullis itself (a failed callback).
    Page(Page),
}

impl Decision {
    pub fn route(&self) -> &RouteName {
        match self {
            Self::Allow(a) => &a.route,
            Self::Deny(d) => &d.route,
            Self::Redirect(r) => &r.route,
            Self::Page(p) => &p.route,
        }
    }

    /// The decision kind and its bounded reason: the metric labels and log fields of a check.
    pub fn kind_and_reason(&self) -> (DecisionKind, &'static str) {
        match self {
            Self::Allow(a) => (DecisionKind::Allow, a.reason.as_str()),
            Self::Deny(d) => (DecisionKind::Deny, d.reason.as_str()),
            Self::Redirect(r) => (DecisionKind::Redirect, r.reason.as_str()),
            Self::Page(p) => (DecisionKind::Deny, p.reason.as_str()),
        }
    }

    /// Writes the route, decision and reason onto the check's span (when tracing is on).
    pub fn describe(&self, span: &tracing::Span) {
        if span.is_disabled() {
            return;
        }
        let (kind, reason) = self.kind_and_reason();
        span.record("route", self.route().as_str());
        span.record("decision", kind.as_str());
        span.record("reason", reason);
    }

    /// Counts the check (route, kind, reason, duration) and the login funnel read off it, writes
    /// the audit event it is (if any) and the check's debug line.
    pub fn record(&self, metrics: &Metrics, elapsed: Duration) {
        let (kind, reason) = self.kind_and_reason();
        let route = self.route().as_str();
        metrics.check(self.route().label(), kind.as_str(), reason, elapsed);
        let stage = match self {
            Self::Redirect(r) => match r.reason {
                RedirectReason::Login => Some(LoginStage::started),
                RedirectReason::LoginComplete => {
                    if let Some(user) = user_of(&r.identity) {
                        audit::emit(&Event::LoginSucceeded { user, route });
                    }
                    Some(LoginStage::completed)
                }
                RedirectReason::Logout => {
                    metrics.logout();
                    audit::emit(&Event::Logout {
                        user: user_of(&r.identity),
                    });
                    None
                }
            },
            Self::Page(_) => {
                audit::emit(&Event::LoginFailed { route, reason });
                Some(LoginStage::failed)
            }
            Self::Deny(d) => {
                audit::emit(&Event::RequestDenied {
                    route,
                    reason,
                    user: user_of(&d.identity),
                });
                None
            }
            Self::Allow(a) => {
                if let AllowReason::Shadow { would, reason } = a.reason {
                    metrics.shadowed(self.route().label(), would.as_str(), reason);
                    audit::emit(&Event::RequestShadowed {
                        route,
                        would: would.as_str(),
                        reason,
                        user: user_of(&a.identity),
                    });
                }
                None
            }
        };
        if let Some(stage) = stage {
            metrics.login(stage, reason);
        }
        tracing::debug!(
            route = %self.route(),
            decision = kind.as_str(),
            reason,
            micros = elapsed.as_micros() as u64,
            "check"
        );
    }
}

/// The audit event's user: who the decision was about, when known.
fn user_of(who: &Option<Arc<Principal>>) -> Option<&str> {
    who.as_deref().map(|p| p.user.as_str())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionKind {
    Allow,
    Deny,
    Redirect,
}

impl DecisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Redirect => "redirect",
        }
    }
}

#[derive(Debug)]
pub struct Redirect {
    pub route: RouteName,
    pub reason: RedirectReason,
    /// Whose login completed, or whose session a logout ended (the audit event's user).
    pub identity: Option<Arc<Principal>>,
    pub location: String,
    pub set_cookies: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectReason {
    /// To the IdP's authorization endpoint.
    Login,
    /// From the callback back to where the user was going.
    LoginComplete,
    /// To the IdP's end-session endpoint.
    Logout,
}

impl RedirectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::LoginComplete => "login_complete",
            Self::Logout => "logout",
        }
    }
}

#[derive(Debug)]
pub struct Page {
    pub route: RouteName,
    pub reason: PageReason,
    /// Where "try again" leads.
    pub retry: String,
    pub set_cookies: Vec<String>,
}

/// Why a callback failed. Bounded: a metric label and log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageReason {
    MissingState,
    /// A `state` that portcullis cannot have issued.
    MalformedState,
    UnknownState,
    ReplayedState,
    DuplicateParameter,
    IdpError,
    IssuerMismatch,
    TokenEndpointFailed,
    IdTokenInvalid,
    LoginUnavailable,
    /// The new session does not fit in cookies (the cookie store) and so would never be read back.
    SessionTooLarge,
}

impl PageReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingState => "callback_missing_state",
            Self::MalformedState => "callback_malformed_state",
            Self::UnknownState => "callback_unknown_state",
            Self::ReplayedState => "callback_replayed_state",
            Self::DuplicateParameter => "callback_duplicate_parameter",
            Self::IdpError => "callback_idp_error",
            Self::IssuerMismatch => "callback_issuer_mismatch",
            Self::TokenEndpointFailed => "token_endpoint_failed",
            Self::IdTokenInvalid => "id_token_invalid",
            Self::LoginUnavailable => "login_unavailable",
            Self::SessionTooLarge => "session_too_large",
        }
    }
}

/// Let the request through, changed as listed.
#[derive(Debug)]
pub struct Allow {
    pub route: RouteName,
    pub reason: AllowReason,
    /// Headers the upstream gets, replacing whatever the client sent under these names.
    pub set_headers: Vec<(Arc<str>, String)>,
    /// Headers removed before the upstream sees the request (client-sent identity headers).
    pub remove_headers: Vec<Arc<str>>,
    /// Who the caller is, for Envoy's dynamic metadata (access logs, RBAC) and the audit event.
    /// A shadow allow's is who would have been refused, for the audit event only: the upstream
    /// and Envoy hear of no one.
    pub identity: Option<Arc<Principal>>,
    /// `Set-Cookie` values for the browser, added to the upstream's response (a renewed session).
    pub set_cookies: Vec<String>,
    /// How long the credential this allow rests on alone may stand for it on a route with no
    /// requirements: what the native filter's callout form caches (envoy-module/).
    pub reuse: Option<Reuse>,
}

/// A credential whose allow may be reused, and until when (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    pub held: Held,
    pub until: u64,
}

/// Which of the request's credentials an allow rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The bearer JWT in `Authorization`, good until its `exp`.
    Bearer,
    /// The pass the browser holds after this answer: the one it set, else the one it sent.
    Pass,
}

impl Held {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::Pass => "pass",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowReason {
    Public,
    Bearer,
    Session,
    /// A route in shadow mode let through what it would have answered otherwise (`would`, for a
    /// bounded `reason`).
    Shadow {
        would: DecisionKind,
        reason: &'static str,
    },
}

impl AllowReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Bearer => "bearer",
            Self::Session => "session",
            Self::Shadow { .. } => "shadow",
        }
    }

    /// What a shadow route would have answered, as `kind:reason` (Envoy's access log); `None` for
    /// an allow that would have been one.
    pub fn shadowed(self) -> Option<String> {
        match self {
            Self::Shadow { would, reason } => Some(format!("{}:{reason}", would.as_str())),
            Self::Public | Self::Bearer | Self::Session => None,
        }
    }
}

#[derive(Debug)]
pub struct Deny {
    pub route: RouteName,
    pub reason: DenyReason,
    /// Who was refused, when known (a requirement not met): the audit event's user.
    pub identity: Option<Arc<Principal>>,
    /// Where a browser would start its login, named in the 401 body for scripts (login routes).
    pub login_url: Option<String>,
    pub set_cookies: Vec<String>,
}

/// Why a request was denied. Bounded: a metric label and a log field, never client data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    MissingCredential,
    MalformedAuthorization,
    Token(TokenRejection),
    Path(PathRejection),
    InvalidRequest,
    NoRoute,
    RouteDenied,
    Requirement(Unmet),
    SessionStoreUnavailable,
    /// A bearer token of another login provider than the route's (with several).
    OtherProvider,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingCredential => "missing_credential",
            Self::MalformedAuthorization => "malformed_authorization",
            Self::Token(t) => t.as_str(),
            Self::Path(_) => "ambiguous_path",
            Self::InvalidRequest => "invalid_request",
            Self::NoRoute => "no_route",
            Self::RouteDenied => "route_denied",
            Self::Requirement(Unmet::Claim) => "claim_required",
            Self::Requirement(Unmet::Group) => "group_required",
            Self::Requirement(Unmet::EmailDomain) => "email_domain_required",
            Self::SessionStoreUnavailable => "session_store_unavailable",
            Self::OtherProvider => "token_other_provider",
        }
    }
}
