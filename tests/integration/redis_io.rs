//! Redis as the event bus: streams with consumer groups, the seeds' pub/sub channels, alerts,
//! restarts of the engine and of Redis, and two engines sharing a stream.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    EngineProcess, RedisServer, assert_success, eventually, office_events, palisade, redis_content,
};

const ALERTS: &str = "palisade:alerts";

fn stream_source(stream: &str, extra: &str) -> String {
    format!("  type: redis_stream\n  stream: {stream}\n  claim_idle_ms: 2000\n{extra}")
}

fn publish(dir: &std::path::Path, file: &str, events: &str, target: &[&str]) {
    std::fs::write(dir.join(file), events).expect("events file");
    let mut args = vec!["publish", "--events", file];
    args.extend_from_slice(target);
    let out = palisade(&args, dir);
    assert_success(&out);
}

/// Event ids of the alerts, with how many alerts each got.
fn alert_counts(server: &RedisServer) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for alert in server.alerts(ALERTS) {
        *counts
            .entry(alert["event_id"].as_str().unwrap_or_default().to_string())
            .or_insert(0) += 1;
    }
    counts
}

/// What seed 002's sensor publishes for Word starting PowerShell.
const SEED_WORD_STARTS_POWERSHELL: &str = r#"{"type":"process_create","timestamp":"2025-11-03T14:30:05Z","host":"ws-17","pid":5120,"ppid":4100,"name":"powershell.exe","parent_name":"winword.exe","cmdline":"powershell.exe -nop -w hidden"}"#;

/// An engine reading the seeds' `internal_logs` channel, subscribed.
fn channel_engine(server: &RedisServer, name: &str) -> (tempfile::TempDir, EngineProcess) {
    let dir = redis_content(server, "  type: redis_channel\n");
    let engine = EngineProcess::start(dir.path(), name);
    engine.wait_for_log("subscribed");
    (dir, engine)
}

/// Subscribes `connection` to `channel`; a read waits up to 20 s.
fn listen<'a>(connection: &'a mut redis::Connection, channel: &str) -> redis::PubSub<'a> {
    let mut pubsub = connection.as_pubsub();
    pubsub.subscribe(channel).expect("subscribe");
    pubsub
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    pubsub
}

/// The dead-letter stream's entries, each as its list of field names and values (none when
/// the stream does not exist).
fn dead_letters(server: &RedisServer) -> Vec<Vec<Vec<u8>>> {
    let Ok(redis::Value::Array(entries)) =
        server.query(&["XRANGE", "palisade:events:dead", "-", "+"])
    else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|entry| match entry {
            redis::Value::Array(parts) => match parts.get(1) {
                Some(redis::Value::Array(fields)) => fields
                    .iter()
                    .map(|f| match f {
                        redis::Value::BulkString(b) => b.clone(),
                        other => format!("{other:?}").into_bytes(),
                    })
                    .collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        })
        .collect()
}

/// The value of field `name` in a dead-letter entry's fields (empty when absent).
fn field(fields: &[Vec<u8>], name: &str) -> Vec<u8> {
    fields
        .iter()
        .position(|f| f == name.as_bytes())
        .and_then(|i| fields.get(i + 1))
        .cloned()
        .unwrap_or_default()
}

/// Runs an engine until one alert is out and the `edr` stream has nothing pending; its log.
fn run_until_one_alert_and_drained(server: &RedisServer, dir: &std::path::Path) -> String {
    let engine = EngineProcess::start(dir, "a");
    assert!(
        eventually(crate::support::PATIENCE, || server.alerts(ALERTS).len()
            == 1),
        "{}",
        engine.log()
    );
    assert!(eventually(crate::support::PATIENCE, || group_pending(
        server, "edr"
    ) == 0));
    engine.stop()
}

fn group_pending(server: &RedisServer, stream: &str) -> i64 {
    match server.query(&["XPENDING", stream, "palisade"]) {
        Ok(redis::Value::Array(parts)) => match parts.first() {
            Some(redis::Value::Int(n)) => *n,
            _ => -1,
        },
        _ => -1,
    }
}

