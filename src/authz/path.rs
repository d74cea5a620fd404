//! The request path as policy sees it: query cut off, and anything ambiguous refused instead of guessed.
//!
//! Envoy hands us the path exactly as the client sent it (after its own normalisation, if enabled),
//! with the query and without percent-decoding. The upstream may decode and normalise it differently
//! than we match it, so every form that two parsers could read differently is refused here: dot
//! segments, empty segments, backslashes, `;` path parameters, and percent-escapes of characters that
//! are either structural (`/`, `\`, `;`, `%`-controls) or never need escaping (unreserved characters).
//! What is left has exactly one reading, so a public prefix can never reach a protected path.
//!
//! The same rules decide where a browser may be sent back to after login: [`safe_return_to`].

use std::fmt;

/// Why a path was refused. Bounded: used as a log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRejection {
    Empty,
    NotAbsolute,
    ForbiddenCharacter,
    DotSegment,
    EmptySegment,
    BadPercentEscape,
    AmbiguousEscape,
}

impl fmt::Display for PathRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty path",
            Self::NotAbsolute => "path does not start with /",
            Self::ForbiddenCharacter => "forbidden character in path",
            Self::DotSegment => "dot segment in path",
            Self::EmptySegment => "empty segment in path",
            Self::BadPercentEscape => "malformed percent-escape in path",
            Self::AmbiguousEscape => "percent-escape with more than one reading",
        })
    }
}

/// The path without its query, checked to have a single reading. Borrowed: no allocation per check.
pub fn clean_path(raw: &str) -> Result<&str, PathRejection> {
    let path = match raw.find('?') {
        Some(i) => &raw[..i],
        None => raw,
    };
    if path.is_empty() {
        return Err(PathRejection::Empty);
    }
    if !path.starts_with('/') {
        return Err(PathRejection::NotAbsolute);
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
                    return Err(PathRejection::BadPercentEscape);
                };
                let (Some(h), Some(l)) = (hex(h), hex(l)) else {
                    return Err(PathRejection::BadPercentEscape);
                };
                if ambiguous_when_escaped(h << 4 | l) {
                    return Err(PathRejection::AmbiguousEscape);
                }
                i += 3;
                continue;
            }
            b'\\' | b';' | b'#' => return Err(PathRejection::ForbiddenCharacter),
            0x21..=0x7e => {}
            _ => return Err(PathRejection::ForbiddenCharacter),
        }
        i += 1;
    }
    // Segments after the leading "/". A trailing "/" gives one empty last segment, which is fine.
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        match segment {
            "." | ".." => return Err(PathRejection::DotSegment),
            "" if segments.peek().is_some() => return Err(PathRejection::EmptySegment),
            _ => {}
        }
    }
    Ok(path)
}

/// Whether a path written in the config is one that [`clean_path`] could ever return unchanged and that
/// needs no escapes: configured prefixes are compared byte for byte.
pub fn is_valid_config_path(path: &str) -> bool {
    !path.contains('%') && !path.contains('?') && clean_path(path) == Ok(path)
}

