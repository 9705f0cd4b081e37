//! The anomaly learner's background task. It sits above the components because it reports to
//! the metrics; the learning itself (sample, training, the models table) is
//! `crate::anomaly::learning`.

use std::sync::Arc;

use sqlx::SqlitePool;

use crate::anomaly::AnomalyHandle;
use crate::anomaly::learning::{Learner, check};

/// The background side of learning: checks progress, trains when due, adopts models trained by
/// any engine sharing the database (or accepted by a person). Runs until `shutdown`.
pub async fn run(
    learner: Learner,
    anomaly: AnomalyHandle,
    pool: SqlitePool,
    audit: Option<Arc<crate::audit::AuditLog>>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    shutdown: crate::shutdown::Shutdown,
    mut in_use: Option<i64>,
) {
    loop {
        if let Err(err) = check(&learner, &anomaly, &pool, audit.as_deref(), &mut in_use).await {
            tracing::error!("anomaly learning: {err}");
            learner.set_last_error(err);
        }
        if let Some(metrics) = &metrics {
            metrics.set_learning(&learner.status());
        }
        tokio::select! {
            () = tokio::time::sleep(learner.settings().check_every) => {}
            () = shutdown.wait() => return,
        }
    }
}