#[test]
fn a_stream_is_consumed_and_acknowledged_after_handling() {
    let server = RedisServer::start();
    let dir = redis_content(&server, &stream_source("edr", ""));
    publish(
        dir.path(),
        "mixed.jsonl",
        &std::fs::read_to_string(crate::support::repo().join("tests/fixtures/mixed.jsonl"))
            .expect("fixture"),
        &[],
    );
    publish(dir.path(), "bad.jsonl", "this is not json\n", &[]);
    let engine = EngineProcess::start(dir.path(), "a");
    assert!(
        eventually(crate::support::PATIENCE, || server.alerts(ALERTS).len()
            == 4),
        "{}",
        engine.log()
    );
    assert!(eventually(crate::support::PATIENCE, || group_pending(
        &server, "edr"
    ) == 0));
    let log = engine.stop();
    assert!(log.contains("events=10 rejected=1 detections=4"), "{log}");

    // Alerts carry what responders need, the seed's fields included.
    let alerts = server.alerts(ALERTS);
    let office = alerts
        .iter()
        .find(|a| a["rule"] == "office-spawns-shell")
        .expect("office alert");
    assert_eq!(office["actionable_pid"], 4242);
    assert_eq!(office["level"], "HIGH");
    assert_eq!(office["actions"][0]["step"], "kill-child");
    // The rejected entry went to the dead-letter stream with its reason, and was acknowledged.
    let Ok(redis::Value::Array(dead)) = server.query(&["XRANGE", "palisade:events:dead", "-", "+"])
    else {
        panic!("no dead-letter stream");
    };
    assert_eq!(dead.len(), 1);
    assert!(format!("{dead:?}").contains("not_json"), "{dead:?}");
}

/// Defect: an entry without a `data` field was dead-lettered as "not JSON" with another field's
/// value. It is rejected as having no `data` field, naming the fields it has, and the
/// dead-letter stream keeps all of them.
#[test]
fn a_stream_entry_without_data_is_dead_lettered_as_having_no_data_field() {
    let server = RedisServer::start();
    let dir = redis_content(&server, &stream_source("edr", ""));
    let event = crate::support::office_events(0, 1);
    server
        .query(&[
            "XADD",
            "edr",
            "*",
            "sensor",
            "ws-7",
            "payload",
            event.trim(),
        ])
        .expect("XADD without data");
    server
        .query(&["XADD", "edr", "*", "data", event.trim()])
        .expect("XADD with data");
    let log = run_until_one_alert_and_drained(&server, dir.path());
    assert!(log.contains("events=1 rejected=1"), "{log}");
    let dead = dead_letters(&server);
    assert_eq!(dead.len(), 1);
    let text = format!("{dead:?}");
    let field = |name: &str| String::from_utf8_lossy(&field(&dead[0], name)).into_owned();
    assert_eq!(field("kind"), "missing_field", "{text}");
    assert_eq!(
        field("reason"),
        "entry has no `data` field (its fields: `sensor`, `payload`)",
        "{text}"
    );
    // What the entry held is kept, every field of it.
    let kept: Value = serde_json::from_str(&field("data")).expect("kept as JSON");
    assert_eq!(kept["sensor"], "ws-7");
    assert_eq!(kept["payload"], event.trim());
}

#[test]
fn a_restarted_engine_resumes_with_no_loss_and_no_duplicates() {
    let server = RedisServer::start();
    let dir = redis_content(&server, &stream_source("edr", "  batch_size: 50\n"));
    publish(dir.path(), "first.jsonl", &office_events(0, 300), &[]);
    let engine = EngineProcess::start(dir.path(), "first");
    assert!(
        eventually(crate::support::PATIENCE, || alert_counts(&server).len()
            == 300),
        "{}",
        engine.log()
    );
    engine.stop();
    // Events arrive while no engine runs; the stream keeps them.
    publish(dir.path(), "second.jsonl", &office_events(300, 300), &[]);
    let engine = EngineProcess::start(dir.path(), "second");
    assert!(
        eventually(crate::support::PATIENCE, || alert_counts(&server).len()
            == 600),
        "{}",
        engine.log()
    );
    engine.stop();
    let counts = alert_counts(&server);
    assert_eq!(counts.len(), 600, "every event handled");
    assert!(counts.values().all(|n| *n == 1), "no event handled twice");
    assert_eq!(group_pending(&server, "edr"), 0);
}

