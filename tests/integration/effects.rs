//! The effects pool against a real webhook receiver that hangs, with the engine reading a real
//! Redis stream: events keep flowing, the outcome is recorded when it comes, and a stop is
//! bounded and records what it abandoned.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::{
    EngineProcess, RedisServer, assert_success, eventually, office_events, palisade, redis_content,
    stdout, terminate,
};

/// A receiver that takes every POST and never answers; counts the requests that came.
fn hanging_receiver() -> (String, Arc<AtomicUsize>) {
    let came = Arc::new(AtomicUsize::new(0));
    let counted = came.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(3600)).await;
                axum::http::StatusCode::OK
            }
        }),
    );
    let address = crate::support::serve_http(app);
    (format!("http://{address}/hook"), came)
}

/// Content reading stream `edr` that acts, whose only playbook posts each Office-macro
/// detection to `url`; `effects` is the YAML under `actions.effects`.
fn content(server: &RedisServer, url: &str, effects: &str) -> tempfile::TempDir {
    let dir = redis_content(server, "  type: redis_stream\n  stream: edr\n");
    let config = std::fs::read_to_string(dir.path().join("palisade.yaml")).expect("config");
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!(
            "{config}actions:\n  dry_run: false\n  cooldown: \"off\"\n  webhook:\n    read_timeout: 120s\n  effects:\n{effects}http:\n  enabled: false\n"
        ),
    )
    .expect("config");
    for entry in std::fs::read_dir(dir.path().join("playbooks")).expect("playbooks") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::remove_file(path).expect("remove");
        }
    }
    std::fs::write(
        dir.path().join("playbooks/tell.yaml"),
        format!(
            "id: tell\ntitle: Tell\ntrigger: {{rules: [office-spawns-shell]}}\nsteps:\n  - id: tell\n    action: notify.webhook\n    with: {{url: \"{url}\", message: \"seen\"}}\n    on_failure: continue\n"
        ),
    )
    .expect("playbook");
    dir
}

fn publish(dir: &std::path::Path, file: &str, events: &str) {
    std::fs::write(dir.join(file), events).expect("events file");
    assert_success(&palisade(&["publish", "--events", file], dir));
}

/// Events on `edr` that no rule detects.
fn quiet_events(count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                r#"{{"type":"process_create","timestamp":"2025-11-03T14:30:10Z","id":"quiet-{i}","host":"ws-1","pid":{},"name":"notepad.exe","parent_name":"explorer.exe","cmdline":"notepad.exe"}}"#,
                5000 + i
            ) + "\n"
        })
        .collect()
}

/// Entries of `edr` the group has read and acknowledged (those still pending subtracted).
fn acknowledged(server: &RedisServer) -> i64 {
    let read = match server.query(&["XINFO", "GROUPS", "edr"]) {
        Ok(redis::Value::Array(groups)) => groups
            .iter()
            .find_map(|group| match group {
                redis::Value::Array(fields) => fields
                    .chunks(2)
                    .find(|pair| {
                        matches!(&pair[0], redis::Value::BulkString(name) if name == b"entries-read")
                    })
                    .and_then(|pair| match pair.get(1) {
                        Some(redis::Value::Int(n)) => Some(*n),
                        _ => None,
                    }),
                _ => None,
            })
            .unwrap_or(0),
        _ => 0,
    };
    let pending = match server.query(&["XPENDING", "edr", "palisade"]) {
        Ok(redis::Value::Array(parts)) => match parts.first() {
            Some(redis::Value::Int(n)) => *n,
            _ => 0,
        },
        _ => 0,
    };
    read - pending
}

