//! The nftables plugin for real: two network namespaces joined by a veth pair, a TCP listener in
//! one, the engine blocking the other's address. Needs root (CI runs as root), `ip`, `nft` and
//! python3 (for the listener and the probe).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{assert_success, eventually, palisade, scratch_content, stderr, stdout};

/// Two namespaces, `host` (192.0.2.1, listening on 8080) and `peer` (192.0.2.2). Removed on drop.
struct Hosts {
    host: String,
    peer: String,
    listener: Option<Child>,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip runs");
    assert!(status.success(), "ip {args:?} failed");
}

impl Hosts {
    /// `variant` (at most four characters) keeps namespace and link names apart between tests
    /// running at once.
    fn new(variant: &str) -> Hosts {
        assert!(variant.len() <= 4, "link names have at most 15 characters");
        let tag = format!("{variant}{}", std::process::id() % 100_000);
        let hosts = Hosts {
            host: format!("palh{tag}"),
            peer: format!("palp{tag}"),
            listener: None,
        };
        let (va, vb) = (format!("pva{tag}"), format!("pvb{tag}"));
        ip(&["netns", "add", &hosts.host]);
        ip(&["netns", "add", &hosts.peer]);
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        ip(&["link", "set", &va, "netns", &hosts.host]);
        ip(&["link", "set", &vb, "netns", &hosts.peer]);
        ip(&["-n", &hosts.host, "addr", "add", "192.0.2.1/24", "dev", &va]);
        ip(&["-n", &hosts.peer, "addr", "add", "192.0.2.2/24", "dev", &vb]);
        for (ns, dev) in [(&hosts.host, &va), (&hosts.peer, &vb)] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let listener = Command::new("ip")
            .args(["netns", "exec", &hosts.host, "python3", "-c"])
            .arg("import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',8080))\ns.listen(64)\nwhile True:\n    c,_=s.accept(); c.close()\n")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let mut hosts = hosts;
        hosts.listener = Some(listener);
        assert!(
            eventually(crate::support::PATIENCE, || hosts.connects()),
            "the listener never came up"
        );
        hosts
    }

    /// Whether the peer can open a TCP connection to the host (1 s timeout).
    fn connects(&self) -> bool {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.peer, "python3", "-c"])
            .arg("import socket\ns=socket.socket()\ns.settimeout(1)\ntry:\n    s.connect(('192.0.2.1',8080)); print('OK')\nexcept Exception:\n    print('FAILED')\n")
            .output()
            .expect("python3 runs");
        String::from_utf8_lossy(&out.stdout).trim() == "OK"
    }

    /// Whether the host can reach its own listener over loopback (1 s timeout).
    fn loopback_connects(&self) -> bool {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.host, "python3", "-c"])
            .arg("import socket\ns=socket.socket()\ns.settimeout(1)\ntry:\n    s.connect(('127.0.0.1',8080)); print('OK')\nexcept Exception:\n    print('FAILED')\n")
            .output()
            .expect("python3 runs");
        String::from_utf8_lossy(&out.stdout).trim() == "OK"
    }

    /// The elements of every set of palisade's table in the host namespace, or `None` when
    /// the table does not exist.
    fn blocked(&self) -> Option<String> {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &self.host, "nft", "list", "table", "inet", "palisade",
            ])
            .output()
            .expect("nft runs");
        out.status.success().then(|| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("elements"))
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    /// `palisade ARGS` inside the host namespace, in `dir`.
    fn palisade(&self, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.host, env!("CARGO_BIN_EXE_palisade")])
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("palisade runs")
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = listener.kill();
            let _ = listener.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.host])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.peer])
            .status();
    }
}

fn can_run() -> bool {
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
    if !(root && has("nft") && has("iptables") && has("ip") && has("python3")) {
        eprintln!(
            "SKIPPED: the firewall tests need root, nft, iptables, ip and python3 (./scripts/test installs them; CI runs as root)"
        );
        return false;
    }
    true
}

#[test]
fn nftables_blocks_expire_undo_and_come_back_after_a_flush() {
    if can_run() {
        block_expire_unblock_reassert("a1n", "nftables");
    }
}

#[test]
fn the_iptables_fallback_does_the_same() {
    if can_run() {
        block_expire_unblock_reassert("a1i", "iptables");
    }
}

