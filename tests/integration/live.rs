//! Live operation: the health, readiness and Prometheus endpoints of a running engine.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use crate::support::{
    EngineProcess, RedisServer, assert_success, eventually, office_events, palisade, redis_content,
};

/// `GET path` over plain HTTP/1.1; returns (status, body).
fn get(address: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Prometheus text: every sample as `name{labels}` (as written) to its value. Comment lines
/// must be HELP or TYPE; every other line must be a sample with a number.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(
                comment.starts_with("HELP ") || comment.starts_with("TYPE "),
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = value.parse().expect("a sample's value is a number");
        let name_end = series.find('{').unwrap_or(series.len());
        assert!(
            series[..name_end]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        samples.insert(series.to_string(), value);
    }
    samples
}

/// A content directory reading `stream` from `server`, its endpoints on a free port.
fn stream_content(server: &RedisServer, stream: &str) -> tempfile::TempDir {
    let dir = redis_content(
        server,
        &format!("  type: redis_stream\n  stream: {stream}\n"),
    );
    let config = dir.path().join("palisade.yaml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("http:\n  listen: 127.0.0.1:0\n");
    std::fs::write(&config, text).expect("config");
    dir
}

/// The address an engine logged for its endpoints, once it has.
fn endpoint(engine: &EngineProcess) -> String {
    engine.wait_for_log("serving /healthz, /readyz and /metrics on http://");
    engine
        .log()
        .split("on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the address is logged")
        .to_string()
}

#[test]
fn metrics_count_exactly_the_events_sent() {
    let server = RedisServer::start();
    let dir = stream_content(&server, "live");
    let engine = EngineProcess::start(dir.path(), "live");
    let address = endpoint(&engine);
    assert!(
        eventually(crate::support::PATIENCE, || get(&address, "/readyz").0
            == 200),
        "never ready"
    );

    let sent = 300;
    std::fs::write(dir.path().join("events.jsonl"), office_events(0, sent)).expect("events");
    std::fs::write(
        dir.path().join("junk.jsonl"),
        "not json\n{\"type\":\"nope\"}\n",
    )
    .expect("junk");
    for file in ["events.jsonl", "junk.jsonl"] {
        assert_success(&palisade(
            &["publish", "--events", file, "--stream", "live"],
            dir.path(),
        ));
    }
    let scrape = || parse_prometheus(&get(&address, "/metrics").1);
    let processed = "palisade_events_processed_total{source=\"redis_stream\"}";
    assert!(
        eventually(crate::support::PATIENCE, || scrape().get(processed)
            == Some(&(sent as f64))),
        "{:?}",
        scrape().get(processed)
    );
    // Counters settle after the last batch is acknowledged: the latency of an event is
    // observed when its batch is, which on a loaded machine trails its handling.
    let latencies = "palisade_pipeline_latency_seconds_count";
    assert!(
        eventually(crate::support::PATIENCE, || scrape().get(latencies)
            == Some(&(sent as f64))),
        "{:?}",
        scrape().get(latencies)
    );
    let samples = scrape();
    let at = |series: &str| samples.get(series).copied().unwrap_or(-1.0);
    assert_eq!(
        at("palisade_events_received_total{source=\"redis_stream\"}"),
        (sent + 2) as f64
    );
    assert_eq!(at(processed), sent as f64);
    assert_eq!(
        at("palisade_events_dead_lettered_total{source=\"redis_stream\"}"),
        2.0
    );
    assert_eq!(
        at("palisade_detections_total{rule=\"office-spawns-shell\",stage=\"rule\"}"),
        sent as f64
    );
    // Every detection's playbook decided its two steps; the shipped config is dry-run.
    assert_eq!(
        at("palisade_actions_total{action=\"process.kill\",status=\"dry_run\"}"),
        sent as f64
    );
    assert_eq!(at("palisade_pipeline_latency_seconds_count"), sent as f64);
    assert_eq!(at("palisade_mode{mode=\"auto\"}"), 1.0);
    assert_eq!(at("palisade_ready"), 1.0);

    let (status, body) = get(&address, "/healthz");
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).expect("health is JSON");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["redis_up"], true);
    engine.stop();
}

fn marker_rule(version: usize, broken: bool) -> String {
    // A broken edit carries a title of its own, so any detection made with it would show.
    let (title, severity) = if broken {
        (format!("marker v{version} broken"), "urgent")
    } else {
        (format!("marker v{version}"), "high")
    };
    format!(
        "let rule = #{{ id: \"marker\", title: \"{title}\", severity: \"{severity}\", tags: [],\n  events: [\"process_create\"], filter: #{{ name: [\"marker.exe\"] }} }};\n"
    )
}

fn chunk(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| {
            let name = if i % 50 == 0 { "marker.exe" } else { "chrome.exe" };
            format!(
                "{{\"type\":\"process_create\",\"timestamp\":\"2026-01-05T10:00:00Z\",\"id\":\"ev-{i}\",\"host\":\"ws-1\",\"pid\":{},\"name\":\"{name}\",\"parent_name\":\"explorer.exe\"}}\n",
                1000 + i
            )
        })
        .collect()
}

