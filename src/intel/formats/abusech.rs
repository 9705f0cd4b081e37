//! abuse.ch feeds: Feodo Tracker (botnet C2 addresses), URLhaus (malware URLs) and ThreatFox
//! (IoCs of many kinds), each as CSV (columns mapped by the header, which may be a `#`
//! comment) or JSON.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::{ImportError, Imported, csv_rows, is_json, parse_time};
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

fn json_records(path: &Path, body: &str) -> Result<Vec<Record>, ImportError> {
    let document: Value = serde_json::from_str(body).map_err(|e| ImportError::json(path, &e))?;
    let objects: Vec<&Value> = match &document {
        Value::Array(items) => items.iter().collect(),
        // The API's `{"query_status": "ok", "data": [...]}` or `{"urls": [...]}`.
        Value::Object(map) if map.contains_key("data") || map.contains_key("urls") => map
            .get("data")
            .or_else(|| map.get("urls"))
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        // Dumps keyed by id, each holding a list of one record.
        Value::Object(map) => map.values().filter_map(Value::as_array).flatten().collect(),
        _ => {
            return Err(ImportError::at(
                path,
                1,
                1,
                "expected a JSON array or object of records",
            ));
        }
    };
    Ok(objects
        .into_iter()
        .filter_map(Value::as_object)
        .map(|o| o.iter().map(|(k, v)| (k.clone(), text(v))).collect())
        .collect())
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

fn records(path: &Path, body: &str, header: &str) -> Result<Vec<Record>, ImportError> {
    if is_json(body) {
        json_records(path, body)
    } else {
        Ok(csv_rows(path, body, header)?
            .into_iter()
            .map(|(_, record)| record)
            .collect())
    }
}

pub(super) fn feodo(path: &Path, body: &str, source: &str) -> Result<Imported, ImportError> {
    let mut imported = Imported::default();
    for record in records(path, body, "first_seen_utc")? {
        let Some(ip) = field(&record, &["dst_ip", "ip_address"]) else {
            imported.skip("Feodo record without an address");
            continue;
        };
        let online = field(&record, &["c2_status", "status"]) == Some("online");
        imported.add(Some(IndicatorKind::Ip), ip, source, |i| {
            i.confidence = if online { 90 } else { 60 };
            i.severity = 80;
            i.threat = field(&record, &["malware"]).map(str::to_string);
            i.tags = vec!["botnet_cc".into()];
            i.first_seen_ms =
                field(&record, &["first_seen_utc", "first_seen"]).and_then(parse_time);
            i.last_seen_ms = field(&record, &["last_online"]).and_then(parse_time);
        });
    }
    Ok(imported)
}

pub(super) fn urlhaus(path: &Path, body: &str, source: &str) -> Result<Imported, ImportError> {
    let mut imported = Imported::default();
    for record in records(path, body, "id")? {
        let Some(url) = field(&record, &["url"]) else {
            imported.skip("URLhaus record without a URL");
            continue;
        };
        let online = field(&record, &["url_status"]) == Some("online");
        imported.add(Some(IndicatorKind::Url), url, source, |i| {
            i.confidence = if online { 80 } else { 50 };
            i.severity = 70;
            i.threat = field(&record, &["threat"]).map(str::to_string);
            i.tags = tags(&record);
            i.first_seen_ms = field(&record, &["dateadded", "date_added"]).and_then(parse_time);
            i.last_seen_ms = field(&record, &["last_online"]).and_then(parse_time);
            i.reference =
                field(&record, &["urlhaus_link", "urlhaus_reference"]).map(str::to_string);
        });
    }
    Ok(imported)
}

pub(super) fn threatfox(path: &Path, body: &str, source: &str) -> Result<Imported, ImportError> {
    let mut imported = Imported::default();
    for record in records(path, body, "first_seen_utc")? {
        let (Some(value), Some(kind)) = (
            field(&record, &["ioc_value", "ioc"]),
            field(&record, &["ioc_type"]),
        ) else {
            imported.skip("ThreatFox record without ioc value or type");
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
                imported.skip(format!("ThreatFox ioc_type `{other}` is not matched"));
                continue;
            }
        };
        let threat_type = field(&record, &["threat_type"])
            .unwrap_or_default()
            .to_string();
        imported.add(Some(kind), value, source, |i| {
            i.confidence = field(&record, &["confidence_level"])
                .and_then(|c| c.parse::<u8>().ok())
                .unwrap_or(50)
                .min(100);
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
            i.first_seen_ms =
                field(&record, &["first_seen_utc", "first_seen"]).and_then(parse_time);
            i.last_seen_ms = field(&record, &["last_seen_utc", "last_seen"]).and_then(parse_time);
            i.reference = field(&record, &["reference"]).map(str::to_string);
        });
    }
    Ok(imported)
}
