//! Token validation through the public API, with the fixture keys installed (no IdP): every
//! applicable negative case of RFC 8725 and OIDC Core 3.1.3.7.

use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use portcullis::identity::Principal;
use portcullis::testing::*;
use portcullis::token::keys::KeySet;
use portcullis::token::{Origin, TokenRejection, now_secs, validate};

fn with(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut c = claims();
    f(c.as_object_mut().unwrap());
    c
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// A token with a hand-made header and payload, signed (or not) as given.
fn raw(header: Value, payload: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes()),
        b64(signature)
    )
}

async fn verify(token: &str) -> Result<Arc<Principal>, TokenRejection> {
    verifier(100).verify(token).await.map(|v| v.principal)
}

#[tokio::test]
async fn a_valid_rs256_token_yields_the_principal() {
    let p = verify(&rs(&claims())).await.unwrap();
    assert_eq!(p.subject, "auth0|123");
    assert_eq!(p.user, "alice@example.com");
    assert_eq!(p.email.as_deref(), Some("alice@example.com"));
    assert_eq!(p.groups, ["ops"]);
}

#[tokio::test]
async fn a_valid_es256_token_is_accepted() {
    let t = sign("es256-a", Algorithm::ES256, Some("es256-a"), &claims());
    assert!(verify(&t).await.is_ok());
}

#[test]
fn pss_signatures_verify_with_an_rsa_key_and_cannot_be_relabelled() {
    // The fixture JWK declares RS256; without `alg` an RSA key verifies every RSA algorithm.
    let mut jwk: Value = serde_json::from_str(&fixture("rs256-a.pub.jwk.json")).unwrap();
    jwk.as_object_mut().unwrap().remove("alg");
    let set = KeySet::from_json(json!({ "keys": [jwk] }).to_string().as_bytes()).unwrap();
    let key = set.keys[0].clone();
    let expected = validate::Expected {
        audiences: &[AUD.to_owned()],
        now: now_secs(),
        rules: TIME_RULES,
    };
    let check = |t: &str| {
        validate::verify(validate::decode(t, Origin::Bearer)?, &key, &expected).map(|c| c.sub)
    };
    let pss = sign("rs256-a", Algorithm::PS256, Some("rs256-a"), &claims());
    assert_eq!(check(&pss).ok().as_deref(), Some("auth0|123"));
    // The same PKCS#1 v1.5 signature under a PS256 header is not a PSS signature, and back.
    let relabel = |t: &str, alg: &str| {
        let (_, rest) = t.split_once('.').unwrap();
        let header = b64(json!({"alg": alg, "kid": "rs256-a"}).to_string().as_bytes());
        format!("{header}.{rest}")
    };
    for forged in [relabel(&rs(&claims()), "PS256"), relabel(&pss, "RS256")] {
        assert_eq!(check(&forged).err(), Some(TokenRejection::BadSignature));
    }
}

