//! The one table where Sigma field names meet palisade's typed event fields.
//!
//! A Sigma rule names fields as Sysmon and Windows write them (`Image`, `CommandLine`, ...), or
//! as the Linux and macOS taxonomies do. Each name maps to one typed [`Field`] for the event
//! kinds that carry it; normalization fills those fields from every input shape (flat, ECS,
//! Winlogbeat's `winlog.event_data`). docs/sigma.md prints the same table.

use crate::event::{EventKind, Field};

/// One row of the mapping: a Sigma field name, the event field it reads, and the event kinds
/// on which the name means that field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigmaField {
    pub sigma: &'static str,
    pub field: Field,
    pub kinds: &'static [EventKind],
}

use EventKind::{DnsQuery, Login, NetworkConnection, ProcessCreate};

const PROCESS: &[EventKind] = &[ProcessCreate];
const NETWORK: &[EventKind] = &[NetworkConnection];
const DNS: &[EventKind] = &[DnsQuery];
const LOGIN: &[EventKind] = &[Login];
const PROCESS_NETWORK_DNS: &[EventKind] = &[ProcessCreate, NetworkConnection, DnsQuery];
const ANY: &[EventKind] = &[ProcessCreate, NetworkConnection, DnsQuery, Login];

/// Every Sigma field name palisade can run, in the order docs/sigma.md lists them.
///
/// Names are Sysmon's (Windows `process_creation` is Sysmon event 1, `network_connection` event
/// 3, `dns_query` event 22); the Linux and macOS process_creation taxonomies use the same names.
pub const TABLE: &[SigmaField] = &[
    // The process: Sysmon 1 (and 4688, Linux auditd/eBPF sensors, ECS `process.*`). Sysmon 3 and
    // 22 name the process behind a connection or a query by its image, id and user too; ECS
    // events carry `process.command_line` and `process.parent.executable` on every kind (the
    // "CommandLine field enrichment" some network rules ask for).
    row("Image", Field::Image, PROCESS_NETWORK_DNS),
    row("CommandLine", Field::Cmdline, PROCESS_NETWORK_DNS),
    row("ProcessId", Field::Pid, PROCESS_NETWORK_DNS),
    row("User", Field::User, ANY),
    row("OriginalFileName", Field::OriginalFileName, PROCESS),
    row("IntegrityLevel", Field::IntegrityLevel, PROCESS),
    row("CurrentDirectory", Field::CurrentDirectory, PROCESS),
    row("LogonId", Field::LogonId, PROCESS),
    row("ParentImage", Field::ParentImage, PROCESS_NETWORK_DNS),
    row("ParentCommandLine", Field::ParentCmdline, PROCESS),
    row("ParentProcessId", Field::Ppid, PROCESS),
    row("ParentUser", Field::ParentUser, PROCESS),
    // The executable file: its hashes and PE version resource.
    row("Hashes", Field::Hashes, PROCESS),
    row("md5", Field::Md5, PROCESS),
    row("sha1", Field::Sha1, PROCESS),
    row("sha256", Field::Sha256, PROCESS),
    row("Imphash", Field::Imphash, PROCESS),
    row("Company", Field::Company, PROCESS),
    row("Product", Field::Product, PROCESS),
    row("Description", Field::FileDescription, PROCESS),
    row("FileVersion", Field::FileVersion, PROCESS),
    // The connection: Sysmon 3 (Source is this host, Destination the remote end).
    row("DestinationIp", Field::RemoteIp, NETWORK),
    row("DestinationPort", Field::RemotePort, NETWORK),
    row("DestinationHostname", Field::RemoteHostname, NETWORK),
    row("SourceIp", Field::LocalIp, NETWORK),
    row("SourcePort", Field::LocalPort, NETWORK),
    row("SourceHostname", Field::LocalHostname, NETWORK),
    row("Protocol", Field::Protocol, NETWORK),
    row("Initiated", Field::Initiated, NETWORK),
    // The query: Sysmon 22, and the generic `dns` category's `query`.
    row("QueryName", Field::QueryName, DNS),
    row("QueryResults", Field::QueryResults, DNS),
    row("QueryStatus", Field::QueryStatus, DNS),
    row("query", Field::QueryName, DNS),
    // Logins.
    row("IpAddress", Field::SourceIp, LOGIN),
    // Every event.
    row("Computer", Field::Host, ANY),
];

