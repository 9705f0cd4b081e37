//! Sigma correlation end to end: failed logins read from a real Redis stream, counted by the
//! correlation stage, the window stored in a real SQLite state database across an engine
//! restart, and the playbook's block planned once per source per window.
//!
//! The engine runs in this process (the way `palisade run` assembles it: windows restored
//! from the state database before the writer takes it), since the correlation is handed to the
//! stage directly. The base detection comes from a Rhai rule with the id of the Sigma rule the
//! correlation names: the Sigma parser does not yet read palisade's own field names (`outcome`)
//! for `product: palisade` rules, so a Sigma rule on login outcomes cannot load yet.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers stop at once on a broken setup"
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use palisade::config::StreamSourceConfig;
use palisade::content::Content;
use palisade::diagnostics::Position;
use palisade::engine::drive::{NoProbe, Outputs, drive_stream};
use palisade::engine::{AlertFormat, Engine, Shutdown};
use palisade::event::{EventKind, Field};
use palisade::pipeline::Stages;
use palisade::sigma::ast::{
    Condition, Item, Level, Search, SearchBody, SigmaRule, TextMatch, ValueTest,
};
use palisade::sigma::correlation::window::Limits;
use palisade::sigma::correlation::{self, Correlation, CorrelationHandle};
use palisade::sources::Intake;
use palisade::sources::redis_stream::StreamSource;
use palisade::state::{StateStore, spawn_writer};

use crate::support::RedisServer;

const STREAM: &str = "palisade:logins";

const CORRELATION: &str = "\
title: Twenty failed logins from one source in five minutes
id: brute-force-by-source
level: high
tags: [attack.credential_access, attack.t1110]
correlation:
  type: event_count
  rules: [failed_login]
  group-by: [source_ip]
  timespan: 5m
  condition:
    gte: 20
";

/// The base detection: a login whose outcome is failure.
const RULE: &str = r#"
let rule = #{
    id: "failed-login",
    title: "A login failed",
    severity: "low",
    tags: ["attack.credential_access"],
    events: ["login"],
};

