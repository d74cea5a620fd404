//! [`Authorizer::check`]: one request in, one [`Decision`] out. It reads top to bottom: clean the
//! path, answer the login flow's own paths, pick the route, find the credential, validate it
//! (token/ or session/), apply the route's requirements, and build the allowed request's header
//! changes.

use std::sync::Arc;

use serde::Deserialize;

use super::assertion::AssertionSigner;
use super::credentials::{self, Credential};
use super::decision::{Allow, AllowReason, Decision, Deny, DenyReason, Held, Reuse};
use super::login::providers::Logins;
use super::path;
use super::policy::{self, Action, Policy, Route, RouteMode, RouteName, Unmet};
use super::request::AuthzRequest;
use crate::identity::Principal;
use crate::session::cookie::Stripped;
use crate::session::{Jar, SessionMiss};
use crate::token::{Verifier, now_secs};

/// The `context_extensions` key through which an Envoy route names the portcullis route.
pub const ROUTE_EXTENSION: &str = "portcullis_route";

/// The identity headers the upstream receives, and every spelling of them a client might send.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub user: Arc<str>,
    pub email: Arc<str>,
    pub groups: Arc<str>,
    /// The three names plus their underscore spellings: what is removed when not set.
    spoofable: Vec<Arc<str>>,
}

impl IdentityHeaders {
    /// Names must be lowercase (the config loader makes them so).
    pub fn new(user: &str, email: &str, groups: &str) -> Self {
        let mut spoofable: Vec<Arc<str>> = Vec::new();
        for name in [user, email, groups] {
            // Envoy passes `x_auth_request_user` on unless told to reject underscores, and some
            // frameworks (CGI, WSGI) read it as the same header as `x-auth-request-user`.
            for spelling in [name.to_owned(), name.replace('-', "_")] {
                if !spoofable.iter().any(|s| **s == *spelling) {
                    spoofable.push(Arc::from(spelling));
                }
            }
        }
        Self {
            user: Arc::from(user),
            email: Arc::from(email),
            groups: Arc::from(groups),
            spoofable,
        }
    }
}

/// What `Authorization` the upstream gets for a session-authenticated request
/// (`upstream.authorization`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamAuthorization {
    None,
    AccessToken,
    IdToken,
}

pub struct Authorizer {
    policy: Policy,
    verifier: Arc<Verifier>,
    headers: IdentityHeaders,
    /// The browser login flow of each provider and their sessions; `None` without a
    /// `session.secret`.
    logins: Option<Logins>,
    upstream_authorization: UpstreamAuthorization,
    /// The route label of requests that matched no route (or could not be matched).
    unmatched: RouteName,
    /// The signed identity for the upstream, when `upstream.assertion` is set.
    assertion: Option<AssertionSigner>,
}

impl Authorizer {
    pub fn new(policy: Policy, verifier: Arc<Verifier>, headers: IdentityHeaders) -> Self {
        Self {
            policy,
            verifier,
            headers,
            logins: None,
            upstream_authorization: UpstreamAuthorization::AccessToken,
            unmatched: RouteName::new("none"),
            assertion: None,
        }
    }

    /// Gives every allowed request with a caller a signed assertion of who it is.
    pub fn with_assertion(mut self, signer: AssertionSigner) -> Self {
        self.assertion = Some(signer);
        self
    }

    /// Enables browser login and sessions on `login` routes.
    pub fn with_logins(
        mut self,
        logins: Logins,
        upstream_authorization: UpstreamAuthorization,
    ) -> Self {
        self.logins = Some(logins);
        self.upstream_authorization = upstream_authorization;
        self
    }

    /// The browser login flows, when on.
    pub fn logins(&self) -> Option<&Logins> {
        self.logins.as_ref()
    }

