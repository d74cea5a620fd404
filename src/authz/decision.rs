//! What the core decides, and the one place a decision becomes an HTTP answer (status, headers, body)
//! that every adapter sends as it is.

use std::sync::Arc;

use super::path::PathRejection;
use super::policy::{RouteName, Unmet};
use super::principal::Principal;
use crate::token::TokenRejection;

#[derive(Debug)]
pub enum Decision {
    Allow(Allow),
    Deny(Deny),
}

impl Decision {
    pub fn route(&self) -> &RouteName {
        match self {
            Self::Allow(a) => &a.route,
            Self::Deny(d) => &d.route,
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
    /// Who the caller is, for Envoy's dynamic metadata (access logs, RBAC).
    pub identity: Option<Arc<Principal>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowReason {
    Public,
    Bearer,
}

impl AllowReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Bearer => "bearer",
        }
    }
}

#[derive(Debug)]
pub struct Deny {
    pub route: RouteName,
    pub reason: DenyReason,
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
        }
    }
}

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
                TokenRejection::KeysUnavailable => (
                    503,
                    None,
                    "temporarily_unavailable",
                    "cannot verify tokens right now",
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
                | TokenRejection::InvalidClaims => (
                    401,
                    Some(BearerError::InvalidToken),
                    "invalid_token",
                    "the token is not valid",
                ),
            },
            DenyReason::Path(_) | DenyReason::InvalidRequest => {
                (400, None, "bad_request", "the request cannot be authorized")
            }
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
            let challenge = match bearer {
                BearerError::None => format!("Bearer realm=\"{REALM}\""),
                BearerError::InvalidRequest => {
                    format!(
                        "Bearer realm=\"{REALM}\", error=\"invalid_request\", error_description=\"{message}\""
                    )
                }
                BearerError::InvalidToken => {
                    format!(
                        "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{message}\""
                    )
                }
                BearerError::InsufficientScope => {
                    format!(
                        "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", error_description=\"{message}\""
                    )
                }
            };
            headers.push(("www-authenticate", challenge));
        }
        if status == 503 {
            headers.push(("retry-after", "5".to_owned()));
        }
        let body = serde_json::json!({ "error": error, "error_description": message }).to_string();
        DenyResponse {
            status,
            headers,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deny(reason: DenyReason) -> DenyResponse {
        Deny {
            route: RouteName::new("r"),
            reason,
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
