//! Field names a Rhai script reads, found without running it: `event.cmdline`,
//! `event?.cmdline`, `event["sensor"]["version"]`, `detection.entity.pid`. Validation checks them
//! against the event model and the detection's fields, so a typo is reported when the content
//! loads instead of reading `()` on every event.
//!
//! The scan is lexical: it skips comments and string literals (reading the code inside a
//! backtick string's `${ }`), and follows a root variable through `.name` and `["literal"]`. A
//! name followed by `(` is a method call, not a field. A path computed at runtime (`event[key]`)
//! is not seen, and neither is a read through another variable (`let e = event; e.x`).

use crate::diagnostics::Position;
use crate::event::{Field, squash};

/// The event field a misspelt or foreign name most likely meant, for "did you mean": the same
/// name written another way (`CommandLine`, `command_line`), or one a typo away from a field's
/// name or from a name other tools give it (`comandline` and `comdline` both lead to `cmdline`).
pub fn nearest_field(name: &str) -> Option<Field> {
    let wanted = squash(name);
    let spellings: Vec<(String, Field)> = Field::spellings().collect();
    if let Some((_, field)) = spellings.iter().find(|(n, _)| *n == wanted) {
        return Some(*field);
    }
    let best = crate::diagnostics::suggest(&wanted, spellings.iter().map(|(n, _)| n.as_str()))?;
    spellings
        .iter()
        .find(|(n, _)| n == best)
        .map(|(_, field)| *field)
}

/// One name in a read path, with the byte offset of the name in the scanned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub name: String,
    pub offset: usize,
}

/// A read of a root variable's field path: `roots[root]` then `segments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub root: usize,
    pub segments: Vec<Segment>,
}

/// A read of an event field the event model does not type, kept from loading to the point where
/// the config says which such fields are expected (`events.extra_fields`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRead {
    /// The path under `event`, e.g. `["sensor", "version"]`.
    pub path: Vec<String>,
    /// Where the first name of the path is in its file.
    pub position: Position,
}

impl FieldRead {
    /// `event.a.b`, as the author wrote it in dotted form.
    pub fn display(&self) -> String {
        format!("event.{}", self.path.join("."))
    }

