//! Logout: the session ends here (and in a server-side store), every cookie of ours is cleared,
//! and the browser goes to the IdP's end-session endpoint, never anywhere the query names.

use std::sync::Arc;

use url::Url;

use super::LoginFlow;
use crate::authz::decision::{Decision, Redirect, RedirectReason};
use crate::authz::path::safe_return_to;
use crate::authz::request::AuthzRequest;
use crate::token::now_secs;

impl LoginFlow {
    /// Ends the session here and at the IdP. The query is ignored: logout never goes off-site.
    pub async fn logout(&self, req: &AuthzRequest) -> Decision {
        let jar = req.cookies();
        let (id_token, identity) = match self.sessions.end(&jar, now_secs()).await {
            Some(s) => (Some(s.id_token), Some(Arc::new(s.principal))),
            None => (None, None),
        };
        let present = jar.names();
        let set_cookies = self.sessions.cookies().clear_all(&present);
        let back = self.post_logout_url(req);
        let client_id = self.token_endpoint.client_id();
        let location = match self.keys.metadata() {
            Some(m) => match &m.end_session_endpoint {
                Some(end) => {
                    let mut url = end.clone();
                    {
                        let mut q = url.query_pairs_mut();
                        if let Some(hint) = &id_token {
                            q.append_pair("id_token_hint", hint);
                        }
                        if let Some(back) = &back {
                            q.append_pair("post_logout_redirect_uri", back);
                        }
                        q.append_pair("client_id", client_id);
                    }
                    Some(url.to_string())
                }
                // Auth0 without RP-initiated logout enabled: its own logout endpoint.
                None => Url::parse(&m.issuer)
                    .and_then(|i| i.join("/v2/logout"))
                    .ok()
                    .map(|mut url| {
                        {
                            let mut q = url.query_pairs_mut();
                            q.append_pair("client_id", client_id);
                            if let Some(back) = &back {
                                q.append_pair("returnTo", back);
                            }
                        }
                        url.to_string()
                    }),
            },
            None => None,
        };
        Decision::Redirect(Redirect {
            route: self.route.clone(),
            reason: RedirectReason::Logout,
            identity,
            // Without a provider to send it to, the browser stays on this site.
            location: location.or(back).unwrap_or_else(|| "/".to_owned()),
            set_cookies,
        })
    }

    /// Where the provider sends the browser after logout: `login.post_logout_redirect`, a path on
    /// this site or an absolute URL on an allowed host (else this site's `/`). `None` when this
    /// site's origin cannot be told safely (see [`Self::site_origin`]): the provider then shows its
    /// own signed-out page.
    fn post_logout_url(&self, req: &AuthzRequest) -> Option<String> {
        let origin = self.site_origin(req)?;
        let target = &self.settings.post_logout_redirect;
        if target.starts_with('/') {
            return Some(format!("{origin}{}", safe_return_to(target)));
        }
        let same_site = Url::parse(&origin).ok()?.host_str().map(str::to_owned);
        Some(match Url::parse(target) {
            Ok(u)
                if matches!(u.scheme(), "https" | "http")
                    && u.host_str().is_some_and(|h| {
                        same_site
                            .as_deref()
                            .is_some_and(|s| s.eq_ignore_ascii_case(h))
                            || self.is_allowed_host(h)
                    }) =>
            {
                u.to_string()
            }
            _ => format!("{origin}/"),
        })
    }
}
