//! State that outlives the process, in one SQLite file: what the engine detected and decided.
//!
//! One owner task writes ([`spawn_writer`]); the pipeline hands it batches over a channel, and it
//! writes each batch as multi-row INSERTs in one transaction (row-by-row inserts through sqlx
//! measured ~15k rows/s on this class of machine, batched ~190k/s). The file is in WAL mode so
//! operator commands can read it while the engine writes.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::actions::ActionRecord;
use crate::detection::Detection;

pub mod correlation;
pub mod rows;
pub mod transient;

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
                err.is_transient()
                    && (!err.is_cannot_open() || started.elapsed() < CANNOT_OPEN_PATIENCE)
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
            .connect_with(options)
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
        Ok(StateStore { pool })
    }

    /// The connection pool, for other owners of tables in the same file (the intel store).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Writes one batch in one transaction.
    pub async fn write(&self, batch: &Batch) -> Result<(), StateError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await?;
        let result = write_on(&mut conn, batch).await;
        if result.as_ref().is_err_and(StateError::is_transient) {
            transient::discard(&mut conn);
        }
        result
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

    pub async fn close(self) {
        self.pool.close().await;
    }
}

/// [`StateStore::write`] on one connection.
async fn write_on(conn: &mut sqlx::SqliteConnection, batch: &Batch) -> Result<(), StateError> {
    let now = jiff::Timestamp::now().to_string();
    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
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
        insert.build().execute(&mut *tx).await?;
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
        insert.build().execute(&mut *tx).await?;
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
        insert.build().execute(&mut *tx).await?;
    }
    for (detector, key, at) in &batch.reported {
        sqlx::query("INSERT OR REPLACE INTO tracker_reported (detector, key, at) VALUES (?, ?, ?)")
            .bind(detector)
            .bind(key)
            .bind(at)
            .execute(&mut *tx)
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
        upsert.build().execute(&mut *tx).await?;
    }
    correlation::write_windows(&mut tx, &batch.correlation).await?;
    write_sample(&mut tx, &batch.sample, &batch.sample_state).await?;
    if let Some(horizon) = batch.behaviour_horizon {
        sqlx::query("DELETE FROM behaviour WHERE ts < ?")
            .bind(horizon)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM behaviour_days WHERE day < ?")
            .bind(horizon.div_euclid(86_400_000))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

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

/// One unit of work for the writer: a batch, and who to tell when it is stored.
struct Job {
    batch: Batch,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// The handle sources use to hand batches to the writer task.
#[derive(Clone)]
pub struct StateWriter {
    jobs: mpsc::Sender<Job>,
}

impl StateWriter {
    /// Batches waiting for the writer.
    pub fn queued(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    /// Queues a batch without waiting for it to be stored.
    pub async fn send(&self, batch: Batch) -> Result<(), StateError> {
        self.jobs
            .send(Job { batch, done: None })
            .await
            .map_err(|_| StateError::WriterGone)
    }

    /// Queues a batch from a blocking thread.
    pub fn blocking_send(&self, batch: Batch) -> Result<(), StateError> {
        self.jobs
            .blocking_send(Job { batch, done: None })
            .map_err(|_| StateError::WriterGone)
    }

    /// Queues a batch and waits until it is committed: a source acknowledges its input only
    /// after this returns.
    pub async fn write(&self, batch: Batch) -> Result<(), StateError> {
        let (done, stored) = oneshot::channel();
        self.jobs
            .send(Job {
                batch,
                done: Some(done),
            })
            .await
            .map_err(|_| StateError::WriterGone)?;
        match stored.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StateError::Failed(message)),
            Err(_) => Err(StateError::WriterGone),
        }
    }
}

/// Starts the single writer task. Batches queued while the writer is busy are coalesced into
/// one transaction. The task ends, having written every batch already queued, when every
/// [`StateWriter`] is dropped or `shutdown` is notified; it returns how many transactions it
/// wrote.
pub fn spawn_writer(
    store: StateStore,
    shutdown: Arc<Notify>,
) -> (StateWriter, JoinHandle<Result<u64, StateError>>) {
    let (sender, mut receiver) = mpsc::channel::<Job>(1024);
    let handle = tokio::spawn(async move {
        let mut written = 0u64;
        loop {
            let first = tokio::select! {
                biased;
                next = receiver.recv() => match next {
                    Some(job) => job,
                    None => break,
                },
                () = shutdown.notified() => {
                    // No new batches; the ones already queued are still received and written.
                    receiver.close();
                    continue;
                }
            };
            let mut batch = first.batch;
            let mut waiting: Vec<oneshot::Sender<Result<(), String>>> =
                first.done.into_iter().collect();
            while batch.rows() < 10 * ROWS_PER_STATEMENT {
                match receiver.try_recv() {
                    Ok(more) => {
                        batch.absorb(more.batch);
                        waiting.extend(more.done);
                    }
                    Err(_) => break,
                }
            }
            // Busy or locked (another process holds the lock): wait and write the same batch
            // again; whoever waits for it waits too, so nothing new is read meanwhile.
            let result = transient::retry("writing a batch", StateError::is_transient, || {
                store.write(&batch)
            })
            .await;
            let reply = result.as_ref().map(|_| ()).map_err(ToString::to_string);
            for done in waiting {
                let _ = done.send(reply.clone());
            }
            result?;
            written += 1;
        }
        store.close().await;
        Ok(written)
    });
    (StateWriter { jobs: sender }, handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Write};

    fn detection(id: usize) -> DetectionRow {
        DetectionRow {
            detection: Detection {
                event_id: format!("ev-{id}"),
                rule: "test-rule".into(),
                stage: crate::detection::Stage::Rule,
                severity: crate::detection::Severity::High,
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
