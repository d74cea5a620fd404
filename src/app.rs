//! The running service: builds the core from the config, binds both ports, keeps the keys fresh,
//! and drains on SIGTERM (health turns NOT_SERVING, in-flight checks finish).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_health::ServingStatus;

use crate::authz::Authorizer;
use crate::authz::login::{LoginFlow, LoginSettings};
use crate::authz::pass::PassIssuer;
use crate::config::Config;
use crate::grpc::AuthorizationService;
use crate::idp::{IdpClient, TokenEndpoint, same_issuer};
use crate::listener::GuardedListener;
use crate::metrics::{FetchTrigger, Metrics};
use crate::readiness::{Loaded, Readiness};
use crate::session::store::MemoryStore;
use crate::session::{Backend, Codec, Cookies, RedisStore, SessionStore, StoreKind};
use crate::token::pass::PassKeys;
use crate::token::{IdentityClaims, Issuer, JwksCache, TimeRules, TokenCache, Verifier};

/// Validated tokens kept at most; ~1 KiB each with their claims.
const TOKEN_CACHE_ENTRIES: u64 = 10_000;
/// A cached token is re-verified at least this often, so a withdrawn key stops working.
const TOKEN_CACHE_MAX_TTL: Duration = Duration::from_secs(300);
/// Sessions the memory store keeps at most.
const MEMORY_SESSIONS: u64 = 100_000;
/// Every Redis command is bounded by this; a slower Redis is an unavailable one.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// How long in-flight work may take after SIGTERM before the process exits anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Checks Envoy may cancel at once, before portcullis has picked them up, without portcullis
/// closing the connection (h2's guard against the HTTP/2 rapid-reset attack closes it after 20).
/// Envoy cancels every check in flight for clients that went away or whose ext_authz timeout
/// fired, and all of a worker's checks share one connection: closing it would fail them all.
const MAX_PENDING_ACCEPT_RESETS: usize = 1024;

/// The core built from a config, before any port is bound.
pub struct Core {
    pub authorizer: Arc<Authorizer>,
    /// Every issuer's key cache, the provider's first.
    pub caches: Vec<Arc<JwksCache>>,
    pub metrics: Arc<Metrics>,
    /// The pass's JWKS (`pass.enabled`), published on the admin port.
    pub pass_jwks: Option<Arc<str>>,
}

impl Core {
    /// Builds everything; connects to Redis when it is the session store.
    pub async fn build(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let client = IdpClient::new(metrics.clone());
        let min_refetch = config.provider.jwks_min_refetch_interval;
        let mut caches: Vec<(String, Arc<JwksCache>)> = vec![(
            config.provider.issuer.clone(),
            Arc::new(JwksCache::discover(
                &config.provider.issuer,
                client.clone(),
                metrics.clone(),
                min_refetch,
            )),
        )];
        let mut issuers = Vec::new();
        for b in &config.bearer {
            let existing = caches
                .iter()
                .find(|(i, _)| same_issuer(i, &b.issuer))
                .map(|(_, c)| c.clone());
            let cache = match (&b.jwks_uri, existing) {
                (None, Some(c)) => c,
                (jwks_uri, _) => {
                    let c = Arc::new(match jwks_uri {
                        Some(uri) => JwksCache::fixed(
                            uri.clone(),
                            client.clone(),
                            metrics.clone(),
                            min_refetch,
                        ),
                        None => JwksCache::discover(
                            &b.issuer,
                            client.clone(),
                            metrics.clone(),
                            min_refetch,
                        ),
                    });
                    caches.push((b.issuer.clone(), c.clone()));
                    c
                }
            };
            issuers.push(Issuer::new(&b.issuer, &b.audiences, cache));
        }
        let verifier = Arc::new(Verifier::new(
            issuers,
            IdentityClaims {
                user_id_claim: config.provider.user_id_claim.clone(),
                groups_claim: config.provider.groups_claim.clone(),
            },
            time_rules(config),
            TokenCache::new(TOKEN_CACHE_ENTRIES, TOKEN_CACHE_MAX_TTL),
            metrics.clone(),
        ));
        let mut authorizer = Authorizer::new(
            config.policy.clone(),
            verifier,
            config.identity_headers.clone(),
        );
        let provider_keys = caches[0].1.clone();
        for warning in config_warnings(config) {
            tracing::warn!("{warning}");
        }
        let mut pass_jwks = None;
        if !config.session.keys.is_empty() {
            let mut login = login_flow(
                config,
                provider_keys,
                client.clone(),
                metrics.clone(),
                session_store(config, &metrics).await?,
            );
            if let Some(settings) = &config.pass {
                let keys = PassKeys::derive(&config.session.keys);
                pass_jwks = Some(Arc::from(keys.jwks()));
                login = login.with_pass(PassIssuer::new(settings.clone(), keys));
            }
            authorizer = authorizer.with_login(login, config.upstream_authorization);
        }
        let authorizer = Arc::new(authorizer);
        Ok(Self {
            authorizer,
            caches: caches.into_iter().map(|(_, c)| c).collect(),
            metrics,
            pass_jwks,
        })
    }
}

