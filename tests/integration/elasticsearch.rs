//! The `elasticsearch` feed against a loopback HTTP server that answers as Elasticsearch 8
//! documents it: `POST /INDEX/_pit?keep_alive=` opens a point in time, `POST /_search` with
//! `pit`, `sort` (the timestamp field, then `_shard_doc`), `search_after` and a `range` query
//! pages through it, `DELETE /_pit` closes it. No Elasticsearch server runs here; the server
//! below implements just those three calls over an in-memory index.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use serde_json::{Value, json};

use crate::support::{assert_success, palisade, scratch_content, stdout};

#[derive(Default)]
struct Cluster {
    /// `threat_intel_iocs`: (timestamp, document), in indexing order (the `_shard_doc`).
    docs: Mutex<Vec<(String, Value)>>,
    /// Requests as `METHOD path detail`.
    seen: Mutex<Vec<String>>,
    /// The `Authorization` header every request must carry.
    authorization: Mutex<String>,
    /// Answer the next page after the first with "no search context" (the point in time lapsed).
    lose_context_once: AtomicBool,
    pits: AtomicUsize,
    open_pits: Mutex<Vec<String>>,
}

type Shared = Arc<Cluster>;

fn log(cluster: &Cluster, line: String) {
    cluster.seen.lock().expect("lock").push(line);
}

fn authorized(cluster: &Cluster, headers: &HeaderMap) -> Option<Response> {
    let expected = cluster.authorization.lock().expect("lock").clone();
    let got = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    (got != expected).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            [("content-type", "application/json")],
            json!({"error": {"type": "security_exception", "reason": "missing authentication credentials"}, "status": 401}).to_string(),
        )
            .into_response()
    })
}

fn es_json(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct KeepAlive {
    keep_alive: String,
}

async fn open_pit(
    State(cluster): State<Shared>,
    Path(index): Path<String>,
    Query(query): Query<KeepAlive>,
    headers: HeaderMap,
) -> Response {
    log(
        &cluster,
        format!("POST /{index}/_pit keep_alive={}", query.keep_alive),
    );
    if let Some(refused) = authorized(&cluster, &headers) {
        return refused;
    }
    if index != "threat_intel_iocs" {
        return es_json(
            StatusCode::NOT_FOUND,
            json!({"error": {"type": "index_not_found_exception"}, "status": 404}),
        );
    }
    let id = format!("pit-{}", cluster.pits.fetch_add(1, Ordering::SeqCst) + 1);
    cluster.open_pits.lock().expect("lock").push(id.clone());
    es_json(StatusCode::OK, json!({"id": id}))
}

async fn close_pit(State(cluster): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if let Some(refused) = authorized(&cluster, &headers) {
        return refused;
    }
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let id = body["id"].as_str().unwrap_or("").to_string();
    log(&cluster, format!("DELETE /_pit {id}"));
    let mut open = cluster.open_pits.lock().expect("lock");
    let before = open.len();
    open.retain(|p| *p != id);
    let freed = before - open.len();
    es_json(
        StatusCode::OK,
        json!({"succeeded": true, "num_freed": freed}),
    )
}

async fn search(State(cluster): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if let Some(refused) = authorized(&cluster, &headers) {
        return refused;
    }
    let body: Value = serde_json::from_str(&body).expect("search body is JSON");
    let pit = body["pit"]["id"].as_str().expect("a pit id").to_string();
    let size = body["size"].as_u64().expect("size") as usize;
    assert_eq!(
        body["sort"],
        json!([{"timestamp": {"order": "asc", "format": "strict_date_optional_time_nanos"}}, {"_shard_doc": "asc"}])
    );
    let gte = body["query"]["range"]["timestamp"]["gte"]
        .as_str()
        .map(str::to_string);
    let after = body.get("search_after").cloned();
    log(
        &cluster,
        format!(
            "POST /_search pit={pit} size={size} gte={} after={}",
            gte.as_deref().unwrap_or("-"),
            after.as_ref().map_or("-".to_string(), Value::to_string)
        ),
    );
    if !cluster.open_pits.lock().expect("lock").contains(&pit) {
        return es_json(
            StatusCode::NOT_FOUND,
            json!({"error": {"type": "search_phase_execution_exception", "root_cause": [{"type": "search_context_missing_exception"}]}, "status": 404}),
        );
    }
    if after.is_some() && cluster.lose_context_once.swap(false, Ordering::SeqCst) {
        return es_json(
            StatusCode::NOT_FOUND,
            json!({"error": {"type": "search_phase_execution_exception", "root_cause": [{"type": "search_context_missing_exception", "reason": "No search context found"}]}, "status": 404}),
        );
    }
    let docs = cluster.docs.lock().expect("lock").clone();
    let mut rows: Vec<(String, usize, Value)> = docs
        .into_iter()
        .enumerate()
        .map(|(n, (ts, doc))| (ts, n, doc))
        .filter(|(ts, _, _)| gte.as_ref().is_none_or(|g| ts >= g))
        .collect();
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    if let Some(after) = &after {
        let ts = after[0].as_str().expect("timestamp sort value").to_string();
        let shard_doc = after[1].as_u64().expect("_shard_doc") as usize;
        rows.retain(|(t, n, _)| (t.clone(), *n) > (ts.clone(), shard_doc));
    }
    let hits: Vec<Value> = rows
        .into_iter()
        .take(size)
        .map(|(ts, n, doc)| {
            json!({"_index": "threat_intel_iocs", "_id": format!("doc-{n}"), "_score": null, "_source": doc, "sort": [ts, n]})
        })
        .collect();
    es_json(
        StatusCode::OK,
        json!({
            "pit_id": pit,
            "took": 1,
            "timed_out": false,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"total": {"value": hits.len(), "relation": "eq"}, "max_score": null, "hits": hits}
        }),
    )
}

