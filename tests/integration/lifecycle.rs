//! Rule lifecycle through the binary: `status`, `enabled` with a reason, `author`,
//! `references`, `false_positives`; which statuses run; what playbooks do with `test`
//! detections (docs/rules.md, "Lifecycle").

use std::path::Path;

use serde_json::Value;

use crate::support::{RedisServer, assert_success, json_lines, palisade, stderr, stdout};

/// A content directory holding only these rules and playbooks (and config, when given).
fn content(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for sub in ["rules", "playbooks"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    for (path, text) in files {
        std::fs::write(dir.path().join(path), text).expect("write content file");
    }
    dir
}

/// A rule on `whoami.exe` starts with the given extra metadata lines.
fn whoami_rule(id: &str, extra: &str) -> String {
    format!(
        r#"let rule = #{{
    id: "{id}",
    title: "whoami run",
    severity: "high",
    events: ["process_create"],
{extra}
    filter: #{{ name: "whoami.exe" }},
}};
"#
    )
}

const WHOAMI: &str = r#"{"type":"process_create","timestamp":"2025-11-03T14:30:10Z","id":"ev-1","host":"ws-1","pid":4200001,"name":"whoami.exe","parent_name":"cmd.exe","cmdline":"whoami /all"}"#;

/// A playbook that logs a line for detections of `rule`, with `extra` added to its trigger.
fn notify_playbook(id: &str, rule: &str, extra: &str) -> String {
    format!(
        "id: {id}\ntitle: Tell about {rule}\ntrigger:\n  rules: [{rule}]\n{extra}steps:\n  - id: tell\n    action: notify.log\n    with:\n      message: \"{{{{ detection.status }}}} detection of {{{{ detection.rule }}}}\"\n"
    )
}

fn replay(dir: &Path) -> Vec<Value> {
    std::fs::write(dir.join("events.jsonl"), format!("{WHOAMI}\n")).expect("events");
    let out = palisade(&["replay", "--events", "events.jsonl"], dir);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    json_lines(&stdout(&out))
}

fn detections(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .filter(|l| l["kind"] == "detection")
        .map(|l| l["rule"].as_str().unwrap_or_default())
        .collect()
}

fn playbooks_acting(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .filter(|l| l["kind"] == "action")
        .map(|l| l["playbook"].as_str().unwrap_or_default())
        .collect()
}

