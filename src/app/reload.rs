//! Hot reload: SIGHUP, or a change in the config file or a secret file it names, loads the config
//! again, validates it whole, loads the keys of issuers it adds, and swaps the core in one step
//! (core.rs). A config with any problem changes nothing: one log line per problem,
//! `portcullis_config_reloads_total{result="error"}`. What only a restart can change (ports, the
//! session store, logging) keeps its running value and says so.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::core::Core;
use crate::audit::{self, Event, ReloadOutcome};
use crate::config::{self, Config, ConfigError, EnvoyMetadata, Listen};
use crate::metrics::{FetchTrigger, ReloadResult};
use crate::session::StoreKind;
use crate::telemetry::LogFormat;
use crate::token::JwksCache;

/// How often the watched files are read for a change. Polling finds what inotify misses: a
/// Kubernetes ConfigMap or Secret update swaps a symlink over the files' folder.
const POLL: Duration = Duration::from_secs(2);
/// The longest a reload waits for the keys of an issuer it adds before refusing.
const NEW_KEYS_LIMIT: Duration = Duration::from_secs(10);

/// Keeps the core in step with its files until `stop`.
pub(super) struct Watcher {
    path: PathBuf,
    core: Arc<Core>,
    fixed: Fixed,
    /// Each watched file and a hash of its content (`None`: unreadable).
    seen: Vec<(PathBuf, Option<blake3::Hash>)>,
    refresh_interval: Duration,
    stop: watch::Receiver<bool>,
}

/// What a reload cannot change, as the process runs with it.
#[derive(Debug, Clone)]
struct Fixed {
    listen: Listen,
    store: StoreKind,
    redis_url: Option<blake3::Hash>,
    log_format: LogFormat,
    log_level: String,
    envoy_metadata: EnvoyMetadata,
    jwks_refresh_interval: Duration,
    jwks_min_refetch_interval: Duration,
}

impl Fixed {
    fn of(c: &Config) -> Self {
        Self {
            listen: c.listen.clone(),
            store: c.session.store,
            redis_url: c
                .session
                .redis_url
                .as_ref()
                .map(|u| blake3::hash(u.expose().as_bytes())),
            log_format: c.log.format,
            log_level: c.log.level.clone(),
            envoy_metadata: c.log.envoy_metadata,
            jwks_refresh_interval: c.provider().jwks_refresh_interval,
            jwks_min_refetch_interval: c.provider().jwks_min_refetch_interval,
        }
    }

    /// The keys whose change needs a restart.
    fn differences(&self, next: &Self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let (a, b) = (&self.listen, &next.listen);
        for (key, same) in [
            ("listen.grpc", a.grpc == b.grpc),
            ("listen.admin", a.admin == b.admin),
            ("listen.http_authz", a.http_authz == b.http_authz),
            (
                "listen.trusted_proxies",
                a.trusted_proxies == b.trusted_proxies,
            ),
            ("listen.drain_delay", a.drain_delay == b.drain_delay),
            ("listen limits", a.limits == b.limits),
            ("session.store", self.store == next.store),
            ("session.redis.url", self.redis_url == next.redis_url),
            ("log.format", self.log_format == next.log_format),
            ("log.level", self.log_level == next.log_level),
            (
                "log.envoy_metadata",
                self.envoy_metadata == next.envoy_metadata,
            ),
            (
                "provider.jwks_refresh_interval",
                self.jwks_refresh_interval == next.jwks_refresh_interval,
            ),
            (
                "provider.jwks_min_refetch_interval",
                self.jwks_min_refetch_interval == next.jwks_min_refetch_interval,
            ),
        ] {
            if !same {
                out.push(key);
            }
        }
        out
    }
}

