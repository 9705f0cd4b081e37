//! Feed pulls against a real HTTP server on loopback, serving recorded-style responses:
//! conditional requests and snapshot expiry, TAXII paging and cursors, MISP restSearch with an
//! API key from the environment, retries on server errors.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::support::{assert_success, palisade, scratch_content, stdout};

/// What the server saw and how it should answer next.
#[derive(Default)]
struct Feeds {
    /// Which Feodo file version to serve.
    feodo_version: AtomicUsize,
    /// Requests as `METHOD path?query [header=value]`.
    seen: Mutex<Vec<String>>,
    /// Failures still to serve on the flaky route.
    flaky_failures: AtomicUsize,
}

type Shared = Arc<Feeds>;

fn log(feeds: &Feeds, line: String) {
    feeds.seen.lock().expect("lock").push(line);
}

async fn feodo(State(feeds): State<Shared>, headers: HeaderMap) -> Response {
    let version = feeds.feodo_version.load(Ordering::SeqCst);
    let etag = format!("\"v{version}\"");
    let if_none_match = headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    log(
        &feeds,
        format!("GET /feodo.csv if-none-match={if_none_match}"),
    );
    if if_none_match == etag {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut body = String::from(
        "\"first_seen_utc\",\"dst_ip\",\"dst_port\",\"c2_status\",\"last_online\",\"malware\"\n",
    );
    body.push_str(
        "\"2025-11-01 00:00:00\",\"51.178.161.32\",\"443\",\"online\",\"2025-11-02\",\"Dridex\"\n",
    );
    if version == 1 {
        body.push_str(
            "\"2025-11-01 00:00:00\",\"185.12.33.4\",\"80\",\"online\",\"2025-11-02\",\"Emotet\"\n",
        );
    }
    ([("etag", etag)], body).into_response()
}

fn taxii_object(id: &str, ip: &str) -> serde_json::Value {
    serde_json::json!({"type": "indicator", "spec_version": "2.1", "id": format!("indicator--{id}"),
        "created": "2025-11-01T00:00:00.000Z", "modified": "2025-11-01T00:00:00.000Z",
        "pattern": format!("[ipv4-addr:value = '{ip}']"), "pattern_type": "stix",
        "valid_from": "2025-11-01T00:00:00Z", "confidence": 80, "indicator_types": ["malicious-activity"]})
}

async fn taxii(
    State(feeds): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut keys: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    keys.sort();
    log(&feeds, format!("GET taxii {}", keys.join("&")));
    if accept != "application/taxii+json;version=2.1" {
        return (StatusCode::NOT_ACCEPTABLE, "wrong Accept").into_response();
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer taxii-secret") {
        return (StatusCode::UNAUTHORIZED, "no token").into_response();
    }
    let (objects, more, next, added_last) = match (
        query.get("next").map(String::as_str),
        query.get("added_after").map(String::as_str),
    ) {
        (Some("page-2"), _) => (
            vec![
                taxii_object("b", "203.0.113.77"),
                taxii_object("c", "198.51.100.99"),
            ],
            false,
            None,
            "2025-11-02T00:00:00.000Z",
        ),
        (None, Some("2025-11-02T00:00:00.000Z")) => (
            vec![taxii_object("d", "192.0.2.44")],
            false,
            None,
            "2025-11-03T00:00:00.000Z",
        ),
        (None, None) => (
            vec![taxii_object("a", "45.9.148.3")],
            true,
            Some("page-2"),
            "2025-11-01T00:00:00.000Z",
        ),
        _ => return (StatusCode::BAD_REQUEST, "unexpected query").into_response(),
    };
    let mut envelope = serde_json::json!({"more": more, "objects": objects});
    if let Some(next) = next {
        envelope["next"] = next.into();
    }
    (
        [
            ("content-type", "application/taxii+json;version=2.1"),
            ("x-taxii-date-added-last", added_last),
        ],
        envelope.to_string(),
    )
        .into_response()
}

async fn misp(State(feeds): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    log(
        &feeds,
        format!(
            "POST restSearch page={} timestamp={}",
            body["page"], body["timestamp"]
        ),
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("misp-secret") {
        return (StatusCode::FORBIDDEN, "bad key").into_response();
    }
    let attribute = |value: &str, stamp: &str| serde_json::json!({"type": "domain", "value": value, "to_ids": true, "timestamp": stamp, "uuid": value});
    let attributes = match (body["page"].as_i64(), body["timestamp"].as_str()) {
        (Some(1), None) => vec![
            attribute("evil-one.example", "1700000001"),
            attribute("evil-two.example", "1700000005"),
        ],
        (Some(2), None) => vec![attribute("evil-three.example", "1700000003")],
        (Some(1), Some("1700000005")) => vec![],
        _ => vec![],
    };
    serde_json::json!({"response": {"Attribute": attributes}})
        .to_string()
        .into_response()
}

async fn flaky(State(feeds): State<Shared>) -> Response {
    log(&feeds, "GET /flaky.txt".into());
    if feeds.flaky_failures.load(Ordering::SeqCst) > 0 {
        feeds.flaky_failures.fetch_sub(1, Ordering::SeqCst);
        return (StatusCode::INTERNAL_SERVER_ERROR, "try later").into_response();
    }
    "203.0.113.200\n".into_response()
}

/// Starts the feed server on a free loopback port, on its own thread and runtime.
fn serve() -> (SocketAddr, Shared) {
    let feeds: Shared = Arc::new(Feeds {
        feodo_version: AtomicUsize::new(1),
        ..Feeds::default()
    });
    let app = Router::new()
        .route("/feodo.csv", get(feodo))
        .route("/taxii/collections/c1/objects/", get(taxii))
        .route("/misp/attributes/restSearch", post(misp))
        .route("/flaky.txt", get(flaky))
        .with_state(feeds.clone());
    let address = crate::support::serve_http(app);
    (address, feeds)
}

fn content_with_feeds(feeds_yaml: &str) -> tempfile::TempDir {
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!("intel:\n  feeds:\n{feeds_yaml}"),
    )
    .expect("config");
    dir
}

fn pull(dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["intel", "pull"])
        .current_dir(dir)
        .env("TAXII_TOKEN", "taxii-secret")
        .env("MISP_KEY", "misp-secret")
        .output()
        .expect("palisade runs")
}

