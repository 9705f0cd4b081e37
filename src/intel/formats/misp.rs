//! MISP events (as exported, or wrapped in `{"Event": ...}` as feeds serve them) and MISP feed
//! directories (`manifest.json` plus one event file per entry). Only attributes marked `to_ids`
//! become indicators; deleted ones are revoked.

use std::path::Path;

use serde_json::Value;

use super::{ImportError, Imported, parse_time};
use crate::intel::indicator::IndicatorKind;

pub(super) fn import_event_file(
    path: &Path,
    text: &str,
    source: &str,
) -> Result<Imported, ImportError> {
    let document: Value = serde_json::from_str(text).map_err(|e| ImportError::json(path, &e))?;
    let mut imported = Imported::default();
    event(path, &document, source, &mut imported)?;
    Ok(imported)
}

/// A feed directory: every event the manifest lists must be present and valid, or nothing is
/// imported.
pub(super) fn import_feed(dir: &Path, source: &str) -> Result<Imported, ImportError> {
    let manifest_path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
        ImportError::at(
            &manifest_path,
            1,
            1,
            format!("cannot read the feed manifest: {e}"),
        )
    })?;
    let manifest: Value =
        serde_json::from_str(&text).map_err(|e| ImportError::json(&manifest_path, &e))?;
    let Some(entries) = manifest.as_object() else {
        return Err(ImportError::at(
            &manifest_path,
            1,
            1,
            "the manifest must be an object keyed by event uuid",
        ));
    };
    let mut imported = Imported::default();
    for uuid in entries.keys() {
        if !uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(ImportError::at(
                &manifest_path,
                1,
                1,
                format!("`{uuid}` is not an event uuid"),
            ));
        }
        let event_path = dir.join(format!("{uuid}.json"));
        let text = std::fs::read_to_string(&event_path).map_err(|e| {
            ImportError::at(
                &event_path,
                1,
                1,
                format!("the manifest lists this event, but it cannot be read: {e}"),
            )
        })?;
        let document: Value =
            serde_json::from_str(&text).map_err(|e| ImportError::json(&event_path, &e))?;
        event(&event_path, &document, source, &mut imported)?;
    }
    Ok(imported)
}

fn truthy(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "1" || s.eq_ignore_ascii_case("true"),
        Some(Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    }
}

fn tag_names(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn event(
    path: &Path,
    document: &Value,
    source: &str,
    imported: &mut Imported,
) -> Result<(), ImportError> {
    let event = document.get("Event").unwrap_or(document);
    if event.get("Attribute").is_none()
        && event.get("Object").is_none()
        && event.get("info").is_none()
    {
        return Err(ImportError::at(
            path,
            1,
            1,
            "not a MISP event: no `Event`, `Attribute` or `info`",
        ));
    }
    let uuid = event
        .get("uuid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let info = event
        .get("info")
        .and_then(Value::as_str)
        .map(str::to_string);
    let event_tags = tag_names(event.get("Tag"));
    // threat_level_id: 1 high, 2 medium, 3 low, 4 undefined.
    let severity = match event
        .get("threat_level_id")
        .and_then(|v| {
            v.as_str()
                .map(str::to_string)
                .or_else(|| v.as_u64().map(|n| n.to_string()))
        })
        .as_deref()
    {
        Some("1") => 90,
        Some("2") => 60,
        Some("3") => 30,
        _ => 50,
    };
    let mut attributes: Vec<&Value> = event
        .get("Attribute")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    for object in event
        .get("Object")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        attributes.extend(
            object
                .get("Attribute")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    }
    for attribute in attributes {
        if !truthy(attribute.get("to_ids")) {
            imported.skip("MISP attribute not marked to_ids");
            continue;
        }
        let (Some(kind_name), Some(value)) = (
            attribute.get("type").and_then(Value::as_str),
            attribute.get("value").and_then(Value::as_str),
        ) else {
            imported.skip("MISP attribute without type or value");
            continue;
        };
        let values = attribute_values(kind_name, value);
        if values.is_empty() {
            imported.skip(format!("MISP attribute type `{kind_name}` is not matched"));
            continue;
        }
        let mut tags = event_tags.clone();
        tags.extend(tag_names(attribute.get("Tag")));
        let revoked = truthy(attribute.get("deleted"));
        let first_seen = attribute
            .get("first_seen")
            .and_then(Value::as_str)
            .and_then(parse_time)
            .or_else(|| {
                attribute
                    .get("timestamp")
                    .and_then(Value::as_str)
                    .and_then(parse_time)
            });
        let last_seen = attribute
            .get("last_seen")
            .and_then(Value::as_str)
            .and_then(parse_time);
        for (kind, value) in values {
            imported.add(Some(kind), value, source, |i| {
                i.confidence = 70;
                i.severity = severity;
                i.tags = tags.clone();
                i.threat = info.clone();
                i.first_seen_ms = first_seen;
                i.last_seen_ms = last_seen;
                i.reference = Some(format!("misp:event/{uuid}"));
                i.revoked = revoked;
            });
        }
    }
    Ok(())
}

/// The matchable parts of a MISP attribute, splitting composite types (`filename|sha256`,
/// `ip-dst|port`, `domain|ip`).
fn attribute_values<'a>(kind: &str, value: &'a str) -> Vec<(IndicatorKind, &'a str)> {
    let mut parts = value.split('|');
    let first = parts.next().unwrap_or_default();
    let second = parts.next();
    match kind {
        "ip-src" | "ip-dst" | "ip-src|port" | "ip-dst|port" => vec![(IndicatorKind::Ip, first)],
        "domain" | "hostname" | "hostname|port" => vec![(IndicatorKind::Domain, first)],
        "domain|ip" => {
            let mut out = vec![(IndicatorKind::Domain, first)];
            out.extend(second.map(|ip| (IndicatorKind::Ip, ip)));
            out
        }
        "url" | "uri" => vec![(IndicatorKind::Url, value)],
        "md5" => vec![(IndicatorKind::Md5, first)],
        "sha1" => vec![(IndicatorKind::Sha1, first)],
        "sha256" => vec![(IndicatorKind::Sha256, first)],
        "filename|md5" => second
            .map(|h| vec![(IndicatorKind::Md5, h)])
            .unwrap_or_default(),
        "filename|sha1" => second
            .map(|h| vec![(IndicatorKind::Sha1, h)])
            .unwrap_or_default(),
        "filename|sha256" => second
            .map(|h| vec![(IndicatorKind::Sha256, h)])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}
