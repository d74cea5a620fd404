//! Test helpers shared by the token and authz tests: a verifier with the fixture keys installed
//! (no IdP needed) and token signing with the fixture private keys.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;
use crate::metrics::Metrics;
use crate::oidc::IdpClient;

pub const ISS: &str = "https://tenant.example.com/";
pub const AUD: &str = "https://amundsen/api";

pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A key cache with the fixture keys rs256-a and es256-a installed.
pub fn keys() -> JwksCache {
    let metrics = Arc::new(Metrics::new());
    // Port 9 on loopback refuses at once: an unknown kid's refetch fails fast and keeps the set.
    let cache = JwksCache::fixed(
        "http://127.0.0.1:9/jwks".parse().unwrap(),
        IdpClient::new(metrics.clone()),
        metrics.clone(),
        Duration::from_secs(3600),
    );
    let jwks = format!(
        r#"{{"keys": [{}, {}]}}"#,
        fixture("rs256-a.pub.jwk.json"),
        fixture("es256-a.pub.jwk.json")
    );
    cache.install(keys::KeySet::from_json(jwks.as_bytes()).unwrap());
    cache
}

pub fn verifier() -> Verifier {
    let metrics = Arc::new(Metrics::new());
    let cache = keys();
    let issuer = Issuer::new(ISS, &[AUD.to_owned()], Arc::new(cache));
    Verifier::new(
        vec![issuer],
        IdentityClaims {
            user_id_claim: "email".into(),
            groups_claim: "groups".into(),
        },
        Duration::from_secs(30),
        TokenCache::new(100, Duration::from_secs(300)),
        metrics,
    )
}

pub fn claims() -> Value {
    let now = now_secs();
    json!({
        "iss": ISS, "aud": [AUD, format!("{ISS}userinfo")], "sub": "auth0|123",
        "iat": now, "exp": now + 300, "email": "alice@example.com", "email_verified": true,
        "groups": ["ops"],
    })
}

pub fn sign(key: &str, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let pem = fixture(&format!("{key}.pem"));
    let enc = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    };
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, &enc).unwrap()
}

/// A token signed by fixture key rs256-a, as the installed key set expects.
pub fn rs(claims: &Value) -> String {
    sign("rs256-a", Algorithm::RS256, Some("rs256-a"), claims)
}