fn time_rules(config: &Config) -> TimeRules {
    TimeRules {
        leeway: config.provider.leeway.as_secs(),
        max_lifetime: config.provider.max_token_lifetime.as_secs(),
    }
}

/// The configured sessions. Redis, when configured, is connected now so that a wrong URL fails at
/// startup; it holds the sessions of the `redis` store, and with any store it is what replicas
/// share (one code exchange per login, one refresh per access token).
async fn session_store(config: &Config, metrics: &Arc<Metrics>) -> anyhow::Result<SessionStore> {
    let redis = match &config.session.redis_url {
        Some(url) => Some(
            RedisStore::connect(url.expose(), REDIS_TIMEOUT, metrics.clone())
                .await
                .map_err(|e| anyhow::anyhow!("session.redis.url: cannot connect: {e}"))?,
        ),
        None => None,
    };
    let backend = match (config.session.store, &redis) {
        (StoreKind::Cookie, _) => Backend::Cookie,
        (StoreKind::Memory, _) => {
            Backend::Memory(MemoryStore::new(MEMORY_SESSIONS, metrics.sessions_gauge()))
        }
        (StoreKind::Redis, Some(redis)) => Backend::Redis(redis.clone()),
        (StoreKind::Redis, None) => anyhow::bail!("session.redis.url: missing"),
    };
    let sessions = SessionStore::new(
        Codec::new(&config.session.keys),
        Cookies::new(&config.session.cookie_name, config.session.secure),
        config.session.absolute_timeout,
        config.session.idle_timeout,
        backend,
    );
    Ok(match redis {
        Some(redis) => sessions.shared_with(redis),
        None => sessions,
    })
}

fn login_flow(
    config: &Config,
    keys: Arc<JwksCache>,
    client: IdpClient,
    metrics: Arc<Metrics>,
    sessions: SessionStore,
) -> LoginFlow {
    let p = &config.provider;
    let l = &config.login;
    let token_endpoint = TokenEndpoint::new(
        client,
        p.client_id.clone(),
        p.client_secret.clone(),
        p.token_endpoint_auth_method,
    );
    LoginFlow::new(
        LoginSettings {
            scopes: p.scopes.clone(),
            audience: p.audience.clone(),
            extra_auth_params: p
                .extra_auth_params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            redirect_uri: l.redirect_uri.clone(),
            callback_path: l.callback_path.clone(),
            logout_path: l.logout_path.clone(),
            post_logout_redirect: l.post_logout_redirect.clone(),
            allowed_redirect_hosts: l.allowed_redirect_hosts.clone(),
            user_id_claim: p.user_id_claim.clone(),
            groups_claim: p.groups_claim.clone(),
            time_rules: time_rules(config),
            refresh_before: config.session.refresh_before,
        },
        keys,
        token_endpoint,
        sessions,
        metrics,
    )
}

/// The bound ports: `listen.grpc`, `listen.admin`, and `listen.http_authz` when set.
pub struct Listeners {
    pub grpc: TcpListener,
    pub admin: TcpListener,
    pub http_authz: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(listen: &crate::config::Listen) -> anyhow::Result<Self> {
        let bind = |field: &'static str, addr| async move {
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen.{field}: cannot bind {addr}"))
        };
        Ok(Self {
            grpc: bind("grpc", listen.grpc).await?,
            admin: bind("admin", listen.admin).await?,
            http_authz: match listen.http_authz {
                Some(addr) => Some(bind("http_authz", addr).await?),
                None => None,
            },
        })
    }
}

/// Binds the configured ports and runs until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config.listen).await?;
    run(config, listeners, shutdown_signal()).await
}

