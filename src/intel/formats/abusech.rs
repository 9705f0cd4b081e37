//! abuse.ch feeds: Feodo Tracker (botnet C2 addresses), URLhaus (malware URLs) and ThreatFox
//! (IoCs of many kinds), each as CSV (columns mapped by the header, which may be a `#`
//! comment) or JSON.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::json::{Doc, JsonPath, describe};
use super::{At, ImportError, ImportOptions, Imported, csv_rows, is_json, parse_time_field};
use crate::intel::indicator::IndicatorKind;

/// A record's fields as text, whether it came from CSV or JSON.
type Record = BTreeMap<String, String>;

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn json_records(doc: Doc<'_>) -> Result<Vec<(At, Record)>, ImportError> {
    let document = doc.parse()?;
    let root = JsonPath::default();
    // (place, value) of every record.
    let mut found: Vec<(JsonPath, &Value)> = Vec::new();
    match &document {
        Value::Array(items) => {
            found.extend(items.iter().enumerate().map(|(n, v)| (root.index(n), v)));
        }
        // The API's `{"query_status": "ok", "data": [...]}` or `{"urls": [...]}`.
        Value::Object(map) if map.contains_key("data") || map.contains_key("urls") => {
            if map.get("query_status").and_then(Value::as_str) == Some("no_result") {
                return Ok(Vec::new());
            }
            let key = if map.contains_key("data") {
                "data"
            } else {
                "urls"
            };
            for (n, item) in doc.array(map, &root, key)?.iter().enumerate() {
                found.push((root.key(key).index(n), item));
            }
        }
        // Dumps keyed by id, each holding a list of one record.
        Value::Object(map) => {
            for (id, value) in map {
                let Value::Array(items) = value else {
                    return Err(doc.error(
                        &root.key(id),
                        format!("must be a list of records, not {}", describe(value)),
                    ));
                };
                found.extend(
                    items
                        .iter()
                        .enumerate()
                        .map(|(n, v)| (root.key(id).index(n), v)),
                );
            }
        }
        _ => {
            return Err(ImportError::at(
                doc.file,
                1,
                1,
                "expected a JSON array or object of records",
            ));
        }
    }
    found
        .into_iter()
        .map(|(at, value)| {
            let object = doc.object(value, &at)?;
            let record = object.iter().map(|(k, v)| (k.clone(), text(v))).collect();
            Ok((At::Json(at), record))
        })
        .collect()
}

fn field<'a>(record: &'a Record, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| record.get(*n))
        .map(String::as_str)
        .filter(|v| !v.is_empty() && *v != "None" && *v != "null")
}

fn tags(record: &Record) -> Vec<String> {
    field(record, &["tags"])
        .map(|t| {
            t.split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty() && t != "None")
                .collect()
        })
        .unwrap_or_default()
}

/// A record's field that is wrong, reported at its row (CSV) or its place (JSON).
fn wrong(doc: Doc<'_>, at: &At, name: &str, message: impl std::fmt::Display) -> ImportError {
    match at {
        At::Line(line) => ImportError::at(doc.file, *line, 1, format!("`{name}`: {message}")),
        At::Json(path) => doc.error(&path.key(name), message),
    }
}

/// The first of `names` present in the record, as a time; one that does not parse is an error.
fn time(
    doc: Doc<'_>,
    at: &At,
    record: &Record,
    names: &[&str],
) -> Result<Option<i64>, ImportError> {
    for name in names {
        if let Some(value) = record.get(*name) {
            return parse_time_field(value).map_err(|message| wrong(doc, at, name, message));
        }
    }
    Ok(None)
}

fn records(doc: Doc<'_>, header: &str) -> Result<Vec<(At, Record)>, ImportError> {
    if is_json(doc.text) {
        json_records(doc)
    } else {
        Ok(csv_rows(doc.file, doc.text, header)?
            .into_iter()
            .map(|(line, record)| (At::Line(line), record))
            .collect())
    }
}

