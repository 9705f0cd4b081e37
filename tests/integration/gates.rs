//! Coverage and CI gates, on the real binary: `rules list`, `coverage`, `validate --strict`,
//! `test --format json|junit` and `test --update`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{assert_success, copy_tree, palisade, repo, scratch_content, stderr, stdout};

/// A scratch copy of everything the shipped content's tests read: rules, playbooks, fixtures,
/// warninglists and the example anomaly model.
fn full_scratch() -> tempfile::TempDir {
    let dir = scratch_content();
    for sub in ["tests/fixtures", "warninglists", "models"] {
        copy_tree(&repo().join(sub), &dir.path().join(sub));
    }
    dir
}

/// A Rhai rule with the given tags and tests (Rhai source of the `let tests` array's items).
fn rule(id: &str, tags: &str, tests: &str) -> String {
    format!(
        r#"let rule = #{{
    id: "{id}",
    title: "certutil fetches a URL",
    severity: "high",
    tags: [{tags}],
    events: ["process_create"],
    filter: #{{ name: "certutil.exe", "cmdline|contains": ["urlcache"] }},
}};

let tests = [{tests}];
"#
    )
}

const POSITIVE: &str = r#"#{ name: "certutil -urlcache fires", event: #{ type: "process_create", pid: 1, name: "certutil.exe", cmdline: "certutil -urlcache -f http://x/a.exe" }, expect: true },"#;
const NEGATIVE: &str = r#"#{ name: "certutil -verify does not", event: #{ type: "process_create", pid: 2, name: "certutil.exe", cmdline: "certutil -verify a.cer" }, expect: false },"#;

fn problems(out: &std::process::Output) -> Vec<Value> {
    serde_json::from_str(&stdout(out)).expect("a JSON array of problems")
}

/// Defect: a rule with no tests and the tag `attack.t9999.999` (no such technique) passed
/// `palisade validate`; nothing in the toolchain could make CI refuse it.
#[test]
fn a_rule_without_tests_or_with_an_unknown_attack_tag_fails_validate_strict() {
    let dir = scratch_content();
    let file = dir.path().join("rules/certutil.rhai");
    let source = rule(
        "certutil-download",
        r#""attack.command_and_control", "attack.t9999.999", "attack.t1086", "attack.comand_and_control""#,
        "",
    );
    std::fs::write(&file, &source).expect("write rule");

    // Without --strict: still valid, the gaps are warnings naming the file, line and tag.
    let out = palisade(&["validate", "."], dir.path());
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("rules/certutil.rhai:1:1: warning[rule-untested]: rule `certutil-download` has no test cases (0 positive, 0 negative)"),
        "{text}"
    );
    assert!(
        text.contains("rules/certutil.rhai:5:43: warning[attack-unknown-technique]: tag `attack.t9999.999`: `T9999.999` is not an ATT&CK Enterprise 18.1 technique"),
        "{text}"
    );

    // With --strict: the same problems are errors and validate fails.
    let out = palisade(
        &["validate", ".", "--strict", "--format", "json"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let found: Vec<(String, u64, String, Option<String>)> = problems(&out)
        .iter()
        .map(|p| {
            (
                p["file"].as_str().unwrap_or_default().to_string(),
                p["line"].as_u64().unwrap_or_default(),
                p["code"].as_str().unwrap_or_default().to_string(),
                p["level"].as_str().map(str::to_string),
            )
        })
        .collect();
    let file_name = "rules/certutil.rhai".to_string();
    assert_eq!(
        found,
        vec![
            (file_name.clone(), 1, "rule-untested".into(), None),
            (
                file_name.clone(),
                5,
                "attack-unknown-technique".into(),
                None
            ),
            (
                file_name.clone(),
                5,
                "attack-revoked-technique".into(),
                None
            ),
            (file_name.clone(), 5, "attack-unknown-tag".into(), None),
        ],
        "{}",
        stdout(&out)
    );
    let messages: Vec<String> = problems(&out)
        .iter()
        .map(|p| p["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        messages.iter().any(|m| m
            == "tag `attack.t1086`: `T1086` (PowerShell) was revoked in ATT&CK; use `attack.t1059.001`"),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("(did you mean `command_and_control`?)")),
        "{messages:?}"
    );
    // Checking never touches the content.
    assert_eq!(std::fs::read_to_string(&file).expect("read"), source);

    // Tests and known tags: the strict gate passes.
    std::fs::write(
        &file,
        rule(
            "certutil-download",
            r#""attack.command_and_control", "attack.t1105""#,
            &format!("{POSITIVE}{NEGATIVE}"),
        ),
    )
    .expect("write rule");
    assert_success(&palisade(&["validate", ".", "--strict"], dir.path()));
}

