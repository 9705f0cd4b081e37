//! One command line: every command takes `-C DIR` and `--config FILE`, and the operator commands
//! read the state database an engine started with the same options uses.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::support::{assert_success, palisade, scratch_content, stdout};

/// Runs the engine once over no events, so its state database exists. `--events` is read from
/// the content directory `content`.
fn engine_ran(args: &[&str], cwd: &Path, content: &Path) {
    std::fs::write(content.join("no-events.jsonl"), "").expect("events");
    let mut all = vec!["run", "--events", "no-events.jsonl"];
    all.extend_from_slice(args);
    assert_success(&palisade(&all, cwd));
}

/// The case: `palisade run -C repo --config ../ops.yaml` kept state where ops.yaml says,
/// while `palisade mode` had no `--config` and read repo/palisade.yaml's database.
#[test]
fn operator_commands_without_config_read_another_state_file() {
    let work = tempfile::tempdir().expect("temp dir");
    let repo = scratch_content();
    std::fs::write(
        repo.path().join("palisade.yaml"),
        "state:\n  path: repo-state.db\nhttp:\n  enabled: false\n",
    )
    .expect("repo config");
    let ops = work.path().join("ops.yaml");
    std::fs::write(
        &ops,
        "state:\n  path: ops-state.db\nhttp:\n  enabled: false\n",
    )
    .expect("ops config");
    let repo_dir = repo.path().to_str().expect("utf-8 path");
    let ops = ops.to_str().expect("utf-8 path");
    engine_ran(&["-C", repo_dir], work.path(), repo.path());
    engine_ran(&["-C", repo_dir, "--config", ops], work.path(), repo.path());
    assert!(repo.path().join("ops-state.db").exists());
    assert!(repo.path().join("repo-state.db").exists());

    assert_success(&palisade(
        &["mode", "manual", "-C", repo_dir, "--config", ops],
        work.path(),
    ));
    let shown = palisade(&["mode", "-C", repo_dir, "--config", ops], work.path());
    assert_success(&shown);
    assert!(
        stdout(&shown).starts_with("mode: manual"),
        "{}",
        stdout(&shown)
    );
    // The content directory's own database was not touched.
    let own = palisade(&["mode", "-C", repo_dir], work.path());
    assert!(stdout(&own).starts_with("mode: auto"), "{}", stdout(&own));

    // The other operator commands follow the same options: the mode change is in the ops
    // database's audit trail, which still verifies, and not in the repository's.
    let tail = palisade(
        &["audit", "tail", "-C", repo_dir, "--config", ops],
        work.path(),
    );
    assert_success(&tail);
    assert!(stdout(&tail).contains("status=manual"), "{}", stdout(&tail));
    let own_tail = palisade(&["audit", "tail", "-C", repo_dir], work.path());
    assert!(
        !stdout(&own_tail).contains("status=manual"),
        "{}",
        stdout(&own_tail)
    );
    assert_success(&palisade(
        &["audit", "verify", "-C", repo_dir, "--config", ops],
        work.path(),
    ));
    assert_success(&palisade(
        &["approvals", "list", "-C", repo_dir, "--config", ops],
        work.path(),
    ));
}

/// A broken ops.yaml must not silently send an operator command to the default database.
#[test]
fn an_invalid_config_stops_an_operator_command_naming_file_and_line() {
    let repo = scratch_content();
    engine_ran(&[], repo.path(), repo.path());
    std::fs::write(repo.path().join("ops.yaml"), "state:\n  paht: other.db\n").expect("config");
    let out = palisade(&["mode", "manual", "--config", "ops.yaml"], repo.path());
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = crate::support::stderr(&out);
    assert!(err.contains("ops.yaml:2"), "{err}");
    assert!(err.contains("paht"), "{err}");
    // Nothing was switched in the database the default config names.
    let shown = palisade(&["mode"], repo.path());
    assert!(
        stdout(&shown).starts_with("mode: auto"),
        "{}",
        stdout(&shown)
    );
}

