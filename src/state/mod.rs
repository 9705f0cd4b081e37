//! State that outlives the process, in one SQLite file: what the engine detected and decided.
//!
//! One owner task writes ([`spawn_writer`]); the pipeline hands it batches over a channel, and it
//! writes each batch as multi-row INSERTs in one transaction (row-by-row inserts through sqlx
//! measured ~15k rows/s on this class of machine, batched ~190k/s). The file is in WAL mode so
//! operator commands can read it while the engine writes.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use crate::decision::ActionRecord;
use crate::detection::Detection;

mod checkpoint;
pub mod correlation;
pub mod rows;
pub mod transient;
mod writer;

pub use writer::{StateWriter, Stored, spawn_writer};

use rows::BehaviourRecord;

/// Rows per INSERT statement; 12 columns × 400 rows stays far below SQLite's variable limit.
const ROWS_PER_STATEMENT: usize = 400;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create the state directory `{path}`: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the state database `{path}`: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("cannot migrate the state database `{path}`: {source}")]
    Migrate {
        path: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("cannot write to the state database: {0}")]
    Write(#[from] sqlx::Error),
    #[error("cannot write to the state database: {0}")]
    Failed(String),
    #[error("the state writer has stopped")]
    WriterGone,
    #[error(
        "the state database `{path}` is an empty file: palisade does not replace it with a fresh \
         database (the history, blocks and audit trail it should hold would silently start \
         over); to start fresh on purpose, move it aside (`mv {path} {path}.empty`) and start again"
    )]
    Empty { path: String },
    #[error(
        "`{path}` is not a palisade state database ({found}); palisade does not write into it: \
         point `state.path` at palisade's database, or, to start fresh on purpose, move it aside \
         and start again"
    )]
    Foreign { path: String, found: String },
}

impl StateError {
    /// Whether the fault passes by itself (busy, locked, out of descriptors): waited out with
    /// [`transient::retry`], never a reason to stop.
    pub fn is_transient(&self) -> bool {
        match self {
            StateError::Write(err) | StateError::Open { source: err, .. } => {
                transient::is_transient(err)
            }
            StateError::Migrate {
                source:
                    sqlx::migrate::MigrateError::Execute(err)
                    | sqlx::migrate::MigrateError::ExecuteMigration(err, _),
                ..
            } => transient::is_transient(err),
            _ => false,
        }
    }

    /// SQLite could not open the file (out of descriptors, or not allowed to).
    fn is_cannot_open(&self) -> bool {
        match self {
            StateError::Open {
                source: sqlx::Error::Database(db),
                ..
            } => db
                .code()
                .and_then(|code| code.parse::<i64>().ok())
                .is_some_and(|code| code & 0xff == 14),
            _ => false,
        }
    }
}

/// How long opening the database is retried while SQLite says it cannot open it.
const CANNOT_OPEN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long an empty file is waited for before it is refused as empty. SQLite creates the file
/// before it writes the first page, so another process making a fresh database at the same
/// moment (an operator command run as the engine starts) leaves it empty for a moment; a file
/// still empty after this is not being made.
const BEING_MADE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// SQLite's answer for a file that is not a database.
const SQLITE_NOTADB: &str = "26";

/// Whether SQLite found the file not to be a database.
fn is_not_a_database(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some(SQLITE_NOTADB))
}

/// A detection with the event facts stored beside it.
#[derive(Debug, Clone)]
pub struct DetectionRow {
    pub detection: Detection,
    pub event_time: String,
    pub host: Option<String>,
}

/// One batch for the writer.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub detections: Vec<DetectionRow>,
    pub actions: Vec<ActionRecord>,
    /// The behaviour tracker's records of these events.
    pub behaviour: Vec<BehaviourRecord>,
    /// Patterns the tracker reported: (detector, key, event time).
    pub reported: Vec<(String, String, i64)>,
    /// Stored behaviour records older than this event time can go.
    pub behaviour_horizon: Option<i64>,
    /// Records per entity, kind and day the tracker counted in these events.
    pub behaviour_days: rows::DayCounts,
    /// Sigma correlation windows these events changed, in the order they changed.
    pub correlation: Vec<rows::WindowRow>,
    /// Changes to the anomaly stage's learning sample, in the order they were made.
    pub sample: Vec<rows::SampleRow>,
    /// The learning progress and sample pruning these events brought.
    pub sample_state: rows::SampleState,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.detections.is_empty()
            && self.actions.is_empty()
            && self.behaviour.is_empty()
            && self.reported.is_empty()
            && self.behaviour_horizon.is_none()
            && self.behaviour_days.is_empty()
            && self.correlation.is_empty()
            && self.sample.is_empty()
            && self.sample_state.is_empty()
    }

    /// Appends a later batch.
    pub fn absorb(&mut self, mut later: Batch) {
        self.detections.append(&mut later.detections);
        self.actions.append(&mut later.actions);
        self.behaviour.append(&mut later.behaviour);
        self.reported.append(&mut later.reported);
        self.correlation.append(&mut later.correlation);
        self.sample.append(&mut later.sample);
        self.sample_state.absorb(later.sample_state);
        self.behaviour_horizon = later.behaviour_horizon.or(self.behaviour_horizon);
        for (entity, counts) in later.behaviour_days {
            let mine = self.behaviour_days.entry(entity).or_default();
            for (key, n) in counts {
                *mine.entry(key).or_default() += n;
            }
        }
    }

    fn rows(&self) -> usize {
        self.detections.len()
            + self.actions.len()
            + self.behaviour.len()
            + self.correlation.len()
            + self.sample.len()
    }
}

#[derive(Debug, Clone)]
pub struct StateStore {
    pool: SqlitePool,
    turn: WriteTurn,
    /// While any clone of the store exists, its checkpoint task runs.
    _alive: Arc<()>,
}

