//! The tracker's records in the state database. Records are written by the state writer with
//! each batch (multi-row inserts in the batch's transaction); this module reads them back.

use sqlx::{Row, SqlitePool};

use crate::state::StateError;

pub use crate::state::rows::BehaviourRecord;

pub(crate) fn kind_of(text: &str) -> Option<&'static str> {
    ["spawn", "connect", "resolve", "login"]
        .into_iter()
        .find(|k| *k == text)
}

/// Deletes records older than the retention (counted back from the newest record not dated
/// beyond the wall clock), then returns the rest in time order with the day counts and the
/// patterns already reported.
pub async fn load_records(pool: &SqlitePool, retention_ms: i64) -> Result<Stored, StateError> {
    // A record dated beyond the clock (stored before the intake clamped such times) must not
    // decide what "older than the retention" means for every other record.
    let limit = crate::event::now_ms().saturating_add(super::MAX_AHEAD_MS);
    let newest: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(ts) FROM (SELECT MAX(ts) AS ts FROM behaviour WHERE ts <= ?1 UNION ALL SELECT (MAX(day) + 1) * 86400000 - 1 FROM behaviour_days WHERE (day + 1) * 86400000 - 1 <= ?1)",
    )
    .bind(limit)
    .fetch_one(pool)
    .await?;
    let Some(newest) = newest else {
        return Ok(Stored::default());
    };
    let horizon = newest - retention_ms;
    sqlx::query("DELETE FROM behaviour WHERE ts < ?")
        .bind(horizon)
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM behaviour_days WHERE day < ?")
        .bind(horizon.div_euclid(86_400_000))
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM tracker_reported WHERE at < ?")
        .bind(horizon)
        .execute(pool)
        .await?;
    let records = sqlx::query("SELECT ts, entity, kind, subject FROM behaviour ORDER BY ts")
        .fetch_all(pool)
        .await?
        .into_iter()
        .filter_map(|row| {
            Some(BehaviourRecord {
                ts: row.get(0),
                entity: row.get(1),
                kind: kind_of(row.get::<&str, _>(2))?,
                subject: row.get(3),
            })
        })
        .collect();
    let days = sqlx::query_as("SELECT entity, kind, day, count FROM behaviour_days")
        .fetch_all(pool)
        .await?;
    let reported = sqlx::query_as("SELECT detector, key, at FROM tracker_reported")
        .fetch_all(pool)
        .await?;
    Ok(Stored {
        records,
        days,
        reported,
    })
}

/// What the state database holds for the tracker.
#[derive(Debug, Default)]
pub struct Stored {
    pub records: Vec<BehaviourRecord>,
    /// (entity, kind, day, count).
    pub days: Vec<(String, String, i64, i64)>,
    /// (detector, key, event time).
    pub reported: Vec<(String, String, i64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defect (far-future event): a record dated 9000-01-01, as a store written before the
    /// intake clamped such times may hold, decided the retention horizon on reading the file
    /// back and every other record was deleted with it.
    #[tokio::test]
    async fn a_far_future_record_in_the_state_file_erases_no_other_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::state::StateStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        let pool = store.pool();
        let now = crate::event::now_ms();
        for k in 0..10 {
            sqlx::query(
                "INSERT INTO behaviour (ts, entity, kind, subject) VALUES (?, 'ws-05', 'spawn', ?)",
            )
            .bind(now - 86_400_000 + k)
            .bind(format!("explorer.exe>app{k}.exe"))
            .execute(pool)
            .await
            .unwrap();
        }
        sqlx::query("INSERT INTO behaviour_days (entity, kind, day, count) VALUES ('ws-05', 'spawn', ?, 10)")
            .bind((now - 86_400_000).div_euclid(86_400_000))
            .execute(pool)
            .await
            .unwrap();
        let year_9000 = 221_845_392_000_000_i64;
        sqlx::query("INSERT INTO behaviour (ts, entity, kind, subject) VALUES (?, 'mallory', 'login', 'dc-01|')")
            .bind(year_9000)
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO behaviour_days (entity, kind, day, count) VALUES ('mallory', 'login', ?, 1)")
            .bind(year_9000 / 86_400_000)
            .execute(pool)
            .await
            .unwrap();
        let stored = load_records(pool, 30 * 86_400_000).await.unwrap();
        let history = stored
            .records
            .iter()
            .filter(|r| r.entity == "ws-05")
            .count();
        assert_eq!(history, 10);
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM behaviour WHERE entity = 'ws-05'")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(rows, 10);
        // Restored, the far-future record does not age the history out of the summary either.
        let tracker = super::super::TrackerHandle::default();
        tracker.restore(&stored);
        assert_eq!(tracker.behaviour_count("ws-05", "spawn"), 10);
        assert!(tracker.newest().is_some_and(|n| n < year_9000));
        assert!(!tracker.first_seen("ws-05", "explorer.exe", "app3.exe"));
        assert!(tracker.first_seen("ws-05", "wmiprvse.exe", "certutil.exe"));
        store.close().await;
    }
}
