//! One issuer's signing keys: discovered, fetched, refreshed in the background, refetched on an
//! unknown `kid` at most once per interval for all callers together, and kept when the IdP fails.
//!
//! The key set lives behind an `ArcSwap` rather than in a per-key cache: a JWKS is replaced whole
//! (keys that vanished from the document must vanish here too), and a lock-free read is what every
//! cold bearer check pays.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::Algorithm;
use tokio::sync::Mutex;
use url::Url;

use super::keys::{KeySet, Lookup, VerifyKey};
use crate::idp::{IdpClient, IdpError, ProviderMetadata};
use crate::metrics::{FetchResult, FetchTrigger, IdpEndpoint, Metrics};
use crate::readiness::Loaded;

/// Why no key could be had for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMiss {
    /// The set is loaded and has no such key, even after a refetch (or the refetch was rate-limited).
    Unknown,
    /// The key exists but may not verify this token's algorithm.
    AlgorithmNotAllowed,
    /// No key set has ever been loaded: the IdP has not answered yet.
    Unavailable,
}

/// Where the keys come from: the issuer's discovery document (resolved once) or a fixed JWKS URL.
enum Source {
    Discover {
        issuer: String,
        metadata: OnceLock<Box<ProviderMetadata>>,
    },
    Fixed {
        jwks_uri: Url,
    },
}

pub struct JwksCache {
    source: Source,
    client: IdpClient,
    metrics: Arc<Metrics>,
    set: ArcSwap<KeySet>,
    loaded: AtomicBool,
    /// Bumped on every successful fetch, so waiters can tell that somebody fetched for them.
    generation: AtomicU64,
    /// Serialises fetches (single flight) and remembers when the last one started.
    fetching: Mutex<Option<Instant>>,
    min_refetch: Duration,
}

impl JwksCache {
    /// Keys found through `issuer`'s discovery document.
    pub fn discover(
        issuer: &str,
        client: IdpClient,
        metrics: Arc<Metrics>,
        min_refetch: Duration,
    ) -> Self {
        Self::with_source(
            Source::Discover {
                issuer: issuer.to_owned(),
                metadata: OnceLock::new(),
            },
            client,
            metrics,
            min_refetch,
        )
    }

    /// Keys at a fixed JWKS URL (no discovery).
    pub fn fixed(
        jwks_uri: Url,
        client: IdpClient,
        metrics: Arc<Metrics>,
        min_refetch: Duration,
    ) -> Self {
        Self::with_source(Source::Fixed { jwks_uri }, client, metrics, min_refetch)
    }

    fn with_source(
        source: Source,
        client: IdpClient,
        metrics: Arc<Metrics>,
        min_refetch: Duration,
    ) -> Self {
        Self {
            source,
            client,
            metrics,
            set: ArcSwap::from_pointee(KeySet::default()),
            loaded: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            fetching: Mutex::new(None),
            min_refetch,
        }
    }