/// Whose turn it is to write the state file, within this process. SQLite lets one writer in at
/// a time and makes the others wait in its busy handler, which sleeps 1, 2, 5, 10 ms and more
/// between tries: a writer that meets another one pays milliseconds even when the other was
/// done in microseconds. Writers of this process (the state writer, the audit trail,
/// approvals) take turns here instead and are woken the moment the turn is free; the busy
/// handler is left for other processes (operator commands).
#[derive(Debug, Clone, Default)]
pub struct WriteTurn(Arc<tokio::sync::Mutex<()>>);

impl WriteTurn {
    /// Waits for the turn; it is held until the guard is dropped. Take it before a connection,
    /// never while holding one, so two writers cannot each hold what the other waits for.
    pub async fn take(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.0.clone().lock_owned().await
    }
}

impl StateStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    ///
    /// What is at `path` is judged first: an empty file or one that is not a palisade database
    /// is refused ([`StateError::Empty`], [`StateError::Foreign`]); only an absent file makes a
    /// fresh database. A database that is busy (another process holds its lock) or cannot be
    /// opened for want of file descriptors is waited for ([`transient::retry`]).
    pub async fn open(path: &Path) -> Result<StateStore, StateError> {
        // SQLite says "cannot open" both when the process is out of descriptors (which passes)
        // and when the file may not be opened at all (which does not): the first is waited
        // for, but only so long, so the second still stops the engine with its error.
        let started = std::time::Instant::now();
        transient::retry(
            "opening the state database",
            |err: &StateError| {
                let being_made = matches!(err, StateError::Empty { .. })
                    && started.elapsed() < BEING_MADE_PATIENCE;
                being_made
                    || (err.is_transient()
                        && (!err.is_cannot_open() || started.elapsed() < CANNOT_OPEN_PATIENCE))
            },
            || StateStore::open_once(path),
        )
        .await
    }

    async fn open_once(path: &Path) -> Result<StateStore, StateError> {
        let shown = path.display().to_string();
        // Only the size is looked at here, never the contents: opening and closing the file
        // outside SQLite would drop the locks this process's other connections to it hold
        // (POSIX locks belong to the process), and another process could then take it for
        // unused and reset its write-ahead log under them. Whether a file is a database is
        // SQLite's to say (below).
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                return Err(StateError::Foreign {
                    path: shown,
                    found: "it is a directory".into(),
                });
            }
            Ok(meta) if meta.len() == 0 => return Err(StateError::Empty { path: shown }),
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(StateError::Open {
                    path: shown,
                    source: sqlx::Error::Io(err),
                });
            }
        }
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| StateError::Directory {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|source| StateError::Open {
                path: shown.clone(),
                source,
            })?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // Checkpoints run beside the writers ([`checkpoint`]), not inside a commit.
            .pragma("wal_autocheckpoint", "0")
            .busy_timeout(std::time::Duration::from_secs(5));
        // Loading a million indicators is a long statement by design, not a problem to log.
        let options = sqlx::ConnectOptions::log_slow_statements(
            options,
            tracing::log::LevelFilter::Off,
            std::time::Duration::from_secs(1),
        );
        // Connections are kept for the life of the store: a pool that reopened them would need
        // a new descriptor at a moment the process may have none.
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(|source| {
                if is_not_a_database(&source) {
                    StateError::Foreign {
                        path: shown.clone(),
                        found: "SQLite says it is not a database".into(),
                    }
                } else {
                    StateError::Open {
                        path: shown.clone(),
                        source,
                    }
                }
            })?;
        // A SQLite file of another program: tables, but none of palisade's migrations.
        let foreign: Result<(i64, i64), sqlx::Error> = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'), \
                    (SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
        )
        .fetch_one(&pool)
        .await;
        match foreign {
            Ok((tables, 0)) if tables > 0 => {
                pool.close().await;
                return Err(StateError::Foreign {
                    path: shown,
                    found: format!("a SQLite database with {tables} table(s) of another program"),
                });
            }
            Ok(_) => {}
            Err(source) => {
                pool.close().await;
                if is_not_a_database(&source) {
                    return Err(StateError::Foreign {
                        path: shown,
                        found: "SQLite says it is not a database".into(),
                    });
                }
                return Err(StateError::Open {
                    path: shown,
                    source,
                });
            }
        }
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|source| StateError::Migrate {
                path: shown,
                source,
            })?;
        let alive = Arc::new(());
        checkpoint::start(&options, &pool, Arc::downgrade(&alive)).await;
        Ok(StateStore {
            pool,
            turn: WriteTurn::default(),
            _alive: alive,
        })
    }

    /// The connection pool, for other owners of tables in the same file (the intel store).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The turn this process's writers take before writing ([`WriteTurn`]).
    pub fn write_turn(&self) -> &WriteTurn {
        &self.turn
    }

    /// Writes one batch in one transaction.
    pub async fn write(&self, batch: &Batch) -> Result<(), StateError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.in_transaction(async |tx| write_rows(tx, batch).await)
            .await
            .map(|_| ())
    }

    /// Stores what became of decided steps (matched on their key) and, in the same
    /// transaction, the alerts that tell of them, so an alert is in the outbox exactly when the
    /// outcomes it reports are stored.
    pub async fn record_outcomes(
        &self,
        actions: &[ActionRecord],
        alerts: &[OutboxAlert],
    ) -> Result<(), StateError> {
        if actions.is_empty() && alerts.is_empty() {
            return Ok(());
        }
        self.in_transaction(async |tx| outcome_rows(tx, actions, alerts).await)
            .await
    }

    /// Runs `work` in one `BEGIN IMMEDIATE` transaction on one connection and commits it; a
    /// connection left in doubt by a transient failure is not used again.
    async fn in_transaction<T>(
        &self,
        work: impl AsyncFnOnce(&mut sqlx::Transaction<'_, Sqlite>) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let _turn = self.turn.take().await;
        let mut conn = self.pool.acquire().await?;
        let result = async {
            let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
            let value = work(&mut tx).await?;
            tx.commit().await?;
            Ok(value)
        }
        .await;
        if result.as_ref().is_err_and(StateError::is_transient) {
            transient::discard(&mut conn);
        }
        result
    }

    /// Up to `limit` alerts not yet published, oldest first, with their outbox ids.
    pub async fn unpublished(&self, limit: usize) -> Result<Vec<(i64, String)>, StateError> {
        let rows = sqlx::query_as(
            "SELECT id, document FROM alert_outbox WHERE published_at IS NULL ORDER BY id LIMIT ?",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Outbox rows after `after_id`, in id order, published or not: an extra sink reads the
    /// outbox with its own cursor ([`StateStore::sink_cursor`]).
    pub async fn outbox_after(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StateError> {
        let rows = sqlx::query_as(
            "SELECT id, document FROM alert_outbox WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after_id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// The last outbox id `sink` delivered (0 when it has delivered none).
    pub async fn sink_cursor(&self, sink: &str) -> Result<i64, StateError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT last_id FROM sink_cursors WHERE sink = ?")
            .bind(sink)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map_or(0, |(id,)| id))
    }

    /// Moves `sink`'s cursor to `last_id` (never backwards).
    pub async fn set_sink_cursor(&self, sink: &str, last_id: i64) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO sink_cursors (sink, last_id) VALUES (?, ?) \
             ON CONFLICT(sink) DO UPDATE SET last_id = MAX(last_id, excluded.last_id)",
        )
        .bind(sink)
        .bind(last_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The recorded status and reason of each step of one detection, by (playbook, step).
    pub async fn step_outcomes(
        &self,
        event_id: &str,
        rule: &str,
    ) -> Result<
        std::collections::HashMap<
            (String, String),
            (crate::decision::ActionStatus, Option<String>),
        >,
        StateError,
    > {
        let rows: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT playbook, step, status, reason FROM actions WHERE event_id = ? AND rule = ?",
        )
        .bind(event_id)
        .bind(rule)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(playbook, step, status, reason)| {
                crate::decision::ActionStatus::parse(&status)
                    .map(|status| ((playbook, step), (status, reason)))
            })
            .collect())
    }

    /// Marks every outbox row up to `up_to` published (the publisher sends in id order), and
    /// empties the documents of published rows beyond the newest 10,000. The rows themselves
    /// stay: an `alert_id` in the outbox is how a redelivery knows its alert was written.
    pub async fn mark_published(&self, up_to: i64) -> Result<(), StateError> {
        self.in_transaction(async |tx| published_rows(tx, up_to).await)
            .await
    }

    /// Row counts of (detections, actions), for summaries and tests.
    pub async fn counts(&self) -> Result<(i64, i64), StateError> {
        let detections: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM detections")
            .fetch_one(&self.pool)
            .await?;
        let actions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM actions")
            .fetch_one(&self.pool)
            .await?;
        Ok((detections, actions))
    }

    /// Closes the store with everything committed in the database file itself: automatic
    /// checkpoints are off (a task checkpoints beside the writers), so the write-ahead log is
    /// emptied into the file first, and a copy of the file alone holds all that was written.
    pub async fn close(self) {
        if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await
        {
            tracing::debug!("checkpoint at close: {err}");
        }
        self.pool.close().await;
    }
}

