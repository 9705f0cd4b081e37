//! The anchor: the trail's last row number and MAC, kept in a file outside the database and
//! rewritten after every append, so cutting rows off the end (or deleting them all) shows.
//!
//! The anchor carries its own MAC (the tag), so an attacker who can write the file but lacks the
//! key cannot write an anchor for an earlier point of the trail, even though that row's MAC is in
//! the database for anyone to read. Replaying a copy of an older anchor file is not prevented
//! here: a copy of the anchor kept off the host is what defeats that (docs/audit.md).

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::AuditError;
use super::key::{AuditKey, hex, sync_parent};

/// Far above the ~180 bytes an anchor takes.
const MAX_ANCHOR_BYTES: u64 = 4096;

/// What the anchor file holds, one JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// The last row's sequence number (0: no rows yet).
    pub seq: i64,
    /// The last row's stored hash.
    pub head: String,
    /// The first row written with the key; earlier rows predate it.
    pub keyed_from: i64,
    /// HMAC over the three fields above.
    pub tag: String,
}

/// How reading the anchor went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorState {
    Missing,
    /// Present but not an anchor this key wrote: the reason.
    Invalid(String),
    Valid(Anchor),
}

impl Anchor {
    pub fn new(key: &AuditKey, seq: i64, head: &str, keyed_from: i64) -> Anchor {
        let tag = hex(&tag(key, seq, head, keyed_from));
        Anchor {
            seq,
            head: head.to_string(),
            keyed_from,
            tag,
        }
    }

    /// Reads the anchor at `path` and checks its tag with `key`.
    pub fn read(path: &Path, key: &AuditKey) -> Result<AnchorState, AuditError> {
        // An anchor is one short line; a planted huge file is not read into memory.
        if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_ANCHOR_BYTES) {
            return Ok(AnchorState::Invalid(format!(
                "it is larger than {MAX_ANCHOR_BYTES} bytes"
            )));
        }
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(AnchorState::Missing);
            }
            Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {
                return Ok(AnchorState::Invalid("it is not UTF-8 text".into()));
            }
            Err(source) => {
                return Err(AuditError::Io {
                    path: path.display().to_string(),
                    doing: "read the audit anchor",
                    source,
                });
            }
        };
        let anchor: Anchor = match serde_json::from_str(text.trim()) {
            Ok(anchor) => anchor,
            Err(err) => return Ok(AnchorState::Invalid(format!("it is not an anchor: {err}"))),
        };
        if anchor.tag != hex(&tag(key, anchor.seq, &anchor.head, anchor.keyed_from)) {
            return Ok(AnchorState::Invalid(
                "its tag does not match: it was edited, or written with another key".into(),
            ));
        }
        Ok(AnchorState::Valid(anchor))
    }

    /// Replaces the file at `path` atomically: a temporary file beside it, written and synced,
    /// then renamed over it and the directory synced. A crash leaves the old anchor or the new.
    pub fn write(&self, path: &Path) -> Result<(), AuditError> {
        let failed = |source| AuditError::Io {
            path: path.display().to_string(),
            doing: "write the audit anchor",
            source,
        };
        let mut temporary = path.as_os_str().to_os_string();
        temporary.push(".tmp");
        let temporary = std::path::PathBuf::from(temporary);
        let mut text = serde_json::to_string(self)
            .map_err(|e| failed(std::io::Error::other(e.to_string())))?;
        text.push('\n');
        let written = std::fs::File::create(&temporary).and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        });
        written.map_err(failed)?;
        std::fs::rename(&temporary, path).map_err(failed)?;
        sync_parent(path).map_err(failed)
    }
}

/// Writes `anchor` at `path` unless the file already holds a later one (two processes
/// appending at once finish in either order) and `replace` is not set, under a lock beside it.
pub fn write_newest(
    key: &AuditKey,
    path: &Path,
    anchor: &Anchor,
    replace: bool,
) -> Result<(), AuditError> {
    let io = |source| AuditError::Io {
        path: path.display().to_string(),
        doing: "lock the audit anchor",
        source,
    };
    let mut lock_path = path.as_os_str().to_os_string();
    lock_path.push(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::path::PathBuf::from(lock_path))
        .map_err(io)?;
    lock.lock().map_err(io)?;
    if !replace
        && let AnchorState::Valid(current) = Anchor::read(path, key)?
        && current.seq > anchor.seq
    {
        return Ok(());
    }
    anchor.write(path)
}

/// What the writer thread is to do next.
#[derive(Debug, Default)]
struct Pending {
    next: Option<(Anchor, bool)>,
    busy: bool,
    stop: bool,
    /// The last write that failed, for the next append to report.
    failed: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    pending: std::sync::Mutex<Pending>,
    changed: std::sync::Condvar,
}

