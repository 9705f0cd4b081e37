//! The target policy: whether a step may act on what it names. One pure function, [`check`],
//! decides it from the step's typed parameters and the evidence behind it, so planning (and with
//! it `palisade replay` and `palisade test`), playbook validation for literal parameters, and
//! the executor right before it acts all give the same answer for the same target.
//!
//! The parameters it sees are canonical (see [`super::ParamType::parse`]): an address is the
//! network the firewall will store, so the value checked is the value acted on.

use std::collections::BTreeMap;
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ParamValue, Policy};
use crate::intel::indicator::mask;

/// The widest range one `firewall.block` may cover, as the shortest prefix length allowed per
/// address family. A step may go wider only by naming its own `widest_prefix`, and such a step
/// always waits for a person's approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WidestBlock {
    /// Shortest IPv4 prefix length a block may have (24: at most 256 addresses).
    pub ipv4: u8,
    /// Shortest IPv6 prefix length a block may have (48: one site).
    pub ipv6: u8,
}

impl Default for WidestBlock {
    fn default() -> WidestBlock {
        WidestBlock { ipv4: 24, ipv6: 48 }
    }
}

impl WidestBlock {
    /// The shortest prefix allowed for `ip`'s family.
    pub fn for_family(self, ip: IpAddr) -> u8 {
        if ip.is_ipv4() { self.ipv4 } else { self.ipv6 }
    }
}

/// Ranges no block may touch, whatever the configuration: blocking them breaks the host itself.
const ALWAYS_PROTECTED: &[(&str, u8, &str)] = &[
    ("127.0.0.0", 8, "loopback"),
    ("0.0.0.0", 8, "this-network and unspecified"),
    ("224.0.0.0", 4, "multicast"),
    ("255.255.255.255", 32, "broadcast"),
    ("::1", 128, "loopback"),
    ("::", 128, "unspecified"),
    ("ff00::", 8, "multicast"),
    // An IPv6 packet may carry IPv4-mapped loopback addresses.
    ("::ffff:127.0.0.0", 104, "IPv4-mapped loopback"),
];

/// Why a step may not act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The target is a protected address or process.
    Protected(String),
    /// The block covers more than the widest block allowed for the step.
    TooWide {
        network: String,
        widest: u8,
        /// Whether the limit is the step's own `widest_prefix` rather than the configuration's.
        step_limit: bool,
    },
    /// Every intel hit the detection rests on is on a warninglist of benign infrastructure.
    WarninglistedEvidence { lists: String },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Protected(reason) => write!(f, "protected target: {reason}"),
            Refusal::TooWide {
                network,
                widest,
                step_limit,
            } => write!(
                f,
                "block too wide: `{network}` covers more than a /{widest} ({})",
                if *step_limit {
                    "the step's `widest_prefix`"
                } else {
                    "`actions.widest_block`; a step may allow wider with `widest_prefix` and an approval"
                }
            ),
            Refusal::WarninglistedEvidence { lists } => write!(
                f,
                "the only evidence is intel on a warninglist ({lists}): benign infrastructure is never acted on automatically"
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// What the policy says about one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Allowed once a person approves (a block wider than the configured limit).
    NeedsApproval(String),
    Refused(Refusal),
}

/// What one step would act on, and on what grounds.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The action name, e.g. `firewall.block`.
    pub action: &'a str,
    /// The step's parameters, parsed (so canonical).
    pub params: &'a BTreeMap<&'static str, ParamValue>,
    /// Names the process to kill is known by: the step's `name`, and where the executor can
    /// read it, the live process's. Planning never reads `/proc`, so replay and tests are
    /// deterministic; the executor checks the live name again before acting.
    pub process_names: &'a [&'a str],
    /// For each intel hit the detection rests on, the warninglist its indicator is on, if any.
    /// (Only that is read, so the executor can take it from the evidence on record without
    /// rebuilding whole hits.)
    pub evidence: &'a [Option<&'a str>],
    /// A person approved this step.
    pub approved: bool,
}