fn lookup_matches(dir: &std::path::Path, value: &str) -> bool {
    palisade(&["intel", "lookup", value], dir).status.code() == Some(0)
}

#[test]
fn a_snapshot_list_is_fetched_only_when_changed_and_expires_what_vanished() {
    let (address, feeds) = serve();
    let dir = content_with_feeds(&format!(
        "    - {{name: feodo, type: http, url: \"http://{address}/feodo.csv\", format: feodo, snapshot: true}}\n"
    ));
    let out = pull(dir.path());
    assert_success(&out);
    assert!(
        stdout(&out).contains("feodo: 2 indicator(s) stored"),
        "{}",
        stdout(&out)
    );
    assert!(lookup_matches(dir.path(), "185.12.33.4"));

    let out = pull(dir.path());
    assert!(
        stdout(&out).contains("feodo: not modified"),
        "{}",
        stdout(&out)
    );

    feeds.feodo_version.store(2, Ordering::SeqCst);
    let out = pull(dir.path());
    assert!(stdout(&out).contains("1 expired"), "{}", stdout(&out));
    assert!(
        !lookup_matches(dir.path(), "185.12.33.4"),
        "an address gone from the snapshot no longer matches"
    );
    assert!(lookup_matches(dir.path(), "51.178.161.32"));

    let seen = feeds.seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        [
            "GET /feodo.csv if-none-match=",
            "GET /feodo.csv if-none-match=\"v1\"",
            "GET /feodo.csv if-none-match=\"v1\""
        ]
    );
}

