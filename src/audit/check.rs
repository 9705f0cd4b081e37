//! Verifying the trail, as a pure function of the stored rows, the key and the anchor.
//!
//! Every keyed row carries a MAC over its exact stored bytes, its sequence number and the
//! previous row's hash, so each row is checked on its own: an edited row is reported by number,
//! not as "everything after row 12". Gaps in the numbering are missing rows, and the anchor says
//! where the trail must end. Rows written before the key existed ("legacy") are checked the way
//! they always were (unkeyed SHA-256), and the first keyed row's MAC covers the last legacy
//! row's hash, which seals them.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::anchor::{Anchor, AnchorState};
use super::key::{AuditKey, hex};
use super::{AuditEntry, GAP_KIND, GENESIS, KEYED_PREFIX};

/// The columns a row's MAC covers, in order, after its sequence number; then `prev_hash`.
pub const COLUMNS: [&str; 12] = [
    "recorded_at",
    "kind",
    "actor",
    "event_id",
    "rule",
    "playbook",
    "step",
    "action",
    "target",
    "status",
    "reason",
    "details",
];

/// Columns that are never NULL as the engine writes them.
const REQUIRED: [&str; 4] = ["recorded_at", "kind", "actor", "details"];

/// One row as stored: every column's exact bytes and SQLite type.
#[derive(Debug, Clone)]
pub struct StoredRow {
    pub seq: i64,
    /// The [`COLUMNS`], in order; `None` for NULL.
    pub fields: Vec<Option<Vec<u8>>>,
    pub prev_hash: Option<Vec<u8>>,
    pub hash: Option<Vec<u8>>,
    /// `typeof()` of the [`COLUMNS`], then `prev_hash` and `hash`.
    pub types: Vec<String>,
}

/// The MAC of a keyed row: `hmac:` and 64 hex digits. Each field is framed (NULL or length and
/// bytes), so moving text from one field to the next changes the MAC.
pub fn row_mac(key: &AuditKey, seq: i64, fields: &[Option<&[u8]>], prev_hash: &[u8]) -> String {
    let seq = seq.to_string();
    let mut parts: Vec<&[u8]> = Vec::with_capacity(3 + 2 * fields.len() + 2);
    let mut lengths: Vec<[u8; 9]> = Vec::with_capacity(fields.len() + 1);
    for field in fields
        .iter()
        .copied()
        .chain(std::iter::once(Some(prev_hash)))
    {
        let mut frame = [0u8; 9];
        if let Some(bytes) = field {
            frame[0] = 1;
            frame[1..].copy_from_slice(&(bytes.len() as u64).to_be_bytes());
        }
        lengths.push(frame);
    }
    parts.push(b"palisade audit row v1\0");
    parts.push(seq.as_bytes());
    for (field, frame) in fields
        .iter()
        .copied()
        .chain(std::iter::once(Some(prev_hash)))
        .zip(&lengths)
    {
        parts.push(frame);
        if let Some(bytes) = field {
            parts.push(bytes);
        }
    }
    format!("{KEYED_PREFIX}{}", hex(&key.mac(&parts)))
}

/// The unkeyed hash rows had before the key: SHA-256 over the previous hash and a JSON array of
/// the fields, with `details` re-serialized.
pub fn legacy_digest(prev_hash: &str, seq: i64, recorded_at: &str, entry: &AuditEntry) -> String {
    let content = serde_json::json!([
        seq,
        recorded_at,
        entry.kind,
        entry.actor,
        entry.event_id,
        entry.rule,
        entry.playbook,
        entry.step,
        entry.action,
        entry.target,
        entry.status,
        entry.reason,
        entry.details.to_string(),
    ]);
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(content.to_string().as_bytes());
    hex(&hasher.finalize())
}

