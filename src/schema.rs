//! JSON Schemas for the files people write, generated from the Rust types so they cannot drift.
//! They are checked in under `schemas/`; a test fails when they are stale, and
//! `palisade schema --out schemas` regenerates them.

use serde_json::Value;

/// The playbook schema, built once.
pub fn playbook() -> &'static Value {
    crate::playbooks::schema()
}

/// The config schema, built once.
pub fn config() -> &'static Value {
    crate::config::schema()
}

/// The schema of Sigma test sidecars (`x.tests.yaml`), built once.
pub fn sigma_tests() -> &'static Value {
    crate::sigma::cases::schema()
}

/// `(file name, schema text)` for every schema palisade publishes.
pub fn all() -> Vec<(&'static str, String)> {
    let render = |schema: &Value| {
        let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
        text.push('\n');
        text
    };
    vec![
        ("playbook.schema.json", render(playbook())),
        ("config.schema.json", render(config())),
        ("sigma-tests.schema.json", render(sigma_tests())),
        ("list.schema.json", render(crate::rules::lists::schema())),
        (
            "exception.schema.json",
            render(crate::rules::exceptions::schema()),
        ),
    ]
}