/// A detection's idempotency key: the event it was found in and the rule that found it.
pub type DetectionKey = (String, String);

/// The key of a stored detection row.
pub fn detection_key(row: &DetectionRow) -> DetectionKey {
    (
        row.detection.event_id.clone(),
        row.detection.rule.to_string(),
    )
}

/// A detection's key as text: `alert_id` in its alert document and in the outbox.
pub fn alert_id(row: &DetectionRow) -> String {
    format!("{}@{}", row.detection.rule, row.detection.event_id)
}

/// An alert document waiting in the outbox, under its detection's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxAlert {
    pub alert_id: String,
    pub document: String,
}

/// What [`StateWriter::decide`] stored: the detections (and their steps) decided now for the
/// first time, and how many detections were already on record and were dropped.
#[derive(Debug, Default)]
pub struct Decided {
    pub detections: Vec<DetectionRow>,
    pub actions: Vec<ActionRecord>,
    pub recognised: usize,
    /// Of the recognised detections, those decided before but whose alert never reached the
    /// outbox (the engine stopped between deciding and recording the outcome), with their
    /// steps as planned now: their steps are not run again, but their alert is still owed.
    pub unrecorded: Vec<DetectionRow>,
    pub unrecorded_actions: Vec<ActionRecord>,
}

/// Splits a written batch's detections and steps into the ones inserted now and the ones whose
/// key was already stored. A key inserted once counts for its first row only, so a detection
/// that appears twice in one batch is decided once.
fn split_decided(
    batch: Batch,
    mut inserted: std::collections::HashSet<DetectionKey>,
    mut unrecorded: std::collections::HashSet<String>,
) -> Decided {
    let mut decided = Decided::default();
    let mut kept = std::collections::HashSet::new();
    let mut owed = std::collections::HashSet::new();
    for row in batch.detections {
        let key = detection_key(&row);
        if inserted.remove(&key) {
            kept.insert(key);
            decided.detections.push(row);
        } else {
            decided.recognised += 1;
            if unrecorded.remove(&alert_id(&row)) {
                owed.insert(key);
                decided.unrecorded.push(row);
            }
        }
    }
    let mut steps = std::collections::HashSet::new();
    for action in batch.actions {
        let key = (action.event_id.clone(), action.rule.to_string());
        let step = (key.clone(), action.playbook.clone(), action.step.clone());
        if kept.contains(&key) {
            // A step is decided once, like its detection.
            if steps.insert(step) {
                decided.actions.push(action);
            }
        } else if owed.contains(&key) {
            decided.unrecorded_actions.push(action);
        }
    }
    decided
}