#[test]
fn a_taxii_collection_is_paged_and_resumed_from_its_cursor() {
    let (address, feeds) = serve();
    let dir = content_with_feeds(&format!(
        "    - {{name: partner, type: taxii, url: \"http://{address}/taxii/collections/c1/\", api_key_env: TAXII_TOKEN, page_size: 2}}\n"
    ));
    let out = pull(dir.path());
    assert_success(&out);
    assert!(
        stdout(&out).contains("partner: 3 indicator(s) stored, 0 skipped, 0 expired, 2 page(s)"),
        "{}",
        stdout(&out)
    );
    let out = pull(dir.path());
    assert!(
        stdout(&out).contains("partner: 1 indicator(s) stored"),
        "{}",
        stdout(&out)
    );
    assert!(
        lookup_matches(dir.path(), "45.9.148.3")
            && lookup_matches(dir.path(), "198.51.100.99")
            && lookup_matches(dir.path(), "192.0.2.44")
    );
    let seen = feeds.seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        [
            "GET taxii limit=2",
            "GET taxii added_after=2025-11-01T00:00:00.000Z&limit=2&next=page-2",
            "GET taxii added_after=2025-11-02T00:00:00.000Z&limit=2",
        ]
    );
    let stats = stdout(&palisade(&["intel", "stats"], dir.path()));
    assert!(
        stats.contains("feed partner: ok, last pulled")
            && stats.contains("cursor 2025-11-03T00:00:00.000Z"),
        "{stats}"
    );
}

#[test]
fn misp_rest_search_uses_the_key_from_the_environment_and_a_timestamp_cursor() {
    let (address, feeds) = serve();
    let dir = content_with_feeds(&format!(
        "    - {{name: misp, type: misp, url: \"http://{address}/misp\", api_key_env: MISP_KEY, page_size: 2}}\n"
    ));
    let out = pull(dir.path());
    assert_success(&out);
    assert!(
        stdout(&out).contains("misp: 3 indicator(s) stored"),
        "{}",
        stdout(&out)
    );
    pull(dir.path());
    assert!(lookup_matches(dir.path(), "www.evil-three.example"));
    let seen = feeds.seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        [
            "POST restSearch page=1 timestamp=null",
            "POST restSearch page=2 timestamp=null",
            "POST restSearch page=1 timestamp=\"1700000005\""
        ]
    );
}

#[test]
fn server_errors_are_retried_and_bad_urls_are_reported() {
    let (address, feeds) = serve();
    feeds.flaky_failures.store(2, Ordering::SeqCst);
    let dir = content_with_feeds(&format!(
        "    - {{name: flaky, type: http, url: \"http://{address}/flaky.txt\", format: plain}}\n    - {{name: missing, type: http, url: \"http://{address}/nothing-here.csv\", format: feodo}}\n"
    ));
    let out = pull(dir.path());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("flaky: 1 indicator(s) stored"), "{text}");
    assert!(
        text.contains("missing: failed: feed `missing` answered 404"),
        "{text}"
    );
    assert_eq!(
        feeds
            .seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| *l == "GET /flaky.txt")
            .count(),
        3,
        "two failures, then success"
    );
    let stats = stdout(&palisade(&["intel", "stats"], dir.path()));
    assert!(
        stats.contains("feed missing: FAILED at ")
            && stats.contains(": feed `missing` answered 404")
            && stats.contains("last good pull never"),
        "{stats}"
    );
}

#[test]
fn a_running_engine_pulls_on_schedule_and_matches_without_a_restart() {
    use std::io::{BufRead, Write};
    let (address, _feeds) = serve();
    let dir = content_with_feeds(&format!(
        "    - {{name: feodo, type: http, url: \"http://{address}/feodo.csv\", format: feodo, snapshot: true, every: 1h}}\n"
    ));
    let log = dir.path().join("engine.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("run")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("palisade runs");
    assert!(
        crate::support::eventually(crate::support::PATIENCE, || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("threat intelligence reloaded")
        }),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, r#"{{"type":"network_connection","timestamp":1,"id":"late","host":"ws-17","pid":1234,"name":"svchost.exe","remote_ip":"185.12.33.4","remote_port":80}}"#).expect("write");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("an alert line").expect("read");
    assert!(
        first.contains("intel-c2-connection") && first.contains("Emotet, feodo"),
        "{first}"
    );
    drop(stdin);
    let _ = child.wait();
}