/// Defect: a rule's metadata was a closed set, so `status`, `enabled`, `author`, `references`
/// and `false_positives` were each an "unknown key". They validate now, and the author and
/// references travel with the rule's detections.
#[test]
fn a_rule_with_status_enabled_author_references_false_positives_validates() {
    let rule = whoami_rule(
        "whoami-run",
        r#"    status: "stable",
    enabled: true,
    author: "Detection team",
    references: ["https://attack.mitre.org/techniques/T1033/"],
    false_positives: ["Administrators checking their own groups"],"#,
    );
    let dir = content(&[("rules/whoami.rhai", &rule)]);
    let out = palisade(&["validate"], dir.path());
    assert_success(&out);
    // (The only warning is the CI gate's: this rule has no test cases.)
    assert!(
        stdout(&out).contains("ok: 1 rule(s)") && !stdout(&out).contains("error["),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("not run"), "{}", stdout(&out));

    let lines = replay(dir.path());
    let detection = lines
        .iter()
        .find(|l| l["kind"] == "detection")
        .expect("the rule fires");
    assert_eq!(detection["author"], "Detection team");
    assert_eq!(
        detection["references"],
        serde_json::json!(["https://attack.mitre.org/techniques/T1033/"])
    );
    // Stable detections carry no status mark.
    assert!(detection.get("status").is_none(), "{detection}");

    // A reference that is not a link, and a misspelt status, are refused where they are written.
    let bad = whoami_rule(
        "whoami-run",
        r#"    status: "stabel",
    references: ["see the wiki"],"#,
    );
    std::fs::write(dir.path().join("rules/whoami.rhai"), bad).expect("rule");
    let out = palisade(&["validate"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    for expected in [
        "rules/whoami.rhai:6:5: error[rule-bad-status]: unknown status `stabel` (did you mean `stable`?); use one of experimental, test, stable, deprecated",
        "rules/whoami.rhai:7:18: error[rule-bad-reference]: reference `see the wiki` is not a URL",
    ] {
        assert!(text.contains(expected), "{expected}\nnot in\n{text}");
    }
}

/// Defect: a rule could not be switched off with a reason. `enabled: false` without a
/// `disabled_reason` is refused at the `enabled` key, in text and in JSON.
#[test]
fn a_disabled_rule_without_a_reason_is_refused_with_its_position() {
    let rule = whoami_rule("whoami-run", "    enabled: false,");
    let dir = content(&[("rules/whoami.rhai", &rule)]);
    let out = palisade(&["validate"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    let expected = "rules/whoami.rhai:6:5: error[rule-disabled-without-reason]: a rule with `enabled: false` needs a `disabled_reason`";
    assert!(text.contains(expected), "{expected}\nnot in\n{text}");

    let out = palisade(&["validate", "--format", "json"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let problems: Vec<Value> = serde_json::from_str(&stdout(&out)).expect("JSON array");
    let found: Vec<(u64, u64, &str)> = problems
        .iter()
        .map(|p| {
            (
                p["line"].as_u64().unwrap_or_default(),
                p["column"].as_u64().unwrap_or_default(),
                p["code"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(found, [(6, 5, "rule-disabled-without-reason")]);

    // An empty reason is no reason either.
    let rule = whoami_rule(
        "whoami-run",
        "    enabled: false,\n    disabled_reason: \"  \",",
    );
    std::fs::write(dir.path().join("rules/whoami.rhai"), rule).expect("rule");
    let out = palisade(&["validate"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("rules/whoami.rhai:7:5: error[rule-bad-disabled-reason]"),
        "{}",
        stdout(&out)
    );
}

/// Defect: a noisy rule could only be deleted. A disabled rule still validates, never fires
/// (replay, or a running engine, which stores nothing for it), is counted by `validate` and at
/// the engine's start, and `palisade test` skips its cases saying why.
#[test]
fn a_disabled_rule_never_fires() {
    let rule = whoami_rule(
        "whoami-run",
        "    enabled: false,\n    disabled_reason: \"fires on every admin login; TICKET-12\",",
    ) + r#"
let tests = [
    #{ name: "whoami fires", event: #{ type: "process_create", pid: 7, name: "whoami.exe" }, expect: true },
];
"#;
    let dir = content(&[
        ("rules/whoami.rhai", &rule),
        (
            "playbooks/tell.yaml",
            &notify_playbook("tell", "whoami-run", ""),
        ),
    ]);
    let out = palisade(&["validate"], dir.path());
    assert_success(&out);
    assert!(
        stdout(&out).contains("not run: 1 rule(s) disabled"),
        "{}",
        stdout(&out)
    );

    let lines = replay(dir.path());
    assert!(lines.is_empty(), "{lines:?}");

    let out = palisade(&["test"], dir.path());
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("SKIP  whoami-run › whoami fires")
            && text.contains("rule disabled: fires on every admin login; TICKET-12")
            && text.contains("cases: 0 passed, 0 failed, 1 skipped"),
        "{text}"
    );

    std::fs::write(
        dir.path().join("palisade.yaml"),
        "state:\n  path: state.db\nhttp:\n  enabled: false\n",
    )
    .expect("config");
    let out = palisade(&["run", "--events", "events.jsonl"], dir.path());
    assert_success(&out);
    assert!(
        stderr(&out).contains("rules loaded but not run: 1 rule(s) disabled"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("whoami-run"), "{}", stdout(&out));
    assert_eq!(stored_detections(dir.path()), "0");
}

/// Defect: a new rule could not run "in test": every detection was acted on. A `test` rule's
/// detections are marked (replay JSON, the console line, the alert document on Redis) and only
/// a playbook whose trigger lists `test` acts on them.
#[test]
fn a_test_status_detection_is_marked_and_no_playbook_acts_unless_it_asks() {
    let rule = whoami_rule("whoami-run", "    status: \"test\",");
    let dir = content(&[
        ("rules/whoami.rhai", &rule),
        (
            "playbooks/tell-always.yaml",
            &notify_playbook("tell-always", "whoami-run", ""),
        ),
        (
            "playbooks/tell-on-trial.yaml",
            &notify_playbook("tell-on-trial", "whoami-run", "  statuses: [test]\n"),
        ),
    ]);
    let out = palisade(&["validate"], dir.path());
    assert_success(&out);

    let lines = replay(dir.path());
    assert_eq!(detections(&lines), ["whoami-run"]);
    let detection = &lines[0];
    assert_eq!(detection["status"], "test", "{detection}");
    assert_eq!(playbooks_acting(&lines), ["tell-on-trial"], "{lines:?}");
    let action = lines
        .iter()
        .find(|l| l["kind"] == "action")
        .expect("one action");
    assert_eq!(action["params"]["message"], "test detection of whoami-run");

    // The running engine: the console line says `(test)`, the alert on Redis says so too.
    let server = RedisServer::start();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!(
            "redis:\n  url: {}\nalerts:\n  enabled: true\nstate:\n  path: state.db\nhttp:\n  enabled: false\n",
            server.url()
        ),
    )
    .expect("config");
    let out = palisade(&["run", "--events", "events.jsonl"], dir.path());
    assert_success(&out);
    let console = stdout(&out);
    assert!(
        console.contains("HIGH     whoami-run (test)  ws-1  whoami run"),
        "{console}"
    );
    assert!(console.contains("playbook tell-on-trial"), "{console}");
    assert!(!console.contains("playbook tell-always"), "{console}");
    let alerts = server.alerts("palisade:alerts");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["status"], "test", "{}", alerts[0]);
    let acted: Vec<&Value> = alerts[0]["actions"]
        .as_array()
        .map(|a| a.iter().map(|s| &s["playbook"]).collect())
        .unwrap_or_default();
    assert_eq!(acted, [&Value::from("tell-on-trial")]);
}

/// Defect: nothing chose which rules run by maturity. `rules.statuses` does: the rules of other
/// statuses stay valid and tested but do not fire, and `validate` and the start log count them.
#[test]
fn config_chooses_which_statuses_run() {
    let test_case = r#"
let tests = [
    #{ name: "fires", event: #{ type: "process_create", pid: 7, name: "whoami.exe" }, expect: true },
];
"#;
    let dir = content(&[
        (
            "rules/stable.rhai",
            &(whoami_rule("whoami-stable", "") + test_case),
        ),
        (
            "rules/experimental.rhai",
            &(whoami_rule("whoami-experimental", "    status: \"experimental\",") + test_case),
        ),
        (
            "rules/deprecated.rhai",
            &(whoami_rule("whoami-deprecated", "    status: \"deprecated\",") + test_case),
        ),
    ]);
    // The default runs stable, test and experimental.
    let lines = replay(dir.path());
    assert_eq!(detections(&lines), ["whoami-experimental", "whoami-stable"]);
    assert_eq!(lines[0]["status"], "experimental");

    std::fs::write(
        dir.path().join("palisade.yaml"),
        "rules:\n  statuses: [stable, deprecated]\nstate:\n  path: state.db\nhttp:\n  enabled: false\n",
    )
    .expect("config");
    let out = palisade(&["validate"], dir.path());
    assert_success(&out);
    assert!(
        stdout(&out).contains(
            "not run: 0 rule(s) disabled, 1 not run for their status (1 experimental; `rules.statuses` chooses)"
        ),
        "{}",
        stdout(&out)
    );
    let lines = replay(dir.path());
    assert_eq!(detections(&lines), ["whoami-deprecated", "whoami-stable"]);
    assert_eq!(lines[0]["status"], "deprecated");

    // Each rule's own cases still run: a rule kept out of production needs its tests most.
    let out = palisade(&["test"], dir.path());
    assert_success(&out);
    assert!(
        stdout(&out).contains("cases: 3 passed, 0 failed"),
        "{}",
        stdout(&out)
    );

    let out = palisade(&["run", "--events", "events.jsonl"], dir.path());
    assert_success(&out);
    assert!(
        stderr(&out).contains("rules loaded but not run: 0 rule(s) disabled, 1 not run for their status (1 experimental"),
        "{}",
        stderr(&out)
    );

    // A misspelt status in the config is refused with the one meant.
    std::fs::write(
        dir.path().join("palisade.yaml"),
        "rules:\n  statuses: [stable, experimantal]\n",
    )
    .expect("config");
    let out = palisade(&["validate"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("palisade.yaml:2:")
            && stdout(&out).contains("did you mean `experimental`?"),
        "{}",
        stdout(&out)
    );
}

const SIGMA_WHOAMI: &str = r"title: whoami run
id: 6f9e2d1c-8f1a-4a52-9c1b-5d0e7a3b2c11
name: sigma-whoami
status: test
author: Sigma author
references:
  - https://attack.mitre.org/techniques/T1033/
falsepositives:
  - Administrators
logsource:
  product: windows
  category: process_creation
detection:
  selection:
    Image|endswith: '\whoami.exe'
  condition: selection
level: high
";

/// A Sigma rule's lifecycle comes from its own `status`: a `test` Sigma rule's detections are
/// marked and acted on only by a playbook that asks; `rules.statuses` decides whether it runs.
#[test]
fn a_sigma_rule_status_comes_from_the_sigma_file() {
    let dir = content(&[
        ("rules/whoami.yml", SIGMA_WHOAMI),
        (
            "playbooks/tell-always.yaml",
            &notify_playbook("tell-always", "sigma-whoami", ""),
        ),
        (
            "playbooks/tell-on-trial.yaml",
            &notify_playbook("tell-on-trial", "sigma-whoami", "  statuses: [test]\n"),
        ),
    ]);
    std::fs::write(
        dir.path().join("events.jsonl"),
        WHOAMI.replace(
            r#""name":"whoami.exe""#,
            r#""name":"whoami.exe","image":"C:\\Windows\\System32\\whoami.exe""#,
        ) + "\n",
    )
    .expect("events");
    let out = palisade(&["replay", "--events", "events.jsonl"], dir.path());
    assert_success(&out);
    let lines = json_lines(&stdout(&out));
    assert_eq!(
        detections(&lines),
        ["6f9e2d1c-8f1a-4a52-9c1b-5d0e7a3b2c11"],
        "{lines:?}"
    );
    assert_eq!(lines[0]["status"], "test");
    assert_eq!(lines[0]["author"], "Sigma author");
    assert_eq!(playbooks_acting(&lines), ["tell-on-trial"]);

    std::fs::write(
        dir.path().join("palisade.yaml"),
        "rules:\n  statuses: [stable]\n",
    )
    .expect("config");
    let out = palisade(&["validate"], dir.path());
    assert_success(&out);
    assert!(
        stdout(&out).contains("1 not run for their status (1 test;"),
        "{}",
        stdout(&out)
    );
    let out = palisade(&["replay", "--events", "events.jsonl"], dir.path());
    assert!(json_lines(&stdout(&out)).is_empty(), "{}", stdout(&out));
}

/// A running engine that reloads a rule switched off says so, and the rule stops firing from
/// the next event on.
#[test]
fn a_rule_disabled_while_the_engine_runs_is_counted_at_reload_and_stops_firing() {
    use std::io::{Read, Write};
    let dir = content(&[("rules/whoami.rhai", &whoami_rule("whoami-run", ""))]);
    std::fs::write(
        dir.path().join("palisade.yaml"),
        "state:\n  path: state.db\nhttp:\n  enabled: false\n",
    )
    .expect("config");
    let (mut child, log) = crate::support::run_on_pipes(dir.path());
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        crate::support::eventually(crate::support::PATIENCE, || read_log()
            .contains("palisade is running")),
        "{}",
        read_log()
    );
    let mut input = child.stdin.take().expect("stdin");
    writeln!(input, "{WHOAMI}").expect("send");
    input.flush().expect("flush");
    // The first event is decided under the rule as it was before the edit.
    assert!(
        crate::support::eventually(crate::support::PATIENCE, || stored_detections(dir.path())
            == "1"),
        "{}",
        read_log()
    );
    std::fs::write(
        dir.path().join("rules/whoami.rhai"),
        whoami_rule(
            "whoami-run",
            "    enabled: false,\n    disabled_reason: \"noisy on build hosts\",",
        ),
    )
    .expect("disable");
    assert!(
        crate::support::eventually(crate::support::PATIENCE, || read_log()
            .contains("rules loaded but not run: 1 rule(s) disabled")),
        "{}",
        read_log()
    );
    writeln!(input, "{}", WHOAMI.replace("ev-1", "ev-2")).expect("send");
    drop(input);
    let mut output = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut output)
        .expect("read");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{}", read_log());
    let fired: Vec<String> = json_lines(&output)
        .iter()
        .filter(|l| l["kind"] == "detection")
        .map(|l| l["event_id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(fired, ["ev-1"], "{output}");
    assert_eq!(stored_detections(dir.path()), "1");
}

fn stored_detections(dir: &Path) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(dir.join("state.db"))
        .arg("SELECT COUNT(*) FROM detections;")
        .output()
        .expect("sqlite3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
