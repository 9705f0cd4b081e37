//! JSON Schemas for the files people write, generated from the Rust types so they cannot drift.
//! They are checked in under `schemas/`; a test fails when they are stale, and
//! `palisade schema --out schemas` regenerates them.

use crate::config::Config;
use crate::playbooks::PlaybookSpec;

/// `(file name, schema text)` for every schema palisade publishes.
pub fn all() -> Vec<(&'static str, String)> {
    let render = |schema: schemars::Schema| {
        let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
        text.push('\n');
        text
    };
    vec![
        (
            "playbook.schema.json",
            render(schemars::schema_for!(PlaybookSpec)),
        ),
        ("config.schema.json", render(schemars::schema_for!(Config))),
    ]
}
