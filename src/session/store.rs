//! Where sessions live. `cookie` (the default) keeps the whole sealed session in the browser;
//! `memory` and `redis` (redis.rs) keep it server-side under a random id, the cookie holding only
//! that id (sealed), so that logout revokes it everywhere and a copied cookie dies with the session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::error::StoreError;
use super::record::Session;
use super::redis::RedisStore;

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

/// The configured store. A clone is the same store (a reload keeps it).
#[derive(Clone)]
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
/// shared between replicas: for a single instance that must revoke on logout. A clone is the same
/// store.
#[derive(Clone)]
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
