//! Where sessions live. `cookie` (the default) keeps the whole sealed session in the browser;
//! `memory` and `redis` keep it server-side under a random id, the cookie holding only that id
//! (sealed), so that logout revokes it everywhere and a copied cookie dies with the session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands as _;
use serde::Deserialize;
use thiserror::Error;

use super::record::Session;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("session store timed out")]
    Timeout,
    #[error("session store: {0}")]
    Redis(String),
    #[error("session data unreadable")]
    Corrupt,
    /// Too large for the cookie store: a server-side store keeps any size.
    #[error("session too large for cookies ({0}); use session.store: redis or memory")]
    TooLarge(#[from] super::cookie::TooLarge),
}

/// A server-side session store.
#[allow(async_fn_in_trait)] // used through `Backend`, never as a trait object
pub trait SessionBackend {
    async fn get(&self, sid: &str) -> Result<Option<Session>, StoreError>;
    /// Stores `s` under `s.sid` for `ttl`.
    async fn put(&self, s: &Session, ttl: Duration) -> Result<(), StoreError>;
    async fn delete(&self, sid: &str) -> Result<(), StoreError>;
}

/// `session.store`: which [`Backend`] to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    Cookie,
    Memory,
    Redis,
}

/// The configured store.
pub enum Backend {
    Cookie,
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cookie => "Cookie",
            Self::Memory(_) => "Memory",
            Self::Redis(_) => "Redis",
        })
    }
}

#[derive(Clone)]
struct Entry {
    session: Arc<Session>,
    ttl: Duration,
}

struct EntryTtl;

impl moka::Expiry<String, Entry> for EntryTtl {
    fn expire_after_create(&self, _: &String, e: &Entry, _: Instant) -> Option<Duration> {
        Some(e.ttl)
    }
    fn expire_after_update(
        &self,
        _: &String,
        e: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(e.ttl)
    }
}

/// Sessions in this process (bounded, with each session's own expiry). Lost on restart and not
/// shared between replicas: for a single instance that must revoke on logout.
pub struct MemoryStore {
    sessions: moka::future::Cache<String, Entry>,
    /// `portcullis_sessions`.
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl MemoryStore {
    pub fn new(max_sessions: u64, gauge: prometheus_client::metrics::gauge::Gauge) -> Self {
        Self {
            sessions: moka::future::Cache::builder()
                .max_capacity(max_sessions)
                .expire_after(EntryTtl)
                .build(),
            gauge,
        }
    }

    async fn count(&self) {
        self.sessions.run_pending_tasks().await;
        self.gauge
            .set(i64::try_from(self.sessions.entry_count()).unwrap_or(i64::MAX));
    }

    pub fn len(&self) -> u64 {
        self.sessions.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SessionBackend for MemoryStore {
    async fn get(&self, sid: &str) -> Result<Option<Session>, StoreError> {
        Ok(self.sessions.get(sid).await.map(|e| (*e.session).clone()))
    }

    async fn put(&self, s: &Session, ttl: Duration) -> Result<(), StoreError> {
        let entry = Entry {
            session: Arc::new(s.clone()),
            ttl,
        };
        self.sessions.insert(s.sid.clone(), entry).await;
        self.count().await;
        Ok(())
    }

    async fn delete(&self, sid: &str) -> Result<(), StoreError> {
        self.sessions.invalidate(sid).await;
        self.count().await;
        Ok(())
    }
}

/// Sessions in Redis, shared by every replica. One multiplexed connection that reconnects by
/// itself; every command bounded by a timeout, so a slow Redis fails closed instead of piling up.
pub struct RedisStore {
    conn: redis::aio::ConnectionManager,
    timeout: Duration,
}

const KEY_PREFIX: &str = "portcullis:session:";
/// One-time claims (a login's `state`), by a hash of what is claimed.
const CLAIM_PREFIX: &str = "portcullis:claim:";

impl RedisStore {
    /// Connects now, so a wrong URL is a startup error rather than every login's.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::Redis(e.to_string()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let conn = tokio::time::timeout(
            timeout * 3,
            redis::aio::ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| StoreError::Timeout)?
        .map_err(|e| StoreError::Redis(e.to_string()))?;
        Ok(Self { conn, timeout })
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, f)
            .await
            .map_err(|_| StoreError::Timeout)?
            .map_err(|e| StoreError::Redis(format!("{:?}", e.kind())))
    }
}

