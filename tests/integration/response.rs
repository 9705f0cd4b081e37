//! Response that acts: real processes killed (or refused), webhooks delivered to a real local
//! server (or given up on), injection refused, and every decision in a verifiable audit trail.

use std::process::{Child, Command};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;

use crate::support::{assert_success, eventually, palisade, scratch_content, stdout};

/// A content directory whose config acts (dry-run off), with a rule that fires on any process
/// named in `names` and a playbook that kills it and calls `webhook`.
fn acting_content(webhook: &str) -> tempfile::TempDir {
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        "actions:\n  dry_run: false\n  cooldown: 1s\n  timeout: 20s\n",
    )
    .expect("config");
    std::fs::write(
        dir.path().join("rules/test_targets.rhai"),
        r#"let rule = #{ id: "test-target", title: "Test target", severity: "critical", events: ["process_create"],
                        filter: #{ "cmdline|contains": ["palisade-test-target"] } };"#,
    )
    .expect("rule");
    std::fs::write(
        dir.path().join("playbooks/test-kill.yaml"),
        format!(
            "id: test-kill\ntitle: Kill the test target\nhigh_risk_approval: not_required\ntrigger: {{rules: [test-target]}}\nsteps:\n  - id: kill\n    action: process.kill\n    with: {{pid: \"{{{{ event.pid }}}}\", name: \"{{{{ event.name }}}}\", grace: 1s}}\n    on_failure: continue\n  - id: tell\n    action: notify.webhook\n    with: {{url: \"{webhook}\", message: \"killed {{{{ event.pid }}}}\"}}\n"
        ),
    )
    .expect("playbook");
    dir
}

fn target() -> Child {
    Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("sleep runs")
}

fn event(pid: u32, name: &str) -> String {
    format!(
        r#"{{"type":"process_create","timestamp":"{}","id":"e-{pid}-{name}","host":"test","pid":{pid},"name":"{name}","cmdline":"sleep 300 palisade-test-target"}}"#,
        jiff::Timestamp::now()
    )
}

fn run_engine(dir: &std::path::Path, events: &[String]) -> std::process::Output {
    std::fs::write(dir.join("events.jsonl"), events.join("\n") + "\n").expect("events");
    palisade(&["run", "--events", "events.jsonl"], dir)
}

/// A webhook receiver answering every POST with `status`; returns its URL and a hit counter.
fn webhook(status: StatusCode) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                status
            }
        }),
    );
    let address = crate::support::serve_http(app);
    (format!("http://{address}/hook"), hits)
}

fn audit_tail(dir: &std::path::Path) -> String {
    stdout(&palisade(&["audit", "tail", "-n", "50"], dir))
}

