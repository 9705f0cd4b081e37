//! The audit trail: what the engine and its operators intended and what happened, in SQLite,
//! append-only, each row MACed with a key kept outside the database, the end of the trail
//! anchored in a file outside it too.
//!
//! - Each row's MAC (HMAC-SHA256, `key.rs`) covers the exact bytes stored in every column, its
//!   sequence number and the previous row's hash: editing a row, even re-computing hashes,
//!   needs the key.
//! - After every append the last row's number and MAC are written to the anchor file
//!   (`anchor.rs`), tagged with the key, so cutting rows off the end or deleting them all shows.
//! - A writer that finds the anchor and the database disagreeing (rows cut off while the engine
//!   was stopped, the anchor removed) records that in the trail, in a keyed `audit-gap` row,
//!   before it appends anything: the evidence is not overwritten by the next anchor.
//! - Rows from before the key existed keep their unkeyed hashes and are checked as before; the
//!   first keyed row's MAC covers the last of them, sealing them from then on.
//!
//! `palisade audit verify` (`check.rs`) walks it all; docs/audit.md has the threat model.

mod anchor;
mod check;
mod key;

use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Row, SqlitePool};
use tokio::sync::Mutex;

use anchor::AnchorWriter;
pub use anchor::{Anchor, AnchorState};
pub use check::{Finding, Report};
pub use key::AuditKey;

use crate::state::{StateError, StateStore};

/// The hash the first row chains to.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How keyed rows' hashes begin; rows from before the key are 64 bare hex digits.
const KEYED_PREFIX: &str = "hmac:";

/// The kind of the row a writer adds when the anchor and the database disagree.
pub const GAP_KIND: &str = "audit-gap";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot {doing} `{path}`: {source}")]
    Io {
        path: String,
        doing: &'static str,
        source: std::io::Error,
    },
    #[error(
        "the audit key `{path}` can be read by others (mode {mode:04o}); anyone who can read it can forge the trail. Run `chmod 600 {path}`"
    )]
    KeyExposed { path: String, mode: u32 },
    #[error("the audit key `{path}` is not 64 hex digits; restore it from your backup")]
    KeyMalformed { path: String },
    #[error(
        "the audit key `{path}` is missing, but the trail was written with one ({evidence}); restore the key from your backup: without it the trail can be neither checked nor extended"
    )]
    KeyMissing { path: String, evidence: String },
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<sqlx::Error> for AuditError {
    fn from(err: sqlx::Error) -> AuditError {
        AuditError::State(StateError::Write(err))
    }
}

/// Where the key and the anchor of one state database are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFiles {
    pub key: PathBuf,
    pub anchor: PathBuf,
}

/// The audit trail's files outside the database. Both default to beside the state database
/// (`<state.path>.audit-key`, `<state.path>.audit-anchor`); relative paths are from the content
/// directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct AuditConfig {
    /// The HMAC key (created with mode 0600 when missing; refused when others can read it).
    /// Keep it where an attacker who can write the database cannot read it.
    pub key: Option<PathBuf>,
    /// The file rewritten after every append with the last row's number and MAC.
    pub anchor: Option<PathBuf>,
    /// The name recorded for operator commands (`operator:<name>`) when the OS user name cannot
    /// be found (no `SUDO_USER`, `USER` or `LOGNAME`, and the effective uid has no entry in
    /// /etc/passwd), as in some containers and service units.
    pub operator: Option<String>,
}

impl AuditFiles {
    /// The defaults: `<database>.audit-key` and `<database>.audit-anchor`, beside it.
    pub fn beside(database: &Path) -> AuditFiles {
        let with = |suffix: &str| {
            let mut name = database.as_os_str().to_os_string();
            name.push(suffix);
            PathBuf::from(name)
        };
        AuditFiles {
            key: with(".audit-key"),
            anchor: with(".audit-anchor"),
        }
    }