/// The return target: a path on this site. Anything that could leave it (`//host`, `/\host`, a
/// scheme, control or non-ASCII characters) becomes `/`.
pub fn safe_return_to(target: &str) -> String {
    let bytes = target.as_bytes();
    let ok = bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && bytes
            .iter()
            .all(|b| (0x21..=0x7e).contains(b) && *b != b'\\')
        && clean_path(target).is_ok();
    if ok {
        target.to_owned()
    } else {
        "/".to_owned()
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Escaped unreserved characters decode to the same path (RFC 3986 6.2.2.2) and escaped `/`, `\`, `;`
/// and controls change its structure depending on who decodes them: no honest client sends either.
fn ambiguous_when_escaped(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/' | b'\\' | b';')
        || byte < 0x20
        || byte == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_cut_off() {
        assert_eq!(clean_path("/api/x?a=/../b"), Ok("/api/x"));
        assert_eq!(clean_path("/?"), Ok("/"));
    }

    #[test]
    fn ordinary_paths_pass() {
        for p in [
            "/",
            "/api/",
            "/api/x",
            "/a-b_c~d.e/f",
            "/files/100%25",
            "/caf%C3%A9",
            "/a:b@c",
        ] {
            assert_eq!(clean_path(p), Ok(p), "{p}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        let cases = [
            ("", PathRejection::Empty),
            ("?x", PathRejection::Empty),
            ("api", PathRejection::NotAbsolute),
            ("*", PathRejection::NotAbsolute),
            ("/healthcheck/../api", PathRejection::DotSegment),
            ("/healthcheck/..", PathRejection::DotSegment),
            ("/./api", PathRejection::DotSegment),
            ("/healthcheck//api", PathRejection::EmptySegment),
            ("//evil", PathRejection::EmptySegment),
            ("/healthcheck%2f..%2fapi", PathRejection::AmbiguousEscape),
            ("/healthcheck%2F..%2Fapi", PathRejection::AmbiguousEscape),
            ("/healthcheck/%2e%2e/api", PathRejection::AmbiguousEscape),
            ("/%61pi/x", PathRejection::AmbiguousEscape),
            ("/a%5cb", PathRejection::AmbiguousEscape),
            ("/a%3bb", PathRejection::AmbiguousEscape),
            ("/a%00b", PathRejection::AmbiguousEscape),
            ("/a%7Fb", PathRejection::AmbiguousEscape),
            ("/healthcheck\\..\\api", PathRejection::ForbiddenCharacter),
            ("/healthcheck;x=1/../api", PathRejection::ForbiddenCharacter),
            ("/a b", PathRejection::ForbiddenCharacter),
            ("/a\tb", PathRejection::ForbiddenCharacter),
            ("/caf\u{e9}", PathRejection::ForbiddenCharacter),
            ("/a#b", PathRejection::ForbiddenCharacter),
            ("/a%", PathRejection::BadPercentEscape),
            ("/a%4", PathRejection::BadPercentEscape),
            ("/a%zz", PathRejection::BadPercentEscape),
        ];
        for (path, why) in cases {
            assert_eq!(clean_path(path), Err(why), "{path:?}");
        }
    }

    #[test]
    fn config_paths_must_need_no_escapes() {
        assert!(is_valid_config_path("/api/"));
        assert!(is_valid_config_path("/healthcheck"));
        assert!(!is_valid_config_path("/a%20b"));
        assert!(!is_valid_config_path("/a/../b"));
        assert!(!is_valid_config_path("api"));
        assert!(!is_valid_config_path("/a?b"));
    }

    #[test]
    fn return_targets_never_leave_the_site() {
        for ok in [
            "/",
            "/table_detail/gold/hive/core/users?tab=1",
            "/search?q=a%20b",
        ] {
            assert_eq!(safe_return_to(ok), ok);
        }
        for evil in [
            "//evil.example",
            "/\\evil.example",
            "/%09/evil.example",
            "/%2f/evil.example",
            "https:evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "/\t/evil.example",
            "/a\r\nLocation: //evil",
            "",
            "evil.example",
            "/./evil",
        ] {
            assert_eq!(safe_return_to(evil), "/", "{evil:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        /// A cleaned path has one reading: cleaning it again gives it back unchanged.
        #[test]
        fn a_cleaned_path_cleans_to_itself(raw in "(/|[a-zA-Z0-9._~%;:@!$&'()*+,=\\-]|%[0-9a-fA-F]{2}|\\?){0,40}") {
            if let Ok(clean) = clean_path(&raw) {
                proptest::prop_assert_eq!(clean_path(clean), Ok(clean));
                proptest::prop_assert!(clean.starts_with('/'));
                proptest::prop_assert!(!clean.contains("//") && !clean.contains("/./") && !clean.contains("/../"));
            }
        }

        /// No return target ever leaves the site: `/`, or a path on it with nothing a browser
        /// could read as another host.
        #[test]
        fn no_return_target_leaves_the_site(raw in "(/|\\\\|[a-z.:@]|%[0-9a-fA-F]{2}|[\\t\\r\\n ]|\\?){0,30}") {
            let target = safe_return_to(&raw);
            proptest::prop_assert!(target == "/" || target == raw);
            proptest::prop_assert!(target.starts_with('/'));
            proptest::prop_assert!(!target.starts_with("//") && !target.starts_with("/\\"));
            proptest::prop_assert!(target.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'\\'));
        }
    }
}
