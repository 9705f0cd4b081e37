//! Moving the write-ahead log into the database file, beside the writers instead of inside
//! them.
//!
//! SQLite's default checkpoints the log from within the commit that makes it pass 1000 pages:
//! that commit copies the log into the database and syncs both files, so once in a few hundred
//! batches a commit takes milliseconds longer, and the batch behind it waits. The store's
//! connections have automatic checkpoints off; this task, on a connection of its own, runs a
//! passive checkpoint (which never blocks a reader or a writer) four times a second, copying
//! what was committed since the last one (nothing to copy costs no sync), so the copying and
//! syncing happen beside the commit path.

use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqlitePool};

/// How often the log is looked at.
const EVERY: Duration = Duration::from_millis(250);

/// Starts checkpointing the database from a connection of its own, for as long as the store
/// that holds `alive` (every clone of it) exists and its `pool` is open; then it checkpoints a
/// last time. It holds neither, so a store dropped without being closed still goes away.
/// Without a connection it logs why and does nothing: SQLite then checkpoints when the last
/// connection closes.
pub(super) async fn start(
    options: &SqliteConnectOptions,
    pool: &SqlitePool,
    alive: std::sync::Weak<()>,
) {
    let mut conn = match options.connect().await {
        Ok(conn) => conn,
        Err(err) => {
            tracing::warn!(
                "cannot open a connection for checkpoints: the write-ahead log grows until the store is closed: {err}"
            );
            return;
        }
    };
    let closed = pool.close_event();
    tokio::spawn(async move {
        let mut closed = std::pin::pin!(closed);
        loop {
            tokio::select! {
                () = tokio::time::sleep(EVERY) => {}
                () = &mut closed => break,
            }
            if alive.strong_count() == 0 {
                break;
            }
            // (busy, pages in the log, pages checkpointed); a passive checkpoint copies what
            // no reader still needs and returns at once when there is nothing to do.
            let done: Result<(i64, i64, i64), sqlx::Error> =
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&mut conn)
                    .await;
            if let Err(err) = done {
                tracing::debug!("checkpoint: {err}");
            }
        }
        let _ = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
    });
}
