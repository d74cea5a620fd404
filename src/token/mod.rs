//! Bearer tokens. JWTs: structure and size checked before any decoding, the issuer's keys looked
//! up, the signature and claims verified, and the result cached until (at most) the token expires.
//! Opaque tokens, where an issuer allows them: asked of the provider (opaque.rs).

pub mod cache;
pub mod id_token;
pub mod jwks;
pub mod keys;
pub mod logout_token;
pub mod opaque;
pub mod pass;
pub mod validate;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use cache::TokenCache;
pub use jwks::{JwksCache, KeyMiss};
pub use opaque::{Opaque, OpaqueLimits};
pub use validate::{Origin, TimeRules, TokenRejection};

pub use crate::identity::IdentityClaims;

/// A bearer token that passed: who it names, and until when it may stand for them without being
/// checked again (a JWT's `exp`; none for an opaque token, whose answers portcullis caches itself
/// within `opaque_cache`).
#[derive(Debug, Clone)]
pub struct Verified {
    pub principal: Arc<Principal>,
    pub until: Option<u64>,
}
use crate::identity::Principal;
use crate::idp::same_issuer;
use crate::metrics::{CacheResult, Metrics};

/// One issuer whose bearer tokens are accepted.
pub struct Issuer {
    /// As configured; the discovered spelling (trailing `/` or not) is what tokens must carry.
    configured: String,
    keys: Arc<JwksCache>,
    audiences: Vec<String>,
    /// Its opaque tokens, when it issues them and they are accepted (`bearer[].opaque`).
    opaque: Option<Opaque>,
}

impl Issuer {
    pub fn new(configured: &str, audiences: &[String], keys: Arc<JwksCache>) -> Self {
        Self {
            configured: configured.to_owned(),
            keys,
            audiences: audiences.to_vec(),
            opaque: None,
        }
    }

    pub fn with_opaque(mut self, opaque: Opaque) -> Self {
        self.opaque = Some(opaque);
        self
    }

    pub fn keys(&self) -> &Arc<JwksCache> {
        &self.keys
    }

    /// The exact issuer string tokens must carry: the discovered one once known.
    fn exact(&self) -> &str {
        self.keys
            .metadata()
            .map_or(self.configured.as_str(), |m| m.issuer.as_str())
    }
}

/// Verifies bearer tokens for every configured issuer.
pub struct Verifier {
    issuers: Vec<Issuer>,
    /// Whether any issuer takes opaque tokens; else a token that is not a JWS is malformed.
    accepts_opaque: bool,
    cache: TokenCache,
    identity: IdentityClaims,
    rules: TimeRules,
    metrics: Arc<Metrics>,
}

impl Verifier {
    pub fn new(
        issuers: Vec<Issuer>,
        identity: IdentityClaims,
        rules: TimeRules,
        cache: TokenCache,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            accepts_opaque: issuers.iter().any(|i| i.opaque.is_some()),
            issuers,
            cache,
            identity,
            rules,
            metrics,
        }
    }

    pub fn issuers(&self) -> &[Issuer] {
        &self.issuers
    }

    /// Whether every issuer's keys are loaded (readiness).
    pub fn is_ready(&self) -> bool {
        self.issuers.iter().all(|i| i.keys.is_loaded())
    }

    pub async fn verify(&self, token: &str) -> Result<Verified, TokenRejection> {
        // Only a token that passed every check below is in the cache, so a hit needs no more.
        if token.len() > Origin::Bearer.max_len() {
            return Err(TokenRejection::TooLarge);
        }
        let now = now_secs();
        let digest = self.cache.digest(token);
        if self.accepts_opaque && !validate::is_jws_shaped(token) {
            return self
                .verify_opaque(token, digest, now)
                .await
                .map(|principal| Verified {
                    principal,
                    until: None,
                });
        }
        if let Some((principal, exp)) = self.cache.get(&digest, now) {
            self.metrics.token_cache(CacheResult::hit);
            return Ok(Verified {
                principal,
                until: Some(exp),
            });
        }
        self.metrics.token_cache(CacheResult::miss);

        let decoded = validate::decode(token, Origin::Bearer)?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| same_issuer(&i.configured, decoded.iss()))
            .ok_or(TokenRejection::UnknownIssuer)?;
        if decoded.iss() != issuer.exact() {
            return Err(TokenRejection::UnknownIssuer);
        }
        // Expired tokens cost no key lookup, so they can never trigger a fetch.
        if decoded.is_expired(now, self.rules.leeway) {
            return Err(TokenRejection::Expired);
        }
        let key = issuer
            .keys
            .key_for(decoded.kid.as_deref(), decoded.alg)
            .await
            .map_err(TokenRejection::from)?;
        let expected = validate::Expected {
            audiences: &issuer.audiences,
            now,
            rules: self.rules,
        };
        let claims = validate::verify(decoded, &key, &expected)?;
        let exp = claims.exp;
        let principal = Arc::new(Principal::from_claims(
            claims.sub,
            claims.rest,
            &self.identity.user_id_claim,
            &self.identity.groups_claim,
        ));
        self.cache.insert(digest, principal.clone(), exp, now);
        Ok(Verified {
            principal,
            until: Some(exp),
        })
    }

    /// Every issuer that accepts opaque tokens is asked in turn (each asks only its own provider,
    /// within its own rate); the first that knows the token wins, else the first one's refusal.
    async fn verify_opaque(
        &self,
        token: &str,
        digest: cache::Digest,
        now: u64,
    ) -> Result<Arc<Principal>, TokenRejection> {
        let mut refused = None;
        for issuer in &self.issuers {
            let Some(opaque) = &issuer.opaque else {
                continue;
            };
            self.metrics.token_cache(if opaque.knows(&digest) {
                CacheResult::hit
            } else {
                CacheResult::miss
            });
            let judge = opaque::Judge {
                issuer: issuer.exact(),
                audiences: &issuer.audiences,
                identity: &self.identity,
                rules: self.rules,
            };
            let metadata = issuer.keys.metadata();
            match opaque.verify(token, digest, now, metadata, &judge).await {
                Ok(principal) => return Ok(principal),
                Err(why) => {
                    refused.get_or_insert(why);
                }
            }
        }
        Err(refused.unwrap_or(TokenRejection::Malformed))
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use crate::testing::{claims, rs, verifier};

    #[tokio::test]
    async fn a_repeated_token_is_served_from_the_cache() {
        let v = verifier(100);
        let t = rs(&claims());
        let first = v.verify(&t).await.unwrap();
        let second = v.verify(&t).await.unwrap();
        assert!(
            std::sync::Arc::ptr_eq(&first.principal, &second.principal),
            "the second check must come from the cache"
        );
        let scrape = v.metrics.encode();
        assert!(
            scrape.contains("portcullis_token_cache_requests_total{result=\"hit\"} 1"),
            "{scrape}"
        );
    }
}