/// The `tell` step's stored (status, reason), read with the sqlite3 program.
fn tell_row(dir: &std::path::Path) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(dir.join("data/palisade.db"))
        .arg("SELECT status || ' | ' || COALESCE(reason, '') FROM actions WHERE step = 'tell';")
        .output()
        .expect("sqlite3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Defect (issue 15.5): a webhook receiver that hangs stopped event processing, because the
/// step ran in the committing task. Now, while the receiver holds the request, every other
/// event is read, stored and acknowledged; the step's time limit ends it as `failed`.
#[test]
fn events_keep_flowing_while_a_webhook_receiver_hangs() {
    let server = RedisServer::start();
    let (url, came) = hanging_receiver();
    let dir = content(&server, &url, "    time_limits: {notify: 15s}\n");
    let engine = EngineProcess::start(dir.path(), "hang");
    engine.wait_for_log("reading the stream");
    publish(dir.path(), "one.jsonl", &office_events(0, 1));
    assert!(
        eventually(Duration::from_secs(20), || came.load(Ordering::SeqCst) == 1),
        "{}",
        engine.log()
    );
    let hang_started = Instant::now();
    publish(dir.path(), "quiet.jsonl", &quiet_events(2000));
    assert!(
        eventually(Duration::from_secs(20), || acknowledged(&server) == 2001),
        "acknowledged {} of 2001:\n{}",
        acknowledged(&server),
        engine.log()
    );
    let during_hang = hang_started.elapsed();
    // Every event was committed while the receiver still held the request.
    assert!(
        during_hang < Duration::from_secs(15),
        "the events took {during_hang:?}"
    );
    assert!(
        tell_row(dir.path()).starts_with("dispatched |"),
        "{}",
        tell_row(dir.path())
    );
    assert!(
        eventually(Duration::from_secs(30), || tell_row(dir.path())
            .starts_with("failed |")),
        "{}",
        tell_row(dir.path())
    );
    assert_eq!(tell_row(dir.path()), "failed | timed out after 15s");
    let log = engine.stop();
    let trail = stdout(&palisade(&["audit", "tail", "-n", "20"], dir.path()));
    assert!(
        trail.contains("status=dispatched") && trail.contains("timed out after 15s"),
        "{trail}\n{log}"
    );
}

/// Defect (issue 15.5): SIGTERM waited on a hanging receiver. Now a stop waits
/// `actions.effects.shutdown_wait` for the pool, then records the step as `abandoned`.
#[test]
fn a_stop_with_a_hanging_receiver_is_bounded_and_records_the_abandoned_step() {
    let server = RedisServer::start();
    let (url, came) = hanging_receiver();
    let dir = content(
        &server,
        &url,
        "    time_limits: {notify: 120s}\n    shutdown_wait: 2s\n",
    );
    let mut engine = EngineProcess::start(dir.path(), "stop");
    engine.wait_for_log("reading the stream");
    publish(dir.path(), "one.jsonl", &office_events(0, 1));
    assert!(
        eventually(Duration::from_secs(20), || came.load(Ordering::SeqCst) == 1),
        "{}",
        engine.log()
    );
    assert!(eventually(Duration::from_secs(10), || tell_row(dir.path())
        .starts_with("dispatched |")));
    let stopping = Instant::now();
    terminate(&engine.child);
    let status = engine.child.wait().expect("wait");
    let took = stopping.elapsed();
    let log = engine.log();
    assert!(status.success(), "{status}:\n{log}");
    // The 2 s wait, and the rest of a stop, well within the 30 s a hanging act used to hold it.
    assert!(
        took < Duration::from_secs(8),
        "the stop took {took:?}:\n{log}"
    );
    assert!(took >= Duration::from_secs(2), "the stop took {took:?}");
    let row = tell_row(dir.path());
    assert!(
        row.starts_with("abandoned | abandoned at shutdown: no outcome within `actions.effects.shutdown_wait` (2s)"),
        "{row}"
    );
    let trail = stdout(&palisade(&["audit", "tail", "-n", "20"], dir.path()));
    assert!(
        trail.contains("abandoned") && trail.contains("step=tell"),
        "{trail}"
    );
    assert!(log.contains("abandoned at shutdown"), "{log}");
}

/// Alerts on the alerts stream for event `event_id`.
fn alerts_for(server: &RedisServer, event_id: &str) -> Vec<serde_json::Value> {
    server
        .alerts("palisade:alerts")
        .into_iter()
        .filter(|alert| alert["event_id"] == event_id)
        .collect()
}

/// Defect (issue 14): a crash while a step is in the effects pool left it `dispatched` forever
/// and its alert unwritten. The engine is SIGKILLed while a real receiver holds the webhook
/// request; the restarted engine (same consumer name) records the step `abandoned`, audits
/// that outcome, and writes the detection's alert once, saying so. The step is not sent again.
#[test]
fn a_crash_while_a_step_is_in_the_effects_pool_leaves_it_dispatched_forever_and_its_alert_unwritten()
 {
    let server = RedisServer::start();
    let (url, came) = hanging_receiver();
    let dir = content(&server, &url, "    time_limits: {notify: 120s}\n");
    // A consumer name of its own: the restart is the same engine, so it may take the rows.
    let config = std::fs::read_to_string(dir.path().join("palisade.yaml")).expect("config");
    std::fs::write(
        dir.path().join("palisade.yaml"),
        config.replace("  stream: edr\n", "  stream: edr\n  consumer: orphans\n"),
    )
    .expect("config");
    let engine = EngineProcess::start(dir.path(), "first");
    engine.wait_for_log("reading the stream");
    publish(dir.path(), "one.jsonl", &office_events(0, 1));
    assert!(
        eventually(Duration::from_secs(20), || came.load(Ordering::SeqCst) == 1),
        "{}",
        engine.log()
    );
    assert!(
        eventually(Duration::from_secs(10), || acknowledged(&server) == 1),
        "{}",
        engine.log()
    );
    assert!(
        tell_row(dir.path()).starts_with("dispatched |"),
        "{}",
        tell_row(dir.path())
    );
    engine.kill();
    // The killed engine wrote no outcome and no alert.
    assert!(tell_row(dir.path()).starts_with("dispatched |"));
    assert!(alerts_for(&server, "ev-0").is_empty());

    let engine = EngineProcess::start(dir.path(), "second");
    engine.wait_for_log("reading the stream");
    let row = tell_row(dir.path());
    assert!(
        row.starts_with("abandoned | abandoned after a crash"),
        "{row}\n{}",
        engine.log()
    );
    assert!(
        engine
            .log()
            .contains("settled steps an earlier run left in the effects pool as abandoned"),
        "{}",
        engine.log()
    );
    assert!(
        eventually(Duration::from_secs(10), || !alerts_for(&server, "ev-0")
            .is_empty()),
        "{}",
        engine.log()
    );
    // Give a second copy time to appear, if one were to.
    std::thread::sleep(Duration::from_secs(2));
    let log = engine.stop();
    let alerts = alerts_for(&server, "ev-0");
    assert_eq!(alerts.len(), 1, "{alerts:?}\n{log}");
    let step = &alerts[0]["actions"][0];
    assert_eq!(step["step"], "tell", "{alerts:?}");
    assert_eq!(step["status"], "abandoned", "{alerts:?}");
    assert_eq!(alerts[0]["alert_id"], "office-spawns-shell@ev-0");
    // Never sent again: one request reached the receiver in all.
    assert_eq!(came.load(Ordering::SeqCst), 1);
    let trail = stdout(&palisade(&["audit", "tail", "-n", "20"], dir.path()));
    assert!(
        trail.contains("status=dispatched")
            && trail.contains("abandoned after a crash")
            && trail.contains("step=tell"),
        "{trail}"
    );
    assert!(
        stdout(&palisade(&["audit", "verify"], dir.path())).contains("intact"),
        "the trail's chain"
    );
}

/// Defect (issue 14), the other side: settling a crashed run's steps must not take a step that
/// another engine sharing the state file still holds in its pool. Engine `a` holds a webhook
/// request open; engine `b` starts on the same state file and leaves the row alone; `a` then
/// records the real outcome (its time limit), and no one records it `abandoned`.
#[test]
fn a_start_beside_a_running_engine_does_not_abandon_the_steps_in_its_pool() {
    let server = RedisServer::start();
    let (url, came) = hanging_receiver();
    let dir = content(&server, &url, "    time_limits: {notify: 8s}\n");
    let config = std::fs::read_to_string(dir.path().join("palisade.yaml")).expect("config");
    let named = |name: &str| {
        config.replace(
            "  stream: edr\n",
            &format!("  stream: edr\n  consumer: {name}\n"),
        )
    };
    std::fs::write(dir.path().join("palisade.yaml"), named("a")).expect("config");
    let first = EngineProcess::start(dir.path(), "a");
    first.wait_for_log("reading the stream");
    publish(dir.path(), "one.jsonl", &office_events(0, 1));
    assert!(
        eventually(Duration::from_secs(20), || came.load(Ordering::SeqCst) == 1),
        "{}",
        first.log()
    );
    assert!(eventually(Duration::from_secs(10), || tell_row(dir.path())
        .starts_with("dispatched |")));
    std::fs::write(dir.path().join("palisade.yaml"), named("b")).expect("config");
    let second = EngineProcess::start(dir.path(), "b");
    second.wait_for_log("reading the stream");
    assert!(
        tell_row(dir.path()).starts_with("dispatched |"),
        "{}\n{}",
        tell_row(dir.path()),
        second.log()
    );
    assert!(second.log().contains("left to it"), "{}", second.log());
    assert!(
        eventually(Duration::from_secs(20), || tell_row(dir.path())
            .starts_with("failed |")),
        "{}\n{}",
        tell_row(dir.path()),
        first.log()
    );
    assert_eq!(tell_row(dir.path()), "failed | timed out after 8s");
    assert!(
        eventually(Duration::from_secs(10), || !alerts_for(&server, "ev-0")
            .is_empty()),
        "{}",
        first.log()
    );
    second.stop();
    first.stop();
    let alerts = alerts_for(&server, "ev-0");
    assert!(
        alerts
            .iter()
            .all(|alert| alert["actions"][0]["status"] == "failed"),
        "{alerts:?}"
    );
    let trail = stdout(&palisade(&["audit", "tail", "-n", "20"], dir.path()));
    assert!(!trail.contains("abandoned"), "{trail}");
    assert_eq!(came.load(Ordering::SeqCst), 1);
}
