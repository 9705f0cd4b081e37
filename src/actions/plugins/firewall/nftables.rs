//! The nftables backend: palisade's own table `inet palisade`, four sets (inbound and outbound,
//! IPv4 and IPv6) whose elements carry their own timeout, and two chains that drop traffic from
//! or to them. Every change is a script on `nft -f -`'s standard input, built from a parsed
//! `IpAddr` and prefix, never from text in an event.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

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

pub(super) fn sets(ip: IpAddr, direction: &str) -> Vec<&'static str> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_follow_family_and_direction() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(sets(v4, "both"), ["inbound4", "outbound4"]);
        assert_eq!(sets(v6, "inbound"), ["inbound6"]);
        assert_eq!(sets(v4, "outbound"), ["outbound4"]);
    }
}