    /// Installs a key set as if it had been fetched: for benchmarks and tests that run without an IdP.
    pub fn install(&self, set: KeySet) {
        self.set.store(Arc::new(set));
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.loaded.store(true, Ordering::Release);
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// The provider metadata, once discovery has succeeded (`None` for a fixed JWKS URL).
    pub fn metadata(&self) -> Option<&ProviderMetadata> {
        match &self.source {
            Source::Discover { metadata, .. } => metadata.get().map(|m| &**m),
            Source::Fixed { .. } => None,
        }
    }

    /// One line for humans: where the keys come from and how many there are.
    pub fn describe(&self) -> String {
        let keys = self.set.load().keys.len();
        match (&self.source, self.metadata()) {
            (_, Some(m)) => format!(
                "{} (jwks_uri {}): {keys} signing keys",
                m.issuer, m.jwks_uri
            ),
            (Source::Fixed { jwks_uri }, None) => format!("{jwks_uri}: {keys} signing keys"),
            (Source::Discover { issuer, .. }, None) => format!("{issuer}: not discovered"),
        }
    }

    /// Fetches now (startup, background refresh). A fetch that completed while this one waited
    /// for its turn counts as this one.
    pub async fn refresh(&self, trigger: FetchTrigger) -> Result<(), IdpError> {
        let seen = self.generation.load(Ordering::Acquire);
        let mut last = self.fetching.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        *last = Some(Instant::now());
        self.fetch(trigger).await
    }

    /// The key for a token's `kid` and `alg`. An unknown `kid` refetches the set unless a fetch
    /// started less than `min_refetch` ago; concurrent callers share one fetch.
    pub async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyKey>, KeyMiss> {
        let seen = self.generation.load(Ordering::Acquire);
        match self.set.load().lookup(kid, alg) {
            Lookup::Found(key) => return Ok(key.clone()),
            Lookup::AlgorithmNotAllowed => return Err(KeyMiss::AlgorithmNotAllowed),
            Lookup::Missing => {}
        }
        {
            let mut last = self.fetching.lock().await;
            let fetched_meanwhile = self.generation.load(Ordering::Acquire) != seen;
            let rate_limited = last.is_some_and(|t| t.elapsed() < self.min_refetch);
            if !fetched_meanwhile && !rate_limited {
                *last = Some(Instant::now());
                if let Err(e) = self.fetch(FetchTrigger::unknown_kid).await {
                    tracing::warn!(error = %e, "refetching keys for an unknown kid failed; keeping the last good set");
                }
            }
        }
        match self.set.load().lookup(kid, alg) {
            Lookup::Found(key) => Ok(key.clone()),
            Lookup::AlgorithmNotAllowed => Err(KeyMiss::AlgorithmNotAllowed),
            Lookup::Missing if self.is_loaded() => Err(KeyMiss::Unknown),
            Lookup::Missing => Err(KeyMiss::Unavailable),
        }
    }

    /// Called with `fetching` held. On any failure the current set stays as it is.
    #[tracing::instrument(target = "portcullis::span", level = "trace", name = "jwks.fetch", skip_all, fields(trigger = ?trigger))]
    async fn fetch(&self, trigger: FetchTrigger) -> Result<(), IdpError> {
        let result = self.fetch_set().await;
        match result {
            Ok(set) => {
                tracing::info!(
                    keys = set.keys.len(),
                    skipped = set.skipped,
                    ?trigger,
                    "signing keys loaded"
                );
                self.set.store(Arc::new(set));
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.loaded.store(true, Ordering::Release);
                self.metrics.jwks_fetch(trigger, FetchResult::ok);
                Ok(())
            }
            Err(e) => {
                self.metrics.jwks_fetch(trigger, FetchResult::error);
                Err(e)
            }
        }
    }

    async fn fetch_set(&self) -> Result<KeySet, IdpError> {
        let jwks_uri = match &self.source {
            Source::Fixed { jwks_uri } => jwks_uri.clone(),
            Source::Discover { issuer, metadata } => match metadata.get() {
                Some(m) => m.jwks_uri.clone(),
                None => {
                    let m = ProviderMetadata::discover(&self.client, issuer).await?;
                    metadata.get_or_init(|| Box::new(m)).jwks_uri.clone()
                }
            },
        };
        let body = self.client.get_json(IdpEndpoint::jwks, &jwks_uri).await?;
        let set = KeySet::from_json(&body).map_err(|e| IdpError::Document {
            url: jwks_uri.to_string(),
            detail: e.to_string(),
        })?;
        if set.keys.is_empty() {
            return Err(IdpError::Document {
                url: jwks_uri.to_string(),
                detail: "no usable signing keys".into(),
            });
        }
        Ok(set)
    }

    /// Keeps the set fresh until `stop` fires: retries quickly (with backoff) until the first
    /// load, then refreshes every `interval`. Failures keep the last good set.
    pub async fn run_refresh(
        self: Arc<Self>,
        interval: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut backoff = Duration::from_millis(500);
        loop {
            let wait = if self.is_loaded() { interval } else { backoff };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
            let trigger = if self.is_loaded() {
                FetchTrigger::refresh
            } else {
                FetchTrigger::startup
            };
            match self.refresh(trigger).await {
                Ok(()) => backoff = Duration::from_millis(500),
                Err(e) => {
                    tracing::warn!(error = %e, "fetching signing keys failed; keeping the last good set");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// Not ready until the first key set has loaded.
impl Loaded for JwksCache {
    fn is_loaded(&self) -> bool {
        JwksCache::is_loaded(self)
    }
}
