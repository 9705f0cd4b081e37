//! Finds where a value sits in YAML source text, by its path (`steps[1].with.address`).
//!
//! `yaml_serde` reports a position for syntax and type errors, but a parsed value carries no
//! position, and most playbook problems are found after parsing (an unknown action, a trigger
//! naming a rule that does not exist). This locator walks the text by indentation, which covers
//! the block style playbooks are written in and single-line flow collections (`[a, b]`,
//! `{a: 1}`). When it cannot follow a path to the end it returns the deepest node it reached, so
//! a diagnostic still points close to the problem. See `docs/decisions/0002-yaml-positions.md`.

use super::Position;

/// One step of a path into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    Key(String),
    Index(usize),
}

/// A path into a YAML document, built step by step by the validators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct YamlPath(Vec<PathSegment>);

impl YamlPath {
    pub fn root() -> YamlPath {
        YamlPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> YamlPath {
        let mut next = self.clone();
        next.0.push(PathSegment::Key(key.to_string()));
        next
    }

    pub fn index(&self, index: usize) -> YamlPath {
        let mut next = self.clone();
        next.0.push(PathSegment::Index(index));
        next
    }

    pub fn from_segments(segments: &[PathSegment]) -> YamlPath {
        YamlPath(segments.to_vec())
    }

    pub fn segments(&self) -> &[PathSegment] {
        &self.0
    }
}

impl std::fmt::Display for YamlPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                PathSegment::Key(key) if i == 0 => write!(f, "{key}")?,
                PathSegment::Key(key) => write!(f, ".{key}")?,
                PathSegment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A node's extent: its first line (0-based) and the column its content starts at on that line,
/// and the first line after it.
#[derive(Debug, Clone, Copy)]
struct Node {
    line: usize,
    column: usize,
    end: usize,
}

/// The position of the value at `path` in `source`, or of the deepest node on the way to it.
pub fn locate(source: &str, path: &YamlPath) -> Position {
    let lines: Vec<&str> = source.lines().collect();
    let Some(first) = (0..lines.len()).find(|&i| is_content(lines[i])) else {
        return Position::START;
    };
    let mut node = Node {
        line: first,
        column: indent(lines[first]),
        end: lines.len(),
    };
    for segment in path.segments() {
        let next = match segment {
            PathSegment::Key(key) => find_key(&lines, node, key),
            PathSegment::Index(index) => find_index(&lines, node, *index),
        };
        match next {
            Some(found) => node = found,
            None => break,
        }
    }
    Position::new(node.line + 1, column_of(lines[node.line], node.column) + 1)
}

/// Byte column to character column, since diagnostics count characters.
fn column_of(line: &str, byte_column: usize) -> usize {
    line.get(..byte_column.min(line.len()))
        .map_or(byte_column, |prefix| prefix.chars().count())
}

fn is_content(line: &str) -> bool {
    let trimmed = line.trim_start();
    !trimmed.is_empty() && !trimmed.starts_with('#') && trimmed != "---"
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The first line at or after `from` whose indent is at most `column`: where a node that started
/// at `column` ends.
fn end_of_block(lines: &[&str], from: usize, column: usize, limit: usize) -> usize {
    (from..limit)
        .find(|&i| is_content(lines[i]) && indent(lines[i]) <= column)
        .unwrap_or(limit)
}

/// The node's value as a one-line flow collection (`[...]` or `{...}`), if it is one.
fn flow_text<'a>(lines: &[&'a str], node: Node) -> Option<&'a str> {
    let text = lines[node.line].get(node.column..)?;
    (text.starts_with('[') || text.starts_with('{')).then_some(text)
}

