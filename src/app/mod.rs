//! The running service: builds the core from the config, binds both ports, keeps the keys fresh,
//! and drains on SIGTERM (health turns NOT_SERVING, in-flight checks finish).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_health::ServingStatus;

use crate::config::Config;
use crate::grpc::AuthorizationService;
use crate::idp::{Ask, IdpClient, ProviderMetadata};
use crate::listener::GuardedListener;
use crate::metrics::{FetchTrigger, Metrics};
use crate::readiness::{Loaded, Readiness};
use crate::session::Revocations;
use crate::session::revoked::SYNC_EVERY;

mod core;
mod reload;

pub use core::{Core, backchannel_logout_uri, config_warnings};

/// How long in-flight work may take after SIGTERM before the process exits anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Checks Envoy may cancel at once, before portcullis has picked them up, without portcullis
/// closing the connection (h2's guard against the HTTP/2 rapid-reset attack closes it after 20).
/// Envoy cancels every check in flight for clients that went away or whose ext_authz timeout
/// fired, and all of a worker's checks share one connection: closing it would fail them all.
const MAX_PENDING_ACCEPT_RESETS: usize = 1024;

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
    let core = Arc::new(Core::build(&config, metrics.clone()).await?);
    tracing::info!(
        grpc = %grpc_listener.local_addr()?,
        admin = %admin_listener.local_addr()?,
        http_authz = ?http_authz.as_ref().map(TcpListener::local_addr).transpose()?,
        issuer = %config.provider().issuer,
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
        reload::keep_fresh(
            cache.clone(),
            config.provider().jwks_refresh_interval,
            stop_rx.clone(),
        );
    }
    // Revocations other replicas made (back-channel logout), read twice a second.
    if core.revocations().is_shared() {
        tokio::spawn(sync_revocations(
            core.revocations().clone(),
            stop_rx.clone(),
        ));
    }
    // SIGHUP or a changed file reloads the config it was read from.
    if let Some(path) = &config.source {
        let watcher = reload::Watcher::new(path.clone(), &config, core.clone(), stop_rx.clone());
        tokio::spawn(watcher.run());
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

async fn sync_revocations(revocations: Arc<Revocations>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SYNC_EVERY) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = revocations.sync(crate::token::now_secs()).await {
            tracing::debug!(error = %e, "reading revoked sessions from Redis failed; retrying");
        }
    }
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
    if let Some(uri) = backchannel_logout_uri(config) {
        let at = if config.providers.len() > 1 {
            "every provider"
        } else {
            "the provider"
        };
        println!("register at {at}: backchannel_logout_uri {uri}");
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
    ok &= check_opaque(config, &core.metrics).await;
    ok
}

/// `check-config`: the endpoint each `bearer[].opaque` asks, as its provider publishes it (Auth0
/// has no introspection endpoint: a config that says `introspect` would answer 503 at runtime).
async fn check_opaque(config: &Config, metrics: &Arc<Metrics>) -> bool {
    let client = IdpClient::new(metrics.clone());
    let mut ok = true;
    for (i, b) in config.bearer.iter().enumerate() {
        let Some((ask, _)) = &b.opaque else {
            continue;
        };
        let kind = ask.kind();
        let Ok(metadata) = ProviderMetadata::discover(&client, &b.issuer).await else {
            continue; // its key cache said why, above
        };
        match ask.endpoint(&metadata) {
            Ok(url) => println!("ok: bearer[{i}] opaque tokens: {kind} at {url}"),
            Err(_) => {
                let hint = match ask {
                    Ask::Introspect(_) => {
                        " (Auth0 has none: opaque: userinfo asks its userinfo endpoint)"
                    }
                    Ask::Userinfo => "",
                };
                eprintln!(
                    "error: bearer[{i}].opaque: {kind}, but {}'s discovery document names no {kind}_endpoint{hint}",
                    b.issuer
                );
                ok = false;
            }
        }
    }
    ok
}
