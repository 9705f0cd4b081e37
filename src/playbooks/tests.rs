use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::diagnostics::Diagnostic;

fn load(source: &str) -> Result<Playbook, Diagnostics> {
    let (engine, _) = crate::rules::build_engine(
        &crate::rules::RuleLimits::default(),
        &crate::intel::IntelHandle::default(),
    );
    load_playbook(
        Path::new("playbooks/p.yaml"),
        source,
        &RuleNames::default(),
        false,
        &engine,
        None,
    )
}

fn refused(source: &str) -> Vec<Diagnostic> {
    load(source)
        .expect_err("the playbook should be refused")
        .into_iter()
        .collect()
}

// Item 10: 100,000 levels of `[` (200 KB) kept `validate` busy for 40 s.
#[test]
fn a_playbook_nested_100000_levels_deep_is_refused_fast() {
    for (deep, line, column) in [
        (
            format!("id: x\ntitle: t\nsteps: {}", "[".repeat(100_000)),
            3,
            71,
        ),
        (
            format!(
                "id: x\ntitle: t\nsteps:\n  - with: {}",
                "{a: ".repeat(50_000)
            ),
            4,
            11 + 4 * 61,
        ),
        (
            format!("id: x\ntitle: t\nsteps:\n{}x", "- ".repeat(100_000)),
            4,
            129,
        ),
    ] {
        let started = Instant::now();
        let found = refused(&deep);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].code, "yaml-too-deep");
        assert_eq!((found[0].line, found[0].column), (line, column));
        assert!(
            found[0].message.contains("deeper than 64"),
            "{}",
            found[0].message
        );
    }
}

#[test]
fn ordinary_nesting_and_brackets_in_text_are_not_counted_as_deep() {
    let source = "id: x\ntitle: \"[[[[ not a list\"\ndescription: 'a ]] b' # [[[[\nsteps:\n  - id: s\n    action: notify.log\n    with: {message: \"{{ detection.title }}\", level: info}\n";
    if let Err(found) = load(source) {
        assert!(found.iter().all(|d| d.code != "yaml-too-deep"), "{found:?}");
    }
}

// Item 10: `with: {address: 192.0.2.1, address: 1.2.3.4/0}` was accepted and the last won.
#[test]
fn duplicate_keys_inside_with_are_refused_with_their_position() {
    let flow = "id: x\ntitle: t\nsteps:\n  - id: block\n    action: firewall.block\n    with: {address: 192.0.2.1, address: 1.2.3.4/0}\n";
    let block = "id: x\ntitle: t\nsteps:\n  - id: block\n    action: firewall.block\n    with:\n      address: 192.0.2.1\n      ttl: 1h\n      address: 1.2.3.4/0\n";
    let deeper = "id: x\ntitle: t\ntrigger:\n  rules: [r]\ntests:\n  - name: n\n    events:\n      - {type: login, user: a, user: b}\n";
    for (source, line, column) in [(flow, 6, 32), (block, 9, 7), (deeper, 8, 32)] {
        let found = refused(source);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].code, "yaml-duplicate-key", "{}", found[0].message);
        assert_eq!((found[0].line, found[0].column), (line, column));
        assert!(
            found[0].message.contains("\"address\"") || found[0].message.contains("\"user\""),
            "{}",
            found[0].message
        );
        assert!(
            found[0]
                .render()
                .starts_with(&format!("playbooks/p.yaml:{line}:"))
        );
    }
}

// Found by the `config_parse` fuzz target: two empty keys (`? ` followed by comments) in one
// mapping sent the search for the duplicate's position into an endless loop, so `validate` hung.
#[test]
fn two_empty_keys_in_one_mapping_are_refused_without_hanging() {
    let source =
        "? #hema.j\n\n\n\n\n\n\n\n\n\n\n|\n\n\n\n\n? ##ma.\n\n\n\n|\n\n\n|\n\n\n\n\n? ## # #wtion";
    let started = Instant::now();
    assert!(!refused(source).is_empty());
    assert!(started.elapsed() < Duration::from_secs(2));
    let started = Instant::now();
    let config = crate::config::parse(Path::new("palisade.yaml"), source);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(config.is_err());
}

/// Copies the shipped content into a fresh directory.
fn shipped_content() -> tempfile::TempDir {
    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("creates");
        for entry in std::fs::read_dir(from).expect("lists") {
            let path = entry.expect("entry").path();
            let target = to.join(path.file_name().expect("a name"));
            if path.is_dir() {
                copy_tree(&path, &target);
            } else {
                std::fs::copy(&path, &target).expect("copies");
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    for sub in ["rules", "playbooks", "warninglists", "models"] {
        let from = root.join(sub);
        if from.is_dir() {
            copy_tree(&from, &dir.path().join(sub));
        }
    }
    dir
}

// Item 10: a playbook saved with a UTF-8 byte-order mark got `missing field title`; rules and the
// config take one too.
#[test]
fn content_saved_with_a_byte_order_mark_loads() {
    let dir = shipped_content();
    let with_bom = |path: &Path| {
        let text = std::fs::read_to_string(path).expect("reads");
        std::fs::write(path, format!("\u{feff}{text}")).expect("writes");
    };
    with_bom(&dir.path().join("playbooks/block-c2.yaml"));
    with_bom(&dir.path().join("rules/intel_c2_connection.rhai"));
    std::fs::write(
        dir.path().join(crate::config::CONFIG_FILE),
        "\u{feff}# comments only\n",
    )
    .expect("writes");
    let content = match crate::content::load(dir.path(), None) {
        Ok(content) => content,
        Err(found) => panic!("{}", found.render()),
    };
    assert!(content.playbooks.iter().any(|p| &*p.id == "block-c2"));
    assert!(
        content
            .rules
            .iter()
            .any(|r| &*r.id == "intel-c2-connection")
    );
    std::fs::write(
        dir.path().join(crate::config::CONFIG_FILE),
        "\u{feff}actions:\n  dry_run: true\n",
    )
    .expect("writes");
    assert!(crate::content::load(dir.path(), None).is_ok());
}
