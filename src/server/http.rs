//! The engine's HTTP endpoints.

use std::sync::Arc;

use crate::bus::Health;
use crate::shutdown::Shutdown;

/// Starts `/healthz`, `/readyz` and `/metrics`. A port already taken (another engine on this
/// machine) is logged and the engine runs without them: they report on it, they are not it.
pub(super) async fn serve(
    http: &crate::config::HttpConfig,
    metrics: &Arc<crate::metrics::Metrics>,
    health: &Arc<Health>,
    shutdown: &Shutdown,
) {
    let listen = &http.listen;
    let Ok(address) = listen.parse() else {
        tracing::error!("`http.listen` is `{listen}`, not an address; no HTTP endpoints");
        return;
    };
    let limits = crate::metrics::http::Limits::from_config(http);
    match crate::metrics::http::serve(
        address,
        metrics.clone(),
        health.clone(),
        shutdown.clone(),
        limits,
    )
    .await
    {
        Ok(bound) => tracing::info!("serving /healthz, /readyz and /metrics on http://{bound}"),
        Err(err) => tracing::warn!(
            "cannot serve the HTTP endpoints on {address}: {err}; running without them"
        ),
    }
}

/// Starts the operator console on its own listener, with its own connections to the state
/// database (as the command line has). Unlike the endpoints above, a console that cannot
/// listen stops the start: people expect to act through it.
pub(super) async fn serve_console(
    plan: crate::console::Plan,
    state_path: &std::path::Path,
    audit: &Arc<crate::audit::AuditLog>,
    shutdown: &Shutdown,
) -> Result<(), super::ServerError> {
    let listen = plan.listen;
    let state = crate::state::StateStore::open(state_path).await?;
    let bound = crate::console::serve(plan, state, audit.clone(), shutdown.clone())
        .await
        .map_err(|err| {
            super::ServerError::Setup(format!("cannot serve the console on {listen}: {err}"))
        })?;
    tracing::info!("serving the operator console on http://{bound}");
    Ok(())
}
