//! How a decision is said in HTTP: the status, headers and body of every answer portcullis gives
//! itself (denials, redirects, the sign-in-failed page). Every adapter sends these as they are.

use super::decision::{Deny, DenyReason, Page, PageReason, Redirect};
use crate::token::TokenRejection;

/// The HTTP answer to a denied request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

const REALM: &str = "portcullis";

/// RFC 6750 3.1 error codes.
enum BearerError {
    /// No credential at all: the challenge carries no error code.
    None,
    InvalidRequest,
    InvalidToken,
    InsufficientScope,
}

impl BearerError {
    fn code(&self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::InvalidRequest => Some("invalid_request"),
            Self::InvalidToken => Some("invalid_token"),
            Self::InsufficientScope => Some("insufficient_scope"),
        }
    }
}

impl Deny {
    /// Status, `WWW-Authenticate`, and a small JSON body with a safe, fixed message.
    pub fn response(&self) -> DenyResponse {
        let (status, bearer, error, message) = match self.reason {
            DenyReason::MissingCredential => (
                401,
                Some(BearerError::None),
                "unauthorized",
                "authentication required",
            ),
            DenyReason::MalformedAuthorization => (
                401,
                Some(BearerError::InvalidRequest),
                "invalid_request",
                "malformed Authorization header",
            ),
            DenyReason::Token(t) => match t {
                TokenRejection::KeysUnavailable | TokenRejection::CheckUnavailable => (
                    503,
                    None,
                    "temporarily_unavailable",
                    "cannot verify tokens right now",
                ),
                // Bounded questions to the provider: this token was not asked about.
                TokenRejection::CheckRateLimited => (
                    401,
                    Some(BearerError::InvalidToken),
                    "invalid_token",
                    "the token cannot be checked right now",
                ),
                TokenRejection::Expired => (
                    401,
                    Some(BearerError::InvalidToken),
                    "invalid_token",
                    "the token has expired",
                ),
                TokenRejection::TooLarge
                | TokenRejection::Malformed
                | TokenRejection::AlgorithmNotAllowed
                | TokenRejection::UnknownIssuer
                | TokenRejection::UnknownKey
                | TokenRejection::BadSignature
                | TokenRejection::NotYetValid
                | TokenRejection::WrongAudience
                | TokenRejection::LifetimeTooLong
                | TokenRejection::InvalidClaims
                | TokenRejection::Inactive => (
                    401,
                    Some(BearerError::InvalidToken),
                    "invalid_token",
                    "the token is not valid",
                ),
            },
            DenyReason::OtherProvider => (
                401,
                Some(BearerError::InvalidToken),
                "invalid_token",
                "the token is not valid",
            ),
            DenyReason::Path(_) | DenyReason::InvalidRequest => {
                (400, None, "bad_request", "the request cannot be authorized")
            }
            DenyReason::SessionStoreUnavailable => (
                503,
                None,
                "temporarily_unavailable",
                "sessions cannot be read right now",
            ),
            DenyReason::NoRoute | DenyReason::RouteDenied => {
                (403, None, "forbidden", "access denied")
            }
            DenyReason::Requirement(_) => (
                403,
                Some(BearerError::InsufficientScope),
                "forbidden",
                "not allowed for this user",
            ),
        };
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            ("cache-control", "no-store".to_owned()),
        ];
        if let Some(bearer) = bearer {
            let challenge = match bearer.code() {
                None => format!("Bearer realm=\"{REALM}\""),
                Some(code) => {
                    format!(
                        "Bearer realm=\"{REALM}\", error=\"{code}\", error_description=\"{message}\""
                    )
                }
            };
            headers.push(("www-authenticate", challenge));
        }
        if status == 503 {
            headers.push(("retry-after", "5".to_owned()));
        }
        headers.extend(self.set_cookies.iter().map(|c| ("set-cookie", c.clone())));
        let body = match &self.login_url {
            Some(url) => serde_json::json!({ "error": error, "error_description": message, "login_url": url }),
            None => serde_json::json!({ "error": error, "error_description": message }),
        }
        .to_string();
        DenyResponse {
            status,
            headers,
            body,
        }
    }
}