    /// Whether a declared extra field (a dotted path) covers this read: the read is the declared
    /// path, inside it, or on the way to it.
    pub fn is_declared(&self, declared: &[String]) -> bool {
        declared.iter().any(|path| {
            let declared: Vec<&str> = path.split('.').collect();
            declared
                .iter()
                .zip(&self.path)
                .all(|(want, read)| want == read)
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    /// `.` or `?.`
    Dot,
    /// `[` or `?[`
    Open,
    Close,
    Call,
    /// Any other single character (`{`, `}`, `;`, `:`, `)`, `=` ...).
    Punct(char),
    Other,
}

/// Every read of one of `roots` in `source` that names at least one field.
pub fn reads(source: &str, roots: &[&str]) -> Vec<Read> {
    let tokens = tokenize(source);
    let mut out = Vec::new();
    for (k, (token, _)) in tokens.iter().enumerate() {
        let Token::Ident(name) = token else { continue };
        let Some(root) = roots.iter().position(|r| r == name) else {
            continue;
        };
        // `x.event` is a property of `x`, not the variable.
        if k > 0 && tokens[k - 1].0 == Token::Dot {
            continue;
        }
        let mut segments = Vec::new();
        let mut m = k + 1;
        loop {
            match (tokens.get(m), tokens.get(m + 1), tokens.get(m + 2)) {
                (Some((Token::Dot, _)), Some((Token::Ident(field), at)), after) => {
                    if matches!(after, Some((Token::Call, _))) {
                        break;
                    }
                    segments.push(Segment {
                        name: field.clone(),
                        offset: *at,
                    });
                    m += 2;
                }
                (
                    Some((Token::Open, _)),
                    Some((Token::Str(field), at)),
                    Some((Token::Close, _)),
                ) => {
                    segments.push(Segment {
                        name: field.clone(),
                        offset: *at,
                    });
                    m += 3;
                }
                _ => break,
            }
        }
        if !segments.is_empty() {
            out.push(Read { root, segments });
        }
    }
    out
}

/// The tokens the scan needs, each with its byte offset (a string's is that of its first
/// character inside the quotes).
fn tokenize(source: &str) -> Vec<(Token, usize)> {
    let chars: Vec<(usize, char)> = source.char_indices().collect();
    let at = |i: usize| chars.get(i).map_or(source.len(), |(o, _)| *o);
    let peek = |i: usize| chars.get(i).map(|(_, c)| *c);
    let mut out = Vec::new();
    // The brace depth at which each open `${` of a backtick string started, innermost last.
    let mut interpolations: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(c) = peek(i) {
        let next = peek(i + 1);
        match c {
            c if c.is_whitespace() => i += 1,
            '/' if next == Some('/') => {
                while peek(i).is_some_and(|c| c != '\n') {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                // Rhai block comments nest.
                let mut open = 0usize;
                while let Some(c) = peek(i) {
                    match (c, peek(i + 1)) {
                        ('/', Some('*')) => {
                            open += 1;
                            i += 2;
                        }
                        ('*', Some('/')) => {
                            open = open.saturating_sub(1);
                            i += 2;
                            if open == 0 {
                                break;
                            }
                        }
                        _ => i += 1,
                    }
                }
            }
            '"' => {
                let start = at(i + 1);
                let mut text = String::new();
                i += 1;
                while let Some(c) = peek(i) {
                    match c {
                        '"' => {
                            i += 1;
                            break;
                        }
                        '\\' => {
                            match peek(i + 1) {
                                Some('n') => text.push('\n'),
                                Some('t') => text.push('\t'),
                                Some('r') => text.push('\r'),
                                Some('\n') | None => {}
                                Some(other) => text.push(other),
                            }
                            i += 2;
                        }
                        c => {
                            text.push(c);
                            i += 1;
                        }
                    }
                }
                out.push((Token::Str(text), start));
            }
            '\'' => {
                i += 1;
                while let Some(c) = peek(i) {
                    i += if c == '\\' { 2 } else { 1 };
                    if c == '\'' {
                        break;
                    }
                }
                out.push((Token::Other, at(i)));
            }
            '`' => {
                let (end, interpolating) = template_text(&chars, i + 1);
                if interpolating {
                    interpolations.push(depth);
                }
                out.push((Token::Other, at(i)));
                i = end;
            }
            '}' if interpolations.last() == Some(&depth) => {
                interpolations.pop();
                let (end, interpolating) = template_text(&chars, i + 1);
                if interpolating {
                    interpolations.push(depth);
                }
                out.push((Token::Other, at(i)));
                i = end;
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = at(i);
                let mut name = String::new();
                while let Some(c) = peek(i).filter(|c| c.is_alphanumeric() || *c == '_') {
                    name.push(c);
                    i += 1;
                }
                out.push((Token::Ident(name), start));
            }
            c if c.is_ascii_digit() => {
                while peek(i).is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    i += 1;
                }
                out.push((Token::Other, at(i)));
            }
            '?' if next == Some('.') => {
                out.push((Token::Dot, at(i)));
                i += 2;
            }
            '?' if next == Some('[') => {
                out.push((Token::Open, at(i)));
                i += 2;
            }
            '.' if next == Some('.') => {
                out.push((Token::Other, at(i)));
                i += 2;
            }
            _ => {
                let token = match c {
                    '.' => Token::Dot,
                    '[' => Token::Open,
                    ']' => Token::Close,
                    '(' => Token::Call,
                    '{' => {
                        depth += 1;
                        Token::Punct('{')
                    }
                    '}' => {
                        depth = depth.saturating_sub(1);
                        Token::Punct('}')
                    }
                    other => Token::Punct(other),
                };
                out.push((token, at(i)));
                i += 1;
            }
        }
    }
    out
}

/// The shape of a Rhai file, as far as loading needs it: what is at its top level, which names
/// each function reads, and the list names `in_list` is called with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outline {
    /// Names bound at the top level by `let` or `const`, with the offset of the name.
    pub globals: Vec<(String, usize)>,
    /// The offset of each top-level statement that is not a function definition.
    pub statements: Vec<usize>,
    pub functions: Vec<FunctionOutline>,
    /// `in_list("name", ...)` calls whose list is a string literal: the name and its offset.
    pub list_names: Vec<(String, usize)>,
    /// Offsets of `import` anywhere in the file.
    pub imports: Vec<usize>,
}

/// One `fn` definition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FunctionOutline {
    pub name: String,
    /// Offset of `fn`.
    pub offset: usize,
    /// Variables the body reads that neither a parameter nor a `let`, `const` or `for` in the
    /// body binds (they can only come from outside the function), with their offsets.
    pub outside_reads: Vec<(String, usize)>,
}

/// Reads the outline of `source` (comments and strings skipped).
pub fn outline(source: &str) -> Outline {
    let tokens = tokenize(source);
    let mut out = Outline::default();
    let ident = |k: usize| match tokens.get(k) {
        Some((Token::Ident(name), at)) => Some((name.as_str(), *at)),
        _ => None,
    };
    let punct = |k: usize, c: char| matches!(tokens.get(k), Some((Token::Punct(p), _)) if *p == c);
    for (k, (token, at)) in tokens.iter().enumerate() {
        match token {
            Token::Ident(name) if name == "import" => out.imports.push(*at),
            Token::Ident(name) if name == "in_list" => {
                if let (Some((Token::Call, _)), Some((Token::Str(list), offset))) =
                    (tokens.get(k + 1), tokens.get(k + 2))
                {
                    out.list_names.push((list.clone(), *offset));
                }
            }
            _ => {}
        }
    }
    // The index after the `}` closing the brace opened at `open` (or the end).
    let close_of = |open: usize| {
        let mut depth = 0usize;
        for (k, (token, _)) in tokens.iter().enumerate().skip(open) {
            match token {
                Token::Punct('{') => depth += 1,
                Token::Punct('}') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return k + 1;
                    }
                }
                _ => {}
            }
        }
        tokens.len()
    };
    let mut k = 0;
    while k < tokens.len() {
        let Some((token, at)) = tokens.get(k) else {
            break;
        };
        let is_fn = ident(k).is_some_and(|(n, _)| n == "fn")
            || (ident(k).is_some_and(|(n, _)| n == "private")
                && ident(k + 1).is_some_and(|(n, _)| n == "fn"));
        if is_fn {
            let start = if ident(k).is_some_and(|(n, _)| n == "private") {
                k + 1
            } else {
                k
            };
            let name = ident(start + 1)
                .map(|(n, _)| n.to_string())
                .unwrap_or_default();
            let Some(open) = (start..tokens.len()).find(|&j| punct(j, '{')) else {
                break;
            };
            let end = close_of(open);
            let mut bound: Vec<&str> = (start + 2..open)
                .filter_map(ident)
                .map(|(n, _)| n)
                .collect();
            let mut function = FunctionOutline {
                name,
                offset: tokens.get(start).map_or(*at, |(_, o)| *o),
                outside_reads: Vec::new(),
            };
            for j in open..end {
                // A closure's parameters, `|a, b| ...`, are bound inside it.
                if punct(j, '|') {
                    let mut m = j + 1;
                    let mut params = Vec::new();
                    while let Some((name, _)) = ident(m) {
                        params.push(name);
                        m += 1;
                        if punct(m, ',') {
                            m += 1;
                        }
                    }
                    if !params.is_empty() && punct(m, '|') {
                        bound.extend(params);
                    }
                }
                let Some((name, offset)) = ident(j) else {
                    continue;
                };
                let after_binder = j > 0
                    && ident(j - 1).is_some_and(|(b, _)| matches!(b, "let" | "const" | "for"));
                // `for (item, index) in ...`
                let in_for_tuple = j > 1
                    && ident(j - 2).is_some_and(|(b, _)| b == "for")
                    && matches!(tokens.get(j - 1), Some((Token::Call, _)));
                let in_for_tuple_second =
                    j > 3 && ident(j - 4).is_some_and(|(b, _)| b == "for") && punct(j - 1, ',');
                if after_binder || in_for_tuple || in_for_tuple_second {
                    bound.push(name);
                    continue;
                }
                let property = j > 0 && matches!(tokens.get(j - 1), Some((Token::Dot, _)));
                let key_or_call =
                    punct(j + 1, ':') || matches!(tokens.get(j + 1), Some((Token::Call, _)));
                let keyword = matches!(
                    name,
                    "if" | "else"
                        | "while"
                        | "loop"
                        | "for"
                        | "in"
                        | "do"
                        | "until"
                        | "return"
                        | "break"
                        | "continue"
                        | "let"
                        | "const"
                        | "fn"
                        | "true"
                        | "false"
                        | "this"
                        | "switch"
                        | "throw"
                        | "try"
                        | "catch"
                        | "private"
                        | "global"
                        | "is_shared"
                        | "Fn"
                );
                if !property && !key_or_call && !keyword && !bound.contains(&name) {
                    function.outside_reads.push((name.to_string(), offset));
                }
            }
            out.functions.push(function);
            k = end;
            continue;
        }
        match token {
            Token::Punct(';') => k += 1,
            _ => {
                out.statements.push(*at);
                if let Some((binder, _)) = ident(k)
                    && matches!(binder, "let" | "const")
                    && let Some((name, offset)) = ident(k + 1)
                {
                    out.globals.push((name.to_string(), offset));
                }
                // To the `;` ending the statement at this level (or the end of the file).
                let mut depth = 0usize;
                while let Some((token, _)) = tokens.get(k) {
                    k += 1;
                    match token {
                        Token::Punct('{') => depth += 1,
                        Token::Punct('}') => depth = depth.saturating_sub(1),
                        Token::Punct(';') if depth == 0 => break,
                        _ => {}
                    }
                    if depth == 0 && ident(k).is_some_and(|(n, _)| n == "fn" || n == "private") {
                        break;
                    }
                }
            }
        }
    }
    out
}