/// Of the recognised detections of a written batch (`inserted` holds the keys inserted now),
/// the alert ids that have no outbox row.
async fn unrecorded(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    batch: &Batch,
    inserted: &std::collections::HashSet<DetectionKey>,
) -> Result<std::collections::HashSet<String>, StateError> {
    let recognised: Vec<String> = batch
        .detections
        .iter()
        .filter(|row| !inserted.contains(&detection_key(row)))
        .map(alert_id)
        .collect();
    if recognised.is_empty() {
        return Ok(std::collections::HashSet::new());
    }
    let ids = serde_json::to_string(&recognised).map_err(|e| StateError::Failed(e.to_string()))?;
    let missing: Vec<String> = sqlx::query_scalar(
        "SELECT value FROM json_each(?) WHERE value NOT IN (SELECT alert_id FROM alert_outbox)",
    )
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?;
    Ok(missing.into_iter().collect())
}

/// A batch's rows, in a transaction. Detections and steps whose key is already stored are
/// left as they are (the first decision stands); the keys of the detections inserted come back.
async fn write_rows(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    batch: &Batch,
) -> Result<std::collections::HashSet<DetectionKey>, StateError> {
    let now = jiff::Timestamp::now().to_string();
    let mut inserted = std::collections::HashSet::new();
    for chunk in batch.detections.chunks(ROWS_PER_STATEMENT) {
        let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO detections (recorded_at, event_id, event_time, host, rule, stage, severity, title, entity, score) ",
        );
        insert.push_values(chunk, |mut row, item| {
            let d = &item.detection;
            row.push_bind(now.clone())
                .push_bind(d.event_id.clone())
                .push_bind(item.event_time.clone())
                .push_bind(item.host.clone())
                .push_bind(d.rule.to_string())
                .push_bind(d.stage.as_str())
                .push_bind(d.severity.as_str())
                .push_bind(d.title.clone())
                .push_bind(
                    d.entity
                        .as_ref()
                        .map(|e| serde_json::to_string(e).unwrap_or_default()),
                )
                .push_bind(d.score);
        });
        insert.push(" ON CONFLICT (event_id, rule) DO NOTHING RETURNING event_id, rule");
        let rows: Vec<(String, String)> = insert.build_query_as().fetch_all(&mut **tx).await?;
        inserted.extend(rows);
    }
    for chunk in batch.actions.chunks(ROWS_PER_STATEMENT) {
        let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO actions (recorded_at, event_id, rule, playbook, step, action, target, status, reason, risk, params) ",
        );
        insert.push_values(chunk, |mut row, a| {
            row.push_bind(now.clone())
                .push_bind(a.event_id.clone())
                .push_bind(a.rule.to_string())
                .push_bind(a.playbook.to_string())
                .push_bind(a.step.clone())
                .push_bind(a.action)
                .push_bind(a.target.clone())
                .push_bind(a.status.as_str())
                .push_bind(a.reason.clone())
                .push_bind(
                    serde_json::to_value(a.risk)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string)),
                )
                .push_bind(serde_json::to_string(&a.params).unwrap_or_default());
        });
        insert.push(" ON CONFLICT (event_id, rule, playbook, step) DO NOTHING");
        insert.build().execute(&mut **tx).await?;
    }
    for chunk in batch.behaviour.chunks(ROWS_PER_STATEMENT * 2) {
        let mut insert: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO behaviour (ts, entity, kind, subject) ");
        insert.push_values(chunk, |mut row, r| {
            row.push_bind(r.ts)
                .push_bind(r.entity.as_str())
                .push_bind(r.kind)
                .push_bind(r.subject.as_str());
        });
        insert.build().execute(&mut **tx).await?;
    }
    for (detector, key, at) in &batch.reported {
        sqlx::query("INSERT OR REPLACE INTO tracker_reported (detector, key, at) VALUES (?, ?, ?)")
            .bind(detector)
            .bind(key)
            .bind(at)
            .execute(&mut **tx)
            .await?;
    }
    let days: Vec<(&str, &str, i64, i64)> = batch
        .behaviour_days
        .iter()
        .flat_map(|(entity, counts)| {
            counts
                .iter()
                .map(move |((kind, day), n)| (entity.as_str(), *kind, *day, *n as i64))
        })
        .collect();
    for chunk in days.chunks(ROWS_PER_STATEMENT * 2) {
        let mut upsert: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO behaviour_days (entity, kind, day, count) ");
        upsert.push_values(chunk, |mut row, (entity, kind, day, n)| {
            row.push_bind(*entity)
                .push_bind(*kind)
                .push_bind(*day)
                .push_bind(*n);
        });
        upsert
            .push(" ON CONFLICT (entity, kind, day) DO UPDATE SET count = count + excluded.count");
        upsert.build().execute(&mut **tx).await?;
    }
    correlation::write_windows(tx, &batch.correlation).await?;
    write_sample(tx, &batch.sample, &batch.sample_state).await?;
    if let Some(horizon) = batch.behaviour_horizon {
        sqlx::query("DELETE FROM behaviour WHERE ts < ?")
            .bind(horizon)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM behaviour_days WHERE day < ?")
            .bind(horizon.div_euclid(86_400_000))
            .execute(&mut **tx)
            .await?;
    }
    Ok(inserted)
}