    /// The files `config` names (relative paths resolved by `resolve`), defaulting to beside the
    /// state database at `database`.
    pub fn from_config(
        config: &AuditConfig,
        database: &Path,
        resolve: impl Fn(&Path) -> PathBuf,
    ) -> AuditFiles {
        let beside = AuditFiles::beside(&resolve(database));
        AuditFiles {
            key: config.key.as_deref().map_or(beside.key, &resolve),
            anchor: config.anchor.as_deref().map_or(beside.anchor, &resolve),
        }
    }
}

/// One audit record, as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// `intent` (before an act), `outcome` (after it), `refused`, `mode`, `approval`, ...
    pub kind: String,
    /// Who: `engine:<name>` or `operator:<user>`.
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why, in full: parameters, the detection's title, severity, score and intel hits, the mode.
    #[serde(default)]
    pub details: Value,
}

/// A stored record with its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub recorded_at: String,
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// The last row as this writer last anchored it: when the database's head is still this, no
/// one else wrote or cut anything since, and the anchor file need not be read.
#[derive(Debug, Default)]
struct Tip {
    anchored: Option<(i64, String)>,
    keyed_from: i64,
}

/// The writer of one state database's audit trail. Appends are serialized so the chain stays
/// linear.
#[derive(Debug)]
pub struct AuditLog {
    pool: SqlitePool,
    turn: crate::state::WriteTurn,
    key: AuditKey,
    files: AuditFiles,
    tip: Mutex<Tip>,
    anchors: std::sync::Arc<AnchorWriter>,
}

/// The last row's number and hash (0 and the genesis hash with no rows), from the rows.
async fn last_row(pool: &SqlitePool) -> Result<(i64, String), AuditError> {
    let last: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(pool)
            .await?;
    Ok(last.unwrap_or((0, GENESIS.to_string())))
}

/// Why a trail needs its key: an anchor file or keyed rows. `None` when it never had one.
async fn keyed_evidence(
    pool: &SqlitePool,
    files: &AuditFiles,
) -> Result<Option<String>, AuditError> {
    if files.anchor.exists() {
        return Ok(Some(format!(
            "its anchor `{}` exists",
            files.anchor.display()
        )));
    }
    let keyed: i64 = sqlx::query_scalar("SELECT count(*) FROM audit WHERE hash LIKE 'hmac:%'")
        .fetch_one(pool)
        .await?;
    Ok((keyed > 0).then(|| format!("{keyed} keyed row(s)")))
}

impl AuditLog {
    /// Opens the trail for writing. The first time, this creates the key (mode 0600) and the
    /// anchor; rows already there (written before keys existed) stay as they are and the next
    /// row seals them. A trail written with a key whose key file is gone is an error.
    pub async fn open(state: &StateStore, files: &AuditFiles) -> Result<AuditLog, AuditError> {
        let pool = state.pool().clone();
        let key = match AuditKey::load(&files.key)? {
            Some(key) => key,
            None => {
                if let Some(evidence) = keyed_evidence(&pool, files).await? {
                    return Err(AuditError::KeyMissing {
                        path: files.key.display().to_string(),
                        evidence,
                    });
                }
                let key = AuditKey::create(&files.key)?;
                let (seq, head) = last_row(&pool).await?;
                if !files.anchor.exists() {
                    anchor::write_newest(
                        &key,
                        &files.anchor,
                        &Anchor::new(&key, seq, &head, seq + 1),
                        false,
                    )?;
                }
                if seq > 0 {
                    tracing::info!(
                        key = %files.key.display(),
                        "created the audit key; rows 1-{seq} were written before it and are sealed by the next row"
                    );
                }
                key
            }
        };
        Ok(AuditLog {
            pool,
            turn: state.write_turn().clone(),
            anchors: std::sync::Arc::new(AnchorWriter::start(key.clone(), files.anchor.clone())?),
            key,
            files: files.clone(),
            tip: Mutex::new(Tip::default()),
        })
    }

