//! The durable indicator store: a table in the state database, one row per (indicator,
//! source). Imports write in one transaction, so a failed import leaves nothing behind.

use futures_util::TryStreamExt;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::indicator::{Indicator, IndicatorKind};
use crate::state::{StateError, StateStore};

/// Rows per INSERT: 14 columns × 500 stays below SQLite's variable limit.
const ROWS_PER_STATEMENT: usize = 500;

#[derive(Debug, Clone)]
pub struct IntelStore {
    pool: SqlitePool,
}

/// Where a pulled feed left off.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct FeedState {
    pub cursor: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub last_success_ms: Option<i64>,
    /// The last pull tried, succeeded or not.
    pub last_attempt_ms: Option<i64>,
    /// Why the last pull failed; cleared by the next success.
    pub last_error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct FeedRow {
    name: String,
    #[sqlx(flatten)]
    state: FeedState,
}

/// Counts for `palisade intel stats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntelStats {
    pub total: i64,
    pub live: i64,
    pub expired: i64,
    pub revoked: i64,
    /// (kind, live count).
    pub by_kind: Vec<(String, i64)>,
    /// (source, live count, latest update).
    pub by_source: Vec<(String, i64, i64)>,
}

impl IntelStore {
    pub fn new(state: &StateStore) -> IntelStore {
        IntelStore {
            pool: state.pool().clone(),
        }
    }

    /// Over a pool the caller opened (a read-only one, for commands that must write nothing).
    pub fn over(pool: SqlitePool) -> IntelStore {
        IntelStore { pool }
    }

    /// Inserts or updates every indicator in one transaction. An indicator already stored for
    /// the same source keeps its earliest first-seen time.
    pub async fn upsert(&self, indicators: &[Indicator], now_ms: i64) -> Result<(), StateError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Self::upsert_in(&mut tx, indicators, now_ms).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn upsert_in(
        tx: &mut sqlx::Transaction<'_, Sqlite>,
        indicators: &[Indicator],
        now_ms: i64,
    ) -> Result<(), StateError> {
        for chunk in indicators.chunks(ROWS_PER_STATEMENT) {
            let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO indicators (kind, value, source, confidence, severity, tags, threat, first_seen_ms, last_seen_ms, valid_until_ms, reference, subdomains, revoked, updated_ms) ",
            );
            insert.push_values(chunk, |mut row, i| {
                row.push_bind(i.kind.as_str())
                    .push_bind(i.value.clone())
                    .push_bind(i.source.clone())
                    .push_bind(i64::from(i.confidence))
                    .push_bind(i64::from(i.severity))
                    .push_bind(serde_json::to_string(&i.tags).unwrap_or_else(|_| "[]".into()))
                    .push_bind(i.threat.clone())
                    .push_bind(i.first_seen_ms)
                    .push_bind(i.last_seen_ms)
                    .push_bind(i.valid_until_ms)
                    .push_bind(i.reference.clone())
                    .push_bind(i.subdomains)
                    .push_bind(i.revoked)
                    .push_bind(now_ms);
            });
            insert.push(
                " ON CONFLICT (kind, value, source) DO UPDATE SET confidence = excluded.confidence, severity = excluded.severity, \
                 tags = excluded.tags, threat = excluded.threat, \
                 first_seen_ms = COALESCE(MIN(indicators.first_seen_ms, excluded.first_seen_ms), indicators.first_seen_ms, excluded.first_seen_ms), \
                 last_seen_ms = COALESCE(excluded.last_seen_ms, indicators.last_seen_ms), valid_until_ms = excluded.valid_until_ms, \
                 reference = excluded.reference, subdomains = excluded.subdomains, revoked = excluded.revoked, updated_ms = excluded.updated_ms",
            );
            insert.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Stores a complete snapshot of a list feed in one transaction: every indicator in it is
    /// upserted, and the source's rows not in it (not updated by this run) are revoked. Returns
    /// how many rows were revoked.
    pub async fn replace_snapshot(
        &self,
        source: &str,
        indicators: &[Indicator],
        now_ms: i64,
    ) -> Result<u64, StateError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Self::upsert_in(&mut tx, indicators, now_ms).await?;
        let revoked = sqlx::query("UPDATE indicators SET revoked = 1, updated_ms = ? WHERE source = ? AND updated_ms < ? AND revoked = 0")
            .bind(now_ms)
            .bind(source)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(revoked)
    }

