//! The pass: a short-lived JWT portcullis signs itself (EdDSA, Ed25519) so that Envoy's own
//! `jwt_authn` can let signed-in browsers through without asking portcullis (the native fast path).
//!
//! The signing keys are derived from `session.secret` with HKDF, bound to this purpose: every
//! replica with the same secrets signs the same way, and rotating the secret rotates the key. The
//! first secret's key signs; every secret's key is published (`/.well-known/jwks.json` on the
//! admin port), each with a `kid` of its own, so passes signed before a rotation still verify.

use aws_lc_rs::hkdf;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// What a pass says. The identity fields are already in the form of the identity headers (Envoy
/// copies them there as they are): `user` the configured user claim, `email` only when verified,
/// `groups` one string of encoded names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub email_verified: bool,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub groups: String,
    /// The session, so a pass can be told apart from another login's.
    pub sid: String,
    pub iat: u64,
    pub exp: u64,
}

/// The pass keys of every configured secret; the first signs.
pub struct PassKeys {
    keys: Vec<(String, Ed25519KeyPair)>,
}

impl std::fmt::Debug for PassKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(kid, _)| kid.as_str()).collect();
        write!(f, "PassKeys({kids:?})")
    }
}

impl PassKeys {
    /// One Ed25519 key per secret (an Ed25519 seed is any 32 bytes: HKDF gives them directly).
    pub fn derive(secrets: &[Secret]) -> Self {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"portcullis pass keys");
        let keys = secrets
            .iter()
            .map(|s| {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(s.expose().trim())
                    .unwrap_or_else(|_| s.expose().as_bytes().to_vec());
                let mut seed = [0u8; 32];
                salt.extract(&raw)
                    .expand(&[b"ed25519 v1"], Seed32)
                    .and_then(|okm| okm.fill(&mut seed))
                    .expect("32 bytes is a valid HKDF-SHA256 output length");
                let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
                    .expect("every 32-byte seed is an Ed25519 key");
                let digest = aws_lc_rs::digest::digest(
                    &aws_lc_rs::digest::SHA256,
                    pair.public_key().as_ref(),
                );
                let kid = B64.encode(&digest.as_ref()[..12]);
                (kid, pair)
            })
            .collect();
        Self { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Claims (a pass's, an upstream assertion's) as a compact JWS signed with the first key;
    /// `None` without keys.
    pub fn sign(&self, claims: &impl Serialize) -> Option<String> {
        let (kid, key) = self.keys.first()?;
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
        let payload = serde_json::to_vec(claims).expect("claims always serialize");
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string().as_bytes()),
            B64.encode(payload)
        );
        let signature = key.sign(signing_input.as_bytes());
        Some(format!(
            "{signing_input}.{}",
            B64.encode(signature.as_ref())
        ))
    }

    /// The JWKS of every key, for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> String {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .map(|(kid, key)| {
                serde_json::json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
                    "kid": kid, "x": B64.encode(key.public_key().as_ref())})
            })
            .collect();
        serde_json::json!({ "keys": keys }).to_string()
    }

    /// The claims of a pass signed by one of these keys, whatever its times (the caller decides
    /// what an expiry means); `None` for anything else.
    pub fn open(&self, pass: &str) -> Option<PassClaims> {
        self.open_as(pass)
    }

    /// [`Self::open`] for claims of any shape.
    pub fn open_as<C: serde::de::DeserializeOwned>(&self, jwt: &str) -> Option<C> {
        let (signing_input, signature) = jwt.rsplit_once('.')?;
        let (header, payload) = signing_input.split_once('.')?;
        #[derive(Deserialize)]
        struct Header {
            alg: String,
            kid: String,
        }
        let header: Header = serde_json::from_slice(&B64.decode(header).ok()?).ok()?;
        if header.alg != "EdDSA" {
            return None;
        }
        let (_, key) = self.keys.iter().find(|(kid, _)| *kid == header.kid)?;
        let public = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ED25519,
            key.public_key().as_ref(),
        );
        public
            .verify(signing_input.as_bytes(), &B64.decode(signature).ok()?)
            .ok()?;
        serde_json::from_slice(&B64.decode(payload).ok()?).ok()
    }
}

/// HKDF's output length for a 32-byte seed.
struct Seed32;

impl hkdf::KeyType for Seed32 {
    fn len(&self) -> usize {
        32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(n: u8) -> Secret {
        Secret::new(base64::engine::general_purpose::STANDARD.encode([n; 32]))
    }

    fn claims() -> PassClaims {
        PassClaims {
            iss: "https://portcullis.invalid/".into(),
            aud: "portcullis".into(),
            sub: "auth0|1".into(),
            user: "alice@example.com".into(),
            email: Some("alice@example.com".into()),
            email_verified: true,
            groups: "ops,eng%2Cadmins".into(),
            sid: "s1".into(),
            iat: 1000,
            exp: 1300,
        }
    }

    #[test]
    fn replicas_with_one_secret_sign_alike_and_rotation_keeps_old_passes() {
        let a = PassKeys::derive(&[secret(1)]);
        let b = PassKeys::derive(&[secret(1)]);
        let pass = a.sign(&claims()).unwrap();
        assert_eq!(b.open(&pass), Some(claims()), "another replica reads it");
        assert_eq!(a.jwks(), b.jwks());
        let rotated = PassKeys::derive(&[secret(2), secret(1)]);
        assert_eq!(
            rotated.open(&pass),
            Some(claims()),
            "the old key is published"
        );
        let new_pass = rotated.sign(&claims()).unwrap();
        assert_eq!(a.open(&new_pass), None, "the new key signs");
        let jwks: serde_json::Value = serde_json::from_str(&rotated.jwks()).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert_ne!(jwks["keys"][0]["kid"], jwks["keys"][1]["kid"]);
    }

    #[test]
    fn forged_and_foreign_passes_do_not_open() {
        let keys = PassKeys::derive(&[secret(1)]);
        let pass = keys.sign(&claims()).unwrap();
        let (head, _) = pass.rsplit_once('.').unwrap();
        assert_eq!(keys.open(&format!("{head}.")), None);
        assert_eq!(keys.open(&format!("{head}.AAAA")), None);
        let other = PassKeys::derive(&[secret(9)]).sign(&claims()).unwrap();
        assert_eq!(keys.open(&other), None);
        let mut forged = claims();
        forged.user = "admin".into();
        let payload = B64.encode(serde_json::to_vec(&forged).unwrap());
        let parts: Vec<&str> = pass.split('.').collect();
        assert_eq!(
            keys.open(&format!("{}.{payload}.{}", parts[0], parts[2])),
            None
        );
        let none = format!("{}.{}.", B64.encode(br#"{"alg":"none"}"#), parts[1]);
        assert_eq!(keys.open(&none), None);
    }
}
