//! Faults of the state database that pass by themselves, and waiting them out.
//!
//! Another process holding a write lock (`BEGIN EXCLUSIVE` from an operator's `sqlite3`, a
//! backup), or the process being out of file descriptors for a moment, must not stop the
//! engine: the operation is retried with capped backoff until it goes through. Meanwhile the
//! caller waits, so the engine reads nothing new and loses nothing. Each episode is logged once
//! when it starts and once when it ends, and counted ([`episodes`]). A fault that does not pass
//! by itself (a corrupt or foreign file, a full disk) is returned at once.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The first wait after a transient fault; each further one doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between two tries: a released lock is noticed within this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Episodes (a first transient fault until the operation went through) since the process
/// started, across every user of the state database.
static EPISODES: AtomicU64 = AtomicU64::new(0);

/// How many times the state database was found busy, locked or unopenable for a while and
/// waited for, since the process started.
pub fn episodes() -> u64 {
    EPISODES.load(Ordering::Relaxed)
}

/// SQLite result codes (primary, the low byte of an extended code) that pass by themselves.
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
/// Cannot open: at run time, out of file descriptors (a new pooled connection).
const SQLITE_CANTOPEN: i64 = 14;

/// Out of file descriptors, process-wide or system-wide.
fn io_is_transient(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(23 | 24))
}

/// Whether `err` passes by itself: busy or locked, no descriptor to open a connection with, no
/// pooled connection free in time.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i64>().ok())
            .is_some_and(|code| {
                matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED | SQLITE_CANTOPEN)
            }),
        sqlx::Error::Io(io) => io_is_transient(io),
        sqlx::Error::PoolTimedOut => true,
        _ => false,
    }
}

/// Closes `conn` instead of returning it to the pool, after it failed with a transient fault:
/// the retry starts from a fresh connection, whatever state the failed statement left behind.
pub fn discard(conn: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>) {
    conn.close_on_drop();
}

/// Runs `op` until it succeeds or fails with an error `transient` does not accept, waiting
/// with capped backoff in between. `what` names the operation in the log.
pub async fn retry<T, E, F, Fut>(
    what: &str,
    transient: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut episode: Option<(Instant, u64)> = None;
    loop {
        match op().await {
            Ok(value) => {
                if let Some((started, tries)) = episode {
                    tracing::info!(
                        tries,
                        waited_ms = started.elapsed().as_millis() as u64,
                        "the state database is usable again: {what} went through"
                    );
                }
                return Ok(value);
            }
            Err(err) if transient(&err) => {
                match &mut episode {
                    None => {
                        EPISODES.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "the state database is not usable for now ({err}); {what} is retried \
                             every {}s at most, and nothing new is read until it goes through",
                            MAX_BACKOFF.as_secs()
                        );
                        episode = Some((Instant::now(), 1));
                    }
                    Some((_, tries)) => *tries += 1,
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_busy_database_is_waited_for_and_counted_once_per_episode() {
        let before = episodes();
        let mut calls = 0;
        let result: Result<u32, String> = retry(
            "a test write",
            |e: &String| e == "busy",
            || {
                calls += 1;
                let outcome = if calls < 4 {
                    Err("busy".to_string())
                } else {
                    Ok(7)
                };
                async move { outcome }
            },
        )
        .await;
        assert_eq!(result, Ok(7));
        assert_eq!(calls, 4);
        // Other tests may count episodes of their own at the same time.
        assert!(episodes() > before);
    }

    #[tokio::test]
    async fn a_fatal_fault_is_returned_at_once() {
        let mut calls = 0;
        let result: Result<(), String> = retry(
            "a test write",
            |e: &String| e == "busy",
            || {
                calls += 1;
                async { Err("corrupt".to_string()) }
            },
        )
        .await;
        assert_eq!(result, Err("corrupt".into()));
        assert_eq!(calls, 1);
    }
}