/// Runs the service on bound listeners until `shutdown` completes, then drains.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let Listeners {
        grpc: grpc_listener,
        admin: admin_listener,
        http_authz,
    } = listeners;
    let metrics = Arc::new(Metrics::new());
    let core = Core::build(&config, metrics.clone()).await?;
    tracing::info!(
        grpc = %grpc_listener.local_addr()?,
        admin = %admin_listener.local_addr()?,
        http_authz = ?http_authz.as_ref().map(TcpListener::local_addr).transpose()?,
        issuer = %config.provider.issuer,
        routes = config.policy.routes().len(),
        "portcullis listening"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let readiness = Readiness::new(
        core.caches
            .iter()
            .map(|c| c.clone() as Arc<dyn Loaded>)
            .collect(),
    );
    for cache in &core.caches {
        let cache = cache.clone();
        let stop = stop_rx.clone();
        let interval = config.provider.jwks_refresh_interval;
        tokio::spawn(async move {
            if let Err(e) = cache.refresh(FetchTrigger::startup).await {
                tracing::warn!(error = %e, "loading signing keys failed; retrying");
            }
            cache.run_refresh(interval, stop).await;
        });
    }

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    tokio::spawn(track_readiness(
        readiness.clone(),
        health.clone(),
        metrics.clone(),
        stop_rx.clone(),
    ));

    // Both ports hold their connections to listen's limits (listener.rs). TCP_NODELAY is set on
    // every accepted connection there: without it an allow answer (header, data and trailer
    // frames) waited for the peer's delayed ACK, 40 ms per check (found by benches/load.rs).
    let limits = config.listen.limits;
    let grpc_incoming = GuardedListener::new(grpc_listener, limits).into_stream();
    let grpc = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESETS))
        .add_service(health_service)
        .add_service(
            AuthorizationService::new(
                core.authorizer.clone(),
                metrics.clone(),
                config.log.envoy_metadata,
            )
            .into_server(),
        )
        .serve_with_incoming_shutdown(grpc_incoming, stopped(stop_rx.clone()));
    let admin = axum::serve(
        GuardedListener::new(admin_listener, limits),
        crate::http::admin::router(metrics.clone(), readiness.clone(), core.pass_jwks.clone()),
    )
    .with_graceful_shutdown(stopped(stop_rx.clone()));
    // The forward-auth adapter drains with the admin port: both are plain HTTP/1.
    let forward = http_authz.map(|listener| {
        axum::serve(
            GuardedListener::new(listener, limits),
            crate::http::forward::router(
                core.authorizer.clone(),
                metrics.clone(),
                config.listen.trusted_proxies.clone(),
            )
            .into_make_service_with_connect_info::<crate::http::forward::Peer>(),
        )
        .with_graceful_shutdown(stopped(stop_rx.clone()))
    });
    let grpc = tokio::spawn(grpc);
    let admin = tokio::spawn(async move {
        match forward {
            Some(forward) => tokio::try_join!(admin, forward).map(|_| ()),
            None => admin.await,
        }
    });

    shutdown.await;
    tracing::info!(
        drain_delay = ?config.listen.drain_delay,
        "shutting down: health NOT_SERVING, then finishing in-flight checks"
    );
    readiness.start_draining();
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    metrics.set_ready(false);
    // Keep answering while load balancers notice NOT_SERVING, then stop accepting.
    tokio::time::sleep(config.listen.drain_delay).await;
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_LIMIT, async { (grpc.await, admin.await) }).await;
    match drained {
        Ok((Ok(Ok(())), Ok(Ok(())))) => tracing::info!("stopped"),
        Ok((g, a)) => tracing::warn!(
            grpc = ?g.map(|r| r.map_err(|e| e.to_string())),
            admin = ?a.map(|r| r.map_err(|e| e.to_string())),
            "stopped with errors"
        ),
        Err(_) => tracing::warn!("in-flight work did not finish within {DRAIN_LIMIT:?}; exiting"),
    }
    Ok(())
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Mirrors readiness into gRPC health (what Envoy's health checks see) and the `ready` gauge.
async fn track_readiness(
    readiness: Readiness,
    health: tonic_health::server::HealthReporter,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut was_ready = false;
    loop {
        let ready = readiness.is_ready();
        if ready != was_ready {
            let status = if ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health.set_service_status("", status).await;
            metrics.set_ready(ready);
            if ready {
                tracing::info!("ready: discovery and signing keys loaded");
            }
            was_ready = ready;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// What is allowed but worth knowing, said by `check-config` (and logged by `serve`).
pub fn config_warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if config.session.keys.is_empty() {
        out.push(
            "no session.secret: browser login is off, login routes answer 401 like api routes"
                .to_owned(),
        );
    } else if config.session.store == StoreKind::Cookie {
        out.push(format!(
            "session.store cookie keeps each session in the browser, at most {} KB sealed: a user \
             whose tokens carry hundreds of groups ({}) cannot sign in there and is told so; \
             session.store redis or memory keeps any size",
            Cookies::MAX_VALUE / 1000,
            config.provider.groups_claim
        ));
    }
    out
}

/// `check-config`: every issuer's discovery document and keys, one line each. True when all load.
pub async fn check_providers(config: &Config) -> bool {
    let core = match Core::build(config, Arc::new(Metrics::new())).await {
        Ok(core) => core,
        Err(e) => {
            eprintln!("error: {e:#}");
            return false;
        }
    };
    for warning in config_warnings(config) {
        println!("warning: {warning}");
    }
    let mut ok = true;
    for cache in &core.caches {
        match cache.refresh(FetchTrigger::startup).await {
            Ok(()) => println!("ok: {}", cache.describe()),
            Err(e) => {
                eprintln!("error: {e}");
                ok = false;
            }
        }
    }
    ok
}
