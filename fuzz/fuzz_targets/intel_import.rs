//! Every intel format that is read from one file's text, in one target: the first byte picks the
//! format (its value modulo 8, so the digits `0`..`7` pick them in this order), the rest is the
//! file. MISP feeds are a directory and have their own target, `intel_misp_feed`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use palisade::intel::formats::{Format, ImportOptions, import_text};

const FORMATS: [Format; 8] = [
    Format::Stix,
    Format::Misp,
    Format::Feodo,
    Format::Urlhaus,
    Format::Threatfox,
    Format::Otx,
    Format::Abuseipdb,
    Format::Plain,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let format = FORMATS[usize::from(selector) % FORMATS.len()];
    // Feeds are read as UTF-8 text (`import` uses `read_to_string`); other bytes never reach a
    // format's parser.
    let Ok(text) = std::str::from_utf8(file) else {
        return;
    };
    let options = ImportOptions {
        source: format.name().to_string(),
        kind: None,
        confidence: None,
        severity: None,
        max_prefix: Default::default(),
    };
    let _ = import_text(Path::new("feed"), text, format, &options);
});