impl Page {
    /// Status and an escaped, styled HTML page with a "try again" link.
    pub fn response(&self) -> DenyResponse {
        let (status, title, message) = match self.reason {
            PageReason::MissingState
            | PageReason::MalformedState
            | PageReason::UnknownState
            | PageReason::ReplayedState
            | PageReason::DuplicateParameter
            | PageReason::IssuerMismatch => (
                400,
                "Sign-in could not be completed",
                "This sign-in link is not valid in this browser, or it was already used.",
            ),
            PageReason::IdpError => (
                400,
                "Sign-in was not completed",
                "The identity provider did not sign you in.",
            ),
            PageReason::TokenEndpointFailed
            | PageReason::IdTokenInvalid
            | PageReason::LoginUnavailable => (
                502,
                "Sign-in failed",
                "The identity provider could not be reached or gave an answer that cannot be trusted.",
            ),
            PageReason::SessionTooLarge => (
                500,
                "Sign-in failed",
                "Your sign-in is too large for this browser to keep (an account in very many groups). \
                 The administrator can keep sessions on the server instead (session.store: redis).",
            ),
        };
        let retry = html_escape(&self.retry);
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
             <meta name=\"viewport\" content=\"width=device-width\"><style>body{{font-family:system-ui,sans-serif;\
             max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}a{{color:#0b5cad}}</style></head>\
             <body><h1>{title}</h1><p>{message}</p><p><a href=\"{retry}\">Try again</a></p></body></html>\n"
        );
        let mut headers = vec![
            ("content-type", "text/html; charset=utf-8".to_owned()),
            ("cache-control", "no-store".to_owned()),
        ];
        headers.extend(self.set_cookies.iter().map(|c| ("set-cookie", c.clone())));
        DenyResponse {
            status,
            headers,
            body,
        }
    }
}

impl Redirect {
    pub fn response(&self) -> DenyResponse {
        let mut headers = vec![
            ("location", self.location.clone()),
            ("cache-control", "no-store".to_owned()),
        ];
        headers.extend(self.set_cookies.iter().map(|c| ("set-cookie", c.clone())));
        DenyResponse {
            status: 302,
            headers,
            body: String::new(),
        }
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::path::PathRejection;
    use crate::authz::policy::{RouteName, Unmet};

    fn deny(reason: DenyReason) -> DenyResponse {
        Deny {
            route: RouteName::new("r"),
            reason,
            identity: None,
            login_url: None,
            set_cookies: Vec::new(),
        }
        .response()
    }

    fn header<'a>(r: &'a DenyResponse, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn missing_credential_is_a_bare_challenge() {
        let r = deny(DenyReason::MissingCredential);
        assert_eq!(r.status, 401);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer realm=\"portcullis\"")
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "unauthorized");
    }

    #[test]
    fn bad_tokens_say_invalid_token_and_nothing_more() {
        for t in [
            TokenRejection::BadSignature,
            TokenRejection::UnknownKey,
            TokenRejection::WrongAudience,
        ] {
            let r = deny(DenyReason::Token(t));
            assert_eq!(r.status, 401);
            let challenge = header(&r, "www-authenticate").unwrap();
            assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
            assert!(
                !r.body.contains(t.as_str()),
                "the precise reason stays in logs and metrics"
            );
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(deny(DenyReason::RouteDenied).status, 403);
        assert_eq!(deny(DenyReason::NoRoute).status, 403);
        assert_eq!(deny(DenyReason::Requirement(Unmet::Group)).status, 403);
        assert_eq!(
            deny(DenyReason::Path(PathRejection::DotSegment)).status,
            400
        );
        let r = deny(DenyReason::Token(TokenRejection::KeysUnavailable));
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "retry-after"), Some("5"));
        assert_eq!(header(&r, "www-authenticate"), None);
    }
}
