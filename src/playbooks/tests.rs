use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::detection::Entity;
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

fn load_with_rules(source: &str, names: &[&str]) -> Result<Playbook, Diagnostics> {
    let (engine, _) = crate::rules::build_engine(
        &crate::rules::RuleLimits::default(),
        &crate::intel::IntelHandle::default(),
    );
    let mut rules = RuleNames::default();
    for name in names {
        rules.insert(name, &Arc::from(*name));
    }
    load_playbook(
        Path::new("playbooks/p.yaml"),
        source,
        &rules,
        false,
        &engine,
        None,
    )
}

const SHADOW: &str = "id: certutil-shadow
title: t
mode: shadow
trigger:
  rules: [certutil-download]
steps:
  - id: tell
    action: notify.redis
    when: WHEN
    with:
      message: \"MESSAGE\"
      channel: alerts
";

fn shadow(when: &str, message: &str) -> String {
    SHADOW.replace("WHEN", when).replace("MESSAGE", message)
}

/// Defect: `when: detection.severty == "high"` validated, and the step was then skipped on
/// every detection ("`when` is false") with nobody told.
#[test]
fn when_detection_severty_is_an_error_with_did_you_mean_severity() {
    let found: Vec<Diagnostic> = load_with_rules(
        &shadow("detection.severty == \"high\"", "x"),
        &["certutil-download"],
    )
    .expect_err("refused")
    .into_iter()
    .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].code, "when-unknown-field");
    assert_eq!((found[0].line, found[0].column), (9, 21), "under `severty`");
    assert!(
        found[0].message.contains("(did you mean `severity`?)"),
        "{}",
        found[0].message
    );
    // The entity's fields are closed too, and a quoted condition is located as well.
    let found: Vec<Diagnostic> = load_with_rules(
        &shadow("'detection.entity.adress != ()'", "x"),
        &["certutil-download"],
    )
    .expect_err("refused")
    .into_iter()
    .collect();
    assert_eq!((found[0].line, found[0].column), (9, 29), "{found:?}");
    assert!(found[0].message.contains("`detection.entity.adress`"));
    assert!(found[0].message.contains("(did you mean `address`?)"));
    // What a detection has passes, and so does a method call on it.
    load_with_rules(
        &shadow(
            "detection.severity == \"high\" && detection.tags.contains(\"x\") && detection.entity.pid > 0",
            "x",
        ),
        &["certutil-download"],
    )
    .expect("loads");
}

/// Defect: `message: "{{ event.comdline }}"` validated and the step was then refused on every
/// run (`event.comdline has no value`). The read is kept, with its position, for the check
/// against declared extra fields (content loading turns it into a warning).
#[test]
fn template_and_when_reads_of_unknown_event_fields_are_kept_with_their_position() {
    let playbook = load_with_rules(
        &shadow(
            "event.sensor.version == \"2\"",
            "{{ event.comdline }} on {{ event.host }}",
        ),
        &["certutil-download"],
    )
    .expect("an unknown event field alone does not refuse the playbook");
    let reads: Vec<(String, usize, usize)> = playbook
        .extra_reads
        .iter()
        .map(|r| (r.display(), r.position.line, r.position.column))
        .collect();
    assert_eq!(
        reads,
        vec![
            ("event.comdline".to_string(), 11, 26),
            ("event.sensor.version".to_string(), 9, 17),
        ]
    );
}

/// Defect: a trigger naming `certutil-downlaod` was reported without the name meant.
#[test]
fn a_typod_trigger_rule_id_suggests_the_real_one() {
    let source = shadow("true", "x").replace("[certutil-download]", "[certutil-downlaod]");
    let found: Vec<Diagnostic> = load_with_rules(&source, &["certutil-download", "other-rule"])
        .expect_err("refused")
        .into_iter()
        .collect();
    assert_eq!(found[0].code, "playbook-unknown-rule");
    assert_eq!((found[0].line, found[0].column), (5, 11));
    assert!(
        found[0]
            .message
            .contains("(did you mean `certutil-download`?)"),
        "{}",
        found[0].message
    );
}

#[test]
fn unknown_names_in_templates_and_enum_values_offer_the_nearest() {
    let refused = |source: &str| -> Vec<Diagnostic> {
        load_with_rules(source, &["certutil-download"])
            .expect_err("refused")
            .into_iter()
            .collect()
    };
    let found = refused(&shadow("true", "{{ detection.titel }}"));
    assert!(
        found[0].message.contains("(did you mean `title`?)"),
        "{}",
        found[0].message
    );
    let found = refused(&shadow("true", "{{ entity.nmae }}"));
    assert!(found[0].message.contains("(did you mean `name`?)"));
    let with_test = format!(
        "{}tests:\n  - name: t\n    events: []\n    expect:\n      actions:\n        - step: tel\n",
        shadow("true", "x")
    );
    let found = refused(&with_test);
    assert!(
        found[0].message.contains("(did you mean `tell`?)"),
        "{}",
        found[0].message
    );
    let found = refused(&shadow("true", "x").replace("mode: shadow", "mode: shadw"));
    assert!(
        found[0].message.contains("(did you mean `shadow`?)"),
        "{}",
        found[0].message
    );
}

