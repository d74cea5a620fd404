//! Which credential a request carries. Only the form is judged here; validity is token/'s job.

use super::request::AuthzRequest;

#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    Bearer(&'a str),
    /// An `Authorization: Bearer` header with nothing usable in it.
    MalformedBearer,
    None,
}

/// `Authorization: Bearer <token>` (scheme case-insensitive, RFC 6750 2.1). Another scheme (Basic,
/// say) is not a credential portcullis accepts, so it counts as none.
pub fn credential(req: &AuthzRequest) -> Credential<'_> {
    let Some(value) = req.header("authorization") else {
        return Credential::None;
    };
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Credential::None;
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() || token.contains([' ', ',', '\t']) {
        return Credential::MalformedBearer;
    }
    Credential::Bearer(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(v: &str) -> AuthzRequest {
        let mut r = AuthzRequest::default();
        r.headers.insert("authorization".into(), v.into());
        r
    }

    #[test]
    fn bearer_forms() {
        assert_eq!(
            credential(&with_auth("Bearer abc.def.ghi")),
            Credential::Bearer("abc.def.ghi")
        );
        assert_eq!(
            credential(&with_auth("bearer  abc")),
            Credential::Bearer("abc")
        );
        assert_eq!(
            credential(&with_auth("BEARER abc ")),
            Credential::Bearer("abc")
        );
        assert_eq!(
            credential(&with_auth("Bearer")),
            Credential::MalformedBearer
        );
        assert_eq!(
            credential(&with_auth("Bearer ")),
            Credential::MalformedBearer
        );
        // Envoy joins repeated headers with a comma.
        assert_eq!(
            credential(&with_auth("Bearer a,Bearer b")),
            Credential::MalformedBearer
        );
        assert_eq!(
            credential(&with_auth("Bearer a b")),
            Credential::MalformedBearer
        );
        assert_eq!(
            credential(&with_auth("Basic dXNlcjpwdw==")),
            Credential::None
        );
        assert_eq!(credential(&AuthzRequest::default()), Credential::None);
    }
}