/// Decides whether `target` may be acted on under `policy`. Pure: the same input gives the same
/// verdict wherever it is asked (the engine's own PID is the one fact read from the process).
pub fn check(policy: &Policy, target: &Target<'_>) -> Verdict {
    let acts_on_host = matches!(target.action, "firewall.block" | "process.kill");
    if acts_on_host && !target.evidence.is_empty() && target.evidence.iter().all(Option::is_some) {
        let mut lists: Vec<&str> = target.evidence.iter().copied().flatten().collect();
        lists.sort_unstable();
        lists.dedup();
        return Verdict::Refused(Refusal::WarninglistedEvidence {
            lists: lists.join(", "),
        });
    }
    let mut verdict = Verdict::Allowed;
    for value in target.params.values() {
        match value {
            ParamValue::Address { ip, prefix } => {
                if let Some(reason) = protected_address(policy, *ip, *prefix) {
                    return Verdict::Refused(Refusal::Protected(reason));
                }
                if target.action == "firewall.block" {
                    match block_size(policy, target, *ip, *prefix) {
                        Verdict::Allowed => {}
                        Verdict::NeedsApproval(why) => verdict = Verdict::NeedsApproval(why),
                        refused @ Verdict::Refused(_) => return refused,
                    }
                }
            }
            ParamValue::Pid(pid) => {
                if let Some(reason) = protected_process(policy, *pid, target.process_names) {
                    return Verdict::Refused(Refusal::Protected(reason));
                }
            }
            _ => {}
        }
    }
    verdict
}

fn overlaps(a: IpAddr, a_prefix: u8, b: IpAddr, b_prefix: u8) -> bool {
    let common = a_prefix.min(b_prefix);
    a.is_ipv4() == b.is_ipv4() && mask(a, common) == mask(b, common)
}

/// Why the range `ip/prefix` may never be blocked, if it may not: it overlaps an always-protected
/// range or one of `protected_addresses`. Also asked of recorded blocks before they are put back.
pub fn protected_address(policy: &Policy, ip: IpAddr, prefix: u8) -> Option<String> {
    let shown = ParamValue::Address { ip, prefix };
    for (network, length, what) in ALWAYS_PROTECTED {
        if let Ok(network) = network.parse::<IpAddr>()
            && overlaps(ip, prefix, network, *length)
        {
            return Some(format!("`{shown}` covers {network}/{length} ({what})"));
        }
    }
    for (network, length) in &policy.protected_addresses {
        if overlaps(ip, prefix, *network, *length) {
            return Some(format!(
                "`{shown}` overlaps the protected range {network}/{length}"
            ));
        }
    }
    None
}

fn block_size(policy: &Policy, target: &Target<'_>, ip: IpAddr, prefix: u8) -> Verdict {
    let configured = policy.widest_block.for_family(ip);
    let step_limit = target.params.get("widest_prefix").and_then(|v| match v {
        ParamValue::PrefixLength(length) => Some(*length),
        _ => None,
    });
    let widest = step_limit.unwrap_or(configured);
    let network = ParamValue::Address { ip, prefix }.to_string();
    if prefix < widest {
        return Verdict::Refused(Refusal::TooWide {
            network,
            widest,
            step_limit: step_limit.is_some(),
        });
    }
    if prefix < configured && !target.approved {
        return Verdict::NeedsApproval(format!(
            "`{network}` is wider than the /{configured} of `actions.widest_block`: a person must approve it"
        ));
    }
    Verdict::Allowed
}

fn protected_process(policy: &Policy, pid: u32, names: &[&str]) -> Option<String> {
    if pid == 1 {
        return Some("PID 1 is the init process".into());
    }
    if pid == std::process::id() {
        return Some("that PID is palisade itself".into());
    }
    names
        .iter()
        .find(|name| {
            policy
                .critical_processes
                .iter()
                .any(|critical| same_process_name(critical, name))
        })
        .map(|name| format!("`{name}` is a critical process"))
}

