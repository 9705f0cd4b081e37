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

/// Deepest nesting of collections a file people write may have. Playbooks and the config need a
/// handful of levels; the YAML parser's cost grows with the square of the depth (100,000 levels
/// of `[` took 40 s), so deeper files are refused by a linear scan before it runs.
pub const MAX_YAML_DEPTH: usize = 64;

/// Parses `source`. `Err` holds a syntax or type error (parsing stopped there); `Ok` holds the
/// value and one diagnostic per unknown key.
///
/// Before the typed parse: a UTF-8 byte-order mark is dropped (editors on Windows write one),
/// nesting deeper than [`MAX_YAML_DEPTH`] is refused, and a key written twice in one mapping is
/// refused at any level, with its position (serde's derive catches duplicates only among a
/// struct's own fields, and a map such as a step's `with:` would keep the last silently).
pub fn parse_yaml<T: DeserializeOwned>(
    path: &Path,
    source: &str,
    schema: &Value,
) -> Result<(T, Diagnostics), Diagnostics> {
    parse_yaml_checking(path, source, schema, &[])
}

/// A type read from a YAML string whose text it checks (a duration): the schema names it, and a
/// file may hold many of them wrong at once.
#[derive(Debug, Clone, Copy)]
pub struct TextType {
    /// Its name among the schema's `$defs`.
    pub schema_name: &'static str,
    /// Whether a text is one.
    pub accepts: fn(&str) -> bool,
    /// A text it accepts, read in place of a refused one so the rest of the file is checked.
    pub stand_in: &'static str,
    /// The diagnostic's code.
    pub code: &'static str,
    /// What a refused text is not, for the message (`a duration above zero like 5s`).
    pub expected: &'static str,
}

/// [`parse_yaml`], and every value the schema types as one of `checked` that is not one is a
/// diagnostic at its position, all of them in one run (serde alone stops at the first). With
/// such a diagnostic the value returned in `Ok` holds a stand-in in its place: it is for checking
/// the rest of the file only, never for use; a caller uses the value only when there is no
/// diagnostic at all.
pub fn parse_yaml_checking<T: DeserializeOwned>(
    path: &Path,
    source: &str,
    schema: &Value,
    checked: &[TextType],
) -> Result<(T, Diagnostics), Diagnostics> {
    let source = strip_bom(source);
    if let Some(at) = too_deep(source) {
        let mut problems = Diagnostics::default();
        problems.push(Diagnostic::at(
            path,
            source,
            at,
            "yaml-too-deep",
            format!("collections nested deeper than {MAX_YAML_DEPTH} levels"),
        ));
        return Err(problems);
    }
    if let Err(err) = yaml_serde::from_str::<yaml_serde::Value>(source)
        && err.to_string().contains("duplicate entry")
    {
        // The parser reports where the mapping starts; point at the key's second writing.
        let mapping = err
            .location()
            .map_or(Position::START, |l| Position::new(l.line(), l.column()));
        let text = err.to_string();
        let position = text
            .split('"')
            .nth(1)
            .and_then(|key| second_key(source, mapping, key))
            .unwrap_or(mapping);
        let text = text
            .rfind(" at line ")
            .map_or(text.as_str(), |cut| &text[..cut]);
        let what = text
            .find("duplicate entry ")
            .map_or(text, |at| &text[at + "duplicate entry ".len()..]);
        let mut problems = Diagnostics::default();
        problems.push(Diagnostic::at(
            path,
            source,
            position,
            "yaml-duplicate-key",
            format!(
                "duplicate key: an entry {what} is already in this mapping; write each key once"
            ),
        ));
        return Err(problems);
    }
    let mut unknown: Vec<YamlPath> = Vec::new();
    let deserializer = yaml_serde::Deserializer::from_str(source);
    let parsed: Result<T, _> = serde_ignored::deserialize(deserializer, |ignored| {
        unknown.push(to_yaml_path(&ignored));
    });
    let mut problems = Diagnostics::default();
    let value = match parsed {
        Ok(value) => value,
        Err(err) => {
            let first = serde_problem(path, source, &err);
            // serde stops at the first value it cannot read. A wrong duration is such a value,
            // and one file may hold several: find them all, then read the rest with a valid
            // stand-in in each one's place so the caller's checks still run. A stand-in never
            // leaves here unannounced: every one has its diagnostic in `problems`.
            let refused = refused_texts(source, schema, checked);
            let Some((document, refused)) = refused else {
                let mut only = Diagnostics::default();
                only.push(first);
                return Err(only);
            };
            for (at, text, kind) in &refused {
                problems.push(Diagnostic::at(
                    path,
                    source,
                    locate(source, at),
                    kind.code,
                    format!("`{at}` is `{text}`, not {}", kind.expected),
                ));
            }
            unknown.clear();
            let parsed: Result<T, _> = serde_ignored::deserialize(document, |ignored| {
                unknown.push(to_yaml_path(&ignored));
            });
            match parsed {
                Ok(value) => value,
                Err(_) => {
                    // Something else is wrong too. serde's error from the text has its position,
                    // but the first error in the text may have been one of the refused values:
                    // read the text again with stand-ins written over them for the other one.
                    let other = patched_source(source, &refused).and_then(|text| {
                        let deserializer = yaml_serde::Deserializer::from_str(&text);
                        T::deserialize(deserializer).err()
                    });
                    let other = match other {
                        Some(err) => serde_problem(path, source, &err),
                        None => first,
                    };
                    if !problems.iter().any(|d| d.line == other.line) {
                        problems.push(other);
                    }
                    return Err(problems);
                }
            }
        }
    };
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

/// Every value the schema types as one of `checked` that the type refuses, with its path, text
/// and type, and the document with a stand-in in each one's place; `None` when there is none
/// (or the text is not YAML at all).
fn refused_texts<'a>(
    source: &str,
    schema: &Value,
    checked: &'a [TextType],
) -> Option<(yaml_serde::Value, Refused<'a>)> {
    if checked.is_empty() {
        return None;
    }
    let mut document: yaml_serde::Value = yaml_serde::from_str(source).ok()?;
    let mut refused = Vec::new();
    let mut walk = Walk {
        root: schema,
        checked,
        refused: &mut refused,
    };
    walk.visit(schema, &mut document, &YamlPath::root());
    (!refused.is_empty()).then_some((document, refused))
}