/// Writes anchors on a thread of its own, so an append waits for its database commit only and
/// not for the anchor's two fsyncs. Anchors handed over while a write is under way are
/// coalesced: only the newest is written. Dropping it writes what is pending first.
#[derive(Debug)]
pub struct AnchorWriter {
    shared: std::sync::Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AnchorWriter {
    pub fn start(key: AuditKey, path: std::path::PathBuf) -> Result<AnchorWriter, AuditError> {
        let shared = std::sync::Arc::new(Shared::default());
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("audit-anchor".into())
            .spawn(move || writer_loop(&theirs, &key, &path))
            .map_err(|source| AuditError::Io {
                path: String::new(),
                doing: "start the audit anchor writer",
                source,
            })?;
        Ok(AnchorWriter {
            shared,
            thread: Some(thread),
        })
    }

    /// Hands over the newest anchor; `replace` writes it even over a later one. Returns the
    /// error of an earlier write that failed, if one did.
    pub fn submit(&self, anchor: Anchor, replace: bool) -> Result<(), String> {
        let mut pending = lock(&self.shared.pending);
        if let Some(failed) = pending.failed.take() {
            return Err(failed);
        }
        let replace = replace || pending.next.as_ref().is_some_and(|(_, r)| *r);
        pending.next = Some((anchor, replace));
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Waits until everything handed over is written (blocking: call it off the async threads).
    pub fn flush(&self) {
        let mut pending = lock(&self.shared.pending);
        while pending.next.is_some() || pending.busy {
            pending = self
                .shared
                .changed
                .wait(pending)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

impl Drop for AnchorWriter {
    fn drop(&mut self) {
        lock(&self.shared.pending).stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(mutex: &std::sync::Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How often the anchor also goes to the log, for a log shipper to take off the host.
const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

fn writer_loop(shared: &Shared, key: &AuditKey, path: &Path) {
    let mut pending = lock(&shared.pending);
    let mut logged: Option<std::time::Instant> = None;
    let mut unlogged: Option<Anchor> = None;
    loop {
        if let Some((anchor, replace)) = pending.next.take() {
            pending.busy = true;
            drop(pending);
            let result = write_newest(key, path, &anchor, replace);
            if result.is_ok() {
                if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                    logged = Some(std::time::Instant::now());
                    log_anchor(&anchor);
                    unlogged = None;
                } else {
                    unlogged = Some(anchor);
                }
            }
            pending = lock(&shared.pending);
            pending.busy = false;
            if let Err(err) = result {
                tracing::error!("audit trail: {err}");
                pending.failed = Some(err.to_string());
            }
            shared.changed.notify_all();
            continue;
        }
        // Stop only once nothing is pending: what was appended gets anchored.
        if pending.stop {
            // The last anchor goes to the log too, so the shipped copy names the final row.
            if let Some(anchor) = unlogged {
                log_anchor(&anchor);
            }
            return;
        }
        pending = shared
            .changed
            .wait(pending)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

fn log_anchor(anchor: &Anchor) {
    tracing::info!(
        seq = anchor.seq,
        head = %anchor.head,
        keyed_from = anchor.keyed_from,
        tag = %anchor.tag,
        "audit anchor"
    );
}

fn tag(key: &AuditKey, seq: i64, head: &str, keyed_from: i64) -> [u8; 32] {
    key.mac(&[
        b"palisade audit anchor v1\0",
        seq.to_string().as_bytes(),
        b"\0",
        head.as_bytes(),
        b"\0",
        keyed_from.to_string().as_bytes(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anchor_round_trips_and_an_edited_one_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anchor");
        let key = AuditKey::from_bytes([7; 32]);
        assert_eq!(Anchor::read(&path, &key).unwrap(), AnchorState::Missing);
        let anchor = Anchor::new(&key, 57, "hmac:abc", 1);
        anchor.write(&path).unwrap();
        assert_eq!(
            Anchor::read(&path, &key).unwrap(),
            AnchorState::Valid(anchor.clone())
        );
        // Winding the anchor back to an earlier row needs the key.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("57", "41")).unwrap();
        assert!(matches!(
            Anchor::read(&path, &key).unwrap(),
            AnchorState::Invalid(_)
        ));
        let other = AuditKey::from_bytes([8; 32]);
        anchor.write(&path).unwrap();
        assert!(matches!(
            Anchor::read(&path, &other).unwrap(),
            AnchorState::Invalid(_)
        ));
    }
}
