use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::detection::{Detection, Entity};
use crate::event::{Event, EventKind};

fn load(source: &str) -> Result<RuleDefinition, Diagnostics> {
    load_rule(Path::new("rules/r.rhai"), source, &RuleLimits::default())
}

fn problems(source: &str) -> Vec<(usize, usize, &'static str, String)> {
    load(source)
        .expect_err("the rule should not load")
        .into_iter()
        .map(|d| (d.line, d.column, d.code, d.message))
        .collect()
}

fn evaluate(rules: &[&str], event: &Event) -> (Vec<Detection>, Vec<RuleFailure>) {
    let definitions: Vec<Arc<RuleDefinition>> = rules
        .iter()
        .map(|s| Arc::new(load(s).expect("rule loads")))
        .collect();
    let mut engine = RuleEngine::build(
        &definitions,
        &RuleLimits::default(),
        &crate::intel::IntelHandle::default(),
    )
    .expect("builds");
    let (mut detections, mut failures) = (Vec::new(), Vec::new());
    engine.evaluate(event, &[], &mut detections, &mut failures);
    (detections, failures)
}

fn process(name: &str, parent: &str) -> Event {
    let mut event = Event::new("e1", EventKind::ProcessCreate, 0);
    event.pid = Some(4242);
    event.name = Some(name.into());
    event.parent_name = Some(parent.into());
    event.cmdline = Some(format!("{name} -x"));
    event
}

const HEADER: &str =
    r#"let rule = #{ id: "r", title: "T", severity: "medium", events: ["process_create"] };"#;

#[test]
fn metadata_problems_point_at_their_key() {
    let found = problems(
        "let rule = #{\n  id: \"r\",\n  title: \"T\",\n  severity: \"severe\",\n  events: [\"process_create\", \"file_write\"],\n  tgas: [],\n};\nfn detect(event) { true }\n",
    );
    let codes: Vec<_> = found
        .iter()
        .map(|(l, c, code, _)| (*l, *c, *code))
        .collect();
    assert_eq!(
        codes,
        [
            (6, 3, "rule-unknown-key"),
            (4, 3, "rule-bad-severity"),
            (5, 3, "rule-unknown-event-type")
        ]
    );
    assert!(found[0].3.contains("did you mean `tags`"), "{}", found[0].3);
}

#[test]
fn a_rule_needs_metadata_and_a_condition() {
    assert_eq!(
        problems("fn detect(event) { true }")[0].2,
        "rule-missing-metadata"
    );
    let found = problems(HEADER);
    assert_eq!(found[0].2, "rule-matches-everything");
    let found = problems(&format!("{HEADER}\nfn detect(a, b) {{ true }}"));
    assert!(found.iter().any(|p| p.2 == "rule-detect-signature"));
}

#[test]
fn filter_on_a_field_the_events_never_carry_is_an_error() {
    let found = problems(
        r#"let rule = #{ id: "r", title: "T", severity: "low", events: ["process_create"], filter: #{ query_name: ["x"] } };"#,
    );
    assert_eq!(found[0].2, "rule-field-never-set");
}

#[test]
fn the_filter_alone_makes_a_declarative_rule() {
    let rule = r#"let rule = #{ id: "office-cmd", title: "Office cmd", severity: "high", tags: ["attack.t1059"],
        events: ["process_create"], filter: #{ parent_name: ["winword.exe"], name: "cmd.exe" } };"#;
    let (detections, failures) = evaluate(&[rule], &process("CMD.EXE", "WinWord.exe"));
    assert!(failures.is_empty());
    assert_eq!(detections.len(), 1);
    assert_eq!(&*detections[0].rule, "office-cmd");
    assert_eq!(&*detections[0].tags, ["attack.t1059".to_string()]);
    assert!(
        evaluate(&[rule], &process("cmd.exe", "explorer.exe"))
            .0
            .is_empty()
    );
}

#[test]
fn detect_can_override_and_name_the_entity() {
    let rule = format!(
        "{HEADER}\nfn detect(event) {{ #{{ title: `${{event.name}} ran`, severity: \"critical\", score: 0.75, entity: \"process\" }} }}"
    );
    let (detections, _) = evaluate(&[&rule], &process("cmd.exe", "x"));
    let d = &detections[0];
    assert_eq!(d.title, "cmd.exe ran");
    assert_eq!(d.severity, crate::detection::Severity::Critical);
    assert_eq!(d.score, Some(0.75));
    assert_eq!(
        d.entity,
        Some(Entity::Process {
            pid: 4242,
            name: Some("cmd.exe".into())
        })
    );

    let rule = format!(
        "{HEADER}\nfn detect(event) {{ #{{ entity: #{{ address: \"::ffff:10.1.2.3\" }} }} }}"
    );
    let (detections, _) = evaluate(&[&rule], &process("cmd.exe", "x"));
    assert_eq!(
        detections[0].entity,
        Some(Entity::Address {
            ip: "10.1.2.3".parse().expect("ip")
        })
    );
}