#[test]
fn twenty_edits_while_events_stream_lose_nothing_and_broken_ones_never_apply() {
    let server = RedisServer::start();
    let dir = stream_content(&server, "reload");
    let rule = dir.path().join("rules/marker.rhai");
    std::fs::write(&rule, marker_rule(0, false)).expect("rule");

    let engine = EngineProcess::start(dir.path(), "reload");
    let address = endpoint(&engine);

    let per_chunk = 2500;
    let mut sent = 0;
    let mut broken_edits = 0;
    for edit in 1..=20 {
        let broken = edit % 3 == 0;
        broken_edits += usize::from(broken);
        std::fs::write(&rule, marker_rule(edit, broken)).expect("edit");
        let file = format!("chunk-{edit}.jsonl");
        std::fs::write(dir.path().join(&file), chunk(sent, per_chunk)).expect("events");
        assert_success(&palisade(
            &["publish", "--events", &file, "--stream", "reload"],
            dir.path(),
        ));
        sent += per_chunk;
        std::thread::sleep(Duration::from_millis(100));
    }
    // Edit 20 is good. From its save, probe with single marker events until one is detected
    // with its title: that is the time until the edit is in use.
    let saved = std::time::Instant::now();
    std::fs::write(&rule, marker_rule(21, false)).expect("last edit");
    let mut probes = 0;
    let active_after = loop {
        let id = format!("probe-{probes}");
        let line = format!(
            "{{\"type\":\"process_create\",\"timestamp\":\"2026-01-05T10:00:00Z\",\"id\":\"{id}\",\"host\":\"ws-2\",\"pid\":7,\"name\":\"marker.exe\",\"parent_name\":\"explorer.exe\"}}\n"
        );
        std::fs::write(dir.path().join("probe.jsonl"), line).expect("probe");
        assert_success(&palisade(
            &["publish", "--events", "probe.jsonl", "--stream", "reload"],
            dir.path(),
        ));
        probes += 1;
        let seen = eventually(crate::support::PATIENCE, || {
            server
                .alerts("palisade:alerts")
                .iter()
                .any(|a| a["event_id"] == id.as_str())
        });
        assert!(seen, "probe {id} was never detected");
        let title = server
            .alerts("palisade:alerts")
            .into_iter()
            .find(|a| a["event_id"] == id.as_str())
            .and_then(|a| a["title"].as_str().map(str::to_string))
            .unwrap_or_default();
        if title == "marker v21" {
            break saved.elapsed();
        }
        assert!(
            saved.elapsed() < Duration::from_secs(5),
            "the last edit never applied"
        );
    };
    // How soon is a figure, not a promise a loaded test machine can keep: it is printed, and
    // the loop above bounds it.
    eprintln!("the last good edit was in use {active_after:?} after saving ({probes} probes)");

    let total = sent + probes;
    let scrape = || parse_prometheus(&get(&address, "/metrics").1);
    let processed = "palisade_events_processed_total{source=\"redis_stream\"}";
    assert!(
        eventually(crate::support::PATIENCE, || scrape().get(processed)
            == Some(&(total as f64))),
        "{:?} of {total}",
        scrape().get(processed)
    );
    let samples = scrape();
    // Received equals sent: no entry was delivered twice.
    assert_eq!(
        samples.get("palisade_events_received_total{source=\"redis_stream\"}"),
        Some(&(total as f64))
    );
    assert!(
        samples
            .get("palisade_reloads_total")
            .copied()
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        samples
            .get("palisade_reload_failures_total")
            .copied()
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(broken_edits >= 6);

    // Every marker event has exactly one alert, and none was made by a broken edit.
    let alerts = server.alerts("palisade:alerts");
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for alert in &alerts {
        let title = alert["title"].as_str().unwrap_or_default();
        assert!(
            !title.contains("broken"),
            "a broken edit took effect: {title}"
        );
        *per_event
            .entry(alert["event_id"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_event.len(), sent / 50 + probes);
    assert!(per_event.values().all(|n| *n == 1));
    let log = engine.stop();
    assert!(log.contains("reload refused"), "{log}");
    assert!(log.contains("error[rule-bad-severity]"), "{log}");
}

/// Distinct events with a `decision` audit row, from the state database in `dir`.
fn audited_events(dir: &std::path::Path) -> std::collections::HashSet<String> {
    crate::support::with_state(&dir.join("data/palisade.db"), async |store| {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT event_id FROM audit WHERE kind = 'decision' AND event_id IS NOT NULL",
        )
        .fetch_all(store.pool())
        .await
        .expect("audit rows");
        ids.into_iter().collect()
    })
}

fn group_counter(server: &RedisServer, stream: &str, field: &str) -> i64 {
    let Ok(redis::Value::Array(groups)) = server.query(&["XINFO", "GROUPS", stream]) else {
        return -1;
    };
    for group in groups {
        let pairs: Vec<(redis::Value, redis::Value)> = match group {
            redis::Value::Map(pairs) => pairs,
            redis::Value::Array(items) => items
                .chunks(2)
                .filter_map(|p| Some((p.first()?.clone(), p.get(1)?.clone())))
                .collect(),
            _ => continue,
        };
        for (key, value) in pairs {
            if let (redis::Value::BulkString(key), redis::Value::Int(n)) = (key, value)
                && key == field.as_bytes()
            {
                return n;
            }
        }
    }
    -1
}

#[test]
fn sigterm_under_load_acknowledges_only_what_is_audited_and_a_restart_loses_nothing() {
    let server = RedisServer::start();
    let dir = redis_content(
        &server,
        "  type: redis_stream\n  stream: term\n  batch_size: 200\n",
    );
    let total = 20_000;
    std::fs::write(dir.path().join("events.jsonl"), office_events(0, total)).expect("events");
    assert_success(&palisade(
        &["publish", "--events", "events.jsonl", "--stream", "term"],
        dir.path(),
    ));

    let engine = EngineProcess::start(dir.path(), "first");
    // Stop it while it is busy: some of the stream read, most not.
    assert!(
        eventually(crate::support::PATIENCE, || group_counter(
            &server,
            "term",
            "entries-read"
        ) > 2000),
        "the engine never got going"
    );
    engine.stop();
    let read = group_counter(&server, "term", "entries-read");
    assert!(
        read < total as i64,
        "stopped too late to prove anything ({read} read)"
    );
    // A graceful stop finishes what it read: nothing is left pending, and every event it
    // acknowledged has its decisions on the audit trail.
    assert_eq!(group_counter(&server, "term", "pending"), 0);
    let audited = audited_events(dir.path());
    assert_eq!(audited.len() as i64, read);

    // The next engine takes up from there; in the end every event was decided exactly once.
    let engine = EngineProcess::start(dir.path(), "second");
    assert!(
        eventually(crate::support::PATIENCE, || {
            group_counter(&server, "term", "entries-read") == total as i64
                && group_counter(&server, "term", "pending") == 0
        }),
        "the restarted engine did not finish the stream"
    );
    engine.stop();
    assert_eq!(audited_events(dir.path()).len(), total);
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for alert in server.alerts("palisade:alerts") {
        *per_event
            .entry(alert["event_id"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_event.len(), total);
    assert!(per_event.values().all(|n| *n == 1));
}

#[test]
fn a_new_warninglist_is_applied_to_the_loaded_indicators_while_running() {
    use std::io::BufRead;
    let dir = crate::support::scratch_content();
    let lists = dir.path().join("warninglists");
    std::fs::create_dir_all(&lists).expect("mkdir");
    std::fs::copy(
        crate::support::repo().join("warninglists/empty-hashes.json"),
        lists.join("empty-hashes.json"),
    )
    .expect("copy");
    let feed = crate::support::repo().join("tests/fixtures/intel/feeds/feodo-ipblocklist.csv");
    assert_success(&palisade(
        &[
            "intel",
            "import",
            feed.to_str().expect("utf-8"),
            "--format",
            "feodo",
        ],
        dir.path(),
    ));
    std::fs::write(
        dir.path().join("palisade.yaml"),
        "http:\n  listen: 127.0.0.1:0\n",
    )
    .expect("config");

    let (mut child, log) = crate::support::run_on_pipes(dir.path());
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(crate::support::PATIENCE, || read_log()
            .contains("palisade is running")),
        "{}",
        read_log()
    );
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut severity_of = |id: &str| -> String {
        let event = format!(
            "{{\"type\":\"network_connection\",\"timestamp\":\"2026-01-05T10:00:00Z\",\"id\":\"{id}\",\"host\":\"srv-1\",\"pid\":7,\"name\":\"svchost.exe\",\"remote_ip\":\"51.178.161.32\",\"remote_port\":4643}}\n"
        );
        stdin.write_all(event.as_bytes()).expect("write");
        stdin.flush().expect("flush");
        for line in lines.by_ref().map_while(Result::ok) {
            let value: serde_json::Value = serde_json::from_str(&line).expect("json line");
            if value["kind"] == "detection" && value["event_id"] == id {
                return value["severity"].as_str().unwrap_or_default().to_string();
            }
        }
        String::new()
    };
    assert_eq!(severity_of("before"), "critical");

    std::fs::write(
        lists.join("partners.json"),
        r#"{"name": "partner hosting", "type": "cidr", "list": ["51.178.161.0/24"]}"#,
    )
    .expect("list");
    assert!(
        eventually(crate::support::PATIENCE, || read_log()
            .contains("indicators marked against the changed warninglists")),
        "{}",
        read_log()
    );
    assert_eq!(severity_of("after"), "informational");
    drop(stdin);
    assert!(child.wait().expect("wait").success(), "{}", read_log());
}
