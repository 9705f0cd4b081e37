//! Names of the typed event fields, resolved once when content is loaded so the hot path never
//! looks a field up by its name.

use std::borrow::Cow;

use super::{Event, EventKind};

/// A typed field of [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Id,
    Type,
    Timestamp,
    Host,
    Pid,
    Ppid,
    Name,
    ParentName,
    Cmdline,
    ProcessHash,
    Image,
    User,
    ParentImage,
    ParentCmdline,
    ParentUser,
    OriginalFileName,
    IntegrityLevel,
    CurrentDirectory,
    LogonId,
    /// The hash list as Sysmon writes it (`SHA1=..,MD5=..`), kept or composed: see
    /// [`Event::hash_list`].
    Hashes,
    Md5,
    Sha1,
    Sha256,
    Imphash,
    Company,
    Product,
    FileDescription,
    FileVersion,
    RemoteIp,
    RemotePort,
    LocalPort,
    Protocol,
    Direction,
    /// `true` when this host opened the connection: read from `direction`, see
    /// [`Event::initiated`].
    Initiated,
    RemoteHostname,
    LocalIp,
    LocalHostname,
    QueryName,
    QueryResults,
    QueryStatus,
    SourceIp,
    Outcome,
    Method,
}

/// What a field holds; playbook validation checks parameter types against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Text,
    Integer,
    IpAddress,
}

impl FieldType {
    pub fn describe(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Integer => "an integer",
            FieldType::IpAddress => "an IP address",
        }
    }
}

impl Field {
    pub const ALL: [Field; 43] = [
        Field::Id,
        Field::Type,
        Field::Timestamp,
        Field::Host,
        Field::Pid,
        Field::Ppid,
        Field::Name,
        Field::ParentName,
        Field::Cmdline,
        Field::ProcessHash,
        Field::Image,
        Field::User,
        Field::ParentImage,
        Field::ParentCmdline,
        Field::ParentUser,
        Field::OriginalFileName,
        Field::IntegrityLevel,
        Field::CurrentDirectory,
        Field::LogonId,
        Field::Hashes,
        Field::Md5,
        Field::Sha1,
        Field::Sha256,
        Field::Imphash,
        Field::Company,
        Field::Product,
        Field::FileDescription,
        Field::FileVersion,
        Field::RemoteIp,
        Field::RemotePort,
        Field::LocalPort,
        Field::Protocol,
        Field::Direction,
        Field::Initiated,
        Field::RemoteHostname,
        Field::LocalIp,
        Field::LocalHostname,
        Field::QueryName,
        Field::QueryResults,
        Field::QueryStatus,
        Field::SourceIp,
        Field::Outcome,
        Field::Method,
    ];

