//! Shared pieces of the integration tests: running the binary, scratch content directories, a
//! real redis-server on a free loopback port, and engines as real child processes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn palisade(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .current_dir(dir)
        .env("PALISADE_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("the palisade binary runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Fails the test unless the command exited 0, showing both of its streams.
#[track_caller]
pub fn assert_success(output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect()
}

/// A scratch content directory holding a copy of the shipped rules (Sigma folders included) and
/// playbooks.
pub fn scratch_content() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for sub in ["rules", "playbooks"] {
        copy_tree(&repo().join(sub), &dir.path().join(sub));
    }
    dir
}

/// Copies the folder `from` to `to`, subfolders included.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

/// How long a test waits for something the engine must eventually do. Generous on purpose: CI
/// runs every test at once on two cores, and a wait that holds returns as soon as it holds.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `check` every 50 ms until it holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// A real redis-server on a free loopback port, with append-only persistence (fsync always) in
/// a scratch directory, so a stop and start keeps the data, as a production server would.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("address").port()
        };
        let mut server = RedisServer {
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        server.resume();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again) on the same port and data directory.
    pub fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (./scripts/test installs it)");
        self.child = Some(child);
        assert!(
            eventually(crate::support::PATIENCE, || self.query(&["PING"]).is_ok()),
            "redis-server did not start on port {}",
            self.port
        );
    }

    /// Stops the server the way an operator would (SIGTERM: it flushes and exits).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            let _ = child.wait();
        }
    }

    /// A new connection to the server (for a subscriber, say).
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("a connection to the test's redis-server")
    }

    /// Runs one command and returns its reply.
    pub fn query(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(self.url())?;
        let mut connection = client.get_connection_with_timeout(Duration::from_secs(2))?;
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query(&mut connection)
    }

    /// The `alert` documents in the alerts stream, in order.
    pub fn alerts(&self, stream: &str) -> Vec<Value> {
        let Ok(redis::Value::Array(entries)) = self.query(&["XRANGE", stream, "-", "+"]) else {
            return Vec::new();
        };
        entries
            .into_iter()
            .filter_map(|entry| match entry {
                redis::Value::Array(parts) => match parts.into_iter().nth(1) {
                    Some(redis::Value::Array(fields)) => match fields.get(1) {
                        Some(redis::Value::BulkString(bytes)) => serde_json::from_slice(bytes).ok(),
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Opens the state database `file` as the engine does (creating it and applying migrations
/// when missing), runs `work` on it, and closes it: how a test reads or edits what an engine
/// stored.
pub fn with_state<T>(file: &Path, work: impl AsyncFnOnce(&palisade::state::StateStore) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = palisade::state::StateStore::open(file)
            .await
            .expect("the state file opens");
        let value = work(&store).await;
        store.close().await;
        value
    })
}

/// `palisade run --log-format json` in `dir`, reading events from a pipe we hold (its standard
/// input) and writing JSON lines to another; it logs to `dir/engine.log`, returned beside it.
pub fn run_on_pipes(dir: &Path) -> (Child, PathBuf) {
    let log = dir.join("engine.log");
    let child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["run", "--log-format", "json"])
        .current_dir(dir)
        .env("PALISADE_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("palisade runs");
    (child, log)
}

pub fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
}

/// `palisade run` as a child process in `dir`, logging to `dir/engine-NAME.log`.
pub struct EngineProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl EngineProcess {
    pub fn start(dir: &Path, name: &str) -> EngineProcess {
        let log = dir.join(format!("engine-{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .arg("run")
            .current_dir(dir)
            .env("PALISADE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("palisade runs");
        EngineProcess { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for a line containing `text` in the engine's log.
    pub fn wait_for_log(&self, text: &str) {
        assert!(
            eventually(crate::support::PATIENCE, || self.log().contains(text)),
            "the engine never logged `{text}`:\n{}",
            self.log()
        );
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> String {
        terminate(&self.child);
        let status = self.child.wait().expect("wait");
        let log = self.log();
        assert!(status.success(), "the engine exited with {status}:\n{log}");
        log
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `count` process starts of the Office-macro kind, `ev-{first}` onwards: each one yields
/// exactly one detection (`office-spawns-shell`).
pub fn office_events(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| {
            format!(
                r#"{{"type":"process_create","timestamp":"2025-11-03T14:30:10Z","id":"ev-{i}","host":"ws-{h}","pid":{pid},"name":"cmd.exe","parent_name":"WINWORD.EXE","cmdline":"cmd.exe /c whoami"}}"#,
                h = i % 7,
                // Above Linux's largest PID (2^22): never a real process, and never the
                // engine's own PID, which the target policy refuses to kill.
                pid = 4_200_000 + i
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A scratch content directory whose config reads `source` (YAML under `source:`) from the
/// given Redis server.
pub fn redis_content(server: &RedisServer, source: &str) -> tempfile::TempDir {
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!("redis:\n  url: {}\nsource:\n{source}", server.url()),
    )
    .expect("config");
    dir
}

/// Serves `app` over HTTP on a free loopback port, on its own thread, for the rest of the test
/// process; returns the address.
pub fn serve_http(app: axum::Router) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    address
}

/// Writes `rules/test_targets.rhai` in `dir`: a rule `test-target` that fires for any process
/// whose command line holds `palisade-test-target` (the target processes the tests start).
pub fn write_test_target_rule(dir: &Path) {
    std::fs::write(
        dir.join("rules/test_targets.rhai"),
        r#"let rule = #{ id: "test-target", title: "Test target", severity: "high", events: ["process_create"],
                        filter: #{ "cmdline|contains": ["palisade-test-target"] } };"#,
    )
    .expect("rule");
}