fn serve(authorization: &str) -> (SocketAddr, Shared) {
    let cluster: Shared = Arc::new(Cluster::default());
    *cluster.authorization.lock().expect("lock") = authorization.to_string();
    let app = Router::new()
        .route("/{index}/_pit", post(open_pit))
        .route("/_pit", delete(close_pit))
        .route("/_search", post(search))
        .with_state(cluster.clone());
    (crate::support::serve_http(app), cluster)
}

fn index(cluster: &Cluster, timestamp: &str, value: &str, kind: &str, threat: &str) {
    cluster.docs.lock().expect("lock").push((
        timestamp.to_string(),
        json!({"ioc_value": value, "ioc_type": kind, "threat": threat, "confidence": 90, "timestamp": timestamp}),
    ));
}

fn content(feed: &str) -> tempfile::TempDir {
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!("intel:\n  feeds:\n{feed}"),
    )
    .expect("config");
    dir
}

fn pull(dir: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"));
    command.args(["intel", "pull"]).current_dir(dir);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("palisade runs")
}

fn matches(dir: &std::path::Path, value: &str) -> bool {
    palisade(&["intel", "lookup", value], dir).status.code() == Some(0)
}

fn seen(cluster: &Cluster) -> Vec<String> {
    std::mem::take(&mut *cluster.seen.lock().expect("lock"))
}

fn five_iocs(cluster: &Cluster) {
    index(
        cluster,
        "2025-11-01T00:00:00.000Z",
        "185.12.33.4",
        "ipv4",
        "Emotet C2",
    );
    index(
        cluster,
        "2025-11-01T00:00:00.000Z",
        "45.9.148.3",
        "ipv4",
        "QakBot C2",
    );
    index(
        cluster,
        "2025-11-02T00:00:00.000Z",
        "evil-updates.example",
        "domain",
        "phishing",
    );
    index(
        cluster,
        "2025-11-03T00:00:00.000Z",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "hash_sha256",
        "dropper",
    );
    index(
        cluster,
        "2025-11-04T00:00:00.000Z",
        "198.51.100.23",
        "ipv4",
        "scanner",
    );
}

const API_KEY_FEED: &str = "    - {name: soc, type: elasticsearch, url: \"http://ADDR\", api_key_env: ES_API_KEY, page_size: 2}\n";