/// The lines of `node` whose content starts at the node's own column (its keys or its dashes),
/// as (line index, column, text from that column).
fn entries<'a>(
    lines: &'a [&'a str],
    node: Node,
) -> impl Iterator<Item = (usize, usize, &'a str)> + 'a {
    (node.line..node.end).filter_map(move |i| {
        let line = lines[i];
        let start = if i == node.line {
            node.column
        } else {
            indent(line)
        };
        if !is_content(line) || start != node.column {
            return None;
        }
        line.get(start..).map(|text| (i, start, text))
    })
}

fn find_key(lines: &[&str], node: Node, key: &str) -> Option<Node> {
    if let Some(text) = flow_text(lines, node) {
        let offset = flow_items(text)
            .into_iter()
            .find(|(_, item)| key_matches(item, key).is_some())?;
        let item = &text[offset.0..];
        let after_colon = key_matches(item, key)?;
        let value_offset =
            after_colon + (item[after_colon..].len() - item[after_colon..].trim_start().len());
        return Some(Node {
            line: node.line,
            column: node.column + offset.0 + value_offset,
            end: node.line + 1,
        });
    }
    let key_column = node.column;
    for (i, start, text) in entries(lines, node) {
        if let Some(value_offset) = key_matches(text, key) {
            let rest = text[value_offset..].trim_start();
            let end = end_of_block(lines, i + 1, key_column, node.end);
            if rest.is_empty() || rest.starts_with('#') {
                return Some(block_value(lines, node, i, key_column));
            }
            let column = start + value_offset + (text[value_offset..].len() - rest.len());
            return Some(Node {
                line: i,
                column,
                end,
            });
        }
    }
    None
}

/// The value of the key on line `key_line`, written on the lines below it: a deeper block, or a
/// sequence whose dashes sit at the key's own indent. A key with nothing below is its own node.
fn block_value(lines: &[&str], parent: Node, key_line: usize, key_column: usize) -> Node {
    let own = Node {
        line: key_line,
        column: key_column,
        end: key_line + 1,
    };
    let Some(next) = (key_line + 1..parent.end).find(|&j| is_content(lines[j])) else {
        return own;
    };
    let next_indent = indent(lines[next]);
    let is_dash = |j: usize| lines[j].trim_start().starts_with('-');
    let dash_at_key = next_indent == key_column && is_dash(next);
    if next_indent <= key_column && !dash_at_key {
        return own;
    }
    let end = (next + 1..parent.end)
        .find(|&j| {
            let ind = indent(lines[j]);
            is_content(lines[j])
                && (ind < key_column || (ind == key_column && !(dash_at_key && is_dash(j))))
        })
        .unwrap_or(parent.end);
    Node {
        line: next,
        column: next_indent,
        end,
    }
}

/// If `text` starts with `key:` (bare or quoted), the offset just past the colon.
fn key_matches(text: &str, key: &str) -> Option<usize> {
    for quote in ["", "\"", "'"] {
        let written = format!("{quote}{key}{quote}");
        if let Some(rest) = text.strip_prefix(written.as_str()) {
            let after = rest.trim_start_matches(' ');
            if after.starts_with(':') {
                return Some(text.len() - after.len() + 1);
            }
        }
    }
    None
}

fn find_index(lines: &[&str], node: Node, index: usize) -> Option<Node> {
    if let Some(text) = flow_text(lines, node) {
        let (offset, _) = *flow_items(text).get(index)?;
        return Some(Node {
            line: node.line,
            column: node.column + offset,
            end: node.line + 1,
        });
    }
    let dash_column = node.column;
    let mut seen = 0;
    for (i, start, text) in entries(lines, node) {
        if !(text.starts_with("- ") || text == "-") {
            continue;
        }
        if seen == index {
            let content = text[1..].len() - text[1..].trim_start().len() + 1;
            let end = end_of_block(lines, i + 1, dash_column, node.end);
            if text.trim() == "-" {
                let next = (i + 1..end).find(|&j| is_content(lines[j]))?;
                return Some(Node {
                    line: next,
                    column: indent(lines[next]),
                    end,
                });
            }
            return Some(Node {
                line: i,
                column: start + content,
                end,
            });
        }
        seen += 1;
    }
    None
}

/// The top-level items of a one-line flow collection, as (byte offset in `text`, item text).
fn flow_items(text: &str) -> Vec<(usize, &str)> {
    let inner_start = 1;
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut item_start = inner_start;
    for (i, c) in text.char_indices().skip(1) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') if depth > 0 => depth -= 1,
            (None, ',' | ']' | '}') => {
                push_item(text, item_start, i, &mut items);
                item_start = i + 1;
                if c != ',' {
                    break;
                }
            }
            _ => {}
        }
    }
    items
}

fn push_item<'a>(text: &'a str, start: usize, end: usize, items: &mut Vec<(usize, &'a str)>) {
    let raw = &text[start..end];
    let trimmed = raw.trim_start();
    if !trimmed.trim().is_empty() {
        items.push((start + raw.len() - trimmed.len(), trimmed.trim_end()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# a playbook
id: contain
trigger:
  rules: [office-spawns-shell, encoded-powershell]
  min_severity: high
steps:
  - id: kill
    action: process.kill
    with:
      pid: \"{{ event.pid }}\"
  - id: tell
    action: notify.log
    with: {message: hello, level: warn}
tests:
- name: first
  events: []
";

    fn at(path: YamlPath) -> (usize, usize) {
        let p = locate(DOC, &path);
        (p.line, p.column)
    }

    #[test]
    fn finds_block_values() {
        let root = YamlPath::root();
        assert_eq!(at(root.key("id")), (2, 5));
        assert_eq!(at(root.key("trigger").key("min_severity")), (5, 17));
        assert_eq!(at(root.key("steps").index(0).key("action")), (8, 13));
        assert_eq!(
            at(root.key("steps").index(0).key("with").key("pid")),
            (10, 12)
        );
        assert_eq!(at(root.key("steps").index(1).key("action")), (12, 13));
        assert_eq!(at(root.key("tests").index(0).key("events")), (16, 11));
    }

    #[test]
    fn finds_flow_items() {
        let root = YamlPath::root();
        assert_eq!(at(root.key("trigger").key("rules").index(1)), (4, 32));
        assert_eq!(
            at(root.key("steps").index(1).key("with").key("level")),
            (13, 35)
        );
    }

    #[test]
    fn falls_back_to_the_deepest_node_found() {
        let root = YamlPath::root();
        assert_eq!(at(root.key("steps").index(1).key("missing")), (11, 5));
        assert_eq!(at(root.key("nothing")), (2, 1));
    }

    #[test]
    fn displays_as_a_path() {
        let path = YamlPath::root().key("steps").index(2).key("with");
        assert_eq!(path.to_string(), "steps[2].with");
    }
}
