//! Poisoned and sloppy feeds through the real binary: the SQLite state file, and the real
//! nftables in a network namespace of its own. The intel side alone must keep a feed row for
//! `0.0.0.0/0` or a public resolver from becoming a block.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::support::{assert_success, palisade, repo, scratch_content, stdout};

/// A content directory with the shipped rules, playbooks and warninglists.
fn content() -> tempfile::TempDir {
    let dir = scratch_content();
    let lists = dir.path().join("warninglists");
    std::fs::create_dir_all(&lists).expect("mkdir");
    for entry in std::fs::read_dir(repo().join("warninglists")).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            std::fs::copy(&path, lists.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    dir
}

fn import(dir: &Path, file: &str, text: &str, format: &str) -> Output {
    std::fs::write(dir.join(file), text).expect("feed");
    palisade(&["intel", "import", file, "--format", format], dir)
}

/// `palisade intel stats`'s first line: "N indicator(s): ...".
fn stats(dir: &Path) -> String {
    stdout(&palisade(&["intel", "stats"], dir))
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn wrong_typed_feed_field_stores_nothing() {
    let dir = content();
    let out = import(dir.path(), "ok.txt", "185.12.33.4\nevil.example\n", "plain");
    assert_success(&out);
    let before = stats(dir.path());
    assert!(before.starts_with("2 indicator(s)"), "{before}");
    for (file, text, format, expected) in [
        (
            "confidence.json",
            "{\"type\": \"bundle\", \"objects\": [\n {\"type\": \"indicator\", \"pattern\": \"[ipv4-addr:value = '198.51.100.7']\"},\n {\"type\": \"indicator\", \"pattern\": \"[ipv4-addr:value = '198.51.100.8']\", \"confidence\": \"high\"}]}",
            "stix",
            "confidence.json:3:",
        ),
        (
            "until.json",
            "{\"type\": \"bundle\", \"objects\": [\n {\"type\": \"indicator\", \"pattern\": \"[ipv4-addr:value = '198.51.100.7']\", \"valid_until\": \"tomorrow\"}]}",
            "stix",
            "until.json:2:",
        ),
        (
            "attributes.json",
            "{\"Event\": {\"info\": \"x\", \"Attribute\": \"not a list\"}}",
            "misp",
            "Event.Attribute: must be a list",
        ),
    ] {
        let out = import(dir.path(), file, text, format);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert!(
            stdout(&out).contains(expected) && stdout(&out).contains("nothing was imported"),
            "{}",
            stdout(&out)
        );
        assert_eq!(stats(dir.path()), before, "{file} changed the store");
    }
}

#[test]
fn junk_plain_list_prints_a_bounded_report() {
    let dir = content();
    // 5 MB of lines no feed would write, each distinct.
    let junk: String = (0..400_000u32).map(|n| format!("!!e${n}.sju$\n")).collect();
    let out = import(dir.path(), "junk.txt", &junk, "plain");
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "nothing importable is a finding"
    );
    assert!(text.len() < 4096, "{} bytes of report", text.len());
    assert!(
        text.contains("skipped or refused 400000 entries") && text.contains("the first 10:"),
        "{text}"
    );
    assert!(text.contains("junk.txt:10:1: `!!e$9.sju$`"), "{text}");
    assert!(stats(dir.path()).starts_with("0 indicator(s)"));
}

/// A namespace with only loopback (the engine's nftables table lives there), named for this suite so concurrent
/// tests never share it. Removed on drop.
struct Namespace(String);

impl Namespace {
    fn new() -> Namespace {
        let name = format!("b-intel-{}", std::process::id());
        let ip = |args: &[&str]| {
            let status = Command::new("ip").args(args).status().expect("ip runs");
            assert!(status.success(), "ip {args:?} failed");
        };
        ip(&["netns", "add", &name]);
        // Owned from here, so a failed step below still removes it.
        let ns = Namespace(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    fn run(&self, dir: &Path, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, program])
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("runs")
    }

    /// Every element of palisade's sets (empty when the table does not exist).
    fn blocked(&self, dir: &Path) -> String {
        let out = self.run(dir, "nft", &["list", "table", "inet", "palisade"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("elements"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn can_run_namespaces() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let has = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !(root && has("nft") && has("ip")) {
        eprintln!("SKIPPED: the namespace test needs root, nft and ip (CI runs as root)");
        return false;
    }
    true
}

#[test]
fn poisoned_feed_blocks_nothing_in_nftables() {
    if !can_run_namespaces() {
        return;
    }
    let ns = Namespace::new();
    let dir = content();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        "actions:\n  dry_run: false\n  cooldown: \"off\"\n  firewall: nftables\n",
    )
    .expect("config");
    // A poisoned Feodo list: everything, half the internet, a public resolver, and one real C2
    // (the control: it must be blocked, so the pipeline is shown to act at all).
    let feodo = "first_seen_utc,dst_ip,dst_port,c2_status,last_online,malware\n\
        2025-01-01 00:00:00,0.0.0.0/0,443,online,2025-01-02,Emotet\n\
        2025-01-01 00:00:00,128.0.0.0/1,443,online,2025-01-02,Emotet\n\
        2025-01-01 00:00:00,93.184.216.34/0,443,online,2025-01-02,Emotet\n\
        2025-01-01 00:00:00,8.8.8.8,443,online,2025-01-02,Emotet\n\
        2025-01-01 00:00:00,185.12.33.4,443,online,2025-01-02,Emotet\n";
    let out = import(dir.path(), "feodo.csv", feodo, "feodo");
    assert_success(&out);
    let report = stdout(&out);
    assert!(
        report.contains("imported 2 indicator(s)")
            && report.contains("feodo.csv:2:1: `0.0.0.0/0` is wider than the /24"),
        "{report}"
    );
    let out = import(
        dir.path(),
        "ranges.txt",
        "2000::/3\n::/0\n0.0.0.0/1\n",
        "plain",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stats(dir.path()).starts_with("2 indicator(s)"));
    let lookup = stdout(&palisade(&["intel", "lookup", "8.8.8.8"], dir.path()));
    assert!(
        lookup.contains("on warninglist `List of known IPv4 public DNS resolvers`"),
        "{lookup}"
    );
    let lookup = palisade(&["intel", "lookup", "93.184.216.34"], dir.path());
    assert!(
        stdout(&lookup).contains("no indicator matches"),
        "{}",
        stdout(&lookup)
    );

    let event = |id: &str, ip: &str| {
        format!(
            r#"{{"type":"network_connection","timestamp":1,"id":"{id}","host":"ws-1","pid":4242,"name":"svchost.exe","remote_ip":"{ip}","remote_port":443}}"#
        )
    };
    let events = [
        event("public", "93.184.216.34"),
        event("high-half", "203.0.113.200"),
        event("v6", "2a00:1450:4001::1"),
        event("resolver", "8.8.8.8"),
        event("c2", "185.12.33.4"),
    ]
    .join("\n");
    std::fs::write(dir.path().join("events.jsonl"), events + "\n").expect("events");
    let exe = env!("CARGO_BIN_EXE_palisade");
    let out = ns.run(dir.path(), exe, &["run", "--events", "events.jsonl"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blocked = ns.blocked(dir.path());
    assert!(
        blocked.contains("185.12.33.4"),
        "the control C2 must be blocked: {blocked:?}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for never in [
        "0.0.0.0",
        "128.0.0.0",
        "93.184.216.34",
        "8.8.8.8",
        "2000::",
        "::/0",
    ] {
        assert!(!blocked.contains(never), "{never} in the set: {blocked}");
    }
    let detections = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        detections.contains("on warninglist List of known IPv4 public DNS resolvers"),
        "the resolver gives an informational detection: {detections}"
    );
}

#[test]
fn pulled_feed_row_for_everything_is_refused_by_the_configured_limit() {
    let body = "first_seen_utc,dst_ip,dst_port,c2_status,last_online,malware\n\
        2025-01-01 00:00:00,0.0.0.0/0,443,online,2025-01-02,Emotet\n\
        2025-01-01 00:00:00,10.1.0.0/16,443,online,2025-01-02,Emotet\n\
        2025-01-01 00:00:00,10.0.0.0/15,443,online,2025-01-02,Emotet\n\
        2025-01-01 00:00:00,185.12.33.4,443,online,2025-01-02,Emotet\n";
    let app = axum::Router::new().route(
        "/feodo.csv",
        axum::routing::get(move || async move { body }),
    );
    let addr = crate::support::serve_http(app);
    let dir = content();
    // A wider limit than the default, to show the configured one is what pulls apply.
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!(
            "intel:\n  max_prefix: {{ipv4: 16, ipv6: 48}}\n  feeds:\n    - {{name: feodo, type: http, url: \"http://{addr}/feodo.csv\", format: feodo, every: 1h}}\n"
        ),
    )
    .expect("config");
    let out = palisade(&["intel", "pull"], dir.path());
    assert_success(&out);
    assert!(
        stdout(&out).contains("feodo: 2 indicator(s) stored, 2 skipped"),
        "{}",
        stdout(&out)
    );
    let lookup = stdout(&palisade(&["intel", "lookup", "10.1.2.3"], dir.path()));
    assert!(lookup.contains("matches cidr `10.1.0.0/16`"), "{lookup}");
    let lookup = stdout(&palisade(&["intel", "lookup", "93.184.216.34"], dir.path()));
    assert!(lookup.contains("no indicator matches"), "{lookup}");
}

#[test]
fn stored_range_wider_than_a_lowered_limit_stops_matching() {
    let dir = content();
    let config = |ipv4: u8| format!("intel:\n  max_prefix: {{ipv4: {ipv4}, ipv6: 48}}\n");
    std::fs::write(dir.path().join("palisade.yaml"), config(16)).expect("config");
    assert_success(&import(dir.path(), "wide.txt", "10.1.0.0/16\n", "plain"));
    let lookup = stdout(&palisade(&["intel", "lookup", "10.1.2.3"], dir.path()));
    assert!(lookup.contains("matches cidr `10.1.0.0/16`"), "{lookup}");
    // Lowered again (or stored before the limit existed): the row stays, but does not match.
    std::fs::write(dir.path().join("palisade.yaml"), config(24)).expect("config");
    let lookup = stdout(&palisade(&["intel", "lookup", "10.1.2.3"], dir.path()));
    assert!(lookup.contains("no indicator matches"), "{lookup}");
    assert!(stats(dir.path()).starts_with("1 indicator(s)"));
}

#[test]
fn taxii_page_with_wrong_types_stores_nothing() {
    let app = axum::Router::new()
        .route(
            "/more/collections/c1/objects/",
            axum::routing::get(|| async {
                r#"{"more": "yes", "objects": [{"type": "indicator", "pattern": "[ipv4-addr:value = '198.51.100.7']"}]}"#
            }),
        )
        .route(
            "/objects/collections/c1/objects/",
            axum::routing::get(|| async { r#"{"more": false, "objects": "nope"}"# }),
        );
    let addr = crate::support::serve_http(app);
    let dir = content();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!(
            "intel:\n  feeds:\n    - {{name: more, type: taxii, url: \"http://{addr}/more/collections/c1/\", every: 1h}}\n    - {{name: objects, type: taxii, url: \"http://{addr}/objects/collections/c1/\", every: 1h}}\n"
        ),
    )
    .expect("config");
    let out = palisade(&["intel", "pull", "objects"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("objects: must be a list, not the string \"nope\""),
        "{}",
        stdout(&out)
    );
    // `more: "yes"` is a broken page, not "no more pages": the pull fails before the page's
    // indicators are stored.
    let out = palisade(&["intel", "pull", "more"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("page 1: `more` must be true or false, not the string \"yes\""),
        "{}",
        stdout(&out)
    );
    assert!(stats(dir.path()).starts_with("0 indicator(s)"));
}
