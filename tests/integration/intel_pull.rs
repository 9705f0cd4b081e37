//! Feed pulls against a real HTTP server on loopback, serving recorded-style responses:
//! conditional requests and snapshot expiry, TAXII paging and cursors, MISP restSearch with an
//! API key from the environment, retries on server errors; and servers that misbehave: endless
//! and slow bodies, maintenance pages, looping pagers, redirects to another host.

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

// ---------------------------------------------------------------------------------------------
// Hostile feed servers: each route misbehaves in one way a real server has been seen to.

/// What the hostile server saw.
#[derive(Default)]
struct Hostile {
    /// Which version of `/list.txt` to serve: 0 the good list, then the bad answers.
    list_mode: AtomicUsize,
    /// Bytes of endless bodies produced so far.
    streamed: AtomicUsize,
    /// Requests per route.
    hits: Mutex<HashMap<String, usize>>,
    /// Headers seen by the other host's route, as `name=value`.
    other_host_headers: Mutex<Vec<String>>,
}

fn count(hostile: &Hostile, route: &str) {
    *hostile
        .hits
        .lock()
        .expect("lock")
        .entry(route.to_string())
        .or_default() += 1;
}

fn hits(hostile: &Hostile, route: &str) -> usize {
    hostile
        .hits
        .lock()
        .expect("lock")
        .get(route)
        .copied()
        .unwrap_or(0)
}

const GOOD_LIST: &str = "203.0.113.10\n203.0.113.11\n";

/// An endless body of plain-list lines, counted as it is produced.
fn endless(hostile: Arc<Hostile>) -> axum::body::Body {
    let line = "198.51.100.1\n".repeat(4096);
    let stream = futures_util::stream::repeat_with(move || {
        hostile.streamed.fetch_add(line.len(), Ordering::SeqCst);
        Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(line.clone()))
    });
    axum::body::Body::from_stream(stream)
}

/// A snapshot list that is good first (mode 0), then answers one hostile way per mode.
async fn list(State(hostile): State<Arc<Hostile>>) -> Response {
    count(&hostile, "list");
    match hostile.list_mode.load(Ordering::SeqCst) {
        0 => GOOD_LIST.into_response(),
        // An endless chunked body.
        1 => endless(hostile.clone()).into_response(),
        // An endless body announced as 2 GiB.
        2 => (
            [("content-length", (2u64 << 30).to_string())],
            endless(hostile.clone()),
        )
            .into_response(),
        // A maintenance page, 200 text/html.
        3 => (
            [("content-type", "text/html; charset=utf-8")],
            "<html><body><h1>Down for maintenance</h1>\n<p>Back soon.</p></body></html>\n",
        )
            .into_response(),
        // The same page served as text/plain.
        4 => (
            [("content-type", "text/plain")],
            "<!DOCTYPE html>\n<html><body>Down for maintenance</body></html>\n",
        )
            .into_response(),
        // An empty body.
        5 => "".into_response(),
        // One address among nine lines of junk.
        6 => "203.0.113.10\nerror: quota exceeded\nplease retry later\nsee status page\nx\ny\nz\nw\nv\nu\n".into_response(),
        // Headers, then a byte every half second, forever.
        _ => {
            let stream = futures_util::stream::unfold((), |()| async {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                Some((
                    Ok::<_, std::convert::Infallible>(axum::body::Bytes::from_static(b"1")),
                    (),
                ))
            });
            axum::body::Body::from_stream(stream).into_response()
        }
    }
}

/// A TAXII server whose `next` never changes and whose page never does either.
async fn taxii_loop(State(hostile): State<Arc<Hostile>>) -> Response {
    count(&hostile, "taxii-loop");
    let envelope = serde_json::json!({"more": true, "next": "same-page",
        "objects": [taxii_object("loop", "192.0.2.200")]});
    (
        [
            ("content-type", "application/taxii+json;version=2.1"),
            ("x-taxii-date-added-last", "2025-11-01T00:00:00.000Z"),
        ],
        envelope.to_string(),
    )
        .into_response()
}