/// Defect: a rule whose only case expects it not to fire passed `palisade test`, so a rule
/// that never fires at all looked tested.
#[test]
fn a_rule_with_only_a_negative_case_fails_validate_strict() {
    let dir = full_scratch();
    std::fs::write(
        dir.path().join("rules/certutil.rhai"),
        rule("certutil-download", r#""attack.t1105""#, NEGATIVE),
    )
    .expect("write rule");

    // `test` runs the one case (it passes) and says what is missing.
    let out = palisade(&["test", "."], dir.path());
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("note  rule `certutil-download` has 0 positive and 1 negative case(s); `palisade validate --strict` requires one of each  (rules/certutil.rhai:1)"),
        "{text}"
    );

    let out = palisade(&["validate", ".", "--strict"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("rules/certutil.rhai:1:1: error[rule-untested]: rule `certutil-download` has no positive test case, one that expects it to fire (0 positive, 1 negative)"),
        "{text}"
    );
    assert!(text.contains("1 problem(s) found"), "{text}");

    // The same gate holds for a Sigma rule and its sidecar.
    let sidecar = dir
        .path()
        .join("rules/sigma/local_account_added.tests.yaml");
    let kept: Vec<String> = std::fs::read_to_string(&sidecar)
        .expect("read sidecar")
        .split("\n  - name:")
        .map(str::to_string)
        .collect();
    let negatives_only: Vec<&String> = kept
        .iter()
        .enumerate()
        .filter(|(i, case)| *i == 0 || case.contains("fires: false"))
        .map(|(_, case)| case)
        .collect();
    std::fs::write(
        &sidecar,
        negatives_only
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  - name:"),
    )
    .expect("write sidecar");
    std::fs::write(
        dir.path().join("rules/certutil.rhai"),
        rule(
            "certutil-download",
            r#""attack.t1105""#,
            &format!("{POSITIVE}{NEGATIVE}"),
        ),
    )
    .expect("write rule");
    let out = palisade(&["validate", ".", "--strict"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("rules/sigma/local_account_added.yml:1:1: error[rule-untested]: rule `local_account_added` has no positive test case"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_shipped_content_passes_validate_strict() {
    let out = palisade(&["validate", "--strict"], &repo());
    assert_success(&out);
    assert!(!stdout(&out).contains("warning"), "{}", stdout(&out));
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
        .args(args)
        .current_dir(dir)
        .env("GIT_COMMITTER_DATE", "2026-03-04T05:06:07+00:00")
        .env("GIT_AUTHOR_DATE", "2026-03-04T05:06:07+00:00")
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
}

#[test]
fn rules_list_shows_every_rule_as_text_and_json() {
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("rules/certutil.rhai"),
        rule("certutil-download", r#""attack.t1105""#, NEGATIVE),
    )
    .expect("write rule");

    // Not a git repository: every last change is the file's modification time.
    let out = palisade(&["rules", "list", "--format", "json"], dir.path());
    assert_success(&out);
    let listed: Vec<Value> = serde_json::from_str(&stdout(&out)).expect("JSON array");
    // 9 Rhai rules, 8 Sigma rules, 1 correlation.
    assert_eq!(listed.len(), 18, "{}", stdout(&out));
    let by_name = |name: &str| -> Value {
        listed
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("`{name}` listed"))
    };
    let certutil = by_name("certutil-download");
    assert_eq!(certutil["engine"], "rhai");
    assert_eq!(certutil["severity"], "high");
    // A rule that names no status is stable.
    assert_eq!(certutil["status"], "stable");
    assert_eq!(certutil["tags"], serde_json::json!(["attack.t1105"]));
    assert_eq!(certutil["events"], serde_json::json!(["process_create"]));
    assert_eq!(
        (certutil["positive"].as_u64(), certutil["negative"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(certutil["last_change_from"], "mtime");
    let lsass = by_name("lsass_dump_comsvcs");
    assert_eq!(lsass["id"], "305ff0fd-dfc9-4312-83b9-1a166f82d3e4");
    assert_eq!(lsass["engine"], "sigma");
    assert_eq!(lsass["status"], "stable");
    assert_eq!(lsass["severity"], "critical");
    let base = by_name("login_failed");
    assert_eq!(base["tested_through"], "login_bruteforce_from_one_source");
    assert_eq!(
        by_name("login_bruteforce_from_one_source")["engine"],
        "sigma_correlation"
    );

    // In a git repository: the date of the last commit that touched the file; a file changed
    // since is shown with its modification time.
    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "content"]);
    std::fs::write(
        dir.path().join("rules/certutil.rhai"),
        rule(
            "certutil-download",
            r#""attack.t1105""#,
            &format!("{POSITIVE}{NEGATIVE}"),
        ),
    )
    .expect("edit rule");
    let out = palisade(&["rules", "list", "--format", "json"], dir.path());
    assert_success(&out);
    let listed: Vec<Value> = serde_json::from_str(&stdout(&out)).expect("JSON array");
    let find = |name: &str| listed.iter().find(|r| r["name"] == name).cloned();
    let lsass = find("lsass_dump_comsvcs").expect("listed");
    assert_eq!(lsass["last_change_from"], "git");
    assert!(
        lsass["last_change"]
            .as_str()
            .is_some_and(|d| d.starts_with("2026-03-04T05:06:07")),
        "{lsass}"
    );
    let certutil = find("certutil-download").expect("listed");
    assert_eq!(certutil["last_change_from"], "mtime");
    assert_eq!(certutil["positive"], 1);

    // Text: one aligned row per rule under a header, the source of each date said.
    let out = palisade(&["rules", "list"], dir.path());
    assert_success(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let header = lines.first().copied().unwrap_or_default();
    assert!(header.starts_with("RULE "), "{text}");
    let column = |name: &str| {
        header
            .find(name)
            .unwrap_or_else(|| panic!("{name} in {header}"))
    };
    let row = lines
        .iter()
        .find(|l| l.starts_with("lsass_dump_comsvcs "))
        .unwrap_or_else(|| panic!("lsass row in {text}"));
    // Columns line up (ASCII rows: byte offsets are character offsets).
    assert_eq!(&row[column("SEVERITY")..column("SEVERITY") + 8], "critical");
    assert_eq!(&row[column("STATUS")..column("STATUS") + 6], "stable");
    assert!(row[column("TESTS")..].starts_with("+2 -1"), "{row}");
    assert!(
        row[column("CHANGED")..].starts_with("2026-03-04T05:06:07"),
        "{row}"
    );
    assert!(
        row.contains("(git)") && row.ends_with("attack.credential-access attack.t1003.001"),
        "{row}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("certutil-download ") && l.contains("(mtime)")),
        "{text}"
    );
    assert!(text.contains("\n18 rule(s)."), "{text}");
}

#[test]
fn coverage_maps_tags_to_techniques_and_writes_a_navigator_layer() {
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("rules/certutil.rhai"),
        rule(
            "certutil-download",
            r#""attack.t1105", "attack.t9999.999""#,
            &format!("{POSITIVE}{NEGATIVE}"),
        ),
    )
    .expect("write rule");
    let layer_file = dir.path().join("layer.json");
    let out = palisade(
        &[
            "coverage",
            "--format",
            "json",
            "--navigator",
            layer_file.to_str().expect("utf-8"),
        ],
        dir.path(),
    );
    // An unknown tag is a finding.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).expect("JSON report");
    assert_eq!(report["attack_version"], "18.1");
    let tactic = |short: &str| -> Value {
        report["tactics"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["shortname"] == short).cloned())
            .unwrap_or_else(|| panic!("tactic {short}"))
    };
    let technique = |tactic: &Value, id: &str| -> Option<Value> {
        tactic["techniques"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["id"] == id).cloned())
    };
    let execution = tactic("execution");
    assert_eq!(execution["id"], "TA0002");
    let powershell = technique(&execution, "T1059.001").expect("T1059.001 covered");
    assert_eq!(powershell["name"], "PowerShell");
    assert_eq!(
        powershell["rules"],
        serde_json::json!(["encoded-powershell", "powershell-download-cradle"])
    );
    let transfer = technique(&tactic("command-and-control"), "T1105").expect("T1105 covered");
    assert_eq!(
        transfer["rules"],
        serde_json::json!([
            "certutil-download",
            "lolbin-remote-payload",
            "powershell-download-cradle"
        ])
    );
    // A technique under every tactic ATT&CK lists it for; none under the others.
    for short in ["execution", "persistence", "privilege-escalation"] {
        assert!(technique(&tactic(short), "T1053.005").is_some(), "{short}");
    }
    assert!(technique(&tactic("impact"), "T1053.005").is_none());
    assert_eq!(
        report["unknown_tags"],
        serde_json::json!([{
            "rule": "certutil-download",
            "file": "rules/certutil.rhai",
            "tag": "attack.t9999.999",
            "problem": "tag `attack.t9999.999`: `T9999.999` is not an ATT&CK Enterprise 18.1 technique"
        }])
    );

    let layer: Value =
        serde_json::from_str(&std::fs::read_to_string(&layer_file).expect("layer written"))
            .expect("layer is JSON");
    assert_eq!(layer["domain"], "enterprise-attack");
    assert_eq!(layer["versions"]["attack"], "18");
    assert_eq!(layer["versions"]["layer"], "4.5");
    let entries = layer["techniques"].as_array().expect("techniques");
    let entry = |id: &str| {
        entries
            .iter()
            .find(|e| e["techniqueID"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} in layer"))
    };
    let transfer = entry("T1105");
    assert_eq!(transfer["score"], 3);
    assert_eq!(
        transfer["comment"],
        "rules: certutil-download, lolbin-remote-payload, powershell-download-cradle"
    );
    let powershell = entry("T1059.001");
    assert_eq!(powershell["score"], 2);
    assert_ne!(powershell["color"], transfer["color"]);
    // The parent of a covered sub-technique is expanded so the Navigator shows it.
    assert_eq!(entry("T1059")["showSubtechniques"], true);
    assert!(entries.iter().all(|e| e["techniqueID"] != "T9999.999"));

    // Text: per tactic, the techniques and their rules.
    let out = palisade(&["coverage"], &repo());
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("\nTA0002 Execution (6 technique(s))\n"),
        "{text}"
    );
    assert!(
        text.contains("  T1059.001  PowerShell                                   encoded-powershell, powershell-download-cradle\n"),
        "{text}"
    );
}

/// An XML element: its name, its attributes (unescaped) and its text (unescaped).
type Element = (String, Vec<(String, String)>, String);

/// The XML is well formed: every tag closes in order, attributes are quoted, and text holds no
/// bare `<` or `&`. Returns the elements in document order as (name, attributes, text).
fn parse_xml(xml: &str) -> Vec<Element> {
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .expect("XML declaration");
    let mut elements: Vec<Element> = Vec::new();
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let next = rest.find('<').unwrap_or(rest.len());
        let text = &rest[..next];
        check_text(text);
        if let Some((_, index)) = open.last() {
            elements[*index].2.push_str(&unescape(text));
        } else {
            assert!(text.trim().is_empty(), "text outside the root: {text:?}");
        }
        rest = &rest[next..];
        if rest.is_empty() {
            break;
        }
        let end = rest.find('>').expect("tag closes");
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let (expected, _) = open.pop().expect("a closing tag closes something");
            assert_eq!(name, expected, "tags nest");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (name, mut attrs) = tag.split_once(' ').unwrap_or((tag, ""));
        let mut attributes = Vec::new();
        while !attrs.trim().is_empty() {
            attrs = attrs.trim_start();
            let (key, after) = attrs.split_once("=\"").expect("attribute is key=\"value\"");
            let close = after.find('"').expect("attribute value closes");
            let value = &after[..close];
            check_text(value);
            assert!(!value.contains('<'), "bare < in {value:?}");
            attributes.push((key.to_string(), unescape(value)));
            attrs = &after[close + 1..];
        }
        elements.push((name.to_string(), attributes, String::new()));
        if !self_closing {
            open.push((name.to_string(), elements.len() - 1));
        }
    }
    assert!(open.is_empty(), "unclosed: {open:?}");
    elements
}

fn check_text(text: &str) {
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        let entity_end = rest[at..].find(';').expect("& starts an entity");
        let entity = &rest[at + 1..at + entity_end];
        assert!(
            ["amp", "lt", "gt", "quot", "apos", "#10", "#13", "#9"].contains(&entity),
            "unknown entity &{entity};"
        );
        rest = &rest[at + entity_end..];
    }
    assert!(
        !text.chars().any(|c| (c as u32) < 0x20 && c != '\n'),
        "a control character in {text:?}"
    );
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#10;", "\n")
        .replace("&#13;", "\r")
        .replace("&#9;", "\t")
        .replace("&amp;", "&")
}

/// The attribute's value; empty when missing (the comparisons that follow then fail).
fn attribute<'a>(attributes: &'a [(String, String)], key: &str) -> &'a str {
    attributes
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

