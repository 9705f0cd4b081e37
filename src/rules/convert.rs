//! Crossing the Rhai boundary: an [`Event`] becomes the `event` map a rule sees, and what
//! `detect(event)` returns becomes a [`Detection`].

use std::net::IpAddr;

use rhai::{Dynamic, Map};

use crate::detection::{Detection, Entity, Severity, Stage};
use crate::intel::IntelHit;

/// Intel hits as the array of maps rules see (`hit.source`, `hit.score`, `hit.warning`, ...).
pub fn hits_to_dynamic(hits: &[IntelHit]) -> Dynamic {
    Dynamic::from_array(
        hits.iter()
            .filter_map(|h| rhai::serde::to_dynamic(h).ok())
            .collect(),
    )
}
use crate::event::Event;

use super::RuleDefinition;

/// Whether `name` is a key [`event_to_dynamic`] fills from the event model (a typed field or
/// `intel`), as opposed to one that can only come from the event's unknown fields.
pub fn is_event_map_key(name: &str) -> bool {
    name == "intel" || crate::event::Field::parse(name).is_some()
}

/// The `event` object map a rule sees: every typed field that is present, under its flat name,
/// plus every unknown field as it arrived (nested objects stay nested). Absent fields read as
/// `()`, so rules write `event.cmdline ?? ""`.
pub fn event_to_dynamic(event: &Event, intel: &[IntelHit]) -> Dynamic {
    let mut map = Map::new();
    // Unknown fields first, so a typed field of the same name wins.
    for (key, value) in &event.extra {
        if let Ok(value) = rhai::serde::to_dynamic(value) {
            map.insert(key.as_str().into(), value);
        }
    }
    let mut put = |key: &str, value: Dynamic| {
        map.insert(key.into(), value);
    };
    put("id", event.id.clone().into());
    put("type", event.kind.as_str().into());
    put("timestamp", Dynamic::from_int(event.timestamp_ms));
    let text = |value: &Option<String>| value.clone().map(Dynamic::from);
    let number = |value: Option<u32>| value.map(|n| Dynamic::from_int(i64::from(n)));
    let address = |value: Option<IpAddr>| value.map(|ip| Dynamic::from(ip.to_string()));
    let fields = [
        ("host", text(&event.host)),
        ("pid", number(event.pid)),
        ("ppid", number(event.ppid)),
        ("name", text(&event.name)),
        ("parent_name", text(&event.parent_name)),
        ("cmdline", text(&event.cmdline)),
        ("process_hash", text(&event.process_hash)),
        ("image", text(&event.image)),
        ("user", text(&event.user)),
        ("parent_image", text(&event.parent_image)),
        ("parent_cmdline", text(&event.parent_cmdline)),
        ("parent_user", text(&event.parent_user)),
        ("original_file_name", text(&event.original_file_name)),
        ("integrity_level", text(&event.integrity_level)),
        ("current_directory", text(&event.current_directory)),
        ("logon_id", text(&event.logon_id)),
        (
            "hashes",
            event
                .hash_list()
                .map(|list| Dynamic::from(list.into_owned())),
        ),
        ("md5", text(&event.md5)),
        ("sha1", text(&event.sha1)),
        ("sha256", text(&event.sha256)),
        ("imphash", text(&event.imphash)),
        ("company", text(&event.company)),
        ("product", text(&event.product)),
        ("file_description", text(&event.file_description)),
        ("file_version", text(&event.file_version)),
        ("remote_ip", address(event.remote_ip)),
        ("remote_port", number(event.remote_port.map(u32::from))),
        ("local_port", number(event.local_port.map(u32::from))),
        ("protocol", text(&event.protocol)),
        ("direction", text(&event.direction)),
        ("initiated", event.initiated().map(Dynamic::from_bool)),
        ("remote_hostname", text(&event.remote_hostname)),
        ("local_ip", address(event.local_ip)),
        ("local_hostname", text(&event.local_hostname)),
        ("query_name", text(&event.query_name)),
        ("query_results", text(&event.query_results)),
        ("query_status", text(&event.query_status)),
        ("source_ip", address(event.source_ip)),
        ("outcome", text(&event.outcome)),
        ("method", text(&event.method)),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            put(key, value);
        }
    }
    put("intel", hits_to_dynamic(intel));
    Dynamic::from_map(map)
}