#[test]
fn a_failing_rule_is_skipped_and_reported_while_the_others_run() {
    let broken = r#"let rule = #{ id: "broken", title: "B", severity: "low", events: ["process_create"] };
fn detect(event) { event.cmdline.no_such_function() }"#;
    let bad_return = r#"let rule = #{ id: "bad-return", title: "B", severity: "low", events: ["process_create"] };
fn detect(event) { #{ severity: "apocalyptic" } }"#;
    let spins = r#"let rule = #{ id: "spins", title: "S", severity: "low", events: ["process_create"] };
fn detect(event) { let n = 0; while true { n += 1; } }"#;
    let fine = format!("{HEADER}\nfn detect(event) {{ event.name == \"cmd.exe\" }}");
    let (detections, failures) = evaluate(
        &[broken, bad_return, spins, &fine],
        &process("cmd.exe", "x"),
    );
    assert_eq!(detections.len(), 1);
    assert_eq!(&*detections[0].rule, "r");
    let failed: Vec<(&str, bool)> = failures
        .iter()
        .map(|f| (&*f.rule, !f.message.is_empty()))
        .collect();
    assert_eq!(
        failed,
        [("broken", true), ("bad-return", true), ("spins", true)]
    );
    assert!(
        failures[1]
            .message
            .contains("unknown severity `apocalyptic`"),
        "{}",
        failures[1].message
    );
    assert!(
        failures[2].message.contains("operations limit"),
        "{}",
        failures[2].message
    );
}

#[test]
fn rules_see_unknown_fields_and_absent_fields_read_as_unit() {
    let rule = format!(
        "{HEADER}\nfn detect(event) {{ event.sensor.version == \"2.1\" && (event.user ?? \"nobody\") == \"nobody\" }}"
    );
    let mut event = process("cmd.exe", "x");
    event
        .extra
        .insert("sensor".into(), serde_json::json!({"version": "2.1"}));
    assert_eq!(evaluate(&[&rule], &event).0.len(), 1);
}

#[test]
fn rules_are_indexed_by_event_type() {
    let dns = r#"let rule = #{ id: "dns", title: "D", severity: "low", events: ["dns_query"] };
fn detect(event) { true }"#;
    let definitions = vec![Arc::new(load(dns).expect("loads"))];
    let engine = RuleEngine::build(
        &definitions,
        &RuleLimits::default(),
        &crate::intel::IntelHandle::default(),
    )
    .expect("builds");
    assert_eq!(engine.rules_for(EventKind::DnsQuery), 1);
    assert_eq!(engine.rules_for(EventKind::ProcessCreate), 0);
}

#[test]
fn embedded_tests_are_parsed_with_their_line() {
    let rule = format!(
        "{HEADER}\nfn detect(event) {{ true }}\nlet tests = [\n  #{{ name: \"fires\", event: #{{ type: \"process_create\" }}, expect: true }},\n  #{{ name: \"from a file\", fixture: \"tests/fixtures/x.jsonl\", expect: #{{ severity: \"medium\" }} }},\n];"
    );
    let definition = load(&rule).expect("loads");
    assert_eq!(definition.tests.len(), 2);
    assert_eq!(definition.tests[0].line, 4);
    assert!(matches!(
        definition.tests[1].input,
        crate::testing::TestInput::Fixture(_)
    ));
    let found = problems(&format!(
        "{HEADER}\nfn detect(event) {{ true }}\nlet tests = [ #{{ name: \"no input\", expect: true }} ];"
    ));
    assert!(
        found[0]
            .3
            .contains("needs exactly one of `event`, `events` or `fixture`"),
        "{}",
        found[0].3
    );
}

#[test]
fn an_intel_filter_runs_the_rule_only_for_events_with_hits() {
    let rule = r#"let rule = #{ id: "listed", title: "Listed", severity: "high", events: ["network_connection"], filter: #{ intel: ["ip", "cidr"] } };
fn detect(event) { true }"#;
    let definition = Arc::new(load(rule).expect("loads"));
    let mut engine = RuleEngine::build(
        &[definition],
        &RuleLimits::default(),
        &crate::intel::IntelHandle::default(),
    )
    .expect("builds");
    let event = Event::new("e", EventKind::NetworkConnection, 0);
    let hit = |kind| crate::intel::IntelHit {
        value: "1.2.3.4".into(),
        indicator: "1.2.3.0/24".into(),
        kind,
        source: "feed".into(),
        confidence: 90,
        severity: 80,
        score: 87.0,
        threat: None,
        warning: None,
    };
    let (mut detections, mut failures) = (Vec::new(), Vec::new());
    engine.evaluate(&event, &[], &mut detections, &mut failures);
    assert!(detections.is_empty(), "no hits, no run");
    engine.evaluate(
        &event,
        &[hit(crate::intel::IndicatorKind::Domain)],
        &mut detections,
        &mut failures,
    );
    assert!(
        detections.is_empty(),
        "a hit of another kind does not count"
    );
    engine.evaluate(
        &event,
        &[hit(crate::intel::IndicatorKind::Cidr)],
        &mut detections,
        &mut failures,
    );
    assert_eq!(detections.len(), 1);
    let bad = r#"let rule = #{ id: "b", title: "B", severity: "high", events: ["dns_query"], filter: #{ intel: ["ipv9"] } };"#;
    assert!(
        problems(bad)
            .iter()
            .any(|p| p.3.contains("indicator kinds"))
    );
}