    /// Appends entries in one transaction and returns their sequence numbers. When this
    /// returns, they are durable (an intent is on disk before the act it announces) and the
    /// anchor naming them is being written; [`AuditLog::flush`] waits for it.
    ///
    /// A busy or locked database (another process holds its lock) is waited for: the
    /// transaction rolled back, and it is tried again until it goes through.
    pub async fn append(&self, entries: &[AuditEntry]) -> Result<Vec<i64>, StateError> {
        crate::state::transient::retry(
            "appending to the audit trail",
            StateError::is_transient,
            || async {
                let _turn = self.turn.take().await;
                let mut conn = self.pool.acquire().await?;
                let result =
                    self.append_checked(&mut conn, entries)
                        .await
                        .map_err(|err| match err {
                            AuditError::State(err) => err,
                            other => StateError::Failed(other.to_string()),
                        });
                if result.as_ref().is_err_and(StateError::is_transient) {
                    crate::state::transient::discard(&mut conn);
                }
                result
            },
        )
        .await
    }

    async fn append_checked(
        &self,
        conn: &mut sqlx::SqliteConnection,
        entries: &[AuditEntry],
    ) -> Result<Vec<i64>, AuditError> {
        let mut tip = self.tip.lock().await;
        // IMMEDIATE: this transaction reads the head and then writes; taking the write lock
        // first makes a concurrent writer wait (busy timeout) instead of failing the upgrade.
        let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
        let last: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        let (mut seq, mut prev) = last.unwrap_or((0, GENESIS.to_string()));
        let mut gap = None;
        if tip.anchored.as_ref() != Some(&(seq, prev.clone())) {
            // Another process appended, or the rows changed under us: the anchor file says
            // which, once our own anchors are written.
            let anchors = self.anchors.clone();
            let _ = tokio::task::spawn_blocking(move || anchors.flush()).await;
            let (problem, keyed_from) = self.reconcile(&mut tx, seq, &prev).await?;
            tip.keyed_from = keyed_from;
            if let Some(problem) = problem {
                tracing::error!("audit trail: {problem}");
                gap = Some(AuditEntry {
                    kind: GAP_KIND.into(),
                    actor: entries
                        .first()
                        .map(|e| e.actor.clone())
                        .unwrap_or_else(|| "engine".into()),
                    reason: Some(problem),
                    details: serde_json::json!({"database_ends_at": seq}),
                    ..AuditEntry::default()
                });
            }
        }
        let gap_recorded = gap.is_some();
        let mut written = Vec::with_capacity(entries.len());
        let mut rows = Vec::with_capacity(entries.len() + 1);
        for (is_entry, entry) in gap
            .iter()
            .map(|e| (false, e))
            .chain(entries.iter().map(|e| (true, e)))
        {
            seq += 1;
            let recorded_at = jiff::Timestamp::now().to_string();
            let details = entry.details.to_string();
            let fields: [Option<&[u8]>; 12] = [
                Some(recorded_at.as_bytes()),
                Some(entry.kind.as_bytes()),
                Some(entry.actor.as_bytes()),
                entry.event_id.as_deref().map(str::as_bytes),
                entry.rule.as_deref().map(str::as_bytes),
                entry.playbook.as_deref().map(str::as_bytes),
                entry.step.as_deref().map(str::as_bytes),
                entry.action.as_deref().map(str::as_bytes),
                entry.target.as_deref().map(str::as_bytes),
                entry.status.as_deref().map(str::as_bytes),
                entry.reason.as_deref().map(str::as_bytes),
                Some(details.as_bytes()),
            ];
            let hash = check::row_mac(&self.key, seq, &fields, prev.as_bytes());
            let prev_hash = std::mem::replace(&mut prev, hash.clone());
            rows.push((seq, recorded_at, entry, details, prev_hash, hash));
            if is_entry {
                written.push(seq);
            }
        }
        // Multi-row INSERTs: one statement per 60 rows (15 columns, under SQLite's variable limit).
        for chunk in rows.chunks(60) {
            let mut insert: sqlx::QueryBuilder<sqlx::Sqlite> = sqlx::QueryBuilder::new(
                "INSERT INTO audit (seq, recorded_at, kind, actor, event_id, rule, playbook, step, action, target, status, reason, details, prev_hash, hash) ",
            );
            insert.push_values(
                chunk,
                |mut row, (seq, recorded_at, entry, details, prev_hash, hash)| {
                    row.push_bind(*seq)
                        .push_bind(recorded_at.clone())
                        .push_bind(entry.kind.clone())
                        .push_bind(entry.actor.clone())
                        .push_bind(entry.event_id.clone())
                        .push_bind(entry.rule.clone())
                        .push_bind(entry.playbook.clone())
                        .push_bind(entry.step.clone())
                        .push_bind(entry.action.clone())
                        .push_bind(entry.target.clone())
                        .push_bind(entry.status.clone())
                        .push_bind(entry.reason.clone())
                        .push_bind(details.clone())
                        .push_bind(prev_hash.clone())
                        .push_bind(hash.clone());
                },
            );
            insert.build().execute(&mut *tx).await?;
        }
        // Kept for trails read by older builds; the anchor is what verify trusts.
        sqlx::query("INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash")
            .bind(seq)
            .bind(&prev)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // After the commit: a crash in between leaves rows past the anchor, which verify
        // accepts (they carry MACs), never an anchor past the rows. After a recorded break the
        // anchor is replaced even though it named a later row: the break is in the trail now.
        let anchor = Anchor::new(&self.key, seq, &prev, tip.keyed_from);
        self.anchors
            .submit(anchor, gap_recorded)
            .map_err(|failed| AuditError::State(StateError::Failed(failed)))?;
        tip.anchored = Some((seq, prev));
        Ok(written)
    }

