//! MISP events (as exported, or wrapped in `{"Event": ...}` as feeds serve them) and MISP feed
//! directories (`manifest.json` plus one event file per entry). Only attributes marked `to_ids`
//! become indicators; deleted ones are revoked.

use std::path::Path;

use serde_json::Value;

use super::json::{Doc, JsonPath};
use super::{At, ImportError, ImportOptions, Imported};
use crate::intel::indicator::IndicatorKind;

pub(super) fn import_event_file(
    path: &Path,
    text: &str,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    let doc = Doc::new(path, text);
    let mut imported = Imported::new(options.max_prefix);
    event(doc, &options.source, &mut imported)?;
    Ok(imported)
}

/// A feed directory: every event the manifest lists must be present and valid, or nothing is
/// imported.
pub(super) fn import_feed(dir: &Path, options: &ImportOptions) -> Result<Imported, ImportError> {
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
    let mut imported = Imported::new(options.max_prefix);
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
        event(Doc::new(&event_path, &text), &options.source, &mut imported)?;
        // Examples are located in the file they came from.
        imported.locate(&event_path, &text);
    }
    Ok(imported)
}

fn tag_names(
    doc: Doc<'_>,
    map: &serde_json::Map<String, Value>,
    at: &JsonPath,
) -> Result<Vec<String>, ImportError> {
    let mut names = Vec::new();
    for (n, tag) in doc.array(map, at, "Tag")?.iter().enumerate() {
        let place = at.key("Tag").index(n);
        let tag = doc.object(tag, &place)?;
        names.extend(doc.str(tag, &place, "name")?.map(str::to_string));
    }
    Ok(names)
}

/// One event. Every field read is type-checked first: a wrong type fails the whole file.
fn event(doc: Doc<'_>, source: &str, imported: &mut Imported) -> Result<(), ImportError> {
    let document = doc.parse()?;
    let root = JsonPath::default();
    let top = doc.object(&document, &root)?;
    let (event, at) = match top.get("Event") {
        Some(event) => (doc.object(event, &root.key("Event"))?, root.key("Event")),
        None => (top, root),
    };
    if !event.contains_key("Attribute")
        && !event.contains_key("Object")
        && !event.contains_key("info")
    {
        return Err(ImportError::at(
            doc.file,
            1,
            1,
            "not a MISP event: no `Event`, `Attribute` or `info`",
        ));
    }
    let uuid = doc.str(event, &at, "uuid")?.unwrap_or_default().to_string();
    let info = doc.str(event, &at, "info")?.map(str::to_string);
    let event_tags = tag_names(doc, event, &at)?;
    // threat_level_id: 1 high, 2 medium, 3 low, 4 undefined.
    let severity = match event.get("threat_level_id") {
        None | Some(Value::Null) => 50,
        Some(level) => match level
            .as_str()
            .map(str::to_string)
            .or_else(|| level.as_u64().map(|n| n.to_string()))
            .as_deref()
        {
            Some("1") => 90,
            Some("2") => 60,
            Some("3") => 30,
            Some("4") => 50,
            _ => {
                return Err(doc.error(
                    &at.key("threat_level_id"),
                    format!("must be 1, 2, 3 or 4, not {}", super::json::describe(level)),
                ));
            }
        },
    };
    let mut attributes: Vec<(JsonPath, &Value)> = doc
        .array(event, &at, "Attribute")?
        .iter()
        .enumerate()
        .map(|(n, a)| (at.key("Attribute").index(n), a))
        .collect();
    for (n, object) in doc.array(event, &at, "Object")?.iter().enumerate() {
        let place = at.key("Object").index(n);
        let object = doc.object(object, &place)?;
        attributes.extend(
            doc.array(object, &place, "Attribute")?
                .iter()
                .enumerate()
                .map(|(n, a)| (place.key("Attribute").index(n), a)),
        );
    }
    for (place, attribute) in attributes {
        let attribute = doc.object(attribute, &place)?;
        let to_ids = doc.flag(attribute, &place, "to_ids")?.unwrap_or(false);
        let kind_name = doc.str(attribute, &place, "type")?;
        let value = doc.str(attribute, &place, "value")?;
        let revoked = doc.flag(attribute, &place, "deleted")?.unwrap_or(false);
        let first_seen = match doc.time(attribute, &place, "first_seen")? {
            Some(time) => Some(time),
            None => doc.time(attribute, &place, "timestamp")?,
        };
        let last_seen = doc.time(attribute, &place, "last_seen")?;
        let mut tags = event_tags.clone();
        tags.extend(tag_names(doc, attribute, &place)?);
        if !to_ids {
            imported.skip(At::Json(place), "MISP attribute not marked to_ids");
            continue;
        }
        let (Some(kind_name), Some(value)) = (kind_name, value) else {
            imported.skip(At::Json(place), "MISP attribute without type or value");
            continue;
        };
        let values = attribute_values(kind_name, value);
        if values.is_empty() {
            let cut: String = kind_name.chars().take(40).collect();
            imported.skip(
                At::Json(place.key("type")),
                format!(
                    "MISP attribute type `{}` is not matched",
                    cut.escape_debug()
                ),
            );
            continue;
        }
        for (kind, value) in values {
            imported.add(
                || At::Json(place.key("value")),
                Some(kind),
                value,
                source,
                |i| {
                    i.confidence = 70;
                    i.severity = severity;
                    i.tags = tags.clone();
                    i.threat = info.clone();
                    i.first_seen_ms = first_seen;
                    i.last_seen_ms = last_seen;
                    i.reference = Some(format!("misp:event/{uuid}"));
                    i.revoked = revoked;
                },
            );
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