    /// Where a feed left off.
    pub async fn feed_state(&self, name: &str) -> Result<FeedState, StateError> {
        let row: Option<FeedState> = sqlx::query_as(
            "SELECT cursor, etag, last_modified, last_success_ms, last_attempt_ms, last_error FROM feed_state WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.unwrap_or_default())
    }

    /// Records a successful step of a pull: the new cursor or validators, after the batch they
    /// describe is stored.
    pub async fn save_feed_progress(
        &self,
        name: &str,
        state: &FeedState,
        now_ms: i64,
    ) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO feed_state (name, cursor, etag, last_modified, last_success_ms, last_attempt_ms, last_error) VALUES (?, ?, ?, ?, ?, ?, NULL) \
             ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, etag = excluded.etag, last_modified = excluded.last_modified, \
             last_success_ms = excluded.last_success_ms, last_attempt_ms = excluded.last_attempt_ms, last_error = NULL",
        )
        .bind(name)
        .bind(&state.cursor)
        .bind(&state.etag)
        .bind(&state.last_modified)
        .bind(now_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a failed pull (shown by `palisade intel stats`).
    pub async fn save_feed_error(
        &self,
        name: &str,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO feed_state (name, last_attempt_ms, last_error) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET last_attempt_ms = excluded.last_attempt_ms, last_error = excluded.last_error",
        )
        .bind(name)
        .bind(now_ms)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every feed's state, for `palisade intel stats`.
    pub async fn feeds(&self) -> Result<Vec<(String, FeedState)>, StateError> {
        let rows: Vec<FeedRow> = sqlx::query_as(
            "SELECT name, cursor, etag, last_modified, last_success_ms, last_attempt_ms, last_error FROM feed_state ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|row| (row.name, row.state)).collect())
    }

    /// Every indicator that may match at `now_ms` (tags and references are left out: the
    /// matcher does not need them).
    pub async fn live(&self, now_ms: i64) -> Result<Vec<Indicator>, StateError> {
        let mut rows = sqlx::query(
            "SELECT kind, value, source, confidence, severity, threat, valid_until_ms, subdomains FROM indicators \
             WHERE revoked = 0 AND (valid_until_ms IS NULL OR valid_until_ms > ?)",
        )
        .bind(now_ms)
        .fetch(&self.pool);
        let mut out = Vec::new();
        while let Some(row) = rows.try_next().await? {
            let kind: String = row.try_get(0)?;
            let Some(kind) = IndicatorKind::parse(&kind) else {
                continue;
            };
            let mut indicator =
                Indicator::new(kind, row.try_get(1)?, &row.try_get::<String, _>(2)?);
            indicator.confidence = u8::try_from(row.try_get::<i64, _>(3)?).unwrap_or(0);
            indicator.severity = u8::try_from(row.try_get::<i64, _>(4)?).unwrap_or(0);
            indicator.threat = row.try_get(5)?;
            indicator.valid_until_ms = row.try_get(6)?;
            indicator.subdomains = row.try_get(7)?;
            out.push(indicator);
        }
        Ok(out)
    }

    /// Every stored row for one canonical indicator, from every source.
    pub async fn rows(
        &self,
        kind: IndicatorKind,
        value: &str,
    ) -> Result<Vec<Indicator>, StateError> {
        let rows = sqlx::query(
            "SELECT kind, value, source, confidence, severity, tags, threat, first_seen_ms, last_seen_ms, valid_until_ms, reference, subdomains, revoked \
             FROM indicators WHERE kind = ? AND value = ? ORDER BY source",
        )
        .bind(kind.as_str())
        .bind(value)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in rows {
            let Some(kind) = IndicatorKind::parse(&row.try_get::<String, _>(0)?) else {
                continue;
            };
            let mut indicator =
                Indicator::new(kind, row.try_get(1)?, &row.try_get::<String, _>(2)?);
            indicator.confidence = u8::try_from(row.try_get::<i64, _>(3)?).unwrap_or(0);
            indicator.severity = u8::try_from(row.try_get::<i64, _>(4)?).unwrap_or(0);
            indicator.tags =
                serde_json::from_str(&row.try_get::<String, _>(5)?).unwrap_or_default();
            indicator.threat = row.try_get(6)?;
            indicator.first_seen_ms = row.try_get(7)?;
            indicator.last_seen_ms = row.try_get(8)?;
            indicator.valid_until_ms = row.try_get(9)?;
            indicator.reference = row.try_get(10)?;
            indicator.subdomains = row.try_get(11)?;
            indicator.revoked = row.try_get(12)?;
            out.push(indicator);
        }
        Ok(out)
    }

    pub async fn stats(&self, now_ms: i64) -> Result<IntelStats, StateError> {
        let (total, revoked, expired): (i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(revoked), 0), COALESCE(SUM(CASE WHEN revoked = 0 AND valid_until_ms <= ? THEN 1 ELSE 0 END), 0) FROM indicators",
        )
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        let by_kind: Vec<(String, i64)> = sqlx::query_as(
            "SELECT kind, COUNT(*) FROM indicators WHERE revoked = 0 AND (valid_until_ms IS NULL OR valid_until_ms > ?) GROUP BY kind ORDER BY kind",
        )
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await?;
        let by_source: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT source, SUM(CASE WHEN revoked = 0 AND (valid_until_ms IS NULL OR valid_until_ms > ?) THEN 1 ELSE 0 END), MAX(updated_ms) \
             FROM indicators GROUP BY source ORDER BY source",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(IntelStats {
            total,
            live: total - revoked - expired,
            expired,
            revoked,
            by_kind,
            by_source,
        })
    }
}