/// The closed set validation checks `when` against is the map `when` reads.
#[test]
fn detection_fields_are_the_keys_of_the_detection_map() {
    let detection = crate::detection::Detection {
        event_id: "e".into(),
        rule: Arc::from("r"),
        stage: Stage::Rule,
        severity: Severity::High,
        status: crate::detection::RuleStatus::Stable,
        title: "t".into(),
        tags: Arc::from(vec![]),
        entity: None,
        score: None,
        intel: Vec::new(),
        attribution: None,
    };
    let map = plan::detection_to_dynamic(&detection)
        .try_cast::<rhai::Map>()
        .expect("a map");
    let mut keys: Vec<String> = map.keys().map(|k| k.to_string()).collect();
    keys.sort();
    let mut known: Vec<String> = DETECTION_FIELDS.iter().map(|k| k.to_string()).collect();
    known.sort();
    assert_eq!(keys, known);
    for entity in [
        Entity::Process {
            pid: 1,
            name: Some("x".into()),
        },
        Entity::Address {
            ip: "192.0.2.1".parse().expect("ip"),
        },
        Entity::User { name: "u".into() },
    ] {
        let with = crate::detection::Detection {
            entity: Some(entity),
            ..detection.clone()
        };
        let map = plan::detection_to_dynamic(&with)
            .try_cast::<rhai::Map>()
            .expect("a map");
        let entity = map
            .get("entity")
            .and_then(|e| e.clone().try_cast::<rhai::Map>())
            .expect("an entity map");
        for key in entity.keys() {
            assert!(ENTITY_FIELDS.contains(&key.as_str()), "{key}");
        }
    }
}

/// A trigger without `statuses` passes over `test`, `experimental` and `unsupported`
/// detections; one that lists statuses takes exactly those.
#[test]
fn a_trigger_acts_on_detections_not_yet_vouched_for_only_when_it_lists_them() {
    use crate::detection::RuleStatus;
    let base = "id: p\ntitle: t\ntrigger:\n  min_severity: low\nsteps:\n  - id: s\n    action: notify.log\n    with:\n      message: m\n";
    let default = load(base).expect("loads").trigger;
    let asking = load(&base.replace(
        "  min_severity: low\n",
        "  min_severity: low\n  statuses: [test, stable]\n",
    ))
    .expect("loads")
    .trigger;
    for status in RuleStatus::ALL {
        let detection = crate::detection::Detection {
            event_id: "e".into(),
            rule: Arc::from("r"),
            stage: Stage::Rule,
            severity: Severity::High,
            status,
            title: "t".into(),
            tags: Arc::from(vec![]),
            entity: None,
            score: None,
            intel: Vec::new(),
            attribution: None,
        };
        assert_eq!(
            default.matches(&detection),
            matches!(status, RuleStatus::Stable | RuleStatus::Deprecated),
            "{status}"
        );
        assert_eq!(
            asking.matches(&detection),
            matches!(status, RuleStatus::Test | RuleStatus::Stable),
            "{status}"
        );
    }
    // `statuses` alone is a condition: the trigger is not "every detection".
    let only = base.replace("  min_severity: low\n", "  statuses: [test]\n");
    assert!(load(&only).is_ok());
    // A misspelt status offers the one meant.
    let found = refused(&base.replace("  min_severity: low\n", "  statuses: [tset]\n"));
    assert_eq!(found[0].line, 4, "{:?}", found[0]);
    assert!(
        found[0].message.contains("did you mean `test`?"),
        "{}",
        found[0].message
    );
}

// `palisade explain` says which part of a trigger a detection missed, by the same test that
// decides whether the playbook runs.
#[test]
fn a_trigger_says_which_part_a_detection_missed() {
    let trigger = Trigger {
        rules: vec![Arc::from("r")],
        tags: vec!["attack.t1059".into()],
        min_severity: Some(Severity::High),
        stages: vec![Stage::Rule],
        statuses: Vec::new(),
    };
    let base = Detection {
        event_id: "e".into(),
        rule: Arc::from("r"),
        stage: Stage::Rule,
        severity: Severity::High,
        status: crate::detection::RuleStatus::Stable,
        title: "t".into(),
        tags: Arc::from(vec!["attack.t1059.001".to_string()]),
        entity: None,
        score: None,
        intel: Vec::new(),
        attribution: None,
    };
    let cases = [
        (base.clone(), None),
        (
            Detection {
                rule: Arc::from("other"),
                ..base.clone()
            },
            Some("its rule is not one the trigger names"),
        ),
        (
            Detection {
                tags: Arc::from(vec!["attack.t10590".to_string()]),
                ..base.clone()
            },
            Some("it has none of the trigger's tags"),
        ),
        (
            Detection {
                severity: Severity::Medium,
                ..base.clone()
            },
            Some("its severity is below the trigger's min_severity"),
        ),
        (
            Detection {
                stage: Stage::Anomaly,
                ..base.clone()
            },
            Some("its stage is not one the trigger names"),
        ),
        (
            Detection {
                status: crate::detection::RuleStatus::Test,
                ..base.clone()
            },
            Some(
                "its rule's status is one the trigger does not act on (see the trigger's `statuses`)",
            ),
        ),
    ];
    for (detection, why) in cases {
        assert_eq!(trigger.mismatch(&detection), why);
        assert_eq!(trigger.matches(&detection), why.is_none());
    }
}
