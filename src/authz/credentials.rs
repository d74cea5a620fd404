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
    // A fold over every byte rather than `contains`: this runs on every check over 1-2 KB tokens,
    // and the fold compiles to vector code.
    let separated = token
        .bytes()
        .fold(false, |found, b| found | matches!(b, b' ' | b',' | b'\t'));
    if token.is_empty() || separated {
        return Credential::MalformedBearer;
    }
    Credential::Bearer(token)
}

/// A top-level browser navigation, which may be answered with a redirect to the IdP: GET or HEAD,
/// and `Sec-Fetch-Mode: navigate`, or `Accept: text/html` from browsers without fetch metadata.
/// Scripts (fetch, XHR) and API clients get a 401 they can act on instead.
pub fn is_navigation(req: &AuthzRequest) -> bool {
    if !(req.method.eq_ignore_ascii_case("GET") || req.method.eq_ignore_ascii_case("HEAD")) {
        return false;
    }
    match req.header("sec-fetch-mode") {
        Some(mode) => mode.eq_ignore_ascii_case("navigate"),
        None => req
            .header("accept")
            .is_some_and(|a| a.contains("text/html")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(v: &str) -> AuthzRequest {
        let mut r = AuthzRequest::default();
        r.headers.insert("authorization".into(), v.into());
        r
    }

    fn nav(method: &str, headers: &[(&str, &str)]) -> bool {
        let mut r = AuthzRequest {
            method: method.into(),
            ..Default::default()
        };
        for (k, v) in headers {
            r.headers.insert((*k).into(), (*v).into());
        }
        is_navigation(&r)
    }

    #[test]
    fn only_browser_navigations_are_navigations() {
        assert!(nav(
            "GET",
            &[("sec-fetch-mode", "navigate"), ("accept", "*/*")]
        ));
        assert!(nav(
            "HEAD",
            &[("accept", "text/html,application/xhtml+xml")]
        ));
        assert!(
            !nav(
                "GET",
                &[("sec-fetch-mode", "cors"), ("accept", "text/html")]
            ),
            "fetch() from a page"
        );
        assert!(!nav("GET", &[("accept", "application/json")]));
        assert!(!nav("GET", &[]), "curl");
        assert!(
            !nav("POST", &[("sec-fetch-mode", "navigate")]),
            "a form post is not redirected"
        );
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