/// Whether two process names name the same program, read at least as loosely as the kill
/// plugin reads them when it checks the PID still belongs to the named process: any directory
/// (`/usr/sbin/sshd`, `C:\Windows\System32\lsass.exe`) and a `.exe` suffix are dropped, case is
/// ignored, and the kernel's 15-byte cut of a name (`systemd-journal`) matches the full name.
/// Otherwise a name the kill accepts could slip past the critical-process guard.
fn same_process_name(a: &str, b: &str) -> bool {
    fn program(name: &str) -> String {
        let base = name
            .rsplit(['\\', '/'])
            .next()
            .unwrap_or(name)
            .to_ascii_lowercase();
        match base.strip_suffix(".exe") {
            Some(stem) => stem.to_string(),
            None => base,
        }
    }
    let (a, b) = (program(a), program(b));
    let cut = |short: &str, long: &str| short.len() == 15 && long.starts_with(short);
    !a.is_empty() && (a == b || cut(&a, &b) || cut(&b, &a))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// A policy for tests: 192.0.2.0/24 protected, sshd critical, live actions.
    pub(crate) fn policy() -> Policy {
        Policy {
            protected_addresses: vec![("192.0.2.0".parse().unwrap(), 24)],
            critical_processes: vec!["sshd".into()],
            dry_run: false,
            widest_block: WidestBlock::default(),
            cooldown: Duration::from_secs(60),
            max_per_minute: 10,
            timeout: Duration::from_secs(5),
            degrade_after_failures: 5,
            degrade_window: Duration::from_secs(600),
            approval_expiry: Duration::from_secs(3600),
        }
    }

    fn address(text: &str) -> BTreeMap<&'static str, ParamValue> {
        BTreeMap::from([(
            "address",
            crate::actions::ParamType::Address.parse(text).unwrap(),
        )])
    }

    fn verdict(action: &str, params: &BTreeMap<&'static str, ParamValue>) -> Verdict {
        check(
            &policy(),
            &Target {
                action,
                params,
                process_names: &[],
                evidence: &[],
                approved: false,
            },
        )
    }

    fn refused(action: &str, params: &BTreeMap<&'static str, ParamValue>) -> String {
        match verdict(action, params) {
            Verdict::Refused(reason) => reason.to_string(),
            other => panic!("{params:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn protected_targets_are_refused() {
        let pid = |n| BTreeMap::from([("pid", ParamValue::Pid(n))]);
        assert!(refused("process.kill", &pid(1)).contains("PID 1"));
        assert!(refused("process.kill", &pid(std::process::id())).contains("palisade itself"));
        assert!(refused("firewall.block", &address("127.0.0.1")).contains("loopback"));
        assert!(refused("firewall.block", &address("::1")).contains("loopback"));
        assert!(refused("firewall.block", &address("192.0.2.77")).contains("protected range"));
        // A wider block that would cover the protected range is refused too.
        assert!(refused("firewall.unblock", &address("192.0.0.0/16")).contains("protected"));
        assert_eq!(
            verdict("firewall.block", &address("185.12.33.4")),
            Verdict::Allowed
        );
    }

    /// Defect: `1.2.3.4/0` and `1::/0` passed the check as written and blocked everything.
    #[test]
    fn a_block_that_covers_everything_is_refused_whatever_its_host_bits() {
        for text in [
            "1.2.3.4/0",
            "1::/0",
            "0.0.0.0/0",
            "::/0",
            "64.0.0.0/2",
            "::ffff:1.2.3.4/96",
        ] {
            let reason = refused("firewall.block", &address(text));
            assert!(reason.starts_with("protected target"), "{text}: {reason}");
        }
    }

    /// Defect: `128.0.0.0/1`, `2000::/3` and `10.0.0.0/8` were executed.
    #[test]
    fn a_block_wider_than_the_configured_limit_is_refused() {
        for text in ["2000::/3", "10.0.0.0/8", "185.12.0.0/23", "2001:db8::/47"] {
            let reason = refused("firewall.block", &address(text));
            assert!(reason.contains("block too wide"), "{text}: {reason}");
        }
        // Half of IPv4 also covers multicast; refused either way.
        refused("firewall.block", &address("128.0.0.0/1"));
        for text in ["185.12.33.0/24", "2001:db8:1::/48", "2001:db8::1"] {
            assert_eq!(verdict("firewall.block", &address(text)), Verdict::Allowed);
        }
    }

    #[test]
    fn a_step_may_allow_a_wider_block_only_with_approval() {
        let mut params = address("10.0.0.0/8");
        params.insert("widest_prefix", ParamValue::PrefixLength(8));
        assert!(matches!(
            verdict("firewall.block", &params),
            Verdict::NeedsApproval(_)
        ));
        let approved = check(
            &policy(),
            &Target {
                action: "firewall.block",
                params: &params,
                process_names: &[],
                evidence: &[],
                approved: true,
            },
        );
        assert_eq!(approved, Verdict::Allowed);
        // The step's own limit holds too.
        let mut params = address("10.0.0.0/7");
        params.insert("widest_prefix", ParamValue::PrefixLength(8));
        assert!(refused("firewall.block", &params).contains("`widest_prefix`"));
        // Unblocking a wide range is no danger.
        assert_eq!(
            verdict("firewall.unblock", &address("10.0.0.0/8")),
            Verdict::Allowed
        );
    }

    #[test]
    fn critical_processes_are_refused_by_any_name_they_are_known_by() {
        let params = BTreeMap::from([("pid", ParamValue::Pid(4242))]);
        let kill = |names: &[&str]| {
            check(
                &policy(),
                &Target {
                    action: "process.kill",
                    params: &params,
                    process_names: names,
                    evidence: &[],
                    approved: false,
                },
            )
        };
        assert!(matches!(kill(&["x", "SSHD"]), Verdict::Refused(_)));
        assert_eq!(kill(&["svchost.exe"]), Verdict::Allowed);
    }

    /// Sibling of issue 11.1 (a guard checked on another form of the value than the one acted
    /// on): the kill plugin accepts `/usr/sbin/sshd`, `C:\...\LSASS.EXE` and the kernel's cut
    /// names as the process it kills, so the critical-process guard must read them the same way.
    #[test]
    fn a_critical_process_is_refused_by_path_case_suffix_and_the_kernels_cut_name() {
        let params = BTreeMap::from([("pid", ParamValue::Pid(4242))]);
        let mut p = policy();
        p.critical_processes = vec!["sshd".into(), "lsass.exe".into(), "systemd-journald".into()];
        let kill = |name: &str| {
            check(
                &p,
                &Target {
                    action: "process.kill",
                    params: &params,
                    process_names: &[name],
                    evidence: &[],
                    approved: false,
                },
            )
        };
        for name in [
            "/usr/sbin/sshd",
            "sshd.exe",
            "C:\\Windows\\System32\\LSASS.EXE",
            "lsass",
            "systemd-journal",
            "/lib/systemd/systemd-journald",
        ] {
            assert!(matches!(kill(name), Verdict::Refused(_)), "{name}");
        }
        for name in ["sshd-helper", "ssh", "systemd-journ", "lsass2.exe", ""] {
            assert_eq!(kill(name), Verdict::Allowed, "{name}");
        }
    }

    /// Defence in depth: a detection resting only on warninglisted intel never blocks or kills.
    #[test]
    fn a_block_or_kill_resting_only_on_warninglisted_intel_is_refused() {
        let block = address("8.8.8.8");
        let kill = BTreeMap::from([("pid", ParamValue::Pid(4242))]);
        let ask = |action, params, evidence: &[Option<&str>]| {
            check(
                &policy(),
                &Target {
                    action,
                    params,
                    process_names: &[],
                    evidence,
                    approved: false,
                },
            )
        };
        let benign = [Some("public-dns-v4"), Some("public-dns-v4")];
        for (action, params) in [("firewall.block", &block), ("process.kill", &kill)] {
            match ask(action, params, &benign) {
                Verdict::Refused(reason) => {
                    assert!(reason.to_string().contains("public-dns-v4"), "{reason}")
                }
                other => panic!("{action} was not refused: {other:?}"),
            }
            // One hit that is not warninglisted is evidence enough.
            let mixed = [Some("public-dns-v4"), None];
            assert_eq!(ask(action, params, &mixed), Verdict::Allowed);
            assert_eq!(ask(action, params, &[]), Verdict::Allowed);
        }
        // A notification about benign infrastructure still goes out.
        let notify = BTreeMap::new();
        assert_eq!(ask("notify.log", &notify, &benign), Verdict::Allowed);
    }

    proptest::proptest! {
        /// Whatever text an event puts in `address`, a block the policy allows never covers
        /// loopback, and never covers more than the configured widest block.
        #[test]
        fn an_allowed_block_never_covers_loopback_or_more_than_the_limit(
            v4 in proptest::prelude::any::<u32>(),
            v6 in proptest::prelude::any::<u128>(),
            prefix in 0u8..=128,
            six in proptest::prelude::any::<bool>(),
        ) {
            let text = if six {
                format!("{}/{prefix}", std::net::Ipv6Addr::from(v6))
            } else {
                format!("{}/{}", std::net::Ipv4Addr::from(v4), prefix % 33)
            };
            let Ok(value) = crate::actions::ParamType::Address.parse(&text) else {
                return Ok(());
            };
            let ParamValue::Address { ip, prefix } = value.clone() else {
                return Err(proptest::test_runner::TestCaseError::fail("not an address"));
            };
            let params = BTreeMap::from([("address", value)]);
            if verdict("firewall.block", &params) == Verdict::Allowed {
                let loopback: IpAddr = if ip.is_ipv4() { "127.0.0.1".parse().unwrap() } else { "::1".parse().unwrap() };
                proptest::prop_assert!(mask(loopback, prefix) != ip, "{text} covers loopback");
                proptest::prop_assert!(prefix >= WidestBlock::default().for_family(ip), "{text}");
            }
        }
    }
}