/// Each refused value: where, its text, and the type it should have been.
type Refused<'a> = Vec<(YamlPath, String, &'a TextType)>;

struct Walk<'s, 'a, 'r> {
    root: &'s Value,
    checked: &'a [TextType],
    refused: &'r mut Refused<'a>,
}

impl<'s, 'a> Walk<'s, 'a, '_> {
    /// The checked type `node` is, or a union (an optional one) admits.
    fn checked_type(&self, node: &Value) -> Option<&'a TextType> {
        if let Some(reference) = node.get("$ref").and_then(Value::as_str)
            && let Some(name) = reference.strip_prefix("#/$defs/")
            && let Some(kind) = self.checked.iter().find(|t| t.schema_name == name)
        {
            return Some(kind);
        }
        ["anyOf", "oneOf", "allOf"].iter().find_map(|combinator| {
            node.get(combinator)?
                .as_array()?
                .iter()
                .find_map(|option| self.checked_type(option))
        })
    }

    fn visit(&mut self, node: &'s Value, value: &mut yaml_serde::Value, at: &YamlPath) {
        use yaml_serde::Value as Yaml;
        if let Yaml::Tagged(tagged) = value {
            return self.visit(node, &mut tagged.value, at);
        }
        if let Some(kind) = self.checked_type(node) {
            let text = match value {
                Yaml::String(text) => text.clone(),
                // The typed parse reads a plain `90` as the text it is; this document reads it
                // as a number, so it is turned back into that text.
                Yaml::Number(number) => number.to_string(),
                Yaml::Bool(flag) => flag.to_string(),
                // Null (an optional value left out) and collections are serde's to judge.
                _ => return,
            };
            if (kind.accepts)(&text) {
                *value = Yaml::String(text);
            } else {
                self.refused.push((at.clone(), text, kind));
                *value = Yaml::String(kind.stand_in.into());
            }
            return;
        }
        let node = resolve(self.root, node);
        match value {
            Yaml::Mapping(mapping) => {
                for (key, value) in mapping.iter_mut() {
                    let Some(key) = key.as_str() else { continue };
                    let child = node
                        .get("properties")
                        .and_then(|p| p.get(key))
                        .or_else(|| node.get("additionalProperties"))
                        .or_else(|| map_values(self.root, node));
                    if let Some(child) = child {
                        self.visit(child, value, &at.key(key));
                    }
                }
            }
            Yaml::Sequence(items) => {
                if let Some(child) = node.get("items") {
                    for (index, value) in items.iter_mut().enumerate() {
                        self.visit(child, value, &at.index(index));
                    }
                }
            }
            _ => {}
        }
    }
}

/// The schema of a map's values when the map is optional (`anyOf: [map, null]`).
fn map_values<'a>(root: &'a Value, node: &'a Value) -> Option<&'a Value> {
    ["anyOf", "oneOf"].iter().find_map(|combinator| {
        node.get(combinator)?
            .as_array()?
            .iter()
            .find_map(|option| resolve(root, option).get("additionalProperties"))
    })
}

/// serde's error as a diagnostic at the position it gives.
fn serde_problem(path: &Path, source: &str, err: &yaml_serde::Error) -> Diagnostic {
    let position = err
        .location()
        .map_or(Position::START, |l| Position::new(l.line(), l.column()));
    let text = err.to_string();
    // The position is shown as file:line:col already.
    let message = text
        .rfind(" at line ")
        .map_or(text.clone(), |cut| text[..cut].to_string());
    // `mode: shadw` is serde's "unknown variant"; offer the value meant.
    let message = format!("{message}{}", super::variant_hint(&message));
    Diagnostic::at(path, source, position, "yaml", message)
}