    /// The field's name as rules and playbooks write it (`event.remote_ip`).
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Type => "type",
            Field::Timestamp => "timestamp",
            Field::Host => "host",
            Field::Pid => "pid",
            Field::Ppid => "ppid",
            Field::Name => "name",
            Field::ParentName => "parent_name",
            Field::Cmdline => "cmdline",
            Field::ProcessHash => "process_hash",
            Field::Image => "image",
            Field::User => "user",
            Field::ParentImage => "parent_image",
            Field::ParentCmdline => "parent_cmdline",
            Field::ParentUser => "parent_user",
            Field::OriginalFileName => "original_file_name",
            Field::IntegrityLevel => "integrity_level",
            Field::CurrentDirectory => "current_directory",
            Field::LogonId => "logon_id",
            Field::Hashes => "hashes",
            Field::Md5 => "md5",
            Field::Sha1 => "sha1",
            Field::Sha256 => "sha256",
            Field::Imphash => "imphash",
            Field::Company => "company",
            Field::Product => "product",
            Field::FileDescription => "file_description",
            Field::FileVersion => "file_version",
            Field::RemoteIp => "remote_ip",
            Field::RemotePort => "remote_port",
            Field::LocalPort => "local_port",
            Field::Protocol => "protocol",
            Field::Direction => "direction",
            Field::Initiated => "initiated",
            Field::RemoteHostname => "remote_hostname",
            Field::LocalIp => "local_ip",
            Field::LocalHostname => "local_hostname",
            Field::QueryName => "query_name",
            Field::QueryResults => "query_results",
            Field::QueryStatus => "query_status",
            Field::SourceIp => "source_ip",
            Field::Outcome => "outcome",
            Field::Method => "method",
        }
    }

    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|field| field.as_str() == name)
    }

    pub fn field_type(self) -> FieldType {
        match self {
            Field::Pid | Field::Ppid | Field::RemotePort | Field::LocalPort | Field::Timestamp => {
                FieldType::Integer
            }
            Field::RemoteIp | Field::SourceIp | Field::LocalIp => FieldType::IpAddress,
            _ => FieldType::Text,
        }
    }

    /// The event kinds whose sensors fill this field. `None` means every kind.
    pub fn kinds(self) -> Option<&'static [EventKind]> {
        use EventKind::*;
        match self {
            Field::Ppid
            | Field::ParentName
            | Field::ProcessHash
            | Field::ParentCmdline
            | Field::ParentUser
            | Field::OriginalFileName
            | Field::IntegrityLevel
            | Field::CurrentDirectory
            | Field::LogonId
            | Field::Hashes
            | Field::Md5
            | Field::Sha1
            | Field::Sha256
            | Field::Imphash
            | Field::Company
            | Field::Product
            | Field::FileDescription
            | Field::FileVersion => Some(&[ProcessCreate]),
            Field::RemoteIp
            | Field::RemotePort
            | Field::LocalPort
            | Field::Protocol
            | Field::Direction
            | Field::Initiated
            | Field::RemoteHostname
            | Field::LocalIp
            | Field::LocalHostname => Some(&[NetworkConnection]),
            Field::QueryName | Field::QueryResults | Field::QueryStatus => Some(&[DnsQuery]),
            Field::SourceIp | Field::Outcome | Field::Method => Some(&[Login]),
            // Sysmon names the process behind a connection (event 3) and a query (event 22) by
            // its image as well as its id, and ECS by `process.executable`; ECS events carry the
            // command line and the parent's executable on every kind.
            Field::Pid | Field::Name | Field::Image | Field::Cmdline | Field::ParentImage => {
                Some(&[ProcessCreate, NetworkConnection, DnsQuery])
            }
            // Sysmon 1, 3 and 22 and logins all name an account.
            Field::User | Field::Id | Field::Type | Field::Timestamp | Field::Host => None,
        }
    }

    /// The field's value as a number, for the integer fields.
    pub fn number(self, event: &Event) -> Option<i64> {
        match self {
            Field::Timestamp => Some(event.timestamp_ms),
            Field::Pid => event.pid.map(i64::from),
            Field::Ppid => event.ppid.map(i64::from),
            Field::RemotePort => event.remote_port.map(i64::from),
            Field::LocalPort => event.local_port.map(i64::from),
            _ => None,
        }
    }

    /// The field's value as an address, for the address fields.
    pub fn address(self, event: &Event) -> Option<std::net::IpAddr> {
        match self {
            Field::RemoteIp => event.remote_ip,
            Field::SourceIp => event.source_ip,
            Field::LocalIp => event.local_ip,
            _ => None,
        }
    }

    /// The field's value as text, borrowed where the event holds text already.
    pub fn text<'e>(self, event: &'e Event) -> Option<Cow<'e, str>> {
        fn owned<T: ToString>(value: Option<T>) -> Option<Cow<'static, str>> {
            value.map(|v| Cow::Owned(v.to_string()))
        }
        fn borrowed(value: &Option<String>) -> Option<Cow<'_, str>> {
            value.as_deref().map(Cow::Borrowed)
        }
        match self {
            Field::Id => Some(Cow::Borrowed(&event.id)),
            Field::Type => Some(Cow::Borrowed(event.kind.as_str())),
            Field::Timestamp => Some(Cow::Owned(event.timestamp_ms.to_string())),
            Field::Host => borrowed(&event.host),
            Field::Pid => owned(event.pid),
            Field::Ppid => owned(event.ppid),
            Field::Name => borrowed(&event.name),
            Field::ParentName => borrowed(&event.parent_name),
            Field::Cmdline => borrowed(&event.cmdline),
            Field::ProcessHash => borrowed(&event.process_hash),
            Field::Image => borrowed(&event.image),
            Field::User => borrowed(&event.user),
            Field::ParentImage => borrowed(&event.parent_image),
            Field::ParentCmdline => borrowed(&event.parent_cmdline),
            Field::ParentUser => borrowed(&event.parent_user),
            Field::OriginalFileName => borrowed(&event.original_file_name),
            Field::IntegrityLevel => borrowed(&event.integrity_level),
            Field::CurrentDirectory => borrowed(&event.current_directory),
            Field::LogonId => borrowed(&event.logon_id),
            Field::Hashes => event.hash_list(),
            Field::Md5 => borrowed(&event.md5),
            Field::Sha1 => borrowed(&event.sha1),
            Field::Sha256 => borrowed(&event.sha256),
            Field::Imphash => borrowed(&event.imphash),
            Field::Company => borrowed(&event.company),
            Field::Product => borrowed(&event.product),
            Field::FileDescription => borrowed(&event.file_description),
            Field::FileVersion => borrowed(&event.file_version),
            Field::RemoteIp => owned(event.remote_ip),
            Field::RemotePort => owned(event.remote_port),
            Field::LocalPort => owned(event.local_port),
            Field::Protocol => borrowed(&event.protocol),
            Field::Direction => borrowed(&event.direction),
            Field::Initiated => event
                .initiated()
                .map(|yes| Cow::Borrowed(if yes { "true" } else { "false" })),
            Field::RemoteHostname => borrowed(&event.remote_hostname),
            Field::LocalIp => owned(event.local_ip),
            Field::LocalHostname => borrowed(&event.local_hostname),
            Field::QueryName => borrowed(&event.query_name),
            Field::QueryResults => borrowed(&event.query_results),
            Field::QueryStatus => borrowed(&event.query_status),
            Field::SourceIp => owned(event.source_ip),
            Field::Outcome => borrowed(&event.outcome),
            Field::Method => borrowed(&event.method),
        }
    }
}