#[test]
fn two_engines_share_a_stream_and_one_killed_loses_nothing() {
    let server = RedisServer::start();
    let source = stream_source("edr", "  batch_size: 25\n");
    let (dir_a, dir_b) = (
        redis_content(&server, &source),
        redis_content(&server, &source),
    );
    let a = EngineProcess::start(dir_a.path(), "a");
    let b = EngineProcess::start(dir_b.path(), "b");
    a.wait_for_log("reading the stream");
    b.wait_for_log("reading the stream");

    // Normal operation: each entry is handled once, and both engines take a share.
    publish(dir_a.path(), "first.jsonl", &office_events(0, 1000), &[]);
    assert!(eventually(crate::support::PATIENCE, || alert_counts(
        &server
    )
    .len()
        == 1000));
    assert!(eventually(crate::support::PATIENCE, || group_pending(
        &server, "edr"
    ) == 0));
    let counts = alert_counts(&server);
    assert!(
        counts.values().all(|n| *n == 1),
        "an entry was handled twice in normal operation"
    );
    let consumers = format!(
        "{:?}",
        server.query(&["XINFO", "CONSUMERS", "edr", "palisade"])
    );
    assert_eq!(consumers.matches("\"name\"").count(), 2, "{consumers}");

    // One engine is killed mid-stream: the other claims what it left pending.
    publish(
        dir_a.path(),
        "second.jsonl",
        &office_events(1000, 3000),
        &[],
    );
    assert!(eventually(crate::support::PATIENCE, || alert_counts(
        &server
    )
    .len()
        >= 1300));
    a.kill();
    // What `a` acknowledged had its alerts in its outbox, durable in its state file; they go
    // out when it is started again, as a supervisor would. The rest, `b` claims and handles.
    b.wait_for_log("claimed entries another consumer left unacknowledged");
    let restarted = EngineProcess::start(dir_a.path(), "a-again");
    let handled = eventually(Duration::from_secs(90), || {
        alert_counts(&server).len() == 4000
    });
    restarted.stop();
    let counts = alert_counts(&server);
    let missing: Vec<String> = (0..4000)
        .map(|i| format!("ev-{i}"))
        .filter(|id| !counts.contains_key(id))
        .collect();
    assert!(
        handled && missing.is_empty(),
        "{} events lost, e.g. {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(5)],
        b.log()
    );
    assert!(eventually(crate::support::PATIENCE, || group_pending(
        &server, "edr"
    ) == 0));
    let log = b.stop();
    assert!(
        log.contains("claimed entries another consumer left unacknowledged"),
        "{log}"
    );
}

#[test]
fn a_seed_message_on_internal_logs_becomes_an_alert_on_high_severity_alerts() {
    let server = RedisServer::start();
    let (dir, engine) = channel_engine(&server, "channel");
    // Listen where the seeds' responder listens.
    let mut subscriber = server.connection();
    let mut pubsub = listen(&mut subscriber, "high_severity_alerts");

    publish(
        dir.path(),
        "seed.jsonl",
        &format!("{SEED_WORD_STARTS_POWERSHELL}\n"),
        &["--channel", "internal_logs"],
    );
    let message = pubsub.get_message().expect("an alert arrives");
    let alert: Value = serde_json::from_slice(message.get_payload_bytes()).expect("JSON alert");
    assert_eq!(alert["rule"], "office-spawns-shell");
    assert_eq!(alert["actionable_pid"], 5120);
    assert_eq!(alert["host"], "ws-17");
    drop(pubsub);
    engine.stop();
}

