//! The deciding stages after the rules, restored from the state database.

use crate::config::SourceConfig;
use crate::content::Content;

use super::ServerError;

/// The anomaly stage (a named model file, which the reloader watches, or the learner restored
/// from the state database with the model it trained), the tracker and the correlation windows
/// (restored from the state database).
pub(super) async fn restore(
    content: &Content,
    pool: &sqlx::SqlitePool,
    source: &SourceConfig,
) -> Result<crate::pipeline::Stages, ServerError> {
    let mut stages = crate::pipeline::Stages::from_content(content)?;
    let config = &content.config;
    match &config.anomaly.model {
        Some(path) if config.anomaly.enabled => {
            let path = content.resolve(path);
            match stages.anomaly.current() {
                Some(model) => tracing::info!(
                    model = %path.display(),
                    trained_at = model.trained_at,
                    threshold = config.anomaly.threshold,
                    "anomaly model loaded"
                ),
                None => tracing::info!(
                    model = %path.display(),
                    "no anomaly model yet; events are scored once `palisade train` writes it"
                ),
            }
        }
        _ if config.anomaly.learns() => {
            let settings = crate::anomaly::learning::Settings::from_config(
                &config.anomaly,
                learning_name(source),
                content.resolve(&config.anomaly.learning.model_file),
            );
            let (learner, restored, _) =
                crate::anomaly::learning::prepare(pool, settings, &stages.anomaly)
                    .await
                    .map_err(|e| {
                        ServerError::Setup(format!(
                            "cannot restore the anomaly stage's learning: {e}"
                        ))
                    })?;
            let status = learner.status();
            tracing::info!(sample_rows = restored, "anomaly stage {}", status.line());
            stages.learner = Some(learner);
        }
        _ => {}
    }
    if let Some(tracker) = &stages.tracker {
        let retention = i64::from(config.tracker.retention_days) * 86_400_000;
        let stored = crate::tracker::load_records(pool, retention).await?;
        tracker.restore(&stored);
        tracing::info!(
            records = stored.records.len(),
            day_counts = stored.days.len(),
            "behaviour tracker restored"
        );
    }
    if let Some(correlation) = &stages.correlation {
        let stored = crate::sigma::correlation::store::load_windows(pool).await?;
        let restored = correlation.restore(stored);
        tracing::info!(windows = restored, "correlation windows restored");
    }
    Ok(stages)
}

/// Whose sample rows these are in a state database engines may share: the stream consumer's
/// configured name, else the host's name (stable across restarts, unlike the default consumer
/// name, which carries the process id).
fn learning_name(source: &SourceConfig) -> String {
    if let SourceConfig::RedisStream(stream) = source
        && let Some(consumer) = &stream.consumer
    {
        return consumer.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "palisade".into())
}
