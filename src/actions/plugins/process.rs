//! `process.kill`: SIGTERM, then SIGKILL after the grace period, to the process the event named
//! and no other.
//!
//! A PID is only a number the kernel reuses. Before each signal the plugin checks that the PID
//! still belongs to a process with the expected name that started before the event happened;
//! otherwise it refuses. Signals are sent with the `kill` program and typed arguments, no shell.

use std::time::{Duration, Instant};

use super::{Action, ActionCall, ActionError, ActionFuture};
use crate::actions::ParamValue;

/// Linux reports process start times in USER_HZ ticks, which is 100 on every mainstream
/// architecture regardless of the kernel's internal tick rate.
const USER_HZ: i64 = 100;

/// What /proc says about a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The kernel's name for it (`comm`, at most 15 bytes).
    pub name: String,
    /// Milliseconds since the epoch.
    pub started_ms: i64,
    /// A zombie has exited and only waits for its parent.
    pub zombie: bool,
}

/// Reads /proc/PID; `None` when there is no such process.
pub fn process_info(pid: u32) -> Option<ProcessInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may itself contain spaces and parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    // After the name: state is field 3 of the full line, starttime field 22.
    let zombie = matches!(fields.first(), Some(&"Z") | Some(&"X"));
    let start_ticks: i64 = fields.get(19)?.parse().ok()?;
    let boot_seconds: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok()))?;
    Some(ProcessInfo {
        name,
        started_ms: boot_seconds * 1000 + start_ticks * 1000 / USER_HZ,
        zombie,
    })
}

/// Whether the process names agree, allowing for the kernel cutting names at 15 bytes and for
/// Windows-style `.exe` names from sensors.
fn same_name(actual: &str, expected: &str) -> bool {
    let expected = expected.rsplit(['\\', '/']).next().unwrap_or(expected);
    let trimmed = |name: &str| name.to_ascii_lowercase();
    let (a, e) = (trimmed(actual), trimmed(expected));
    a == e || (a.len() == 15 && e.starts_with(&a)) || e.strip_suffix(".exe") == Some(a.as_str())
}

/// Why this PID may not be signalled, if it may not.
fn refuse(pid: u32, expected_name: Option<&str>, event_time_ms: i64) -> Option<String> {
    let info = process_info(pid)?;
    if info.zombie {
        return None;
    }
    if let Some(expected) = expected_name
        && !same_name(&info.name, expected)
    {
        return Some(format!(
            "PID {pid} now belongs to `{}`, not `{expected}`: the PID was reused",
            info.name
        ));
    }
    // Start times are known to the tick; allow a second for clocks and rounding.
    if event_time_ms > 0 && info.started_ms > event_time_ms + 1000 {
        return Some(format!(
            "PID {pid} started after the event: the PID was reused"
        ));
    }
    None
}

fn alive(pid: u32) -> bool {
    process_info(pid).is_some_and(|info| !info.zombie)
}

fn signal(pid: u32, name: &str) -> Result<(), ActionError> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| ActionError::new(format!("cannot run `kill`: {e}")))?;
    if status.success() || !alive(pid) {
        Ok(())
    } else {
        Err(ActionError::new(format!(
            "`kill -{name} {pid}` failed ({status})"
        )))
    }
}

pub(super) struct Kill;

impl Action for Kill {
    fn name(&self) -> &'static str {
        "process.kill"
    }

    fn execute<'a>(&'a self, call: &'a ActionCall) -> ActionFuture<'a> {
        Box::pin(async move {
            let Some(ParamValue::Pid(pid)) = call.params.get("pid").cloned() else {
                return Err(ActionError::new("no pid"));
            };
            let expected = call.text("name");
            let grace = match call.params.get("grace") {
                Some(ParamValue::Duration(d)) => *d,
                _ => Duration::from_secs(5),
            };
            if !alive(pid) {
                return Ok(format!("PID {pid} had already exited"));
            }
            if let Some(reason) = refuse(pid, expected.as_deref(), call.event_time_ms) {
                return Err(ActionError::new(reason));
            }
            signal(pid, "TERM")?;
            let started = Instant::now();
            while started.elapsed() < grace {
                if !alive(pid) {
                    return Ok(format!("PID {pid} ended after SIGTERM"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // Check again: in the grace period the process may have ended and the PID moved on.
            if let Some(reason) = refuse(pid, expected.as_deref(), call.event_time_ms) {
                return Err(ActionError::new(format!("not sending SIGKILL: {reason}")));
            }
            if !alive(pid) {
                return Ok(format!("PID {pid} ended after SIGTERM"));
            }
            signal(pid, "KILL")?;
            Ok(format!(
                "PID {pid} did not end within {grace:?} of SIGTERM; sent SIGKILL"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_like_the_kernel_shows_them() {
        assert!(same_name("sleep", "sleep"));
        assert!(same_name("powershell", "powershell.exe"));
        assert!(same_name("averyveryverylo", "averyveryverylongname"));
        assert!(same_name("sleep", "/usr/bin/sleep"));
        assert!(!same_name("bash", "sleep"));
    }

    #[test]
    fn this_process_is_readable() {
        let info = process_info(std::process::id()).unwrap();
        assert!(!info.zombie);
        let now = jiff::Timestamp::now().as_millisecond();
        assert!(
            info.started_ms <= now && info.started_ms > now - 3_600_000,
            "{info:?}"
        );
        assert!(process_info(u32::MAX).is_none());
    }
}
