//! The operator console over real HTTP against a real `palisade run`: login, sessions, CSRF,
//! roles, login limits, security headers, escaping, and actions that reach the engine.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::post;

use crate::support::{PATIENCE, eventually, palisade, scratch_content, stdout};

/// One HTTP/1.1 reply, read to the end (the request asks the server to close).
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The session cookie a login set, as `name=value`.
    fn session(&self) -> String {
        let set = self.header("set-cookie").expect("a session cookie");
        set.split(';').next().expect("cookie").trim().to_string()
    }

    /// The CSRF token of the first form on the page.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a CSRF field")
            + 19;
        let rest = &self.body[at..];
        rest[..rest.find('"').expect("end of the token")].to_string()
    }
}

fn request(
    to: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> Reply {
    let mut stream = TcpStream::connect(to).expect("the console accepts");
    let body = form.unwrap_or("");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n");
    if let Some(cookie) = cookie {
        head.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if form.is_some() {
        head.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send");
    stream.write_all(body.as_bytes()).expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a reply");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn login(to: SocketAddr, user: &str, password: &str) -> Reply {
    request(
        to,
        "POST",
        "/login",
        None,
        Some(&format!("user={user}&password={password}")),
    )
}

/// `palisade console hash-password`, as an operator would write the config.
fn hashed(password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["console", "hash-password", "--iterations", "1000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("palisade runs");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// A content directory whose one rule fires on `palisade-test-target` and whose playbook tells
/// a webhook (counted); the console on a free loopback port with an admin, a responder and a
/// viewer.
fn console_content(webhook: &str) -> tempfile::TempDir {
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!(
            "actions:\n  dry_run: false\n  cooldown: \"off\"\n  timeout: 20s\nhttp:\n  enabled: false\n\
console:\n  enabled: true\n  listen: \"127.0.0.1:0\"\n  operators:\n    \
- {{name: ana, role: admin, password_hash: \"{}\"}}\n    \
- {{name: rui, role: responder, password_hash: \"{}\"}}\n    \
- {{name: val, role: viewer, password_hash: \"{}\"}}\n",
            hashed("ana-pw"),
            hashed("rui-pw"),
            hashed("val-pw")
        ),
    )
    .expect("config");
    crate::support::write_test_target_rule(dir.path());
    std::fs::write(
        dir.path().join("playbooks/test-notify.yaml"),
        format!("id: test-notify\ntitle: Tell\ntrigger: {{rules: [test-target]}}\nsteps:\n  - id: tell\n    action: notify.webhook\n    with: {{url: \"{webhook}\", message: \"hello\"}}\n"),
    )
    .expect("playbook");
    dir
}

fn webhook() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let address = crate::support::serve_http(app);
    (format!("http://{address}/hook"), hits)
}

/// `palisade run` in `dir` reading events from a pipe we hold; returns it and the console's
/// address from its log.
fn start(dir: &std::path::Path) -> (Child, SocketAddr) {
    let log = dir.join("engine.log");
    let child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("run")
        .current_dir(dir)
        .env("PALISADE_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("palisade runs");
    let marker = "serving the operator console on http://";
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(PATIENCE, || read().contains(marker)),
        "{}",
        read()
    );
    let text = read();
    let at = text.find(marker).expect("marker") + marker.len();
    let address = text[at..]
        .split(|c: char| c.is_whitespace() || c == '"')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("an address");
    (child, address)
}

fn event(id: &str, host: &str) -> String {
    serde_json::json!({
        "type": "process_create",
        "timestamp": jiff::Timestamp::now().to_string(),
        "id": id,
        "host": host,
        "pid": 4242,
        "name": "sleep",
        "cmdline": "sleep 300 palisade-test-target",
    })
    .to_string()
}

#[test]
fn the_console_refuses_a_non_loopback_address_without_the_opt_in() {
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!(
            "http:\n  enabled: false\nconsole:\n  enabled: true\n  listen: \"0.0.0.0:0\"\n  operators:\n    - {{name: ana, role: admin, password_hash: \"{}\"}}\n",
            hashed("pw")
        ),
    )
    .expect("config");
    std::fs::write(dir.path().join("events.jsonl"), "").expect("events");
    let out = palisade(&["run", "--events", "events.jsonl"], dir.path());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`console.listen` is `0.0.0.0:0`"), "{err}");
    assert!(err.contains("allow_plain_http_on"), "{err}");
    // Reported where it is written, as `validate` reports it.
    assert!(err.contains("palisade.yaml:5:"), "{err}");
    let validate = palisade(&["validate"], dir.path());
    assert_eq!(validate.status.code(), Some(1));
    let shown = format!("{}{}", stdout(&validate), crate::support::stderr(&validate));
    assert!(shown.contains("palisade.yaml:5:"), "{shown}");
}

#[test]
fn an_operator_switches_to_manual_and_approves_a_queued_step_through_the_console() {
    let (url, hits) = webhook();
    let dir = console_content(&url);
    let (mut engine, at) = start(dir.path());
    let mut stdin = engine.stdin.take().expect("stdin");

    // Not logged in: the screens send to the login page.
    assert_eq!(request(at, "GET", "/alerts", None, None).status, 303);
    let page = request(at, "GET", "/login", None, None);
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(!page.body.contains("<script"), "no inline script");

    let ana = login(at, "ana", "ana-pw");
    assert_eq!(ana.status, 303, "{}", ana.body);
    let set = ana.header("set-cookie").unwrap_or_default();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let ana = ana.session();

    // A POST without the session's CSRF token changes nothing.
    let forged = request(
        at,
        "POST",
        "/engine/mode",
        Some(&ana),
        Some("mode=manual&reason=x"),
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    let wrong = request(
        at,
        "POST",
        "/engine/mode",
        Some(&ana),
        Some("mode=manual&reason=x&csrf=0000"),
    );
    assert_eq!(wrong.status, 403);
    assert!(stdout(&palisade(&["mode"], dir.path())).starts_with("mode: auto"));

    let engine_page = request(at, "GET", "/engine", Some(&ana), None);
    let token = engine_page.csrf();
    let switched = request(
        at,
        "POST",
        "/engine/mode",
        Some(&ana),
        Some(&format!("mode=manual&reason=incident+42&csrf={token}")),
    );
    assert_eq!(switched.status, 303, "{}", switched.body);
    let mode = stdout(&palisade(&["mode"], dir.path()));
    assert!(
        mode.starts_with("mode: manual") && mode.contains("operator:ana"),
        "{mode}"
    );
    let trail = stdout(&palisade(&["audit", "tail", "-n", "20"], dir.path()));
    assert!(
        trail.contains("operator:ana") && trail.contains("manual"),
        "{trail}"
    );
    // The engine reads the mode within a second.
    std::thread::sleep(std::time::Duration::from_millis(1500));

    // An event whose host field holds markup: queued in manual mode, shown as text.
    writeln!(stdin, "{}", event("ev-1", "<script>alert(1)</script>")).expect("write");
    let val = login(at, "val", "val-pw").session();
    let queued = || request(at, "GET", "/approvals", Some(&val), None).body;
    assert!(
        eventually(PATIENCE, || queued().contains("notify.webhook")),
        "{}",
        queued()
    );
    let alerts = request(at, "GET", "/alerts", Some(&val), None);
    assert!(
        alerts
            .body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        alerts.body
    );
    assert!(!alerts.body.contains("<script>alert"), "{}", alerts.body);
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a queued step must not act");

    // A viewer sees no decision form.
    assert!(!queued().contains("action=\"/approvals/"), "{}", queued());
    let rui = login(at, "rui", "rui-pw").session();
    let id: String = {
        let body = request(at, "GET", "/approvals", Some(&rui), None).body;
        let at = body.find("action=\"/approvals/").expect("a decision form") + 19;
        body[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect()
    };
    // A crafted POST with the viewer's own token is refused.
    let viewer_csrf = request(at, "GET", "/engine", Some(&val), None).csrf();
    let refused = request(
        at,
        "POST",
        &format!("/approvals/{id}"),
        Some(&val),
        Some(&format!("decision=approve&reason=mine&csrf={viewer_csrf}")),
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    let token = request(at, "GET", "/approvals", Some(&rui), None).csrf();
    let approved = request(
        at,
        "POST",
        &format!("/approvals/{id}"),
        Some(&rui),
        Some(&format!(
            "decision=approve&reason=checked+the+host&csrf={token}"
        )),
    );
    assert_eq!(approved.status, 303, "{}", approved.body);
    assert!(
        eventually(PATIENCE, || hits.load(Ordering::SeqCst) == 1),
        "the approved step must run"
    );
    let all = stdout(&palisade(&["approvals", "list", "--all"], dir.path()));
    assert!(
        all.contains("by operator:rui") && all.contains("executed"),
        "{all}"
    );
    let trail = stdout(&palisade(&["audit", "tail", "-n", "30"], dir.path()));
    assert!(trail.contains("checked the host"), "{trail}");

    // A responder may not switch back to automatic; an admin may.
    let token = request(at, "GET", "/approvals", Some(&rui), None).csrf();
    let back = request(
        at,
        "POST",
        "/engine/mode",
        Some(&rui),
        Some(&format!("mode=auto&reason=over&csrf={token}")),
    );
    assert_eq!(back.status, 403);
    drop(stdin);
    let _ = engine.wait();
}

#[test]
fn repeated_bad_passwords_lock_the_login_even_with_the_right_one() {
    let (url, _) = webhook();
    let dir = console_content(&url);
    let (mut engine, at) = start(dir.path());
    for _ in 0..5 {
        assert_eq!(login(at, "ana", "guess").status, 401);
    }
    let locked = login(at, "ana", "ana-pw");
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert_eq!(locked.header("retry-after"), Some("900"));
    assert!(locked.header("set-cookie").is_none());
    drop(engine.stdin.take());
    let _ = engine.wait();
}