/// What is wrong, for a run of rows or the trail as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Rows `first..=last` are not there.
    Missing {
        first: i64,
        last: i64,
        because: Option<String>,
    },
    /// Rows `first..=last` are not what was written; `why` is about the first of them.
    Changed { first: i64, last: i64, why: String },
    /// The anchor says there were rows, and none are left.
    AllDeleted { anchored: i64 },
    /// The anchor file is missing or not one this key wrote.
    Anchor(String),
    /// A writer found the anchor and the database disagreeing and recorded it in this row.
    Recorded { seq: i64, what: String },
    /// Rows without a MAC and no keyed row after them: nothing proves them.
    Unsealed { last: i64 },
}

fn rows(first: i64, last: i64) -> String {
    if first == last {
        format!("row {first}")
    } else {
        format!("rows {first}-{last}")
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Missing {
                first,
                last,
                because,
            } => {
                write!(f, "{} missing", rows(*first, *last))?;
                if let Some(because) = because {
                    write!(f, " ({because})")?;
                }
                Ok(())
            }
            Finding::Changed { first, last, why } => {
                write!(f, "{} changed: {why}", rows(*first, *last))
            }
            Finding::AllDeleted { anchored } => write!(
                f,
                "all rows deleted (the anchor says the trail ends at {anchored})"
            ),
            Finding::Anchor(problem) => f.write_str(problem),
            Finding::Recorded { seq, what } => write!(f, "row {seq} records a break: {what}"),
            Finding::Unsealed { last } => write!(
                f,
                "{} unkeyed and no keyed row seals them: anyone who can write the database could have rewritten them (the next row written with the key seals them as they are now)",
                if *last == 1 {
                    "row 1 is".to_string()
                } else {
                    format!("rows 1-{last} are")
                }
            ),
        }
    }
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Rows present.
    pub rows: i64,
    /// The highest sequence number present (0 with no rows).
    pub last: i64,
    /// Rows present that were written before the key existed.
    pub legacy_rows: i64,
    /// The first row written with the key, when there is one.
    pub keyed_from: Option<i64>,
    /// Where the anchor says the trail ends, when there is a valid anchor.
    pub anchored: Option<i64>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn intact(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Walks rows in sequence order; [`Checker::finish`] adds what only the end can tell.
#[derive(Debug)]
pub struct Checker<'a> {
    key: Option<&'a AuditKey>,
    anchor: Option<&'a Anchor>,
    expected: i64,
    /// The stored hash of the row just before, when that row is present.
    previous: Option<(i64, Vec<u8>)>,
    /// The anchor's row's stored hash, once seen.
    anchored_hash: Option<Vec<u8>>,
    report: Report,
}

