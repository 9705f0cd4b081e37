//! The crate's top-level modules depend on each other in one direction, the order written in
//! docs/architecture.md ("Dependency order"). This test reads the sources, not the compiled
//! crate, so it needs nothing but the files:
//!
//! - every `src/**/*.rs` belongs to the top-level module of its first path component
//!   (`src/engine/drive.rs` to `engine`, `src/bus.rs` to `bus`; `src/main.rs` is `main`);
//! - test code counts like any other code: a unit test that needs a higher module ties its
//!   module to that one as much as an import does, so it belongs in the higher module (or in
//!   tests/integration/);
//! - comments count too: a doc link [`crate::x::Y`] or a path named in prose says the module
//!   leans on `x`, so it is read as a reference. Only string, byte-string, raw-string and char
//!   literals are blanked, so a log target or a test's input text naming a module is not one;
//! - a dependency is any `crate::name` path (in `use` lines, inline paths and comments, groups
//!   `crate::{a::X, b::Y}` included) and, in `main.rs`, `palisade::name`.
//!
//! It fails when a module is missing from the table, when an edge goes up or sideways in the
//! table and is not in [`AGAINST_THE_ORDER`], when the graph without those edges has a cycle
//! (named), and when an entry of [`AGAINST_THE_ORDER`] no longer exists, so that list only shrinks.

#![expect(
    clippy::panic,
    reason = "the check stops at once on a file it cannot read"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Edges that still go against the order, `(from, to)`. Each is a known debt with what would
/// remove it; new ones are refused. Remove an entry when its last import goes.
const AGAINST_THE_ORDER: &[(&str, &str)] = &[];

/// One edge's evidence: the first place it was seen.
#[derive(Debug, Clone)]
struct Seen {
    file: PathBuf,
    line: usize,
}

type Graph = BTreeMap<String, BTreeMap<String, Seen>>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn top_level_modules_depend_in_one_direction() {
    let problems = check(
        &root().join("src"),
        &root().join("docs/architecture.md"),
        AGAINST_THE_ORDER,
    );
    assert!(
        problems.is_empty(),
        "dependencies between top-level modules:\n{}",
        problems.join("\n")
    );
}

/// Every problem with the module graph under `src` against the layer table in `doc`, given the
/// edges `allowed` to go against it.
fn check(src: &Path, doc: &Path, allowed: &[(&str, &str)]) -> Vec<String> {
    let graph = module_graph(src);
    let layers = layer_table(doc);
    let mut problems = Vec::new();

    for module in graph.keys() {
        if !layers.contains_key(module) {
            problems.push(format!(
                "module `{module}` is not in the layer table of docs/architecture.md"
            ));
        }
    }
    let allowed: BTreeSet<(String, String)> = allowed
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    for (from, targets) in &graph {
        for (to, seen) in targets {
            let (Some(&lf), Some(&lt)) = (layers.get(from), layers.get(to)) else {
                continue;
            };
            if lt >= lf && !allowed.contains(&(from.clone(), to.clone())) {
                problems.push(format!(
                    "`{from}` (layer {lf}) uses `{to}` (layer {lt}) at {}:{}: a module may use only \
                     modules in lower layers",
                    relative(&seen.file),
                    seen.line
                ));
            }
        }
    }
    for (from, to) in &allowed {
        if !graph.get(from).is_some_and(|t| t.contains_key(to)) {
            problems.push(format!(
                "`{from}` -> `{to}` is listed in AGAINST_THE_ORDER but no longer exists: remove it"
            ));
        }
    }
    let mut kept = graph.clone();
    for (from, to) in &allowed {
        if let Some(targets) = kept.get_mut(from) {
            targets.remove(to);
        }
    }
    for cycle in cycles(&kept) {
        let (members, cycle) = cycle;
        let mut text = cycle.join(" -> ");
        text.push_str(&format!(" -> {}", cycle[0]));
        let evidence: Vec<String> = cycle
            .iter()
            .zip(cycle.iter().cycle().skip(1))
            .map(|(a, b)| {
                let seen = &kept[a][b];
                format!("{a} -> {b} at {}:{}", relative(&seen.file), seen.line)
            })
            .collect();
        problems.push(format!(
            "import cycle among {}: {text} ({})",
            members.join(", "),
            evidence.join("; ")
        ));
    }
    problems
}

