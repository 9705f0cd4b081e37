//! Named lists, shared helpers and per-rule exceptions, through the real binary.

use std::io::{BufRead, Read, Write};

use crate::support::{
    assert_success, eventually, json_lines, palisade, scratch_content, stderr, stdout,
};

fn office_event(id: &str, host: &str, pid: u32) -> String {
    format!(
        r#"{{"type":"process_create","timestamp":"2025-11-03T14:30:10Z","id":"{id}","host":"{host}","pid":{pid},"name":"cmd.exe","parent_name":"WINWORD.EXE","cmdline":"cmd.exe /c whoami"}}"#
    )
}

const BUILD_EXCEPTION: &str = "exceptions:\n  - rule: office-spawns-shell\n    host: build-01\n    reason: the build agents open macro documents in CI\n    expires: 2999-01-01T00:00:00Z\n    author: alice\n";

/// `GET path` over plain HTTP/1.1; returns the body.
fn get(address: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

#[test]
fn replay_applies_an_exception_and_validate_refuses_an_unknown_rule() {
    let dir = scratch_content();
    let events = [
        office_event("on-build", "BUILD-01", 4_200_001),
        office_event("on-workstation", "ws-3", 4_200_002),
    ]
    .join("\n")
        + "\n";
    std::fs::write(dir.path().join("events.jsonl"), events).expect("events");
    let fired = |dir: &std::path::Path| -> Vec<String> {
        let out = palisade(&["replay", "--events", "events.jsonl"], dir);
        assert_success(&out);
        json_lines(&stdout(&out))
            .iter()
            .filter(|l| l["kind"] == "detection")
            .map(|l| l["event_id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(fired(dir.path()), ["on-build", "on-workstation"]);

    std::fs::create_dir_all(dir.path().join("exceptions")).expect("mkdir");
    let typo = BUILD_EXCEPTION.replace("office-spawns-shell", "office-spawn-shell");
    std::fs::write(dir.path().join("exceptions/build.yaml"), typo).expect("exception");
    let out = palisade(&["validate"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("exceptions/build.yaml:2:11")
            && text.contains("there is no rule or detector `office-spawn-shell` (did you mean `office-spawns-shell`?)"),
        "{text}"
    );

    std::fs::write(dir.path().join("exceptions/build.yaml"), BUILD_EXCEPTION).expect("exception");
    assert_success(&palisade(&["validate"], dir.path()));
    assert_eq!(
        fired(dir.path()),
        ["on-workstation"],
        "the build host is excepted, in any case"
    );
    // At debug level, replay says which exception dropped what.
    let debug = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["replay", "--events", "events.jsonl"])
        .current_dir(dir.path())
        .env("PALISADE_LOG", "debug")
        .output()
        .expect("replay runs");
    let log = stderr(&debug);
    assert!(
        log.contains("detection of rule `office-spawns-shell` on event `on-build` dropped by the exception at exceptions/build.yaml:2: the build agents open macro documents in CI"),
        "{log}"
    );
}

#[test]
fn a_rule_using_a_list_and_a_helper_validates_tests_and_replays() {
    let dir = scratch_content();
    for sub in ["lists", "lib"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    std::fs::write(
        dir.path().join("lists/admin_nets.yaml"),
        "name: admin_nets\ndescription: the management networks\nkind: addresses\nvalues:\n  - 10.50.0.0/16\n  - 2001:db8:50::/48\n",
    )
    .expect("list");
    std::fs::write(
        dir.path().join("lib/names.rhai"),
        "// Helpers every rule may call.\nfn is_remote_tool(name) {\n    [\"psexec.exe\", \"wmic.exe\"].contains(name.to_lower())\n}\n",
    )
    .expect("helper");
    std::fs::write(
        dir.path().join("rules/admin_tool_off_net.rhai"),
        r#"let rule = #{
    id: "admin-tool-off-net",
    title: "Remote administration tool used outside the management networks",
    severity: "medium",
    events: ["network_connection"],
    filter: #{ "remote_ip|in_list|not": ["admin_nets"] },
};

fn detect(event) { is_remote_tool(event.name) && !in_list("admin_nets", event.remote_ip) }

let tests = [
    #{ name: "psexec to a workstation", expect: true,
       event: #{ type: "network_connection", host: "ws-1", pid: 9, name: "PsExec.exe", remote_ip: "10.9.1.1", remote_port: 445 } },
    #{ name: "psexec to a management host", expect: false,
       event: #{ type: "network_connection", host: "ws-1", pid: 9, name: "psexec.exe", remote_ip: "10.50.3.3", remote_port: 445 } },
];
"#,
    )
    .expect("rule");
    assert_success(&palisade(&["validate"], dir.path()));
    // The scratch copy has no warninglists, which some shipped intel cases need: only this
    // rule's cases are judged.
    let tested = stdout(&palisade(&["test"], dir.path()));
    let cases: Vec<&str> = tested
        .lines()
        .filter(|l| l.contains("admin-tool-off-net"))
        .collect();
    assert_eq!(cases.len(), 2, "{tested}");
    assert!(cases.iter().all(|l| l.starts_with("PASS")), "{tested}");

    // A list named wrong is refused where it is named, with the list meant.
    let rule =
        std::fs::read_to_string(dir.path().join("rules/admin_tool_off_net.rhai")).expect("rule");
    std::fs::write(
        dir.path().join("rules/admin_tool_off_net.rhai"),
        rule.replace("in_list(\"admin_nets\"", "in_list(\"admin_net\""),
    )
    .expect("rule");
    let out = palisade(&["validate"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("rules/admin_tool_off_net.rhai:9:")
            && text.contains("did you mean `admin_nets`?"),
        "{text}"
    );
}

#[test]
fn an_exception_is_hot_reloaded_into_a_running_engine_and_counted_on_metrics() {
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        "http:\n  listen: 127.0.0.1:0\n",
    )
    .expect("config");
    let (mut child, log) = crate::support::run_on_pipes(dir.path());
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(crate::support::PATIENCE, || read_log()
            .contains("serving /healthz, /readyz and /metrics on http://")),
        "{}",
        read_log()
    );
    let address: String = read_log()
        .split("on http://")
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == ':')
                .collect()
        })
        .expect("the address is logged");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    // Sends the events, then returns the ids detected up to and including the last one's.
    let mut detected = |events: &[(&str, &str, u32)]| -> Vec<String> {
        for (id, host, pid) in events {
            stdin
                .write_all(format!("{}\n", office_event(id, host, *pid)).as_bytes())
                .expect("write");
        }
        stdin.flush().expect("flush");
        let last = events.last().map(|e| e.0).unwrap_or_default();
        let mut seen = Vec::new();
        for line in lines.by_ref().map_while(Result::ok) {
            let value: serde_json::Value = serde_json::from_str(&line).expect("json line");
            if value["kind"] == "detection" {
                let id = value["event_id"].as_str().unwrap_or_default().to_string();
                let done = id == last;
                seen.push(id);
                if done {
                    break;
                }
            }
        }
        seen
    };
    assert_eq!(detected(&[("before", "build-01", 4_200_010)]), ["before"]);

    std::fs::create_dir_all(dir.path().join("exceptions")).expect("mkdir");
    std::fs::write(dir.path().join("exceptions/build.yaml"), BUILD_EXCEPTION).expect("exception");
    assert!(
        eventually(crate::support::PATIENCE, || read_log()
            .contains("exceptions added: office-spawns-shell")),
        "{}",
        read_log()
    );
    assert_eq!(
        detected(&[
            ("excepted", "build-01", 4_200_011),
            ("other-host", "ws-4", 4_200_012)
        ]),
        ["other-host"]
    );
    let metrics = get(&address, "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l == "palisade_detections_excepted_total{rule=\"office-spawns-shell\"} 1"),
        "{metrics}"
    );
    drop(stdin);
    assert!(child.wait().expect("wait").success(), "{}", read_log());
}