impl<'a> Checker<'a> {
    pub fn new(key: Option<&'a AuditKey>, anchor: Option<&'a Anchor>) -> Checker<'a> {
        Checker {
            key,
            anchor,
            expected: 1,
            previous: None,
            anchored_hash: None,
            report: Report {
                anchored: anchor.map(|a| a.seq),
                ..Report::default()
            },
        }
    }

    fn changed(&mut self, seq: i64, why: String) {
        if let Some(Finding::Changed { last, .. }) = self.report.findings.last_mut()
            && (*last == seq || *last + 1 == seq)
        {
            *last = seq;
            return;
        }
        self.report.findings.push(Finding::Changed {
            first: seq,
            last: seq,
            why,
        });
    }

    fn already_changed(&self, seq: i64) -> bool {
        matches!(self.report.findings.last(), Some(Finding::Changed { last, .. }) if *last == seq)
    }

    pub fn row(&mut self, row: &StoredRow) {
        if row.seq > self.expected {
            self.report.findings.push(Finding::Missing {
                first: self.expected,
                last: row.seq - 1,
                because: None,
            });
            self.previous = None;
        }
        self.expected = row.seq.saturating_add(1);
        self.report.rows += 1;
        self.report.last = row.seq;
        if self.anchor.is_some_and(|a| a.seq == row.seq) {
            self.anchored_hash = row.hash.clone();
        }
        let hash = row.hash.clone().unwrap_or_default();
        let keyed = hash.starts_with(KEYED_PREFIX.as_bytes());
        let prev = row.prev_hash.clone().unwrap_or_default();
        // The link: this row names the hash of the row before it. When it does not, that row
        // is not the one this row was written after.
        let link_broken = match &self.previous {
            Some((_, previous)) => *previous != prev,
            None if row.seq == 1 => prev != GENESIS.as_bytes(),
            None => false,
        };
        let problem = self.content_problem(row, keyed, &prev);
        // A row whose own content checks out but whose link does not: the row before it is
        // not the one it was written after. (When this row fails its own check, its link may
        // be what was edited, so nothing is said about the row before.)
        if link_broken && problem.is_none() && row.seq > 1 && !self.already_changed(row.seq - 1) {
            self.changed(
                row.seq - 1,
                format!("row {}'s link to it does not match its hash", row.seq),
            );
        }
        if let Some(problem) = problem {
            self.changed(row.seq, problem);
        } else if keyed && row.fields.get(1).and_then(Option::as_deref) == Some(GAP_KIND.as_bytes())
        {
            // Genuine (its MAC checks out): a writer saw rows vanish or the anchor go.
            let what = row
                .fields
                .get(10)
                .and_then(Option::as_deref)
                .map(|r| String::from_utf8_lossy(r).into_owned())
                .unwrap_or_default();
            self.report
                .findings
                .push(Finding::Recorded { seq: row.seq, what });
        } else if link_broken && row.seq == 1 {
            self.changed(1, "it does not link to the start of the trail".into());
        }
        if keyed {
            self.report.keyed_from.get_or_insert(row.seq);
        } else {
            self.report.legacy_rows += 1;
        }
        self.previous = Some((row.seq, hash));
    }

    /// Why the row's content is not what was written, if it is not.
    fn content_problem(&self, row: &StoredRow, keyed: bool, prev: &[u8]) -> Option<String> {
        let names = COLUMNS.iter().chain(["prev_hash", "hash"].iter());
        for (name, kind) in names.zip(&row.types) {
            let nullable = !REQUIRED.contains(name) && !name.ends_with("hash");
            if kind != "text" && !(nullable && kind == "null") {
                return Some(format!(
                    "its `{name}` column holds a {kind} value, not text"
                ));
            }
        }
        let fields: Vec<Option<&[u8]>> = row.fields.iter().map(Option::as_deref).collect();
        if keyed {
            let Some(key) = self.key else {
                return Some("it is keyed, and there is no key to check it with".into());
            };
            let hash = row.hash.as_deref().unwrap_or_default();
            if row_mac(key, row.seq, &fields, prev).as_bytes() != hash {
                return Some("its content does not match its MAC".into());
            }
            return None;
        }
        let keyed_from = self.report.keyed_from.or(self.anchor.map(|a| a.keyed_from));
        if let Some(start) = keyed_from
            && row.seq >= start
        {
            return Some(format!(
                "it is in the unkeyed form, but the keyed chain began at row {start}"
            ));
        }
        legacy_problem(
            row.seq,
            &fields,
            prev,
            row.hash.as_deref().unwrap_or_default(),
        )
    }

    /// The verdict. `head` is the `audit_head` row, consulted only without a valid anchor
    /// (trails from before the key); `anchor` is what reading the anchor file gave, `None`
    /// when there is no key to read it with.
    pub fn finish(mut self, anchor: Option<&AnchorState>, head: Option<(i64, String)>) -> Report {
        let last = self.report.last;
        // Old rows are only as good as the keyed row after them; without one (a trail from
        // before the key, or one rewritten in that form after the key and anchor were
        // deleted) the checks below prove nothing.
        if self.report.keyed_from.is_none() && self.report.legacy_rows > 0 {
            self.report.findings.push(Finding::Unsealed { last });
        }
        match (anchor, self.anchor) {
            (_, Some(anchor)) if anchor.seq > 0 => {
                if self.report.rows == 0 {
                    self.report.findings.push(Finding::AllDeleted {
                        anchored: anchor.seq,
                    });
                } else if last < anchor.seq {
                    self.report.findings.push(Finding::Missing {
                        first: last + 1,
                        last: anchor.seq,
                        because: Some(format!(
                            "the anchor says the trail ends at {}",
                            anchor.seq
                        )),
                    });
                } else if let Some(hash) = &self.anchored_hash
                    && *hash != anchor.head.as_bytes()
                    && !self.is_changed(anchor.seq)
                {
                    self.report.findings.push(Finding::Changed {
                        first: anchor.seq,
                        last: anchor.seq,
                        why: "the anchor recorded another hash for it".into(),
                    });
                }
            }
            (_, Some(_)) => {}
            (Some(AnchorState::Missing), None) => self.report.findings.push(Finding::Anchor(
                "the anchor file is missing: it is rewritten after every append, so it was removed, and the end of the trail cannot be checked".into(),
            )),
            (Some(AnchorState::Invalid(why)), None) => self
                .report
                .findings
                .push(Finding::Anchor(format!("the anchor file was tampered with: {why}"))),
            (Some(AnchorState::Valid(_)) | None, None) => {
                // No key: the head record beside the rows is all there is.
                match head {
                    Some((seq, _)) if seq > last => {
                        self.report.findings.push(if self.report.rows == 0 {
                            Finding::AllDeleted { anchored: seq }
                        } else {
                            Finding::Missing {
                                first: last + 1,
                                last: seq,
                                because: Some(format!(
                                    "the head record says the trail ends at {seq}"
                                )),
                            }
                        })
                    }
                    Some((seq, hash))
                        if seq == last
                            && self.previous.as_ref().is_some_and(|(_, h)| *h != hash.as_bytes())
                            && !self.is_changed(seq) =>
                    {
                        self.report.findings.push(Finding::Changed {
                            first: seq,
                            last: seq,
                            why: "the head record names another hash for it".into(),
                        })
                    }
                    None if self.report.rows > 0 => self
                        .report
                        .findings
                        .push(Finding::Anchor("the head record is missing".into())),
                    _ => {}
                }
            }
        }
        self.report
    }

    fn is_changed(&self, seq: i64) -> bool {
        self.report.findings.iter().any(
            |f| matches!(f, Finding::Changed { first, last, .. } if (*first..=*last).contains(&seq)),
        )
    }
}