/// The whole check on a small tree: an edge up the table fails with its file and line, the
/// cycle it closes is named, test code and doc links count, an unlisted module is reported, an
/// exception allows its edge, and an exception that matches nothing fails.
#[test]
fn an_import_against_the_order_fails_naming_the_file_line_and_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("low")).unwrap();
    fs::write(
        src.join("lib.rs"),
        "pub mod high;\npub mod low;\npub mod other;\npub mod side;\n",
    )
    .unwrap();
    fs::write(src.join("high.rs"), "use crate::low::Thing;\n").unwrap();
    fs::write(
        src.join("low/mod.rs"),
        "pub struct Thing;\n\npub fn f() {\n    crate::high::g();\n}\n\n#[cfg(test)]\nmod tests;\n",
    )
    .unwrap();
    // A unit test file counts like the module's other files.
    fs::write(src.join("low/tests.rs"), "use crate::side::X;\n").unwrap();
    // So does a doc link.
    fs::write(src.join("other.rs"), "//! See [`crate::high::g`].\n").unwrap();
    fs::write(src.join("side.rs"), "").unwrap();
    let doc = dir.path().join("architecture.md");
    fs::write(
        &doc,
        "# x\n\n## Dependency order\n\n| layer | modules |\n| --- | --- |\n| 2 | `high` |\n| 1 | `side` |\n| 0 | `low` |\n",
    )
    .unwrap();

    let problems = check(&src, &doc, &[]);
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(
        problems[0].contains("module `other` is not in the layer table"),
        "{problems:#?}"
    );
    assert!(
        problems[1].starts_with("`low` (layer 0) uses `high` (layer 2) at ")
            && problems[1].contains("low/mod.rs:4"),
        "{problems:#?}"
    );
    assert!(
        problems[2].starts_with("`low` (layer 0) uses `side` (layer 1) at ")
            && problems[2].contains("low/tests.rs:1"),
        "{problems:#?}"
    );
    assert!(
        problems[3].starts_with("import cycle among high, low: high -> low -> high"),
        "{problems:#?}"
    );
    assert!(
        module_graph(&src)["other"].contains_key("high"),
        "a doc link is a reference"
    );

    let problems = check(&src, &doc, &[("low", "high"), ("low", "side")]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let problems = check(
        &src,
        &doc,
        &[("low", "high"), ("low", "side"), ("high", "other")],
    );
    assert!(
        problems
            .iter()
            .any(|p| p
                .contains("`high` -> `other` is listed in AGAINST_THE_ORDER but no longer exists")),
        "{problems:#?}"
    );
}

/// Defect: the check left out `#[cfg(test)]` code and blanked comments, so a unit test or a
/// doc link that reached a higher module was not seen, and the modules still formed one loop.
/// Each of these three alone now makes the edge; a string naming the module does not.
#[test]
fn a_higher_module_reached_only_from_a_unit_test_or_a_doc_link_is_an_edge() {
    let doc_text = "# x\n\n## Dependency order\n\n| layer | modules |\n| --- | --- |\n| 1 | `high` |\n| 0 | `low` |\n";
    let uses = [
        // An inline test module.
        "pub struct Thing;\n\n#[cfg(test)]\nmod tests {\n    use crate::high::g;\n}\n",
        // A test module in its own file (written below).
        "pub struct Thing;\n\n#[cfg(test)]\nmod tests;\n",
        // A doc link.
        "/// Handed to [`crate::high::g`].\npub struct Thing;\n",
    ];
    for (n, low) in uses.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("low")).unwrap();
        fs::write(src.join("lib.rs"), "pub mod high;\npub mod low;\n").unwrap();
        fs::write(src.join("high.rs"), "pub fn g() {}\n").unwrap();
        fs::write(src.join("low/mod.rs"), low).unwrap();
        if n == 1 {
            fs::write(
                src.join("low/tests.rs"),
                "fn t() {\n    crate::high::g();\n}\n",
            )
            .unwrap();
        }
        let doc = dir.path().join("architecture.md");
        fs::write(&doc, doc_text).unwrap();
        let problems = check(&src, &doc, &[]);
        assert_eq!(problems.len(), 1, "case {n}: {problems:#?}");
        assert!(
            problems[0].starts_with("`low` (layer 0) uses `high` (layer 1) at "),
            "case {n}: {problems:#?}"
        );
    }

    // Text in a string literal is not a path.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("high.rs"), "").unwrap();
    fs::write(
        src.join("low.rs"),
        "#[cfg(test)]\nmod tests {\n    const T: &str = \"crate::high::g\";\n}\n",
    )
    .unwrap();
    let doc = dir.path().join("architecture.md");
    fs::write(&doc, doc_text).unwrap();
    assert_eq!(check(&src, &doc, &[]), Vec::<String>::new());
}

/// Shows the graph the check sees: `cargo test --test architecture -- --ignored --nocapture`.
#[test]
#[ignore = "prints the module graph; not a check"]
fn print_module_graph() {
    let graph = module_graph(&root().join("src"));
    for (from, targets) in &graph {
        let names: Vec<&str> = targets.keys().map(String::as_str).collect();
        println!("{from}: {}", names.join(" "));
    }
}

