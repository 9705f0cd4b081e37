//! Rhai rule file loading from text: compile, check the `detect` signature, run the top level
//! (metadata and tests) in the sandbox and validate the metadata.
//!
//! The sandbox's default limits apply (100,000 operations and a 50 ms budget per run), so a
//! looping input stops quickly; scripts/fuzz still gives this target a per-input timeout.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use palisade::rules::{RuleLimits, load_rule};

fuzz_target!(|data: &[u8]| {
    // Rule files are read as UTF-8 text; other bytes never reach the loader.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = load_rule(Path::new("rules/fuzz.rhai"), text, &RuleLimits::default());
});
