//! Logout: the session ends here (and in a server-side store), every cookie of ours is cleared,
//! and the browser goes to the IdP's end-session endpoint, never anywhere the query names.

use url::Url;

use super::{LoginFlow, origin};
use crate::authz::decision::{Decision, Redirect, RedirectReason};
use crate::authz::path::safe_return_to;
use crate::authz::policy::host_without_port;
use crate::authz::request::AuthzRequest;
use crate::token::now_secs;

impl LoginFlow {
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
                            .append_pair("client_id", self.token_endpoint.client_id());
                    }
                    url.to_string()
                }
                // Auth0 without RP-initiated logout enabled: its own logout endpoint.
                None => match Url::parse(&m.issuer).and_then(|i| i.join("/v2/logout")) {
                    Ok(mut url) => {
                        url.query_pairs_mut()
                            .append_pair("client_id", self.token_endpoint.client_id())
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
}