    /// Waits until the anchor names the last row this writer appended.
    pub async fn flush(&self) {
        let anchors = self.anchors.clone();
        let _ = tokio::task::spawn_blocking(move || anchors.flush()).await;
    }

    /// Compares the anchor file with the database's last row. Returns what is wrong, if
    /// anything, and the row the keyed chain began at.
    async fn reconcile(
        &self,
        tx: &mut sqlx::SqliteConnection,
        seq: i64,
        head: &str,
    ) -> Result<(Option<String>, i64), AuditError> {
        let first_keyed: Option<i64> =
            sqlx::query_scalar("SELECT min(seq) FROM audit WHERE hash LIKE 'hmac:%'")
                .fetch_one(&mut *tx)
                .await?;
        let fallback = first_keyed.unwrap_or(seq + 1);
        let anchor = match Anchor::read(&self.files.anchor, &self.key)? {
            AnchorState::Valid(anchor) => anchor,
            AnchorState::Missing => {
                return Ok((
                    Some(format!(
                        "the anchor file was missing when this row was written (the database ended at row {seq}): rows cut from the end before it cannot be ruled out"
                    )),
                    fallback,
                ));
            }
            AnchorState::Invalid(why) => {
                return Ok((
                    Some(format!(
                        "the anchor file was not valid when this row was written ({why}; the database ended at row {seq}): rows cut from the end before it cannot be ruled out"
                    )),
                    fallback,
                ));
            }
        };
        let keyed_from = anchor.keyed_from;
        if anchor.seq == seq && anchor.head == head {
            return Ok((None, keyed_from));
        }
        if anchor.seq > seq {
            return Ok((
                Some(if seq == 0 {
                    format!(
                        "when this row was written every earlier row had been deleted: the anchor said the trail ended at {}",
                        anchor.seq
                    )
                } else {
                    format!(
                        "when this row was written rows {}-{} were missing: the anchor said the trail ended at {}",
                        seq + 1,
                        anchor.seq,
                        anchor.seq
                    )
                }),
                keyed_from,
            ));
        }
        // The database is ahead of the anchor (a crash between commit and anchor, or another
        // writer between the two): fine if the anchored row is still the one anchored.
        let anchored: Option<String> = sqlx::query_scalar("SELECT hash FROM audit WHERE seq = ?")
            .bind(anchor.seq)
            .fetch_optional(&mut *tx)
            .await?;
        let same = match anchored {
            Some(hash) => hash == anchor.head,
            None => anchor.seq == 0,
        };
        Ok((
            (!same).then(|| {
                format!(
                    "when this row was written row {} was not the row the anchor recorded: the trail was cut back and rewritten",
                    anchor.seq
                )
            }),
            keyed_from,
        ))
    }
}