impl Watcher {
    /// `config`: what the process started with, read from `path`.
    pub(super) fn new(
        path: PathBuf,
        config: &Config,
        core: Arc<Core>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            path,
            core,
            fixed: Fixed::of(config),
            seen: fingerprint(&config.files()),
            refresh_interval: config.provider().jwks_refresh_interval,
            stop,
        }
    }

    pub(super) async fn run(mut self) {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hup = async {
                match &mut hangup {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hup = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {
                    let files: Vec<PathBuf> = self.seen.iter().map(|(p, _)| p.clone()).collect();
                    if fingerprint(&files) == self.seen {
                        continue;
                    }
                    tracing::info!("a config file changed: reloading");
                }
                _ = hup => tracing::info!("SIGHUP: reloading the config"),
                _ = self.stop.changed() => return,
            }
            self.reload().await;
        }
    }

    async fn reload(&mut self) {
        let env = config::process_env();
        let loaded = Config::load(&self.path, &env);
        // What was read, good or bad, is what the next change is measured against (a bad file is
        // not reloaded every two seconds); a refused config keeps its secret files watched.
        let files = match &loaded {
            Ok(c) => c.files(),
            Err(_) => self.seen.iter().map(|(p, _)| p.clone()).collect(),
        };
        self.seen = fingerprint(&files);
        let problems = match loaded {
            Ok(config) => match self.apply(&config).await {
                Ok(()) => Vec::new(),
                Err(problems) => problems,
            },
            Err(ConfigError::Invalid(problems)) => problems,
            Err(e @ ConfigError::Read { .. }) => vec![e.to_string()],
        };
        let metrics = &self.core.metrics;
        if problems.is_empty() {
            metrics.config_reload(ReloadResult::ok);
            audit::emit(&Event::ConfigReloaded {
                outcome: ReloadOutcome::Applied,
                problems: 0,
            });
            return;
        }
        for problem in &problems {
            tracing::error!(%problem, "config reload refused; the running config stays");
        }
        metrics.config_reload(ReloadResult::error);
        audit::emit(&Event::ConfigReloaded {
            outcome: ReloadOutcome::Refused,
            problems: problems.len(),
        });
    }

    /// Loads the keys of issuers the config adds, then swaps it in.
    async fn apply(&self, config: &Config) -> Result<(), Vec<String>> {
        let (swap, new_caches) = self.core.prepare(config);
        let mut problems = Vec::new();
        for cache in new_caches {
            let loaded =
                tokio::time::timeout(NEW_KEYS_LIMIT, cache.refresh(FetchTrigger::reload)).await;
            match loaded {
                Ok(Ok(())) => {}
                Ok(Err(e)) => problems.push(format!("cannot load the keys of a new issuer: {e}")),
                Err(_) => problems.push(format!(
                    "the keys of a new issuer did not load within {NEW_KEYS_LIMIT:?}: {}",
                    cache.describe()
                )),
            }
            // Kept fresh from now on, used or not: a later config may name it again.
            keep_fresh(cache, self.refresh_interval, self.stop.clone());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        for key in self.fixed.differences(&Fixed::of(config)) {
            tracing::warn!(
                key,
                "config reload: this key changed and needs a restart; it keeps its running value"
            );
        }
        self.core.commit(swap);
        tracing::info!(routes = config.policy.routes().len(), "config reloaded");
        Ok(())
    }
}

/// Refreshes `cache` in the background until `stop`.
pub(super) fn keep_fresh(cache: Arc<JwksCache>, interval: Duration, stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        if !cache.is_loaded()
            && let Err(e) = cache.refresh(FetchTrigger::startup).await
        {
            tracing::warn!(error = %e, "loading signing keys failed; retrying");
        }
        cache.run_refresh(interval, stop).await;
    });
}

fn fingerprint(files: &[PathBuf]) -> Vec<(PathBuf, Option<blake3::Hash>)> {
    files
        .iter()
        .map(|f| (f.clone(), std::fs::read(f).ok().map(|b| blake3::hash(&b))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Config {
        Config::from_yaml(
            &format!("provider: {{issuer: 'https://t.example/', client_id: a}}\n{yaml}"),
            &Default::default(),
            None,
        )
        .unwrap()
    }

    #[test]
    fn what_needs_a_restart_is_named_and_nothing_else() {
        let running = Fixed::of(&load(""));
        assert!(running.differences(&Fixed::of(&load(""))).is_empty());
        let routes_and_headers = load(
            "routes: [{name: api, path_prefix: /, action: api}]\n\
             upstream: {headers: {user: x-user}}\n",
        );
        assert!(
            running
                .differences(&Fixed::of(&routes_and_headers))
                .is_empty(),
            "reloadable"
        );
        let moved = load(
            "listen: {grpc: '127.0.0.1:7001', trusted_proxies: [10.0.0.0/8]}\n\
             session: {store: memory}\nlog: {level: debug}\n",
        );
        assert_eq!(
            running.differences(&Fixed::of(&moved)),
            [
                "listen.grpc",
                "listen.trusted_proxies",
                "session.store",
                "log.level"
            ]
        );
    }
}