/// Interprets `detect`'s return value: `()` or `false` is no detection, `true` is a detection
/// with the rule's own title and severity, and a map may override `title`, `severity`, `score`
/// and name the `entity` to act on.
pub fn detection_from(
    result: Dynamic,
    rule: &RuleDefinition,
    event: &Event,
) -> Result<Option<Detection>, String> {
    let mut detection = Detection {
        event_id: event.id.clone(),
        rule: rule.id.clone(),
        stage: Stage::Rule,
        severity: rule.severity,
        status: rule.status,
        title: rule.title.clone(),
        tags: rule.tags.clone(),
        entity: None,
        score: None,
        intel: Vec::new(),
        attribution: rule.attribution.clone(),
    };
    if result.is_unit() {
        return Ok(None);
    }
    if let Ok(fired) = result.as_bool() {
        return Ok(fired.then_some(detection));
    }
    let Some(map) = result.try_cast::<Map>() else {
        return Err("`detect` must return `()`, a boolean or an object map".into());
    };
    for (key, value) in map {
        match key.as_str() {
            "title" => {
                detection.title = value
                    .into_string()
                    .map_err(|t| wrong("title", "a string", t))?
            }
            "severity" => {
                let name = value
                    .into_string()
                    .map_err(|t| wrong("severity", "a string", t))?;
                detection.severity = Severity::parse(&name).ok_or_else(|| {
                    format!(
                        "unknown severity `{name}` returned by `detect`{}; use one of {}",
                        crate::diagnostics::did_you_mean(&name, Severity::NAMES.split(", ")),
                        Severity::NAMES
                    )
                })?;
            }
            "score" => {
                let score = value
                    .as_float()
                    .or_else(|_| value.as_int().map(|n| n as f64))
                    .map_err(|t| wrong("score", "a number", t))?;
                if !(0.0..=1.0).contains(&score) {
                    return Err(format!("`score` must lie in [0, 1], got {score}"));
                }
                detection.score = Some(score);
            }
            "entity" => detection.entity = Some(entity_from(value, event)?),
            "intel" => {
                detection.intel = rhai::serde::from_dynamic(&value)
                    .map_err(|e| format!("`intel` returned by `detect` must be hits from `event.intel` or `intel_lookup`: {e}"))?;
            }
            other => {
                const KEYS: [&str; 5] = ["title", "severity", "score", "entity", "intel"];
                return Err(format!(
                    "unknown key `{other}` in the map returned by `detect`{}; keys: {}",
                    crate::diagnostics::did_you_mean(other, KEYS),
                    KEYS.join(", ")
                ));
            }
        }
    }
    Ok(Some(detection))
}

fn wrong(key: &str, expected: &str, got: &str) -> String {
    format!("`{key}` returned by `detect` must be {expected}, got {got}")
}

/// `entity: "process"` (or `"address"`, `"user"`) takes the entity from the event;
/// `entity: #{ process: 4242 }`, `#{ address: "1.2.3.4" }`, `#{ user: "bob" }` names it.
fn entity_from(value: Dynamic, event: &Event) -> Result<Entity, String> {
    if let Ok(kind) = value.clone().into_string() {
        return match kind.as_str() {
            "process" => event
                .pid
                .map(|pid| Entity::Process {
                    pid,
                    name: event.name.clone(),
                })
                .ok_or_else(|| "entity `process` named, but the event has no `pid`".to_string()),
            "address" => event
                .remote_ip
                .or(event.source_ip)
                .map(|ip| Entity::Address { ip })
                .ok_or_else(|| {
                    "entity `address` named, but the event has no `remote_ip` or `source_ip`"
                        .to_string()
                }),
            "user" => event
                .user
                .clone()
                .map(|name| Entity::User { name })
                .ok_or_else(|| "entity `user` named, but the event has no `user`".to_string()),
            other => Err(unknown_entity(other)),
        };
    }
    let Some(map) = value.try_cast::<Map>() else {
        return Err("`entity` must be a string or an object map".into());
    };
    let mut entries = map.into_iter();
    let (Some((kind, value)), None) = (entries.next(), entries.next()) else {
        return Err("`entity` map must have exactly one key: process, address or user".into());
    };
    match kind.as_str() {
        "process" => {
            let pid = value
                .as_int()
                .ok()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or("`entity.process` must be a PID")?;
            let name = (event.pid == Some(pid))
                .then(|| event.name.clone())
                .flatten();
            Ok(Entity::Process { pid, name })
        }
        "address" => {
            let text = value
                .into_string()
                .map_err(|t| wrong("entity.address", "a string", t))?;
            let ip = text
                .parse::<IpAddr>()
                .map_err(|_| format!("`entity.address` `{text}` is not an IP address"))?;
            Ok(Entity::Address {
                ip: crate::event::canonical_ip(ip),
            })
        }
        "user" => Ok(Entity::User {
            name: value
                .into_string()
                .map_err(|t| wrong("entity.user", "a string", t))?,
        }),
        other => Err(unknown_entity(other)),
    }
}

fn unknown_entity(name: &str) -> String {
    const KINDS: [&str; 3] = ["process", "address", "user"];
    format!(
        "unknown entity `{name}`{}; use process, address or user",
        crate::diagnostics::did_you_mean(name, KINDS)
    )
}
