//! Bearer tokens: `testing::verifier(0)` (fixture keys, no IdP, no token cache) and
//! `token::validate::decode` on any text never panic, and the verifier accepts nothing whose
//! signature the fixture keys did not make (checked again by jsonwebtoken, a second
//! implementation). The first byte picks the mode:
//!
//! - 0: the rest is the token, as is;
//! - 1: the rest edits a token minted at start-up (valid for 12 hours): pairs of (position, byte);
//! - 2: the rest is a claims object, signed with fixture key es256-a: the claim checks are fuzzed
//!   behind a good signature, and what is accepted must name the issuer and audience and be in date.
#![no_main]

use std::sync::OnceLock;

use jsonwebtoken::{Algorithm, DecodingKey};
use libfuzzer_sys::fuzz_target;
use portcullis::testing::{AUD, ISS, fixture, mint};
use portcullis::token::validate::{Origin, decode};
use portcullis::token::{Verifier, now_secs};
use portcullis_fuzz::{block_on, fresh_token};

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| block_on(async { portcullis::testing::verifier(0) }))
}

fn fixture_keys() -> &'static [(DecodingKey, Algorithm)] {
    static K: OnceLock<Vec<(DecodingKey, Algorithm)>> = OnceLock::new();
    K.get_or_init(|| {
        [("rs256-a", Algorithm::RS256), ("es256-a", Algorithm::ES256)]
            .into_iter()
            .map(|(name, alg)| {
                let jwk = serde_json::from_str(&fixture(&format!("{name}.pub.jwk.json")))
                    .expect("a fixture JWK");
                (DecodingKey::from_jwk(&jwk).expect("a fixture key"), alg)
            })
            .collect()
    })
}

/// Whether one of the fixture keys signed `token`'s header and payload.
fn signed_by_fixture(token: &str) -> bool {
    let Some((message, signature)) = token.rsplit_once('.') else {
        return false;
    };
    fixture_keys().iter().any(|(key, alg)| {
        jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, *alg).unwrap_or(false)
    })
}

fn check(token: &str, claims_checked: bool) {
    let _ = decode(token, Origin::Bearer);
    let _ = decode(token, Origin::TokenEndpoint);
    let Ok(verified) = block_on(verifier().verify(token)) else {
        return;
    };
    let principal = verified.principal;
    assert!(
        signed_by_fixture(token),
        "accepted a token no fixture key signed: {token:?}"
    );
    let decoded = decode(token, Origin::Bearer).expect("an accepted token decodes");
    assert_eq!(decoded.iss(), ISS, "{token:?}");
    assert!(
        !decoded.is_expired(now_secs(), 30),
        "accepted an expired token: {token:?}"
    );
    if claims_checked {
        let claims = decoded.into_claims();
        let aud_ok = match &claims.get("aud") {
            Some(serde_json::Value::String(a)) => a == AUD,
            Some(serde_json::Value::Array(a)) => a.iter().any(|a| a == AUD),
            _ => false,
        };
        assert!(aud_ok, "accepted a token for another audience: {claims:?}");
        assert!(!principal.subject.is_empty(), "{claims:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                check(token, false);
            }
        }
        1 => {
            let mut token = fresh_token().as_bytes().to_vec();
            for edit in rest.chunks_exact(3) {
                let at = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % token.len();
                token[at] = edit[2];
            }
            if let Ok(token) = String::from_utf8(token) {
                check(&token, false);
            }
        }
        _ => {
            let Ok(claims) = serde_json::from_slice::<serde_json::Value>(rest) else {
                return;
            };
            check(&mint("es256-a", &claims), true);
        }
    }
});
