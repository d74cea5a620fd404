//! The native fast path's Envoy filter (`envoy-module/`) on any request it can be handed once
//! `jwt_authn` has let one through: `MODE` byte, then `MARKER\nCOOKIE\nAUTHORIZATION\nPAYLOAD`.
//! PAYLOAD is a JWT payload's JSON, put in a token that goes into the pass cookie (mode bit 0) or a
//! bearer header (else), beside the raw COOKIE and AUTHORIZATION headers. The filter never panics;
//! the marker never survives it; a request it decides carries none of portcullis's cookies and, for
//! a bearer token, a usable user header; a request it leaves sets no identity header.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use portcullis_envoy::filter::{PlainRequest, Settings, on_request_headers};

const MARKER: &str = "x-portcullis-jwt-issuer";
const PASS_ISSUER: &str = "https://portcullis.invalid/";
const IDENTITY: [&str; 3] = [
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
];

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let json = serde_json::json!({
            "session": "portcullis",
            "pass_cookie": "portcullis-pass",
            "pass_issuer": PASS_ISSUER,
            "verified_header": MARKER,
            "max_lifetime": 86400,
            "user_claim": "email",
            "groups_claim": "groups",
            "user_header": IDENTITY[0],
            "email_header": IDENTITY[1],
            "groups_header": IDENTITY[2],
        });
        Settings::from_json(json.to_string().as_bytes()).expect("the target's settings")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.splitn(4, '\n');
    let (marker, cookie, authorization, payload) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let token = format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(payload));
    let mut headers = vec![(MARKER, marker.to_owned())];
    if mode & 1 == 1 {
        headers.push(("cookie", format!("portcullis-pass={token}")));
    } else {
        headers.push(("authorization", format!("Bearer {token}")));
    }
    for (name, value) in [("cookie", cookie), ("authorization", authorization)] {
        if !value.is_empty() {
            headers.push((name, value.to_owned()));
        }
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut r = PlainRequest::with(&headers);
    on_request_headers(settings(), &mut r);

    assert!(
        r.get(MARKER).is_empty(),
        "{:?}: the marker survived",
        r.headers
    );
    match &r.decided {
        None => {
            for h in IDENTITY {
                assert!(r.get(h).is_empty(), "{:?}: {h} set undecided", r.headers);
            }
        }
        Some(_) => {
            // Read as portcullis's own jar reads a Cookie header.
            for header in r.get("cookie") {
                for part in header.split([';', ',']) {
                    let Some((name, _)) = part.trim().split_once('=') else {
                        continue;
                    };
                    let name = name.trim();
                    assert!(
                        name != "portcullis" && !name.starts_with("portcullis-"),
                        "{header:?}: {name} left in"
                    );
                }
            }
            if marker != PASS_ISSUER {
                let users = r.get(IDENTITY[0]);
                assert!(
                    users.len() == 1
                        && !users[0].is_empty()
                        && !users[0].chars().any(char::is_control),
                    "{:?}: no usable user",
                    r.headers
                );
            }
        }
    }
});
