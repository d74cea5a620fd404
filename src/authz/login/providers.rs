//! Which provider's login flow a request goes to, with several (`providers:`): the route's
//! `provider`, else the one whose `hosts` take the request's host, else the first. A callback goes
//! to the flow whose login cookie its `state` names, a logout token to its issuer's flow, and a
//! logout ends the sessions of every provider on this host. Each flow has cookies and cookie keys
//! of its own, so a session one provider signed in is never another's.

use super::LoginFlow;
use crate::authz::decision::Decision;
use crate::authz::policy::Route;
use crate::authz::request::AuthzRequest;
use crate::identity::Principal;
use crate::idp::same_issuer;
use crate::token::now_secs;
use crate::token::validate::{self, Origin};

/// Every provider's login flow; the first is the default.
pub struct Logins {
    first: LoginFlow,
    more: Vec<LoginFlow>,
}

impl Logins {
    pub fn new(first: LoginFlow, more: Vec<LoginFlow>) -> Self {
        Self { first, more }
    }

    /// The first provider's flow: the one a request that names none signs in with.
    pub fn first(&self) -> &LoginFlow {
        &self.first
    }

    pub fn all(&self) -> impl Iterator<Item = &LoginFlow> {
        std::iter::once(&self.first).chain(&self.more)
    }

    /// The flow that signs `route`'s browsers in on `host` (`route`: `None` for the login flow's
    /// own paths, which belong to the host).
    pub fn for_request(&self, host: &str, route: Option<&Route>) -> &LoginFlow {
        if self.more.is_empty() {
            return &self.first;
        }
        // The config names only providers that exist; a name that matches none falls to the host.
        let named = route
            .and_then(|r| r.provider.as_deref())
            .and_then(|name| self.all().find(|f| f.provider_name() == Some(name)));
        named
            .or_else(|| {
                self.all()
                    .find(|f| f.settings.hosts.iter().any(|h| h.matches(host)))
            })
            .unwrap_or(&self.first)
    }

    /// Whether `who`'s token was issued by another provider than the one `route` signs in with
    /// on `host`: it is not for this route (tokens of issuers that sign no one in are judged by
    /// `bearer` alone).
    pub fn is_other_providers(&self, host: &str, route: &Route, who: &Principal) -> bool {
        if self.more.is_empty() {
            return false;
        }
        let Some(issuer) = who.claims.get("iss").and_then(|i| i.as_str()) else {
            return false;
        };
        let own = self.for_request(host, Some(route));
        !same_issuer(&own.settings.issuer, issuer)
            && self.all().any(|f| same_issuer(&f.settings.issuer, issuer))
    }

    /// The flow whose login this callback completes: the one holding the login cookie its
    /// `state` names (one host may sign in with several providers, by route); else the host's,
    /// which refuses it.
    pub fn for_callback(&self, req: &AuthzRequest, host: &str) -> &LoginFlow {
        if self.more.is_empty() {
            return &self.first;
        }
        self.all()
            .find(|f| f.holds_login_for(req))
            .unwrap_or_else(|| self.for_request(host, None))
    }

    /// Logs out of the host's provider (the redirect to its end-session endpoint), and ends the
    /// sessions every other provider holds on this host too: a sign-out signs out.
    pub async fn logout(&self, req: &AuthzRequest, host: &str) -> Decision {
        let main = self.for_request(host, None);
        let mut decision = main.logout(req).await;
        for other in self.all().filter(|f| !std::ptr::eq(*f, main)) {
            let cleared = other.end_here(req).await;
            if let Decision::Redirect(r) = &mut decision {
                r.set_cookies.extend(cleared);
            }
        }
        decision
    }

    /// The flow of the provider that issued `logout_token` (read, not verified: that flow
    /// verifies it); the first when none did, which refuses it.
    pub fn for_logout_token(&self, logout_token: &str) -> &LoginFlow {
        let issuer = validate::decode(logout_token, Origin::Bearer)
            .ok()
            .map(|jwt| jwt.iss().to_owned());
        issuer
            .and_then(|iss| self.all().find(|f| same_issuer(&f.settings.issuer, &iss)))
            .unwrap_or(&self.first)
    }
}

impl LoginFlow {
    /// The provider's name (`provider.name`), when it has one.
    pub fn provider_name(&self) -> Option<&str> {
        self.settings.provider.as_deref()
    }

    /// Ends this provider's session on this browser (in a server-side store too) and clears its
    /// cookies, without going to the provider.
    async fn end_here(&self, req: &AuthzRequest) -> Vec<String> {
        let jar = req.cookies();
        let present = jar.names();
        if !present.iter().any(|n| self.sessions.cookies().is_ours(n)) {
            return Vec::new();
        }
        self.sessions.end(&jar, now_secs()).await;
        self.sessions.cookies().clear_all(&present)
    }
}
