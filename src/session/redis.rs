//! Redis, shared by every replica: the `redis` store's sessions, and what replicas must agree on
//! whatever the store (one exchange per login state, one refresh per access token). One multiplexed
//! connection that reconnects by itself; every command bounded by a timeout, so a slow Redis fails
//! closed instead of piling up; and a breaker: once Redis is known to be down, commands fail at once
//! (no timeout per request) until a background probe reaches it again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::AsyncCommands as _;

use super::error::StoreError;
use super::record::Session;
use crate::metrics::{Metrics, RedisResult};

const SESSION_PREFIX: &str = "portcullis:session:";
/// Everything else replicas share, under a hash of its name (no session id or state in a key).
const SHARED_PREFIX: &str = "portcullis:shared:";
/// How often a Redis known to be down is probed.
const PROBE_EVERY: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct RedisStore {
    conn: redis::aio::ConnectionManager,
    timeout: Duration,
    health: Arc<Health>,
}

struct Health {
    down: AtomicBool,
    metrics: Arc<Metrics>,
}

impl RedisStore {
    /// Connects now, so a wrong URL is a startup error rather than every login's, and starts the
    /// probe that closes the breaker again.
    pub async fn connect(
        url: &str,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
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
        let health = Arc::new(Health {
            down: AtomicBool::new(false),
            metrics,
        });
        tokio::spawn(probe(conn.clone(), timeout, Arc::downgrade(&health)));
        Ok(Self {
            conn,
            timeout,
            health,
        })
    }

    /// One command, bounded; refused at once while Redis is known to be down. A timeout or a
    /// connection failure marks it down.
    /// `command` names the span (`redis GET`, ...) when tracing is on.
    #[tracing::instrument(
        target = "portcullis::span",
        level = "trace",
        name = "redis",
        skip_all,
        fields(command = command)
    )]
    async fn bounded<T>(
        &self,
        command: &'static str,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let metrics = &self.health.metrics;
        if self.health.down.load(Ordering::Acquire) {
            metrics.redis(RedisResult::short_circuit);
            return Err(StoreError::Down);
        }
        let result = match tokio::time::timeout(self.timeout, f).await {
            Err(_) => {
                self.mark_down("timed out");
                Err(StoreError::Timeout)
            }
            Ok(Err(e)) => {
                if e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                {
                    self.mark_down("connection failed");
                }
                Err(StoreError::Redis(format!("{:?}", e.kind())))
            }
            Ok(Ok(v)) => Ok(v),
        };
        metrics.redis(if result.is_ok() {
            RedisResult::ok
        } else {
            RedisResult::error
        });
        result
    }

    fn mark_down(&self, why: &'static str) {
        if !self.health.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(why, "Redis is down: failing fast until a probe reaches it");
        }
    }

    pub async fn get(&self, sid: &str) -> Result<Option<Session>, StoreError> {
        let raw = self.get_bytes(&format!("{SESSION_PREFIX}{sid}")).await?;
        raw.map(|r| serde_json::from_slice(&r).map_err(|_| StoreError::Corrupt))
            .transpose()
    }

    pub async fn put(&self, s: &Session, ttl: Duration) -> Result<(), StoreError> {
        let json = serde_json::to_vec(s).expect("a session always serializes");
        self.set_bytes(&format!("{SESSION_PREFIX}{}", s.sid), json, ttl)
            .await
    }

    pub async fn delete(&self, sid: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.bounded("DEL", conn.del::<_, ()>(format!("{SESSION_PREFIX}{sid}")))
            .await
    }

    /// `SET NX`: true for the one caller, among every replica, that set `name` first within `ttl`.
    pub async fn set_once(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let options = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::PX(millis(ttl)));
        let set: Option<String> = self
            .bounded("SET NX", conn.set_options(shared_key(name), 1, options))
            .await?;
        Ok(set.is_some())
    }

    pub async fn put_shared(
        &self,
        name: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.set_bytes(&shared_key(name), value, ttl).await
    }

    pub async fn get_shared(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_bytes(&shared_key(name)).await
    }

    pub async fn delete_shared(&self, name: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.bounded("DEL", conn.del::<_, ()>(shared_key(name)))
            .await
    }

    /// `ZADD`: `member` at `score` in the shared sorted set `name`.
    pub async fn add_scored(&self, name: &str, member: &str, score: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(
            "ZADD",
            conn.zadd::<_, _, _, ()>(shared_key(name), member, score),
        )
        .await
    }

    /// The members of the shared sorted set `name` scored `min` or more, with their scores.
    pub async fn scored_from(
        &self,
        name: &str,
        min: u64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(
            "ZRANGEBYSCORE",
            conn.zrangebyscore_withscores(shared_key(name), min, "+inf"),
        )
        .await
    }

    /// Drops the members of the shared sorted set `name` scored below `max`.
    pub async fn drop_scored_below(&self, name: &str, max: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(
            "ZREMRANGEBYSCORE",
            conn.zrembyscore::<_, _, _, ()>(shared_key(name), "-inf", format!("({max}")),
        )
        .await
    }

    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded("GET", conn.get(key)).await
    }

    async fn set_bytes(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.bounded("PSETEX", conn.pset_ex::<_, _, ()>(key, value, millis(ttl)))
            .await
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisStore")
    }
}

fn shared_key(name: &str) -> String {
    format!("{SHARED_PREFIX}{}", blake3::hash(name.as_bytes()).to_hex())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// While the store lives: a Redis marked down is PINGed every [`PROBE_EVERY`], and the first
/// answer closes the breaker.
async fn probe(mut conn: redis::aio::ConnectionManager, timeout: Duration, health: Weak<Health>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(health) = health.upgrade() else {
            return;
        };
        if !health.down.load(Ordering::Acquire) {
            continue;
        }
        let ping = redis::cmd("PING");
        let answer = tokio::time::timeout(timeout, ping.query_async::<String>(&mut conn)).await;
        if let Ok(Ok(_)) = answer {
            health.down.store(false, Ordering::Release);
            tracing::info!("Redis answers again");
        }
    }
}