fn block_expire_unblock_reassert(variant: &str, backend: &str) {
    let hosts = Hosts::new(variant);
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!("actions:\n  dry_run: false\n  cooldown: \"off\"\n  firewall: {backend}\n"),
    )
    .expect("config");
    std::fs::write(
        dir.path().join("rules/test_c2.rhai"),
        r#"let rule = #{ id: "test-c2", title: "Test C2", severity: "critical", events: ["network_connection"], filter: #{ remote_port: [4444] } };
fn detect(event) { #{ entity: "address" } }"#,
    )
    .expect("rule");
    let playbook = |ttl: &str| {
        format!(
            "id: test-block\ntitle: Block\ntrigger: {{rules: [test-c2]}}\nsteps:\n  - id: block\n    action: firewall.block\n    with: {{address: \"{{{{ entity.address }}}}\", ttl: {ttl}, direction: inbound}}\n"
        )
    };
    // Each run gets an event of its own: an event already decided is not decided again.
    let events = |id: &str| {
        let event = format!(
            r#"{{"type":"network_connection","timestamp":1,"id":"{id}","pid":5,"name":"x","remote_ip":"192.0.2.2","remote_port":4444}}"#
        );
        std::fs::write(dir.path().join("events.jsonl"), format!("{event}\n")).expect("events");
    };
    events("c2-short");
    std::fs::write(dir.path().join("nothing.jsonl"), "").expect("events");
    assert!(hosts.connects());

    // A short block drops the peer's connections, then expires: nftables in the kernel, the
    // iptables fallback when the engine next runs after the block's time is up.
    std::fs::write(dir.path().join("playbooks/test-block.yaml"), playbook("2s")).expect("playbook");
    let out = hosts.palisade(dir.path(), &["run", "--events", "events.jsonl"]);
    assert_success(&out);
    assert!(!hosts.connects(), "the block must drop the connection");
    if backend == "iptables" {
        std::thread::sleep(Duration::from_millis(2500));
        let out = hosts.palisade(dir.path(), &["run", "--events", "nothing.jsonl"]);
        assert!(
            stderr(&out).contains("firewall blocks expired") || hosts.connects(),
            "{}",
            stderr(&out)
        );
    }
    assert!(
        eventually(crate::support::PATIENCE, || hosts.connects()),
        "the block must expire"
    );

    // A long block holds until `palisade unblock`.
    std::fs::write(dir.path().join("playbooks/test-block.yaml"), playbook("1h")).expect("playbook");
    events("c2-long");
    hosts.palisade(dir.path(), &["run", "--events", "events.jsonl"]);
    assert!(!hosts.connects());
    let out = hosts.palisade(dir.path(), &["unblock", "192.0.2.2"]);
    assert_success(&out);
    assert!(hosts.connects(), "unblock must let traffic through again");

    // Blocked again, then the ruleset is flushed (as by a reboot): the next start re-asserts it.
    events("c2-again");
    hosts.palisade(dir.path(), &["run", "--events", "events.jsonl"]);
    assert!(!hosts.connects());
    let flush: &[&str] = if backend == "iptables" {
        &["iptables", "-w", "5", "-F", "PALISADE_IN"]
    } else {
        &["nft", "delete", "table", "inet", "palisade"]
    };
    let status = Command::new("ip")
        .args(["netns", "exec", &hosts.host])
        .args(flush)
        .status()
        .expect("flush");
    assert!(status.success());
    assert!(hosts.connects(), "with the table gone, traffic flows");
    let out = hosts.palisade(dir.path(), &["run", "--events", "nothing.jsonl"]);
    assert!(
        stderr(&out).contains("re-asserted firewall blocks"),
        "{}",
        stderr(&out)
    );
    assert!(!hosts.connects(), "the recorded block must be back");

    let trail = stdout(&palisade(&["audit", "tail", "-n", "50"], dir.path()));
    assert!(
        trail.contains("blocked 192.0.2.2 (inbound) for 3600s")
            && trail.contains("unblocked by an operator"),
        "{trail}"
    );
}

/// Content whose playbook blocks whatever `block_target` an event names (an extra event field,
/// so a sensor, or an attacker writing events, chooses it), live, with nftables.
fn block_target_content() -> tempfile::TempDir {
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        "actions:\n  dry_run: false\n  cooldown: \"off\"\n  firewall: nftables\n  degrade_after_failures: 1\n",
    )
    .expect("config");
    std::fs::write(
        dir.path().join("rules/test_c2.rhai"),
        r#"let rule = #{ id: "test-c2", title: "Test C2", severity: "critical", events: ["network_connection"], filter: #{ remote_port: [4444] } };
fn detect(event) { true }"#,
    )
    .expect("rule");
    std::fs::write(
        dir.path().join("playbooks/test-block.yaml"),
        "id: test-block\ntitle: Block\ntrigger: {rules: [test-c2]}\nsteps:\n  - id: block\n    action: firewall.block\n    with: {address: \"{{ event.block_target }}\", ttl: 1h}\n    on_failure: continue\n",
    )
    .expect("playbook");
    dir
}