#[test]
fn test_format_junit_is_well_formed_and_names_failures() {
    let dir = full_scratch();
    // A failing case whose name and problem text carry every character XML must escape.
    let failing = r#"#{ name: "a <tricky> & \"quoted\" 'case'", event: #{ type: "process_create", pid: 3, name: "certutil.exe", cmdline: "certutil -urlcache x\u0001" }, expect: false },"#;
    std::fs::write(
        dir.path().join("rules/certutil.rhai"),
        rule(
            "certutil-download",
            r#""attack.t1105""#,
            &format!("{POSITIVE}{NEGATIVE}{failing}"),
        ),
    )
    .expect("write rule");
    let out = palisade(&["test", ".", "--format", "junit"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let xml = stdout(&out);
    let elements = parse_xml(&xml);

    let (root, root_attrs, _) = &elements[0];
    assert_eq!(root, "testsuites");
    assert_eq!(attribute(root_attrs, "failures"), "1");
    let suites: Vec<&str> = elements
        .iter()
        .filter(|e| e.0 == "testsuite")
        .map(|e| attribute(&e.1, "name"))
        .collect();
    // One suite per file, each file once.
    let mut unique = suites.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(suites.len(), unique.len(), "{suites:?}");
    assert!(suites.contains(&"rules/certutil.rhai"), "{suites:?}");
    assert!(
        suites.contains(&"rules/sigma/lsass_dump_comsvcs.tests.yaml"),
        "{suites:?}"
    );
    let total: usize = elements
        .iter()
        .filter(|e| e.0 == "testsuite")
        .map(|e| attribute(&e.1, "tests").parse::<usize>().expect("count"))
        .sum();
    let cases = elements.iter().filter(|e| e.0 == "testcase").count();
    assert_eq!(total, cases);
    assert_eq!(attribute(root_attrs, "tests"), cases.to_string());

    let position = elements
        .iter()
        .position(|e| {
            e.0 == "testcase" && attribute(&e.1, "name") == "a <tricky> & \"quoted\" 'case'"
        })
        .expect("the failing case, its name unescaped intact");
    let case = &elements[position];
    assert_eq!(attribute(&case.1, "classname"), "certutil-download");
    assert_eq!(attribute(&case.1, "file"), "rules/certutil.rhai");
    let (failure, failure_attrs, failure_text) = &elements[position + 1];
    assert_eq!(failure, "failure");
    // The message is the first problem, with the explanation of the match after it.
    let message = attribute(failure_attrs, "message");
    let expected = "expected no detection; got `certutil fetches a URL` on event `".to_string()
        + failure_text.split('`').nth(3).unwrap_or_default()
        + "`: the filter's conditions held";
    assert!(message.starts_with(&expected), "{message}");
    assert!(
        failure_text.starts_with("expected no detection"),
        "{failure_text}"
    );
    // Passing cases have no failure.
    let passing = elements
        .iter()
        .position(|e| e.0 == "testcase" && attribute(&e.1, "name") == "certutil -urlcache fires")
        .expect("passing case");
    assert_ne!(
        elements.get(passing + 1).map(|e| e.0.as_str()),
        Some("failure")
    );
    // People reading the CI log see the failure on standard error.
    assert!(
        stderr(&out).contains("FAIL  certutil-download › a <tricky> & \"quoted\" 'case'"),
        "{}",
        stderr(&out)
    );

    // JSON: the same cases.
    let out = palisade(&["test", ".", "--format", "json"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout(&out)).expect("JSON report");
    assert_eq!(report["failed"], 1);
    assert_eq!(report["cases"].as_array().map(Vec::len), Some(cases));
    let failed: Vec<&Value> = report["cases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["owner"], "certutil-download");
    assert_eq!(failed[0]["file"], "rules/certutil.rhai");
}

#[test]
fn test_update_rewrites_a_changed_snapshot() {
    let dir = full_scratch();
    let fixtures = dir.path().join("tests/fixtures");
    std::fs::create_dir_all(&fixtures).expect("mkdir");
    let shipped = repo().join("tests/fixtures");
    for name in ["mixed.jsonl", "mixed.expected.jsonl"] {
        std::fs::copy(shipped.join(name), fixtures.join(name)).expect("copy");
    }
    // A second snapshot whose expectation is still right.
    let events = "{\"type\":\"process_create\",\"timestamp\":\"2025-01-01T00:00:00Z\",\"host\":\"ws-1\",\"pid\":5,\"name\":\"notepad.exe\",\"parent_name\":\"explorer.exe\"}\n";
    std::fs::write(fixtures.join("quiet.jsonl"), events).expect("write");
    std::fs::write(fixtures.join("quiet.expected.jsonl"), "").expect("write");
    let right = std::fs::read(shipped.join("mixed.expected.jsonl")).expect("read");

    // The expectation is out of date: one line lost, one severity changed.
    let stale: String = String::from_utf8(right.clone())
        .expect("utf-8")
        .lines()
        .skip(1)
        .map(|l| l.replacen("\"critical\"", "\"low\"", 1) + "\n")
        .collect();
    std::fs::write(fixtures.join("mixed.expected.jsonl"), &stale).expect("write");
    let before = palisade(&["test", "."], dir.path());
    assert_eq!(before.status.code(), Some(1), "{}", stdout(&before));

    let quiet = fixtures.join("quiet.expected.jsonl");
    let quiet_modified = std::fs::metadata(&quiet)
        .and_then(|m| m.modified())
        .expect("mtime");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = palisade(&["test", ".", "--update"], dir.path());
    assert_success(&out);
    let told = stderr(&out);
    assert!(
        told.contains("updated  ./tests/fixtures/mixed.expected.jsonl")
            || told.contains("updated  tests/fixtures/mixed.expected.jsonl"),
        "{told}"
    );
    assert!(
        !told.contains("updated  ./tests/fixtures/quiet")
            && !told.contains("updated  tests/fixtures/quiet"),
        "{told}"
    );
    assert!(told.contains("quiet.expected.jsonl"), "{told}");
    // The rewritten file holds what the engine produces: the shipped, correct expectation.
    let rewritten = std::fs::read_to_string(fixtures.join("mixed.expected.jsonl")).expect("read");
    let parse = |text: &str| -> Vec<Value> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    };
    assert_eq!(
        parse(&rewritten),
        parse(&String::from_utf8(right).expect("utf-8"))
    );
    // The file that was right is not touched.
    assert_eq!(
        std::fs::metadata(&quiet)
            .and_then(|m| m.modified())
            .expect("mtime"),
        quiet_modified
    );
    assert!(!fixtures.join(".mixed.expected.jsonl.update").exists());
    assert!(stdout(&out).contains(", 0 failed"), "{}", stdout(&out));
    assert_success(&palisade(&["test", "."], dir.path()));
}

/// Defect: the CI job `palisade init` wrote ran `cargo install --git "$PALISADE_REPO"`, so every
/// user's CI built palisade from source and needed a repository variable set first.
#[test]
fn the_init_ci_job_uses_the_pinned_image_and_passes_on_the_new_repository() {
    let parent = tempfile::tempdir().expect("temp dir");
    let dir = parent.path().join("detections");
    assert_success(&palisade(
        &["init", dir.to_str().expect("utf-8")],
        parent.path(),
    ));
    let ci = std::fs::read_to_string(dir.join(".github/workflows/detections.yml")).expect("ci");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        ci.contains(&format!("      image: palisade:{version}\n")),
        "{ci}"
    );
    assert!(!ci.contains("cargo"), "{ci}");
    assert!(!ci.contains("vars."), "{ci}");
    assert!(!ci.contains("@PALISADE_VERSION@"), "{ci}");
    // The check job's steps (the impact jobs after it run on pull requests only).
    let check = ci.split("\n  impact:").next().unwrap_or_default();
    let steps: Vec<&str> = check
        .lines()
        .filter_map(|l| l.trim().strip_prefix("run: "))
        .collect();
    assert_eq!(
        steps,
        [
            "palisade validate . --strict",
            "palisade test . --format junit > palisade-tests.xml"
        ]
    );
    // What the job runs passes on the repository init wrote.
    assert_success(&palisade(&["validate", ".", "--strict"], &dir));
    let out = palisade(&["test", ".", "--format", "junit"], &dir);
    assert_success(&out);
    let elements = parse_xml(&stdout(&out));
    assert_eq!(attribute(&elements[0].1, "failures"), "0");
    assert_eq!(attribute(&elements[0].1, "tests"), "5");

    // The image the job names is built by the repository's Containerfile, with the toolchain
    // the crate declares.
    let containerfile =
        std::fs::read_to_string(repo().join("Containerfile")).expect("Containerfile");
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    let rust = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("rust-version");
    assert!(
        containerfile.contains(&format!("FROM rust:{rust}-")),
        "the build stage must use Rust {rust}"
    );
    assert!(containerfile.contains(&format!("podman build -t palisade:{version} ")));
    assert!(containerfile.contains("cargo build --release --locked --bin palisade"));
}