/// Checks a row written before the key: the unkeyed digest, and that `details` is exactly the
/// JSON the engine writes (one serialization, no duplicated keys), since that digest covers a
/// re-serialization and not the stored text.
fn legacy_problem(seq: i64, fields: &[Option<&[u8]>], prev: &[u8], hash: &[u8]) -> Option<String> {
    let text = |i: usize| -> Result<Option<String>, String> {
        match fields.get(i).copied().flatten() {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.to_vec())
                .map(Some)
                .map_err(|_| format!("its `{}` column is not UTF-8", COLUMNS[i])),
        }
    };
    let read = || -> Result<(String, AuditEntry), String> {
        let details = text(11)?.unwrap_or_default();
        let parsed: Value =
            serde_json::from_str(&details).map_err(|_| "its details are not JSON".to_string())?;
        // Not `parsed != details`: a JSON value equals a string only when it is that string.
        let canonical = parsed.to_string();
        if canonical != details {
            return Err(
                "its details are not the JSON the engine wrote (a key is repeated or the text was reformatted)"
                    .into(),
            );
        }
        let entry = AuditEntry {
            kind: text(1)?.unwrap_or_default(),
            actor: text(2)?.unwrap_or_default(),
            event_id: text(3)?,
            rule: text(4)?,
            playbook: text(5)?,
            step: text(6)?,
            action: text(7)?,
            target: text(8)?,
            status: text(9)?,
            reason: text(10)?,
            details: parsed,
        };
        Ok((text(0)?.unwrap_or_default(), entry))
    };
    let (recorded_at, entry) = match read() {
        Ok(read) => read,
        Err(problem) => return Some(problem),
    };
    let prev = String::from_utf8_lossy(prev);
    if legacy_digest(&prev, seq, &recorded_at, &entry).as_bytes() != hash {
        return Some("its content does not match its hash".into());
    }
    None
}