const fn row(sigma: &'static str, field: Field, kinds: &'static [EventKind]) -> SigmaField {
    SigmaField {
        sigma,
        field,
        kinds,
    }
}

/// Why a field name cannot be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldProblem {
    /// No input shape carries a field of this name.
    Unknown,
    /// The name is known, but not for these event kinds (e.g. `QueryName` in a process rule).
    NotForKinds { kinds: Vec<EventKind> },
}

/// The event field a Sigma field name reads on events of `kinds`. The name must be carried for
/// every one of the kinds (a rule that runs on events without the field could never be exact).
pub fn resolve(name: &str, kinds: &[EventKind]) -> Result<Field, FieldProblem> {
    let mut found_any = false;
    for row in TABLE.iter().filter(|row| row.sigma == name) {
        found_any = true;
        if kinds.iter().all(|kind| row.kinds.contains(kind)) {
            return Ok(row.field);
        }
    }
    if found_any {
        Err(FieldProblem::NotForKinds {
            kinds: kinds.to_vec(),
        })
    } else {
        Err(FieldProblem::Unknown)
    }
}

/// Which names a rule's fields are written in, chosen by its logsource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldNames {
    /// Sigma's names (`Image`, `CommandLine`, ...), looked up in [`TABLE`]: every community rule.
    Sigma,
    /// palisade's own field names (`image`, `cmdline`, `parent_image`, ...), exactly as Rhai
    /// rules and playbooks write them: a rule whose logsource says `product: palisade`. Its own
    /// content can then name every typed field, including those no Sigma name reaches.
    Palisade,
}

impl FieldNames {
    /// The logsource `product` that selects palisade's own names.
    pub const PALISADE_PRODUCT: &'static str = "palisade";

    /// The names a rule with this logsource `product` uses.
    pub fn for_product(product: Option<&str>) -> FieldNames {
        match product {
            Some(product) if product == FieldNames::PALISADE_PRODUCT => FieldNames::Palisade,
            _ => FieldNames::Sigma,
        }
    }

