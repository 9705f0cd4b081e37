//! STIX 2.1 bundles. Each indicator's pattern is parsed (see `stix_pattern.rs`) and becomes the
//! indicators it stands for exactly (`=`, `IN`, `OR`, `ISSUBSET` ranges, hashes of one file
//! joined by `AND`, exact `LIKE`/`MATCHES`); every other pattern is counted as skipped, per
//! reason. STIX domain indicators are exact (no subdomains), as the standard defines equality,
//! unless the pattern itself names the subdomains.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::json::{Doc, JsonPath};
use super::stix_pattern::{Scope, indicators};
use super::{At, ImportError, ImportOptions, Imported};

/// Every field this importer reads is type-checked, in every object, before anything is taken
/// from the file: a wrong type anywhere fails the whole file.
pub(super) fn import(
    path: &Path,
    text: &str,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    let doc = Doc::new(path, text);
    let bundle = doc.parse()?;
    let root = JsonPath::default();
    let top = doc.object(&bundle, &root)?;
    let objects: Vec<(JsonPath, &Value)> = match doc.str(top, &root, "type")? {
        Some("bundle") => doc
            .array(top, &root, "objects")?
            .iter()
            .enumerate()
            .map(|(n, o)| (root.key("objects").index(n), o))
            .collect(),
        Some(_) => vec![(root.clone(), &bundle)],
        None => {
            return Err(ImportError::at(
                path,
                1,
                1,
                "not a STIX object or bundle: no `type`",
            ));
        }
    };
    let mut checked = Vec::with_capacity(objects.len());
    for (at, object) in objects {
        let map = doc.object(object, &at)?;
        let Some(kind) = doc.str(map, &at, "type")? else {
            return Err(doc.error(&at, "a STIX object needs a `type`"));
        };
        checked.push((at, kind, map));
    }
    // Malware and other named targets of `indicates` relationships name the threat.
    let mut names: HashMap<&str, &str> = HashMap::new();
    for (at, _, map) in &checked {
        if let (Some(id), Some(name)) = (doc.str(map, at, "id")?, doc.str(map, at, "name")?) {
            names.insert(id, name);
        }
    }
    let mut threat_of: HashMap<&str, &str> = HashMap::new();
    for (at, kind, map) in &checked {
        if *kind == "relationship"
            && doc.str(map, at, "relationship_type")? == Some("indicates")
            && let (Some(from), Some(to)) = (
                doc.str(map, at, "source_ref")?,
                doc.str(map, at, "target_ref")?,
            )
            && let Some(name) = names.get(to)
        {
            threat_of.insert(from, name);
        }
    }
    let mut imported = Imported::new(options.max_prefix);
    for (at, kind, map) in &checked {
        if *kind != "indicator" {
            continue;
        }
        let pattern_type = doc.str(map, at, "pattern_type")?.unwrap_or("stix");
        let pattern = doc.str(map, at, "pattern")?;
        let id = doc.str(map, at, "id")?.unwrap_or_default();
        let mut tags = doc.strings(map, at, "indicator_types")?;
        tags.extend(doc.strings(map, at, "labels")?);
        let confidence = doc.score(map, at, "confidence")?;
        let revoked = doc.bool(map, at, "revoked")?.unwrap_or(false);
        let first_seen = doc.time(map, at, "valid_from")?;
        let valid_until = doc.time(map, at, "valid_until")?;
        let own_name = doc.str(map, at, "name")?;
        if pattern_type != "stix" {
            let cut: String = pattern_type.chars().take(40).collect();
            imported.skip(
                At::Json(at.key("pattern_type")),
                format!("pattern_type `{}` is not stix", cut.escape_debug()),
            );
            continue;
        }
        let Some(pattern) = pattern else {
            imported.skip(At::Json(at.clone()), "indicator without a pattern");
            continue;
        };
        let atoms = match indicators(pattern) {
            Ok(atoms) => atoms,
            Err(refused) => {
                // Counted by the reason alone; the example names the indicator and the detail.
                let cut: String = id.chars().take(80).collect();
                imported.skip_with(
                    At::Json(at.key("pattern")),
                    refused.reason.to_string(),
                    format!(
                        "indicator `{}`: {}: {}",
                        cut.escape_debug(),
                        refused.reason,
                        refused.detail
                    ),
                );
                continue;
            }
        };
        let malicious = tags
            .iter()
            .any(|t| t == "malicious-activity" || t == "compromised");
        let threat = threat_of
            .get(id)
            .map(|t| t.to_string())
            .or_else(|| own_name.map(str::to_string));
        for atom in atoms {
            imported.add(
                || At::Json(at.key("pattern")),
                Some(atom.kind),
                &atom.value,
                &options.source,
                |i| {
                    i.confidence = confidence.unwrap_or(60);
                    i.severity = if malicious { 70 } else { 50 };
                    i.tags = tags.clone();
                    i.threat = threat.clone();
                    i.first_seen_ms = first_seen;
                    i.valid_until_ms = valid_until;
                    i.reference = Some(id.to_string());
                    i.revoked = revoked;
                    // STIX equality is exact; a domain indicator names that domain only,
                    // unless the pattern also names everything under it.
                    i.subdomains = atom.scope == Scope::WithSubdomains;
                },
            );
        }
    }
    Ok(imported)
}