/// `source` with each refused value's text replaced by its stand-in on its own line, so every
/// other line (and so every other position) stays as it was; `None` when a value is not written
/// where the locator puts it as a plain or quoted scalar on one line.
fn patched_source(source: &str, refused: &Refused<'_>) -> Option<String> {
    let mut lines: Vec<String> = source.lines().map(str::to_string).collect();
    for (at, text, kind) in refused {
        let position = locate(source, at);
        let line = lines.get_mut(position.line.checked_sub(1)?)?;
        let start = line
            .char_indices()
            .nth(position.column.checked_sub(1)?)
            .map(|(byte, _)| byte)?;
        let rest = &line[start..];
        let written = [text.clone(), format!("\"{text}\""), format!("'{text}'")]
            .into_iter()
            .find(|w| rest.starts_with(w.as_str()))?;
        line.replace_range(start..start + written.len(), kind.stand_in);
    }
    Some(lines.join("\n"))
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
pub fn locate_key(source: &str, at: &YamlPath) -> Position {
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

/// `source` without a leading UTF-8 byte-order mark.
pub fn strip_bom(source: &str) -> &str {
    source.strip_prefix('\u{feff}').unwrap_or(source)
}

/// Where `source` first nests collections deeper than [`MAX_YAML_DEPTH`], by a linear scan.
///
/// It counts block levels by indentation (and `- - -` written on one line) plus open flow
/// collections (`[`, `{`) outside quotes and comments. A bracket inside a plain scalar is
/// counted too, so the count can only err high, and then only for text with dozens of unclosed
/// brackets.
fn too_deep(source: &str) -> Option<Position> {
    let mut block: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let mut quote: Option<u8> = None;
    let at = |line: &str, index: usize, byte: usize| {
        Some(Position::new(index + 1, line[..byte].chars().count() + 1))
    };
    for (index, line) in source.lines().enumerate() {
        let bytes = line.as_bytes();
        let mut i = 0;
        if quote.is_none() && flow == 0 {
            let indent = bytes.iter().take_while(|b| **b == b' ').count();
            if indent == bytes.len() || bytes[indent] == b'#' {
                continue;
            }
            while block.last().is_some_and(|&open| open >= indent) {
                block.pop();
            }
            block.push(indent);
            i = indent;
            // Compact nested entries: `- - - x` and `? ? x` open one level each.
            while i < bytes.len()
                && matches!(bytes[i], b'-' | b'?')
                && bytes.get(i + 1).is_none_or(|b| *b == b' ')
            {
                i += 1;
                while i < bytes.len() && bytes[i] == b' ' {
                    i += 1;
                }
                block.push(i);
                if block.len() > MAX_YAML_DEPTH {
                    return at(line, index, i.min(line.len()));
                }
            }
        }
        let mut previous = b' ';
        while i < bytes.len() {
            let byte = bytes[i];
            match quote {
                Some(b'"') if byte == b'\\' => i += 1,
                Some(open) if byte == open => {
                    if open == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                        i += 1;
                    } else {
                        quote = None;
                    }
                }
                Some(_) => {}
                None => match byte {
                    b'#' if previous == b' ' || previous == b'\t' => break,
                    b'"' | b'\''
                        if matches!(previous, b' ' | b'\t' | b'[' | b'{' | b',' | b':') =>
                    {
                        quote = Some(byte);
                    }
                    b'[' | b'{' => {
                        flow += 1;
                        if block.len() + flow > MAX_YAML_DEPTH {
                            return at(line, index, i);
                        }
                    }
                    b']' | b'}' => flow = flow.saturating_sub(1),
                    _ => {}
                },
            }
            previous = byte;
            i += 1;
        }
    }
    None
}

/// The second place `key` is written as a mapping key at or after `from` (a plain or quoted key
/// followed by `:`), for pointing at a duplicate.
fn second_key(source: &str, from: Position, key: &str) -> Option<Position> {
    // An empty key (`? ` with nothing after it, twice) is found everywhere without moving on;
    // the mapping's own position is the best place to point at.
    if key.is_empty() {
        return None;
    }
    let mut seen = 0;
    for (index, line) in source.lines().enumerate().skip(from.line.saturating_sub(1)) {
        let start = if index + 1 == from.line {
            line.char_indices()
                .nth(from.column.saturating_sub(1))
                .map_or(line.len(), |(at, _)| at)
        } else {
            0
        };
        let mut at = start;
        while let Some(found) = line.get(at..).and_then(|rest| rest.find(key)) {
            let begin = at + found;
            let end = begin + key.len();
            let before = line[..begin].trim_end_matches(['"', '\'']);
            let after = line[end..].trim_start_matches(['"', '\'']);
            let opens = before.is_empty()
                || before.ends_with([' ', '\t', '{', ','])
                || before.ends_with("- ");
            if opens && after.starts_with(':') {
                seen += 1;
                if seen == 2 {
                    return Some(Position::new(index + 1, line[..begin].chars().count() + 1));
                }
            }
            at = end;
        }
    }
    None
}
