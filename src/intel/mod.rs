//! Threat intelligence: indicators of compromise from feeds, kept in SQLite and matched in
//! memory against every event before the rules run.
//!
//! - [`indicator`]: the indicator model and the one normalization indicators and event values
//!   share.
//! - [`formats`]: importers for STIX, MISP, abuse.ch, OTX, AbuseIPDB and plain lists.
//! - [`store`]: the durable table, written in one transaction per import.
//! - [`warninglist`]: MISP warninglists of benign infrastructure.
//! - [`matcher`]: the in-memory snapshot and the handle that swaps it.

mod config;
pub mod formats;
pub mod indicator;
pub mod matcher;
pub mod pull;
pub mod store;
pub mod warninglist;
pub mod yara;

pub use config::{
    EsFeedConfig, FeedConfig, FeedFetchConfig, FeedType, IntelConfig, IntelMaxPrefix,
};
pub use indicator::{Indicator, IndicatorKind};
pub use matcher::{IntelHandle, IntelHit, Matcher};
pub use store::IntelStore;
pub use warninglist::Warninglists;

use std::time::Duration;

/// Builds a matcher from the store's live indicators within `max_prefix`. A stored range wider
/// than the limit (imported before the limit existed, or before it was lowered) stays in the
/// store but does not match: the limit holds for what is matched, not only for what is imported.
pub async fn load_matcher(
    store: &IntelStore,
    warninglists: &Warninglists,
    max_prefix: crate::intel::IntelMaxPrefix,
) -> Result<Matcher, crate::state::StateError> {
    let now = jiff::Timestamp::now().as_millisecond();
    let mut live = store.live(now).await?;
    let before = live.len();
    live.retain(|i| indicator::check_breadth(i.kind, &i.value, max_prefix).is_ok());
    if live.len() < before {
        tracing::warn!(
            ignored = before - live.len(),
            "stored indicator ranges wider than `intel.max_prefix` are not matched"
        );
    }
    Ok(Matcher::build(live, warninglists, now))
}

/// The state database could not give up its indicators.
#[derive(Debug, thiserror::Error)]
#[error("threat intelligence in {}: {source}", path.display())]
pub struct LoadError {
    pub path: std::path::PathBuf,
    #[source]
    pub source: crate::state::StateError,
}

/// The intel a command runs with: the live indicators in the state database at `path` (when it
/// exists; nothing is created) marked against `warninglists`. Loaded content calls it with its
/// own warninglists.
pub async fn from_state_file(
    path: &std::path::Path,
    warninglists: &Warninglists,
    max_prefix: IntelMaxPrefix,
) -> Result<IntelHandle, LoadError> {
    if !path.exists() {
        return Ok(IntelHandle::default());
    }
    let failed = |source| LoadError {
        path: path.to_path_buf(),
        source,
    };
    let state = crate::state::StateStore::open(path).await.map_err(failed)?;
    let matcher = load_matcher(&IntelStore::new(&state), warninglists, max_prefix)
        .await
        .map_err(failed)?;
    if !matcher.is_empty() {
        tracing::info!(indicators = matcher.len(), "loaded threat intelligence");
    }
    state.close().await;
    Ok(IntelHandle::new(matcher))
}

/// As [`from_state_file`], opening the state database read-only and running no migration, for
/// commands that must leave it as it is (`palisade explain`). When its write-ahead log is
/// absent or empty (everything is in the file itself: closed cleanly, or checkpointed), the file
/// is read as immutable, so SQLite opens no other file and takes no lock; when the log holds
/// pages an engine wrote, the file is read through it, as any reader does (SQLite then marks
/// its read in the shared-memory index, never in the database or the log).
pub async fn from_state_file_read_only(
    path: &std::path::Path,
    warninglists: &Warninglists,
    max_prefix: IntelMaxPrefix,
) -> Result<IntelHandle, LoadError> {
    if !path.is_file() {
        return Ok(IntelHandle::default());
    }
    let failed = |source| LoadError {
        path: path.to_path_buf(),
        source,
    };
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(std::fs::metadata(&wal).map_or(true, |m| m.len() == 0))
        .create_if_missing(false);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|source| {
            failed(crate::state::StateError::Open {
                path: path.display().to_string(),
                source,
            })
        })?;
    let result = load_matcher(&IntelStore::over(pool.clone()), warninglists, max_prefix).await;
    pool.close().await;
    Ok(IntelHandle::new(result.map_err(failed)?))
}

