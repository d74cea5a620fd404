//! Bearer JWTs: structure and size checked before any decoding, the issuer's keys looked up, the
//! signature and claims verified, and the result cached until (at most) the token expires.

pub mod cache;
pub mod jwks;
pub mod keys;
pub mod validate;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Validation};

pub use cache::TokenCache;
pub use jwks::{JwksCache, KeyMiss};
pub use validate::TokenRejection;

use crate::authz::Principal;
use crate::metrics::{CacheResult, Metrics};
use crate::oidc::provider::same_issuer;

/// One issuer whose bearer tokens are accepted.
pub struct Issuer {
    /// As configured; the discovered spelling (trailing `/` or not) is what tokens must carry.
    configured: String,
    keys: Arc<JwksCache>,
    /// One per algorithm: jsonwebtoken wants every listed algorithm in the key's family, and the
    /// key (token::keys) has already decided which algorithm this token may use.
    validations: Vec<(Algorithm, Validation)>,
}

impl Issuer {
    pub fn new(
        configured: &str,
        audiences: &[String],
        keys: Arc<JwksCache>,
        leeway: Duration,
    ) -> Self {
        Self {
            configured: configured.to_owned(),
            keys,
            validations: keys::ASYMMETRIC
                .iter()
                .map(|alg| (*alg, validation(*alg, audiences, leeway)))
                .collect(),
        }
    }

    fn validation(&self, alg: Algorithm) -> Option<&Validation> {
        self.validations
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
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

fn validation(alg: Algorithm, audiences: &[String], leeway: Duration) -> Validation {
    let mut v = Validation::new(alg);
    v.set_audience(audiences);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.validate_nbf = true;
    v.leeway = leeway.as_secs();
    v
}

/// How the verified claims become a principal.
#[derive(Debug, Clone)]
pub struct IdentityClaims {
    pub user_id_claim: String,
    pub groups_claim: String,
}

/// Verifies bearer tokens for every configured issuer.
pub struct Verifier {
    issuers: Vec<Issuer>,
    cache: TokenCache,
    identity: IdentityClaims,
    leeway: u64,
    metrics: Arc<Metrics>,
}

impl Verifier {
    pub fn new(
        issuers: Vec<Issuer>,
        identity: IdentityClaims,
        leeway: Duration,
        cache: TokenCache,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            issuers,
            cache,
            identity,
            leeway: leeway.as_secs(),
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

    pub async fn verify(&self, token: &str) -> Result<Arc<Principal>, TokenRejection> {
        validate::check_shape(token)?;
        let now = now_secs();
        let digest = cache::digest(token);
        if let Some(principal) = self.cache.get(&digest, now) {
            self.metrics.token_cache(CacheResult::hit);
            return Ok(principal);
        }
        self.metrics.token_cache(CacheResult::miss);

        let header = validate::header(token)?;
        let peek = validate::peek(token)?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| same_issuer(&i.configured, &peek.iss))
            .ok_or(TokenRejection::UnknownIssuer)?;
        if peek.iss != issuer.exact() {
            return Err(TokenRejection::UnknownIssuer);
        }
        // Expired tokens cost no key lookup, so they can never trigger a fetch.
        if peek.exp.saturating_add(self.leeway) < now {
            return Err(TokenRejection::Expired);
        }
        let key = issuer
            .keys
            .key_for(header.kid.as_deref(), header.alg)
            .await
            .map_err(TokenRejection::from)?;
        let validation = issuer
            .validation(header.alg)
            .ok_or(TokenRejection::AlgorithmNotAllowed)?;
        let claims = validate::verify(token, &key.key, validation, now, self.leeway)?;
        let exp = claims.exp;
        let principal = Arc::new(crate::authz::Principal::from_claims(
            claims.sub,
            claims.rest,
            &self.identity.user_id_claim,
            &self.identity.groups_claim,
        ));
        self.cache.insert(digest, principal.clone(), exp, now);
        Ok(principal)
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
