//! The admin port: `/metrics` (Prometheus text), `/healthz` (process alive), `/readyz` (keys loaded,
//! not shutting down).

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::{self, Metrics};
use crate::readiness::Readiness;

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    readiness: Readiness,
    pass_jwks: Arc<ArcSwapOption<String>>,
}

/// `pass_jwks`: the keys that sign the fast path's pass (`pass.enabled`, for Envoy's `jwt_authn`)
/// and upstream assertions (`upstream.assertion`, for the upstream); a reload that rotates
/// `session.secret` changes them.
pub fn router(
    metrics: Arc<Metrics>,
    readiness: Readiness,
    pass_jwks: Arc<ArcSwapOption<String>>,
) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(AdminState {
            metrics,
            readiness,
            pass_jwks,
        })
}

async fn jwks(State(s): State<AdminState>) -> axum::response::Response {
    match s.pass_jwks.load_full() {
        Some(jwks) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "max-age=300"),
            ],
            jwks.to_string(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no pass keys: pass.enabled is false\n",
        )
            .into_response(),
    }
}

async fn scrape(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        s.metrics.encode(),
    )
}

async fn ready(State(s): State<AdminState>) -> impl IntoResponse {
    if s.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