/// Skips the text of a backtick string from index `i`: returns where scanning goes on and
/// whether that is inside a `${ }` (code) rather than after the closing backtick.
fn template_text(chars: &[(usize, char)], mut i: usize) -> (usize, bool) {
    while let Some((_, c)) = chars.get(i) {
        match c {
            '`' => return (i + 1, false),
            '\\' => i += 2,
            '$' if chars.get(i + 1).map(|(_, c)| *c) == Some('{') => return (i + 2, true),
            _ => i += 1,
        }
    }
    (i, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(source: &str, roots: &[&str]) -> Vec<(usize, Vec<String>)> {
        reads(source, roots)
            .into_iter()
            .map(|r| (r.root, r.segments.into_iter().map(|s| s.name).collect()))
            .collect()
    }

    fn path(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_string()).collect()
    }

    #[test]
    fn finds_dotted_indexed_and_optional_reads() {
        let source = r#"
fn detect(event) {
    let c = event.cmdline ?? "";
    if event?.comdline == () && event["sensor"]["version"] == "2" { return true; }
    event.name.to_lower().contains("x") || event.keys().len() > 0
}"#;
        assert_eq!(
            paths(source, &["event"]),
            vec![
                (0, path(&["cmdline"])),
                (0, path(&["comdline"])),
                (0, path(&["sensor", "version"])),
                (0, path(&["name"])),
            ]
        );
    }

    #[test]
    fn skips_comments_strings_and_other_roots() {
        let source = r#"
// event.in_a_comment
/* event.in_a_block /* nested event.deeper */ still event.comment */
let s = "event.in_a_string \" event.escaped";
let c = 'e';
let m = #{ event: 1 };
x.event.not_the_variable;
detection.entity.pid"#;
        assert_eq!(
            paths(source, &["event", "detection"]),
            vec![(1, path(&["entity", "pid"]))]
        );
    }

    #[test]
    fn reads_the_code_inside_backtick_interpolation() {
        let source =
            "let t = `host ${event.hots} ran ${ #{a: event.pid}.a } event.not_code`; event.name";
        assert_eq!(
            paths(source, &["event"]),
            vec![
                (0, path(&["hots"])),
                (0, path(&["pid"])),
                (0, path(&["name"]))
            ]
        );
    }

    #[test]
    fn offsets_point_at_the_name() {
        let source = "detection.severty == \"high\"";
        let found = reads(source, &["detection"]);
        assert_eq!(found[0].segments[0].offset, 10);
        let source = "event[\"x\"]";
        assert_eq!(reads(source, &["event"])[0].segments[0].offset, 7);
    }

    #[test]
    fn nearest_field_names_the_field_meant() {
        for (written, meant) in [
            ("comdline", Field::Cmdline),
            ("comandline", Field::Cmdline),
            ("CommandLine", Field::Cmdline),
            ("command_line", Field::Cmdline),
            ("remote_ips", Field::RemoteIp),
            ("DestinationIp", Field::RemoteIp),
            ("parent_nmae", Field::ParentName),
        ] {
            assert_eq!(nearest_field(written), Some(meant), "{written}");
        }
        assert_eq!(nearest_field("sensor_version"), None);
    }

    #[test]
    fn declared_paths_cover_reads_inside_and_on_the_way() {
        let read = |names: &[&str]| FieldRead {
            path: path(names),
            position: Position::START,
        };
        let declared = vec!["sensor.version".to_string()];
        assert!(read(&["sensor", "version"]).is_declared(&declared));
        assert!(read(&["sensor"]).is_declared(&declared));
        assert!(read(&["sensor", "version", "major"]).is_declared(&declared));
        assert!(!read(&["sensor", "name"]).is_declared(&declared));
        assert!(!read(&["sensors"]).is_declared(&declared));
    }
}
