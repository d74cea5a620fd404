//! The signed identity for the upstream (`upstream.assertion`): a short-lived JWT that portcullis
//! signs with the pass keys (token/pass.rs; their JWKS is on the admin port) for every allowed
//! request that has a caller, so that a service behind portcullis (Amundsen's metadata and search)
//! can verify who is asking instead of trusting a header. One is signed per caller and route and
//! reused until half its life is gone, so a busy session costs a hash, not a signature.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use serde::Serialize;

use super::policy::RouteName;
use crate::identity::{EmailVerified, Principal};
use crate::secret::KeyedHash;
use crate::token::pass::PassKeys;

/// `upstream.assertion` in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionSettings {
    /// Lowercase.
    pub header: Arc<str>,
    pub issuer: String,
    /// Never the pass's: a pass must not pass for an assertion, nor one for the other.
    pub audience: String,
    pub lifetime: Duration,
}

/// What an assertion says.
#[derive(Debug, Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    /// The configured user claim (`provider.user_id_claim`), as in the user header.
    user: &'a str,
    /// Only when the issuer did not call it unverified (as the email header).
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    email_verified: bool,
    /// As a list: no encoding to undo, unlike the groups header.
    groups: &'a [String],
    /// The portcullis route that let the request in.
    route: &'a str,
    iat: u64,
    exp: u64,
}

/// Callers whose assertions are kept at most (a few hundred bytes each).
const CACHED: u64 = 10_000;

pub struct AssertionSigner {
    settings: AssertionSettings,
    /// The header and its underscore spelling (one name to WSGI): removed unless set.
    spellings: Vec<Arc<str>>,
    keys: Arc<PassKeys>,
    /// By a keyed hash of the caller and the route: the assertion and its `exp`.
    signed: Cache<[u8; 32], (Arc<str>, u64)>,
    hash: KeyedHash,
}

impl AssertionSigner {
    pub fn new(settings: AssertionSettings, keys: Arc<PassKeys>) -> Self {
        let mut spellings = vec![settings.header.clone()];
        let underscored = settings.header.replace('-', "_");
        if *underscored != *settings.header {
            spellings.push(Arc::from(underscored));
        }
        Self {
            spellings,
            settings,
            keys,
            signed: Cache::new(CACHED),
            hash: KeyedHash::random(),
        }
    }

    pub fn header(&self) -> &Arc<str> {
        &self.settings.header
    }

    /// Every spelling of the header a client might send, to be removed when not set.
    pub fn spellings(&self) -> &[Arc<str>] {
        &self.spellings
    }

    /// The assertion for `who` on `route`: the one signed before while it has half its life
    /// left, else a new one. `None` without keys.
    pub fn assertion(&self, who: &Principal, route: &RouteName, now: u64) -> Option<Arc<str>> {
        let lifetime = self.settings.lifetime.as_secs();
        let claims = AssertionClaims {
            iss: &self.settings.issuer,
            aud: &self.settings.audience,
            sub: &who.subject,
            user: &who.user,
            email: who.email.as_deref(),
            email_verified: who.email_verified == EmailVerified::Yes,
            groups: &who.groups,
            route: route.as_str(),
            iat: now,
            exp: now + lifetime,
        };
        // Everything the assertion says but its times: equal keys, equal assertions.
        let identity = serde_json::to_vec(&(
            claims.sub,
            claims.user,
            claims.email,
            claims.email_verified,
            claims.groups,
            claims.route,
        ))
        .expect("strings always serialize");
        let key = self.hash.digest(&identity);
        if let Some((signed, exp)) = self.signed.get(&key)
            && exp >= now + lifetime / 2
        {
            return Some(signed);
        }
        let signed: Arc<str> = Arc::from(self.keys.sign(&claims)?);
        self.signed.insert(key, (signed.clone(), claims.exp));
        Some(signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn signer(keys: &Arc<PassKeys>) -> AssertionSigner {
        AssertionSigner::new(
            AssertionSettings {
                header: Arc::from("x-portcullis-assertion"),
                issuer: "https://portcullis.invalid/".into(),
                audience: "amundsen".into(),
                lifetime: Duration::from_secs(60),
            },
            keys.clone(),
        )
    }

    fn who(email: &str, groups: &[&str]) -> Principal {
        let claims = serde_json::json!({"email": email, "email_verified": true, "groups": groups});
        Principal::from_claims(
            "auth0|1".into(),
            claims.as_object().unwrap().clone(),
            "email",
            "groups",
        )
    }

    fn claims(keys: &PassKeys, jwt: &str) -> serde_json::Value {
        keys.open_as::<serde_json::Value>(jwt)
            .expect("signed by these keys")
    }

    #[test]
    fn an_assertion_names_the_caller_and_route_and_is_reused_for_half_its_life() {
        let keys = Arc::new(PassKeys::derive(&[Secret::new(
            crate::secret::generate_base64(32),
        )]));
        let s = signer(&keys);
        let alice = who("alice@example.com", &["eng,admins", "ops"]);
        let route = RouteName::new("metadata");
        let first = s.assertion(&alice, &route, 1_000).unwrap();
        let c = claims(&keys, &first);
        assert_eq!(c["aud"], "amundsen");
        assert_eq!(c["sub"], "auth0|1");
        assert_eq!(c["user"], "alice@example.com");
        assert_eq!(c["email"], "alice@example.com");
        assert_eq!(c["groups"], serde_json::json!(["eng,admins", "ops"]));
        assert_eq!(c["route"], "metadata");
        assert_eq!(
            (c["iat"].as_u64(), c["exp"].as_u64()),
            (Some(1_000), Some(1_060))
        );

        assert!(Arc::ptr_eq(
            &first,
            &s.assertion(&alice, &route, 1_030).unwrap()
        ));
        let later = s.assertion(&alice, &route, 1_031).unwrap();
        assert_eq!(claims(&keys, &later)["iat"], 1_031, "past half its life");
        let elsewhere = s
            .assertion(&alice, &RouteName::new("search"), 1_031)
            .unwrap();
        assert_eq!(claims(&keys, &elsewhere)["route"], "search");
        let regrouped = who("alice@example.com", &["ops"]);
        let other = s.assertion(&regrouped, &route, 1_031).unwrap();
        assert_eq!(claims(&keys, &other)["groups"], serde_json::json!(["ops"]));
    }
}