/// Creates the key and an anchor for an empty trail when there is no key yet (`palisade init`).
/// Returns whether it created them.
pub fn create_key(files: &AuditFiles) -> Result<bool, AuditError> {
    if AuditKey::load(&files.key)?.is_some() {
        return Ok(false);
    }
    let key = AuditKey::create(&files.key)?;
    Anchor::new(&key, 0, GENESIS, 1).write(&files.anchor)?;
    Ok(true)
}

/// Reading the trail: no key needed to list it, the key and anchor to check it.
#[derive(Debug, Clone)]
pub struct AuditReader {
    pool: SqlitePool,
}

impl AuditReader {
    pub fn new(state: &StateStore) -> AuditReader {
        AuditReader {
            pool: state.pool().clone(),
        }
    }

    /// The last `count` records, oldest first.
    pub async fn tail(&self, count: i64) -> Result<Vec<AuditRecord>, StateError> {
        let mut records = self.records(Some(count)).await?;
        records.reverse();
        Ok(records)
    }

    /// Every record, oldest first (newest first and limited when `limit` is given).
    pub async fn records(&self, limit: Option<i64>) -> Result<Vec<AuditRecord>, StateError> {
        let query = match limit {
            Some(_) => "SELECT * FROM audit ORDER BY seq DESC LIMIT ?",
            None => "SELECT * FROM audit ORDER BY seq ASC",
        };
        let mut q = sqlx::query(query);
        if let Some(limit) = limit {
            q = q.bind(limit);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|row| -> Result<AuditRecord, StateError> {
                let details: String = row.try_get("details")?;
                Ok(AuditRecord {
                    seq: row.try_get("seq")?,
                    recorded_at: row.try_get("recorded_at")?,
                    entry: AuditEntry {
                        kind: row.try_get("kind")?,
                        actor: row.try_get("actor")?,
                        event_id: row.try_get("event_id")?,
                        rule: row.try_get("rule")?,
                        playbook: row.try_get("playbook")?,
                        step: row.try_get("step")?,
                        action: row.try_get("action")?,
                        target: row.try_get("target")?,
                        status: row.try_get("status")?,
                        reason: row.try_get("reason")?,
                        details: serde_json::from_str(&details).unwrap_or(Value::String(details)),
                    },
                    prev_hash: row.try_get("prev_hash")?,
                    hash: row.try_get("hash")?,
                })
            })
            .collect()
    }

