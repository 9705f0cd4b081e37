//! Turns one JSON message, in the flat sensor shape or the Elastic Common Schema (ECS) shape,
//! into an [`Event`].
//!
//! Sensors are lenient about types (Sysmon through Winlogbeat ships `"pid": "4242"`), so numbers
//! written as strings are accepted; anything that still does not fit is rejected with a
//! [`NormalizeError`] that names the field, never a panic.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::flat_fast::FlatMessage;
use super::{Event, EventKind};

/// Messages larger than this are rejected unread: a sensor event is a few hundred bytes, and a
/// megabyte message is either a bug or an attempt to exhaust memory.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Why a message was rejected, as a small closed set so rejects can be counted per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectKind {
    NotJson,
    NotObject,
    Oversize,
    MissingField,
    WrongType,
    UnknownType,
    BadTimestamp,
    /// Dated too far ahead of the engine's clock (`events.future_time: reject`).
    FutureTimestamp,
    /// Two fields of the message give the same fact differently (the `md5` key and the `MD5=`
    /// entry of the hash list).
    Inconsistent,
}

impl RejectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::NotJson => "not_json",
            RejectKind::NotObject => "not_object",
            RejectKind::Oversize => "oversize",
            RejectKind::MissingField => "missing_field",
            RejectKind::WrongType => "wrong_type",
            RejectKind::UnknownType => "unknown_type",
            RejectKind::BadTimestamp => "bad_timestamp",
            RejectKind::FutureTimestamp => "future_timestamp",
            RejectKind::Inconsistent => "inconsistent",
        }
    }
}

/// A message that could not become an [`Event`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct NormalizeError {
    pub kind: RejectKind,
    pub message: String,
}

impl NormalizeError {
    fn new(kind: RejectKind, message: impl Into<String>) -> NormalizeError {
        NormalizeError {
            kind,
            message: message.into(),
        }
    }

    fn wrong_type(field: &str, expected: &str, got: &Value) -> NormalizeError {
        NormalizeError::new(
            RejectKind::WrongType,
            format!("field `{field}` must be {expected}, got {}", describe(got)),
        )
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("number `{n}`"),
        Value::String(s) => format!("string `{}`", truncate(s, 60)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// Parses and normalizes one message.
pub fn normalize(raw: &[u8]) -> Result<Event, NormalizeError> {
    if raw.len() > MAX_EVENT_BYTES {
        return Err(NormalizeError::new(
            RejectKind::Oversize,
            format!(
                "message is {} bytes, the limit is {MAX_EVENT_BYTES}",
                raw.len()
            ),
        ));
    }
    if let Some(message) = FlatMessage::parse(raw) {
        return flat(message, || derive_id(raw));
    }
    let value: Value = serde_json::from_slice(raw)
        .map_err(|err| NormalizeError::new(RejectKind::NotJson, format!("not JSON: {err}")))?;
    normalize_value(value, || derive_id(raw))
}

/// Where the flat shape's fields are taken from: a parsed JSON object, or the fast path's
/// borrowed message. Taking a field removes it, so what remains is the event's `extra`.
trait FlatFields {
    fn take(&mut self, key: &str) -> Option<Value>;
    fn into_extra(self) -> Map<String, Value>;
    /// Whether the message may have one of the keys the Windows-derived fields added; `false`
    /// lets the common message skip looking for each.
    fn may_have_extended(&self) -> bool;
}

impl FlatFields for Map<String, Value> {
    fn take(&mut self, key: &str) -> Option<Value> {
        self.remove(key)
    }
    fn may_have_extended(&self) -> bool {
        true
    }
    fn into_extra(self) -> Map<String, Value> {
        self
    }
}

impl FlatFields for FlatMessage<'_> {
    fn take(&mut self, key: &str) -> Option<Value> {
        let at = self.known.iter().position(|(k, _)| *k == key)?;
        Some(self.known.swap_remove(at).1.into_value())
    }
    fn into_extra(self) -> Map<String, Value> {
        self.into_extra()
    }
    fn may_have_extended(&self) -> bool {
        self.extended
    }
}

/// Normalizes an already parsed message; `derived_id` is called only when the message has no id.
pub fn normalize_value(
    value: Value,
    derived_id: impl FnOnce() -> String,
) -> Result<Event, NormalizeError> {
    let Value::Object(mut map) = value else {
        return Err(NormalizeError::new(
            RejectKind::NotObject,
            format!("an event must be a JSON object, got {}", describe(&value)),
        ));
    };
    if map.contains_key("type") {
        flat(map, derived_id)
    } else if map.contains_key("@timestamp")
        || matches!(map.get("event"), Some(Value::Object(_)))
        || matches!(map.get("winlog"), Some(Value::Object(_)))
    {
        ecs(&mut map, derived_id)
    } else {
        Err(NormalizeError::new(
            RejectKind::MissingField,
            "missing field `type` (flat sensor shape) or `@timestamp`/`event` (ECS shape)",
        ))
    }
}

/// A stable id for a message that carries none: the same bytes always get the same id, so a
/// replayed or redelivered message is recognisable. FNV-1a is enough; this is not a security
/// boundary.
fn derive_id(raw: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in raw {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("evt-{hash:016x}")
}

fn flat(
    mut map: impl FlatFields,
    derived_id: impl FnOnce() -> String,
) -> Result<Event, NormalizeError> {
    let kind_value = map.take("type").unwrap_or(Value::Null);
    let kind = match &kind_value {
        Value::String(name) => EventKind::parse(name).ok_or_else(|| {
            NormalizeError::new(
                RejectKind::UnknownType,
                format!(
                    "unknown event type `{}`; known types: process_create, network_connection, dns_query, login",
                    truncate(name, 60)
                ),
            )
        })?,
        other => return Err(NormalizeError::wrong_type("type", "a string", other)),
    };
    let timestamp_ms = match map.take("timestamp") {
        Some(value) => timestamp("timestamp", &value)?,
        None => {
            return Err(NormalizeError::new(
                RejectKind::MissingField,
                "missing field `timestamp`",
            ));
        }
    };
    let id = match map.take("id") {
        Some(value) => text("id", value)?.unwrap_or_else(derived_id),
        None => derived_id(),
    };
    let mut event = Event::new(id, kind, timestamp_ms);
    event.host = take_text(&mut map, "host")?;
    event.pid = take_u32(&mut map, "pid")?;
    event.ppid = take_u32(&mut map, "ppid")?;
    event.name = take_text(&mut map, "name")?;
    event.parent_name = take_text(&mut map, "parent_name")?;
    event.cmdline = take_text(&mut map, "cmdline")?;
    event.process_hash = take_text(&mut map, "process_hash")?.map(|h| h.to_ascii_lowercase());
    event.image = take_text(&mut map, "image")?;
    event.user = take_text(&mut map, "user")?;
    event.remote_ip = take_ip(&mut map, "remote_ip")?;
    event.remote_port = take_u16(&mut map, "remote_port")?;
    event.local_port = take_u16(&mut map, "local_port")?;
    event.protocol = take_text(&mut map, "protocol")?;
    event.direction = take_text(&mut map, "direction")?;
    event.query_name = take_text(&mut map, "query_name")?;
    event.source_ip = take_ip(&mut map, "source_ip")?;
    event.outcome = take_text(&mut map, "outcome")?;
    event.method = take_text(&mut map, "method")?;
    if map.may_have_extended() {
        event.parent_image = take_text(&mut map, "parent_image")?;
        event.parent_cmdline = take_text(&mut map, "parent_cmdline")?;
        event.parent_user = take_text(&mut map, "parent_user")?;
        event.original_file_name = take_text(&mut map, "original_file_name")?;
        event.integrity_level = take_text(&mut map, "integrity_level")?;
        event.current_directory = take_text(&mut map, "current_directory")?;
        event.logon_id = take_text(&mut map, "logon_id")?;
        event.hashes = take_text(&mut map, "hashes")?;
        for digest in Digest::ALL {
            let value = take_text(&mut map, digest.key())?;
            set_digest(&mut event, digest, digest.key(), value)?;
        }
        event.company = take_text(&mut map, "company")?;
        event.product = take_text(&mut map, "product")?;
        event.file_description = take_text(&mut map, "file_description")?;
        event.file_version = take_text(&mut map, "file_version")?;
        event.remote_hostname = take_text(&mut map, "remote_hostname")?;
        event.local_ip = take_ip(&mut map, "local_ip")?;
        event.local_hostname = take_text(&mut map, "local_hostname")?;
        event.query_results = take_text(&mut map, "query_results")?;
        event.query_status = take_text(&mut map, "query_status")?;
        digests_from_hash_list(&mut event, "hashes")?;
    }
    event.extra = map.into_extra();
    Ok(event)
}

/// The digests the model keeps typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digest {
    Md5,
    Sha1,
    Sha256,
    Imphash,
}

impl Digest {
    const ALL: [Digest; 4] = [Digest::Md5, Digest::Sha1, Digest::Sha256, Digest::Imphash];

    /// The flat shape's key and the event field's name.
    fn key(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Sha1 => "sha1",
            Digest::Sha256 => "sha256",
            Digest::Imphash => "imphash",
        }
    }

    /// The name in a Sysmon hash list (`MD5=...`).
    fn list_name(self) -> &'static str {
        match self {
            Digest::Md5 => "MD5",
            Digest::Sha1 => "SHA1",
            Digest::Sha256 => "SHA256",
            Digest::Imphash => "IMPHASH",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Digest::Md5 | Digest::Imphash => 32,
            Digest::Sha1 => 40,
            Digest::Sha256 => 64,
        }
    }