#[test]
fn an_elasticsearch_feed_pages_through_a_multi_page_index_and_resumes_after_a_failure() {
    let (address, cluster) = serve("ApiKey c29jOnNlY3JldA==");
    five_iocs(&cluster);
    let dir = content(&API_KEY_FEED.replace("ADDR", &address.to_string()));
    let env = [("ES_API_KEY", "c29jOnNlY3JldA==")];

    // The point in time lapses after the first page: the pull fails and stores nothing, not
    // even the first page, and the mark does not move.
    cluster.lose_context_once.store(true, Ordering::SeqCst);
    let out = pull(dir.path(), &env);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("search_context_missing_exception"),
        "{}",
        stdout(&out)
    );
    assert!(
        !matches(dir.path(), "185.12.33.4"),
        "a failed pull stores nothing"
    );
    assert_eq!(
        seen(&cluster),
        [
            "POST /threat_intel_iocs/_pit keep_alive=60s",
            "POST /_search pit=pit-1 size=2 gte=- after=-",
            "POST /_search pit=pit-1 size=2 gte=- after=[\"2025-11-01T00:00:00.000Z\",1]",
            "DELETE /_pit pit-1",
        ]
    );

    // The next pull starts again from the old mark with a new point in time, and reads every
    // page.
    let out = pull(dir.path(), &env);
    assert_success(&out);
    assert!(
        stdout(&out).contains("soc: 5 indicator(s) stored, 0 skipped, 0 expired, 3 page(s)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        seen(&cluster),
        [
            "POST /threat_intel_iocs/_pit keep_alive=60s",
            "POST /_search pit=pit-2 size=2 gte=- after=-",
            "POST /_search pit=pit-2 size=2 gte=- after=[\"2025-11-01T00:00:00.000Z\",1]",
            "POST /_search pit=pit-2 size=2 gte=- after=[\"2025-11-03T00:00:00.000Z\",3]",
            "DELETE /_pit pit-2",
        ]
    );
    assert!(
        cluster.open_pits.lock().expect("lock").is_empty(),
        "every point in time is closed"
    );
    for value in [
        "185.12.33.4",
        "45.9.148.3",
        "evil-updates.example",
        "198.51.100.23",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ] {
        assert!(matches(dir.path(), value), "{value} matches");
    }
    let lookup = stdout(&palisade(&["intel", "lookup", "185.12.33.4"], dir.path()));
    assert!(
        lookup.contains("Emotet C2") && lookup.contains("soc"),
        "{lookup}"
    );
}

