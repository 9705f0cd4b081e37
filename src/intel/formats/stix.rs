//! STIX 2.1 bundles. Indicators whose pattern is one observation of equality tests joined by
//! `OR` (`[ipv4-addr:value = '1.2.3.4' OR ipv4-addr:value = '5.6.7.8']`, or `IN (...)`) become
//! one indicator per value; every other pattern is counted as skipped. STIX domain indicators
//! are exact (no subdomains), as the standard defines equality.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::{ImportError, Imported, parse_time};
use crate::intel::indicator::IndicatorKind;

pub(super) fn import(path: &Path, text: &str, source: &str) -> Result<Imported, ImportError> {
    let bundle: Value = serde_json::from_str(text).map_err(|e| ImportError::json(path, &e))?;
    let objects: Vec<&Value> = match bundle.get("type").and_then(Value::as_str) {
        Some("bundle") => bundle
            .get("objects")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        Some(_) => vec![&bundle],
        None => {
            return Err(ImportError::at(
                path,
                1,
                1,
                "not a STIX object or bundle: no `type`",
            ));
        }
    };
    // Malware and other named targets of `indicates` relationships name the threat.
    let names: HashMap<&str, &str> = objects
        .iter()
        .filter_map(|o| Some((o.get("id")?.as_str()?, o.get("name")?.as_str()?)))
        .collect();
    let mut threat_of: HashMap<&str, &str> = HashMap::new();
    for object in &objects {
        if object.get("type").and_then(Value::as_str) == Some("relationship")
            && object.get("relationship_type").and_then(Value::as_str) == Some("indicates")
            && let (Some(from), Some(to)) = (
                object.get("source_ref").and_then(Value::as_str),
                object.get("target_ref").and_then(Value::as_str),
            )
            && let Some(name) = names.get(to)
        {
            threat_of.insert(from, name);
        }
    }
    let mut imported = Imported::default();
    for object in objects {
        if object.get("type").and_then(Value::as_str) != Some("indicator") {
            continue;
        }
        let pattern_type = object
            .get("pattern_type")
            .and_then(Value::as_str)
            .unwrap_or("stix");
        if pattern_type != "stix" {
            imported.skip(format!("pattern_type `{pattern_type}` is not stix"));
            continue;
        }
        let Some(pattern) = object.get("pattern").and_then(Value::as_str) else {
            imported.skip("indicator without a pattern");
            continue;
        };
        let Some(atoms) = atoms(pattern) else {
            imported.skip("pattern is not a simple comparison");
            continue;
        };
        let id = object.get("id").and_then(Value::as_str).unwrap_or_default();
        let tags: Vec<String> = ["indicator_types", "labels"]
            .iter()
            .filter_map(|k| object.get(*k).and_then(Value::as_array))
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        let malicious = tags
            .iter()
            .any(|t| t == "malicious-activity" || t == "compromised");
        let confidence = object
            .get("confidence")
            .and_then(Value::as_u64)
            .map(|c| c.min(100) as u8);
        let revoked = object
            .get("revoked")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let first_seen = object
            .get("valid_from")
            .and_then(Value::as_str)
            .and_then(parse_time);
        let valid_until = object
            .get("valid_until")
            .and_then(Value::as_str)
            .and_then(parse_time);
        let threat = threat_of.get(id).map(|t| t.to_string()).or_else(|| {
            object
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        for (kind, value) in atoms {
            imported.add(Some(kind), &value, source, |i| {
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
            });
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