/// Steps' outcomes and the alerts that report them, in a transaction.
async fn outcome_rows(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    actions: &[ActionRecord],
    alerts: &[OutboxAlert],
) -> Result<(), StateError> {
    let now = jiff::Timestamp::now().to_string();
    for a in actions {
        sqlx::query(
            "UPDATE actions SET status = ?, reason = ? \
             WHERE event_id = ? AND rule = ? AND playbook = ? AND step = ?",
        )
        .bind(a.status.as_str())
        .bind(a.reason.as_deref())
        .bind(&a.event_id)
        .bind(&*a.rule)
        .bind(&*a.playbook)
        .bind(&a.step)
        .execute(&mut **tx)
        .await?;
    }
    for chunk in alerts.chunks(ROWS_PER_STATEMENT) {
        let mut insert: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO alert_outbox (alert_id, recorded_at, document) ");
        insert.push_values(chunk, |mut row, alert| {
            row.push_bind(alert.alert_id.as_str())
                .push_bind(now.as_str())
                .push_bind(alert.document.as_str());
        });
        // A key already in the outbox was announced (or is about to be): not twice.
        insert.push(" ON CONFLICT (alert_id) DO NOTHING");
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Marks every outbox row up to `up_to` published and empties the documents of the rows that
/// just left the kept window, in a transaction.
async fn published_rows(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    up_to: i64,
) -> Result<(), StateError> {
    let now = jiff::Timestamp::now().to_string();
    sqlx::query("UPDATE alert_outbox SET published_at = ? WHERE id <= ? AND published_at IS NULL")
        .bind(now)
        .bind(up_to)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE alert_outbox SET document = '' \
         WHERE id > ? AND id <= ? AND published_at IS NOT NULL AND document <> ''",
    )
    // Only the rows that just left the kept window (a bounded range of ids, found by the
    // primary key), not every older row again.
    .bind(up_to - 2 * PUBLISHED_KEPT)
    .bind(up_to - PUBLISHED_KEPT)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Published outbox rows whose documents are kept for an operator to look at; older ones keep
/// only their `alert_id`.
const PUBLISHED_KEPT: i64 = 10_000;

/// The learning sample's rows, in order (a slot can be written and then given up in one batch),
/// then the progress and the window's pruning.
async fn write_sample(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    rows: &[rows::SampleRow],
    state: &rows::SampleState,
) -> Result<(), StateError> {
    let mut rest = rows;
    while !rest.is_empty() {
        // A run of writes goes as multi-row statements; a delete alone.
        let puts = rest.iter().take_while(|r| r.event.is_some()).count();
        if puts == 0 {
            let row = &rest[0];
            sqlx::query("DELETE FROM anomaly_sample WHERE engine = ? AND bucket = ? AND slot = ?")
                .bind(&*row.engine)
                .bind(&row.bucket)
                .bind(row.slot)
                .execute(&mut **tx)
                .await?;
            rest = &rest[1..];
            continue;
        }
        let (run, after) = rest.split_at(puts);
        for chunk in run.chunks(ROWS_PER_STATEMENT) {
            let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT OR REPLACE INTO anomaly_sample (engine, bucket, slot, seen, ts, event) ",
            );
            insert.push_values(chunk, |mut values, row| {
                values
                    .push_bind(&*row.engine)
                    .push_bind(&row.bucket)
                    .push_bind(row.slot)
                    .push_bind(i64::try_from(row.seen).unwrap_or(i64::MAX))
                    .push_bind(row.ts)
                    .push_bind(row.event.as_deref().unwrap_or_default());
            });
            insert.build().execute(&mut **tx).await?;
        }
        rest = after;
    }
    let Some(engine) = &state.engine else {
        return Ok(());
    };
    if let Some(progress) = state.progress {
        sqlx::query(
            "INSERT INTO anomaly_progress (engine, events, first_ts, newest_ts) VALUES (?, ?, ?, ?)
             ON CONFLICT (engine) DO UPDATE SET events = excluded.events, first_ts = excluded.first_ts, newest_ts = excluded.newest_ts",
        )
        .bind(&**engine)
        .bind(i64::try_from(progress.events).unwrap_or(i64::MAX))
        .bind(progress.first_ts)
        .bind(progress.newest_ts)
        .execute(&mut **tx)
        .await?;
    }
    if let Some(before) = state.prune_before {
        sqlx::query("DELETE FROM anomaly_sample WHERE engine = ? AND ts < ?")
            .bind(&**engine)
            .bind(before)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Write};
    use tokio::sync::Notify;

    fn detection(id: usize) -> DetectionRow {
        DetectionRow {
            detection: Detection {
                event_id: format!("ev-{id}"),
                rule: "test-rule".into(),
                stage: crate::detection::Stage::Rule,
                severity: crate::detection::Severity::High,
                status: crate::detection::RuleStatus::Stable,
                title: "test".into(),
                tags: Arc::from(Vec::new()),
                entity: None,
                score: None,
                intel: Vec::new(),
                attribution: None,
            },
            event_time: "2025-11-03T14:30:10Z".into(),
            host: None,
        }
    }

    fn step(id: usize, step: &str) -> ActionRecord {
        ActionRecord {
            event_id: format!("ev-{id}"),
            playbook: Arc::from("test-playbook"),
            step: step.into(),
            action: "notify.log",
            target: String::new(),
            status: crate::decision::ActionStatus::Planned,
            reason: None,
            risk: crate::decision::Risk::Low,
            rule: Arc::from("test-rule"),
            params: std::collections::BTreeMap::new(),
            on_failure: crate::decision::OnFailure::Continue,
            notification_limit: None,
        }
    }

    fn sqlite(path: &Path, sql: &str) -> String {
        let out = std::process::Command::new("sqlite3")
            .arg(path)
            .arg(sql)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Defect: a redelivered event was decided again, so its detection, its steps and their
    /// effects repeated. The second decision of the same key is recognised and dropped, its
    /// steps with it, and the rows stored by the first one stay as they were.
    #[tokio::test]
    async fn a_detection_decided_again_after_redelivery_is_recognised_and_not_stored_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("palisade.db");
        let store = StateStore::open(&path).await.unwrap();
        let (writer, handle) = spawn_writer(store, Arc::new(Notify::new()));
        let batch = || Batch {
            detections: vec![detection(1), detection(2)],
            actions: vec![step(1, "say"), step(1, "tell"), step(2, "say")],
            ..Batch::default()
        };
        let first = writer.decide(batch(), false).await.unwrap();
        assert_eq!(first.recognised, 0);
        assert_eq!((first.detections.len(), first.actions.len()), (2, 3));
        let mut executed = first.actions;
        for a in &mut executed {
            a.status = crate::decision::ActionStatus::Executed;
        }
        writer.outcomes(executed, Vec::new()).await.unwrap();

        // The same events again, with a new one (ev-3): only ev-3 is decided.
        let mut again = batch();
        again.detections.push(detection(3));
        again.actions.push(step(3, "say"));
        let second = writer.decide(again, false).await.unwrap();
        assert_eq!(second.recognised, 2);
        let keys: Vec<DetectionKey> = second.detections.iter().map(detection_key).collect();
        assert_eq!(keys, [("ev-3".to_string(), "test-rule".to_string())]);
        let steps: Vec<(&str, &str)> = second
            .actions
            .iter()
            .map(|a| (a.event_id.as_str(), a.step.as_str()))
            .collect();
        assert_eq!(steps, [("ev-3", "say")]);
        drop(writer);
        handle.await.unwrap().unwrap();
        // One row per key, and the first decision's outcomes kept.
        assert_eq!(
            sqlite(
                &path,
                "SELECT event_id || ' ' || step || ' ' || status FROM actions ORDER BY id;"
            ),
            "ev-1 say executed\nev-1 tell executed\nev-2 say executed\nev-3 say planned"
        );
        assert_eq!(sqlite(&path, "SELECT COUNT(*) FROM detections;"), "3");
    }

    /// Defect: the checkpoint task held the store's pool, so a store dropped without `close`
    /// (a command that failed half-way) kept the database file and its write-ahead log open
    /// for as long as the process ran. Dropped, the store lets go of them: SQLite removes the
    /// log when its last connection closes.
    #[tokio::test]
    async fn a_store_dropped_unclosed_lets_go_of_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("palisade.db");
        let wal = dir.path().join("palisade.db-wal");
        let store = StateStore::open(&path).await.unwrap();
        sqlx::query("CREATE TABLE dropped_unclosed (x INTEGER)")
            .execute(store.pool())
            .await
            .unwrap();
        assert!(wal.exists(), "an open store in WAL mode has a log");
        drop(store);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while wal.exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(
            !wal.exists(),
            "a connection to the dropped store is still open"
        );
        assert_eq!(sqlite(&path, "SELECT COUNT(*) FROM dropped_unclosed;"), "0");
    }

    /// The key holds inside one batch too: a detection that appears twice (a batch and its
    /// redelivery coalesced into one commit) is decided once.
    #[tokio::test]
    async fn a_detection_twice_in_one_batch_is_decided_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("palisade.db"))
            .await
            .unwrap();
        let (writer, handle) = spawn_writer(store, Arc::new(Notify::new()));
        let decided = writer
            .decide(
                Batch {
                    detections: vec![detection(1), detection(1)],
                    actions: vec![step(1, "say"), step(1, "say")],
                    ..Batch::default()
                },
                true,
            )
            .await
            .unwrap();
        assert_eq!(decided.recognised, 1);
        assert_eq!((decided.detections.len(), decided.actions.len()), (1, 1));
        // Its copy is not owed an alert: the first is being decided now.
        assert!(decided.unrecorded.is_empty());
        let store = writer.store().clone();
        assert_eq!(store.counts().await.unwrap(), (1, 1));
        drop(writer);
        handle.await.unwrap().unwrap();
    }

    /// An alert goes into the outbox once per key, in the transaction that stores its steps'
    /// outcomes; it is handed out in order until marked published.
    #[tokio::test]
    async fn an_alert_is_outboxed_once_with_its_outcomes_and_handed_out_until_published() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("palisade.db");
        let store = StateStore::open(&path).await.unwrap();
        let (writer, handle) = spawn_writer(store, Arc::new(Notify::new()));
        let decided = writer
            .decide(
                Batch {
                    detections: vec![detection(1), detection(2)],
                    actions: vec![step(1, "say")],
                    ..Batch::default()
                },
                true,
            )
            .await
            .unwrap();
        let alert = |id: usize| OutboxAlert {
            alert_id: format!("test-rule@ev-{id}"),
            document: format!("{{\"event_id\":\"ev-{id}\"}}"),
        };
        let mut refused = decided.actions;
        refused[0].status = crate::decision::ActionStatus::Refused;
        refused[0].reason = Some("protected".into());
        writer
            .outcomes(refused.clone(), vec![alert(1), alert(2)])
            .await
            .unwrap();
        // The same outcomes stored again (a step finished late, say): no second alert.
        writer.outcomes(refused, vec![alert(1)]).await.unwrap();
        assert_eq!(
            sqlite(&path, "SELECT status || ' ' || reason FROM actions;"),
            "refused protected"
        );
        let store = writer.store().clone();
        let waiting = store.unpublished(10).await.unwrap();
        let documents: Vec<&str> = waiting.iter().map(|(_, d)| d.as_str()).collect();
        assert_eq!(
            documents,
            [r#"{"event_id":"ev-1"}"#, r#"{"event_id":"ev-2"}"#]
        );
        writer.published(waiting[0].0).await.unwrap();
        let waiting = store.unpublished(10).await.unwrap();
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].1, r#"{"event_id":"ev-2"}"#);
        drop(writer);
        handle.await.unwrap().unwrap();
        // Reopened (a restart): what was not published is still waiting.
        let store = StateStore::open(&path).await.unwrap();
        assert_eq!(store.unpublished(10).await.unwrap().len(), 1);
    }

    /// The engine stopped after deciding a detection and before recording its outcome: the
    /// redelivery does not decide or act again, but the alert that never reached the outbox is
    /// still owed, once.
    #[tokio::test]
    async fn a_detection_decided_before_a_crash_without_its_outcome_still_owes_its_alert() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("palisade.db"))
            .await
            .unwrap();
        let (writer, handle) = spawn_writer(store, Arc::new(Notify::new()));
        let batch = || Batch {
            detections: vec![detection(1)],
            actions: vec![step(1, "say")],
            ..Batch::default()
        };
        let first = writer.decide(batch(), true).await.unwrap();
        assert_eq!(first.detections.len(), 1);
        // (the crash: no outcomes stored)
        let again = writer.decide(batch(), true).await.unwrap();
        assert_eq!(again.recognised, 1);
        assert!(again.detections.is_empty() && again.actions.is_empty());
        assert_eq!(again.unrecorded.len(), 1);
        let steps: Vec<&str> = again
            .unrecorded_actions
            .iter()
            .map(|a| a.step.as_str())
            .collect();
        assert_eq!(steps, ["say"]);
        writer
            .outcomes(
                Vec::new(),
                vec![OutboxAlert {
                    alert_id: alert_id(&again.unrecorded[0]),
                    document: "{}".into(),
                }],
            )
            .await
            .unwrap();
        // Once the alert is in the outbox, nothing more is owed.
        let third = writer.decide(batch(), true).await.unwrap();
        assert_eq!(third.recognised, 1);
        assert!(third.unrecorded.is_empty());
        drop(writer);
        handle.await.unwrap().unwrap();
    }

    /// Old published alerts give up their documents but keep their ids, so a detection
    /// redelivered long after its alert went out is still known to have had it.
    #[tokio::test]
    async fn an_old_published_alert_keeps_its_id_so_a_late_redelivery_owes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("palisade.db");
        let store = StateStore::open(&path).await.unwrap();
        let (writer, handle) = spawn_writer(store, Arc::new(Notify::new()));
        let rows: Vec<DetectionRow> = (0..10_002).map(detection).collect();
        writer
            .decide(
                Batch {
                    detections: rows.clone(),
                    ..Batch::default()
                },
                true,
            )
            .await
            .unwrap();
        let alerts = rows
            .iter()
            .map(|row| OutboxAlert {
                alert_id: alert_id(row),
                document: "{}".into(),
            })
            .collect();
        writer.outcomes(Vec::new(), alerts).await.unwrap();
        let last: i64 = sqlite(&path, "SELECT MAX(id) FROM alert_outbox;")
            .parse()
            .unwrap();
        writer.published(last).await.unwrap();
        assert_eq!(
            sqlite(
                &path,
                "SELECT COUNT(*) || ' ' || SUM(document = '') FROM alert_outbox;"
            ),
            "10002 2"
        );
        let late = writer
            .decide(
                Batch {
                    detections: vec![detection(0)],
                    ..Batch::default()
                },
                true,
            )
            .await
            .unwrap();
        assert_eq!(late.recognised, 1);
        assert!(late.unrecorded.is_empty());
        drop(writer);
        handle.await.unwrap().unwrap();
    }

    /// A database written before the keys existed may hold the same detection or step twice:
    /// the migration keeps the first row of each key and then enforces the keys.
    #[tokio::test]
    async fn rows_stored_twice_before_the_keys_existed_keep_their_first_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("palisade.db");
        StateStore::open(&path).await.unwrap().close().await;
        // Back to the schema before the keys, with duplicates as an older engine wrote them.
        sqlite(
            &path,
            "DROP INDEX detections_once; DROP INDEX actions_once; DROP TABLE alert_outbox;
             DELETE FROM _sqlx_migrations WHERE version = 10;
             INSERT INTO detections (recorded_at, event_id, event_time, rule, stage, severity, title)
               VALUES ('t1', 'ev-1', 't', 'r', 'rule', 'high', 'first'),
                      ('t2', 'ev-1', 't', 'r', 'rule', 'high', 'second'),
                      ('t3', 'ev-2', 't', 'r', 'rule', 'high', 'other');
             INSERT INTO actions (recorded_at, event_id, rule, playbook, step, action, target, status, risk, params)
               VALUES ('t1', 'ev-1', 'r', 'p', 's', 'notify.log', '', 'executed', 'low', '{}'),
                      ('t2', 'ev-1', 'r', 'p', 's', 'notify.log', '', 'executed', 'low', '{}');",
        );
        let store = StateStore::open(&path).await.unwrap();
        assert_eq!(store.counts().await.unwrap(), (2, 1));
        store.close().await;
        assert_eq!(
            sqlite(&path, "SELECT title FROM detections ORDER BY id;"),
            "first\nother"
        );
        assert_eq!(sqlite(&path, "SELECT recorded_at FROM actions;"), "t1");
        // From now on the key is enforced by the database itself.
        let again = std::process::Command::new("sqlite3")
            .arg(&path)
            .arg("INSERT INTO detections (recorded_at, event_id, event_time, rule, stage, severity, title) VALUES ('t4', 'ev-1', 't', 'r', 'rule', 'high', 'again');")
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&again.stderr).contains("UNIQUE constraint failed"),
            "{again:?}"
        );
    }

    /// Defect: an operator command run as the engine started could find the database file
    /// the other process had just created and not yet written, and refuse it as an empty file:
    /// the engine then did not start. An empty file is waited for a moment first.
    #[tokio::test]
    async fn a_database_another_process_is_making_is_waited_for_not_refused_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("palisade.db");
        std::fs::write(&path, b"").unwrap();
        let made = dir.path().join("made.db");
        let (from, to) = (made.clone(), path.clone());
        let maker = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            StateStore::open(&from).await.unwrap().close().await;
            std::fs::rename(&from, &to).unwrap();
        });
        let store = StateStore::open(&path).await.unwrap();
        maker.await.unwrap();
        assert_eq!(store.counts().await.unwrap(), (0, 0));
        store.close().await;
    }

    #[tokio::test]
    async fn a_zero_length_state_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("palisade.db");
        std::fs::write(&path, b"").unwrap();
        let err = StateStore::open(&path).await.unwrap_err();
        assert!(matches!(err, StateError::Empty { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("empty file") && message.contains("move it aside"),
            "{message}"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it was");
    }

    #[tokio::test]
    async fn a_foreign_file_where_the_state_database_belongs_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.db");
        std::fs::write(&text, "not a database at all\n").unwrap();
        let err = StateStore::open(&text).await.unwrap_err();
        assert!(matches!(err, StateError::Foreign { .. }), "{err}");
        assert_eq!(
            std::fs::read_to_string(&text).unwrap(),
            "not a database at all\n"
        );

        // Another program's SQLite database: refused, and none of palisade's tables added.
        let other = dir.path().join("other.db");
        let made = std::process::Command::new("sqlite3")
            .arg(&other)
            .arg("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL);")
            .status()
            .unwrap();
        assert!(made.success());
        let err = StateStore::open(&other).await.unwrap_err();
        assert!(
            err.to_string().contains("1 table(s) of another program"),
            "{err}"
        );
        let tables = std::process::Command::new("sqlite3")
            .arg(&other)
            .arg("SELECT group_concat(name) FROM sqlite_master WHERE type = 'table';")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&tables.stdout).trim(), "invoices");
    }

    #[tokio::test]
    async fn a_directory_where_the_state_database_belongs_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let err = StateStore::open(dir.path()).await.unwrap_err();
        assert!(err.to_string().contains("it is a directory"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[tokio::test]
    async fn only_an_absent_file_makes_a_fresh_database_and_it_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/palisade.db");
        let store = StateStore::open(&path).await.unwrap();
        store
            .write(&Batch {
                detections: vec![detection(1)],
                ..Batch::default()
            })
            .await
            .unwrap();
        store.close().await;
        let reopened = StateStore::open(&path).await.unwrap();
        assert_eq!(reopened.counts().await.unwrap(), (1, 0));
    }

    /// Opening the database again in the same process (the engine opens it for the writer,
    /// the feed puller and the learner) must leave the first connections' locks in place. A
    /// check that opened and closed the file outside SQLite dropped them (POSIX locks belong to
    /// the process): the next `sqlite3` to close took itself for the last user, removed the
    /// write-ahead log, and every later write of the engine was lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn opening_the_database_again_keeps_the_locks_of_the_open_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("palisade.db");
        let first = StateStore::open(&path).await.unwrap();
        let second = StateStore::open(&path).await.unwrap();
        for i in 0..5 {
            first
                .write(&Batch {
                    detections: vec![detection(i)],
                    ..Batch::default()
                })
                .await
                .unwrap();
            // Another process reads, and closes.
            let read = std::process::Command::new("sqlite3")
                .arg(&path)
                .arg("SELECT COUNT(*) FROM detections;")
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&read.stdout).trim(),
                (i + 1).to_string()
            );
        }
        second.close().await;
        first.close().await;
        let reopened = StateStore::open(&path).await.unwrap();
        assert_eq!(reopened.counts().await.unwrap(), (5, 0));
    }

    /// Another process holds `BEGIN EXCLUSIVE` for longer than the busy timeout: the writer
    /// waits it out and stores every batch, instead of failing and ending the engine.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lock_held_by_another_process_past_the_busy_timeout_is_waited_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("palisade.db");
        let store = StateStore::open(&path).await.unwrap();
        let mut holder = std::process::Command::new("sqlite3")
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = holder.stdin.take().unwrap();
        writeln!(stdin, "BEGIN EXCLUSIVE;\nSELECT 'locked';").unwrap();
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");

        let episodes = transient::episodes();
        let (writer, handle) = spawn_writer(store, Arc::new(Notify::new()));
        let written = tokio::spawn(async move {
            for i in 0..20 {
                writer
                    .write(Batch {
                        detections: vec![detection(i)],
                        ..Batch::default()
                    })
                    .await?;
            }
            Ok::<_, StateError>(())
        });
        // Past the 5 s busy timeout, then the lock is released.
        tokio::time::sleep(std::time::Duration::from_secs(7)).await;
        assert!(!written.is_finished(), "nothing can be stored while locked");
        writeln!(stdin, "COMMIT;").unwrap();
        drop(stdin);
        holder.wait().unwrap();
        written.await.unwrap().unwrap();
        handle.await.unwrap().unwrap();
        assert!(transient::episodes() > episodes);
        let store = StateStore::open(&path).await.unwrap();
        assert_eq!(store.counts().await.unwrap(), (20, 0));
    }
}
