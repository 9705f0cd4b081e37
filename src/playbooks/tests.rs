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
