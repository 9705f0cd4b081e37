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

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
