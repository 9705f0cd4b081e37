//! The engine's config file (`palisade.yaml`), parsed and checked from its text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Config files are read as UTF-8 text; other bytes never reach the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = palisade::config::parse(Path::new("palisade.yaml"), text);
});
