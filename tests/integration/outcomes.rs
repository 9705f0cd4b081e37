//! What an alert says is what happened: every output of a step (console, state row, alert on
//! Redis, audit trail) is written from the executor's outcome. And each effect once: an event
//! delivered again is recognised and not decided, acted on or alerted a second time.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;

use crate::support::{RedisServer, eventually, scratch_content, terminate};

const ALERTS: &str = "palisade:alerts";

/// A content directory reading the `edr` stream of `server`, acting (dry-run off), with only
/// the given rules and playbooks (the shipped playbooks removed, so nothing else acts).
fn content(
    server: &RedisServer,
    rules: &[&str],
    playbooks: &[(&str, String)],
) -> tempfile::TempDir {
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!(
            "redis:\n  url: {}\nsource:\n  type: redis_stream\n  stream: edr\nactions:\n  dry_run: false\n  timeout: 20s\nhttp:\n  enabled: false\n",
            server.url()
        ),
    )
    .expect("config");
    for name in rules {
        std::fs::write(
            dir.path()
                .join(format!("rules/outcome_{}.rhai", name.replace('-', "_"))),
            rule(name),
        )
        .expect("rule");
    }
    let shipped = dir.path().join("playbooks");
    std::fs::remove_dir_all(&shipped).expect("remove shipped playbooks");
    std::fs::create_dir_all(&shipped).expect("playbooks dir");
    for (name, text) in playbooks {
        std::fs::write(shipped.join(format!("{name}.yaml")), text).expect("playbook");
    }
    dir
}

/// Rule `outcome-NAME`: it fires on a process whose command line holds `palisade-outcome-NAME`.
fn rule(name: &str) -> String {
    format!(
        r#"let rule = #{{ id: "outcome-{name}", title: "Outcome {name}", severity: "high", events: ["process_create"],
                        filter: #{{ "cmdline|contains": ["palisade-outcome-{name}"] }} }};
"#
    )
}

/// An event for rule `outcome-NAME`, with a PID no process has (above Linux's largest).
fn event(id: &str, name: &str) -> String {
    format!(
        r#"{{"type":"process_create","timestamp":"{}","id":"{id}","host":"ws-1","pid":4200001,"name":"sleep","cmdline":"sleep palisade-outcome-{name}"}}"#,
        jiff::Timestamp::now()
    )
}

fn xadd(server: &RedisServer, event: &str) {
    server
        .query(&["XADD", "edr", "*", "data", event])
        .expect("XADD");
}