    fn slot(self, event: &mut Event) -> &mut Option<String> {
        match self {
            Digest::Md5 => &mut event.md5,
            Digest::Sha1 => &mut event.sha1,
            Digest::Sha256 => &mut event.sha256,
            Digest::Imphash => &mut event.imphash,
        }
    }
}

/// Stores one digest, lowercased. A digest is hex of its algorithm's length, nothing else: it
/// may end up as an action's argument or an intel lookup key. When the message already gave
/// this digest another way (the `md5` key and `MD5=` in the hash list) the two must agree, or a
/// rule on one and an intel lookup on the other would judge different files.
fn set_digest(
    event: &mut Event,
    digest: Digest,
    field: &str,
    value: Option<String>,
) -> Result<(), NormalizeError> {
    let Some(value) = value else {
        return Ok(());
    };
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Ok(());
    }
    if trimmed.len() != digest.hex_len() || !trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NormalizeError::wrong_type(
            field,
            &format!(
                "a {} digest ({} hex digits)",
                digest.list_name(),
                digest.hex_len()
            ),
            &Value::String(value),
        ));
    }
    let lower = trimmed.to_ascii_lowercase();
    let slot = digest.slot(event);
    match slot {
        Some(existing) if *existing != lower => Err(NormalizeError::new(
            RejectKind::Inconsistent,
            format!(
                "field `{field}` gives {} `{lower}` but the message already gave `{existing}`",
                digest.list_name()
            ),
        )),
        _ => {
            *slot = Some(lower);
            Ok(())
        }
    }
}

/// Fills the typed digests from [`Event::hashes`], Sysmon's `SHA1=...,MD5=...,IMPHASH=...`
/// list; `field` names where the list came from, for the error. Algorithms the model has no
/// field for are left in the list, which is kept whole. A `sha256` also fills `process_hash`
/// when the message gave none, as the ECS shape does, so intel matching sees it.
fn digests_from_hash_list(event: &mut Event, field: &str) -> Result<(), NormalizeError> {
    if let Some(list) = event.hashes.take() {
        let result = (|| {
            for part in list.split(',').filter(|part| !part.trim().is_empty()) {
                let Some((name, value)) = part.split_once('=') else {
                    return Err(NormalizeError::wrong_type(
                        field,
                        "a hash list such as `SHA1=...,MD5=...`",
                        &Value::String(list.clone()),
                    ));
                };
                let name = name.trim();
                if let Some(digest) = Digest::ALL
                    .into_iter()
                    .find(|d| d.list_name().eq_ignore_ascii_case(name))
                {
                    set_digest(
                        event,
                        digest,
                        &format!("{field}` entry `{name}"),
                        Some(value.to_string()),
                    )?;
                }
            }
            Ok(())
        })();
        event.hashes = Some(list);
        result?;
    }
    if event.process_hash.is_none() {
        event.process_hash.clone_from(&event.sha256);
    }
    Ok(())
}

fn ecs(
    map: &mut Map<String, Value>,
    derived_id: impl FnOnce() -> String,
) -> Result<Event, NormalizeError> {
    let windows = windows_source(map)?;
    let kind = match windows {
        Some(source) => source.kind,
        None => ecs_kind(map)?,
    };
    let timestamp_ms = match pluck(map, &["@timestamp"]) {
        Some(value) => timestamp("@timestamp", &value)?,
        None => {
            return Err(NormalizeError::new(
                RejectKind::MissingField,
                "missing field `@timestamp`",
            ));
        }
    };
    let id = match pluck(map, &["event", "id"]) {
        Some(value) => text("event.id", value)?.unwrap_or_else(derived_id),
        None => derived_id(),
    };
    let mut event = Event::new(id, kind, timestamp_ms);
    event.host = match pluck_text(map, &["host", "name"])? {
        Some(host) => Some(host),
        None => pluck_text(map, &["host", "hostname"])?,
    };
    event.user = ecs_account(map, &["user"])?;
    event.pid = pluck_u32(map, &["process", "pid"])?;
    event.name = pluck_text(map, &["process", "name"])?;
    event.cmdline = pluck_text(map, &["process", "command_line"])?;
    event.image = pluck_text(map, &["process", "executable"])?;
    event.current_directory = pluck_text(map, &["process", "working_directory"])?;
    for digest in Digest::ALL {
        let path = match digest {
            // ECS keeps the import hash with the PE header, not with the file hashes.
            Digest::Imphash => ["process", "pe", "imphash"],
            _ => ["process", "hash", digest.key()],
        };
        let value = pluck_text(map, &path)?;
        set_digest(&mut event, digest, &path.join("."), value)?;
    }
    event.process_hash = event.sha256.clone();
    event.original_file_name = pluck_text(map, &["process", "pe", "original_file_name"])?;
    event.company = pluck_text(map, &["process", "pe", "company"])?;
    event.product = pluck_text(map, &["process", "pe", "product"])?;
    event.file_description = pluck_text(map, &["process", "pe", "description"])?;
    event.file_version = pluck_text(map, &["process", "pe", "file_version"])?;
    event.ppid = pluck_u32(map, &["process", "parent", "pid"])?;
    event.parent_name = pluck_text(map, &["process", "parent", "name"])?;
    event.parent_image = pluck_text(map, &["process", "parent", "executable"])?;
    event.parent_cmdline = pluck_text(map, &["process", "parent", "command_line"])?;
    event.parent_user = ecs_account(map, &["process", "parent", "user"])?;
    match kind {
        EventKind::NetworkConnection => {
            event.remote_ip = pluck_ip(map, &["destination", "ip"])?;
            event.remote_port = pluck_u16(map, &["destination", "port"])?;
            event.remote_hostname = pluck_text(map, &["destination", "domain"])?;
            event.local_ip = pluck_ip(map, &["source", "ip"])?;
            event.local_port = pluck_u16(map, &["source", "port"])?;
            event.local_hostname = pluck_text(map, &["source", "domain"])?;
            event.protocol = pluck_text(map, &["network", "transport"])?;
            event.direction = pluck_text(map, &["network", "direction"])?;
        }
        EventKind::DnsQuery => {
            event.query_name = pluck_text(map, &["dns", "question", "name"])?;
            event.query_results = match pluck(map, &["dns", "answers"]) {
                Some(answers) => dns_answers("dns.answers", &answers)?,
                None => None,
            };
            event.query_status = pluck_text(map, &["dns", "response_code"])?;
        }
        EventKind::Login => {
            event.source_ip = pluck_ip(map, &["source", "ip"])?;
            event.outcome = pluck_text(map, &["event", "outcome"])?;
        }
        EventKind::ProcessCreate => {}
    }
    if let Some(source) = windows {
        windows_event_data(map, source, &mut event)?;
    }
    event.extra = std::mem::take(map);
    Ok(event)
}

/// ECS `dns.answers` (objects with a `data` member) as one text, written the way Sysmon writes
/// `QueryResults`: each answer followed by `;`.
fn dns_answers(field: &str, answers: &Value) -> Result<Option<String>, NormalizeError> {
    let expected = "an array of objects with a string `data`";
    let items = match answers {
        Value::Null => return Ok(None),
        Value::Array(items) => items,
        other => return Err(NormalizeError::wrong_type(field, expected, other)),
    };
    let mut joined = String::new();
    for item in items {
        match item.get("data") {
            Some(Value::String(data)) => {
                joined.push_str(data);
                joined.push(';');
            }
            _ => return Err(NormalizeError::wrong_type(field, expected, answers)),
        }
    }
    Ok((!joined.is_empty()).then_some(joined))
}

/// The Windows event a Winlogbeat or Elastic Agent document carries under `winlog`, when it is
/// one palisade reads field by field from `winlog.event_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WindowsSource {
    channel: WindowsChannel,
    kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowsChannel {
    /// Sysmon: event 1 process create, 3 network connection, 22 DNS query.
    Sysmon,
    /// The Security log: event 4688 process creation.
    Security,
}

