//! Validated tokens, keyed by a keyed hash of the token ([`KeyedHash`]), so that a repeated token
//! costs a hash and a lookup.
//!
//! An entry lives until the token's `exp` or `max_ttl`, whichever comes first: a key the IdP
//! withdraws stops being honoured within `max_ttl` even for tokens already seen.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;

use crate::identity::Principal;
use crate::secret::KeyedHash;

pub type Digest = [u8; 32];

#[derive(Clone)]
struct Entry {
    principal: Arc<Principal>,
    exp: u64,
    ttl: Duration,
}

struct ExpireAtExp;

impl moka::Expiry<Digest, Entry> for ExpireAtExp {
    fn expire_after_create(
        &self,
        _key: &Digest,
        value: &Entry,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

#[derive(Clone)]
pub struct TokenCache {
    entries: Cache<Digest, Entry>,
    max_ttl: Duration,
    hash: Arc<KeyedHash>,
}

impl TokenCache {
    pub fn new(max_entries: u64, max_ttl: Duration) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(ExpireAtExp)
                .build(),
            max_ttl,
            hash: Arc::new(KeyedHash::random()),
        }
    }

    pub fn digest(&self, token: &str) -> Digest {
        self.hash.digest(token.as_bytes())
    }

    /// The principal of a token seen before, and its `exp`.
    pub fn get(&self, digest: &Digest, now: u64) -> Option<(Arc<Principal>, u64)> {
        // The expiry timer is coarse; `exp` itself is the authority.
        self.entries
            .get(digest)
            .filter(|e| e.exp > now)
            .map(|e| (e.principal, e.exp))
    }

    pub fn insert(&self, digest: Digest, principal: Arc<Principal>, exp: u64, now: u64) {
        let left = Duration::from_secs(exp.saturating_sub(now));
        if left.is_zero() {
            return;
        }
        self.entries.insert(
            digest,
            Entry {
                principal,
                exp,
                ttl: left.min(self.max_ttl),
            },
        );
    }

    pub fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Arc<Principal> {
        Arc::new(Principal::from_claims(
            "s".into(),
            Default::default(),
            "email",
            "groups",
        ))
    }

    #[test]
    fn entries_are_not_served_past_exp() {
        let cache = TokenCache::new(10, Duration::from_secs(300));
        let d = cache.digest("a.b.c");
        cache.insert(d, principal(), 1_000, 900);
        assert!(cache.get(&d, 950).is_some());
        assert!(cache.get(&d, 1_000).is_none());
        assert!(cache.get(&cache.digest("a.b.d"), 950).is_none());
    }

    #[test]
    fn expired_tokens_are_not_cached() {
        let cache = TokenCache::new(10, Duration::from_secs(300));
        let d = cache.digest("x");
        cache.insert(d, principal(), 900, 900);
        assert_eq!(cache.entry_count(), 0);
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = TokenCache::new(100, Duration::from_secs(300));
        for i in 0..1_000 {
            cache.insert(cache.digest(&i.to_string()), principal(), u64::MAX, 0);
        }
        assert!(cache.entry_count() <= 100, "{}", cache.entry_count());
    }
}