#[tokio::test]
async fn a_claim_named_twice_is_refused() {
    let c = claims();
    let body = c.to_string();
    // A second `sub` appended inside the object: signed, so only the issuer could send it.
    let doubled = format!("{},\"sub\":\"admin\"}}", &body[..body.len() - 1]);
    let key = EncodingKey::from_rsa_pem(fixture("rs256-a.pem").as_bytes()).unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rs256-a".into());
    let signing_input = format!(
        "{}.{}",
        b64(serde_json::to_string(&h).unwrap().as_bytes()),
        b64(doubled.as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::RS256).unwrap();
    assert_eq!(
        verify(&format!("{signing_input}.{sig}")).await.unwrap_err(),
        TokenRejection::InvalidClaims
    );
}

#[tokio::test]
async fn a_single_string_audience_is_accepted() {
    assert!(
        verify(&rs(&with(|c| {
            c.insert("aud".into(), json!(AUD));
        })))
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn alg_none_is_refused() {
    let t = raw(json!({"alg": "none", "kid": "rs256-a"}), &claims(), b"");
    // An empty signature part is not even a well-formed JWS here.
    assert_eq!(verify(&t).await.unwrap_err(), TokenRejection::Malformed);
    let t = raw(json!({"alg": "none", "kid": "rs256-a"}), &claims(), b"x");
    assert_eq!(verify(&t).await.unwrap_err(), TokenRejection::Malformed);
}

#[tokio::test]
async fn hmac_with_the_public_key_as_secret_is_refused() {
    // RFC 8725 2.1: the classic key-confusion attack.
    let secret = fixture("rs256-a.pub.jwk.json");
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("rs256-a".into());
    let t = jsonwebtoken::encode(
        &h,
        &claims(),
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        verify(&t).await.unwrap_err(),
        TokenRejection::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn an_algorithm_the_key_does_not_allow_is_refused() {
    // RS256 header naming the EC key; and ES256 header naming the RSA key.
    let t = sign("rs256-a", Algorithm::RS256, Some("es256-a"), &claims());
    assert_eq!(
        verify(&t).await.unwrap_err(),
        TokenRejection::AlgorithmNotAllowed
    );
    let t = sign("es256-a", Algorithm::ES256, Some("rs256-a"), &claims());
    assert_eq!(
        verify(&t).await.unwrap_err(),
        TokenRejection::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn a_foreign_signature_is_refused() {
    let t = sign("rs256-b", Algorithm::RS256, Some("rs256-a"), &claims());
    assert_eq!(verify(&t).await.unwrap_err(), TokenRejection::BadSignature);
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let t = rs(&claims());
    let parts: Vec<&str> = t.split('.').collect();
    let forged = with(|c| {
        c.insert("email".into(), json!("mallory@example.com"));
    });
    let t = format!(
        "{}.{}.{}",
        parts[0],
        b64(forged.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(verify(&t).await.unwrap_err(), TokenRejection::BadSignature);
}

#[tokio::test]
async fn an_unknown_kid_is_refused() {
    let t = sign("rs256-b", Algorithm::RS256, Some("rs256-b"), &claims());
    assert_eq!(verify(&t).await.unwrap_err(), TokenRejection::UnknownKey);
}

#[tokio::test]
async fn a_missing_kid_is_refused_when_the_set_is_ambiguous() {
    let t = sign("rs256-a", Algorithm::RS256, None, &claims());
    assert_eq!(verify(&t).await.unwrap_err(), TokenRejection::UnknownKey);
}

#[tokio::test]
async fn unknown_critical_headers_are_refused() {
    let t = rs(&claims());
    let (_, rest) = t.split_once('.').unwrap();
    let header = b64(
        json!({"alg": "RS256", "kid": "rs256-a", "crit": ["exp"], "exp": 1})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        verify(&format!("{header}.{rest}")).await.unwrap_err(),
        TokenRejection::Malformed
    );
}

#[tokio::test]
async fn expiry_is_checked_with_leeway() {
    let now = now_secs();
    let t = rs(&with(|c| {
        c.insert("exp".into(), json!(now - 10));
    }));
    assert!(verify(&t).await.is_ok(), "within the 30 s leeway");
    let t = rs(&with(|c| {
        c.insert("exp".into(), json!(now - 120));
    }));
    assert_eq!(verify(&t).await.unwrap_err(), TokenRejection::Expired);
}

#[tokio::test]
async fn not_before_and_issued_at_in_the_future_are_refused() {
    let now = now_secs();
    let t = rs(&with(|c| {
        c.insert("nbf".into(), json!(now + 120));
    }));
    assert_eq!(verify(&t).await.unwrap_err(), TokenRejection::NotYetValid);
    let t = rs(&with(|c| {
        c.insert("iat".into(), json!(now + 120));
    }));
    assert_eq!(verify(&t).await.unwrap_err(), TokenRejection::NotYetValid);
    let t = rs(&with(|c| {
        c.insert("nbf".into(), json!(now + 10));
    }));
    assert!(verify(&t).await.is_ok(), "within the leeway");
}

#[tokio::test]
async fn a_token_may_not_claim_a_life_beyond_the_maximum() {
    let now = now_secs();
    let day = 24 * 3600;
    // `iat` from the same `now`: claims() reads the clock again, maybe a second later.
    let t = rs(&with(|c| {
        c.insert("iat".into(), json!(now));
        c.insert("exp".into(), json!(now + day));
    }));
    assert!(verify(&t).await.is_ok(), "exactly the 24h default");
    for exp in [now + day + 1, u64::MAX] {
        let t = rs(&with(|c| {
            c.insert("iat".into(), json!(now));
            c.insert("exp".into(), json!(exp));
        }));
        assert_eq!(
            verify(&t).await.unwrap_err(),
            TokenRejection::LifetimeTooLong,
            "exp {exp}"
        );
    }
}

#[tokio::test]
async fn wrongly_typed_claims_are_refused() {
    let now = now_secs();
    for (claim, value) in [
        ("nbf", json!((now + 3600).to_string())),
        ("nbf", json!(true)),
        ("exp", json!((now + 300).to_string())),
        ("iat", json!("yesterday")),
        ("sub", json!(123)),
        ("iss", json!([ISS])),
        ("aud", json!(42)),
        ("aud", json!([AUD, 7])),
        // NumericDates are whole seconds (RFC 9068): `1e300` would never expire.
        ("exp", json!(1e300)),
        ("exp", json!(now as f64 + 300.5)),
        ("iat", json!(now as f64 - 0.5)),
        ("exp", json!(-1)),
    ] {
        let t = rs(&with(|c| {
            c.insert(claim.into(), value.clone());
        }));
        let got = verify(&t).await;
        assert_eq!(
            got.err(),
            Some(TokenRejection::InvalidClaims),
            "{claim}={value}"
        );
    }
}

#[tokio::test]
async fn required_claims_must_be_present() {
    // iat too: an access token without one cannot be held to a maximum lifetime (RFC 9068 2.2).
    for claim in ["exp", "iss", "aud", "sub", "iat"] {
        let t = rs(&with(|c| {
            c.remove(claim);
        }));
        assert_eq!(
            verify(&t).await.unwrap_err(),
            TokenRejection::InvalidClaims,
            "{claim}"
        );
    }
}

#[tokio::test]
async fn audience_and_issuer_must_match() {
    let t = rs(&with(|c| {
        c.insert("aud".into(), json!(["https://other/api"]));
    }));
    assert_eq!(verify(&t).await.unwrap_err(), TokenRejection::WrongAudience);
    let t = rs(&with(|c| {
        c.insert("iss".into(), json!("https://evil.example.com/"));
    }));
    assert_eq!(verify(&t).await.unwrap_err(), TokenRejection::UnknownIssuer);
    // The issuer string must be exact, trailing slash included.
    let t = rs(&with(|c| {
        c.insert("iss".into(), json!("https://tenant.example.com"));
    }));
    assert_eq!(verify(&t).await.unwrap_err(), TokenRejection::UnknownIssuer);
}

#[tokio::test]
async fn shape_and_size_are_checked_before_decoding() {
    assert_eq!(verify("a.b").await.unwrap_err(), TokenRejection::Malformed);
    assert_eq!(
        verify("a.b.c.d").await.unwrap_err(),
        TokenRejection::Malformed
    );
    assert_eq!(verify("a..c").await.unwrap_err(), TokenRejection::Malformed);
    assert_eq!(
        verify("a+b.c.d").await.unwrap_err(),
        TokenRejection::Malformed
    );
    assert_eq!(
        verify("not-json.not-json.sig").await.unwrap_err(),
        TokenRejection::Malformed
    );
    let huge = format!(
        "{}.{}.{}",
        "a".repeat(4000),
        "b".repeat(4000),
        "c".repeat(400)
    );
    assert_eq!(verify(&huge).await.unwrap_err(), TokenRejection::TooLarge);
}

#[tokio::test]
async fn an_unverified_email_does_not_become_the_user() {
    let t = rs(&with(|c| {
        c.insert("email_verified".into(), json!(false));
    }));
    let p = verify(&t).await.unwrap();
    assert_eq!(p.email, None);
    assert_eq!(p.user, "auth0|123");
}