const SYSMON_CHANNEL: &str = "Microsoft-Windows-Sysmon/Operational";

/// Reads `winlog.channel` and the event id (`winlog.event_id`, else `event.code`). When both
/// are there, they decide the kind, not `event.category`: the shipper's ECS mapping may be partial or
/// absent, the Windows event id is what the event is. A Sysmon event palisade has no kind for
/// is rejected by name; a Security event other than 4688 is left to the ECS categories (a
/// 4625 with `event.category: authentication` is a login).
fn windows_source(map: &Map<String, Value>) -> Result<Option<WindowsSource>, NormalizeError> {
    let Some(winlog) = map.get("winlog").and_then(Value::as_object) else {
        return Ok(None);
    };
    let channel = match winlog.get("channel") {
        Some(Value::String(name)) if name.eq_ignore_ascii_case(SYSMON_CHANNEL) => {
            WindowsChannel::Sysmon
        }
        Some(Value::String(name)) if name.eq_ignore_ascii_case("Security") => {
            WindowsChannel::Security
        }
        _ => return Ok(None),
    };
    let (field, id) = match (
        winlog.get("event_id"),
        map.get("event").and_then(|e| e.get("code")),
    ) {
        (Some(id), _) => ("winlog.event_id", id),
        (None, Some(code)) => ("event.code", code),
        // Without an id the channel alone says too little; the ECS categories decide.
        (None, None) => return Ok(None),
    };
    let id: u32 = integer(field, id)?.ok_or_else(|| {
        NormalizeError::new(RejectKind::MissingField, format!("field `{field}` is null"))
    })?;
    let kind = match (channel, id) {
        (WindowsChannel::Sysmon, 1) | (WindowsChannel::Security, 4688) => EventKind::ProcessCreate,
        (WindowsChannel::Sysmon, 3) => EventKind::NetworkConnection,
        (WindowsChannel::Sysmon, 22) => EventKind::DnsQuery,
        (WindowsChannel::Sysmon, other) => {
            return Err(NormalizeError::new(
                RejectKind::UnknownType,
                format!(
                    "Sysmon event {other} is not one palisade reads; supported: 1 (process create), 3 (network connection), 22 (DNS query)"
                ),
            ));
        }
        (WindowsChannel::Security, _) => return Ok(None),
    };
    Ok(Some(WindowsSource { channel, kind }))
}

/// Fills the event from `winlog.event_data`, the Windows event's own fields, which Sigma rules
/// are written against. Where the shipper's ECS mapping gave the same fact, the two must agree
/// for the fields actions and intel act on (ids, paths, command lines, addresses, ports,
/// digests): a message whose ECS part says one thing and whose original says another is
/// rejected, so a rule never matches one form while a playbook acts on the other. For the
/// descriptive fields the original's form wins (Sysmon's `User` is `DOMAIN\user`, ECS's
/// `user.name` only `user`).
fn windows_event_data(
    map: &mut Map<String, Value>,
    source: WindowsSource,
    event: &mut Event,
) -> Result<(), NormalizeError> {
    if let Some(data) = map.get_mut("winlog").and_then(|w| w.get_mut("event_data")) {
        event_data_fields(data, source, event)?;
    }
    // Winlogbeat's Sysmon module moves `User` (`DOMAIN\user`) into `user.domain` and
    // `user.name`; rules read it as Sysmon wrote it.
    if event
        .user
        .as_deref()
        .is_some_and(|user| !user.contains('\\'))
        && let Some(domain) = pluck_text(map, &["user", "domain"])?
        && let Some(user) = event.user.take()
    {
        event.user = Some(format!("{domain}\\{user}"));
    }
    if event.host.is_none() {
        event.host = pluck_text(map, &["winlog", "computer_name"])?;
    }
    // Drop an `event_data` emptied by the fields taken, as `pluck` drops emptied objects.
    if let Some(winlog) = map.get_mut("winlog").and_then(Value::as_object_mut)
        && winlog
            .get("event_data")
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
    {
        winlog.remove("event_data");
    }
    // Sysmon and 4688 name the executable by path only; the file name Rhai rules and the
    // PID-reuse check read is its last part, and an ECS name beside it must be that part.
    agree_name(&mut event.name, event.image.as_deref(), "process.name")?;
    agree_name(
        &mut event.parent_name,
        event.parent_image.as_deref(),
        "process.parent.name",
    )?;
    if event.process_hash.is_none() {
        event.process_hash.clone_from(&event.sha256);
    }
    Ok(())
}

fn event_data_fields(
    data: &mut Value,
    source: WindowsSource,
    event: &mut Event,
) -> Result<(), NormalizeError> {
    let data = match data {
        Value::Null => return Ok(()),
        Value::Object(data) => data,
        other => {
            return Err(NormalizeError::wrong_type(
                "winlog.event_data",
                "an object",
                other,
            ));
        }
    };
    let mut data = EventData { data };
    match (source.channel, source.kind) {
        (WindowsChannel::Sysmon, EventKind::ProcessCreate) => {
            agree(&mut event.pid, data.windows_id("ProcessId")?, "ProcessId")?;
            agree(&mut event.image, data.text("Image")?, "Image")?;
            agree(&mut event.cmdline, data.text("CommandLine")?, "CommandLine")?;
            agree(
                &mut event.ppid,
                data.windows_id("ParentProcessId")?,
                "ParentProcessId",
            )?;
            agree(
                &mut event.parent_image,
                data.text("ParentImage")?,
                "ParentImage",
            )?;
            agree(
                &mut event.parent_cmdline,
                data.text("ParentCommandLine")?,
                "ParentCommandLine",
            )?;
            prefer(
                &mut event.original_file_name,
                data.text("OriginalFileName")?,
            );
            prefer(&mut event.current_directory, data.text("CurrentDirectory")?);
            prefer(&mut event.user, data.text("User")?);
            prefer(&mut event.parent_user, data.text("ParentUser")?);
            prefer(&mut event.logon_id, data.text("LogonId")?);
            prefer(&mut event.integrity_level, data.text("IntegrityLevel")?);
            prefer(&mut event.company, data.text("Company")?);
            prefer(&mut event.product, data.text("Product")?);
            prefer(&mut event.file_description, data.text("Description")?);
            prefer(&mut event.file_version, data.text("FileVersion")?);
            if let Some(list) = data.text("Hashes")? {
                event.hashes = Some(list);
                digests_from_hash_list(event, "winlog.event_data.Hashes")?;
            }
        }
        (WindowsChannel::Sysmon, EventKind::NetworkConnection) => {
            agree(&mut event.pid, data.windows_id("ProcessId")?, "ProcessId")?;
            agree(&mut event.image, data.text("Image")?, "Image")?;
            prefer(&mut event.user, data.text("User")?);
            prefer(&mut event.protocol, data.text("Protocol")?);
            // Sysmon's Source is the process's own end of the connection, Destination the peer.
            agree(&mut event.local_ip, data.ip("SourceIp")?, "SourceIp")?;
            agree(
                &mut event.local_port,
                data.port("SourcePort")?,
                "SourcePort",
            )?;
            prefer(&mut event.local_hostname, data.text("SourceHostname")?);
            agree(
                &mut event.remote_ip,
                data.ip("DestinationIp")?,
                "DestinationIp",
            )?;
            agree(
                &mut event.remote_port,
                data.port("DestinationPort")?,
                "DestinationPort",
            )?;
            prefer(
                &mut event.remote_hostname,
                data.text("DestinationHostname")?,
            );
            if let Some(initiated) = data.boolean("Initiated")? {
                match event.initiated() {
                    Some(said) if said != initiated => {
                        return Err(NormalizeError::new(
                            RejectKind::Inconsistent,
                            format!(
                                "field `winlog.event_data.Initiated` is `{initiated}` but the direction is `{}`",
                                event.direction.as_deref().unwrap_or_default()
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        event.direction =
                            Some(if initiated { "outbound" } else { "inbound" }.to_string());
                    }
                }
            }
        }
        (WindowsChannel::Sysmon, EventKind::DnsQuery) => {
            agree(&mut event.pid, data.windows_id("ProcessId")?, "ProcessId")?;
            agree(&mut event.image, data.text("Image")?, "Image")?;
            prefer(&mut event.user, data.text("User")?);
            agree(&mut event.query_name, data.text("QueryName")?, "QueryName")?;
            prefer(&mut event.query_results, data.text("QueryResults")?);
            prefer(&mut event.query_status, data.text("QueryStatus")?);
        }
        (WindowsChannel::Security, EventKind::ProcessCreate) => {
            // 4688 writes process ids in hex (`0x1a2b`); `ProcessId` is the creator, the parent.
            agree(
                &mut event.pid,
                data.windows_id("NewProcessId")?,
                "NewProcessId",
            )?;
            agree(
                &mut event.image,
                data.text("NewProcessName")?,
                "NewProcessName",
            )?;
            agree(&mut event.cmdline, data.text("CommandLine")?, "CommandLine")?;
            agree(&mut event.ppid, data.windows_id("ProcessId")?, "ProcessId")?;
            agree(
                &mut event.parent_image,
                data.text("ParentProcessName")?,
                "ParentProcessName",
            )?;
            // The new process runs as the target account when 4688 names one, else as the
            // subject that created it; written `DOMAIN\user` as Sysmon writes `User`.
            let target = data.account("TargetDomainName", "TargetUserName")?;
            let subject = data.account("SubjectDomainName", "SubjectUserName")?;
            let target_logon = data.text("TargetLogonId")?;
            let subject_logon = data.text("SubjectLogonId")?;
            match target {
                Some(target) => {
                    prefer(&mut event.user, Some(target));
                    prefer(&mut event.logon_id, target_logon);
                    prefer(&mut event.parent_user, subject);
                }
                None => {
                    prefer(&mut event.user, subject);
                    prefer(&mut event.logon_id, subject_logon);
                }
            }
            // A label that is not one of the four levels stays in `extra` as it arrived.
            let level = data
                .data
                .get("MandatoryLabel")
                .and_then(Value::as_str)
                .and_then(integrity_from_label);
            if level.is_some() {
                data.data.remove("MandatoryLabel");
                prefer(&mut event.integrity_level, level);
            }
        }
        _ => {}
    }
    Ok(())
}

/// `winlog.event_data`, taken from field by field; what is not taken stays in `extra`.
struct EventData<'a> {
    data: &'a mut Map<String, Value>,
}

impl EventData<'_> {
    fn path(key: &str) -> String {
        format!("winlog.event_data.{key}")
    }

    /// Text as the event wrote it. Windows writes `-` for "none"; it is kept, because Sigma
    /// rules test for it (`Image: '-'`).
    fn text(&mut self, key: &str) -> Result<Option<String>, NormalizeError> {
        match self.data.remove(key) {
            Some(value) => text(&Self::path(key), value),
            None => Ok(None),
        }
    }

    /// A process id as Windows writes it: decimal in Sysmon, `0x` hex in the Security log.
    fn windows_id(&mut self, key: &str) -> Result<Option<u32>, NormalizeError> {
        let Some(value) = self.data.remove(key) else {
            return Ok(None);
        };
        let field = Self::path(key);
        if let Value::String(text) = &value {
            let trimmed = text.trim();
            if let Some(hex) = trimmed
                .strip_prefix("0x")
                .or_else(|| trimmed.strip_prefix("0X"))
            {
                return u32::from_str_radix(hex, 16).map(Some).map_err(|_| {
                    NormalizeError::wrong_type(&field, "a process id (decimal or 0x hex)", &value)
                });
            }
        }
        integer(&field, &value)
    }

    fn port(&mut self, key: &str) -> Result<Option<u16>, NormalizeError> {
        match self.data.remove(key) {
            Some(value) => integer(&Self::path(key), &value),
            None => Ok(None),
        }
    }

    fn ip(&mut self, key: &str) -> Result<Option<IpAddr>, NormalizeError> {
        match self.data.remove(key) {
            Some(value) => ip(&Self::path(key), &value),
            None => Ok(None),
        }
    }

    /// Sysmon writes booleans as the text `true`/`false`.
    fn boolean(&mut self, key: &str) -> Result<Option<bool>, NormalizeError> {
        let Some(value) = self.data.remove(key) else {
            return Ok(None);
        };
        match &value {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(*b)),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            _ => Err(NormalizeError::wrong_type(
                &Self::path(key),
                "`true` or `false`",
                &value,
            )),
        }
    }

    /// `DOMAIN\user` from a domain and a user field; `None` when the user is absent, empty or
    /// `-` (4688 writes `-` for "no target account").
    fn account(&mut self, domain: &str, user: &str) -> Result<Option<String>, NormalizeError> {
        let named = |value: Option<String>| value.filter(|v| !v.is_empty() && v != "-");
        let domain = named(self.text(domain)?);
        Ok(named(self.text(user)?).map(|user| match domain {
            Some(domain) => format!("{domain}\\{user}"),
            None => user,
        }))
    }
}