/// How soon a feed whose last pull failed is tried again (sooner if it is pulled more often):
/// long enough that a broken feed is not hammered, nor the others kept waiting behind it.
const FAILED_PULL_RETRY_MS: i64 = 15 * 60 * 1000;

/// When a feed is next due: `every` after its last success, or after a failed attempt the
/// shorter of `every` and [`FAILED_PULL_RETRY_MS`] after that attempt.
fn next_pull_due(state: &store::FeedState, every_ms: i64, now: i64) -> i64 {
    match (state.last_error.is_some(), state.last_attempt_ms) {
        (true, Some(attempt)) => attempt + every_ms.min(FAILED_PULL_RETRY_MS),
        _ => state.last_success_ms.map_or(now, |last| last + every_ms),
    }
}

/// Pulls every configured feed when it is due, for as long as `shutdown` allows, and swaps a
/// rebuilt matcher into `handle` after each pull that changed something.
pub async fn pull_on_schedule(
    config: crate::intel::IntelConfig,
    store: IntelStore,
    warninglists: Warninglists,
    handle: IntelHandle,
    shutdown: crate::shutdown::Shutdown,
) {
    if config.feeds.is_empty() {
        return;
    }
    let max_prefix = config.max_prefix;
    let puller = match pull::Puller::new(&config) {
        Ok(puller) => puller,
        Err(err) => {
            tracing::error!("threat-intelligence feeds are not pulled: {err}");
            return;
        }
    };
    loop {
        let now = jiff::Timestamp::now().as_millisecond();
        let mut next_due = i64::MAX;
        let mut changed = false;
        for feed in &config.feeds {
            let every_ms = feed.every.as_millis_i64();
            let state = store.feed_state(&feed.name).await.ok().unwrap_or_default();
            let due = next_pull_due(&state, every_ms, now);
            if due <= now {
                if let Ok(report) = puller.pull_with_retry(feed, &store, 3).await {
                    tracing::info!(
                        feed = feed.name,
                        stored = report.stored,
                        expired = report.expired,
                        not_modified = report.not_modified,
                        "pulled"
                    );
                    changed |= report.stored > 0 || report.expired > 0;
                    next_due = next_due.min(now + every_ms);
                } else {
                    next_due = next_due.min(now + every_ms.min(FAILED_PULL_RETRY_MS));
                }
            } else {
                next_due = next_due.min(due);
            }
            if shutdown.is_triggered() {
                return;
            }
        }
        if changed {
            match load_matcher(&store, &warninglists, max_prefix).await {
                Ok(matcher) => {
                    tracing::info!(indicators = matcher.len(), "threat intelligence reloaded");
                    handle.swap(matcher);
                }
                Err(err) => tracing::error!("cannot reload threat intelligence: {err}"),
            }
        }
        let wait = Duration::from_millis(
            u64::try_from(next_due - jiff::Timestamp::now().as_millisecond())
                .unwrap_or(0)
                .max(1000),
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed pull used to leave the feed due at once (its last success was still old), so a
    /// feed refused for a limit was pulled again on every pass of the schedule.
    #[test]
    fn a_failed_feed_is_not_pulled_again_at_once() {
        let hour = 3_600_000;
        let now = 10 * hour;
        let failed = store::FeedState {
            last_success_ms: Some(now - 2 * hour),
            last_attempt_ms: Some(now - 1000),
            last_error: Some("limit".into()),
            ..store::FeedState::default()
        };
        assert_eq!(
            next_pull_due(&failed, hour, now),
            now - 1000 + FAILED_PULL_RETRY_MS
        );
        // A feed pulled more often than that is retried at its own pace.
        assert_eq!(next_pull_due(&failed, 60_000, now), now - 1000 + 60_000);
        let fine = store::FeedState {
            last_success_ms: Some(now - 1000),
            last_attempt_ms: Some(now - 1000),
            ..store::FeedState::default()
        };
        assert_eq!(next_pull_due(&fine, hour, now), now - 1000 + hour);
        assert_eq!(next_pull_due(&store::FeedState::default(), hour, now), now);
    }
}