impl RedisStore {
    /// `SET NX`: true for the one caller, among every replica, that claimed `key` first.
    async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let digest = blake3::hash(key.as_bytes()).to_hex();
        let options = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::EX(ttl.as_secs().max(1)));
        let set: Option<String> = self
            .bounded(conn.set_options(format!("{CLAIM_PREFIX}{digest}"), 1, options))
            .await?;
        Ok(set.is_some())
    }
}

impl SessionBackend for RedisStore {
    async fn get(&self, sid: &str) -> Result<Option<Session>, StoreError> {
        let mut conn = self.conn.clone();
        let raw: Option<Vec<u8>> = self.bounded(conn.get(format!("{KEY_PREFIX}{sid}"))).await?;
        raw.map(|r| serde_json::from_slice(&r).map_err(|_| StoreError::Corrupt))
            .transpose()
    }

    async fn put(&self, s: &Session, ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let json = serde_json::to_vec(s).expect("a session always serializes");
        let secs = ttl.as_secs().max(1);
        self.bounded(conn.set_ex::<_, _, ()>(format!("{KEY_PREFIX}{}", s.sid), json, secs))
            .await
    }

    async fn delete(&self, sid: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(conn.del::<_, ()>(format!("{KEY_PREFIX}{sid}")))
            .await
    }
}

impl Backend {
    pub async fn get(&self, sid: &str) -> Result<Option<Session>, StoreError> {
        match self {
            Self::Cookie => Ok(None),
            Self::Memory(m) => m.get(sid).await,
            Self::Redis(r) => r.get(sid).await,
        }
    }

    pub async fn put(&self, s: &Session, ttl: Duration) -> Result<(), StoreError> {
        match self {
            Self::Cookie => Ok(()),
            Self::Memory(m) => m.put(s, ttl).await,
            Self::Redis(r) => r.put(s, ttl).await,
        }
    }

    pub async fn delete(&self, sid: &str) -> Result<(), StoreError> {
        match self {
            Self::Cookie => Ok(()),
            Self::Memory(m) => m.delete(sid).await,
            Self::Redis(r) => r.delete(sid).await,
        }
    }

    /// True for the first claim of `key` within `ttl` among the replicas sharing this store; the
    /// stores that share nothing leave that to the caller's own process (always true).
    pub async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        match self {
            Self::Cookie | Self::Memory(_) => Ok(true),
            Self::Redis(r) => r.claim_once(key, ttl).await,
        }
    }

    pub fn is_server_side(&self) -> bool {
        !matches!(self, Self::Cookie)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Principal;

    fn session(sid: &str) -> Session {
        Session {
            sid: sid.into(),
            principal: Principal::from_claims("s".into(), Default::default(), "email", "groups"),
            id_token: "i".into(),
            access_token: None,
            access_expires_at: 0,
            access_issued_at: 0,
            refresh_token: None,
            created_at: 0,
            seen_at: 0,
        }
    }

    #[tokio::test]
    async fn memory_store_puts_gets_deletes_and_expires() {
        let gauge = prometheus_client::metrics::gauge::Gauge::default();
        let m = MemoryStore::new(10, gauge.clone());
        m.put(&session("a"), Duration::from_secs(60)).await.unwrap();
        m.put(&session("b"), Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(m.get("a").await.unwrap().unwrap().sid, "a");
        assert_eq!(gauge.get(), 2);
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(m.get("b").await.unwrap().is_none(), "expired");
        m.delete("a").await.unwrap();
        assert!(m.get("a").await.unwrap().is_none(), "revoked");
        assert!(
            gauge.get() <= 1,
            "a is gone from the gauge ({})",
            gauge.get()
        );
    }
}
