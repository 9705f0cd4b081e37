//! `palisade explain`, `replay --explain`, the miss explanation of `palisade test`, and rule
//! `debug()` output: why an event did or did not match.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{assert_success, json_lines, palisade, repo, scratch_content, stderr, stdout};

/// A connection to an address no feed lists, then one to a listed C2 address, from one host.
const CONNECTIONS: &str = r#"{"type":"network_connection","timestamp":"2025-11-03T14:29:00Z","id":"c-1","host":"ws-17","pid":1234,"name":"svchost.exe","remote_ip":"10.1.2.3","remote_port":443}
{"type":"network_connection","timestamp":"2025-11-03T14:30:05Z","id":"c-2","host":"ws-17","pid":1234,"name":"svchost.exe","remote_ip":"185.12.33.4","remote_port":80}
"#;

/// The shipped content with the shipped anomaly model named, the C2 address imported into the
/// state database as an indicator, and [`CONNECTIONS`] in `events.jsonl`.
fn content_with_intel_and_model() -> tempfile::TempDir {
    let dir = scratch_content();
    std::fs::create_dir_all(dir.path().join("models")).expect("mkdir");
    std::fs::copy(
        repo().join("models/anomaly.model"),
        dir.path().join("models/anomaly.model"),
    )
    .expect("copy the model");
    std::fs::write(
        dir.path().join("palisade.yaml"),
        "anomaly:\n  model: models/anomaly.model\n",
    )
    .expect("config");
    // A strong indicator, and a weak one (score 60: below the 0.8 of block-c2's `when`).
    for (address, source, confidence) in [
        ("185.12.33.4", "feodo", "90"),
        ("185.12.33.5", "weak", "60"),
    ] {
        std::fs::write(dir.path().join("feed.txt"), format!("{address}\n")).expect("feed");
        let out = palisade(
            &[
                "intel",
                "import",
                "feed.txt",
                "--format",
                "plain",
                "--kind",
                "ip",
                "--source",
                source,
                "--confidence",
                confidence,
                "--severity",
                if source == "weak" { "60" } else { "80" },
            ],
            dir.path(),
        );
        assert_success(&out);
    }
    std::fs::write(dir.path().join("events.jsonl"), CONNECTIONS).expect("events");
    dir
}

