//! A JSON Web Key Set turned into verification keys, each with the algorithms it may verify.
//!
//! The algorithm a token may use is decided by the key, never by the token alone (RFC 8725 3.1):
//! RSA keys verify RS*/PS*, a P-256 key only ES256, a P-384 key only ES384, Ed25519 only EdDSA,
//! and a key's own `alg` narrows that to one. Symmetric (`oct`) keys are never loaded, so HMAC with a
//! public key as the secret cannot happen.
//!
//! Each key is parsed into aws-lc-rs once, per algorithm, when the set is loaded: a signature check
//! then costs the RSA or ECDSA operation and nothing else.

use aws_lc_rs::signature::{self as sig, ParsedPublicKey};
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use serde::Deserialize;

/// One key that can verify signatures, ready for each algorithm it may verify.
pub struct VerifyKey {
    pub kid: Option<String>,
    verifiers: Vec<(Algorithm, ParsedPublicKey)>,
}

impl VerifyKey {
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.verifiers.iter().any(|(a, _)| *a == alg)
    }

    /// Whether `signature` over `message` is valid for `alg`; an algorithm the key does not allow
    /// never verifies.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.verifiers
            .iter()
            .find(|(a, _)| *a == alg)
            .is_some_and(|(_, key)| key.verify_sig(message, signature).is_ok())
    }
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field(
                "algorithms",
                &self.verifiers.iter().map(|(a, _)| a).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The keys of one issuer. Replaced whole on every successful fetch.
#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<std::sync::Arc<VerifyKey>>,
    /// Entries of the document that were skipped (unsupported type, encryption key, bad encoding).
    pub skipped: usize,
}

/// How a key lookup by `kid` ended.
#[derive(Debug)]
pub enum Lookup<'a> {
    Found(&'a std::sync::Arc<VerifyKey>),
    /// A key with that `kid` exists but may not verify this algorithm: no refetch will change that.
    AlgorithmNotAllowed,
    Missing,
}

impl KeySet {
    /// Parses a JWKS document. Entries that are not usable signature keys are skipped, not fatal:
    /// IdPs publish encryption keys and new key types beside the ones we use.
    pub fn from_json(body: &[u8]) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let doc: Document = serde_json::from_slice(body)?;
        let mut set = KeySet::default();
        for entry in doc.keys {
            match serde_json::from_value::<Jwk>(entry)
                .ok()
                .and_then(|jwk| verify_key(&jwk))
            {
                Some(k) => set.keys.push(std::sync::Arc::new(k)),
                None => set.skipped += 1,
            }
        }
        Ok(set)
    }

    pub fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        let found = match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            // Without a kid, only an unambiguous set can answer.
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        };
        match found {
            Some(k) if k.allows(alg) => Lookup::Found(k),
            Some(_) => Lookup::AlgorithmNotAllowed,
            None => Lookup::Missing,
        }
    }
}

/// Every algorithm a token may use, RSA first; HMAC is absent on purpose (RFC 8725 3.1).
pub const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
const RSA_ALGORITHMS: &[Algorithm] = ASYMMETRIC.split_at(6).0;

fn verify_key(jwk: &Jwk) -> Option<VerifyKey> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_ALGORITHMS.to_vec(),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            _ => return None,
        },
        // Symmetric keys never verify here; unknown types are skipped.
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => by_type,
        Some(declared) => {
            let declared: Algorithm = declared.to_string().parse().ok()?;
            if !by_type.contains(&declared) {
                return None;
            }
            vec![declared]
        }
    };
    let verifiers = algorithms
        .into_iter()
        .map(|alg| parsed(&jwk.algorithm, alg).map(|key| (alg, key)))
        .collect::<Option<Vec<_>>>()?;
    Some(VerifyKey {
        kid: jwk.common.key_id.clone(),
        verifiers,
    })
}

