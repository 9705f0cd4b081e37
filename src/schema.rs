//! JSON Schemas for the files people write, generated from the Rust types so they cannot drift.
//! They are checked in under `schemas/`; a test fails when they are stale, and
//! `palisade schema --out schemas` regenerates them.

use crate::config::Config;
use crate::playbooks::PlaybookSpec;

use std::sync::LazyLock;

use serde_json::Value;

static PLAYBOOK: LazyLock<Value> = LazyLock::new(|| {
    serde_json::to_value(schemars::schema_for!(PlaybookSpec)).unwrap_or(Value::Null)
});
static CONFIG: LazyLock<Value> =
    LazyLock::new(|| serde_json::to_value(schemars::schema_for!(Config)).unwrap_or(Value::Null));

/// The playbook schema, built once.
pub fn playbook() -> &'static Value {
    &PLAYBOOK
}

/// The config schema, built once.
pub fn config() -> &'static Value {
    &CONFIG
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
    ]
}