#[test]
fn an_elasticsearch_feed_pull_is_incremental_by_its_timestamp_field() {
    let (address, cluster) = serve("ApiKey k");
    five_iocs(&cluster);
    let dir = content(&API_KEY_FEED.replace("ADDR", &address.to_string()));
    let env = [("ES_API_KEY", "k")];
    assert_success(&pull(dir.path(), &env));
    seen(&cluster);
    let stats = stdout(&palisade(&["intel", "stats"], dir.path()));
    assert!(stats.contains("cursor 2025-11-04T00:00:00.000Z"), "{stats}");

    index(
        &cluster,
        "2025-11-05T00:00:00.000Z",
        "203.0.113.50",
        "ipv4",
        "new C2",
    );
    let out = pull(dir.path(), &env);
    assert_success(&out);
    // Only documents at or after the mark are asked for: the one at the mark (read again and
    // upserted unchanged, so one stamped in the same instant but indexed later is not lost)
    // and the new one.
    assert!(
        stdout(&out).contains("soc: 2 indicator(s) stored, 0 skipped, 0 expired, 2 page(s)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        seen(&cluster),
        [
            "POST /threat_intel_iocs/_pit keep_alive=60s",
            "POST /_search pit=pit-2 size=2 gte=2025-11-04T00:00:00.000Z after=-",
            "POST /_search pit=pit-2 size=2 gte=2025-11-04T00:00:00.000Z after=[\"2025-11-05T00:00:00.000Z\",5]",
            "DELETE /_pit pit-2",
        ]
    );
    assert!(matches(dir.path(), "203.0.113.50"));
    let stats = stdout(&palisade(&["intel", "stats"], dir.path()));
    assert!(stats.contains("cursor 2025-11-05T00:00:00.000Z"), "{stats}");
}

#[test]
fn credentials_come_from_the_environment() {
    // An API key: `Authorization: ApiKey KEY`, the key only in the environment.
    let (address, cluster) = serve("ApiKey c29jOnNlY3JldA==");
    index(
        &cluster,
        "2025-11-01T00:00:00.000Z",
        "185.12.33.4",
        "ipv4",
        "Emotet C2",
    );
    let dir = content(&API_KEY_FEED.replace("ADDR", &address.to_string()));
    let config = std::fs::read_to_string(dir.path().join("palisade.yaml")).expect("config");
    assert!(!config.contains("c29jOnNlY3JldA=="));
    let out = pull(dir.path(), &[]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("`ES_API_KEY`, which is not set"),
        "{}",
        stdout(&out)
    );
    assert!(seen(&cluster).is_empty(), "nothing is sent without the key");
    let out = pull(dir.path(), &[("ES_API_KEY", "wrong")]);
    assert!(
        !out.status.success() && stdout(&out).contains("401"),
        "{}",
        stdout(&out)
    );
    assert_success(&pull(dir.path(), &[("ES_API_KEY", "c29jOnNlY3JldA==")]));
    assert!(matches(dir.path(), "185.12.33.4"));

    // Basic auth: user and password from the two variables the config names.
    let (address, cluster) = serve("Basic c29jLXJlYWRlcjpzM2NyM3Q=");
    index(
        &cluster,
        "2025-11-01T00:00:00.000Z",
        "45.9.148.3",
        "ipv4",
        "QakBot C2",
    );
    let dir = content(&format!(
        "    - name: soc\n      type: elasticsearch\n      url: \"http://{address}\"\n      elasticsearch: {{username_env: ES_USER, password_env: ES_PASSWORD}}\n"
    ));
    let out = pull(dir.path(), &[("ES_USER", "soc-reader")]);
    assert!(
        !out.status.success() && stdout(&out).contains("`ES_PASSWORD`, which is not set"),
        "{}",
        stdout(&out)
    );
    assert_success(&pull(
        dir.path(),
        &[("ES_USER", "soc-reader"), ("ES_PASSWORD", "s3cr3t")],
    ));
    assert!(matches(dir.path(), "45.9.148.3"));
}

// The alert sink, against a loopback `_bulk` endpoint answering as Elasticsearch 8 documents
// it: one result per item, in order, `errors: true` when any failed.

#[derive(Default)]
struct BulkCluster {
    /// Indexed documents by `_id`, in the order they were taken.
    indexed: Mutex<Vec<(String, Value)>>,
    /// Every `_id` ever sent, in order of first sight.
    ids: Mutex<Vec<String>>,
    requests: AtomicUsize,
    /// Answer every request 503.
    down: AtomicBool,
    /// Answer the first id ever seen 429 once, and the second one 400 every time.
    reject: AtomicBool,
    rejected_429: AtomicBool,
    content_types: Mutex<Vec<String>>,
}

type Bulk = Arc<BulkCluster>;

async fn bulk(State(cluster): State<Bulk>, headers: HeaderMap, body: String) -> Response {
    cluster.requests.fetch_add(1, Ordering::SeqCst);
    cluster.content_types.lock().expect("lock").push(
        headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
    );
    if cluster.down.load(Ordering::SeqCst) {
        return es_json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": {"type": "cluster_block_exception"}, "status": 503}),
        );
    }
    let lines: Vec<&str> = body.lines().filter(|l| !l.is_empty()).collect();
    let mut items = Vec::new();
    let mut errors = false;
    for pair in lines.chunks(2) {
        let action: Value = serde_json::from_str(pair[0]).expect("action line");
        let document: Value = serde_json::from_str(pair[1]).expect("document line");
        let id = action["create"]["_id"]
            .as_str()
            .expect("an _id")
            .to_string();
        assert_eq!(action["create"]["_index"], "palisade-alerts");
        let position = {
            let mut ids = cluster.ids.lock().expect("lock");
            if !ids.contains(&id) {
                ids.push(id.clone());
            }
            ids.iter().position(|i| *i == id).expect("seen")
        };
        let mut indexed = cluster.indexed.lock().expect("lock");
        let status = if cluster.reject.load(Ordering::SeqCst)
            && position == 0
            && !cluster.rejected_429.swap(true, Ordering::SeqCst)
        {
            429
        } else if cluster.reject.load(Ordering::SeqCst) && position == 1 {
            400
        } else if indexed.iter().any(|(i, _)| *i == id) {
            409
        } else {
            indexed.push((id.clone(), document));
            201
        };
        errors |= status >= 300;
        let result = if status < 300 {
            json!({"_index": "palisade-alerts", "_id": id, "_version": 1, "result": "created", "status": status})
        } else {
            let kind = match status {
                429 => "es_rejected_execution_exception",
                409 => "version_conflict_engine_exception",
                _ => "mapper_parsing_exception",
            };
            json!({"_index": "palisade-alerts", "_id": id, "status": status, "error": {"type": kind, "reason": "refused by the test"}})
        };
        items.push(json!({"create": result}));
    }
    es_json(
        StatusCode::OK,
        json!({"took": 3, "errors": errors, "items": items}),
    )
}

