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
        eventually(Duration::from_secs(5), || sleeper
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let state = palisade::state::StateStore::open(&dir.path().join("data/palisade.db"))
            .await
            .expect("state");
        sqlx::query("UPDATE audit SET status = 'refused' WHERE seq = 2")
            .execute(state.pool())
            .await
            .expect("edit");
        state.close().await;
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
fn five_webhook_failures_switch_to_manual_and_an_approval_runs_the_queued_step() {
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
    assert!(
        eventually(Duration::from_secs(20), || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("switched to manual mode")),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 5);
    assert!(stdout(&palisade(&["mode"], dir.path())).starts_with("mode: manual"));

    // The next detection's steps wait for a person.
    let mut sleeper = target();
    writeln!(stdin, "{}", event(sleeper.id(), "sleep")).expect("write");
    let pending = || stdout(&palisade(&["approvals", "list"], dir.path()));
    assert!(
        eventually(Duration::from_secs(10), || pending()
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
        eventually(Duration::from_secs(10), || sleeper
            .try_wait()
            .ok()
            .flatten()
            .is_some()),
        "the approved kill did not run"
    );
    let all = stdout(&palisade(&["approvals", "list", "--all"], dir.path()));
    assert!(
        all.contains("executed") && all.contains("by operator:"),
        "{all}"
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
    std::fs::write(
        dir.path().join("rules/test_targets.rhai"),
        r#"let rule = #{ id: "test-target", title: "Test target", severity: "high", events: ["process_create"],
                        filter: #{ "cmdline|contains": ["palisade-test-target"] } };"#,
    )
    .expect("rule");
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
