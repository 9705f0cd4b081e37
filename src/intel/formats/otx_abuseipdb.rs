//! AlienVault OTX pulses and the AbuseIPDB blacklist.

use std::path::Path;

use serde_json::Value;

use super::json::{Doc, JsonPath};
use super::{At, ImportError, ImportOptions, Imported};
use crate::intel::indicator::IndicatorKind;

/// One pulse, or a page of the subscribed-pulses API (`results`). Every field read is
/// type-checked first: a wrong type fails the whole file.
pub(super) fn otx(
    path: &Path,
    body: &str,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    let doc = Doc::new(path, body);
    let document = doc.parse()?;
    let root = JsonPath::default();
    let top = doc.object(&document, &root).map_err(|_| {
        ImportError::at(path, 1, 1, "not an OTX pulse: no `indicators` or `results`")
    })?;
    let pulses: Vec<(JsonPath, &Value)> = if top.contains_key("results") {
        doc.array(top, &root, "results")?
            .iter()
            .enumerate()
            .map(|(n, p)| (root.key("results").index(n), p))
            .collect()
    } else if top.contains_key("indicators") {
        vec![(root, &document)]
    } else {
        return Err(ImportError::at(
            path,
            1,
            1,
            "not an OTX pulse: no `indicators` or `results`",
        ));
    };
    let mut imported = Imported::new(options.max_prefix);
    for (at, pulse) in pulses {
        let pulse = doc.object(pulse, &at)?;
        let mut pulse_tags = doc.strings(pulse, &at, "tags")?;
        let mut families = Vec::new();
        for (n, family) in doc
            .array(pulse, &at, "malware_families")?
            .iter()
            .enumerate()
        {
            let place = at.key("malware_families").index(n);
            match family {
                Value::String(name) => families.push(name.clone()),
                other => {
                    let family = doc.object(other, &place)?;
                    families.extend(doc.str(family, &place, "display_name")?.map(str::to_string));
                }
            }
        }
        for (n, attack) in doc.array(pulse, &at, "attack_ids")?.iter().enumerate() {
            let place = at.key("attack_ids").index(n);
            let id = match attack {
                Value::String(id) => Some(id.as_str()),
                other => doc.str(doc.object(other, &place)?, &place, "id")?,
            };
            pulse_tags.extend(id.map(|id| format!("attack.{}", id.to_ascii_lowercase())));
        }
        let reference = doc
            .str(pulse, &at, "id")?
            .map(|id| format!("otx:pulse/{id}"));
        for (n, indicator) in doc.array(pulse, &at, "indicators")?.iter().enumerate() {
            let place = at.key("indicators").index(n);
            let indicator = doc.object(indicator, &place)?;
            let kind = doc.str(indicator, &place, "type")?;
            let value = doc.str(indicator, &place, "indicator")?;
            let active = doc.flag(indicator, &place, "is_active")?.unwrap_or(true);
            let created = doc.time(indicator, &place, "created")?;
            let expiration = doc.time(indicator, &place, "expiration")?;
            let (Some(kind), Some(value)) = (kind, value) else {
                imported.skip(At::Json(place), "OTX indicator without type or value");
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
                    let cut: String = other.chars().take(40).collect();
                    imported.skip(
                        At::Json(place.key("type")),
                        format!("OTX indicator type `{}` is not matched", cut.escape_debug()),
                    );
                    continue;
                }
            };
            imported.add(
                || At::Json(place.key("indicator")),
                kind,
                value,
                &options.source,
                |i| {
                    i.confidence = 50;
                    i.severity = 60;
                    i.tags = pulse_tags.clone();
                    i.threat = families.first().cloned();
                    i.first_seen_ms = created;
                    i.valid_until_ms = expiration;
                    i.reference = reference.clone();
                    i.revoked = !active;
                },
            );
        }
    }
    Ok(imported)
}

pub(super) fn abuseipdb(
    path: &Path,
    body: &str,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    let doc = Doc::new(path, body);
    let document = doc.parse()?;
    let root = JsonPath::default();
    if let Some(errors) = document.get("errors") {
        let cut: String = errors.to_string().chars().take(200).collect();
        return Err(ImportError::at(
            path,
            1,
            1,
            format!(
                "the file is an AbuseIPDB error response: {}",
                cut.escape_debug()
            ),
        ));
    }
    let top = match document.as_object() {
        Some(top) if top.contains_key("data") => top,
        _ => {
            return Err(ImportError::at(
                path,
                1,
                1,
                "not an AbuseIPDB blacklist: no `data` array",
            ));
        }
    };
    let mut imported = Imported::new(options.max_prefix);
    for (n, entry) in doc.array(top, &root, "data")?.iter().enumerate() {
        let place = root.key("data").index(n);
        let entry = doc.object(entry, &place)?;
        let ip = doc.str(entry, &place, "ipAddress")?;
        let confidence = doc.score(entry, &place, "abuseConfidenceScore")?;
        let last_seen = doc.time(entry, &place, "lastReportedAt")?;
        let Some(ip) = ip else {
            imported.skip(At::Json(place), "AbuseIPDB entry without ipAddress");
            continue;
        };
        imported.add(
            || At::Json(place.key("ipAddress")),
            Some(IndicatorKind::Ip),
            ip,
            &options.source,
            |i| {
                i.confidence = confidence.unwrap_or(50);
                // Crowd-reported scanners and brute-forcers: context, not a C2 verdict.
                i.severity = 40;
                i.tags = vec!["abuse-reported".into()];
                i.last_seen_ms = last_seen;
            },
        );
    }
    Ok(imported)
}