pub(super) fn feodo(
    path: &Path,
    body: &str,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    let doc = Doc::new(path, body);
    let mut imported = Imported::new(options.max_prefix);
    for (at, record) in records(doc, "first_seen_utc")? {
        let Some(ip) = field(&record, &["dst_ip", "ip_address"]) else {
            imported.skip(at, "Feodo record without an address");
            continue;
        };
        let online = field(&record, &["c2_status", "status"]) == Some("online");
        let first_seen = time(doc, &at, &record, &["first_seen_utc", "first_seen"])?;
        let last_seen = time(doc, &at, &record, &["last_online"])?;
        imported.add(
            || at.clone(),
            Some(IndicatorKind::Ip),
            ip,
            &options.source,
            |i| {
                i.confidence = if online { 90 } else { 60 };
                i.severity = 80;
                i.threat = field(&record, &["malware"]).map(str::to_string);
                i.tags = vec!["botnet_cc".into()];
                i.first_seen_ms = first_seen;
                i.last_seen_ms = last_seen;
            },
        );
    }
    Ok(imported)
}

pub(super) fn urlhaus(
    path: &Path,
    body: &str,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    let doc = Doc::new(path, body);
    let mut imported = Imported::new(options.max_prefix);
    for (at, record) in records(doc, "id")? {
        let Some(url) = field(&record, &["url"]) else {
            imported.skip(at, "URLhaus record without a URL");
            continue;
        };
        let online = field(&record, &["url_status"]) == Some("online");
        let first_seen = time(doc, &at, &record, &["dateadded", "date_added"])?;
        let last_seen = time(doc, &at, &record, &["last_online"])?;
        imported.add(
            || at.clone(),
            Some(IndicatorKind::Url),
            url,
            &options.source,
            |i| {
                i.confidence = if online { 80 } else { 50 };
                i.severity = 70;
                i.threat = field(&record, &["threat"]).map(str::to_string);
                i.tags = tags(&record);
                i.first_seen_ms = first_seen;
                i.last_seen_ms = last_seen;
                i.reference =
                    field(&record, &["urlhaus_link", "urlhaus_reference"]).map(str::to_string);
            },
        );
    }
    Ok(imported)
}

pub(super) fn threatfox(
    path: &Path,
    body: &str,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    let doc = Doc::new(path, body);
    let mut imported = Imported::new(options.max_prefix);
    for (at, record) in records(doc, "first_seen_utc")? {
        let (Some(value), Some(kind)) = (
            field(&record, &["ioc_value", "ioc"]),
            field(&record, &["ioc_type"]),
        ) else {
            imported.skip(at, "ThreatFox record without ioc value or type");
            continue;
        };
        let (kind, value) = match kind {
            // `ip:port`, IPv6 unbracketed: the port follows the last colon.
            "ip:port" => (
                IndicatorKind::Ip,
                value
                    .rsplit_once(':')
                    .map_or(value, |(ip, _)| ip)
                    .trim_start_matches('[')
                    .trim_end_matches(']'),
            ),
            "domain" => (IndicatorKind::Domain, value),
            "url" => (IndicatorKind::Url, value),
            "md5_hash" => (IndicatorKind::Md5, value),
            "sha1_hash" => (IndicatorKind::Sha1, value),
            "sha256_hash" => (IndicatorKind::Sha256, value),
            other => {
                let cut: String = other.chars().take(40).collect();
                imported.skip(
                    at,
                    format!("ThreatFox ioc_type `{}` is not matched", cut.escape_debug()),
                );
                continue;
            }
        };
        let confidence = match field(&record, &["confidence_level"]) {
            None => 50,
            Some(text) => text
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|c| *c <= 100)
                .ok_or_else(|| {
                    wrong(
                        doc,
                        &at,
                        "confidence_level",
                        format!(
                            "must be a whole number from 0 to 100, not `{}`",
                            text.escape_debug()
                        ),
                    )
                })?,
        };
        let first_seen = time(doc, &at, &record, &["first_seen_utc", "first_seen"])?;
        let last_seen = time(doc, &at, &record, &["last_seen_utc", "last_seen"])?;
        let threat_type = field(&record, &["threat_type"])
            .unwrap_or_default()
            .to_string();
        imported.add(
            || at.clone(),
            Some(kind),
            value,
            &options.source,
            |i| {
                i.confidence = confidence;
                i.severity = match threat_type.as_str() {
                    "botnet_cc" => 80,
                    "payload_delivery" => 70,
                    _ => 60,
                };
                i.threat = field(&record, &["malware_printable", "malware"]).map(str::to_string);
                let mut t = tags(&record);
                if !threat_type.is_empty() {
                    t.push(threat_type.clone());
                }
                i.tags = t;
                i.first_seen_ms = first_seen;
                i.last_seen_ms = last_seen;
                i.reference = field(&record, &["reference"]).map(str::to_string);
            },
        );
    }
    Ok(imported)
}
