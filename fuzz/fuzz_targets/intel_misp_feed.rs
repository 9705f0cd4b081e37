//! MISP feed directories: `manifest.json` and one event file per manifest entry. Only a
//! directory can be imported, so each input is written to a scratch directory first.
//!
//! Input layout: parts separated by the byte 0xFF (which valid UTF-8 never contains). The first
//! part is `manifest.json`; part `n` (from 1) is the event file `<n-1 in hex>.json`, so a
//! manifest keyed by `0`, `1`, ... (hex digits, which pass the uuid check) finds its events.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use palisade::intel::formats::{Format, ImportOptions, import};

/// One scratch directory per fuzzing process, emptied before each input.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::temp_dir().join(format!("palisade-fuzz-misp-feed-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let _ = std::fs::remove_dir_all(dir);
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let mut parts = data.split(|b| *b == 0xFF);
    let manifest = parts.next().unwrap_or_default();
    if std::fs::write(dir.join("manifest.json"), manifest).is_err() {
        return;
    }
    // A handful of event files is enough to reach every path; more only slows each input.
    for (n, part) in parts.take(16).enumerate() {
        if std::fs::write(dir.join(format!("{n:x}.json")), part).is_err() {
            return;
        }
    }
    let options = ImportOptions {
        source: "misp-feed".to_string(),
        kind: None,
        confidence: None,
        severity: None,
        max_prefix: Default::default(),
    };
    let _ = import(dir, Format::MispFeed, &options);
});