/// The JWK's public key in aws-lc-rs form for one algorithm (RFC 7518 3 and 6; RFC 8037 for
/// Ed25519). RSA keys under 2048 bits are refused, as jsonwebtoken's verifiers refuse them.
fn parsed(params: &AlgorithmParameters, alg: Algorithm) -> Option<ParsedPublicKey> {
    let b64 = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .ok()
    };
    match params {
        AlgorithmParameters::RSA(rsa) => {
            let params: &'static sig::RsaParameters = match alg {
                Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
                Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
                Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
                Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
                _ => return None,
            };
            let (n, e) = (b64(&rsa.n)?, b64(&rsa.e)?);
            sig::RsaPublicKeyComponents { n: &n, e: &e }
                .to_parsed_public_key(params)
                .ok()
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let algorithm: &'static dyn sig::VerificationAlgorithm = match alg {
                Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
                Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
                _ => return None,
            };
            // The uncompressed point: 0x04 || x || y.
            let mut point = vec![4u8];
            point.extend(b64(&ec.x)?);
            point.extend(b64(&ec.y)?);
            ParsedPublicKey::new(algorithm, point).ok()
        }
        AlgorithmParameters::OctetKeyPair(okp) if alg == Algorithm::EdDSA => {
            ParsedPublicKey::new(&sig::ED25519, b64(&okp.x)?).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    fn set(keys: serde_json::Value) -> KeySet {
        KeySet::from_json(serde_json::json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    #[test]
    fn rsa_key_allows_rsa_algorithms_only() {
        let s = set(serde_json::json!([{"kty": "RSA", "kid": "a", "n": N, "e": "AQAB"}]));
        assert!(matches!(
            s.lookup(Some("a"), Algorithm::RS256),
            Lookup::Found(_)
        ));
        assert!(matches!(
            s.lookup(Some("a"), Algorithm::PS512),
            Lookup::Found(_)
        ));
        assert!(matches!(
            s.lookup(Some("a"), Algorithm::HS256),
            Lookup::AlgorithmNotAllowed
        ));
        assert!(matches!(
            s.lookup(Some("a"), Algorithm::ES256),
            Lookup::AlgorithmNotAllowed
        ));
        assert!(matches!(
            s.lookup(Some("b"), Algorithm::RS256),
            Lookup::Missing
        ));
    }

    #[test]
    fn declared_alg_narrows_the_key() {
        let s = set(
            serde_json::json!([{"kty": "RSA", "kid": "a", "alg": "RS256", "n": N, "e": "AQAB"}]),
        );
        assert!(matches!(
            s.lookup(Some("a"), Algorithm::RS256),
            Lookup::Found(_)
        ));
        assert!(matches!(
            s.lookup(Some("a"), Algorithm::PS256),
            Lookup::AlgorithmNotAllowed
        ));
        // A declared alg that contradicts the key type makes the key unusable.
        let s = set(
            serde_json::json!([{"kty": "RSA", "kid": "a", "alg": "HS256", "n": N, "e": "AQAB"}]),
        );
        assert_eq!((s.keys.len(), s.skipped), (0, 1));
    }

    #[test]
    fn symmetric_encryption_and_unknown_keys_are_skipped() {
        let s = set(serde_json::json!([
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": N, "e": "AQAB"},
            {"kty": "XYZ", "kid": "x"},
            "not an object",
            {"kty": "RSA", "kid": "ok", "use": "sig", "n": N, "e": "AQAB"},
        ]));
        assert_eq!((s.keys.len(), s.skipped), (1, 4));
        assert!(matches!(
            s.lookup(Some("h"), Algorithm::HS256),
            Lookup::Missing
        ));
    }

    #[test]
    fn missing_kid_needs_a_single_key() {
        let one = set(serde_json::json!([{"kty": "RSA", "kid": "a", "n": N, "e": "AQAB"}]));
        assert!(matches!(
            one.lookup(None, Algorithm::RS256),
            Lookup::Found(_)
        ));
        let two = set(serde_json::json!([
            {"kty": "RSA", "kid": "a", "n": N, "e": "AQAB"},
            {"kty": "RSA", "kid": "b", "n": N, "e": "AQAB"},
        ]));
        assert!(matches!(
            two.lookup(None, Algorithm::RS256),
            Lookup::Missing
        ));
    }

    #[test]
    fn not_a_jwks_is_an_error() {
        assert!(KeySet::from_json(b"{}").is_err());
        assert!(KeySet::from_json(b"<html>").is_err());
    }
}
