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
}

impl FlatFields for Map<String, Value> {
    fn take(&mut self, key: &str) -> Option<Value> {
        self.remove(key)
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
    } else if map.contains_key("@timestamp") || matches!(map.get("event"), Some(Value::Object(_))) {
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
    event.remote_ip = take_ip(&mut map, "remote_ip")?;
    event.remote_port = take_u16(&mut map, "remote_port")?;
    event.local_port = take_u16(&mut map, "local_port")?;
    event.protocol = take_text(&mut map, "protocol")?;
    event.direction = take_text(&mut map, "direction")?;
    event.remote_hostname = take_text(&mut map, "remote_hostname")?;
    event.local_ip = take_ip(&mut map, "local_ip")?;
    event.local_hostname = take_text(&mut map, "local_hostname")?;
    event.query_name = take_text(&mut map, "query_name")?;
    event.query_results = take_text(&mut map, "query_results")?;
    event.query_status = take_text(&mut map, "query_status")?;
    event.source_ip = take_ip(&mut map, "source_ip")?;
    event.outcome = take_text(&mut map, "outcome")?;
    event.method = take_text(&mut map, "method")?;
    digests_from_hash_list(&mut event, "hashes")?;
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
    let kind = ecs_kind(map)?;
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
    event.user = pluck_text(map, &["user", "name"])?;
    event.pid = pluck_u32(map, &["process", "pid"])?;
    event.name = pluck_text(map, &["process", "name"])?;
    event.cmdline = pluck_text(map, &["process", "command_line"])?;
    event.image = pluck_text(map, &["process", "executable"])?;
    event.process_hash =
        pluck_text(map, &["process", "hash", "sha256"])?.map(|h| h.to_ascii_lowercase());
    event.ppid = pluck_u32(map, &["process", "parent", "pid"])?;
    event.parent_name = pluck_text(map, &["process", "parent", "name"])?;
    match kind {
        EventKind::NetworkConnection => {
            event.remote_ip = pluck_ip(map, &["destination", "ip"])?;
            event.remote_port = pluck_u16(map, &["destination", "port"])?;
            event.local_port = pluck_u16(map, &["source", "port"])?;
            event.protocol = pluck_text(map, &["network", "transport"])?;
            event.direction = pluck_text(map, &["network", "direction"])?;
        }
        EventKind::DnsQuery => {
            event.query_name = pluck_text(map, &["dns", "question", "name"])?;
        }
        EventKind::Login => {
            event.source_ip = pluck_ip(map, &["source", "ip"])?;
            event.outcome = pluck_text(map, &["event", "outcome"])?;
        }
        EventKind::ProcessCreate => {}
    }
    event.extra = std::mem::take(map);
    Ok(event)
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
                        "hash": {"sha256": "ABCDEF"},
                        "parent": {"pid": "100", "name": "WINWORD.EXE"}},
            "winlog": {"channel": "Microsoft-Windows-Sysmon/Operational"}
        }))
        .unwrap();
        assert_eq!(event.kind, EventKind::ProcessCreate);
        assert_eq!(event.id, "E1");
        assert_eq!(event.pid, Some(4242));
        assert_eq!(event.ppid, Some(100));
        assert_eq!(event.parent_name.as_deref(), Some("WINWORD.EXE"));
        assert_eq!(event.process_hash.as_deref(), Some("abcdef"));
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
        ) {
            let mut map = serde_json::Map::new();
            map.insert("type".into(), json!(kind));
            map.insert("timestamp".into(), json!(1_762_180_205));
            if let Some(pid) = pid { map.insert("pid".into(), json!(pid)); }
            if let Some(name) = name { map.insert("name".into(), json!(name)); }
            if let Some(port) = port { map.insert("remote_port".into(), json!(port.to_string())); }
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