fn explained(args: &[&str], dir: &Path) -> Value {
    let mut all = vec!["explain"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json"]);
    let out = palisade(&all, dir);
    assert_success(&out);
    serde_json::from_str(&stdout(&out)).expect("one JSON document")
}

/// Defect: there was no way to see why an event did or did not match. `explain` shows, for one
/// event, each filter condition with its outcome, what `detect` returned, the intel hits, the
/// anomaly score (or why none), the tracker's view and each playbook's trigger and `when`.
#[test]
fn explain_shows_filter_conditions_intel_anomaly_tracker_and_playbook_when() {
    let dir = content_with_intel_and_model();
    let e = explained(&["events.jsonl", "--line", "2"], dir.path());

    assert_eq!(e["event"]["id"], "c-2");
    let hit = &e["intel"][0];
    assert_eq!(
        (&hit["indicator"], &hit["kind"], &hit["source"]),
        (
            &Value::from("185.12.33.4"),
            &Value::from("ip"),
            &Value::from("feodo")
        )
    );
    assert!(hit.get("warning").is_none(), "not warninglisted: {hit}");
    assert_eq!(hit["score"], 87.0);

    let rules = e["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 1, "one rule is for connections: {rules:?}");
    let c2 = &rules[0];
    assert_eq!(c2["rule"], "intel-c2-connection");
    assert_eq!(c2["filter"]["intel"]["held"], true);
    assert_eq!(c2["filter"]["passed"], true);
    assert_eq!(c2["detect"]["outcome"], "returned");
    assert_eq!(c2["detect"]["detected"], true);
    assert!(
        c2["detect"]["value"]
            .as_str()
            .expect("value")
            .contains("\"severity\": \"critical\""),
        "{c2}"
    );
    assert_eq!(e["other_rules"], 7);

    assert_eq!(e["anomaly"]["outcome"], "not_scored");
    assert!(
        e["anomaly"]["reason"]
            .as_str()
            .expect("reason")
            .contains("a rule matched")
    );
    // The line before it ran first: the tracker has one connection of ws-17.
    assert_eq!(e["tracker"]["tracked"], true);
    assert_eq!(e["tracker"]["entity"], "ws-17");
    assert_eq!(e["tracker"]["records"], serde_json::json!(["connect", 1]));
    assert_eq!(e["tracker"]["distinct_ports"], 0);

    let playbooks = e["playbooks"].as_array().expect("playbooks");
    let block = playbooks
        .iter()
        .find(|p| p["playbook"] == "block-c2")
        .expect("block-c2");
    assert_eq!(block["triggered_by"], "intel-c2-connection");
    let steps: Vec<(&str, &str, &str)> = block["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or_default(),
                s["when"].as_str().unwrap_or_default(),
                s["status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("block-address", "none", "dry_run"),
            ("alert-responders", "none", "dry_run"),
            ("kill-process", "true", "queued"),
        ]
    );
    // The weak indicator: the same playbook runs, and its `when` says no to the kill.
    let weak = r#"{"type":"network_connection","timestamp":"2025-11-03T14:31:05Z","id":"c-3","host":"ws-17","pid":1234,"name":"svchost.exe","remote_ip":"185.12.33.5","remote_port":80}"#;
    let w = explained(&[weak], dir.path());
    let kill = w["playbooks"]
        .as_array()
        .expect("playbooks")
        .iter()
        .find(|p| p["playbook"] == "block-c2")
        .and_then(|p| p["steps"].as_array())
        .and_then(|steps| steps.iter().find(|s| s["step"] == "kill-process"))
        .expect("the kill step")
        .clone();
    assert_eq!(
        (&kill["when"], &kill["status"], &kill["reason"]),
        (
            &Value::from("false"),
            &Value::from("skipped"),
            &Value::from("`when` is false")
        )
    );
    let office = playbooks
        .iter()
        .find(|p| p["playbook"] == "contain-office-macro")
        .expect("contain-office-macro");
    assert_eq!(
        office["trigger"],
        serde_json::json!([[
            "intel-c2-connection",
            "its rule is not one the trigger names"
        ]])
    );

    // A process start no rule matches: every filter condition that said no, with the event's
    // value, and the model's score with its features.
    let event = r#"{"type":"process_create","timestamp":"2025-11-03T14:31:00Z","id":"p-1","host":"ws-17","pid":77,"name":"explorer.exe","parent_name":"userinit.exe","cmdline":"C:\\Windows\\explorer.exe","user":"CORP\\alice"}"#;
    let e = explained(&[event], dir.path());
    let office = e["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["rule"] == "office-spawns-shell")
        .expect("office rule");
    let conditions: Vec<(&str, &str, bool, &str)> = office["filter"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| {
            (
                c["field"].as_str().unwrap_or_default(),
                c["operator"].as_str().unwrap_or_default(),
                c["held"].as_bool().unwrap_or(true),
                c["actual"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        conditions,
        [
            ("parent_name", "equals", false, "userinit.exe"),
            ("name", "equals", false, "explorer.exe"),
        ]
    );
    assert_eq!(office["detect"]["outcome"], "not_run");
    assert_eq!(e["anomaly"]["outcome"], "scored");
    assert!(e["anomaly"]["score"].as_f64().is_some());
    let features = e["anomaly"]["features"].as_array().expect("features");
    assert!(!features.is_empty());
    let shares: f64 = features
        .iter()
        .map(|f| f["share"].as_f64().unwrap_or(0.0))
        .sum();
    assert!((shares - 1.0).abs() < 0.01, "shares add up to 1: {shares}");
    assert_eq!(e["tracker"]["tracked"], false);
    assert!(
        e["tracker"]["reason"]
            .as_str()
            .expect("reason")
            .starts_with("not tracked")
    );

    // The text says the same.
    let out = palisade(&["explain", "events.jsonl", "--id", "c-2"], dir.path());
    assert_success(&out);
    let text = stdout(&out);
    for line in [
        "185.12.33.4 matches 185.12.33.4 (ip, source feodo, score 87.0), not on a warninglist",
        "      holds: intel hit of kind ip, cidr",
        "anomaly: not scored: a rule matched",
        "tracker: `ws-17`: 1 connect record(s) within retention",
        "  block-c2: triggered by intel-c2-connection",
        "    step kill-process (process.kill): when true; queued 1234 (high-risk step waits for approval)",
        "7 rule(s) are for other event kinds",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

/// Bad input is exit 2 with the intake's reason naming the field; a file needs --id or --line.
#[test]
fn explain_refuses_a_bad_event_naming_the_field() {
    let dir = scratch_content();
    let out = palisade(
        &[
            "explain",
            r#"{"type":"process_create","timestamp":1,"pid":"abc"}"#,
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("field `pid` must be a non-negative integer"),
        "{}",
        stderr(&out)
    );
    std::fs::write(dir.path().join("events.jsonl"), CONNECTIONS).expect("events");
    let out = palisade(&["explain", "events.jsonl"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--id ID or --line N"),
        "{}",
        stderr(&out)
    );
    let out = palisade(&["explain", "events.jsonl", "--id", "nope"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no event with the id `nope`"));
}

/// Every file under `dir` with its length, modification time and a hash of its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, (u64, std::time::SystemTime, u64)> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let meta = std::fs::metadata(&path).expect("metadata");
                files.insert(
                    path.display().to_string(),
                    (meta.len(), meta.modified().expect("mtime"), {
                        use std::hash::{Hash, Hasher};
                        let mut hasher = std::collections::hash_map::DefaultHasher::new();
                        std::fs::read(&path).expect("read").hash(&mut hasher);
                        hasher.finish()
                    }),
                );
            }
        }
    }
    files
}

/// Explain never acts and never writes state: with a state database holding intel, explaining
/// events (one that fires playbooks among them) leaves every file in the content directory as
/// it was (no byte, no modification time, no new file: no write-ahead log, no database made),
/// and without a state database it makes none.
#[test]
fn explain_never_writes_state() {
    let dir = content_with_intel_and_model();
    let before = snapshot(dir.path());
    assert!(
        before.keys().any(|k| k.ends_with("data/palisade.db")),
        "{:?}",
        before.keys()
    );
    // File times are compared: a write within the same clock tick must still show.
    std::thread::sleep(std::time::Duration::from_millis(50));
    for args in [
        &["events.jsonl", "--line", "2"][..],
        &["events.jsonl", "--id", "c-1", "--format", "json"][..],
    ] {
        let mut all = vec!["explain"];
        all.extend_from_slice(args);
        let out = palisade(&all, dir.path());
        assert_success(&out);
    }
    let out = palisade(
        &["replay", "--events", "events.jsonl", "--explain"],
        dir.path(),
    );
    assert_success(&out);
    assert_eq!(snapshot(dir.path()), before, "explain changed files");

    let empty = scratch_content();
    std::fs::write(empty.path().join("events.jsonl"), CONNECTIONS).expect("events");
    let out = palisade(&["explain", "events.jsonl", "--line", "2"], empty.path());
    assert_success(&out);
    assert!(
        !empty.path().join("data").exists(),
        "explain made the state directory"
    );
}

/// Defect: `replay` printed nothing for events that matched no rule. With `--explain` every
/// event is explained, the ones no rule matched included.
#[test]
fn replay_explain_says_why_an_event_matched_no_rule() {
    let dir = scratch_content();
    std::fs::write(dir.path().join("events.jsonl"), CONNECTIONS).expect("events");
    let out = palisade(
        &["replay", "--events", "events.jsonl", "--explain"],
        dir.path(),
    );
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("event c-1 (network_connection on ws-17)"),
        "{text}"
    );
    assert!(
        text.contains("event c-2 (network_connection on ws-17)"),
        "{text}"
    );
    let first = text
        .split("event c-2")
        .next()
        .expect("the first event's explanation");
    assert!(
        first.contains("  intel-c2-connection (rules/intel_c2_connection.rhai)\n    filter: said no\n      fails: intel hit of kind ip, cidr\n    detect: not run (the filter said no)"),
        "{first}"
    );
    assert!(first.contains("detections: none"), "{first}");

    let out = palisade(
        &[
            "replay",
            "--events",
            "events.jsonl",
            "--explain",
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert_success(&out);
    let lines = json_lines(&stdout(&out));
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["event"]["id"], "c-1");
    assert_eq!(lines[0]["rules"][0]["filter"]["passed"], false);
    assert_eq!(lines[0]["detections"], serde_json::json!([]));
}

/// Defect: a failing test said "expected the rule to fire; it did not" without saying whether
/// the filter or `detect` said no.
#[test]
fn a_failing_test_case_says_whether_the_filter_or_detect_said_no() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("rules")).expect("mkdir");
    std::fs::write(
        dir.path().join("rules/certutil.rhai"),
        r#"let rule = #{
    id: "certutil-download",
    title: "certutil downloads a file",
    severity: "high",
    events: ["process_create"],
    filter: #{ name: ["certutil.exe"], "cmdline|contains": ["-urlcache"] },
};

fn detect(event) { event.cmdline.contains("http") }

let tests = [
    #{ name: "filter says no", event: #{ type: "process_create", name: "certutil.exe", cmdline: "certutil -decode a b" }, expect: true },
    #{ name: "detect says no", event: #{ type: "process_create", name: "certutil.exe", cmdline: "certutil -urlcache -f ftp://x" }, expect: true },
    #{ name: "fires unexpectedly", event: #{ type: "process_create", name: "certutil.exe", cmdline: "certutil -urlcache -f http://x" }, expect: false },
];
"#,
    )
    .expect("rule");
    let out = palisade(&["test"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for line in [
        r#"      expected the rule to fire; it did not: the filter said no: `cmdline` contains ["-urlcache"] does not hold (the event's cmdline is "certutil -decode a b")"#,
        r#"      expected the rule to fire; it did not: the filter's conditions held (`name` equals ["certutil.exe"]: "certutil.exe", `cmdline` contains ["-urlcache"]: "certutil -urlcache -f ftp://x"); `detect` returned false"#,
        r#"the filter's conditions held (`name` equals ["certutil.exe"]: "certutil.exe", `cmdline` contains ["-urlcache"]: "certutil -urlcache -f http://x"); `detect` returned true (a detection)"#,
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

/// Defect: `debug()` output in a rule did not reach the log as debug output. It is written at
/// debug level, with the rule id and the script position, and not at the default level.
#[test]
fn debug_output_reaches_the_log_at_debug_level() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("rules")).expect("mkdir");
    std::fs::write(
        dir.path().join("rules/chatty.rhai"),
        "let rule = #{ id: \"chatty\", title: \"C\", severity: \"low\", events: [\"process_create\"] };\n\
         fn detect(event) {\n    debug(`looking at ${event.name}`);\n    false\n}\n",
    )
    .expect("rule");
    std::fs::write(
        dir.path().join("events.jsonl"),
        r#"{"type":"process_create","timestamp":"2025-11-03T14:29:00Z","id":"p-1","host":"ws-1","name":"notepad.exe"}"#,
    )
    .expect("events");
    let replay = |level: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["replay", "--events", "events.jsonl"])
            .current_dir(dir.path())
            .env("PALISADE_LOG", level)
            .stdin(Stdio::null())
            .output()
            .expect("the palisade binary runs");
        assert_success(&out);
        stderr(&out)
    };
    let log = replay("debug");
    let line = log
        .lines()
        .find(|l| l.contains("looking at notepad.exe"))
        .unwrap_or_else(|| panic!("no debug line in:\n{log}"));
    assert!(line.contains("DEBUG"), "{line}");
    assert!(line.contains("rule=\"chatty\""), "{line}");
    assert!(line.contains("position=\"line 3, position 5\""), "{line}");
    let log = replay("info");
    assert!(!log.contains("looking at notepad.exe"), "{log}");

    // `explain` shows the rule's output with the event, whatever the log level.
    let out = palisade(&["explain", "events.jsonl", "--line", "1"], dir.path());
    assert_success(&out);
    assert!(
        stdout(&out).contains("    debug: \"looking at notepad.exe\" (at line 3, position 5)"),
        "{}",
        stdout(&out)
    );
}

/// The same for a Sigma rule's case: whether its literal gate let the event through, and which
/// searches of the condition matched.
#[test]
fn a_failing_sigma_case_says_which_search_said_no() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("rules")).expect("mkdir");
    std::fs::write(
        dir.path().join("rules/whoami.yml"),
        "title: Whoami run\nid: 3d3b7e55-3f4e-4b8e-9a7c-0b6f0c9d1a21\nstatus: test\nlevel: low\nlogsource:\n  category: process_creation\n  product: windows\ndetection:\n  selection:\n    Image|endswith: '\\whoami.exe'\n  filter:\n    CommandLine|contains: '/groups'\n  condition: selection and not filter\n",
    )
    .expect("rule");
    std::fs::write(
        dir.path().join("rules/whoami.tests.yaml"),
        "tests:\n  - name: whoami groups fires\n    events:\n      - {type: process_create, host: ws-1, name: whoami.exe, image: 'C:\\Windows\\System32\\whoami.exe', cmdline: 'whoami /groups'}\n    expect: {fires: true}\n  - name: notepad fires\n    events:\n      - {type: process_create, host: ws-1, name: notepad.exe, image: 'C:\\Windows\\notepad.exe', cmdline: notepad}\n    expect: {fires: true}\n",
    )
    .expect("tests");
    let out = palisade(&["test"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for line in [
        "      expected the rule to fire; it did not: the Sigma rule did not match: selection matched, filter matched",
        "      expected the rule to fire; it did not: the Sigma rule did not match: its literal gate said no (none of its literals is in the event); selection did not, filter did not",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

/// Without a named model, explain scores with the model this deployment's engine learned (as
/// `palisade model explain` does), and says so when there is none.
#[test]
fn explain_scores_with_the_deployments_learned_model() {
    let dir = scratch_content();
    let event = r#"{"type":"process_create","timestamp":"2025-11-03T14:31:00Z","id":"p-1","host":"ws-17","pid":77,"name":"explorer.exe","parent_name":"userinit.exe","user":"CORP\\alice"}"#;
    let e = explained(&[event], dir.path());
    assert_eq!(
        e["anomaly"],
        serde_json::json!({"outcome": "not_scored", "reason": "no anomaly model is in use"})
    );
    std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
    std::fs::copy(
        repo().join("models/anomaly.model"),
        dir.path().join("data/learned.model"),
    )
    .expect("copy the model");
    let e = explained(&[event], dir.path());
    assert_eq!(e["anomaly"]["outcome"], "scored", "{}", e["anomaly"]);
    assert_eq!(e["anomaly"]["threshold"], 0.9);
}