/// Names other tools give the typed fields (Sysmon, ECS, Sigma), squashed (lowercase, no `_`,
/// `.` or `-`), so a correction can point from what an author is used to writing to the name
/// palisade uses: `commandline` and `comandline` both lead to `cmdline`.
const OTHER_NAMES: &[(&str, Field)] = &[
    ("commandline", Field::Cmdline),
    ("processcommandline", Field::Cmdline),
    ("parentcommandline", Field::ParentCmdline),
    ("processid", Field::Pid),
    ("parentprocessid", Field::Ppid),
    ("executable", Field::Image),
    ("processexecutable", Field::Image),
    ("processname", Field::Name),
    ("parentexecutable", Field::ParentImage),
    ("destinationip", Field::RemoteIp),
    ("destinationport", Field::RemotePort),
    ("destinationhostname", Field::RemoteHostname),
    ("destinationdomain", Field::RemoteHostname),
    ("sourceport", Field::LocalPort),
    ("hostname", Field::Host),
    ("computer", Field::Host),
    ("computername", Field::Host),
    ("username", Field::User),
    ("queryresult", Field::QueryResults),
    ("description", Field::FileDescription),
];

/// `name` lowercased without `_`, `.` or `-`: the form in which `CommandLine`, `command_line`
/// and `commandline` are one name.
pub fn squash(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '.' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

impl Field {
    /// Every way of writing each field a correction should know: its own name and the names
    /// other tools give it, squashed (see [`squash`]).
    pub fn spellings() -> impl Iterator<Item = (String, Field)> {
        Field::ALL
            .into_iter()
            .map(|f| (squash(f.as_str()), f))
            .chain(OTHER_NAMES.iter().map(|(n, f)| ((*n).to_string(), *f)))
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every field, each set to a value of its type: what "every field present" looks like.
    pub(crate) fn event_with_every_field() -> Event {
        let mut event = Event::new("e1", EventKind::NetworkConnection, 1);
        for field in Field::ALL {
            let text = || Some(format!("{field} value"));
            match field {
                Field::Id | Field::Type | Field::Timestamp => {}
                Field::Host => event.host = text(),
                Field::Pid => event.pid = Some(1),
                Field::Ppid => event.ppid = Some(2),
                Field::Name => event.name = text(),
                Field::ParentName => event.parent_name = text(),
                Field::Cmdline => event.cmdline = text(),
                Field::ProcessHash => event.process_hash = text(),
                Field::Image => event.image = text(),
                Field::User => event.user = text(),
                Field::ParentImage => event.parent_image = text(),
                Field::ParentCmdline => event.parent_cmdline = text(),
                Field::ParentUser => event.parent_user = text(),
                Field::OriginalFileName => event.original_file_name = text(),
                Field::IntegrityLevel => event.integrity_level = text(),
                Field::CurrentDirectory => event.current_directory = text(),
                Field::LogonId => event.logon_id = text(),
                Field::Hashes => event.hashes = text(),
                Field::Md5 => event.md5 = text(),
                Field::Sha1 => event.sha1 = text(),
                Field::Sha256 => event.sha256 = text(),
                Field::Imphash => event.imphash = text(),
                Field::Company => event.company = text(),
                Field::Product => event.product = text(),
                Field::FileDescription => event.file_description = text(),
                Field::FileVersion => event.file_version = text(),
                Field::RemoteIp => event.remote_ip = "192.0.2.1".parse().ok(),
                Field::RemotePort => event.remote_port = Some(3),
                Field::LocalPort => event.local_port = Some(4),
                Field::Protocol => event.protocol = text(),
                Field::Direction => event.direction = Some("outbound".into()),
                Field::Initiated => {}
                Field::RemoteHostname => event.remote_hostname = text(),
                Field::LocalIp => event.local_ip = "192.0.2.2".parse().ok(),
                Field::LocalHostname => event.local_hostname = text(),
                Field::QueryName => event.query_name = text(),
                Field::QueryResults => event.query_results = text(),
                Field::QueryStatus => event.query_status = text(),
                Field::SourceIp => event.source_ip = "192.0.2.3".parse().ok(),
                Field::Outcome => event.outcome = text(),
                Field::Method => event.method = text(),
            }
        }
        event
    }

    #[test]
    fn every_field_is_listed_once_and_parses_back() {
        for (at, field) in Field::ALL.iter().enumerate() {
            assert_eq!(Field::parse(field.as_str()), Some(*field));
            assert!(
                !Field::ALL[at + 1..].contains(field),
                "{field} listed twice"
            );
        }
    }

    #[test]
    fn other_names_are_squashed_and_name_fields() {
        assert_eq!(squash("Command_Line"), "commandline");
        for (name, field) in OTHER_NAMES {
            assert_eq!(squash(name), *name, "listed squashed");
            assert!(Field::parse(name).is_none() || Field::parse(name) == Some(*field));
        }
        assert!(Field::spellings().any(|(n, f)| n == "parentname" && f == Field::ParentName));
    }

    #[test]
    fn every_field_reads_what_was_set() {
        let event = event_with_every_field();
        for field in Field::ALL {
            assert!(field.text(&event).is_some(), "{field} reads nothing");
            match field.field_type() {
                FieldType::Integer => assert!(field.number(&event).is_some(), "{field}"),
                FieldType::IpAddress => assert!(field.address(&event).is_some(), "{field}"),
                FieldType::Text => {}
            }
        }
        assert_eq!(
            Field::Initiated.text(&event).as_deref(),
            Some("true"),
            "outbound is initiated"
        );
    }

    #[test]
    fn initiated_reads_the_direction() {
        let mut event = Event::new("e1", EventKind::NetworkConnection, 1);
        for (direction, initiated) in [
            ("outbound", Some("true")),
            ("Egress", Some("true")),
            ("inbound", Some("false")),
            ("ingress", Some("false")),
            ("internal", None),
        ] {
            event.direction = Some(direction.into());
            assert_eq!(
                Field::Initiated.text(&event).as_deref(),
                initiated,
                "{direction}"
            );
        }
        event.direction = None;
        assert_eq!(Field::Initiated.text(&event), None);
    }

    #[test]
    fn hashes_keep_the_sensors_list_or_compose_sysmons() {
        let mut event = Event::new("e1", EventKind::ProcessCreate, 1);
        assert_eq!(Field::Hashes.text(&event), None);
        event.md5 = Some("7353f60b1739074eb17c5f4dddefe239".into());
        event.imphash = Some("caee994f79d85e47c06e5fa9cdeae453".into());
        assert_eq!(
            Field::Hashes.text(&event).as_deref(),
            Some("MD5=7353F60B1739074EB17C5F4DDDEFE239,IMPHASH=CAEE994F79D85E47C06E5FA9CDEAE453")
        );
        event.hashes = Some("IMPHASH=CAEE994F79D85E47C06E5FA9CDEAE453,MD5=X".into());
        assert_eq!(
            Field::Hashes.text(&event).as_deref(),
            event.hashes.as_deref(),
            "the sensor's own list wins"
        );
    }
}