fn events_blocking(targets: &[&str]) -> String {
    targets
        .iter()
        .enumerate()
        .map(|(i, target)| {
            format!(
                "{{\"type\":\"network_connection\",\"timestamp\":1,\"id\":\"t{i}-{target}\",\"pid\":5,\"name\":\"x\",\"remote_ip\":\"192.0.2.2\",\"remote_port\":4444,\"block_target\":\"{target}\"}}\n"
            )
        })
        .collect()
}

/// Defect (issue 11.1): an event's `1.2.3.4/0` was checked as written, executed as
/// `blocked 1.2.3.4/0`, and nftables stored `0.0.0.0/0`: loopback stopped. `1::/0` did the same
/// for IPv6, and half the internet (`128.0.0.0/1`, `2000::/3`, `10.0.0.0/8`) was blocked too.
#[test]
fn a_block_that_covers_everything_from_an_event_is_refused_and_loopback_still_works() {
    if !can_run() {
        return;
    }
    let hosts = Hosts::new("a1w");
    let dir = block_target_content();
    let hostile = [
        "1.2.3.4/0",
        "1::/0",
        "::ffff:1.2.3.4/96",
        "128.0.0.0/1",
        "2000::/3",
        "10.0.0.0/8",
    ];
    std::fs::write(dir.path().join("events.jsonl"), events_blocking(&hostile)).expect("events");
    assert!(hosts.loopback_connects());
    let out = hosts.palisade(dir.path(), &["run", "--events", "events.jsonl"]);
    assert_success(&out);
    // Refused before any plugin ran: the table is not even created; were it there, it would
    // hold nothing.
    let blocked = hosts.blocked();
    assert!(blocked.as_deref().is_none_or(str::is_empty), "{blocked:?}");
    assert!(hosts.loopback_connects(), "loopback must still work");
    assert!(hosts.connects(), "the peer must still get through");
    let trail = stdout(&palisade(&["audit", "tail", "-n", "50"], dir.path()));
    let refused = trail
        .lines()
        .filter(|l| l.contains("status=refused"))
        .count();
    assert_eq!(refused, hostile.len(), "{trail}");
    for reason in [
        "`0.0.0.0/0` covers 127.0.0.0/8 (loopback)",
        "`::/0` covers ::1/128 (loopback)",
        "block too wide: `10.0.0.0/8`",
        "block too wide: `2000::/3`",
    ] {
        assert!(trail.contains(reason), "{reason} missing in {trail}");
    }
    assert!(!trail.contains("status=executed"), "{trail}");

    // The same engine still blocks what it may: the set then holds that address alone.
    std::fs::write(
        dir.path().join("events.jsonl"),
        events_blocking(&["192.0.2.2"]),
    )
    .expect("events");
    assert_success(&hosts.palisade(dir.path(), &["run", "--events", "events.jsonl"]));
    assert!(!hosts.connects(), "the allowed block must hold");
    assert!(hosts.loopback_connects());
    let blocked = hosts.blocked().unwrap_or_default();
    assert!(
        blocked.contains("192.0.2.2") && !blocked.contains("0.0.0.0") && !blocked.contains("::"),
        "{blocked}"
    );
}

/// Issue 11 (build): an address inside a block already in place is already blocked. nftables
/// refuses the element ("interval overlaps"); that is reported as such and is no failure (the
/// config here switches to manual mode at the first failure).
#[test]
fn an_address_inside_an_existing_block_is_already_blocked_not_a_failure() {
    if !can_run() {
        return;
    }
    let hosts = Hosts::new("a1o");
    let dir = block_target_content();
    std::fs::write(
        dir.path().join("events.jsonl"),
        events_blocking(&["192.0.2.0/24", "192.0.2.2"]),
    )
    .expect("events");
    let out = hosts.palisade(dir.path(), &["run", "--events", "events.jsonl"]);
    assert_success(&out);
    assert!(!hosts.connects());
    let trail = stdout(&palisade(&["audit", "tail", "-n", "50"], dir.path()));
    assert!(
        trail.contains("status=executed reason=192.0.2.2 is already blocked by 192.0.2.0/24 (inbound), 192.0.2.0/24 (outbound)"),
        "{trail}"
    );
    assert!(!trail.contains("status=failed"), "{trail}");
    let mode = stdout(&palisade(&["mode"], dir.path()));
    assert!(mode.starts_with("mode: auto"), "{mode}");
    // Nothing was placed for the covered address, so there is nothing of it to expire or undo.
    let blocked = hosts.blocked().unwrap_or_default();
    assert!(!blocked.contains("192.0.2.2"), "{blocked}");
}