    pub async fn check(&self, req: &AuthzRequest) -> Decision {
        if req.method.is_empty() || req.path.is_empty() {
            return self.deny(&self.unmatched, DenyReason::InvalidRequest);
        }
        // One canonical host for every host comparison; an authority with none is refused, so
        // that no spelling of a host (`admin.example.`) slips past the routes scoped to it.
        let Some(host) = policy::host_of(&req.authority) else {
            return self.deny(&self.unmatched, DenyReason::InvalidRequest);
        };
        let path = match path::clean_path(&req.path) {
            Ok(p) => p,
            Err(why) => return self.deny(&self.unmatched, DenyReason::Path(why)),
        };
        // The callback and logout paths (every provider's) are answered here; Envoy sends them
        // nowhere.
        if let Some(logins) = &self.logins {
            if path == logins.first().callback_path() {
                return logins.for_callback(req, host).callback(req).await;
            }
            if path == logins.first().logout_path() {
                return logins.logout(req, host).await;
            }
        }
        // An Envoy route may name the policy route itself (check_settings.context_extensions
        // `portcullis_route`): Envoy's config is trusted, the client cannot set this. A name that
        // matches no route is refused, never a fallback to path matching.
        let route = match req.context.get(ROUTE_EXTENSION) {
            Some(name) => self.policy.route_named(name),
            None => self.policy.route_for(&req.method, host, path),
        };
        let Some(route) = route else {
            return self.deny(&self.unmatched, DenyReason::NoRoute);
        };
        let decision = self.decide(req, host, route).await;
        match (route.mode, decision) {
            (
                RouteMode::Shadow,
                d @ (Decision::Deny(_) | Decision::Redirect(_) | Decision::Page(_)),
            ) => {
                // Let through as an anonymous request: no identity headers (the client's copies
                // removed as ever), none of the answer's cookies; what would have been is counted.
                let (would, reason) = d.kind_and_reason();
                let mut allowed = self.allow(
                    &self.upstream_cookies(req),
                    route,
                    AllowReason::Shadow { would, reason },
                    None,
                    Vec::new(),
                    None,
                );
                // Who would have been refused, for the audit event only: the upstream and
                // Envoy's metadata hear of no one (the adapters read a shadow's `would` instead).
                if let (Decision::Allow(a), Decision::Deny(denied)) = (&mut allowed, d) {
                    a.identity = denied.identity;
                }
                allowed
            }
            (RouteMode::Enforce | RouteMode::Shadow, d) => d,
        }
    }

    /// What `route` decides for `req`, as enforced.
    async fn decide(&self, req: &AuthzRequest, host: &str, route: &Route) -> Decision {
        match route.action {
            Action::Deny => self.deny(&route.name, DenyReason::RouteDenied),
            Action::Public => self.allow(
                &self.upstream_cookies(req),
                route,
                AllowReason::Public,
                None,
                Vec::new(),
                None,
            ),
            Action::Api | Action::Login => {
                let (principal, until) = match credentials::credential(req) {
                    Credential::None => return self.session_or_login(req, host, route).await,
                    Credential::MalformedBearer => {
                        return self.deny(&route.name, DenyReason::MalformedAuthorization);
                    }
                    Credential::Bearer(token) => match self.verifier.verify(token).await {
                        Ok(v) => (v.principal, v.until),
                        Err(why) => return self.deny(&route.name, DenyReason::Token(why)),
                    },
                };
                // With several providers, one's tokens are not for another's routes.
                if let Some(logins) = &self.logins
                    && logins.is_other_providers(host, route, &principal)
                {
                    return self.deny(&route.name, DenyReason::OtherProvider);
                }
                if let Err(unmet) = route.require.check(&principal) {
                    return self.unmet(&route.name, unmet, principal);
                }
                self.allow(
                    &self.upstream_cookies(req),
                    route,
                    AllowReason::Bearer,
                    Some(principal),
                    Vec::new(),
                    until.map(|until| Reuse {
                        held: Held::Bearer,
                        until,
                    }),
                )
            }
        }
    }

    /// No bearer token: a valid session cookie, else the login redirect (browser navigations on
    /// login routes) or a 401 that names where to log in (everything else).
    async fn session_or_login(&self, req: &AuthzRequest, host: &str, route: &Route) -> Decision {
        let Some(logins) = &self.logins else {
            return self.deny(&route.name, DenyReason::MissingCredential);
        };
        // Only the route's provider's session counts: another's cookies are not even opened.
        let login = logins.for_request(host, Some(route));
        let now = now_secs();
        let sessions = login.sessions();
        let jar = req.cookies();
        let present = jar.names();
        let loaded = match sessions.load(&jar, now).await {
            Ok(s) => login.fresh_session(s, now).await,
            Err(miss) => Err(miss),
        };
        let miss = match loaded {
            Ok((mut s, refreshed)) => {
                if let Err(unmet) = route.require.check(&s.principal) {
                    return self.unmet(&route.name, unmet, Arc::new(s.principal));
                }
                let token = match self.upstream_authorization {
                    UpstreamAuthorization::None => None,
                    UpstreamAuthorization::AccessToken => s.access_token.clone(),
                    UpstreamAuthorization::IdToken => Some(s.id_token.clone()),
                };
                let mut set_cookies = if refreshed || sessions.needs_touch(&s, now) {
                    s.seen_at = now;
                    match sessions.save(&s, &present).await {
                        Ok(cookies) => cookies,
                        Err(e) => {
                            tracing::warn!(error = %e, "session store unavailable");
                            return self.deny(&route.name, DenyReason::SessionStoreUnavailable);
                        }
                    }
                } else {
                    Vec::new()
                };
                let reuse = login.pass().and_then(|pass| {
                    let until = login.refresh_due(&s);
                    let renewed = pass.refresh(sessions.cookies(), &jar, &s, now, until);
                    set_cookies.extend(renewed.set_cookies);
                    renewed.held_until.map(|until| Reuse {
                        held: Held::Pass,
                        until,
                    })
                });
                let mut decision = self.allow(
                    &jar,
                    route,
                    AllowReason::Session,
                    Some(Arc::new(s.principal)),
                    set_cookies,
                    reuse,
                );
                if let Decision::Allow(a) = &mut decision {
                    match token {
                        Some(token) => a
                            .set_headers
                            .push((Arc::from("authorization"), format!("Bearer {token}"))),
                        // The session let this request in, not whatever the client put in
                        // Authorization (an unsigned JWT, Basic): an upstream that trusts
                        // portcullis to have checked bearer tokens must never read it.
                        None if req.header("authorization").is_some() => {
                            a.remove_headers.push(Arc::from("authorization"));
                        }
                        None => {}
                    }
                }
                return decision;
            }
            Err(SessionMiss::Unavailable) => {
                return self.deny(&route.name, DenyReason::SessionStoreUnavailable);
            }
            Err(miss) => miss,
        };
        // A cookie that is there but unusable is cleared, so the browser stops sending it.
        let clear = if miss == SessionMiss::None {
            Vec::new()
        } else {
            sessions.cookies().clear_all(&present)
        };
        if route.action == Action::Login && credentials::is_navigation(req) {
            let mut decision = login.start(req, &route.name);
            if let Decision::Redirect(r) = &mut decision {
                r.set_cookies.extend(clear);
            }
            return decision;
        }
        Decision::Deny(Deny {
            route: route.name.clone(),
            reason: DenyReason::MissingCredential,
            identity: None,
            login_url: (route.action == Action::Login).then(|| path::safe_return_to(&req.path)),
            set_cookies: clear,
        })
    }