fn detect(event) {
    if event.outcome == "failure" { #{ entity: #{ address: `${event.source_ip}` } } } else { () }
}
"#;

const PLAYBOOK: &str = "\
id: block-brute-force
title: Block a source that keeps failing to log in
trigger:
  tags: [attack.t1110]
  min_severity: high
steps:
  - id: block-source
    action: firewall.block
    with:
      address: \"{{ entity.address }}\"
      ttl: 1h
      reason: \"{{ detection.title }}\"
";

/// The Sigma rule the correlation names, as the Sigma loader hands it over.
fn failed_login_rule() -> SigmaRule {
    SigmaRule {
        path: "rules/failed_login.yml".into(),
        position: Position::START,
        id: "failed-login".into(),
        stem: "failed_login".into(),
        name: Some("failed_login".into()),
        title: "A login failed".into(),
        description: None,
        status: None,
        level: Level::Low,
        author: None,
        references: Vec::new(),
        falsepositives: Vec::new(),
        tags: Vec::new(),
        kinds: vec![EventKind::Login],
        searches: vec![Search {
            name: "selection".into(),
            body: SearchBody::AllOf(vec![Item {
                field: Field::Outcome,
                written: "outcome".into(),
                tests: vec![ValueTest::Text {
                    how: TextMatch::Exact,
                    needle: "failure".into(),
                    cased: false,
                }],
                all: false,
            }]),
        }],
        condition: Condition::Search(0),
    }
}

fn correlations() -> Vec<Correlation> {
    let document: yaml_serde::Value = yaml_serde::from_str(CORRELATION).unwrap();
    let parsed = correlation::parse(
        &document,
        Path::new("rules/brute_force.yml"),
        CORRELATION,
        Position::START,
    )
    .unwrap();
    vec![correlation::resolve(&parsed, &[Arc::new(failed_login_rule())], &[]).unwrap()]
}

fn content(server: &RedisServer, dir: &Path) -> Arc<Content> {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::create_dir_all(dir.join("playbooks")).unwrap();
    std::fs::write(dir.join("rules/failed_login.rhai"), RULE).unwrap();
    std::fs::write(dir.join("playbooks/block-brute-force.yaml"), PLAYBOOK).unwrap();
    std::fs::write(
        dir.join("palisade.yaml"),
        format!(
            "redis:\n  url: {}\nactions:\n  dry_run: false\nanomaly:\n  enabled: false\ntracker:\n  enabled: false\n",
            server.url()
        ),
    )
    .unwrap();
    Arc::new(palisade::content::load(dir, None).unwrap())
}

/// Failed logins `first..first + count` from `source`, one a second from `start_ms`.
fn publish(server: &RedisServer, first: usize, count: usize, start_ms: i64, source: &str) {
    for i in first..first + count {
        let at = start_ms + (i - first) as i64 * 1_000;
        let event = format!(
            r#"{{"type":"login","timestamp":{at},"id":"login-{i}","host":"bastion-1","user":"root","source_ip":"{source}","outcome":"failure","method":"ssh"}}"#
        );
        server
            .query(&["XADD", STREAM, "*", "data", &event])
            .unwrap();
    }
}

async fn count(pool: &sqlx::SqlitePool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// How many entries the engine's group has read, and how many of those are not acknowledged.
fn group_progress(server: &RedisServer) -> (i64, i64) {
    let Ok(redis::Value::Array(groups)) = server.query(&["XINFO", "GROUPS", STREAM]) else {
        return (0, -1);
    };
    let mut read = 0;
    let mut pending = -1;
    for group in groups {
        let fields = match group {
            redis::Value::Array(fields) => fields,
            redis::Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => continue,
        };
        for pair in fields.chunks(2) {
            let (redis::Value::BulkString(name), redis::Value::Int(n)) = (&pair[0], &pair[1])
            else {
                continue;
            };
            match name.as_slice() {
                b"entries-read" => read = *n,
                b"pending" => pending = *n,
                _ => {}
            }
        }
    }
    (read, pending)
}

/// One engine run, assembled as `palisade run` does: the windows restored from the state
/// database, then the stream read until all `logins` entries published so far are handled and
/// acknowledged (so their detections and windows are stored).
async fn run_engine(server: &RedisServer, content: &Arc<Content>, state: &Path, logins: i64) {
    let store = StateStore::open(state).await.unwrap();
    let handle = CorrelationHandle::new(correlations(), Limits::from_config(&Default::default()));
    handle.restore(
        correlation::store::load_windows(store.pool())
            .await
            .unwrap(),
    );
    let pool = store.pool().clone();
    let stages = Stages {
        correlation: Some(handle),
        ..Stages::from_content(content).unwrap()
    };
    let (writer, written) = spawn_writer(store, Arc::new(tokio::sync::Notify::new()));
    let health = Arc::new(palisade::bus::Health::default());
    let source = StreamSource::new(
        palisade::bus::Link::new(&server.url(), "source", health).unwrap(),
        StreamSourceConfig {
            stream: STREAM.into(),
            group: "palisade".into(),
            consumer: Some("test".into()),
            block_ms: 100,
            ..Default::default()
        },
    );
    let mut engine = Engine::new(
        content.clone(),
        palisade::intel::IntelHandle::default(),
        Intake::new(None),
        AlertFormat::Quiet,
        stages,
    )
    .unwrap();
    let (trigger, shutdown) = Shutdown::new();
    let outputs = Outputs {
        format: AlertFormat::Quiet,
        state: writer.clone(),
        alerts: None,
        executor: None,
        metrics: None,
        settled: None,
    };
    let driving = tokio::spawn(async move {
        drive_stream(&mut engine, source, outputs, &shutdown, NoProbe)
            .await
            .unwrap();
        engine.finish()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while group_progress(server) != (logins, 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the engine did not handle the logins: {:?}",
            group_progress(server)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    trigger.trigger();
    let rest = driving.await.unwrap();
    writer.write(rest).await.unwrap();
    drop(writer);
    written.await.unwrap().unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_failed_logins_from_one_source_are_one_detection_and_one_block_per_window_across_a_restart()
 {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let content = content(&server, dir.path());
    let state = dir.path().join("state.db");
    let attacker = "185.220.101.7";
    let neighbour = "185.220.101.8";
    // Event times an hour ago: within what the intake accepts, and not moved by the clock.
    let start = palisade::event::now_ms() - 3_600_000;

    // First run: 12 failures from the attacker, 19 from a neighbour (one short), in 5 minutes.
    publish(&server, 0, 12, start, attacker);
    publish(&server, 100, 19, start, neighbour);
    run_engine(&server, &content, &state, 31).await;

    // Restart in the middle of the window: the count continues, so the 8th more is the 20th.
    publish(&server, 12, 8, start + 12_000, attacker);
    // And everything that follows within the window that fired is still that one detection.
    publish(&server, 20, 60, start + 20_000, attacker);
    run_engine(&server, &content, &state, 99).await;

    let store = StateStore::open(&state).await.unwrap();
    let pool = store.pool();
    let fired: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT event_id, entity FROM detections WHERE rule = 'brute-force-by-source'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].0, "login-19");
    assert!(
        fired[0].1.as_deref().unwrap_or_default().contains(attacker),
        "{fired:?}"
    );
    let blocks: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT action, target, status FROM actions WHERE rule = 'brute-force-by-source'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        blocks,
        vec![(
            "firewall.block".to_string(),
            attacker.to_string(),
            "planned".to_string()
        )]
    );
    // The failed logins themselves are counted, not reported: the correlation does not say
    // `generate: true`.
    let base = count(
        pool,
        "SELECT COUNT(*) FROM detections WHERE rule = 'failed-login'",
    )
    .await;
    assert_eq!(base, 0);
    // The neighbour, one short, was never detected.
    let neighbour_fired = count(
        pool,
        "SELECT COUNT(*) FROM detections WHERE rule = 'brute-force-by-source' AND entity LIKE '%185.220.101.8%'",
    )
    .await;
    assert_eq!(neighbour_fired, 0);
    store.close().await;

    // The next window (the first event more than 5 minutes after the one that fired): 20 more
    // failures are a second detection and a second block, across another restart.
    publish(&server, 200, 20, start + 19_000 + 300_000, attacker);
    run_engine(&server, &content, &state, 119).await;
    let store = StateStore::open(&state).await.unwrap();
    let blocks = count(
        store.pool(),
        "SELECT COUNT(*) FROM actions WHERE rule = 'brute-force-by-source' AND action = 'firewall.block'",
    )
    .await;
    assert_eq!(blocks, 2);
    store.close().await;
}
