//! The pure core: one request in, one [`Decision`] out, with no gRPC or HTTP types in sight.
//!
//! `check` reads top to bottom: clean the path, pick the route, find the credential, validate it
//! (token/), apply the route's requirements, and build the allowed request's header changes.

pub mod credentials;
pub mod decision;
pub mod path;
pub mod policy;
pub mod principal;
pub mod request;

use std::sync::Arc;

pub use decision::{Allow, AllowReason, Decision, Deny, DenyReason, DenyResponse};
pub use policy::{Action, Policy, Route, RouteName};
pub use principal::Principal;
pub use request::AuthzRequest;

use crate::token::Verifier;
use credentials::Credential;

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

pub struct Authorizer {
    policy: Policy,
    verifier: Arc<Verifier>,
    headers: IdentityHeaders,
    /// The route label of requests that matched no route (or could not be matched).
    unmatched: RouteName,
}

impl Authorizer {
    pub fn new(policy: Policy, verifier: Arc<Verifier>, headers: IdentityHeaders) -> Self {
        Self {
            policy,
            verifier,
            headers,
            unmatched: RouteName::new("none"),
        }
    }

    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    pub async fn check(&self, req: &AuthzRequest) -> Decision {
        if req.method.is_empty() || req.path.is_empty() {
            return self.deny(&self.unmatched, DenyReason::InvalidRequest);
        }
        let path = match path::clean_path(&req.path) {
            Ok(p) => p,
            Err(why) => return self.deny(&self.unmatched, DenyReason::Path(why)),
        };
        let Some(route) = self.policy.route_for(&req.method, &req.authority, path) else {
            return self.deny(&self.unmatched, DenyReason::NoRoute);
        };
        match route.action {
            Action::Deny => self.deny(&route.name, DenyReason::RouteDenied),
            Action::Public => self.allow(route, AllowReason::Public, None),
            // Until the browser login flow exists, a login route answers like an API route.
            Action::Api | Action::Login => {
                let principal = match credentials::credential(req) {
                    Credential::None => {
                        return self.deny(&route.name, DenyReason::MissingCredential);
                    }
                    Credential::MalformedBearer => {
                        return self.deny(&route.name, DenyReason::MalformedAuthorization);
                    }
                    Credential::Bearer(token) => match self.verifier.verify(token).await {
                        Ok(p) => p,
                        Err(why) => return self.deny(&route.name, DenyReason::Token(why)),
                    },
                };
                if let Err(unmet) = route.require.check(&principal) {
                    return self.deny(&route.name, DenyReason::Requirement(unmet));
                }
                self.allow(route, AllowReason::Bearer, Some(principal))
            }
        }
    }

    /// A denial decided before any route could be looked at (the adapter got no usable request).
    pub fn refuse(&self, reason: DenyReason) -> Decision {
        self.deny(&self.unmatched, reason)
    }

    fn deny(&self, route: &RouteName, reason: DenyReason) -> Decision {
        Decision::Deny(Deny {
            route: route.clone(),
            reason,
        })
    }

    fn allow(&self, route: &Route, reason: AllowReason, who: Option<Arc<Principal>>) -> Decision {
        let mut set_headers = Vec::with_capacity(3);
        if let Some(p) = &who {
            push_header(&mut set_headers, &self.headers.user, &p.user);
            if let Some(email) = &p.email {
                push_header(&mut set_headers, &self.headers.email, email);
            }
            if !p.groups.is_empty() {
                push_header(&mut set_headers, &self.headers.groups, &p.groups.join(","));
            }
        }
        let remove_headers = self
            .headers
            .spoofable
            .iter()
            .filter(|name| !set_headers.iter().any(|(set, _)| set == *name))
            .cloned()
            .collect();
        Decision::Allow(Allow {
            route: route.name.clone(),
            reason,
            set_headers,
            remove_headers,
            identity: who,
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