/// Takes a value the Windows event gives where the ECS mapping may have given it too: absent
/// there, it fills the field; present, the two must be equal.
fn agree<T: PartialEq + std::fmt::Display>(
    slot: &mut Option<T>,
    original: Option<T>,
    key: &str,
) -> Result<(), NormalizeError> {
    match (slot.as_ref(), original) {
        (_, None) => Ok(()),
        (Some(ecs), Some(original)) if *ecs != original => Err(NormalizeError::new(
            RejectKind::Inconsistent,
            format!(
                "field `winlog.event_data.{key}` is `{}` but the ECS field for it is `{}`",
                truncate(&original.to_string(), 60),
                truncate(&ecs.to_string(), 60)
            ),
        )),
        (_, Some(original)) => {
            *slot = Some(original);
            Ok(())
        }
    }
}

/// Takes the Windows event's own form of a descriptive value over the ECS form.
fn prefer(slot: &mut Option<String>, original: Option<String>) {
    if original.is_some() {
        *slot = original;
    }
}

/// Fills `name` from the last part of `path`, or checks that the name given agrees with it.
fn agree_name(
    name: &mut Option<String>,
    path: Option<&str>,
    field: &str,
) -> Result<(), NormalizeError> {
    let Some(path) = path else {
        return Ok(());
    };
    let last = file_name(path);
    match name {
        Some(given) if *given != last => Err(NormalizeError::new(
            RejectKind::Inconsistent,
            format!(
                "field `{field}` is `{}` but the executable's path ends in `{}`",
                truncate(given, 60),
                truncate(&last, 60)
            ),
        )),
        Some(_) => Ok(()),
        None => {
            *name = Some(last);
            Ok(())
        }
    }
}

/// The last part of a Windows or Unix path.
fn file_name(path: &str) -> String {
    path.rsplit(['\\', '/']).next().unwrap_or(path).to_string()
}

/// The integrity level Sysmon would write for a 4688 `MandatoryLabel` SID; `None` for a SID
/// that is not one of the four levels.
fn integrity_from_label(label: &str) -> Option<String> {
    let level = match label.trim().to_ascii_uppercase().as_str() {
        "S-1-16-4096" => "Low",
        "S-1-16-8192" => "Medium",
        "S-1-16-12288" => "High",
        "S-1-16-16384" => "System",
        _ => return None,
    };
    Some(level.to_string())
}

