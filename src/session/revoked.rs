//! Sessions the provider ended (OpenID Connect Back-Channel Logout): by the provider's session id
//! (`sid`, every session of that sign-in) or by user (`sub`, every session begun before it). Kept
//! until the longest session could have lived; shared through Redis when configured, where each
//! replica reads what the others revoked every [`SYNC_EVERY`]. Ids are kept as keyed hashes only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::error::StoreError;
use super::record::Session;
use super::redis::RedisStore;

/// How often a replica reads the revocations of the others (the bound on "within a second").
pub const SYNC_EVERY: Duration = Duration::from_millis(500);
/// The shared sorted set: members are hashes of `sid:...` / `sub:...`, scores when revoked.
const SHARED_SET: &str = "revoked-sessions";
/// Revocations kept in this process at most.
const LOCAL_ENTRIES: u64 = 1_000_000;

/// What a back-channel logout names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked<'a> {
    /// The provider's session: every portcullis session signed in through it.
    Sid(&'a str),
    /// The user: every session begun at or before the revocation.
    Sub(&'a str),
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("entries", &self.local.entry_count())
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

pub struct Revocations {
    /// Member hash -> when revoked (seconds).
    local: moka::sync::Cache<String, u64>,
    shared: Option<RedisStore>,
    /// How long a revocation matters: `session.absolute_timeout`.
    keep: Duration,
    /// The newest score read from Redis so far.
    synced_to: AtomicU64,
    /// Whether anything was ever revoked (here or read from Redis).
    any: AtomicBool,
}

impl Revocations {
    pub fn new(keep: Duration, shared: Option<RedisStore>) -> Arc<Self> {
        Arc::new(Self {
            local: moka::sync::Cache::builder()
                .max_capacity(LOCAL_ENTRIES)
                .time_to_live(keep)
                .build(),
            shared,
            keep,
            synced_to: AtomicU64::new(0),
            any: AtomicBool::new(false),
        })
    }

    /// Remembers `what` of the provider `scope` (its issuer) as revoked at `now`, here and for
    /// every replica sharing Redis.
    pub async fn revoke(&self, scope: &str, what: Revoked<'_>, now: u64) -> Result<(), StoreError> {
        let member = member(scope, what);
        self.local.insert(member.clone(), now);
        self.any.store(true, Ordering::Release);
        match &self.shared {
            Some(redis) => redis.add_scored(SHARED_SET, &member, now).await,
            None => Ok(()),
        }
    }

    /// Whether the provider `scope` (the issuer that signed `s` in) ended `s`. Ids are the
    /// provider's own: another provider's `sub` of the same spelling is another user.
    pub fn ends(&self, scope: &str, s: &Session) -> bool {
        if !self.any.load(Ordering::Acquire) {
            // The common case: nothing ever revoked, nothing to hash.
            return false;
        }
        let by_sid = s
            .principal
            .claims
            .get("sid")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|sid| self.local.contains_key(&member(scope, Revoked::Sid(sid))));
        let by_sub = self
            .revoked_at(scope, Revoked::Sub(&s.principal.subject))
            .is_some_and(|at| s.created_at <= at);
        by_sid || by_sub
    }

    /// When `what` of the provider `scope` was revoked, if it was.
    pub fn revoked_at(&self, scope: &str, what: Revoked<'_>) -> Option<u64> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.local.get(&member(scope, what))
    }

    /// Reads what other replicas revoked since the last read, and forgets what no session can
    /// outlive. Without Redis there is nothing to read.
    pub async fn sync(&self, now: u64) -> Result<(), StoreError> {
        let Some(redis) = &self.shared else {
            return Ok(());
        };
        let from = self.synced_to.load(Ordering::Acquire);
        let mut newest = from;
        for (member, at) in redis.scored_from(SHARED_SET, from).await? {
            if at.saturating_add(self.keep.as_secs()) > now {
                self.local.insert(member, at);
                self.any.store(true, Ordering::Release);
            }
            newest = newest.max(at);
        }
        self.synced_to.store(newest, Ordering::Release);
        redis
            .drop_scored_below(SHARED_SET, now.saturating_sub(self.keep.as_secs()))
            .await
    }

    /// Whether revocations come from other replicas too (and so [`Self::sync`] has work).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }
}

/// The member for `what`: a hash, so neither Redis nor a memory dump holds the ids.
fn member(scope: &str, what: Revoked<'_>) -> String {
    let (kind, id) = match what {
        Revoked::Sid(sid) => ("sid", sid),
        Revoked::Sub(sub) => ("sub", sub),
    };
    blake3::hash(format!("{scope}\n{kind}:{id}").as_bytes())
        .to_hex()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Principal;

    fn session(sub: &str, sid: Option<&str>, created_at: u64) -> Session {
        let mut claims = serde_json::Map::new();
        if let Some(sid) = sid {
            claims.insert("sid".into(), sid.into());
        }
        Session {
            sid: "portcullis-own-id".into(),
            principal: Principal::from_claims(sub.into(), claims, "sub", "groups"),
            id_token: String::new(),
            access_token: None,
            access_expires_at: 0,
            access_issued_at: 0,
            refresh_token: None,
            created_at,
            seen_at: created_at,
        }
    }

    const OP: &str = "https://op.example";

    #[tokio::test]
    async fn a_provider_session_ends_its_sessions_and_a_user_those_begun_before() {
        let r = Revocations::new(Duration::from_secs(3600), None);
        let (a1, a2) = (
            session("alice", Some("op-1"), 100),
            session("alice", Some("op-2"), 100),
        );
        let bob = session("bob", Some("op-3"), 100);
        assert!(![&a1, &a2, &bob].iter().any(|s| r.ends(OP, s)));
        r.revoke(OP, Revoked::Sid("op-1"), 200).await.unwrap();
        assert!(r.ends(OP, &a1));
        assert!(!r.ends(OP, &a2), "another sign-in of the same user");
        r.revoke(OP, Revoked::Sub("alice"), 300).await.unwrap();
        assert!(r.ends(OP, &a2));
        assert!(
            !r.ends(OP, &session("alice", Some("op-4"), 301)),
            "a later sign-in"
        );
        assert!(!r.ends(OP, &session("alice", None, 301)));
        assert!(!r.ends(OP, &bob));
        // The id `sid` of portcullis's own session is not the provider's.
        r.revoke(OP, Revoked::Sid("portcullis-own-id"), 400)
            .await
            .unwrap();
        assert!(!r.ends(OP, &bob));
        // Another provider's bob is another user.
        r.revoke("https://other.example", Revoked::Sub("bob"), 500)
            .await
            .unwrap();
        assert!(!r.ends(OP, &bob));
        assert!(r.ends("https://other.example", &bob));
    }
}