    /// The event field `name` reads on events of `kinds`, in these names. As with [`resolve`],
    /// the field must be carried by every one of the kinds.
    pub fn resolve(self, name: &str, kinds: &[EventKind]) -> Result<Field, FieldProblem> {
        match self {
            FieldNames::Sigma => resolve(name, kinds),
            FieldNames::Palisade => {
                let field = Field::parse(name).ok_or(FieldProblem::Unknown)?;
                match field.kinds() {
                    Some(carried) if !kinds.iter().all(|kind| carried.contains(kind)) => {
                        Err(FieldProblem::NotForKinds {
                            kinds: kinds.to_vec(),
                        })
                    }
                    _ => Ok(field),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row's field is one that events of the row's kinds carry, so a rule that resolves
    /// through the table never reads a field its events cannot have.
    #[test]
    fn every_row_field_is_carried_by_its_kinds() {
        for row in TABLE {
            if let Some(carried) = row.field.kinds() {
                for kind in row.kinds {
                    assert!(
                        carried.contains(kind),
                        "`{}` maps to `{}` on {kind}, which {kind} events never carry",
                        row.sigma,
                        row.field
                    );
                }
            }
        }
    }

    #[test]
    fn no_name_is_listed_twice_for_the_same_kind() {
        for (at, row) in TABLE.iter().enumerate() {
            for later in &TABLE[at + 1..] {
                if later.sigma == row.sigma {
                    assert!(
                        !later.kinds.iter().any(|kind| row.kinds.contains(kind)),
                        "`{}` is mapped twice",
                        row.sigma
                    );
                }
            }
        }
    }

    /// The names SigmaHQ's process, network and DNS rules use, each to the field it means.
    #[test]
    fn sysmon_names_resolve_to_their_fields() {
        use EventKind::{DnsQuery, NetworkConnection, ProcessCreate};
        let cases = [
            ("Image", ProcessCreate, Field::Image),
            ("Image", NetworkConnection, Field::Image),
            ("Image", DnsQuery, Field::Image),
            ("CommandLine", ProcessCreate, Field::Cmdline),
            ("OriginalFileName", ProcessCreate, Field::OriginalFileName),
            ("ParentImage", ProcessCreate, Field::ParentImage),
            ("ParentCommandLine", ProcessCreate, Field::ParentCmdline),
            ("Description", ProcessCreate, Field::FileDescription),
            ("Product", ProcessCreate, Field::Product),
            ("Company", ProcessCreate, Field::Company),
            ("Hashes", ProcessCreate, Field::Hashes),
            ("IntegrityLevel", ProcessCreate, Field::IntegrityLevel),
            ("User", ProcessCreate, Field::User),
            ("User", NetworkConnection, Field::User),
            ("CurrentDirectory", ProcessCreate, Field::CurrentDirectory),
            ("LogonId", ProcessCreate, Field::LogonId),
            ("ParentUser", ProcessCreate, Field::ParentUser),
            ("FileVersion", ProcessCreate, Field::FileVersion),
            ("Initiated", NetworkConnection, Field::Initiated),
            (
                "DestinationHostname",
                NetworkConnection,
                Field::RemoteHostname,
            ),
            ("DestinationIp", NetworkConnection, Field::RemoteIp),
            ("DestinationPort", NetworkConnection, Field::RemotePort),
            ("SourceIp", NetworkConnection, Field::LocalIp),
            ("SourcePort", NetworkConnection, Field::LocalPort),
            ("SourceHostname", NetworkConnection, Field::LocalHostname),
            ("Protocol", NetworkConnection, Field::Protocol),
            ("QueryName", DnsQuery, Field::QueryName),
            ("QueryResults", DnsQuery, Field::QueryResults),
            ("QueryStatus", DnsQuery, Field::QueryStatus),
        ];
        for (name, kind, field) in cases {
            assert_eq!(resolve(name, &[kind]), Ok(field), "{name} on {kind}");
        }
    }

    #[test]
    fn unknown_and_misplaced_names_are_refused() {
        assert_eq!(
            resolve("TargetObject", &[EventKind::ProcessCreate]),
            Err(FieldProblem::Unknown)
        );
        // Names are case-sensitive, as Sigma's are.
        assert_eq!(
            resolve("image", &[EventKind::ProcessCreate]),
            Err(FieldProblem::Unknown)
        );
        assert_eq!(
            resolve("QueryName", &[EventKind::ProcessCreate]),
            Err(FieldProblem::NotForKinds {
                kinds: vec![EventKind::ProcessCreate]
            })
        );
        // `Hashes` is the Sysmon list, not the bare SHA-256 the intel matcher reads.
        assert_ne!(
            resolve("Hashes", &[EventKind::ProcessCreate]),
            Ok(Field::ProcessHash)
        );
    }

    #[test]
    fn palisade_names_are_the_event_field_names() {
        let names = FieldNames::for_product(Some("palisade"));
        assert_eq!(names, FieldNames::Palisade);
        assert_eq!(FieldNames::for_product(Some("windows")), FieldNames::Sigma);
        assert_eq!(FieldNames::for_product(None), FieldNames::Sigma);
        for field in Field::ALL {
            let kinds = field.kinds().unwrap_or(&EventKind::ALL);
            assert_eq!(names.resolve(field.as_str(), kinds), Ok(field), "{field}");
        }
        assert_eq!(
            names.resolve("Image", &[EventKind::ProcessCreate]),
            Err(FieldProblem::Unknown)
        );
        assert_eq!(
            names.resolve("remote_ip", &[EventKind::ProcessCreate]),
            Err(FieldProblem::NotForKinds {
                kinds: vec![EventKind::ProcessCreate]
            })
        );
    }

    use crate::event::{Event, normalize};
    use crate::sigma::ast::{TextMatch, ValueTest};
    use crate::sigma::eval::test_matches;

    fn events(text: &str) -> Vec<Event> {
        text.lines()
            .map(|line| normalize(line.as_bytes()).expect("fixture normalizes"))
            .collect()
    }

    /// Whether `Name|how: needle` (case-insensitive, as Sigma's default) holds for `event`.
    fn holds(name: &str, how: TextMatch, needle: &str, event: &Event) -> bool {
        let field = resolve(name, &[event.kind]).expect("a mapped name");
        let test = ValueTest::Text {
            how,
            needle: needle.to_lowercase(),
            cased: false,
        };
        test_matches(&test, field, event)
    }

    /// `Hashes` used to read the bare SHA-256 (`process_hash`), so SigmaHQ's
    /// `Hashes|contains: 'IMPHASH=...'` and `'MD5=...'` could never match. It reads the list as
    /// Sysmon writes it, whether the shipper kept the original (Elastic Agent) or only the typed
    /// hashes (Winlogbeat's module).
    #[test]
    fn sigma_hashes_reads_the_sysmon_list_not_the_bare_sha256() {
        for text in [
            include_str!("../../tests/fixtures/winlogbeat-sysmon.jsonl"),
            include_str!("../../tests/fixtures/elastic-agent-sysmon.jsonl"),
        ] {
            let process = &events(text)[0];
            for needle in [
                "IMPHASH=CAEE994F79D85E47C06E5FA9CDEAE453",
                "MD5=7353F60B1739074EB17C5F4DDDEFE239",
                "SHA256=DE96A6E69944335375DC1AC238336066889D9FFC7D73628EF4FE1B1B160AB32C",
            ] {
                assert!(
                    holds("Hashes", TextMatch::Contains, needle, process),
                    "{needle} in {:?}",
                    process.hash_list()
                );
            }
            assert!(!holds(
                "Hashes",
                TextMatch::Contains,
                "IMPHASH=0000",
                process
            ));
            assert!(holds(
                "md5",
                TextMatch::Exact,
                "7353F60B1739074EB17C5F4DDDEFE239",
                process
            ));
        }
    }

    /// The fields SigmaHQ's process, network and DNS rules test most, on what Winlogbeat, Elastic
    /// Agent and the Security log really ship.
    #[test]
    fn sigma_names_read_every_windows_shape() {
        let winlogbeat = events(include_str!("../../tests/fixtures/winlogbeat-sysmon.jsonl"));
        let agent = events(include_str!(
            "../../tests/fixtures/elastic-agent-sysmon.jsonl"
        ));
        let security = events(include_str!(
            "../../tests/fixtures/winlogbeat-security-4688.jsonl"
        ));
        let process = &winlogbeat[0];
        assert!(holds(
            "Image",
            TextMatch::EndsWith,
            "\\powershell.exe",
            process
        ));
        assert!(holds(
            "ParentImage",
            TextMatch::EndsWith,
            "\\WINWORD.EXE",
            process
        ));
        assert!(holds("CommandLine", TextMatch::Contains, " -enc ", process));
        assert!(holds(
            "ParentCommandLine",
            TextMatch::Contains,
            ".docm",
            process
        ));
        assert!(holds(
            "OriginalFileName",
            TextMatch::Exact,
            "PowerShell.EXE",
            process
        ));
        assert!(holds("IntegrityLevel", TextMatch::Exact, "Medium", process));
        assert!(holds("User", TextMatch::StartsWith, "CORP\\", process));
        assert!(holds(
            "Description",
            TextMatch::Exact,
            "Windows PowerShell",
            process
        ));
        assert!(holds(
            "Company",
            TextMatch::Exact,
            "Microsoft Corporation",
            process
        ));
        assert!(holds(
            "CurrentDirectory",
            TextMatch::EndsWith,
            "\\Documents\\",
            process
        ));
        for network in [&winlogbeat[1], &agent[1]] {
            assert!(holds("Initiated", TextMatch::Exact, "true", network));
            assert!(!holds("Initiated", TextMatch::Exact, "false", network));
            assert!(holds(
                "SourceIp",
                TextMatch::StartsWith,
                "10.20.30.",
                network
            ));
        }
        assert!(holds(
            "DestinationHostname",
            TextMatch::EndsWith,
            ".example.net",
            &winlogbeat[1]
        ));
        assert!(holds(
            "QueryName",
            TextMatch::Exact,
            "c2.bad-actor.example",
            &agent[2]
        ));
        assert!(holds(
            "QueryResults",
            TextMatch::Contains,
            "203.0.113.50",
            &agent[2]
        ));
        assert!(holds("QueryStatus", TextMatch::Exact, "0", &winlogbeat[2]));
        assert!(holds(
            "OriginalFileName",
            TextMatch::Exact,
            "rundll32.exe",
            &agent[0]
        ));
        for event in &security {
            assert!(holds("Image", TextMatch::EndsWith, "\\certutil.exe", event));
            assert!(holds(
                "ParentImage",
                TextMatch::EndsWith,
                "\\powershell.exe",
                event
            ));
            assert!(holds(
                "CommandLine",
                TextMatch::Contains,
                "-urlcache",
                event
            ));
            assert!(holds("User", TextMatch::Exact, "CORP\\alice", event));
        }
    }
}
