//! The iptables fallback, for hosts without `nft`: chains `PALISADE_IN` and `PALISADE_OUT`
//! jumped to from `INPUT` and `OUTPUT`, one DROP rule per blocked address (ip6tables for IPv6);
//! every argument is a separate value. iptables has no timeouts, so expiry removes the rules
//! (see the block records).

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
