//! Rejected messages, kept with the reason so nothing a sensor sent is silently lost.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::event::NormalizeError;

/// The most of a rejected message the dead-letter file keeps; the full size is recorded.
const MAX_KEPT_BYTES: usize = 64 * 1024;

/// An append-only JSON-lines file of rejected messages.
pub struct DeadLetter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl DeadLetter {
    /// Opens (creating it and its directory if needed) `path` for appending.
    pub fn open(path: &Path) -> io::Result<DeadLetter> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(DeadLetter {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one rejected message and flushes: rejects are rare, and each must survive a
    /// crash that follows it.
    pub fn write(&mut self, origin: &str, error: &NormalizeError, raw: &[u8]) -> io::Result<()> {
        let kept = &raw[..raw.len().min(MAX_KEPT_BYTES)];
        let line = serde_json::json!({
            "time": jiff::Timestamp::now().to_string(),
            "origin": origin,
            "kind": error.kind.as_str(),
            "reason": error.message,
            "raw": String::from_utf8_lossy(kept),
            "raw_bytes": raw.len(),
            "truncated": kept.len() < raw.len(),
        });
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}