/// Decides the kind of an ECS document from `event.category` and `event.type`, which ECS allows
/// as a string or an array of strings.
fn ecs_kind(map: &Map<String, Value>) -> Result<EventKind, NormalizeError> {
    let event = map.get("event").and_then(Value::as_object);
    let list = |key: &str| -> Vec<String> {
        match event.and_then(|e| e.get(key)) {
            Some(Value::String(s)) => vec![s.to_ascii_lowercase()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect(),
            _ => Vec::new(),
        }
    };
    let categories = list("category");
    let types = list("type");
    let has = |items: &[String], word: &str| items.iter().any(|item| item == word);
    let has_dns_question = map
        .get("dns")
        .and_then(|dns| dns.get("question"))
        .and_then(|q| q.get("name"))
        .is_some();
    if has(&categories, "process") && (types.is_empty() || has(&types, "start")) {
        Ok(EventKind::ProcessCreate)
    } else if has_dns_question && (has(&categories, "network") || categories.is_empty()) {
        Ok(EventKind::DnsQuery)
    } else if has(&categories, "network") {
        Ok(EventKind::NetworkConnection)
    } else if has(&categories, "authentication") {
        Ok(EventKind::Login)
    } else if categories.is_empty() {
        Err(NormalizeError::new(
            RejectKind::MissingField,
            "ECS event has no `event.category`",
        ))
    } else {
        Err(NormalizeError::new(
            RejectKind::UnknownType,
            format!(
                "unsupported ECS event.category {:?} / event.type {:?}; supported: process start, network, dns, authentication",
                categories, types
            ),
        ))
    }
}

/// Removes the value at `path` from nested objects, dropping objects it leaves empty, so that
/// only the fields the model did not take remain in `extra`.
fn pluck(map: &mut Map<String, Value>, path: &[&str]) -> Option<Value> {
    let (first, rest) = path.split_first()?;
    if rest.is_empty() {
        return map.remove(*first);
    }
    let child = map.get_mut(*first)?.as_object_mut()?;
    let value = pluck(child, rest);
    if child.is_empty() {
        map.remove(*first);
    }
    value
}

fn pluck_text(
    map: &mut Map<String, Value>,
    path: &[&str],
) -> Result<Option<String>, NormalizeError> {
    match pluck(map, path) {
        Some(value) => text(&path.join("."), value),
        None => Ok(None),
    }
}

/// The account an ECS `user` object at `path` names, as the flat shape and Sysmon write it:
/// `DOMAIN\user` when `domain` is given beside `name`, else the name alone. A name that already
/// carries a domain is kept as it is. Without this, `{"user":{"domain":"CORP","name":"bob"}}`
/// read as `bob` where the same account in the flat shape reads `CORP\bob`, and a rule or an
/// allowlist written against one form missed the other.
fn ecs_account(
    map: &mut Map<String, Value>,
    path: &[&str],
) -> Result<Option<String>, NormalizeError> {
    let name_path: Vec<&str> = path.iter().copied().chain(["name"]).collect();
    let Some(name) = pluck_text(map, &name_path)? else {
        return Ok(None);
    };
    if name.contains('\\') {
        return Ok(Some(name));
    }
    let domain_path: Vec<&str> = path.iter().copied().chain(["domain"]).collect();
    Ok(Some(match pluck_text(map, &domain_path)? {
        Some(domain) if !domain.is_empty() => format!("{domain}\\{name}"),
        _ => name,
    }))
}

fn pluck_u32(map: &mut Map<String, Value>, path: &[&str]) -> Result<Option<u32>, NormalizeError> {
    match pluck(map, path) {
        Some(value) => integer(&path.join("."), &value),
        None => Ok(None),
    }
}

fn pluck_u16(map: &mut Map<String, Value>, path: &[&str]) -> Result<Option<u16>, NormalizeError> {
    match pluck(map, path) {
        Some(value) => integer(&path.join("."), &value),
        None => Ok(None),
    }
}

fn pluck_ip(map: &mut Map<String, Value>, path: &[&str]) -> Result<Option<IpAddr>, NormalizeError> {
    match pluck(map, path) {
        Some(value) => ip(&path.join("."), &value),
        None => Ok(None),
    }
}

fn take_text(map: &mut impl FlatFields, key: &str) -> Result<Option<String>, NormalizeError> {
    map.take(key).map_or(Ok(None), |value| text(key, value))
}

fn take_u32(map: &mut impl FlatFields, key: &str) -> Result<Option<u32>, NormalizeError> {
    map.take(key).map_or(Ok(None), |value| integer(key, &value))
}

fn take_u16(map: &mut impl FlatFields, key: &str) -> Result<Option<u16>, NormalizeError> {
    map.take(key).map_or(Ok(None), |value| integer(key, &value))
}

fn take_ip(map: &mut impl FlatFields, key: &str) -> Result<Option<IpAddr>, NormalizeError> {
    map.take(key).map_or(Ok(None), |value| ip(key, &value))
}

/// Text fields accept strings and, since some pipelines emit ids as numbers, numbers.
/// `null` means absent.
fn text(field: &str, value: Value) -> Result<Option<String>, NormalizeError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(NormalizeError::wrong_type(field, "a string", &other)),
    }
}

fn integer<T: TryFrom<u64>>(field: &str, value: &Value) -> Result<Option<T>, NormalizeError> {
    let parsed = match value {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    parsed
        .and_then(|n| T::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| {
            NormalizeError::wrong_type(
                field,
                &format!("a non-negative integer up to {}", max_of::<T>()),
                value,
            )
        })
}

fn max_of<T: TryFrom<u64>>() -> u64 {
    // The largest u64 that converts, found by the width of T: only u16 and u32 are used.
    if T::try_from(u64::from(u32::MAX)).is_ok() {
        u64::from(u32::MAX)
    } else {
        u64::from(u16::MAX)
    }
}

fn ip(field: &str, value: &Value) -> Result<Option<IpAddr>, NormalizeError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() || s == "-" => Ok(None),
        Value::String(s) => s
            .trim()
            .parse::<IpAddr>()
            .map(|addr| Some(canonical_ip(addr)))
            .map_err(|_| NormalizeError::wrong_type(field, "an IP address", value)),
        other => Err(NormalizeError::wrong_type(field, "an IP address", other)),
    }
}

