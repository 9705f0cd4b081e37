//! What a step may act on, end to end through the binary: `validate` refuses literal targets the
//! executor would refuse, `replay` and `palisade test` report the executor's refusals with their
//! reasons. (The same refusals against the real firewall are in `firewall.rs`.)

use serde_json::Value;

use crate::support::{assert_success, json_lines, palisade, scratch_content, stdout};

/// A rule that fires on every `network_connection` to port 4444.
const RULE: &str = r#"let rule = #{ id: "test-c2", title: "Test C2", severity: "critical", events: ["network_connection"], filter: #{ remote_port: [4444] } };
fn detect(event) { true }"#;

/// Problems `validate --format json` reports for `playbook`, as (line, column, code, message).
fn problems(playbook: &str) -> Vec<(u64, u64, String, String)> {
    let dir = scratch_content();
    std::fs::write(dir.path().join("rules/test_c2.rhai"), RULE).expect("rule");
    std::fs::write(dir.path().join("playbooks/under-test.yaml"), playbook).expect("playbook");
    let out = palisade(&["validate", ".", "--format", "json"], dir.path());
    let found: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap_or_default();
    found
        .iter()
        .filter(|p| {
            p["file"]
                .as_str()
                .is_some_and(|f| f.ends_with("under-test.yaml"))
        })
        .map(|p| {
            (
                p["line"].as_u64().unwrap_or_default(),
                p["column"].as_u64().unwrap_or_default(),
                p["code"].as_str().unwrap_or_default().to_string(),
                p["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn step(action: &str, with: &str, extra: &str) -> String {
    format!(
        "id: under-test\ntitle: Under test\ntrigger: {{rules: [test-c2]}}\nsteps:\n  - id: act\n    action: {action}\n    with: {with}\n{extra}"
    )
}

/// Defect (issue 11.1): a literal `address: 1.2.3.4/0` passed `validate`; so did a block of
/// half the internet and `pid: 1`. Each is now refused where it is written.
#[test]
fn a_literal_target_the_executor_would_refuse_fails_validate() {
    let cases = [
        (
            "firewall.block",
            "{address: 1.2.3.4/0}",
            "`0.0.0.0/0` covers 127.0.0.0/8",
        ),
        (
            "firewall.block",
            "{address: \"1::/0\"}",
            "`::/0` covers ::1/128",
        ),
        ("firewall.block", "{address: 10.0.0.0/8}", "block too wide"),
        (
            "firewall.block",
            "{address: \"2000::/3\"}",
            "block too wide",
        ),
        ("process.kill", "{pid: 1}", "PID 1"),
        (
            "process.kill",
            "{pid: 4242, name: sshd}",
            "critical process",
        ),
    ];
    for (action, with, reason) in cases {
        let found = problems(&step(action, with, ""));
        assert_eq!(found.len(), 1, "{with}: {found:?}");
        let (line, column, code, message) = &found[0];
        assert_eq!((*line, code.as_str()), (7, "refused-target"), "{with}");
        assert!(*column >= 11, "{with}: column {column}");
        assert!(message.contains(reason), "{with}: {message}");
    }
    // Within the limit, or wider with the step's own limit on a high-risk step: valid.
    assert!(problems(&step("firewall.block", "{address: 185.12.33.0/24}", "")).is_empty());
    assert!(
        problems(&step(
            "firewall.block",
            "{address: 10.0.0.0/8, widest_prefix: 8}",
            "    risk: high\n"
        ))
        .is_empty()
    );
}

/// How wide a block may be is the playbook's decision, never an event's, and such a step is
/// high-risk.
#[test]
fn a_wider_block_must_be_a_literal_on_a_high_risk_step() {
    let found = problems(&step(
        "firewall.block",
        "{address: \"{{ event.block_target }}\", widest_prefix: \"{{ event.width }}\"}",
        "",
    ));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].2, "wrong-parameter-type");
    assert!(found[0].3.contains("literal prefix length"), "{found:?}");
    let found = problems(&step(
        "firewall.block",
        "{address: \"{{ event.block_target }}\", widest_prefix: 16}",
        "    risk: medium\n",
    ));
    assert_eq!(
        found
            .iter()
            .map(|p| (p.0, p.2.as_str()))
            .collect::<Vec<_>>(),
        [(8, "wide-block-risk")]
    );
}

/// The playbook and events of the replay test: an event field names the block target.
fn replay_content() -> tempfile::TempDir {
    let dir = scratch_content();
    std::fs::write(dir.path().join("rules/test_c2.rhai"), RULE).expect("rule");
    std::fs::write(
        dir.path().join("playbooks/under-test.yaml"),
        "id: under-test\ntitle: Under test\nhigh_risk_approval: not_required\ntrigger: {rules: [test-c2]}\nsteps:\n  \
         - id: block\n    action: firewall.block\n    with: {address: \"{{ event.block_target }}\"}\n    on_failure: continue\n  \
         - id: wide-block\n    action: firewall.block\n    with: {address: \"{{ event.block_target }}\", widest_prefix: 16}\n    on_failure: continue\n  \
         - id: kill\n    action: process.kill\n    with: {pid: \"{{ event.pid }}\", name: \"{{ event.name }}\"}\n    on_failure: continue\n",
    )
    .expect("playbook");
    let events: String = [
        ("e1", "1.2.3.4/0", 1, "x"),
        ("e2", "1::/0", 4242, "sshd"),
        ("e3", "127.0.0.1", 4242, "x"),
        ("e4", "10.0.0.0/8", 4242, "x"),
        ("e5", "10.1.0.0/16", 4242, "x"),
        ("e6", "185.12.33.4", 4242, "x"),
    ]
    .iter()
    .map(|(id, target, pid, name)| {
        format!(
            "{{\"type\":\"network_connection\",\"timestamp\":1,\"id\":\"{id}\",\"host\":\"h\",\"pid\":{pid},\"name\":\"{name}\",\"remote_ip\":\"185.12.33.4\",\"remote_port\":4444,\"block_target\":\"{target}\"}}\n"
        )
    })
    .collect();
    std::fs::write(dir.path().join("events.jsonl"), events).expect("events");
    dir
}

/// Defect (issue 11.1): replay said `planned` for steps the executor refuses (0.0.0.0/0,
/// 127.0.0.1, PID 1), so neither replay nor `palisade test` could show a refusal.
#[test]
fn replay_reports_the_executors_refusals_with_their_reasons() {
    let dir = replay_content();
    let out = palisade(&["replay", "--events", "events.jsonl"], dir.path());
    assert_success(&out);
    let decided: Vec<(String, String, String, String)> = json_lines(&stdout(&out))
        .iter()
        .filter(|l| l["kind"] == "action" && l["playbook"] == "under-test")
        .map(|l| {
            let text = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (
                text("event_id"),
                text("step"),
                text("status"),
                text("reason"),
            )
        })
        .collect();
    let find = |event: &str, step: &str| {
        decided
            .iter()
            .find(|d| d.0 == event && d.1 == step)
            .map(|d| (d.2.as_str(), d.3.as_str()))
            .unwrap_or_else(|| panic!("no {event}/{step} in {decided:?}"))
    };
    let refused = |event, step, reason: &str| {
        let (status, why) = find(event, step);
        assert_eq!(status, "refused", "{event}/{step}: {why}");
        assert!(why.contains(reason), "{event}/{step}: {why}");
    };
    refused("e1", "block", "`0.0.0.0/0` covers 127.0.0.0/8 (loopback)");
    refused("e1", "kill", "PID 1");
    refused("e2", "block", "`::/0` covers ::1/128 (loopback)");
    refused("e2", "kill", "`sshd` is a critical process");
    refused("e3", "block", "`127.0.0.1` covers 127.0.0.0/8");
    refused(
        "e4",
        "block",
        "block too wide: `10.0.0.0/8` covers more than a /24",
    );
    refused(
        "e4",
        "wide-block",
        "block too wide: `10.0.0.0/8` covers more than a /16",
    );
    refused("e5", "block", "block too wide");
    // Within the step's own limit: wider than the configured one, so a person decides, though
    // the playbook lets its other high-risk steps act alone.
    let (status, why) = find("e5", "wide-block");
    assert_eq!(status, "queued", "{why}");
    assert!(why.contains("must approve"), "{why}");
    assert_eq!(find("e6", "block").0, "planned");
    assert_eq!(find("e6", "kill").0, "planned");
}

/// A playbook test case asserts a refusal, and `palisade test` fails when the refusal is not
/// what the case expects.
#[test]
fn a_playbook_test_can_assert_a_refusal() {
    // Only this content's cases (the shipped ones read fixtures from the repository).
    let dir = tempfile::tempdir().expect("temp dir");
    for sub in ["rules", "playbooks"] {
        std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
    }
    std::fs::write(dir.path().join("rules/test_c2.rhai"), RULE).expect("rule");
    let playbook = |status: &str| {
        format!(
            "id: under-test\ntitle: Under test\ntrigger: {{rules: [test-c2]}}\nsteps:\n  \
             - id: block\n    action: firewall.block\n    with: {{address: \"{{{{ event.block_target }}}}\"}}\n\
             tests:\n  - name: a block of everything is refused\n    events:\n      \
             - {{type: network_connection, pid: 5, name: x, remote_ip: 185.12.33.4, remote_port: 4444, block_target: 1.2.3.4/0}}\n    \
             expect:\n      actions:\n        - {{step: block, target: 0.0.0.0/0, status: {status}}}\n"
        )
    };
    std::fs::write(
        dir.path().join("playbooks/under-test.yaml"),
        playbook("refused"),
    )
    .expect("playbook");
    assert_success(&palisade(&["test", "."], dir.path()));
    std::fs::write(
        dir.path().join("playbooks/under-test.yaml"),
        playbook("planned"),
    )
    .expect("playbook");
    let out = palisade(&["test", "."], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("refused"), "{}", stdout(&out));
}

/// Defence in depth (issue 11.2): a rule that acts on whatever intel an event has, even hits on
/// a warninglist of public resolvers, still never blocks or kills on those hits alone; planning
/// (so `palisade test`) refuses them, and one hit that is not
/// warninglisted is evidence enough.
#[test]
fn a_block_or_kill_resting_only_on_warninglisted_intel_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    for sub in ["rules", "playbooks", "warninglists"] {
        std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
    }
    std::fs::write(
        dir.path().join("warninglists/resolvers.json"),
        r#"{"name": "test-resolvers", "description": "resolvers", "type": "cidr", "list": ["2001:418:3ff::53"]}"#,
    )
    .expect("warninglist");
    std::fs::write(
        dir.path().join("rules/any_intel.rhai"),
        r#"let rule = #{ id: "any-intel", title: "Any intel", severity: "critical", events: ["network_connection"] };
fn detect(event) { if event.intel.len() > 0 { #{ entity: "address", intel: event.intel } } }"#,
    )
    .expect("rule");
    let event = "{type: network_connection, pid: 4242, name: x, remote_ip: \"2001:418:3ff::53\"}";
    std::fs::write(
        dir.path().join("playbooks/act-on-intel.yaml"),
        format!(
            "id: act-on-intel\ntitle: Act on intel\nhigh_risk_approval: not_required\ntrigger: {{rules: [any-intel]}}\nsteps:\n  \
             - id: block\n    action: firewall.block\n    with: {{address: \"{{{{ entity.address }}}}\"}}\n    on_failure: continue\n  \
             - id: kill\n    action: process.kill\n    with: {{pid: \"{{{{ event.pid }}}}\"}}\n    on_failure: continue\n  \
             - id: tell\n    action: notify.log\n    with: {{message: \"{{{{ detection.title }}}}\"}}\n\
             tests:\n  \
             - name: warninglisted intel alone blocks and kills nothing\n    \
               intel: [{{value: \"2001:418:3ff::53\", source: feed, confidence: 90, severity: 90}}]\n    \
               events: [{event}]\n    \
               expect: {{actions: [{{step: block, status: refused}}, {{step: kill, status: refused}}, {{step: tell, status: planned}}]}}\n  \
             - name: one hit that is not warninglisted is evidence enough\n    \
               intel: [{{value: \"2001:418:3ff::53\", source: feed, confidence: 90, severity: 90}}, {{value: \"2001:418:3ff::/48\", source: other, confidence: 90, severity: 90}}]\n    \
               events: [{event}]\n    \
               expect: {{actions: [{{step: block, status: planned}}, {{step: kill, status: planned}}, {{step: tell, status: planned}}]}}\n"
        ),
    )
    .expect("playbook");
    let out = palisade(&["test", "."], dir.path());
    assert_success(&out);
    assert!(
        stdout(&out).contains("cases: 2 passed, 0 failed"),
        "{}",
        stdout(&out)
    );
}
