//! Parsing a YAML file people write (a playbook, the config) into its serde type, reporting
//! every unknown key rather than only the first.
//!
//! With `deny_unknown_fields`, serde stops at the first unknown key, so a file with a misspelled
//! key and an unknown action would need two validate runs to show both. Instead the types accept
//! unknown keys, `serde_ignored` reports each one it skipped, and each becomes a diagnostic at
//! its position, with a suggestion from the type's JSON Schema (which still says
//! `additionalProperties: false`, for editors).

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Diagnostic, Diagnostics, PathSegment, Position, YamlPath, locate, suggest};

/// Parses `source`. `Err` holds a syntax or type error (parsing stopped there); `Ok` holds the
/// value and one diagnostic per unknown key.
pub fn parse_yaml<T: DeserializeOwned>(
    path: &Path,
    source: &str,
    schema: &Value,
) -> Result<(T, Diagnostics), Diagnostics> {
    let mut unknown: Vec<YamlPath> = Vec::new();
    let deserializer = yaml_serde::Deserializer::from_str(source);
    let parsed: Result<T, _> = serde_ignored::deserialize(deserializer, |ignored| {
        unknown.push(to_yaml_path(&ignored));
    });
    let value = parsed.map_err(|err| {
        let position = err
            .location()
            .map_or(Position::START, |l| Position::new(l.line(), l.column()));
        let text = err.to_string();
        // The position is shown as file:line:col already.
        let message = text
            .rfind(" at line ")
            .map_or(text.clone(), |cut| text[..cut].to_string());
        let mut problems = Diagnostics::default();
        problems.push(Diagnostic::at(path, source, position, "yaml", message));
        problems
    })?;
    let mut problems = Diagnostics::default();
    for at in unknown {
        let Some(PathSegment::Key(key)) = at.segments().last().cloned() else {
            continue;
        };
        let parent = YamlPath::from_segments(&at.segments()[..at.segments().len() - 1]);
        let known = known_keys(schema, &parent);
        let hint = suggest(&key, known.iter().map(String::as_str))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        let place = if parent.segments().is_empty() {
            String::new()
        } else {
            format!(" in `{parent}`")
        };
        problems.push(Diagnostic::at(
            path,
            source,
            locate_key(source, &at),
            "unknown-key",
            format!(
                "unknown key `{key}`{place}{hint}; keys: {}",
                known.join(", ")
            ),
        ));
    }
    Ok((value, problems))
}

fn to_yaml_path(ignored: &serde_ignored::Path<'_>) -> YamlPath {
    use serde_ignored::Path as P;
    match ignored {
        P::Root => YamlPath::root(),
        P::Seq { parent, index } => to_yaml_path(parent).index(*index),
        P::Map { parent, key } => to_yaml_path(parent).key(key),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            to_yaml_path(parent)
        }
    }
}

/// The position of the key itself. The locator finds the key's value, which for a block value
/// starts on a later line; the key is on the nearest line at or above it that starts with it.
fn locate_key(source: &str, at: &YamlPath) -> Position {
    let value = locate(source, at);
    let Some(PathSegment::Key(key)) = at.segments().last() else {
        return value;
    };
    let lines: Vec<&str> = source.lines().collect();
    let last = value
        .line
        .saturating_sub(1)
        .min(lines.len().saturating_sub(1));
    for index in (0..=last).rev() {
        let line = lines.get(index).copied().unwrap_or("");
        let content = line.trim_start().trim_start_matches("- ").trim_start();
        let unquoted = content.trim_start_matches(['"', '\'']);
        if unquoted.starts_with(key.as_str())
            && unquoted[key.len()..]
                .trim_start_matches(['"', '\'', ' '])
                .starts_with(':')
        {
            let byte = line.len() - content.len();
            return Position::new(index + 1, line[..byte].chars().count() + 1);
        }
    }
    value
}

/// The property names the schema allows at `at`, following `$ref`s, arrays and optional values.
fn known_keys(schema: &Value, at: &YamlPath) -> Vec<String> {
    let mut node = resolve(schema, schema);
    for segment in at.segments() {
        let next = match segment {
            PathSegment::Key(key) => node.get("properties").and_then(|p| p.get(key)),
            PathSegment::Index(_) => node.get("items"),
        };
        match next {
            Some(next) => node = resolve(schema, next),
            None => return Vec::new(),
        }
    }
    node.get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
        let name = reference.trim_start_matches("#/$defs/");
        if let Some(target) = root.get("$defs").and_then(|d| d.get(name)) {
            return resolve(root, target);
        }
    }
    for combinator in ["anyOf", "oneOf", "allOf"] {
        if let Some(options) = node.get(combinator).and_then(Value::as_array)
            && let Some(object) = options
                .iter()
                .map(|o| resolve(root, o))
                .find(|o| o.get("properties").is_some() || o.get("items").is_some())
        {
            return object;
        }
    }
    node
}
