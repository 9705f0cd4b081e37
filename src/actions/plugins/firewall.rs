//! `firewall.block` / `firewall.unblock` with nftables, or iptables where nft is absent.
//!
//! palisade keeps everything in its own table, `inet palisade`: four sets (inbound and outbound,
//! IPv4 and IPv6) whose elements carry their own timeout, so a block expires in the kernel by
//! itself, and two chains that drop traffic from or to the sets. Changes go to `nft -f -` as a
//! script on standard input: the address in it is a parsed `IpAddr`, never text from an event.
//! Blocks are recorded in the state database and re-asserted at start-up with the time they
//! have left.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use sqlx::SqlitePool;

use super::{Action, ActionCall, ActionError, ActionFuture};
use crate::actions::ParamValue;

const TABLE: &str = "inet palisade";

/// The table, sets and chains, created in one transaction when the table is missing.
const SETUP: &str = "\
add table inet palisade
add set inet palisade inbound4 { type ipv4_addr; flags interval, timeout; }
add set inet palisade outbound4 { type ipv4_addr; flags interval, timeout; }
add set inet palisade inbound6 { type ipv6_addr; flags interval, timeout; }
add set inet palisade outbound6 { type ipv6_addr; flags interval, timeout; }
add chain inet palisade input { type filter hook input priority -10; policy accept; }
add chain inet palisade output { type filter hook output priority -10; policy accept; }
add rule inet palisade input ip saddr @inbound4 counter drop
add rule inet palisade input ip6 saddr @inbound6 counter drop
add rule inet palisade output ip daddr @outbound4 counter drop
add rule inet palisade output ip6 daddr @outbound6 counter drop
";

