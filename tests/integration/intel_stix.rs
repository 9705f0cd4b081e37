//! STIX patterns as TAXII feeds publish them, through the real binary and the real SQLite state
//! file: ranges (`ISSUBSET`), `IN` lists, `OR` at both levels, refusals counted per reason, and
//! the per-feed subdomain choice against a real HTTP server on loopback.

use std::path::Path;
use std::process::Output;

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use crate::support::{assert_success, json_lines, palisade, scratch_content, stdout};

/// A bundle of one indicator per pattern, ids `indicator--0000...N`.
fn bundle(patterns: &[&str]) -> String {
    let objects: Vec<Value> = patterns
        .iter()
        .enumerate()
        .map(|(n, pattern)| {
            json!({"type": "indicator", "spec_version": "2.1",
                "id": format!("indicator--00000000-0000-4000-8000-{n:012}"),
                "created": "2025-11-01T00:00:00.000Z", "modified": "2025-11-01T00:00:00.000Z",
                "name": "C2 range", "pattern": pattern, "pattern_type": "stix",
                "valid_from": "2025-11-01T00:00:00Z", "confidence": 90,
                "indicator_types": ["malicious-activity"]})
        })
        .collect();
    json!({"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000", "objects": objects})
        .to_string()
}

fn content() -> tempfile::TempDir {
    let dir = scratch_content();
    std::fs::create_dir_all(dir.path().join("warninglists")).expect("mkdir");
    dir
}

fn import(dir: &Path, patterns: &[&str]) -> Output {
    std::fs::write(dir.join("bundle.json"), bundle(patterns)).expect("bundle");
    palisade(&["intel", "import", "bundle.json", "--format", "stix"], dir)
}

fn matches(dir: &Path, value: &str) -> bool {
    palisade(&["intel", "lookup", value], dir).status.code() == Some(0)
}

#[test]
fn an_issubset_range_in_a_stix_bundle_is_imported_and_a_connection_into_it_is_detected() {
    let dir = content();
    let out = import(
        dir.path(),
        &[
            "[ipv4-addr:value ISSUBSET '198.51.100.0/24']",
            "[ipv6-addr:value ISSUBSET '2001:db8:5::/48']",
        ],
    );
    assert_success(&out);
    assert!(
        stdout(&out).contains("imported 2 indicator(s)"),
        "{}",
        stdout(&out)
    );
    let events = [
        json!({"type": "network_connection", "timestamp": "2025-11-03T14:30:05Z", "id": "into-v4",
            "host": "ws-17", "pid": 1234, "name": "svchost.exe", "remote_ip": "198.51.100.77", "remote_port": 443}),
        json!({"type": "network_connection", "timestamp": "2025-11-03T14:30:06Z", "id": "into-v6",
            "host": "ws-17", "pid": 1234, "name": "svchost.exe", "remote_ip": "2001:db8:5:1::9", "remote_port": 443}),
        json!({"type": "network_connection", "timestamp": "2025-11-03T14:30:07Z", "id": "outside",
            "host": "ws-17", "pid": 1234, "name": "svchost.exe", "remote_ip": "198.51.101.1", "remote_port": 443}),
    ];
    let text: Vec<String> = events.iter().map(Value::to_string).collect();
    std::fs::write(dir.path().join("events.jsonl"), text.join("\n") + "\n").expect("events");
    let out = palisade(&["replay", "--events", "events.jsonl"], dir.path());
    assert_success(&out);
    let lines = json_lines(&stdout(&out));
    let detection = |id: &str| {
        lines
            .iter()
            .find(|l| l["kind"] == "detection" && l["event_id"] == id)
            .cloned()
    };
    let v4 = detection("into-v4").expect("a connection into the published range is detected");
    assert_eq!(v4["rule"], "intel-c2-connection");
    assert_eq!(v4["intel"][0]["indicator"], "198.51.100.0/24");
    assert_eq!(v4["intel"][0]["source"], "stix");
    let v6 = detection("into-v6").expect("an IPv6 range is detected too");
    assert_eq!(v6["intel"][0]["indicator"], "2001:db8:5::/48");
    assert!(
        detection("outside").is_none(),
        "an address outside the range is not detected"
    );
}

#[test]
fn in_lists_and_or_patterns_store_every_indicator_they_mean() {
    let dir = content();
    let out = import(
        dir.path(),
        &[
            "[ipv4-addr:value IN ('203.0.113.5', '203.0.113.6') OR ipv4-addr:value = '203.0.113.7']",
            "[domain-name:value = 'c2.example'] OR [url:value = 'http://c2.example/gate.php']",
            "[file:hashes.MD5 = '44d88612fea8a8f36de82e1278abb02f' AND file:hashes.'SHA-256' = \
             '275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f']",
            "[domain-name:value = 'tree.example' OR domain-name:value LIKE '%.tree.example']",
        ],
    );
    assert_success(&out);
    assert!(
        stdout(&out).contains("imported 8 indicator(s)"),
        "{}",
        stdout(&out)
    );
    for value in [
        "203.0.113.5",
        "203.0.113.6",
        "203.0.113.7",
        "c2.example",
        "http://c2.example/gate.php",
        "44d88612fea8a8f36de82e1278abb02f",
        "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
        "tree.example",
        "a.b.tree.example",
    ] {
        assert!(matches(dir.path(), value), "{value} is stored");
    }
    // STIX equality is exact: the plain domain does not cover its subdomains.
    assert!(!matches(dir.path(), "www.c2.example"));
}