fn serve_bulk() -> (SocketAddr, Bulk) {
    let cluster: Bulk = Arc::new(BulkCluster::default());
    let app = Router::new()
        .route("/_bulk", post(bulk))
        .with_state(cluster.clone());
    (crate::support::serve_http(app), cluster)
}

/// A content directory reading the `edr` stream from `server`, alerts on Redis and into the
/// loopback cluster, its endpoints on a free port.
fn sink_content(server: &crate::support::RedisServer, es: SocketAddr) -> tempfile::TempDir {
    let dir = crate::support::redis_content(server, "  type: redis_stream\n  stream: edr\n");
    let config = dir.path().join("palisade.yaml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "http:\n  listen: 127.0.0.1:0\nalerts:\n  elasticsearch:\n    url: \"http://{es}\"\n    retry_backoff: 1s\n"
    ));
    std::fs::write(&config, text).expect("config");
    dir
}

fn publish_fixture(dir: &std::path::Path) {
    std::fs::copy(
        crate::support::repo().join("tests/fixtures/mixed.jsonl"),
        dir.join("mixed.jsonl"),
    )
    .expect("fixture");
    assert_success(&palisade(&["publish", "--events", "mixed.jsonl"], dir));
}

fn metric(engine: &crate::support::EngineProcess, name: &str) -> Option<u64> {
    use std::io::{Read, Write};
    engine.wait_for_log("serving /healthz, /readyz and /metrics on http://");
    let address = engine
        .log()
        .split("on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the address is logged")
        .to_string();
    let mut stream = std::net::TcpStream::connect(&address).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

const ALERTS: &str = "palisade:alerts";

#[test]
fn the_elasticsearch_sink_indexes_alerts_in_bulk_with_outcomes() {
    let server = crate::support::RedisServer::start();
    let (es, cluster) = serve_bulk();
    let dir = sink_content(&server, es);
    publish_fixture(dir.path());
    let engine = crate::support::EngineProcess::start(dir.path(), "a");
    assert!(
        crate::support::eventually(crate::support::PATIENCE, || cluster
            .indexed
            .lock()
            .expect("lock")
            .len()
            == 4),
        "{}",
        engine.log()
    );
    assert!(crate::support::eventually(
        crate::support::PATIENCE,
        || metric(&engine, "palisade_es_indexed_total") == Some(4)
    ));
    engine.stop();
    assert!(
        cluster
            .content_types
            .lock()
            .expect("lock")
            .iter()
            .all(|c| c == "application/x-ndjson")
    );
    let indexed = cluster.indexed.lock().expect("lock").clone();
    let redis_alerts = server.alerts(ALERTS);
    // The same alerts as on Redis, keyed by their `alert_id`.
    for alert in &redis_alerts {
        let id = alert["alert_id"].as_str().expect("alert_id");
        assert!(indexed.iter().any(|(i, _)| i == id), "{id} indexed");
    }
    let (_, office) = indexed
        .iter()
        .find(|(_, d)| d["rule"]["id"] == "office-spawns-shell")
        .expect("the office alert");
    assert_eq!(office["event"]["kind"], "alert");
    assert_eq!(office["@timestamp"], "2025-11-03T14:30:10Z");
    assert!(office["host"]["name"].is_string(), "{office}");
    assert!(office["rule"]["name"].is_string(), "{office}");
    // The step with its outcome, as executed or refused: never a plan.
    let step = &office["palisade"]["actions"][0];
    assert_eq!(step["step"], "kill-child");
    assert!(
        step["status"].is_string() && step["status"] != "planned",
        "{step}"
    );
}

#[test]
fn a_bulk_item_rejected_with_429_is_retried_and_a_400_is_counted() {
    let server = crate::support::RedisServer::start();
    let (es, cluster) = serve_bulk();
    cluster.reject.store(true, Ordering::SeqCst);
    let dir = sink_content(&server, es);
    publish_fixture(dir.path());
    let engine = crate::support::EngineProcess::start(dir.path(), "a");
    assert!(
        crate::support::eventually(crate::support::PATIENCE, || {
            metric(&engine, "palisade_es_indexed_total") == Some(3)
                && metric(&engine, "palisade_es_failed_total") == Some(1)
        }),
        "{}",
        engine.log()
    );
    assert!(metric(&engine, "palisade_es_retries_total").unwrap_or(0) >= 1);
    let log = engine.stop();
    assert!(
        log.contains("mapper_parsing_exception") || log.contains("refused by the test"),
        "{log}"
    );
    let ids = cluster.ids.lock().expect("lock").clone();
    let indexed = cluster.indexed.lock().expect("lock").clone();
    assert!(cluster.rejected_429.load(Ordering::SeqCst));
    // The item answered 429 was sent again and indexed; the one answered 400 was dropped.
    assert!(indexed.iter().any(|(i, _)| *i == ids[0]));
    assert!(!indexed.iter().any(|(i, _)| *i == ids[1]));
    assert_eq!(indexed.len(), 3);
}

#[test]
fn a_down_elasticsearch_never_blocks_the_pipeline() {
    let server = crate::support::RedisServer::start();
    let (es, cluster) = serve_bulk();
    cluster.down.store(true, Ordering::SeqCst);
    let dir = sink_content(&server, es);
    publish_fixture(dir.path());
    let engine = crate::support::EngineProcess::start(dir.path(), "a");
    // Detections go on and reach Redis while every bulk request fails.
    assert!(
        crate::support::eventually(crate::support::PATIENCE, || server.alerts(ALERTS).len()
            == 4),
        "{}",
        engine.log()
    );
    assert!(crate::support::eventually(
        crate::support::PATIENCE,
        || metric(&engine, "palisade_es_retries_total").unwrap_or(0) >= 2
    ));
    assert!(cluster.indexed.lock().expect("lock").is_empty());
    engine.stop();

    // The cluster is back after a restart: the sink reads on from its cursor and indexes
    // every alert once.
    cluster.down.store(false, Ordering::SeqCst);
    let engine = crate::support::EngineProcess::start(dir.path(), "b");
    assert!(
        crate::support::eventually(crate::support::PATIENCE, || cluster
            .indexed
            .lock()
            .expect("lock")
            .len()
            == 4),
        "{}",
        engine.log()
    );
    engine.stop();
    assert_eq!(server.alerts(ALERTS).len(), 4, "no alert published twice");
    let mut ids: Vec<String> = cluster
        .indexed
        .lock()
        .expect("lock")
        .iter()
        .map(|(i, _)| i.clone())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4);
}