/// Runs `nft -f -` with `script` on standard input.
fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `nft`: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("cannot write to `nft`: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("`nft` failed: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

fn ensure_table() -> Result<(), String> {
    let exists = Command::new("nft")
        .args(["list", "table", "inet", "palisade"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run `nft`: {e}"))?
        .success();
    if exists { Ok(()) } else { nft(SETUP) }
}

fn sets(ip: IpAddr, direction: &str) -> Vec<&'static str> {
    let v4 = ip.is_ipv4();
    let mut out = Vec::new();
    if direction != "outbound" {
        out.push(if v4 { "inbound4" } else { "inbound6" });
    }
    if direction != "inbound" {
        out.push(if v4 { "outbound4" } else { "outbound6" });
    }
    out
}

/// Which program enforces blocks.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// nftables when `nft` is installed, iptables otherwise.
    Auto,
    Nftables,
    /// iptables and ip6tables: one DROP rule per block in palisade's own chains. iptables has
    /// no timeouts, so the engine removes expired blocks itself.
    Iptables,
}

fn has_program(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

impl Backend {
    /// The backend `Auto` stands for on this machine.
    pub fn resolve(self) -> Backend {
        match self {
            Backend::Auto if has_program("nft") => Backend::Nftables,
            Backend::Auto => Backend::Iptables,
            other => other,
        }
    }
}

/// Blocks with the given backend. Returns the existing blocks that already covered the address
/// (see [`block`]; iptables rules may overlap, so there it is always empty).
pub fn block_with(
    backend: Backend,
    ip: IpAddr,
    prefix: u8,
    direction: &str,
    ttl: Duration,
) -> Result<Vec<String>, String> {
    match backend.resolve() {
        Backend::Iptables => iptables::block(ip, prefix, direction).map(|()| Vec::new()),
        _ => block(ip, prefix, direction, ttl),
    }
}

/// Unblocks with the given backend.
pub fn unblock_with(backend: Backend, ip: IpAddr, prefix: u8) -> Result<(), String> {
    match backend.resolve() {
        Backend::Iptables => iptables::unblock(ip, prefix),
        _ => unblock(ip, prefix),
    }
}

/// The iptables fallback: chains `PALISADE_IN` and `PALISADE_OUT` jumped to from `INPUT` and
/// `OUTPUT`, one DROP rule per blocked address; every argument is a separate value.
mod iptables {
    use std::net::IpAddr;
    use std::process::{Command, Stdio};

    fn program(ip: IpAddr) -> &'static str {
        if ip.is_ipv4() {
            "iptables"
        } else {
            "ip6tables"
        }
    }

    fn run(program: &str, args: &[&str]) -> Result<bool, String> {
        let output = Command::new(program)
            .args(["-w", "5"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cannot run `{program}`: {e}"))?;
        Ok(output.status.success())
    }

    fn ensure(program: &str) -> Result<(), String> {
        for (chain, hook) in [("PALISADE_IN", "INPUT"), ("PALISADE_OUT", "OUTPUT")] {
            // `-N` fails when the chain exists; that is the state wanted.
            run(program, &["-N", chain])?;
            if !run(program, &["-C", hook, "-j", chain])?
                && !run(program, &["-I", hook, "1", "-j", chain])?
            {
                return Err(format!("`{program} -I {hook} 1 -j {chain}` failed"));
            }
        }
        Ok(())
    }

    fn rules(ip: IpAddr, prefix: u8, direction: &str) -> Vec<(&'static str, &'static str, String)> {
        let address = format!("{}/{prefix}", crate::intel::indicator::mask(ip, prefix));
        let mut out = Vec::new();
        if direction != "outbound" {
            out.push(("PALISADE_IN", "-s", address.clone()));
        }
        if direction != "inbound" {
            out.push(("PALISADE_OUT", "-d", address));
        }
        out
    }

    pub(super) fn block(ip: IpAddr, prefix: u8, direction: &str) -> Result<(), String> {
        let program = program(ip);
        ensure(program)?;
        for (chain, flag, address) in rules(ip, prefix, direction) {
            let rule = [chain, flag, address.as_str(), "-j", "DROP"];
            // Blocking twice is harmless: the rule is added only when missing.
            let exists = run(program, &[&["-C"][..], &rule[..]].concat())?;
            if !exists && !run(program, &[&["-A"][..], &rule[..]].concat())? {
                return Err(format!(
                    "`{program} -A {chain} {flag} {address} -j DROP` failed"
                ));
            }
        }
        Ok(())
    }

    pub(super) fn unblock(ip: IpAddr, prefix: u8) -> Result<(), String> {
        let program = program(ip);
        ensure(program)?;
        for (chain, flag, address) in rules(ip, prefix, "both") {
            let rule = [chain, flag, address.as_str(), "-j", "DROP"];
            while run(program, &[&["-D"][..], &rule[..]].concat())? {}
        }
        Ok(())
    }
}

/// Removes recorded blocks whose time is up, for backends without kernel timeouts; with
/// nftables it only closes the records (the kernel already dropped the elements). Returns how
/// many expired.
pub async fn expire(pool: &SqlitePool, backend: Backend) -> Result<usize, String> {
    let now = now_ms();
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT address FROM blocks WHERE removed_ms IS NULL AND expires_ms <= ?",
    )
    .bind(now)
    .fetch_all(pool)
    .await
    .map_err(|e| e.to_string())?;
    for (address,) in &rows {
        if let Ok(ParamValue::Address { ip, prefix }) =
            crate::actions::ParamType::Address.parse(address)
            && backend.resolve() == Backend::Iptables
        {
            let (ip, prefix) = (ip, prefix);
            tokio::task::spawn_blocking(move || iptables::unblock(ip, prefix))
                .await
                .map_err(|e| e.to_string())??;
        }
        sqlx::query("UPDATE blocks SET removed_ms = ? WHERE address = ? AND removed_ms IS NULL AND expires_ms <= ?")
            .bind(now)
            .bind(address)
            .bind(now)
            .execute(pool)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(rows.len())
}

/// Adds `address` to the sets of `direction` for `ttl`. Blocking an address already blocked
/// refreshes its timeout. An address inside a wider block already in a set is blocked already:
/// nftables refuses the element ("interval overlaps"), and that set is left as it is. Returns,
/// for each such set, the block that already covers the address, e.g. `10.0.0.0/24 (inbound)`.
pub fn block(
    ip: IpAddr,
    prefix: u8,
    direction: &str,
    ttl: Duration,
) -> Result<Vec<String>, String> {
    ensure_table()?;
    let element = format!("{}/{prefix}", crate::intel::indicator::mask(ip, prefix));
    let seconds = ttl.as_secs().max(1);
    let add = |set: &str| format!("add element {TABLE} {set} {{ {element} timeout {seconds}s }}\n");
    let mut script = String::new();
    for set in sets(ip, direction) {
        // Delete first (ignored when absent) so a repeat block gets the new timeout.
        let _ = nft(&format!("delete element {TABLE} {set} {{ {element} }}\n"));
        script.push_str(&add(set));
    }
    match nft(&script) {
        Ok(()) => Ok(Vec::new()),
        // The script is one transaction, so nothing was added: go set by set and tell the sets
        // that already cover the address from a real conflict.
        Err(err) if err.contains("interval overlaps") => {
            let mut covered = Vec::new();
            for set in sets(ip, direction) {
                match nft(&add(set)) {
                    Ok(()) => {}
                    Err(err) if err.contains("interval overlaps") => {
                        match covering(set, &element) {
                            Some(by) => covered.push(format!("{by} ({})", set_direction(set))),
                            None => {
                                return Err(format!(
                                    "`{element}` would cover smaller blocks already in `{set}`; unblock them first: {err}"
                                ));
                            }
                        }
                    }
                    Err(err) => return Err(err),
                }
            }
            Ok(covered)
        }
        Err(err) => Err(err),
    }
}

fn set_direction(set: &str) -> &'static str {
    if set.starts_with("inbound") {
        "inbound"
    } else {
        "outbound"
    }
}

/// The element of `set` that contains all of `element`, if one does: `nft get element` answers
/// with the interval holding the queried one.
fn covering(set: &str, element: &str) -> Option<String> {
    let output = Command::new("nft")
        .args(["get", "element", "inet", "palisade", set])
        .arg(format!("{{ {element} }}"))
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let (_, elements) = text.split_once("elements = {")?;
    let found = elements
        .split([' ', ',', '}', '\n', '\t'])
        .find(|t| !t.is_empty())?;
    // Only an address or a range is an answer; anything else is not what we asked for.
    matches!(
        crate::actions::ParamType::Address.parse(found),
        Ok(ParamValue::Address { .. })
    )
    .then(|| found.to_string())
}

/// Removes `address` from every set; an address that is not blocked is not an error.
pub fn unblock(ip: IpAddr, prefix: u8) -> Result<(), String> {
    ensure_table()?;
    let element = format!("{}/{prefix}", crate::intel::indicator::mask(ip, prefix));
    for set in sets(ip, "both") {
        if let Err(err) = nft(&format!("delete element {TABLE} {set} {{ {element} }}\n"))
            && !err.contains("No such file")
            && !err.contains("does not exist")
        {
            return Err(err);
        }
    }
    Ok(())
}

fn address(call: &ActionCall) -> Result<(IpAddr, u8), ActionError> {
    match call.params.get("address") {
        Some(ParamValue::Address { ip, prefix }) => Ok((*ip, *prefix)),
        _ => Err(ActionError::new("no address")),
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

pub(super) struct Block {
    pub(super) blocks: Option<SqlitePool>,
    pub(super) backend: Backend,
}

impl Action for Block {
    fn name(&self) -> &'static str {
        "firewall.block"
    }

    fn execute<'a>(&'a self, call: &'a ActionCall) -> ActionFuture<'a> {
        Box::pin(async move {
            let (ip, prefix) = address(call)?;
            let direction = call.text("direction").unwrap_or_else(|| "both".into());
            let ttl = match call.params.get("ttl") {
                Some(ParamValue::Duration(d)) => *d,
                _ => Duration::from_secs(3600),
            };
            let shown = ParamValue::Address { ip, prefix }.to_string();
            let dir = direction.clone();
            let backend = self.backend;
            let covered =
                tokio::task::spawn_blocking(move || block_with(backend, ip, prefix, &dir, ttl))
                    .await
                    .map_err(|e| ActionError::new(e.to_string()))?
                    .map_err(|e| {
                        ActionError::new(format!("the firewall refused the block: {e}"))
                    })?;
            // Every set already covered it: the traffic is dropped, which is what was asked, so
            // this is no failure; nothing was placed, so there is nothing to record or expire.
            if !covered.is_empty() && covered.len() == sets(ip, &direction).len() {
                return Ok(format!(
                    "{shown} is already blocked by {}",
                    covered.join(", ")
                ));
            }
            if let Some(pool) = &self.blocks {
                let now = now_ms();
                sqlx::query(
                    "INSERT INTO blocks (address, direction, created_ms, expires_ms, reason, removed_ms) VALUES (?, ?, ?, ?, ?, NULL) \
                     ON CONFLICT (address, direction) DO UPDATE SET created_ms = excluded.created_ms, expires_ms = excluded.expires_ms, reason = excluded.reason, removed_ms = NULL",
                )
                .bind(&shown)
                .bind(&direction)
                .bind(now)
                .bind(now + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
                .bind(call.text("reason"))
                .execute(pool)
                .await
                .map_err(|e| ActionError::new(format!("blocked, but cannot record the block: {e}")))?;
            }
            let also = if covered.is_empty() {
                String::new()
            } else {
                format!("; already blocked by {}", covered.join(", "))
            };
            Ok(format!(
                "blocked {shown} ({direction}) for {}s{also}",
                ttl.as_secs()
            ))
        })
    }
}

pub(super) struct Unblock {
    pub(super) blocks: Option<SqlitePool>,
    pub(super) backend: Backend,
}

impl Action for Unblock {
    fn name(&self) -> &'static str {
        "firewall.unblock"
    }

    fn execute<'a>(&'a self, call: &'a ActionCall) -> ActionFuture<'a> {
        Box::pin(async move {
            let (ip, prefix) = address(call)?;
            let shown = ParamValue::Address { ip, prefix }.to_string();
            let backend = self.backend;
            tokio::task::spawn_blocking(move || unblock_with(backend, ip, prefix))
                .await
                .map_err(|e| ActionError::new(e.to_string()))?
                .map_err(|e| ActionError::new(format!("the firewall refused the unblock: {e}")))?;
            if let Some(pool) = &self.blocks {
                record_removed(pool, &shown)
                    .await
                    .map_err(|e| ActionError::new(e.to_string()))?;
            }
            Ok(format!("unblocked {shown}"))
        })
    }
}

/// Marks every block of `address` as removed.
pub async fn record_removed(pool: &SqlitePool, address: &str) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("UPDATE blocks SET removed_ms = ? WHERE address = ? AND removed_ms IS NULL")
            .bind(now_ms())
            .bind(address)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// Puts every recorded, unexpired block back (after a reboot or a flushed ruleset), with the
/// time it has left. Returns how many were re-asserted. A recorded block of a protected range
/// (written by an older version, or by hand) is not put back: it is closed and logged, since
/// re-asserting it would cut the host off at every start.
pub async fn reassert(
    pool: &SqlitePool,
    backend: Backend,
    policy: &crate::actions::Policy,
) -> Result<usize, String> {
    let now = now_ms();
    let rows: Vec<(String, String, i64)> = sqlx::query_as("SELECT address, direction, expires_ms FROM blocks WHERE removed_ms IS NULL AND expires_ms > ?")
        .bind(now)
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?;
    let mut done = 0;
    for (address, direction, expires_ms) in rows {
        let Ok(ParamValue::Address { ip, prefix }) =
            crate::actions::ParamType::Address.parse(&address)
        else {
            continue;
        };
        if let Some(reason) = crate::actions::policy::protected_address(policy, ip, prefix) {
            tracing::error!(
                "recorded block `{address}` is not re-asserted and is closed: {reason}"
            );
            record_removed(pool, &address)
                .await
                .map_err(|e| e.to_string())?;
            continue;
        }
        let left = Duration::from_millis(u64::try_from(expires_ms - now).unwrap_or(1000));
        tokio::task::spawn_blocking(move || block_with(backend, ip, prefix, &direction, left))
            .await
            .map_err(|e| e.to_string())??;
        done += 1;
    }
    Ok(done)
}

/// The `netsh advfirewall` commands that would block an address on Windows, one argument per
/// element (for a Windows agent; palisade itself runs them nowhere).
pub fn netsh_block_args(ip: IpAddr, prefix: u8, direction: &str) -> Vec<Vec<String>> {
    let address = ParamValue::Address { ip, prefix }.to_string();
    let dirs: &[&str] = match direction {
        "inbound" => &["in"],
        "outbound" => &["out"],
        _ => &["in", "out"],
    };
    dirs.iter()
        .map(|dir| {
            ["advfirewall", "firewall", "add", "rule"]
                .iter()
                .map(|s| s.to_string())
                .chain([
                    format!("name=palisade block {address} {dir}"),
                    format!("dir={dir}"),
                    "action=block".to_string(),
                    format!("remoteip={address}"),
                    "enable=yes".to_string(),
                ])
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netsh_arguments_are_one_value_each() {
        let args = netsh_block_args("185.12.33.4".parse().unwrap(), 32, "both");
        assert_eq!(args.len(), 2);
        assert_eq!(
            args[0],
            [
                "advfirewall",
                "firewall",
                "add",
                "rule",
                "name=palisade block 185.12.33.4 in",
                "dir=in",
                "action=block",
                "remoteip=185.12.33.4",
                "enable=yes"
            ]
        );
        let range = netsh_block_args("2001:db8::".parse().unwrap(), 32, "outbound");
        assert_eq!(range[0][7], "remoteip=2001:db8::/32");
    }

    #[test]
    fn sets_follow_family_and_direction() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(sets(v4, "both"), ["inbound4", "outbound4"]);
        assert_eq!(sets(v6, "inbound"), ["inbound6"]);
        assert_eq!(sets(v4, "outbound"), ["outbound4"]);
    }
}