#[test]
fn refusals_are_counted_per_reason_in_intel_import() {
    let dir = content();
    let out = import(
        dir.path(),
        &[
            "[ipv4-addr:value = '203.0.113.9']",
            "[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [ipv4-addr:value = '5.6.7.8']",
            "[domain-name:value = 'a.example'] FOLLOWEDBY [url:value = 'http://b.example/']",
            "[ipv4-addr:value = '1.2.3.4'] WITHIN 60 SECONDS",
            "[ipv4-addr:value = '1.2.3.4'] REPEATS 5 TIMES",
            "[ipv4-addr:value = '1.2.3.4'] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'",
            "[ipv4-addr:value = 'unterminated]",
        ],
    );
    let text = stdout(&out);
    assert!(text.contains("imported 1 indicator(s)"), "{text}");
    assert!(text.contains("skipped or refused 6 entries:"), "{text}");
    for line in [
        "  2 FOLLOWEDBY orders several events, which no indicator matches alone",
        "  1 WITHIN bounds events in time, which no indicator matches alone",
        "  1 REPEATS counts events, which no indicator matches alone",
        "  1 START/STOP bounds when observations count, which an indicator does not check",
        "  1 pattern is not valid STIX patterning",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    }
    // The example names the file, the line of the pattern and the indicator.
    assert!(
        text.contains(
            "bundle.json:1:" // the bundle is written on one line
        ) && text.contains(
            "indicator `indicator--00000000-0000-4000-8000-000000000006`: pattern is not valid STIX patterning: the string opened at byte 19 is never closed"
        ),
        "{text}"
    );
    assert!(matches(dir.path(), "203.0.113.9"));
    assert!(
        !matches(dir.path(), "5.6.7.8"),
        "nothing from a refusal is stored"
    );
}

#[test]
fn a_like_pattern_that_cannot_be_matched_exactly_is_refused_not_widened() {
    let dir = content();
    let out = import(
        dir.path(),
        &[
            // `%evil.example` also matches `notevil.example`: no domain indicator is that.
            "[domain-name:value LIKE '%evil.example']",
            // The names under `bad.example` but not `bad.example` itself.
            "[domain-name:value LIKE '%.bad.example']",
            "[url:value LIKE 'http://worse.example/%']",
            "[domain-name:value MATCHES '^wor.e\\\\.example$']",
        ],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("imported 0 indicator(s)"), "{text}");
    assert!(
        text.lines()
            .any(|l| l
                == "  3 LIKE or MATCHES pattern cannot be matched exactly; refused, not widened"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l == "  1 pattern matches a domain's subdomains but not the domain, which no domain indicator expresses"),
        "{text}"
    );
    for value in [
        "evil.example",
        "notevil.example",
        "bad.example",
        "www.bad.example",
        "http://worse.example/a",
        "worse.example",
    ] {
        assert!(!matches(dir.path(), value), "{value} is not stored");
    }
}

#[test]
fn a_feed_chooses_whether_its_domains_cover_subdomains() {
    let app = Router::new()
        .route("/exact.txt", get(|| async { "exact-feed.example\n" }))
        .route("/wide.txt", get(|| async { "wide-feed.example\n" }))
        .route(
            "/stix.json",
            get(|| async { bundle(&["[domain-name:value = 'stix-feed.example']"]) }),
        );
    let address = crate::support::serve_http(app);
    let dir = content();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!(
            "intel:\n  feeds:\n\
             \x20   - {{name: exact, type: http, url: \"http://{address}/exact.txt\", format: plain, subdomains: false}}\n\
             \x20   - {{name: wide, type: http, url: \"http://{address}/wide.txt\", format: plain}}\n\
             \x20   - {{name: stix-wide, type: http, url: \"http://{address}/stix.json\", format: stix, subdomains: true}}\n"
        ),
    )
    .expect("config");
    let out = palisade(&["intel", "pull"], dir.path());
    assert_success(&out);
    assert!(matches(dir.path(), "exact-feed.example"));
    assert!(
        !matches(dir.path(), "www.exact-feed.example"),
        "`subdomains: false` keeps a plain list's domain exact"
    );
    assert!(
        matches(dir.path(), "www.wide-feed.example"),
        "a plain list's domains cover subdomains by default"
    );
    assert!(
        matches(dir.path(), "www.stix-feed.example"),
        "`subdomains: true` widens a STIX feed's domains by the operator's choice"
    );

    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!(
            "intel:\n  feeds:\n    - {{name: x, type: http, url: \"http://{address}/exact.txt\", format: plain, subdomains: sometimes}}\n"
        ),
    )
    .expect("config");
    let out = palisade(&["intel", "pull"], dir.path());
    assert_ne!(out.status.code(), Some(0));
    let said = format!("{}{}", stdout(&out), crate::support::stderr(&out));
    assert!(said.contains("subdomains"), "{said}");
}