#[test]
fn a_running_process_is_killed_and_the_webhook_is_told() {
    let (url, hits) = webhook(StatusCode::OK);
    let dir = acting_content(&url);
    let mut sleeper = target();
    let out = run_engine(dir.path(), &[event(sleeper.id(), "sleep")]);
    assert_success(&out);
    assert!(
        eventually(crate::support::PATIENCE, || sleeper
            .try_wait()
            .ok()
            .flatten()
            .is_some()),
        "the sleep was not killed"
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The console shows what became of each step, not what was planned.
    let console = stdout(&out);
    assert!(
        console.contains(&format!(
            "-> process.kill {} (playbook test-kill, step kill) executed: PID",
            sleeper.id()
        )),
        "{console}"
    );
    let trail = audit_tail(dir.path());
    assert!(
        trail.contains("intent") && trail.contains("step=kill action=process.kill"),
        "{trail}"
    );
    assert!(trail.contains("status=executed reason=PID"), "{trail}");
    assert!(
        trail.contains("step=tell") && trail.contains("delivered (HTTP 200, attempt 1)"),
        "{trail}"
    );
    assert_eq!(
        palisade(&["audit", "verify"], dir.path()).status.code(),
        Some(0)
    );
}

#[test]
fn a_reused_pid_pid_one_and_the_wrong_program_are_refused() {
    let (url, _) = webhook(StatusCode::OK);
    let dir = acting_content(&url);
    let mut sleeper = target();
    // The event named another program for this PID: the PID now belongs to `sleep`.
    let out = run_engine(
        dir.path(),
        &[event(sleeper.id(), "notsleep"), event(1, "systemd")],
    );
    assert_success(&out);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        sleeper.try_wait().expect("wait").is_none(),
        "a PID owned by another program must not be killed"
    );
    let trail = audit_tail(dir.path());
    assert!(
        trail.contains("now belongs to `sleep`, not `notsleep`: the PID was reused"),
        "{trail}"
    );
    assert!(
        trail.contains("protected target: PID 1 is the init process"),
        "{trail}"
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn a_webhook_that_keeps_failing_is_retried_then_given_up_with_an_audited_failure() {
    let (url, hits) = webhook(StatusCode::INTERNAL_SERVER_ERROR);
    let dir = acting_content(&url);
    let mut sleeper = target();
    let out = run_engine(dir.path(), &[event(sleeper.id(), "sleep")]);
    assert_success(&out);
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "three attempts"
    );
    let trail = audit_tail(dir.path());
    assert!(
        trail.contains("step=tell")
            && trail.contains("status=failed reason=gave up after 3 attempts: HTTP 500"),
        "{trail}"
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn injection_never_reaches_an_act_and_is_refused_on_the_record() {
    let (url, _) = webhook(StatusCode::OK);
    let dir = acting_content(&url);
    std::fs::write(
        dir.path().join("playbooks/test-block.yaml"),
        "id: test-block\ntitle: Block what the sensor reported\ntrigger: {rules: [test-target]}\nsteps:\n  - id: block\n    action: firewall.block\n    with: {address: \"{{ event.reported_address }}\"}\n    on_failure: continue\n",
    )
    .expect("playbook");
    let injections = [
        "1.2.3.4; rm -rf /",
        "$(reboot)",
        "fe80::1%eth0",
        "1.2.3.4\n5.6.7.8",
        &"9".repeat(5000),
    ];
    let events: Vec<String> = injections
        .iter()
        .enumerate()
        .map(|(i, bad)| {
            format!(
                r#"{{"type":"process_create","timestamp":1,"id":"inj-{i}","pid":999999,"name":"x","cmdline":"palisade-test-target","reported_address":{}}}"#,
                serde_json::json!(bad)
            )
        })
        .collect();
    let out = run_engine(dir.path(), &events);
    assert_success(&out);
    let export = stdout(&palisade(&["audit", "export"], dir.path()));
    let blocks: Vec<serde_json::Value> = export
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["step"] == "block")
        .collect();
    assert_eq!(blocks.len(), injections.len(), "{export}");
    for record in &blocks {
        assert_eq!(record["status"], "refused", "{record}");
        assert!(
            record["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("is not an IP address or CIDR range"),
            "{record}"
        );
    }
    assert!(
        !export.contains("\"kind\":\"intent\",\"actor\":\"engine")
            || !export.contains("firewall.block\",\"target\":\"1.2.3.4")
    );
}

#[test]
fn audit_verify_fails_after_a_row_is_edited_by_hand() {
    let (url, _) = webhook(StatusCode::OK);
    let dir = acting_content(&url);
    let mut sleeper = target();
    run_engine(dir.path(), &[event(sleeper.id(), "sleep")]);
    let _ = sleeper.wait();
    assert_eq!(
        palisade(&["audit", "verify"], dir.path()).status.code(),
        Some(0)
    );
    crate::support::with_state(&dir.path().join("data/palisade.db"), async |state| {
        sqlx::query("UPDATE audit SET status = 'refused' WHERE seq = 2")
            .execute(state.pool())
            .await
            .expect("edit");
    });
    let out = palisade(&["audit", "verify"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("BROKEN: row 2 changed"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn five_webhook_failures_leave_the_mode_alone_and_in_manual_an_approval_runs_the_queued_step() {
    use std::io::Write;
    let (url, hits) = webhook(StatusCode::NOT_FOUND);
    let dir = acting_content(&url);
    std::fs::write(
        dir.path().join("palisade.yaml"),
        "actions:\n  dry_run: false\n  cooldown: \"off\"\n  timeout: 20s\n  degrade_after_failures: 5\n",
    )
    .expect("config");
    // Only the webhook, so each event is one failure.
    std::fs::write(
        dir.path().join("playbooks/test-kill.yaml"),
        format!("id: test-kill\ntitle: Tell\ntrigger: {{rules: [test-target]}}\nsteps:\n  - id: tell\n    action: notify.webhook\n    with: {{url: \"{url}\", message: \"hello\"}}\n    on_failure: continue\n"),
    )
    .expect("playbook");
    std::fs::write(
        dir.path().join("playbooks/test-kill-approved.yaml"),
        "id: test-kill-approved\ntitle: Kill\nhigh_risk_approval: not_required\ntrigger: {rules: [test-target]}\nsteps:\n  - id: kill\n    action: process.kill\n    with: {pid: \"{{ event.pid }}\", name: \"{{ event.name }}\", grace: 1s}\n",
    )
    .expect("playbook");
    let log = dir.path().join("engine.log");
    let mut engine = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("run")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("palisade runs");
    let mut stdin = engine.stdin.take().expect("stdin");
    // Five detections whose kill targets are gone (PID 999999) and whose webhooks fail.
    for i in 0..5 {
        writeln!(stdin, "{}", event(999_990 + i, "gone")).expect("write");
    }
    // A receiver's fault contains nothing: the breaker reports it and leaves the mode alone.
    assert!(
        eventually(crate::support::PATIENCE, || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("so the engine stays in automatic mode")),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 5);
    assert!(stdout(&palisade(&["mode"], dir.path())).starts_with("mode: auto"));
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("switched to manual mode")
    );
    // A person switches to manual; the running engine reads it within a second.
    assert_success(&palisade(&["mode", "manual"], dir.path()));
    std::thread::sleep(Duration::from_millis(1500));

    // The next detection's steps wait for a person.
    let mut sleeper = target();
    writeln!(stdin, "{}", event(sleeper.id(), "sleep")).expect("write");
    let pending = || stdout(&palisade(&["approvals", "list"], dir.path()));
    assert!(
        eventually(crate::support::PATIENCE, || pending()
            .contains("process.kill")),
        "{}\n{}\n{}",
        pending(),
        std::fs::read_to_string(&log).unwrap_or_default(),
        stdout(&palisade(&["audit", "tail", "-n", "30"], dir.path()))
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        sleeper.try_wait().expect("wait").is_none(),
        "a queued kill must not act"
    );
    let listing = pending();
    let id = listing
        .lines()
        .find(|l| l.contains("process.kill"))
        .and_then(|l| l.split_whitespace().next())
        .expect("an approval id")
        .to_string();
    let out = palisade(&["approvals", "approve", &id], dir.path());
    assert_success(&out);
    assert!(
        eventually(crate::support::PATIENCE, || sleeper
            .try_wait()
            .ok()
            .flatten()
            .is_some()),
        "the approved kill did not run"
    );
    // The process is gone before the step's outcome is stored: wait for the record too.
    let all = || stdout(&palisade(&["approvals", "list", "--all"], dir.path()));
    assert!(
        eventually(crate::support::PATIENCE, || {
            let listing = all();
            listing.contains("executed") && listing.contains("by operator:")
        }),
        "{}",
        all()
    );

    drop(stdin);
    let _ = engine.wait();
    let verify = palisade(&["audit", "verify"], dir.path());
    assert_success(&verify);
    let trail = stdout(&palisade(&["audit", "tail", "-n", "100"], dir.path()));
    assert!(
        trail.contains("mode") && trail.contains("status=manual"),
        "{trail}"
    );
    assert!(
        trail.contains("approval") && trail.contains("status=approved"),
        "{trail}"
    );
}

#[test]
fn syslog_and_redis_notifications_reach_real_receivers() {
    let redis = crate::support::RedisServer::start();
    let syslog = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    syslog
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let syslog_port = syslog.local_addr().expect("address").port();
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!(
            "redis:\n  url: {}\nactions:\n  dry_run: false\n",
            redis.url()
        ),
    )
    .expect("config");
    crate::support::write_test_target_rule(dir.path());
    std::fs::write(
        dir.path().join("playbooks/test-notify.yaml"),
        format!(
            "id: test-notify\ntitle: Tell the SIEM and the responders\ntrigger: {{rules: [test-target]}}\nsteps:\n  - id: siem\n    action: notify.syslog\n    with: {{server: \"127.0.0.1:{syslog_port}\", message: \"seen {{{{ event.name }}}}\"}}\n    on_failure: continue\n  - id: responders\n    action: notify.redis\n    with: {{channel: palisade-test, message: \"seen {{{{ event.name }}}}\"}}\n"
        ),
    )
    .expect("playbook");
    let client = redis::Client::open(redis.url()).expect("client");
    let mut connection = client.get_connection().expect("connection");
    let mut pubsub = connection.as_pubsub();
    pubsub.subscribe("palisade-test").expect("subscribe");
    pubsub
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");

    let out = run_engine(dir.path(), &[event(424_242, "evil.exe")]);
    assert_success(&out);

    let mut buffer = [0u8; 2048];
    let length = syslog.recv(&mut buffer).expect("a syslog message");
    let line = String::from_utf8_lossy(&buffer[..length]).to_string();
    assert!(line.starts_with("<84>1 "), "{line}");
    assert!(
        line.contains("[palisade@32473 rule=\"test-target\" playbook=\"test-notify\"")
            && line.ends_with("seen evil.exe"),
        "{line}"
    );
    let message = pubsub.get_message().expect("a Redis message");
    let body: serde_json::Value =
        serde_json::from_slice(message.get_payload_bytes()).expect("JSON");
    assert_eq!(body["message"], "seen evil.exe");
    assert_eq!(body["playbook"], "test-notify");
}

/// A webhook receiver that keeps every body it is sent; returns its URL and the bodies.
fn recording_webhook() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    let app = Router::new().route(
        "/hook",
        post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let kept = kept.clone();
            async move {
                kept.lock().expect("bodies").push(body);
                StatusCode::OK
            }
        }),
    );
    let address = crate::support::serve_http(app);
    (format!("http://{address}/hook"), bodies)
}

/// A content directory that acts, with the test rule and one playbook `notify` of `steps` (YAML
/// list items, indented by four spaces) and `extra` top-level playbook keys.
fn notifying_content(config: &str, extra: &str, steps: &str) -> tempfile::TempDir {
    let dir = scratch_content();
    std::fs::write(dir.path().join("palisade.yaml"), config).expect("config");
    crate::support::write_test_target_rule(dir.path());
    std::fs::write(
        dir.path().join("playbooks/test-notify.yaml"),
        format!("id: test-notify\ntitle: Tell people\n{extra}trigger: {{rules: [test-target]}}\nsteps:\n{steps}"),
    )
    .expect("playbook");
    dir
}

/// The audit rows of one step, oldest first.
fn audited(dir: &std::path::Path, step: &str) -> Vec<serde_json::Value> {
    stdout(&palisade(&["audit", "export"], dir))
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["step"] == step)
        .collect()
}

fn statuses(rows: &[serde_json::Value], kind: &str) -> Vec<String> {
    rows.iter()
        .filter(|r| r["kind"] == kind)
        .map(|r| r["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn defect_4_four_detections_through_one_webhook_step_are_four_posts_not_one() {
    let (url, bodies) = recording_webhook();
    let dir = notifying_content(
        "actions:\n  dry_run: false\n  cooldown: 10m\n",
        "",
        &format!(
            "  - id: tell\n    action: notify.webhook\n    with: {{url: \"{url}\", message: \"seen {{{{ event.pid }}}}\"}}\n"
        ),
    );
    let events: Vec<String> = (0..4).map(|i| event(424_240 + i, "evil.exe")).collect();
    // The same event delivered twice is the same detection: that repeat is what the cooldown
    // holds back.
    let mut with_repeat = events.clone();
    with_repeat.push(events[0].clone());
    let out = run_engine(dir.path(), &with_repeat);
    assert_success(&out);

    let mut received: Vec<String> = bodies
        .lock()
        .expect("bodies")
        .iter()
        .map(|b| b["message"].as_str().unwrap_or_default().to_string())
        .collect();
    // The effects pool sends messages side by side: they may arrive in another order.
    received.sort();
    assert_eq!(
        received,
        ["seen 424240", "seen 424241", "seen 424242", "seen 424243"],
        "every detection reaches people, each once"
    );
    let rows = audited(dir.path(), "tell");
    assert_eq!(statuses(&rows, "outcome"), ["executed"; 4], "{rows:#?}");
    // The repeat is recognised as already decided before the executor sees it (its key is
    // stored), so it is neither sent nor audited again.
    // Per detection: the decision to hand the step to the effects pool (`dispatched`, before
    // the batch is acknowledged), then the intent and the outcome when the pool acts.
    assert_eq!(statuses(&rows, "decision"), ["dispatched"; 4], "{rows:#?}");
    assert_eq!(
        rows.len(),
        12,
        "a decision, an intent and an outcome per detection: {rows:#?}"
    );
    assert!(
        crate::support::stderr(&out).contains("recognised detections of redelivered events"),
        "{}",
        crate::support::stderr(&out)
    );
}

#[test]
fn defect_4_syslog_redis_and_log_notifications_are_not_swallowed_by_the_cooldown() {
    let redis = crate::support::RedisServer::start();
    let syslog = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    syslog
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let syslog_port = syslog.local_addr().expect("address").port();
    let dir = notifying_content(
        &format!(
            "redis:\n  url: {}\nactions:\n  dry_run: false\n  cooldown: 10m\n",
            redis.url()
        ),
        "",
        &format!(
            "  - id: siem\n    action: notify.syslog\n    with: {{server: \"127.0.0.1:{syslog_port}\", message: \"seen {{{{ event.pid }}}}\"}}\n    on_failure: continue\n  - id: responders\n    action: notify.redis\n    with: {{channel: palisade-a2-test, message: \"seen {{{{ event.pid }}}}\"}}\n    on_failure: continue\n  - id: log\n    action: notify.log\n    with: {{level: warn, message: \"logged seen {{{{ event.pid }}}}\"}}\n"
        ),
    );
    let client = redis::Client::open(redis.url()).expect("client");
    let mut connection = client.get_connection().expect("connection");
    let mut pubsub = connection.as_pubsub();
    pubsub.subscribe("palisade-a2-test").expect("subscribe");
    pubsub
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");

    let events: Vec<String> = (0..5).map(|i| event(525_250 + i, "evil.exe")).collect();
    let out = run_engine(dir.path(), &events);
    assert_success(&out);

    let mut buffer = [0u8; 2048];
    let mut lines = Vec::new();
    for _ in 0..5 {
        let length = syslog.recv(&mut buffer).expect("a syslog message");
        lines.push(String::from_utf8_lossy(&buffer[..length]).to_string());
    }
    // The effects pool sends messages side by side: they may arrive in another order.
    let mut published = Vec::new();
    for _ in 0..5 {
        let message = pubsub.get_message().expect("a Redis message");
        let body: serde_json::Value =
            serde_json::from_slice(message.get_payload_bytes()).expect("JSON");
        published.push(body["message"].as_str().unwrap_or_default().to_string());
    }
    published.sort();
    for (i, got) in published.iter().enumerate() {
        let wanted = format!("seen {}", 525_250 + i);
        assert!(lines.iter().any(|l| l.ends_with(&wanted)), "{lines:#?}");
        assert_eq!(*got, wanted);
    }
    let log = crate::support::stderr(&out);
    for i in 0..5 {
        assert!(
            log.contains(&format!("logged seen {}", 525_250 + i)),
            "{log}"
        );
    }
    for step in ["siem", "responders", "log"] {
        let rows = audited(dir.path(), step);
        assert_eq!(
            statuses(&rows, "outcome"),
            ["executed"; 5],
            "{step}: {rows:#?}"
        );
    }
}

#[test]
fn a_notification_limit_summarises_instead_of_dropping() {
    let (url, bodies) = recording_webhook();
    let dir = notifying_content(
        "actions:\n  dry_run: false\n",
        "notification_limit: {count: 2, window: 1h}\n",
        &format!(
            "  - id: tell\n    action: notify.webhook\n    with: {{url: \"{url}\", message: \"seen {{{{ event.pid }}}}\"}}\n"
        ),
    );
    let events: Vec<String> = (0..7).map(|i| event(626_260 + i, "evil.exe")).collect();
    let out = run_engine(dir.path(), &events);
    assert_success(&out);

    // Two messages within the limit, then one for the five held back (sent as the engine
    // stops, since no later message could carry their count).
    let received: Vec<String> = bodies
        .lock()
        .expect("bodies")
        .iter()
        .map(|b| b["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(received.len(), 3, "{received:#?}");
    assert_eq!(received[..2], ["seen 626260", "seen 626261"]);
    assert!(
        received[2].starts_with("seen 626266 [4 more like this in the last ")
            && received[2].ends_with("(summarised)]"),
        "{received:#?}"
    );
    // None silently lost: each held one is on the record as summarised.
    let rows = audited(dir.path(), "tell");
    let summarised: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["status"] == "summarised")
        .collect();
    assert_eq!(summarised.len(), 5, "{rows:#?}");
    for (i, row) in summarised.iter().enumerate() {
        assert_eq!(row["event_id"], format!("e-{}-evil.exe", 626_262 + i));
        assert!(
            row["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("over this step's limit of 2 per 1h"),
            "{row}"
        );
    }
    let summary = rows
        .iter()
        .rfind(|r| r["kind"] == "outcome")
        .expect("the summary's outcome");
    assert_eq!(summary["status"], "executed");
    assert_eq!(summary["details"]["summarises"], 5, "{summary}");
    assert_eq!(
        palisade(&["audit", "verify"], dir.path()).status.code(),
        Some(0)
    );
}

#[test]
fn a_notification_limit_sends_the_held_count_when_its_window_closes() {
    use std::io::Write;
    let (url, bodies) = recording_webhook();
    let dir = notifying_content(
        "actions:\n  dry_run: false\n",
        "notification_limit: {count: 1, window: 2s}\n",
        &format!(
            "  - id: tell\n    action: notify.webhook\n    with: {{url: \"{url}\", message: \"seen {{{{ event.pid }}}}\"}}\n"
        ),
    );
    let log = dir.path().join("engine.log");
    let mut engine = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("run")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("palisade runs");
    let mut stdin = engine.stdin.take().expect("stdin");
    for i in 0..4 {
        writeln!(stdin, "{}", event(727_270 + i, "evil.exe")).expect("write");
    }
    let count = || bodies.lock().expect("bodies").len();
    // The first goes out; the window closes with three held: one message carries them.
    assert!(
        eventually(crate::support::PATIENCE, || count() == 2),
        "{}",
        count()
    );
    drop(stdin);
    let _ = engine.wait();
    let received: Vec<String> = bodies
        .lock()
        .expect("bodies")
        .iter()
        .map(|b| b["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(received.len(), 2, "{received:#?}");
    assert_eq!(received[0], "seen 727270");
    assert!(
        received[1].starts_with("seen 727273 [2 more like this in the last "),
        "{received:#?}"
    );
}

/// A content directory with the test rule and a playbook whose kill waits for approval.
fn approval_content(dry_run: bool) -> tempfile::TempDir {
    notifying_content(
        &format!("actions:\n  dry_run: {dry_run}\n"),
        "",
        "  - id: kill\n    action: process.kill\n    with: {pid: \"{{ event.pid }}\", name: \"{{ event.name }}\", grace: 1s}\n",
    )
}

fn set_dry_run(dir: &std::path::Path, dry_run: bool) {
    std::fs::write(
        dir.join("palisade.yaml"),
        format!("actions:\n  dry_run: {dry_run}\n"),
    )
    .expect("config");
}

/// The id of the one pending approval for `process.kill`.
fn pending_kill(dir: &std::path::Path) -> String {
    let listing = stdout(&palisade(&["approvals", "list"], dir));
    let id = listing
        .lines()
        .find(|l| l.contains("process.kill"))
        .and_then(|l| l.split_whitespace().next());
    assert!(id.is_some(), "no pending kill in:\n{listing}");
    id.unwrap_or_default().to_string()
}

/// What an approved kill came to: its approval row, and the audit rows of its step.
fn approved_outcome(dir: &std::path::Path) -> (String, Vec<serde_json::Value>) {
    (
        stdout(&palisade(&["approvals", "list", "--all"], dir)),
        audited(dir, "kill"),
    )
}

#[test]
fn defect_9_an_approval_queued_while_live_is_recorded_as_dry_run_after_a_restart_in_dry_run() {
    let dir = approval_content(false);
    let mut sleeper = target();
    assert_success(&run_engine(dir.path(), &[event(sleeper.id(), "sleep")]));
    let id = pending_kill(dir.path());

    // The engine comes back in dry-run; a person approves from another process.
    set_dry_run(dir.path(), true);
    assert_success(&palisade(&["approvals", "approve", &id], dir.path()));
    assert_success(&run_engine(dir.path(), &[]));

    std::thread::sleep(Duration::from_millis(300));
    assert!(
        sleeper.try_wait().expect("wait").is_none(),
        "an approved step must not act in dry-run"
    );
    let (all, rows) = approved_outcome(dir.path());
    assert!(
        all.contains(&format!("{id}  dry_run")) && all.contains("actions are in dry-run"),
        "{all}"
    );
    assert!(
        !rows
            .iter()
            .any(|r| r["kind"] == "intent" || r["status"] == "executed"),
        "{rows:#?}"
    );
    let last = rows.last().expect("audit rows");
    assert_eq!(
        (last["kind"].as_str(), last["status"].as_str()),
        (Some("decision"), Some("dry_run")),
        "{rows:#?}"
    );
    assert_success(&palisade(&["audit", "verify"], dir.path()));
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn defect_9_in_dry_run_a_high_risk_step_queues_and_its_approval_is_recorded_as_dry_run() {
    let dir = approval_content(true);
    let mut sleeper = target();
    let out = run_engine(dir.path(), &[event(sleeper.id(), "sleep")]);
    assert_success(&out);
    // The team can rehearse: the step waits for a person, as it would live.
    assert!(
        stdout(&out).contains("(playbook test-notify, step kill) queued"),
        "{}",
        stdout(&out)
    );
    let id = pending_kill(dir.path());
    assert!(
        stdout(&palisade(&["approvals", "list"], dir.path()))
            .contains("approving it records it as dry_run"),
    );
    let approved = palisade(&["approvals", "approve", &id], dir.path());
    assert_success(&approved);
    assert!(
        stdout(&approved)
            .contains("actions are in dry-run: a running engine records it as dry_run"),
        "{}",
        stdout(&approved)
    );
    assert_success(&run_engine(dir.path(), &[]));

    std::thread::sleep(Duration::from_millis(300));
    assert!(
        sleeper.try_wait().expect("wait").is_none(),
        "an approved step must not act in dry-run"
    );
    let (all, rows) = approved_outcome(dir.path());
    assert!(all.contains(&format!("{id}  dry_run")), "{all}");
    assert_eq!(
        statuses(&rows, "decision"),
        ["queued", "dry_run"],
        "{rows:#?}"
    );
    assert!(!rows.iter().any(|r| r["kind"] == "intent"), "{rows:#?}");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn item_10_a_run_on_a_file_logs_no_error_at_end_of_input() {
    // The race lost about one run in four: the approvals task met the store closing. Twelve
    // runs, acting and in dry-run, with a queued step each time.
    for round in 0..12 {
        let dir = approval_content(round % 2 == 0);
        let out = run_engine(dir.path(), &[event(999_999, "gone")]);
        assert_success(&out);
        let log = crate::support::stderr(&out);
        assert!(
            !log.contains("ERROR"),
            "round {round} logged an error:\n{log}"
        );
        assert!(log.contains("stopped"), "{log}");
    }
}

#[test]
fn a_bad_notification_limit_is_refused_naming_file_line_and_field() {
    let dir = notifying_content(
        "actions:\n  dry_run: false\n",
        "notification_limit:\n  count: 0\n  window: soon\n",
        "  - id: log\n    action: notify.log\n    with: {message: hello}\n",
    );
    let out = palisade(&["validate"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = format!("{}{}", stdout(&out), crate::support::stderr(&out));
    assert!(
        text.contains("test-notify.yaml:4:") && text.contains("`count` must be at least 1"),
        "{text}"
    );
    assert!(
        text.contains("test-notify.yaml:5:")
            && text.contains("`window` must be a duration such as 30s, 1m or 1h, not `soon`"),
        "{text}"
    );
}

/// A real SMTP server on a free loopback port: Debian's `python3-aiosmtpd` with its stock
/// `Mailbox` handler, which stores every message it accepts in a maildir (with the envelope's
/// recipients in an `X-RcptTo` header it adds).
struct SmtpServer {
    port: u16,
    maildir: tempfile::TempDir,
    child: Child,
}

impl SmtpServer {
    fn start() -> SmtpServer {
        let port = free_port();
        let maildir = tempfile::tempdir().expect("temp dir");
        // Debian's interpreter, where the package installs the module (a `python3` earlier in
        // the PATH, from a version manager, does not see it).
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("/usr/bin/python3 runs (./scripts/test installs python3-aiosmtpd)");
        assert!(
            crate::support::eventually(crate::support::PATIENCE, || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "aiosmtpd did not start on port {port} (is python3-aiosmtpd installed?)"
        );
        SmtpServer {
            port,
            maildir,
            child,
        }
    }

    /// Every message received so far, as stored (headers and body).
    fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.path().join("mail/new")) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}

fn email_config(port: u16) -> String {
    format!(
        "actions:\n  dry_run: false\n  email:\n    server: \"127.0.0.1:{port}\"\n    security: plain\n    from: palisade@example.com\n"
    )
}

/// An event of the test rule with extra fields (JSON object members, without braces).
fn event_with(id: &str, extra: &str) -> String {
    format!(
        r#"{{"type":"process_create","timestamp":"{}","id":"{id}","host":"ws-1","pid":424242,"name":"evil.exe","cmdline":"palisade-test-target","user":"bob",{extra}}}"#,
        jiff::Timestamp::now()
    )
}

#[test]
fn an_email_reaches_the_smtp_server_with_the_detection_in_it() {
    let smtp = SmtpServer::start();
    let dir = notifying_content(
        &email_config(smtp.port),
        "",
        "  - id: mail\n    action: notify.email\n    with:\n      to: \"soc@example.com, oncall@example.com\"\n      subject: \"palisade: {{ detection.rule }} on {{ event.host }}\"\n      message: \"{{ event.name }} ({{ event.pid }}) ran on {{ event.host }}\\nnote: {{ event.note }}\"\n",
    );
    // An event value with a line break in the body is text, not headers: it is sent, inert.
    let out = run_engine(
        dir.path(),
        &[event_with(
            "mail-1",
            r#""note":"fine\r\nBcc: attacker@evil.example""#,
        )],
    );
    assert_success(&out);
    assert!(
        crate::support::eventually(Duration::from_secs(20), || !smtp.messages().is_empty()),
        "no message reached the SMTP server: {}",
        crate::support::stderr(&out)
    );
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let mail = &messages[0];
    let (headers, body) = mail.split_once("\n\n").expect("headers and a body");
    assert!(
        headers.contains("Subject: palisade: test-target on ws-1"),
        "{headers}"
    );
    assert!(
        headers.contains("From: palisade@example.com")
            && headers.contains("To: soc@example.com, oncall@example.com"),
        "{headers}"
    );
    // The envelope went to the two recipients and nobody else.
    assert!(
        headers.contains("X-RcptTo: soc@example.com, oncall@example.com"),
        "{headers}"
    );
    assert!(!headers.contains("Bcc"), "{headers}");
    assert!(body.contains("evil.exe (424242) ran on ws-1"), "{body}");
    assert!(
        body.contains("note: fine\\r")
            && body.contains("rule: test-target")
            && body.contains("playbook: test-notify")
            && body.contains("event: mail-1"),
        "{body}"
    );
    let rows = audited(dir.path(), "mail");
    assert_eq!(statuses(&rows, "decision"), ["dispatched"], "{rows:#?}");
    assert_eq!(statuses(&rows, "outcome"), ["executed"], "{rows:#?}");
}

#[test]
fn a_header_injection_attempt_in_an_event_value_is_refused() {
    let smtp = SmtpServer::start();
    let dir = notifying_content(
        &email_config(smtp.port),
        "",
        "  - id: subject\n    action: notify.email\n    with: {to: soc@example.com, subject: \"opened {{ event.document }}\", message: hello}\n    on_failure: continue\n  - id: recipients\n    action: notify.email\n    with: {to: \"{{ event.owner }}\", subject: owner, message: hello}\n    on_failure: continue\n",
    );
    let out = run_engine(
        dir.path(),
        &[event_with(
            "inject-1",
            r#""document":"report.pdf\r\nBcc: attacker@evil.example","owner":"soc@example.com\nBcc: attacker@evil.example""#,
        )],
    );
    assert_success(&out);
    for step in ["subject", "recipients"] {
        let rows = audited(dir.path(), step);
        assert_eq!(statuses(&rows, "decision"), ["refused"], "{rows:#?}");
        let reason = rows[0]["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("could inject a mail header") && reason.contains("Bcc: attacker"),
            "{step}: {reason}"
        );
        assert_eq!(rows.len(), 1, "never dispatched, never acted: {rows:#?}");
    }
    // Nothing was sent: the engine has finished, so whatever it sent has arrived.
    std::thread::sleep(Duration::from_millis(300));
    assert!(smtp.messages().is_empty(), "{:#?}", smtp.messages());
}

#[test]
fn a_bad_recipient_refuses_the_step_at_plan_time() {
    let smtp = SmtpServer::start();
    let dir = notifying_content(
        &email_config(smtp.port),
        "",
        "  - id: mail\n    action: notify.email\n    with: {to: \"{{ event.owner }}@example.com\", subject: hello, message: hello}\n",
    );
    let out = run_engine(dir.path(), &[event_with("bad-1", r#""owner":"two words""#)]);
    assert_success(&out);
    let rows = audited(dir.path(), "mail");
    assert_eq!(statuses(&rows, "decision"), ["refused"], "{rows:#?}");
    let reason = rows[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason
            .contains("parameter `to`: `two words@example.com` is not a list of e-mail addresses"),
        "{reason}"
    );
    assert_eq!(rows.len(), 1, "never dispatched: {rows:#?}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(smtp.messages().is_empty());

    // Written in the playbook, a bad address never loads: validate names file, line and field.
    let literal = notifying_content(
        &email_config(smtp.port),
        "",
        "  - id: mail\n    action: notify.email\n    with:\n      to: \"soc@example.com, soc@@example.com\"\n      subject: hello\n      message: hello\n",
    );
    let out = palisade(&["validate"], literal.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = format!("{}{}", stdout(&out), crate::support::stderr(&out));
    assert!(
        text.contains("test-notify.yaml:8:")
            && text.contains("parameter `to`: `soc@example.com, soc@@example.com` is not a list of e-mail addresses"),
        "{text}"
    );
}

#[test]
fn an_unreachable_smtp_server_fails_the_step_and_is_retried_like_a_webhook() {
    // A port nothing listens on: every connection is refused, a transient failure.
    let port = free_port();
    let dir = notifying_content(
        &email_config(port),
        "",
        "  - id: mail\n    action: notify.email\n    with: {to: soc@example.com, subject: hello, message: \"seen {{ event.pid }}\"}\n",
    );
    let started = std::time::Instant::now();
    let out = run_engine(dir.path(), &[event_with("down-1", r#""x":1"#)]);
    assert_success(&out);
    let rows = audited(dir.path(), "mail");
    assert_eq!(statuses(&rows, "decision"), ["dispatched"], "{rows:#?}");
    assert_eq!(statuses(&rows, "outcome"), ["failed"], "{rows:#?}");
    let outcome = rows
        .iter()
        .find(|r| r["kind"] == "outcome")
        .expect("an outcome");
    let reason = outcome["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("gave up after 3 attempts: "), "{reason}");
    // Two waits between the three attempts (0.5 s, then 1 s).
    assert!(started.elapsed() >= Duration::from_millis(1500));
}