/// `palisade run` in `dir` with its standard output (the console lines) kept in `dir/NAME.out`.
fn engine(dir: &Path, name: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("run")
        .current_dir(dir)
        .env("PALISADE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).expect("stdout file"))
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file"))
        .spawn()
        .expect("palisade runs")
}

/// SIGTERM, a clean exit, and the log.
fn stop(mut child: Child, dir: &Path, name: &str) -> String {
    terminate(&child);
    let status = child.wait().expect("wait");
    let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    assert!(status.success(), "the engine exited with {status}:\n{log}");
    log
}

fn sqlite(dir: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(dir.join("data/palisade.db"))
        .arg(sql)
        .output()
        .expect("sqlite3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Entries the group `palisade` read and has not acknowledged.
fn pending(server: &RedisServer) -> i64 {
    match server.query(&["XPENDING", "edr", "palisade"]) {
        Ok(redis::Value::Array(parts)) => match parts.first() {
            Some(redis::Value::Int(n)) => *n,
            _ => -1,
        },
        _ => -1,
    }
}

/// `(playbook, step) -> status` from `sep`-separated `playbook|step|status` rows.
fn statuses(rows: &str) -> BTreeMap<(String, String), String> {
    rows.lines()
        .filter_map(|line| {
            let mut parts = line.split('|');
            Some((
                (parts.next()?.to_string(), parts.next()?.to_string()),
                parts.next()?.to_string(),
            ))
        })
        .collect()
}

/// A receiver answering every POST with `status`; its URL and a hit counter.
fn receiver(status: StatusCode) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
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

/// Defect (issue 14, 1): the alert on `palisade:alerts` was built when the steps were planned,
/// so it said `"status":"planned"` for a step the executor then executed, refused or queued.
/// Each status the executor decides is now the same on the console, in the state row, in the
/// alert on Redis and in the audit trail.
#[test]
fn alerts_on_redis_said_planned_for_steps_the_executor_decided_otherwise() {
    let server = RedisServer::start();
    let (failing, _) = receiver(StatusCode::NOT_FOUND);
    let enforce = format!(
        "id: enforce\ntitle: Every status\ntrigger: {{rules: [outcome-enforce]}}\nsteps:
  - id: say
    action: notify.log
    with: {{message: \"said\"}}
  - id: no-address
    action: firewall.block
    with: {{address: \"{{{{ event.remote_ip }}}}\"}}
    on_failure: continue
  - id: hold
    action: process.kill
    with: {{pid: \"{{{{ event.pid }}}}\"}}
  - id: never
    action: notify.log
    when: 'false'
    with: {{message: \"never\"}}
  - id: tell
    action: notify.webhook
    with: {{url: \"{failing}\", message: \"hello\"}}
    on_failure: continue
"
    );
    let shadow =
        "id: shadow\ntitle: Shadow\nmode: shadow\ntrigger: {rules: [outcome-shadow]}\nsteps:
  - id: say
    action: notify.log
    with: {message: \"said\"}
"
        .to_string();
    let dir = content(
        &server,
        &["enforce", "shadow"],
        &[("enforce", enforce), ("shadow", shadow)],
    );
    xadd(&server, &event("o-1", "enforce"));
    xadd(&server, &event("o-2", "shadow"));
    let child = engine(dir.path(), "run");
    let ok = eventually(crate::support::PATIENCE, || {
        server.alerts(ALERTS).len() == 2 && pending(&server) == 0
    });
    let log = stop(child, dir.path(), "run");
    assert!(ok, "{log}");

    let expected: BTreeMap<(String, String), String> = [
        ("enforce", "say", "executed"),
        ("enforce", "no-address", "refused"),
        ("enforce", "hold", "queued"),
        ("enforce", "never", "skipped"),
        ("enforce", "tell", "failed"),
        ("shadow", "say", "dry_run"),
    ]
    .into_iter()
    .map(|(p, s, status)| ((p.to_string(), s.to_string()), status.to_string()))
    .collect();

    // The console: `-> ACTION TARGET (playbook P, step S) STATUS[: reason]`.
    let console = std::fs::read_to_string(dir.path().join("run.out")).expect("console");
    let shown = statuses(
        &console
            .lines()
            .filter_map(|line| {
                let (_, rest) = line.split_once("(playbook ")?;
                let (playbook, rest) = rest.split_once(", step ")?;
                let (step, rest) = rest.split_once(") ")?;
                let status = rest.split(':').next()?;
                Some(format!("{playbook}|{step}|{status}"))
            })
            .collect::<Vec<_>>()
            .join("\n"),
    );
    assert_eq!(shown, expected, "console:\n{console}");

    // The state rows.
    let stored = statuses(&sqlite(
        dir.path(),
        "SELECT playbook, step, status FROM actions;",
    ));
    assert_eq!(stored, expected, "state rows");

    // The alerts on Redis: each step as the executor left it, and the detection's key.
    let alerts = server.alerts(ALERTS);
    let mut published = BTreeMap::new();
    for alert in &alerts {
        for action in alert["actions"].as_array().cloned().unwrap_or_default() {
            published.insert(
                (
                    action["playbook"].as_str().unwrap_or_default().to_string(),
                    action["step"].as_str().unwrap_or_default().to_string(),
                ),
                action["status"].as_str().unwrap_or_default().to_string(),
            );
        }
    }
    assert_eq!(published, expected, "alerts: {alerts:?}");
    for alert in &alerts {
        let key = format!(
            "{}@{}",
            alert["rule"].as_str().unwrap_or_default(),
            alert["event_id"].as_str().unwrap_or_default()
        );
        assert_eq!(alert["alert_id"], key.as_str(), "{alert}");
    }

    // The audit trail: the last word on each step.
    let audited = statuses(&sqlite(
        dir.path(),
        "SELECT playbook, step, status FROM audit WHERE step IS NOT NULL AND kind IN ('decision', 'outcome') ORDER BY seq;",
    ));
    assert_eq!(audited, expected, "audit");
}

/// Defect (issue 14, 2): a stream entry delivered again (a crash before the acknowledgement, a
/// claim by another engine, a Redis restart) was decided again: a second detection row, a
/// second action, a second alert and a second webhook call. Delivered twice, it now yields one
/// of each, and the redelivery is recognised in the log.
#[test]
fn a_stream_entry_delivered_twice_repeated_its_effects() {
    let server = RedisServer::start();
    let (url, hits) = receiver(StatusCode::OK);
    let playbook = format!(
        "id: tell\ntitle: Tell\ntrigger: {{rules: [outcome-once]}}\nsteps:
  - id: tell
    action: notify.webhook
    with: {{url: \"{url}\", message: \"hello\"}}
"
    );
    let dir = content(&server, &["once"], &[("tell", playbook)]);
    xadd(&server, &event("once-1", "once"));
    let child = engine(dir.path(), "first");
    let ok = eventually(crate::support::PATIENCE, || {
        server.alerts(ALERTS).len() == 1 && pending(&server) == 0
    });
    let log = stop(child, dir.path(), "first");
    assert!(ok, "{log}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);

    // The group forgets it read the entry: the next engine is handed it again.
    server
        .query(&["XGROUP", "SETID", "edr", "palisade", "0"])
        .expect("XGROUP SETID");
    let child = engine(dir.path(), "second");
    // Handled again: recognised (or, as before, a second alert).
    let handled = eventually(crate::support::PATIENCE, || {
        let log = std::fs::read_to_string(dir.path().join("second.log")).unwrap_or_default();
        (log.contains("recognised detections of redelivered events")
            || server.alerts(ALERTS).len() > 1)
            && pending(&server) == 0
    });
    let log = stop(child, dir.path(), "second");
    assert!(handled, "{log}");
    assert!(log.contains("events=1"), "{log}");

    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one webhook call"
    );
    assert_eq!(server.alerts(ALERTS).len(), 1, "one alert");
    assert!(
        log.contains("recognised detections of redelivered events"),
        "{log}"
    );
    assert_eq!(sqlite(dir.path(), "SELECT COUNT(*) FROM detections;"), "1");
    assert_eq!(
        sqlite(dir.path(), "SELECT step || ' ' || status FROM actions;"),
        "tell executed"
    );
    assert_eq!(
        sqlite(
            dir.path(),
            "SELECT COUNT(*) FROM audit WHERE step = 'tell' AND kind = 'outcome';"
        ),
        "1"
    );
}

/// The outbox is durable: alerts that Redis could not take before the engine stopped (it was
/// down) stay in the state file, unpublished, and the next start publishes them, once each and
/// in the order they were stored.
#[test]
fn alerts_owed_while_redis_was_down_are_published_after_a_restart() {
    let mut server = RedisServer::start();
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!(
            "redis:\n  url: {}\nalerts:\n  enabled: true\nhttp:\n  enabled: false\n",
            server.url()
        ),
    )
    .expect("config");
    std::fs::write(
        dir.path().join("events.jsonl"),
        crate::support::office_events(0, 3),
    )
    .expect("events");
    std::fs::write(dir.path().join("nothing.jsonl"), "").expect("events");
    server.stop();

    let out = crate::support::palisade(&["run", "--events", "events.jsonl"], dir.path());
    crate::support::assert_success(&out);
    assert_eq!(
        sqlite(
            dir.path(),
            "SELECT COUNT(*) FROM alert_outbox WHERE published_at IS NULL;"
        ),
        "3",
        "{}",
        crate::support::stderr(&out)
    );

    server.resume();
    let out = crate::support::palisade(&["run", "--events", "nothing.jsonl"], dir.path());
    crate::support::assert_success(&out);
    let events: Vec<String> = server
        .alerts(ALERTS)
        .iter()
        .map(|a| a["event_id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(events, ["ev-0", "ev-1", "ev-2"]);
    assert_eq!(
        sqlite(
            dir.path(),
            "SELECT COUNT(*) FROM alert_outbox WHERE published_at IS NULL;"
        ),
        "0"
    );
}