#[test]
fn the_engine_recovers_by_itself_when_redis_restarts() {
    let mut server = RedisServer::start();
    let dir = redis_content(&server, &stream_source("edr", ""));
    let engine = EngineProcess::start(dir.path(), "restart");
    publish(dir.path(), "first.jsonl", &office_events(0, 100), &[]);
    assert!(
        eventually(crate::support::PATIENCE, || alert_counts(&server).len()
            == 100),
        "{}",
        engine.log()
    );

    server.stop();
    engine.wait_for_log("Redis is unreachable");
    std::thread::sleep(Duration::from_millis(700));
    server.resume();
    publish(dir.path(), "second.jsonl", &office_events(100, 100), &[]);
    assert!(
        eventually(crate::support::PATIENCE, || alert_counts(&server).len()
            == 200),
        "{}",
        engine.log()
    );
    let counts = alert_counts(&server);
    let distinct: HashSet<&String> = counts.keys().collect();
    assert_eq!(distinct.len(), 200);
    let log = engine.stop();
    assert!(log.matches("connected to Redis").count() >= 2, "{log}");
}

/// A Redis that refuses writes (memory full, `noeviction`) but still takes `PUBLISH`: the alert
/// goes out on the channel once, not once per retry, and reaches the stream once memory is
/// free again; the refusal is one warning, not one a retry.
#[test]
fn a_redis_refusing_writes_gets_each_alert_published_once_and_appended_when_it_recovers() {
    let server = RedisServer::start();
    let (dir, engine) = channel_engine(&server, "oom");
    let mut subscriber = server.connection();
    let mut pubsub = listen(&mut subscriber, "high_severity_alerts");

    server
        .query(&["CONFIG", "SET", "maxmemory-policy", "noeviction"])
        .expect("policy");
    server
        .query(&["CONFIG", "SET", "maxmemory", "1"])
        .expect("memory full");
    assert!(
        server
            .query(&["XADD", "probe", "*", "f", "v"])
            .is_err_and(|e| e.to_string().contains("OOM")),
        "the server must refuse writes for this test to mean anything"
    );
    publish(
        dir.path(),
        "seed.jsonl",
        &format!("{SEED_WORD_STARTS_POWERSHELL}\n"),
        &["--channel", "internal_logs"],
    );
    let first = pubsub.get_message().expect("the alert is published");
    assert!(first.get_payload_bytes().starts_with(b"{"));
    // Retries while memory stays full publish nothing again.
    pubsub
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    assert!(
        pubsub.get_message().is_err(),
        "the alert was published again while its append was refused"
    );
    assert!(server.alerts(ALERTS).is_empty());

    server
        .query(&["CONFIG", "SET", "maxmemory", "0"])
        .expect("memory free");
    assert!(
        eventually(crate::support::PATIENCE, || server.alerts(ALERTS).len()
            == 1),
        "{}",
        engine.log()
    );
    pubsub
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    assert!(pubsub.get_message().is_err(), "published once only");
    drop(pubsub);
    let log = engine.stop();
    assert_eq!(
        log.matches("Redis refuses the command").count(),
        1,
        "one warning an episode:\n{log}"
    );
    assert!(
        log.contains("Redis accepts the commands it refused again"),
        "{log}"
    );
    assert_eq!(server.alerts(ALERTS).len(), 1);
}

/// An entry far over the event size limit is rejected as oversize, and the dead-letter stream
/// keeps a bounded excerpt of it with its whole size, not a second copy.
#[test]
fn a_huge_stream_entry_is_dead_lettered_as_an_excerpt_with_its_size() {
    let server = RedisServer::start();
    let dir = redis_content(&server, &stream_source("edr", ""));
    let huge = format!(
        "{{\"type\":\"process_create\",\"cmdline\":\"{}\"}}",
        "A".repeat(20 << 20)
    );
    server
        .query(&["XADD", "edr", "*", "data", &huge])
        .expect("XADD the huge entry");
    let event = crate::support::office_events(0, 1);
    server
        .query(&["XADD", "edr", "*", "data", event.trim()])
        .expect("XADD a good one");
    let log = run_until_one_alert_and_drained(&server, dir.path());
    assert!(log.len() < 64 * 1024, "the entry is not logged whole");
    let dead = dead_letters(&server);
    assert_eq!(dead.len(), 1);
    let field = |name: &str| field(&dead[0], name);
    assert_eq!(field("kind"), b"oversize");
    assert_eq!(field("size"), huge.len().to_string().into_bytes());
    assert_eq!(
        field("data"),
        huge.as_bytes()[..palisade::sources::redis_stream::DEAD_LETTER_EXCERPT_BYTES].to_vec()
    );
}
