//! AlienVault OTX pulses and the AbuseIPDB blacklist.

use std::path::Path;

use serde_json::Value;

use super::{ImportError, Imported, parse_time};
use crate::intel::indicator::IndicatorKind;

/// One pulse, or a page of the subscribed-pulses API (`results`).
pub(super) fn otx(path: &Path, body: &str, source: &str) -> Result<Imported, ImportError> {
    let document: Value = serde_json::from_str(body).map_err(|e| ImportError::json(path, &e))?;
    let pulses: Vec<&Value> = match document.get("results").and_then(Value::as_array) {
        Some(results) => results.iter().collect(),
        None if document.get("indicators").is_some() => vec![&document],
        None => {
            return Err(ImportError::at(
                path,
                1,
                1,
                "not an OTX pulse: no `indicators` or `results`",
            ));
        }
    };
    let mut imported = Imported::default();
    for pulse in pulses {
        let mut pulse_tags: Vec<String> = pulse
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        let families: Vec<String> = pulse
            .get("malware_families")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|f| {
                f.as_str()
                    .or_else(|| f.get("display_name").and_then(Value::as_str))
                    .map(str::to_string)
            })
            .collect();
        pulse_tags.extend(
            pulse
                .get("attack_ids")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().or_else(|| a.get("id").and_then(Value::as_str)))
                .map(|id| format!("attack.{}", id.to_ascii_lowercase())),
        );
        let reference = pulse
            .get("id")
            .and_then(Value::as_str)
            .map(|id| format!("otx:pulse/{id}"));
        for indicator in pulse
            .get("indicators")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(kind), Some(value)) = (
                indicator.get("type").and_then(Value::as_str),
                indicator.get("indicator").and_then(Value::as_str),
            ) else {
                imported.skip("OTX indicator without type or value");
                continue;
            };
            let kind = match kind {
                "IPv4" | "IPv6" | "CIDR" => Some(IndicatorKind::Ip),
                // OTX hostnames and domains are sometimes full URLs: let the value decide.
                "domain" | "hostname" => {
                    if value.contains("://") {
                        Some(IndicatorKind::Url)
                    } else {
                        Some(IndicatorKind::Domain)
                    }
                }
                "URL" => Some(IndicatorKind::Url),
                "FileHash-MD5" => Some(IndicatorKind::Md5),
                "FileHash-SHA1" => Some(IndicatorKind::Sha1),
                "FileHash-SHA256" => Some(IndicatorKind::Sha256),
                other => {
                    imported.skip(format!("OTX indicator type `{other}` is not matched"));
                    continue;
                }
            };
            let active = indicator
                .get("is_active")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                != 0;
            imported.add(kind, value, source, |i| {
                i.confidence = 50;
                i.severity = 60;
                i.tags = pulse_tags.clone();
                i.threat = families.first().cloned();
                i.first_seen_ms = indicator
                    .get("created")
                    .and_then(Value::as_str)
                    .and_then(parse_time);
                i.valid_until_ms = indicator
                    .get("expiration")
                    .and_then(Value::as_str)
                    .and_then(parse_time);
                i.reference = reference.clone();
                i.revoked = !active;
            });
        }
    }
    Ok(imported)
}

pub(super) fn abuseipdb(path: &Path, body: &str, source: &str) -> Result<Imported, ImportError> {
    let document: Value = serde_json::from_str(body).map_err(|e| ImportError::json(path, &e))?;
    if let Some(errors) = document.get("errors") {
        return Err(ImportError::at(
            path,
            1,
            1,
            format!("the file is an AbuseIPDB error response: {errors}"),
        ));
    }
    let Some(entries) = document.get("data").and_then(Value::as_array) else {
        return Err(ImportError::at(
            path,
            1,
            1,
            "not an AbuseIPDB blacklist: no `data` array",
        ));
    };
    let mut imported = Imported::default();
    for entry in entries {
        let Some(ip) = entry.get("ipAddress").and_then(Value::as_str) else {
            imported.skip("AbuseIPDB entry without ipAddress");
            continue;
        };
        imported.add(Some(IndicatorKind::Ip), ip, source, |i| {
            i.confidence = entry
                .get("abuseConfidenceScore")
                .and_then(Value::as_u64)
                .unwrap_or(50)
                .min(100) as u8;
            // Crowd-reported scanners and brute-forcers: context, not a C2 verdict.
            i.severity = 40;
            i.tags = vec!["abuse-reported".into()];
            i.last_seen_ms = entry
                .get("lastReportedAt")
                .and_then(Value::as_str)
                .and_then(parse_time);
        });
    }
    Ok(imported)
}
