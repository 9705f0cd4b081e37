//! `firewall.block` / `firewall.unblock` with nftables, or iptables where nft is absent.
//!
//! palisade keeps everything in its own table, `inet palisade`: four sets (inbound and outbound,
//! IPv4 and IPv6) whose elements carry their own timeout, so a block expires in the kernel by
//! itself, and two chains that drop traffic from or to the sets. Changes go to `nft -f -` as a
//! script on standard input: the address in it is a parsed `IpAddr`, never text from an event.
//! Blocks are recorded in the state database and re-asserted at start-up with the time they
//! have left.
//!
//! One file per idea: `nftables` and `iptables` are the two backends, `records` the block
//! records (expiry and re-assertion), `plugin` the two actions, `netsh` the Windows form of a
//! block. This file chooses the backend; the public paths are re-exported here.

use std::net::IpAddr;
use std::time::Duration;

mod iptables;
mod netsh;
mod nftables;
mod plugin;
mod records;

pub use netsh::netsh_block_args;
pub use nftables::{block, unblock};
pub(super) use plugin::{Block, Unblock};
pub use records::{expire, reassert, record_removed};

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
