//! The engine's HTTP endpoints, on a loopback address only: `/healthz` (the process is alive,
//! with what it knows about Redis), `/readyz` (it reads its source), `/metrics` (Prometheus).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::Metrics;
use crate::bus::Health;

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

async fn healthz(State(shared): State<Shared>) -> impl IntoResponse {
    let body = serde_json::json!({
        "status": "ok",
        "redis_up": shared.health.redis_up(),
        "redis_failures": shared.health.redis_failures(),
        "last_error": shared.health.last_error(),
        "events_processed": shared.metrics.events_processed(),
        "last_reload_error": shared.metrics.reload_error(),
        "anomaly": shared.metrics.learning().map(|status| serde_json::json!({
            "state": status.state,
            "progress": status.line(),
            "events": status.events,
            "min_events": status.min_events,
            "days": status.days,
            "min_days": status.min_days,
            "sample": status.sample,
            "model": status.model_id,
            "trained_at": status.trained_at,
            "held": status.held,
            "last_error": status.last_error,
        })),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

async fn readyz(State(shared): State<Shared>) -> impl IntoResponse {
    if shared.metrics.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not reading its source\n")
    }
}

async fn prometheus(State(shared): State<Shared>) -> impl IntoResponse {
    shared
        .metrics
        .set_redis_failures(shared.health.redis_failures());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
}

/// Binds `listen` (a loopback address; port 0 picks one) and serves until `shutdown`. Returns
/// the bound address.
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: crate::engine::Shutdown,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .with_state(Shared { metrics, health });
    tokio::spawn(async move {
        let stopped = async move { shutdown.wait().await };
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!("the health and metrics endpoint stopped: {err}");
        }
    });
    Ok(bound)
}