/// Defect (issue 11.10): `palisade unblock X` where no engine ever ran created palisade's
/// nftables table before failing on the missing state database.
#[test]
fn unblock_without_a_state_database_leaves_nftables_alone() {
    if !can_run() {
        return;
    }
    let hosts = Hosts::new("a1u");
    let empty = tempfile::tempdir().expect("temp dir");
    let out = hosts.palisade(empty.path(), &["unblock", "192.0.2.2"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no state database"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        hosts.blocked(),
        None,
        "the table must not have been created"
    );
}

/// Sibling of issue 11.1: a block of everything recorded in the state database (by a version
/// without the canonical check, or by hand) was re-asserted at every start, so a restart would
/// cut the host off again. It is closed instead, and loopback keeps working.
#[test]
fn a_recorded_block_of_a_protected_range_is_not_reasserted_at_start() {
    if !can_run() {
        return;
    }
    let hosts = Hosts::new("a1r");
    let dir = block_target_content();
    std::fs::write(dir.path().join("nothing.jsonl"), "").expect("events");
    assert_success(&hosts.palisade(dir.path(), &["run", "--events", "nothing.jsonl"]));
    let now = jiff::Timestamp::now().as_millisecond();
    let query = |sql: &'static str| {
        crate::support::with_state(
            &dir.path().join("data/palisade.db"),
            async |state| -> Vec<(String, Option<i64>)> {
                sqlx::query_as(sql)
                    .bind(now)
                    .fetch_all(state.pool())
                    .await
                    .expect("query")
            },
        )
    };
    query(
        "INSERT INTO blocks (address, direction, created_ms, expires_ms, reason, removed_ms) \
         SELECT column1, 'both', ?1, ?1 + 3600000, 'recorded earlier', NULL \
         FROM (VALUES ('1.2.3.4/0'), ('1::/0'), ('192.0.2.2')) RETURNING address, removed_ms",
    );
    let out = hosts.palisade(dir.path(), &["run", "--events", "nothing.jsonl"]);
    assert_success(&out);
    assert!(
        stderr(&out).contains("recorded block `1.2.3.4/0` is not re-asserted"),
        "{}",
        stderr(&out)
    );
    assert!(hosts.loopback_connects(), "loopback must still work");
    // The legitimate recorded block is back; the protected ranges are not, and are closed.
    assert!(!hosts.connects());
    let blocked = hosts.blocked().unwrap_or_default();
    assert!(
        blocked.contains("192.0.2.2") && !blocked.contains("0.0.0.0") && !blocked.contains("::"),
        "{blocked}"
    );
    let rows = query("SELECT address, removed_ms FROM blocks WHERE ?1 > 0 ORDER BY address");
    let open: Vec<&str> = rows
        .iter()
        .filter(|(_, removed)| removed.is_none())
        .map(|(address, _)| address.as_str())
        .collect();
    assert_eq!(open, ["192.0.2.2"], "{rows:?}");
}

/// A block wider than `actions.widest_block` that the playbook allows (`widest_prefix`) waits
/// for a person, acts nothing until approved, and once approved the executor, asking the same
/// policy with the approval on record, places it in the kernel.
#[test]
fn a_wide_block_the_playbook_allows_waits_for_approval_then_holds() {
    if !can_run() {
        return;
    }
    let hosts = Hosts::new("a1a");
    let dir = block_target_content();
    std::fs::write(
        dir.path().join("playbooks/test-block.yaml"),
        "id: test-block\ntitle: Block\nhigh_risk_approval: not_required\ntrigger: {rules: [test-c2]}\nsteps:\n  - id: block\n    action: firewall.block\n    with: {address: \"{{ event.block_target }}\", widest_prefix: 22, direction: inbound}\n",
    )
    .expect("playbook");
    let mut engine = Command::new("ip")
        .args([
            "netns",
            "exec",
            &hosts.host,
            env!("CARGO_BIN_EXE_palisade"),
            "run",
        ])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("palisade runs");
    let mut stdin = engine.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, events_blocking(&["192.0.0.0/22"]).as_bytes())
        .expect("write");
    let pending = || stdout(&palisade(&["approvals", "list"], dir.path()));
    let queued = eventually(crate::support::PATIENCE, || {
        pending().contains("firewall.block")
    });
    let listing = pending();
    let id = listing
        .lines()
        .find(|l| l.contains("firewall.block"))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string);
    let before = hosts.connects();
    let approved = id
        .as_deref()
        .map(|id| palisade(&["approvals", "approve", id], dir.path()));
    let blocked = eventually(crate::support::PATIENCE, || !hosts.connects());
    drop(stdin);
    let _ = engine.wait();
    assert!(queued, "{listing}");
    assert!(before, "nothing may act before the approval");
    assert_success(&approved.expect("an approval id"));
    assert!(blocked, "the approved block must hold");
    assert!(hosts.loopback_connects());
    let all = stdout(&palisade(&["approvals", "list", "--all"], dir.path()));
    assert!(all.contains("executed"), "{all}");
    assert!(
        hosts.blocked().unwrap_or_default().contains("192.0.0.0/22"),
        "{:?}",
        hosts.blocked()
    );
}