/// A TAXII server that pages forever, a new `next` and a new object each time (slowly, a
/// second a page, on `/slow`).
async fn taxii_endless(State(hostile): State<Arc<Hostile>>, uri: axum::http::Uri) -> Response {
    count(&hostile, "taxii-endless");
    if uri.path().starts_with("/slow") {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let n = hits(&hostile, "taxii-endless");
    let envelope = serde_json::json!({"more": true, "next": format!("page-{n}"),
        "objects": [taxii_object(&format!("e{n}"), &format!("192.0.2.{}", n % 250 + 1))]});
    (
        [("content-type", "application/taxii+json;version=2.1")],
        envelope.to_string(),
    )
        .into_response()
}

fn misp_attribute(n: usize) -> serde_json::Value {
    serde_json::json!({"type": "domain", "value": format!("looping-{n}.example"), "to_ids": true,
        "timestamp": "1700000001"})
}

/// A MISP server that ignores `page`: always the same full page.
async fn misp_same_page(State(hostile): State<Arc<Hostile>>) -> Response {
    count(&hostile, "misp-same");
    serde_json::json!({"response": {"Attribute": [misp_attribute(1), misp_attribute(2)]}})
        .to_string()
        .into_response()
}

/// A MISP server that ignores `limit`: far more attributes than asked for.
async fn misp_flood(State(hostile): State<Arc<Hostile>>) -> Response {
    count(&hostile, "misp-flood");
    let attributes: Vec<_> = (0..5_000).map(misp_attribute).collect();
    serde_json::json!({"response": {"Attribute": attributes}})
        .to_string()
        .into_response()
}

/// Redirects to `to` with the status in the path.
async fn redirect_to(
    State(hostile): State<Arc<Hostile>>,
    axum::extract::Path(status): axum::extract::Path<u16>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    count(&hostile, "redirect");
    let to = query.get("to").cloned().unwrap_or_default();
    (
        StatusCode::from_u16(status).expect("status"),
        [("location", to)],
        "",
    )
        .into_response()
}

/// Another host's feed: it records the headers it is sent and serves a list.
async fn other_host(State(hostile): State<Arc<Hostile>>, headers: HeaderMap) -> Response {
    count(&hostile, "other-host");
    let mut seen = hostile.other_host_headers.lock().expect("lock");
    for (name, value) in &headers {
        seen.push(format!("{name}={}", value.to_str().unwrap_or("")));
    }
    "192.0.2.66\n".into_response()
}

/// The hostile server, and a second server on another port (another host:port to redirect to).
fn serve_hostile() -> (SocketAddr, SocketAddr, Arc<Hostile>) {
    let hostile = Arc::new(Hostile::default());
    let app = Router::new()
        .route("/list.txt", get(list))
        .route("/loop/collections/c1/objects/", get(taxii_loop))
        .route("/endless/collections/c1/objects/", get(taxii_endless))
        .route("/slow/collections/c1/objects/", get(taxii_endless))
        .route("/same/attributes/restSearch", post(misp_same_page))
        .route("/flood/attributes/restSearch", post(misp_flood))
        .route("/redirect/{status}", get(redirect_to))
        .with_state(hostile.clone());
    let address = crate::support::serve_http(app);
    let other = Router::new()
        .route("/list.txt", get(other_host))
        .with_state(hostile.clone());
    let other_address = crate::support::serve_http(other);
    (address, other_address, hostile)
}

fn content_with(config: &str) -> tempfile::TempDir {
    let dir = scratch_content();
    std::fs::write(dir.path().join("palisade.yaml"), config).expect("config");
    dir
}

fn intel_stats(dir: &std::path::Path) -> String {
    stdout(&palisade(&["intel", "stats"], dir))
}

/// A snapshot feed of `/list.txt`, pulled once while good; returns its content directory.
fn pulled_good_list(address: SocketAddr, fetch: &str) -> tempfile::TempDir {
    let dir = content_with(&format!(
        "intel:\n  fetch: {fetch}\n  feeds:\n    - {{name: list, type: http, url: \"http://{address}/list.txt\", format: plain, snapshot: true}}\n"
    ));
    let out = pull(dir.path());
    assert_success(&out);
    assert!(lookup_matches(dir.path(), "203.0.113.10"));
    dir
}

#[test]
fn an_endless_feed_body_is_cut_at_the_cap_and_the_feed_keeps_its_indicators() {
    let (address, _, hostile) = serve_hostile();
    let dir = pulled_good_list(address, "{max_body_bytes: 1048576, read_timeout: 60s}");
    for (mode, what) in [(1, "endless chunked body"), (2, "body announced as 2 GiB")] {
        hostile.list_mode.store(mode, Ordering::SeqCst);
        hostile.streamed.store(0, Ordering::SeqCst);
        let started = std::time::Instant::now();
        let out = pull(dir.path());
        let took = started.elapsed();
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {text}");
        assert!(
            text.contains(&format!(
                "list: failed: feed `list`: http://{address}/list.txt sent more than the 1048576 bytes allowed (`max_body_bytes`)"
            )),
            "{what}: {text}"
        );
        // Unbounded, the pull reads until the server stops (never) or memory runs out; bounded,
        // it stops at the cap: what the server got out before the connection closed is the cap
        // plus what loopback socket buffers hold.
        assert!(
            took < std::time::Duration::from_secs(20),
            "{what}: {took:?}"
        );
        let streamed = hostile.streamed.load(Ordering::SeqCst);
        assert!(
            streamed < 32 << 20,
            "{what}: {streamed} bytes were produced"
        );
        assert!(
            lookup_matches(dir.path(), "203.0.113.10")
                && lookup_matches(dir.path(), "203.0.113.11"),
            "{what}: the feed keeps its indicators"
        );
        assert!(
            !lookup_matches(dir.path(), "198.51.100.1"),
            "{what}: nothing from the capped body is stored"
        );
        let stats = intel_stats(dir.path());
        assert!(
            stats.contains("feed list: FAILED at ") && stats.contains("max_body_bytes"),
            "{what}: {stats}"
        );
    }
}

#[test]
fn a_feed_that_drips_slower_than_the_read_timeout_is_cut_and_stores_nothing() {
    let (address, _, hostile) = serve_hostile();
    let dir = pulled_good_list(address, "{read_timeout: 2s}");
    hostile.list_mode.store(7, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let out = pull(dir.path());
    let took = started.elapsed();
    let text = stdout(&out);
    assert!(
        text.contains("did not answer completely within 2s (`read_timeout`)"),
        "{text}"
    );
    // Not retried: a limit hit is not a passing fault.
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    assert_eq!(hits(&hostile, "list"), 2);
    assert!(lookup_matches(dir.path(), "203.0.113.11"));
}

#[test]
fn a_snapshot_that_is_not_the_feeds_data_expires_nothing() {
    let (address, _, hostile) = serve_hostile();
    let dir = pulled_good_list(address, "{}");
    for (mode, what, reason) in [
        (
            3,
            "200 text/html maintenance page",
            "answered a web page (`text/html`)",
        ),
        (
            4,
            "HTML served as text/plain",
            "answered markup (it starts with `<`)",
        ),
        (
            5,
            "empty body",
            "sent an empty snapshot (0 entries skipped, none parsed)",
        ),
        (
            6,
            "one address among nine junk lines",
            "only 1 of 10 entries parse (10%, below `intel.fetch.min_parsed_ratio` 0.5)",
        ),
    ] {
        hostile.list_mode.store(mode, Ordering::SeqCst);
        let out = pull(dir.path());
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {text}");
        assert!(text.contains(reason), "{what}: {text}");
        assert!(
            text.contains("nothing was expired") || text.contains("nothing was stored or expired"),
            "{what}: {text}"
        );
        assert!(
            lookup_matches(dir.path(), "203.0.113.11"),
            "{what} must not expire the list"
        );
        let stats = intel_stats(dir.path());
        assert!(
            stats.contains("feed list: FAILED at ") && stats.contains(reason),
            "{what}: {stats}"
        );
    }
    // The good list again: the feed is healthy.
    hostile.list_mode.store(0, Ordering::SeqCst);
    assert_success(&pull(dir.path()));
    assert!(intel_stats(dir.path()).contains("feed list: ok, last pulled"));
}

#[test]
fn a_taxii_next_that_never_changes_stops_the_pull_stores_nothing_and_the_other_feed_is_pulled() {
    let (address, _, hostile) = serve_hostile();
    let (good, _) = serve();
    let dir = content_with_feeds(&format!(
        "    - {{name: looping, type: taxii, url: \"http://{address}/loop/collections/c1/\", page_size: 5}}\n    - {{name: feodo, type: http, url: \"http://{good}/feodo.csv\", format: feodo, snapshot: true}}\n"
    ));
    let out = pull(dir.path());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("looping: failed: feed `looping`")
            && (text.contains("is the same as page 1")
                || text.contains("led back to a page already asked for")),
        "{text}"
    );
    assert!(text.contains("feodo: 2 indicator(s) stored"), "{text}");
    assert!(
        hits(&hostile, "taxii-loop") <= 3,
        "asked {} times",
        hits(&hostile, "taxii-loop")
    );
    assert!(
        !lookup_matches(dir.path(), "192.0.2.200"),
        "nothing from the looping pull is stored"
    );
    assert!(lookup_matches(dir.path(), "185.12.33.4"));
    let stats = intel_stats(dir.path());
    assert!(
        stats.contains("feed looping: FAILED at ")
            && stats.contains("last good pull never")
            && stats.contains("feed feodo: ok"),
        "{stats}"
    );
}

#[test]
fn a_taxii_server_that_pages_forever_stops_at_max_pages() {
    let (address, _, hostile) = serve_hostile();
    let dir = content_with(&format!(
        "intel:\n  fetch: {{max_pages: 20}}\n  feeds:\n    - {{name: endless, type: taxii, url: \"http://{address}/endless/collections/c1/\"}}\n"
    ));
    let text = stdout(&pull(dir.path()));
    assert!(
        text.contains("feed `endless` has more than 20 pages (`intel.fetch.max_pages`); nothing from this pull was stored"),
        "{text}"
    );
    assert_eq!(hits(&hostile, "taxii-endless"), 20);
    assert!(!lookup_matches(dir.path(), "192.0.2.1"));
    assert!(intel_stats(dir.path()).contains("feed endless: FAILED at "));
}

#[test]
fn a_paged_feed_slow_on_every_page_stops_at_max_pull_time() {
    let (address, _, hostile) = serve_hostile();
    let dir = content_with(&format!(
        "intel:\n  fetch: {{max_pull_time: 3s, read_timeout: 2s}}\n  feeds:\n    - {{name: slow, type: taxii, url: \"http://{address}/slow/collections/c1/\"}}\n"
    ));
    let started = std::time::Instant::now();
    let text = stdout(&pull(dir.path()));
    assert!(
        text.contains("feed `slow`: the pull took longer than 3s (`intel.fetch.max_pull_time`); nothing from it was stored"),
        "{text}"
    );
    // Each page is within `read_timeout`; only the whole pull's limit stops it.
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
    assert!(hits(&hostile, "taxii-endless") <= 4);
    assert!(!lookup_matches(dir.path(), "192.0.2.2"));
}

#[test]
fn a_misp_server_that_ignores_page_or_limit_is_stopped_and_stores_nothing() {
    let (address, _, hostile) = serve_hostile();
    let dir = content_with_feeds(&format!(
        "    - {{name: same, type: misp, url: \"http://{address}/same\", page_size: 2}}\n    - {{name: flood, type: misp, url: \"http://{address}/flood\", page_size: 100}}\n"
    ));
    let text = stdout(&pull(dir.path()));
    assert!(
        text.contains("same: failed: feed `same`: page 2 is the same as page 1"),
        "{text}"
    );
    assert!(
        text.contains("flood: failed: feed `flood`: page 1 has 5000 attributes, more than the 100 asked for (`page_size`)"),
        "{text}"
    );
    assert_eq!(hits(&hostile, "misp-same"), 2);
    assert_eq!(hits(&hostile, "misp-flood"), 1);
    assert!(!lookup_matches(dir.path(), "looping-1.example"));
    let stats = intel_stats(dir.path());
    assert!(
        stats.contains("feed same: FAILED at ") && stats.contains("feed flood: FAILED at "),
        "{stats}"
    );
}

#[test]
fn a_feed_redirected_to_another_host_is_refused_and_its_key_never_leaves() {
    let (address, other, hostile) = serve_hostile();
    for status in [301, 302, 307] {
        let target = format!("http://{other}/list.txt");
        let dir = content_with_feeds(&format!(
            "    - {{name: moved, type: http, url: \"http://{address}/redirect/{status}?to={target}\", format: plain, api_key_env: MISP_KEY, api_key_header: Auth-Key}}\n"
        ));
        let text = stdout(&pull(dir.path()));
        assert!(
            text.contains(&format!(
                "redirected (HTTP {status}) to {target}, which was not followed: it is another host"
            )),
            "{status}: {text}"
        );
        assert!(!lookup_matches(dir.path(), "192.0.2.66"), "{status}");
        let stats = intel_stats(dir.path());
        assert!(
            stats.contains("feed moved: FAILED at ") && stats.contains(&target),
            "{status}: {stats}"
        );
    }
    assert_eq!(
        hits(&hostile, "other-host"),
        0,
        "the other host is never asked"
    );
    assert!(hostile.other_host_headers.lock().expect("lock").is_empty());
}

#[test]
fn a_same_host_redirect_is_followed_and_none_refuses_it() {
    let (address, _, hostile) = serve_hostile();
    let dir = content_with_feeds(&format!(
        "    - {{name: moved, type: http, url: \"http://{address}/redirect/301?to=/list.txt\", format: plain, snapshot: true}}\n"
    ));
    let out = pull(dir.path());
    assert_success(&out);
    assert!(stdout(&out).contains("moved: 2 indicator(s) stored"));
    assert_eq!(hits(&hostile, "redirect"), 1);
    assert_eq!(hits(&hostile, "list"), 1);
    assert!(lookup_matches(dir.path(), "203.0.113.10"));
    // `redirects: none` refuses even that.
    let dir = content_with(&format!(
        "intel:\n  fetch: {{redirects: none}}\n  feeds:\n    - {{name: moved, type: http, url: \"http://{address}/redirect/301?to=/list.txt\", format: plain}}\n"
    ));
    let text = stdout(&pull(dir.path()));
    assert!(
        text.contains("which was not followed: redirects are not followed (`redirects: none`)"),
        "{text}"
    );
}

/// `GET /metrics` from a running engine's endpoint.
fn scrape_metrics(address: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

#[test]
fn a_running_engine_logs_and_counts_a_feed_limit_and_does_not_hammer_the_failed_feed() {
    let (address, _, hostile) = serve_hostile();
    let (good, _) = serve();
    hostile.list_mode.store(1, Ordering::SeqCst);
    let dir = content_with(&format!(
        "http:\n  listen: 127.0.0.1:0\nintel:\n  fetch: {{max_body_bytes: 1048576}}\n  feeds:\n    - {{name: list, type: http, url: \"http://{address}/list.txt\", format: plain, snapshot: true, every: 1m}}\n    - {{name: feodo, type: http, url: \"http://{good}/feodo.csv\", format: feodo, snapshot: true, every: 1h}}\n"
    ));
    let (mut child, log) = crate::support::run_on_pipes(dir.path());
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        crate::support::eventually(crate::support::PATIENCE, || {
            let text = read_log();
            text.contains("threat intelligence reloaded") && text.contains("max_body_bytes")
        }),
        "{}",
        read_log()
    );
    let endpoint = read_log()
        .split("on http://")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '"').next())
        .expect("the endpoint is logged")
        .to_string();
    let metrics = scrape_metrics(&endpoint);
    assert!(
        metrics.contains("palisade_outbound_limit_hits_total{edge=\"feed\",limit=\"body_size\"} 1"),
        "{metrics}"
    );
    // A failed feed waits before its next try instead of being pulled on every pass.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(hits(&hostile, "list"), 1, "{}", read_log());
    crate::support::terminate(&child);
    let _ = child.wait();
}
