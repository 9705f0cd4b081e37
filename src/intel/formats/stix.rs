//! STIX 2.1 bundles. Indicators whose pattern is one observation of equality tests joined by
//! `OR` (`[ipv4-addr:value = '1.2.3.4' OR ipv4-addr:value = '5.6.7.8']`, or `IN (...)`) become
//! one indicator per value; every other pattern is counted as skipped. STIX domain indicators
//! are exact (no subdomains), as the standard defines equality.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::json::{Doc, JsonPath};
use super::{At, ImportError, ImportOptions, Imported};
use crate::intel::indicator::IndicatorKind;

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
        let Some(atoms) = atoms(pattern) else {
            imported.skip(
                At::Json(at.key("pattern")),
                "pattern is not a simple comparison",
            );
            continue;
        };
        let malicious = tags
            .iter()
            .any(|t| t == "malicious-activity" || t == "compromised");
        let threat = threat_of
            .get(id)
            .map(|t| t.to_string())
            .or_else(|| own_name.map(str::to_string));
        for (kind, value) in atoms {
            imported.add(
                || At::Json(at.key("pattern")),
                Some(kind),
                &value,
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
                    // STIX equality is exact; a domain indicator names that domain only.
                    i.subdomains = false;
                },
            );
        }
    }
    Ok(imported)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    ParenOpen,
    ParenClose,
    Comma,
    Equals,
    Word(String),
    Literal(String),
}

fn tokens(pattern: &str) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '[' => out.push(Token::Open),
            ']' => out.push(Token::Close),
            '(' => out.push(Token::ParenOpen),
            ')' => out.push(Token::ParenClose),
            ',' => out.push(Token::Comma),
            '=' => {
                if chars.peek() == Some(&'=') {
                    chars.next();
                }
                out.push(Token::Equals);
            }
            '\'' => {
                let mut literal = String::new();
                loop {
                    match chars.next()? {
                        '\\' => literal.push(chars.next()?),
                        '\'' => break,
                        other => literal.push(other),
                    }
                }
                out.push(Token::Literal(literal));
            }
            _ => {
                // A path like `file:hashes.'SHA-256'` keeps its quoted part.
                let mut word = String::from(c);
                while let Some(&next) = chars.peek() {
                    if next.is_whitespace()
                        || matches!(next, '[' | ']' | '(' | ')' | ',' | '=' | '!' | '<' | '>')
                    {
                        break;
                    }
                    if next == '\'' && !word.ends_with('.') {
                        break;
                    }
                    chars.next();
                    if next == '\'' {
                        for quoted in chars.by_ref() {
                            if quoted == '\'' {
                                break;
                            }
                            word.push(quoted);
                        }
                        continue;
                    }
                    word.push(next);
                }
                out.push(Token::Word(word));
            }
        }
    }
    Some(out)
}

/// The values of a pattern that is one observation of `=`/`IN` tests joined by `OR`.
fn atoms(pattern: &str) -> Option<Vec<(IndicatorKind, String)>> {
    let tokens = tokens(pattern)?;
    let mut at = 0;
    let next = |at: &mut usize| -> Option<&Token> {
        let token = tokens.get(*at);
        *at += 1;
        token
    };
    if next(&mut at)? != &Token::Open {
        return None;
    }
    let mut atoms = Vec::new();
    loop {
        let Token::Word(path) = next(&mut at)? else {
            return None;
        };
        let kind = kind_of(path)?;
        match next(&mut at)? {
            Token::Equals => {
                let Token::Literal(value) = next(&mut at)? else {
                    return None;
                };
                atoms.push((kind, value.clone()));
            }
            Token::Word(word) if word == "IN" => {
                if next(&mut at)? != &Token::ParenOpen {
                    return None;
                }
                loop {
                    let Token::Literal(value) = next(&mut at)? else {
                        return None;
                    };
                    atoms.push((kind, value.clone()));
                    match next(&mut at)? {
                        Token::Comma => continue,
                        Token::ParenClose => break,
                        _ => return None,
                    }
                }
            }
            _ => return None,
        }
        match next(&mut at)? {
            Token::Word(word) if word == "OR" => continue,
            Token::Close => break,
            _ => return None,
        }
    }
    // Anything after the observation (qualifiers, more observations) makes it complex.
    (at == tokens.len()).then_some(atoms)
}

fn kind_of(path: &str) -> Option<IndicatorKind> {
    let (object, property) = path.split_once(':')?;
    match (object, property) {
        ("ipv4-addr" | "ipv6-addr", "value") => Some(IndicatorKind::Ip),
        ("network-traffic", "dst_ref.value" | "src_ref.value") => Some(IndicatorKind::Ip),
        ("domain-name", "value") => Some(IndicatorKind::Domain),
        ("url", "value") => Some(IndicatorKind::Url),
        ("file", hashes) => {
            let key = hashes
                .strip_prefix("hashes.")?
                .to_ascii_uppercase()
                .replace(['-', '_'], "");
            match key.as_str() {
                "MD5" => Some(IndicatorKind::Md5),
                "SHA1" => Some(IndicatorKind::Sha1),
                "SHA256" => Some(IndicatorKind::Sha256),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_patterns_become_atoms() {
        assert_eq!(
            atoms("[ipv4-addr:value = '198.51.100.1']"),
            Some(vec![(IndicatorKind::Ip, "198.51.100.1".into())])
        );
        assert_eq!(
            atoms("[ipv4-addr:value = '1.2.3.4' OR ipv4-addr:value IN ('5.6.7.8', '9.9.9.0/24')]")
                .map(|a| a.len()),
            Some(3)
        );
        assert_eq!(
            atoms("[file:hashes.'SHA-256' = 'AEFC']"),
            Some(vec![(IndicatorKind::Sha256, "AEFC".into())])
        );
        assert_eq!(
            atoms("[file:hashes.MD5 = 'x']").map(|a| a[0].0),
            Some(IndicatorKind::Md5)
        );
        assert_eq!(
            atoms("[url:value = 'http://x/it\\'s']"),
            Some(vec![(IndicatorKind::Url, "http://x/it's".into())])
        );
    }

    #[test]
    fn complex_patterns_are_refused() {
        for pattern in [
            "[file:name = 'a' AND file:hashes.MD5 = 'x']",
            "[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [ipv4-addr:value = '5.6.7.8']",
            "[ipv4-addr:value = '1.2.3.4'] WITHIN 60 SECONDS",
            "[ipv4-addr:value ISSUBSET '10.0.0.0/8']",
            "[process:name = 'x']",
            "[url:value = 'unterminated]",
        ] {
            assert_eq!(atoms(pattern), None, "{pattern}");
        }
    }
}