fn palisade_without_user(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .current_dir(dir)
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env_remove("SUDO_USER")
        .stdin(Stdio::null())
        .output()
        .expect("the palisade binary runs")
}

/// With `USER` unset the actor was recorded as `operator:unknown`; the name of the effective
/// uid is known to the system all the same.
#[test]
fn the_actor_is_not_unknown_when_user_is_unset() {
    let repo = scratch_content();
    engine_ran(&[], repo.path(), repo.path());
    let id = Command::new("id").arg("-un").output().expect("id runs");
    let name = String::from_utf8_lossy(&id.stdout).trim().to_string();
    assert!(!name.is_empty());
    assert_success(&palisade_without_user(&["mode", "manual"], repo.path()));
    let shown = palisade(&["mode"], repo.path());
    assert!(
        stdout(&shown).contains(&format!("by operator:{name}:")),
        "{}",
        stdout(&shown)
    );
    let tail = palisade(&["audit", "tail"], repo.path());
    assert!(
        !stdout(&tail).contains("operator:unknown"),
        "{}",
        stdout(&tail)
    );
    assert!(
        stdout(&tail).contains(&format!("operator:{name}")),
        "{}",
        stdout(&tail)
    );
}

/// `GET path` of the engine whose log (`log`) names its address; the body.
fn get(log: &Path, path: &str) -> String {
    use std::io::{Read, Write};
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let address: String = text
        .split("on http://")
        .nth(1)
        .expect("the engine logged its address")
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    let mut stream = std::net::TcpStream::connect(&address).expect("connect");
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

fn healthz(log: &Path) -> serde_json::Value {
    serde_json::from_str(&get(log, "/healthz")).expect("JSON")
}

fn log_holds(log: &Path, text: &str) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(text)
}

/// After `palisade mode manual` from another process, `/metrics` showed the old mode until the
/// next event and `/healthz` had no mode; an engine restarted in manual mode did not say so.
#[test]
fn an_idle_engine_shows_a_mode_switched_by_another_process_and_says_it_at_start() {
    use crate::support::{PATIENCE, eventually, run_on_pipes, terminate};
    use std::time::Duration;
    let repo = scratch_content();
    std::fs::write(
        repo.path().join("palisade.yaml"),
        "http:\n  listen: 127.0.0.1:0\n",
    )
    .expect("config");
    let (mut child, log) = run_on_pipes(repo.path());
    assert!(
        eventually(PATIENCE, || log_holds(&log, "palisade is running")),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(log_holds(&log, "mode: auto"));
    let before = healthz(&log);
    assert_eq!(before["mode"], "auto", "{before}");
    assert_eq!(before["mode_since"], serde_json::Value::Null, "{before}");

    assert_success(&palisade(&["mode", "manual"], repo.path()));
    // No event arrives: only the engine's own once-a-second read can show the switch. Five
    // seconds leave room for a machine running every test at once.
    assert!(
        eventually(Duration::from_secs(5), || healthz(&log)["mode"] == "manual"),
        "{}",
        healthz(&log)
    );
    let after = healthz(&log);
    assert!(
        after["mode_by"]
            .as_str()
            .is_some_and(|by| by.starts_with("operator:")),
        "{after}"
    );
    assert!(after["mode_since"].is_string(), "{after}");
    let metrics = get(&log, "/metrics");
    assert!(
        metrics.contains("palisade_mode{mode=\"manual\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("palisade_mode{mode=\"auto\"} 0"),
        "{metrics}"
    );
    terminate(&child);
    assert!(child.wait().expect("wait").success());

    // Restarted in manual mode, the engine warns at start, naming who switched it.
    let (mut again, log) = run_on_pipes(repo.path());
    assert!(
        eventually(PATIENCE, || log_holds(&log, "palisade is running")),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let line = text
        .lines()
        .find(|l| l.contains("mode: manual"))
        .unwrap_or_else(|| panic!("no mode line at start:\n{text}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("operator:"), "{line}");
    assert!(line.contains("set by an operator"), "{line}");
    terminate(&again);
    assert!(again.wait().expect("wait").success());
}