/// An IPv4 address written as IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is the IPv4 address; one form
/// keeps matching and blocking simple.
pub(crate) fn canonical_ip(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// RFC 3339 text, or epoch seconds or milliseconds as a number or a numeric string. Values
/// above 10^11 are taken as milliseconds: 10^11 seconds is the year 5138.
fn timestamp(field: &str, value: &Value) -> Result<i64, NormalizeError> {
    let bad = || {
        NormalizeError::new(
            RejectKind::BadTimestamp,
            format!(
                "field `{field}` must be RFC 3339 or epoch seconds or milliseconds, got {}",
                describe(value)
            ),
        )
    };
    let from_epoch = |number: f64| -> Result<i64, NormalizeError> {
        if !number.is_finite() || number < 0.0 {
            return Err(bad());
        }
        let millis = if number >= 1e11 {
            number
        } else {
            number * 1000.0
        };
        if millis > 253_402_300_799_999.0 {
            return Err(bad());
        }
        #[expect(
            clippy::cast_possible_truncation,
            reason = "range checked above: the value fits in i64 milliseconds before year 10000"
        )]
        Ok(millis.round() as i64)
    };
    match value {
        Value::Number(n) => from_epoch(n.as_f64().ok_or_else(bad)?),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(number) = s.parse::<f64>() {
                return from_epoch(number);
            }
            s.parse::<jiff::Timestamp>()
                .map(|ts| ts.as_millisecond())
                .map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Result<Event, NormalizeError> {
        normalize(value.to_string().as_bytes())
    }

    #[test]
    fn flat_network_connection_from_the_seed() {
        let event = parse(json!({"type":"network_connection","timestamp":"2025-11-03T14:30:05Z",
            "host":"ws-17","pid":1234,"name":"svchost.exe","remote_ip":"185.12.33.4","remote_port":80}))
        .unwrap();
        assert_eq!(event.kind, EventKind::NetworkConnection);
        assert_eq!(event.timestamp_ms, 1_762_180_205_000);
        assert_eq!(event.remote_ip, Some("185.12.33.4".parse().unwrap()));
        assert_eq!(event.remote_port, Some(80));
        assert!(event.id.starts_with("evt-"));
        assert!(event.extra.is_empty());
    }

    #[test]
    fn derived_id_is_stable_and_explicit_id_wins() {
        let raw = json!({"type":"login","timestamp":1,"user":"bob"}).to_string();
        assert_eq!(
            normalize(raw.as_bytes()).unwrap().id,
            normalize(raw.as_bytes()).unwrap().id
        );
        let event = parse(json!({"type":"login","timestamp":1,"id":"abc"})).unwrap();
        assert_eq!(event.id, "abc");
    }

    #[test]
    fn epoch_seconds_and_millis_agree() {
        let secs = parse(json!({"type":"login","timestamp":1762180205})).unwrap();
        let millis = parse(json!({"type":"login","timestamp":1762180205000_i64})).unwrap();
        let text = parse(json!({"type":"login","timestamp":"1762180205"})).unwrap();
        assert_eq!(secs.timestamp_ms, millis.timestamp_ms);
        assert_eq!(secs.timestamp_ms, text.timestamp_ms);
    }

    #[test]
    fn unknown_fields_are_kept() {
        let event =
            parse(json!({"type":"dns_query","timestamp":1,"query_name":"x.example","ttl":30,"tags":["a"]}))
                .unwrap();
        assert_eq!(event.extra.get("ttl"), Some(&json!(30)));
        assert_eq!(event.extra.get("tags"), Some(&json!(["a"])));
    }

    #[test]
    fn ecs_process_start_with_numbers_as_strings() {
        let event = parse(json!({
            "@timestamp": "2025-11-03T14:30:05.123Z",
            "event": {"id": "E1", "category": ["process"], "type": ["start"], "code": "1"},
            "host": {"name": "ws-17", "os": {"family": "windows"}},
            "user": {"name": "alice"},
            "process": {"pid": "4242", "name": "powershell.exe", "command_line": "powershell -enc AA==",
                        "executable": "C:\\Windows\\powershell.exe",
                        "hash": {"sha256": "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789"},
                        "parent": {"pid": "100", "name": "WINWORD.EXE"}},
            "winlog": {"channel": "Microsoft-Windows-Sysmon/Operational"}
        }))
        .unwrap();
        assert_eq!(event.kind, EventKind::ProcessCreate);
        assert_eq!(event.id, "E1");
        assert_eq!(event.pid, Some(4242));
        assert_eq!(event.ppid, Some(100));
        assert_eq!(event.parent_name.as_deref(), Some("WINWORD.EXE"));
        assert_eq!(
            event.process_hash.as_deref(),
            Some("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
        );
        assert_eq!(event.user.as_deref(), Some("alice"));
        assert_eq!(event.timestamp_ms % 1000, 123);
        // Unknown fields stay, and consumed ones are gone from extra.
        assert_eq!(
            event.extra["winlog"]["channel"],
            json!("Microsoft-Windows-Sysmon/Operational")
        );
        assert_eq!(event.extra["host"], json!({"os": {"family": "windows"}}));
        assert_eq!(
            event.extra["event"],
            json!({"category": ["process"], "type": ["start"], "code": "1"})
        );
        assert!(event.extra.get("process").is_none());
    }

    #[test]
    fn ecs_network_dns_and_login() {
        let net = parse(json!({"@timestamp":"2025-11-03T14:30:05Z","event":{"category":"network"},
            "destination":{"ip":"::ffff:185.12.33.4","port":"443"},"source":{"ip":"10.0.0.5","port":50000},
            "network":{"transport":"tcp"}})).unwrap();
        assert_eq!(net.kind, EventKind::NetworkConnection);
        assert_eq!(net.remote_ip, Some("185.12.33.4".parse().unwrap()));
        assert_eq!(net.remote_port, Some(443));
        assert_eq!(net.local_port, Some(50000));
        let dns = parse(
            json!({"@timestamp":"2025-11-03T14:30:05Z","event":{"category":["network"]},
            "dns":{"question":{"name":"evil.example"}}}),
        )
        .unwrap();
        assert_eq!(dns.kind, EventKind::DnsQuery);
        assert_eq!(dns.query_name.as_deref(), Some("evil.example"));
        let login = parse(json!({"@timestamp":"2025-11-03T14:30:05Z","event":{"category":"authentication","outcome":"failure"},
            "source":{"ip":"203.0.113.9"},"user":{"name":"root"}})).unwrap();
        assert_eq!(login.kind, EventKind::Login);
        assert_eq!(login.outcome.as_deref(), Some("failure"));
        assert_eq!(login.source_ip, Some("203.0.113.9".parse().unwrap()));
    }

    /// Defect: an ECS `user.domain` was dropped, so `{"domain":"CORP","name":"carol"}` read as
    /// `carol` where the flat shape's `"user":"CORP\\carol"` reads `CORP\carol`.
    #[test]
    fn ecs_user_domain_is_kept_as_the_flat_shape_writes_it() {
        let flat = parse(json!({"type":"login","timestamp":1,"user":"CORP\\carol",
            "parent_user":"CORP\\svc"}))
        .unwrap();
        let ecs = parse(json!({"@timestamp":"2025-11-03T14:30:05Z",
            "event":{"category":"authentication","outcome":"success"},
            "source":{"ip":"203.0.113.9"},"user":{"domain":"CORP","name":"carol"},
            "process":{"parent":{"user":{"domain":"CORP","name":"svc"}}}}))
        .unwrap();
        assert_eq!(ecs.user.as_deref(), Some("CORP\\carol"));
        assert_eq!(
            ecs.user, flat.user,
            "one account, one form, whatever the shape"
        );
        assert_eq!(ecs.parent_user, flat.parent_user);
        assert!(
            ecs.extra.get("user").is_none(),
            "the domain is read, not left over"
        );
        // A name that already carries a domain is not given a second one; no domain, no prefix.
        let qualified = parse(json!({"@timestamp":"2025-11-03T14:30:05Z",
            "event":{"category":"authentication"},"user":{"domain":"CORP","name":"CORP\\carol"}}))
        .unwrap();
        assert_eq!(qualified.user.as_deref(), Some("CORP\\carol"));
        let bare = parse(json!({"@timestamp":"2025-11-03T14:30:05Z",
            "event":{"category":"authentication"},"user":{"name":"root"}}))
        .unwrap();
        assert_eq!(bare.user.as_deref(), Some("root"));
    }

    #[test]
    fn rejects_name_the_field_and_kind() {
        let cases = [
            (b"not json".to_vec(), RejectKind::NotJson),
            (b"[1,2]".to_vec(), RejectKind::NotObject),
            (
                json!({"type":"teleport","timestamp":1})
                    .to_string()
                    .into_bytes(),
                RejectKind::UnknownType,
            ),
            (
                json!({"type":"login","timestamp":1,"pid":"abc"})
                    .to_string()
                    .into_bytes(),
                RejectKind::WrongType,
            ),
            (
                json!({"type":"login","timestamp":1,"remote_port":70000})
                    .to_string()
                    .into_bytes(),
                RejectKind::WrongType,
            ),
            (
                json!({"type":"login","timestamp":"yesterday"})
                    .to_string()
                    .into_bytes(),
                RejectKind::BadTimestamp,
            ),
            (
                json!({"type":"login"}).to_string().into_bytes(),
                RejectKind::MissingField,
            ),
            (
                json!({"host":"x"}).to_string().into_bytes(),
                RejectKind::MissingField,
            ),
            (
                json!({"type":"network_connection","timestamp":1,"remote_ip":"1.2.3.4; rm -rf /"})
                    .to_string()
                    .into_bytes(),
                RejectKind::WrongType,
            ),
        ];
        for (raw, kind) in cases {
            let err = normalize(&raw).unwrap_err();
            assert_eq!(
                err.kind,
                kind,
                "{}: {}",
                String::from_utf8_lossy(&raw),
                err.message
            );
        }
        let err = parse(json!({"type":"login","timestamp":1,"pid":"abc"})).unwrap_err();
        assert!(err.message.contains("`pid`"), "{}", err.message);
    }

    fn fixture(text: &str) -> Vec<Event> {
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| normalize(line.as_bytes()).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    const WINLOGBEAT_SYSMON: &str = include_str!("../../tests/fixtures/winlogbeat-sysmon.jsonl");
    const ELASTIC_AGENT_SYSMON: &str =
        include_str!("../../tests/fixtures/elastic-agent-sysmon.jsonl");
    const SECURITY_4688: &str = include_str!("../../tests/fixtures/winlogbeat-security-4688.jsonl");

    /// Winlogbeat's Sysmon module moves most originals into ECS and leaves the rest in
    /// `winlog.event_data`; every field a Sigma rule names is filled from one or the other.
    #[test]
    fn winlogbeat_sysmon_fills_the_sigma_fields() {
        let events = fixture(WINLOGBEAT_SYSMON);
        let [process, network, dns] = events.as_slice() else {
            panic!("three events expected")
        };
        assert_eq!(process.kind, EventKind::ProcessCreate);
        assert_eq!(process.pid, Some(4242));
        assert_eq!(process.ppid, Some(3100));
        assert_eq!(process.name.as_deref(), Some("powershell.exe"));
        assert!(
            process
                .image
                .as_deref()
                .unwrap()
                .ends_with("\\powershell.exe")
        );
        assert!(
            process
                .parent_image
                .as_deref()
                .unwrap()
                .ends_with("\\WINWORD.EXE")
        );
        assert!(
            process
                .parent_cmdline
                .as_deref()
                .unwrap()
                .contains("invoice-2025-11.docm")
        );
        assert_eq!(
            process.original_file_name.as_deref(),
            Some("PowerShell.EXE")
        );
        assert_eq!(process.integrity_level.as_deref(), Some("Medium"));
        assert_eq!(
            process.current_directory.as_deref(),
            Some("C:\\Users\\alice\\Documents\\")
        );
        assert_eq!(process.logon_id.as_deref(), Some("0x3a2b1f"));
        assert_eq!(process.user.as_deref(), Some("CORP\\alice"));
        assert_eq!(process.parent_user.as_deref(), Some("CORP\\alice"));
        assert_eq!(process.company.as_deref(), Some("Microsoft Corporation"));
        assert_eq!(
            process.file_description.as_deref(),
            Some("Windows PowerShell")
        );
        assert_eq!(
            process.md5.as_deref(),
            Some("7353f60b1739074eb17c5f4dddefe239")
        );
        assert_eq!(
            process.imphash.as_deref(),
            Some("caee994f79d85e47c06e5fa9cdeae453")
        );
        assert_eq!(process.process_hash, process.sha256);
        // The module dropped the original list; it is composed the way Sysmon writes it.
        assert_eq!(process.hashes, None);
        assert_eq!(
            process.hash_list().as_deref(),
            Some(
                "SHA1=6CBCE4A295C163791B60FC23D285E6D84F28EE4C,MD5=7353F60B1739074EB17C5F4DDDEFE239,\
                 SHA256=DE96A6E69944335375DC1AC238336066889D9FFC7D73628EF4FE1B1B160AB32C,\
                 IMPHASH=CAEE994F79D85E47C06E5FA9CDEAE453"
            )
        );
        assert_eq!(process.host.as_deref(), Some("ws-17.corp.example"));
        // What the model does not know stays: the logon GUID, the module's own fields.
        assert!(
            process.extra["winlog"]["event_data"]
                .get("LogonGuid")
                .is_some()
        );
        assert!(
            process.extra["winlog"]["event_data"]
                .get("IntegrityLevel")
                .is_none()
        );

        assert_eq!(network.kind, EventKind::NetworkConnection);
        assert_eq!(network.initiated(), Some(true));
        assert_eq!(network.remote_ip, Some("185.12.33.4".parse().unwrap()));
        assert_eq!(
            network.remote_hostname.as_deref(),
            Some("cdn-update.example.net")
        );
        assert_eq!(network.local_ip, Some("10.20.30.17".parse().unwrap()));
        assert_eq!(network.local_port, Some(50734));
        assert_eq!(
            network.local_hostname.as_deref(),
            Some("ws-17.corp.example")
        );
        assert_eq!(network.image, process.image);

        assert_eq!(dns.kind, EventKind::DnsQuery);
        assert_eq!(dns.query_name.as_deref(), Some("cdn-update.example.net"));
        assert_eq!(
            dns.query_results.as_deref(),
            Some("edge-7.example.net;185.12.33.4;")
        );
        assert_eq!(dns.query_status.as_deref(), Some("0"));
    }

    /// Elastic Agent keeps the whole original `event_data` beside ECS: the originals are read,
    /// and where both say the same thing they agree.
    #[test]
    fn elastic_agent_sysmon_keeps_the_originals() {
        let events = fixture(ELASTIC_AGENT_SYSMON);
        let [process, network, dns] = events.as_slice() else {
            panic!("three events expected")
        };
        assert_eq!(process.kind, EventKind::ProcessCreate);
        assert_eq!(process.pid, Some(5120));
        assert_eq!(process.name.as_deref(), Some("svc.exe"));
        assert_eq!(process.original_file_name.as_deref(), Some("rundll32.exe"));
        assert_eq!(process.integrity_level.as_deref(), Some("High"));
        // Sysmon's "none" is kept as written, since rules test for it.
        assert_eq!(process.company.as_deref(), Some("-"));
        // The original list is kept verbatim, and its digests are typed.
        assert_eq!(
            process.hash_list().as_deref(),
            Some(
                "MD5=7353F60B1739074EB17C5F4DDDEFE239,\
                 SHA256=DE96A6E69944335375DC1AC238336066889D9FFC7D73628EF4FE1B1B160AB32C,\
                 IMPHASH=CAEE994F79D85E47C06E5FA9CDEAE453"
            )
        );
        assert_eq!(process.sha1, None);
        assert_eq!(
            process.imphash.as_deref(),
            Some("caee994f79d85e47c06e5fa9cdeae453")
        );
        assert!(process.extra["winlog"]["event_data"].get("Image").is_none());
        assert_eq!(
            process.extra["winlog"]["event_data"]["TerminalSessionId"],
            json!("1")
        );

        assert_eq!(network.initiated(), Some(true));
        assert_eq!(network.protocol.as_deref(), Some("tcp"));
        assert_eq!(network.remote_port, Some(8080));
        assert_eq!(network.remote_hostname.as_deref(), Some("-"));

        assert_eq!(dns.query_name.as_deref(), Some("c2.bad-actor.example"));
        assert_eq!(dns.query_results.as_deref(), Some("::ffff:203.0.113.50;"));
    }

    /// Windows Security 4688: hex process ids, the account as `DOMAIN\user`, the integrity
    /// level from the mandatory label; the same from Winlogbeat's ECS mapping and from plain
    /// `winlog` without it.
    #[test]
    fn security_4688_is_a_process_creation() {
        let events = fixture(SECURITY_4688);
        let [mapped, plain] = events.as_slice() else {
            panic!("two events expected")
        };
        for event in [mapped, plain] {
            assert_eq!(event.kind, EventKind::ProcessCreate);
            assert_eq!(event.pid, Some(0x1a2b));
            assert_eq!(event.ppid, Some(0x1092));
            assert_eq!(event.name.as_deref(), Some("certutil.exe"));
            assert_eq!(
                event.image.as_deref(),
                Some("C:\\Windows\\System32\\certutil.exe")
            );
            assert_eq!(event.parent_name.as_deref(), Some("powershell.exe"));
            assert!(event.cmdline.as_deref().unwrap().contains("-urlcache"));
            assert_eq!(event.user.as_deref(), Some("CORP\\alice"));
            assert_eq!(event.logon_id.as_deref(), Some("0x3a2b1f"));
            assert_eq!(event.integrity_level.as_deref(), Some("Medium"));
            assert_eq!(event.host.as_deref(), Some("ws-17.corp.example"));
        }
        assert_eq!(mapped.timestamp_ms, plain.timestamp_ms);
    }

    #[test]
    fn flat_shape_takes_the_new_keys() {
        let event = parse(json!({"type":"process_create","timestamp":1,
            "parent_image":"C:\\p.exe","parent_cmdline":"p","original_file_name":"x.exe",
            "integrity_level":"High","current_directory":"C:\\","logon_id":"0x3e7",
            "hashes":"MD5=7353F60B1739074EB17C5F4DDDEFE239,IMPHASH=CAEE994F79D85E47C06E5FA9CDEAE453",
            "company":"c","product":"p","file_description":"d","file_version":"1","parent_user":"u"}))
        .unwrap();
        assert_eq!(
            event.md5.as_deref(),
            Some("7353f60b1739074eb17c5f4dddefe239")
        );
        assert_eq!(
            event.imphash.as_deref(),
            Some("caee994f79d85e47c06e5fa9cdeae453")
        );
        assert_eq!(event.integrity_level.as_deref(), Some("High"));
        assert!(event.extra.is_empty(), "{:?}", event.extra);
        let net = parse(
            json!({"type":"network_connection","timestamp":1,"direction":"inbound",
            "local_ip":"::ffff:10.0.0.5","remote_hostname":"a.example","local_hostname":"me"}),
        )
        .unwrap();
        assert_eq!(net.initiated(), Some(false));
        assert_eq!(net.local_ip, Some("10.0.0.5".parse().unwrap()));
        let dns = parse(
            json!({"type":"dns_query","timestamp":1,"query_name":"a.example",
            "query_results":"1.2.3.4;","query_status":"0"}),
        )
        .unwrap();
        assert_eq!(dns.query_results.as_deref(), Some("1.2.3.4;"));
        // Typed digests alone compose the list.
        let typed = parse(json!({"type":"process_create","timestamp":1,
            "sha256":"DE96A6E69944335375DC1AC238336066889D9FFC7D73628EF4FE1B1B160AB32C"}))
        .unwrap();
        assert_eq!(
            typed.hash_list().as_deref(),
            Some("SHA256=DE96A6E69944335375DC1AC238336066889D9FFC7D73628EF4FE1B1B160AB32C")
        );
        assert_eq!(typed.process_hash, typed.sha256);
    }

    /// A message whose ECS part and whose original Windows fields disagree is refused: a rule
    /// would match one form while a playbook acts on the other.
    #[test]
    fn winlog_original_disagreeing_with_ecs_is_rejected() {
        let line = WINLOGBEAT_SYSMON.lines().next().unwrap();
        let mut doc: Value = serde_json::from_str(line).unwrap();
        doc["winlog"]["event_data"]["Image"] = json!("C:\\Windows\\notepad.exe");
        let err = normalize_value(doc, || "x".into()).unwrap_err();
        assert_eq!(err.kind, RejectKind::Inconsistent);
        assert!(
            err.message.contains("`winlog.event_data.Image`"),
            "{}",
            err.message
        );

        let line = SECURITY_4688.lines().next().unwrap();
        let mut doc: Value = serde_json::from_str(line).unwrap();
        doc["process"]["name"] = json!("notepad.exe");
        let err = normalize_value(doc, || "x".into()).unwrap_err();
        assert_eq!(err.kind, RejectKind::Inconsistent);
        assert!(err.message.contains("`process.name`"), "{}", err.message);

        let line = ELASTIC_AGENT_SYSMON.lines().nth(1).unwrap();
        let mut doc: Value = serde_json::from_str(line).unwrap();
        doc["winlog"]["event_data"]["Initiated"] = json!("false");
        let err = normalize_value(doc, || "x".into()).unwrap_err();
        assert_eq!(err.kind, RejectKind::Inconsistent);
        assert!(err.message.contains("Initiated"), "{}", err.message);

        let err = parse(json!({"type":"process_create","timestamp":1,
            "md5":"00000000000000000000000000000000",
            "hashes":"MD5=7353F60B1739074EB17C5F4DDDEFE239"}))
        .unwrap_err();
        assert_eq!(err.kind, RejectKind::Inconsistent);
        assert!(
            err.message.contains("`hashes` entry `MD5`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn hostile_windows_fields_name_the_field() {
        let sysmon = |id: Value, data: Value| {
            json!({"@timestamp":"2025-11-03T14:30:05Z","winlog":{
                "channel":"Microsoft-Windows-Sysmon/Operational","event_id":id,"event_data":data}})
        };
        let security = |data: Value| {
            json!({"@timestamp":"2025-11-03T14:30:05Z","event":{"code":"4688"},
                "winlog":{"channel":"Security","event_data":data}})
        };
        let cases = [
            (
                sysmon(json!("11"), json!({})),
                RejectKind::UnknownType,
                "Sysmon event 11",
            ),
            (
                sysmon(json!("1"), json!(["Image"])),
                RejectKind::WrongType,
                "`winlog.event_data`",
            ),
            (
                sysmon(json!("1"), json!({"Hashes":"MD5=zz"})),
                RejectKind::WrongType,
                "`winlog.event_data.Hashes` entry `MD5`",
            ),
            (
                sysmon(json!("1"), json!({"Hashes":"not a list"})),
                RejectKind::WrongType,
                "`winlog.event_data.Hashes`",
            ),
            (
                sysmon(json!("1"), json!({"ProcessId":"-5"})),
                RejectKind::WrongType,
                "`winlog.event_data.ProcessId`",
            ),
            (
                sysmon(json!("3"), json!({"Initiated":"maybe"})),
                RejectKind::WrongType,
                "`winlog.event_data.Initiated`",
            ),
            (
                sysmon(json!("3"), json!({"DestinationIp":"1.2.3.4; rm -rf /"})),
                RejectKind::WrongType,
                "`winlog.event_data.DestinationIp`",
            ),
            (
                sysmon(json!("3"), json!({"DestinationPort":"70000"})),
                RejectKind::WrongType,
                "`winlog.event_data.DestinationPort`",
            ),
            (
                sysmon(json!({"id":1}), json!({})),
                RejectKind::WrongType,
                "`winlog.event_id`",
            ),
            (
                security(json!({"NewProcessId":"0xZZ"})),
                RejectKind::WrongType,
                "`winlog.event_data.NewProcessId`",
            ),
            (
                security(json!({"CommandLine":{"a":1}})),
                RejectKind::WrongType,
                "`winlog.event_data.CommandLine`",
            ),
            (
                json!({"@timestamp":"2025-11-03T14:30:05Z","event":{"category":"network"},
                    "dns":{"question":{"name":"a.example"},"answers":"1.2.3.4"}}),
                RejectKind::WrongType,
                "`dns.answers`",
            ),
            (
                json!({"@timestamp":"2025-11-03T14:30:05Z","event":{"category":"process"},
                    "process":{"hash":{"md5":"abc"}}}),
                RejectKind::WrongType,
                "`process.hash.md5`",
            ),
            (
                json!({"winlog":{"channel":"Security","event_id":"4688"}}),
                RejectKind::MissingField,
                "`@timestamp`",
            ),
        ];
        for (doc, kind, names) in cases {
            let err = normalize(doc.to_string().as_bytes()).unwrap_err();
            assert_eq!(err.kind, kind, "{doc}: {}", err.message);
            assert!(err.message.contains(names), "{doc}: {}", err.message);
        }
    }

    /// A Security event other than 4688 is judged by its ECS category, as before.
    #[test]
    fn other_windows_events_fall_back_to_the_ecs_category() {
        let login = parse(json!({"@timestamp":"2025-11-03T14:30:05Z",
            "event":{"code":"4625","category":["authentication"],"outcome":"failure"},
            "source":{"ip":"203.0.113.9"},"user":{"name":"admin"},
            "winlog":{"channel":"Security","event_id":"4625","event_data":{"IpAddress":"203.0.113.9"}}}))
        .unwrap();
        assert_eq!(login.kind, EventKind::Login);
        assert_eq!(login.outcome.as_deref(), Some("failure"));
        // A Sysmon document without an event id is judged by its category too.
        let process = parse(json!({"@timestamp":"2025-11-03T14:30:05Z",
            "event":{"category":["process"],"type":["start"]},
            "winlog":{"channel":"Microsoft-Windows-Sysmon/Operational"}}))
        .unwrap();
        assert_eq!(process.kind, EventKind::ProcessCreate);
    }

    #[test]
    fn oversize_is_rejected_before_parsing() {
        let raw = vec![b' '; MAX_EVENT_BYTES + 1];
        assert_eq!(normalize(&raw).unwrap_err().kind, RejectKind::Oversize);
    }

    /// The fast path and the general path agree on every message, accepted or rejected.
    fn both_paths(raw: &str) -> (Result<Event, NormalizeError>, Result<Event, NormalizeError>) {
        let fast = normalize(raw.as_bytes());
        let general = serde_json::from_str::<Value>(raw)
            .map_err(|e| NormalizeError::new(RejectKind::NotJson, e.to_string()))
            .and_then(|v| normalize_value(v, || derive_id(raw.as_bytes())));
        (fast, general)
    }

    #[test]
    fn the_fast_path_agrees_with_the_general_path() {
        for raw in [
            r#"{"type":"network_connection","timestamp":"2025-11-03T14:30:05Z","host":"ws-17","pid":1234,"name":"svchost.exe","remote_ip":"185.12.33.4","remote_port":80,"extra":{"a":[1,2]},"note":"x\ny"}"#,
            r#"{"type":"process_create","timestamp":1762180205,"pid":"4242","cmdline":"C:\\x \"q\"","process_hash":"ABC","id":7}"#,
            r#"{"type":"login","timestamp":1,"pid":"abc"}"#,
            r#"{"type":"login","timestamp":1,"remote_port":70000}"#,
            r#"{"type":"login","timestamp":1,"user":["a"]}"#,
            r#"{"type":"teleport","timestamp":1}"#,
            r#"{"type":"login"}"#,
            r#"{"type":5,"timestamp":1}"#,
            r#"{"type":"login","timestamp":1,"host":null,"ttl":30,"type":"dns_query"}"#,
            r#"{"type":"process_create","timestamp":1,"parent_image":"C:\\p.exe","hashes":"MD5=7353F60B1739074EB17C5F4DDDEFE239","md5":"7353f60b1739074eb17c5f4dddefe239","integrity_level":"High","x":1}"#,
            r#"{"type":"process_create","timestamp":1,"hashes":"MD5=zz"}"#,
            r#"{"type":"network_connection","timestamp":1,"local_ip":"10.0.0.1","remote_hostname":"a","direction":"outbound"}"#,
        ] {
            let (fast, general) = both_paths(raw);
            match (&fast, &general) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{raw}"),
                (Err(a), Err(b)) => assert_eq!((a.kind, &a.message), (b.kind, &b.message), "{raw}"),
                _ => panic!("paths disagree on {raw}: {fast:?} vs {general:?}"),
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_and_general_paths_agree_on_generated_events(
            pid in proptest::option::of(0u64..5_000_000_000),
            name in proptest::option::of("[a-zA-Z0-9 .\\\\\"]{0,12}"),
            port in proptest::option::of(0u32..70_000),
            kind in proptest::sample::select(vec!["process_create", "login", "dns_query", "nope"]),
            parent_image in proptest::option::of("[a-zA-Z0-9 .\\\\\"]{0,12}"),
            md5 in proptest::option::of("[0-9a-fA-Fz]{30,33}"),
            hashes in proptest::option::of("(MD5|SHA1|IMPHASH)=[0-9a-f]{32}(,x)?"),
        ) {
            let mut map = serde_json::Map::new();
            map.insert("type".into(), json!(kind));
            map.insert("timestamp".into(), json!(1_762_180_205));
            if let Some(pid) = pid { map.insert("pid".into(), json!(pid)); }
            if let Some(name) = name { map.insert("name".into(), json!(name)); }
            if let Some(port) = port { map.insert("remote_port".into(), json!(port.to_string())); }
            if let Some(parent_image) = parent_image { map.insert("parent_image".into(), json!(parent_image)); }
            if let Some(md5) = md5 { map.insert("md5".into(), json!(md5)); }
            if let Some(hashes) = hashes { map.insert("hashes".into(), json!(hashes)); }
            let raw = Value::Object(map).to_string();
            let (fast, general) = both_paths(&raw);
            match (fast, general) {
                (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b),
                (Err(a), Err(b)) => proptest::prop_assert_eq!((a.kind, a.message), (b.kind, b.message)),
                (a, b) => proptest::prop_assert!(false, "paths disagree: {:?} vs {:?}", a, b),
            }
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = normalize(&raw);
        }

        #[test]
        fn epoch_millis_round_trip(millis in 100_000_000_000_i64..253_402_300_799_000) {
            let event = parse(json!({"type":"login","timestamp":millis})).unwrap();
            proptest::prop_assert_eq!(event.timestamp_ms, millis);
        }
    }
}