    /// A denial decided before any route could be looked at (the adapter got no usable request).
    pub fn refuse(&self, reason: DenyReason) -> Decision {
        self.deny(&self.unmatched, reason)
    }

    fn deny(&self, route: &RouteName, reason: DenyReason) -> Decision {
        Decision::Deny(Deny {
            route: route.clone(),
            reason,
            identity: None,
            login_url: None,
            set_cookies: Vec::new(),
        })
    }

    /// A caller who is known but does not meet the route's requirements.
    fn unmet(&self, route: &RouteName, unmet: Unmet, who: Arc<Principal>) -> Decision {
        Decision::Deny(Deny {
            route: route.clone(),
            reason: DenyReason::Requirement(unmet),
            identity: Some(who),
            login_url: None,
            set_cookies: Vec::new(),
        })
    }

    /// The cookies [`Self::allow`] strips ours from. Without login none are ours, and the header
    /// is not parsed at all.
    fn upstream_cookies<'r>(&self, req: &'r AuthzRequest) -> Jar<'r> {
        match self.logins {
            Some(_) => req.cookies(),
            None => Jar::default(),
        }
    }

    fn allow(
        &self,
        jar: &Jar<'_>,
        route: &Route,
        reason: AllowReason,
        who: Option<Arc<Principal>>,
        set_cookies: Vec<String>,
        reuse: Option<Reuse>,
    ) -> Decision {
        let mut set_headers = Vec::with_capacity(4);
        if let Some(p) = &who {
            push_header(&mut set_headers, &self.headers.user, &p.user);
            if let Some(email) = &p.email {
                push_header(&mut set_headers, &self.headers.email, email);
            }
            if !p.groups.is_empty() {
                push_header(&mut set_headers, &self.headers.groups, &p.groups_header());
            }
        }
        if let (Some(signer), Some(p)) = (&self.assertion, &who)
            && let Some(assertion) = signer.assertion(p, &route.name, now_secs())
        {
            set_headers.push((signer.header().clone(), assertion.to_string()));
        }
        let mut remove_headers: Vec<Arc<str>> = self
            .headers
            .spoofable
            .iter()
            .chain(self.assertion.iter().flat_map(|a| a.spellings()))
            .filter(|name| !set_headers.iter().any(|(set, _)| set == *name))
            .cloned()
            .collect();
        // portcullis's own cookies (every provider's) never reach the upstream; the others do.
        if let Some(logins) = &self.logins {
            match logins.first().sessions().cookies().strip(jar) {
                Stripped::Unchanged => {}
                Stripped::Empty => remove_headers.push(Arc::from("cookie")),
                Stripped::Rest(rest) => set_headers.push((Arc::from("cookie"), rest)),
            }
        }
        Decision::Allow(Allow {
            route: route.name.clone(),
            reason,
            set_headers,
            remove_headers,
            identity: who,
            set_cookies,
            reuse,
        })
    }
}

/// A claim with control characters would make an invalid header: it is left out (and so removed).
fn push_header(out: &mut Vec<(Arc<str>, String)>, name: &Arc<str>, value: &str) {
    if !value.is_empty() && !value.chars().any(char::is_control) {
        out.push((name.clone(), value.to_owned()));
    }
}

#[cfg(test)]
mod tests;
