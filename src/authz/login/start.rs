//! The start of a login: the browser is sent to the IdP's authorization endpoint, with what the
//! callback will check sealed into a login cookie of its own.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use super::{LOGIN_TTL, LoginFlow, Transaction, origin, random_token};
use crate::authz::decision::{Decision, PageReason, Redirect, RedirectReason};
use crate::authz::path::safe_return_to;
use crate::authz::policy::RouteName;
use crate::authz::request::AuthzRequest;
use crate::session::Purpose;
use crate::token::now_secs;

/// A longer URL to come back to is not kept (the login starts from `/`): the login cookie carries it.
const MAX_RETURN_TO: usize = 4096;

impl LoginFlow {
    /// Sends the browser to the IdP; it comes back to the URL it asked for.
    pub fn start(&self, req: &AuthzRequest, route: &RouteName) -> Decision {
        let Some(metadata) = self.keys.metadata() else {
            return self.page(PageReason::LoginUnavailable, "/", Vec::new());
        };
        let Some(authorize) = metadata.authorization_endpoint.clone() else {
            return self.page(PageReason::LoginUnavailable, "/", Vec::new());
        };
        let state = random_token();
        let nonce = random_token();
        let verifier = random_token();
        let challenge = B64.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            verifier.as_bytes(),
        ));
        let redirect_uri = self.redirect_uri(req);
        let tx = Transaction {
            state: state.clone(),
            nonce: nonce.clone(),
            verifier,
            return_to: Some(safe_return_to(&req.path))
                .filter(|r| r.len() <= MAX_RETURN_TO)
                .unwrap_or_else(|| "/".to_owned()),
            redirect_uri: redirect_uri.clone(),
            created_at: now_secs(),
        };
        let sealed = self.sessions.codec().seal(
            Purpose::Login,
            &serde_json::to_vec(&tx).expect("serializes"),
        );
        let cookie = match self.sessions.cookies().set(
            &self.sessions.cookies().login_name(&state[..16]),
            &sealed,
            LOGIN_TTL,
            &[],
        ) {
            Ok(cookie) => cookie,
            // A few hundred bytes with a return target of at most MAX_RETURN_TO: never.
            Err(e) => {
                tracing::warn!(error = %e, "the login transaction does not fit in a cookie");
                return self.page(PageReason::LoginUnavailable, "/", Vec::new());
            }
        };
        let mut location = authorize;
        {
            let mut q = location.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", self.token_endpoint.client_id())
                .append_pair("redirect_uri", &redirect_uri)
                .append_pair("scope", &self.settings.scopes.join(" "))
                .append_pair("state", &state)
                .append_pair("nonce", &nonce)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(aud) = &self.settings.audience {
                q.append_pair("audience", aud);
            }
            for (k, v) in &self.settings.extra_auth_params {
                q.append_pair(k, v);
            }
        }
        Decision::Redirect(Redirect {
            route: route.clone(),
            reason: RedirectReason::Login,
            identity: None,
            location: location.into(),
            set_cookies: cookie,
        })
    }

    fn redirect_uri(&self, req: &AuthzRequest) -> String {
        match &self.settings.redirect_uri {
            Some(u) => u.to_string(),
            None => format!(
                "{}{}",
                origin(req, self.settings.scheme),
                self.settings.callback_path
            ),
        }
    }
}
