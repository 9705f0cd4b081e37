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