    /// Checks every row against its MAC (or, before the key, its hash) and its link, the
    /// numbering for gaps, and the end of the trail against the anchor. Reads the stored bytes
    /// of each column, not a re-serialization. A trail that was written with a key is an error
    /// without it.
    pub async fn verify(&self, files: &AuditFiles) -> Result<Report, AuditError> {
        let key = AuditKey::load(&files.key)?;
        if key.is_none()
            && let Some(evidence) = keyed_evidence(&self.pool, files).await?
        {
            return Err(AuditError::KeyMissing {
                path: files.key.display().to_string(),
                evidence,
            });
        }
        let anchor = match &key {
            Some(key) => Some(Anchor::read(&files.anchor, key)?),
            None => None,
        };
        let valid = match &anchor {
            Some(AnchorState::Valid(anchor)) => Some(anchor),
            _ => None,
        };
        let mut checker = check::Checker::new(key.as_ref(), valid);
        // Every column as its stored bytes (CAST AS BLOB keeps text byte for byte), then the
        // stored types: the order of `check::COLUMNS`, then `prev_hash` and `hash`.
        const QUERY: &str = "SELECT seq, \
            CAST(recorded_at AS BLOB), CAST(kind AS BLOB), CAST(actor AS BLOB), \
            CAST(event_id AS BLOB), CAST(rule AS BLOB), CAST(playbook AS BLOB), \
            CAST(step AS BLOB), CAST(action AS BLOB), CAST(target AS BLOB), \
            CAST(status AS BLOB), CAST(reason AS BLOB), CAST(details AS BLOB), \
            CAST(prev_hash AS BLOB), CAST(hash AS BLOB), \
            typeof(recorded_at) || ',' || typeof(kind) || ',' || typeof(actor) || ',' || \
            typeof(event_id) || ',' || typeof(rule) || ',' || typeof(playbook) || ',' || \
            typeof(step) || ',' || typeof(action) || ',' || typeof(target) || ',' || \
            typeof(status) || ',' || typeof(reason) || ',' || typeof(details) || ',' || \
            typeof(prev_hash) || ',' || typeof(hash) \
            FROM audit ORDER BY seq";
        let mut rows = sqlx::query(QUERY).fetch(&self.pool);
        let width = check::COLUMNS.len();
        while let Some(row) = rows.try_next().await? {
            let mut fields = Vec::with_capacity(width);
            for i in 1..=width {
                fields.push(row.try_get::<Option<Vec<u8>>, _>(i)?);
            }
            let types: String = row.try_get(width + 3)?;
            checker.row(&check::StoredRow {
                seq: row.try_get(0)?,
                fields,
                prev_hash: row.try_get(width + 1)?,
                hash: row.try_get(width + 2)?,
                types: types.split(',').map(str::to_string).collect(),
            });
        }
        drop(rows);
        let head: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(checker.finish(anchor.as_ref(), head))
    }
}

/// `operator:<user>` for commands a person runs. The user is the first name found of: the one
/// `sudo` records (`SUDO_USER`), `USER`, `LOGNAME`, the effective uid's entry in /etc/passwd,
/// then `configured` (`audit.operator`); `operator:unknown` only when there is none of them.
pub fn operator(configured: Option<&str>) -> String {
    operator_from(
        |name| std::env::var(name).ok(),
        effective_user_name,
        configured,
    )
}

/// [`operator`] with its sources given, so the order of the fallbacks can be tested.
fn operator_from(
    env: impl Fn(&str) -> Option<String>,
    passwd: impl FnOnce() -> Option<String>,
    configured: Option<&str>,
) -> String {
    let from_env = ["SUDO_USER", "USER", "LOGNAME"]
        .into_iter()
        .find_map(|name| env(name).filter(|v| usable_name(v)));
    let user = from_env
        .or_else(passwd)
        .or_else(|| {
            configured
                .map(str::trim)
                .filter(|v| usable_name(v))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into());
    format!("operator:{user}")
}

/// A name fit to stand in the audit trail: not empty, one line, no control characters.
fn usable_name(name: &str) -> bool {
    !name.trim().is_empty() && !name.chars().any(char::is_control)
}

/// The name of the effective uid from /etc/passwd, read without a libc binding: the uid from
/// /proc/self/status (Linux; elsewhere there is none and the next fallback is used).
fn effective_user_name() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    // `Uid:` lists the real, effective, saved and filesystem uids.
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        (fields.next()? == uid && usable_name(name)).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests;