#[test]
fn the_reader_sees_grouped_and_inline_paths_tests_and_comments_but_not_literals() {
    let source = r#"
//! see [`crate::cli`]
use crate::{event::Event, detection::{Detection, Severity}};
use std::fmt;
fn f() -> crate::intel::Hit { let s = "crate::state"; let c = '{'; crate::text::inert(s) }
/* crate::sinks */
// a "quote in prose does not open a literal: crate::rules
#[cfg(test)]
mod tests {
    use crate::engine::Engine;
    fn g() { let x = "}"; let y = r"crate::audit"; let z = b"crate::bus"; }
}
#[cfg(test)]
use crate::metrics;
fn h() { crate::net::x() }
"#;
    let code = blank_literals(source);
    let refs: BTreeSet<String> = references(&code, "crate")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let expected: BTreeSet<String> = [
        "cli",
        "event",
        "detection",
        "intel",
        "text",
        "sinks",
        "rules",
        "engine",
        "metrics",
        "net",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(refs, expected);
}

#[test]
fn a_cycle_is_found_and_named() {
    let mut graph = Graph::new();
    let seen = Seen {
        file: PathBuf::from("x.rs"),
        line: 1,
    };
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        graph
            .entry(a.to_string())
            .or_default()
            .insert(b.to_string(), seen.clone());
    }
    let found = cycles(&graph);
    assert_eq!(found.len(), 1);
    let (members, path) = &found[0];
    assert_eq!(members, &["a", "b", "c"]);
    assert_eq!(path, &["a", "b", "c"]);
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The layer of each module, from the table under "## Dependency order": rows
/// `| <number> | `a`, `b` | ... |`, higher numbers on top.
fn layer_table(doc: &Path) -> BTreeMap<String, u32> {
    let text = fs::read_to_string(doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    let mut layers = BTreeMap::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("## ") {
            inside = line.trim() == "## Dependency order";
            continue;
        }
        if !inside || !line.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(number), Some(modules)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Ok(number) = number.parse::<u32>() else {
            continue;
        };
        for name in modules.split(',') {
            let name = name.trim().trim_matches('`');
            if !name.is_empty() {
                let before = layers.insert(name.to_string(), number);
                assert!(
                    before.is_none(),
                    "`{name}` is in two layers of {}",
                    doc.display()
                );
            }
        }
    }
    assert!(
        !layers.is_empty(),
        "no layer table under \"## Dependency order\" in {}",
        doc.display()
    );
    layers
}

fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    collect_files(src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let Some(module) = top_module(src, &file) else {
            continue;
        };
        let source =
            fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let code = blank_literals(&source);
        let prefix = if module == "main" {
            "palisade"
        } else {
            "crate"
        };
        let targets = graph.entry(module.clone()).or_default();
        for (name, line) in references(&code, prefix) {
            if name != module {
                targets.entry(name).or_insert(Seen {
                    file: file.clone(),
                    line,
                });
            }
        }
    }
    graph
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/lib.rs` declares modules and names none; it belongs to no module.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_string())
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The source with comments, string, byte-string, raw-string and char literals replaced by
/// spaces (newlines kept, so line numbers hold).
fn blank_literals(source: &str) -> String {
    let b = source.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let prev_ident = i > 0 && is_ident(b[i - 1]);
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p);
                // Kept: a doc link or a path named in a comment is a reference too. Skipped
                // over, so a quote in prose does not open a literal.
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                let mut j = i;
                while j < b.len() {
                    if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        j += 1;
                    }
                }
                i = j;
            }
            b'r' if !prev_ident
                || (i > 0 && b[i - 1] == b'b' && (i < 2 || !is_ident(b[i - 2]))) =>
            {
                // A raw string: r"..." or r#"..."#, as many # at the end as at the start.
                let mut j = i + 1;
                while b.get(j) == Some(&b'#') {
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let hashes = j - i - 1;
                let mut k = j + 1;
                let end = loop {
                    if k >= b.len() {
                        break b.len();
                    }
                    if b[k] == b'"'
                        && b[k + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|&&c| c == b'#')
                            .count()
                            == hashes
                    {
                        break k + 1 + hashes;
                    }
                    k += 1;
                };
                blank(&mut out, i, end);
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                blank(&mut out, i, j + 1);
                i = j + 1;
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): a lifetime has no
                // closing quote right after its first character.
                if b.get(i + 1) == Some(&b'\\') {
                    let mut j = i + 2;
                    while j < b.len() && b[j] != b'\'' {
                        j += 1;
                    }
                    blank(&mut out, i, j + 1);
                    i = j + 1;
                } else {
                    // The character may take several bytes.
                    let rest = &source[i + 1..];
                    let width = rest.chars().next().map_or(1, char::len_utf8);
                    if b.get(i + 1 + width) == Some(&b'\'') {
                        blank(&mut out, i, i + 2 + width);
                        i += 2 + width;
                    } else {
                        i += 1;
                    }
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| panic!("blanking kept UTF-8 boundaries"))
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Every `prefix::name` and `prefix::{name::.., name}` in the code, with its line.
fn references(code: &str, prefix: &str) -> Vec<(String, usize)> {
    let b = code.as_bytes();
    let needle = format!("{prefix}::");
    let needle = needle.as_bytes();
    let line_of = |at: usize| b[..at].iter().filter(|&&c| c == b'\n').count() + 1;
    let ident_at = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        let start = j;
        while j < b.len() && is_ident(b[j]) {
            j += 1;
        }
        (code[start..j].to_string(), j)
    };
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(pos) = find(b, needle, i) {
        i = pos + needle.len();
        if pos > 0 && is_ident(b[pos - 1]) {
            continue;
        }
        let mut j = i;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if b.get(j) == Some(&b'{') {
            // A group: the first name of each comma-separated entry at depth one.
            let mut depth = 0;
            let mut expect_name = true;
            while j < b.len() {
                match b[j] {
                    b'{' => {
                        depth += 1;
                        j += 1;
                    }
                    b'}' => {
                        depth -= 1;
                        j += 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b',' => {
                        if depth == 1 {
                            expect_name = true;
                        }
                        j += 1;
                    }
                    c if depth == 1 && expect_name && is_ident(c) => {
                        let (name, next) = ident_at(j);
                        if name != "self" {
                            found.push((name, line_of(j)));
                        }
                        expect_name = false;
                        j = next;
                    }
                    _ => j += 1,
                }
            }
            i = j;
        } else {
            let (name, _) = ident_at(j);
            if !name.is_empty() {
                found.push((name, line_of(pos)));
            }
        }
    }
    found
}

/// The strongly connected components with more than one module (Tarjan's algorithm): their
/// members, and one shortest cycle through the first member (a path that returns to its
/// start), so the message names a loop a reader can follow.
fn cycles(graph: &Graph) -> Vec<(Vec<String>, Vec<String>)> {
    let nodes: BTreeSet<&String> = graph
        .keys()
        .chain(graph.values().flat_map(|t| t.keys()))
        .collect();
    let index_of: BTreeMap<&String, usize> =
        nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let names: Vec<&String> = nodes.iter().copied().collect();
    let edges: Vec<Vec<usize>> = names
        .iter()
        .map(|n| {
            graph
                .get(*n)
                .map(|t| t.keys().map(|k| index_of[k]).collect())
                .unwrap_or_default()
        })
        .collect();

    struct Tarjan<'a> {
        edges: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        components: Vec<Vec<usize>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.next);
            self.low[v] = self.next;
            self.next += 1;
            self.stack.push(v);
            self.on_stack[v] = true;
            for &w in &self.edges[v] {
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                    Some(_) => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.components.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges: &edges,
        index: vec![None; names.len()],
        low: vec![0; names.len()],
        on_stack: vec![false; names.len()],
        stack: Vec::new(),
        next: 0,
        components: Vec::new(),
    };
    for v in 0..names.len() {
        if t.index[v].is_none() {
            t.visit(v);
        }
    }

    // Within a component, a shortest way back from its first member to itself.
    t.components
        .iter()
        .map(|component| {
            let members: BTreeSet<usize> = component.iter().copied().collect();
            let start = *members.iter().next().unwrap_or(&0);
            let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([start]);
            let mut last = start;
            'search: while let Some(v) = queue.pop_front() {
                for &w in &edges[v] {
                    if !members.contains(&w) {
                        continue;
                    }
                    if w == start {
                        last = v;
                        break 'search;
                    }
                    if let std::collections::btree_map::Entry::Vacant(e) = parent.entry(w) {
                        e.insert(v);
                        queue.push_back(w);
                    }
                }
            }
            let mut path = vec![last];
            while let Some(&p) = parent.get(path.last().unwrap_or(&start)) {
                path.push(p);
            }
            if path.last() != Some(&start) {
                path.push(start);
            }
            path.reverse();
            path.dedup();
            let members = members.iter().map(|&i| names[i].clone()).collect();
            (
                members,
                path.into_iter().map(|i| names[i].clone()).collect(),
            )
        })
        .collect()
}
