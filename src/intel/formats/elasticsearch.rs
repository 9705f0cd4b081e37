//! One page of an Elasticsearch `_search` answer (`hits.hits[]._source`), read into indicators
//! through the feed's field mapping. A field of the wrong type is an error naming its place
//! (`hits.hits[3]._source.confidence`) and the whole pull stores nothing; a value that is no
//! indicator, or a type palisade does not match, is skipped and counted.

use std::path::Path;

use serde_json::{Map, Value};

use super::json::{Doc, JsonPath, describe};
use super::{At, ImportError, ImportOptions, Imported, parse_time_field};
use crate::intel::EsFeedConfig;
use crate::intel::indicator::IndicatorKind;

/// What one page held besides its indicators: how many hits, the sort values of the last one
/// (where the next page starts) and the point-in-time id the server wants used next.
#[derive(Debug)]
pub(crate) struct EsPage {
    pub imported: Imported,
    pub hits: usize,
    pub last_sort: Option<Vec<Value>>,
    pub pit_id: Option<String>,
}

/// Reads one `_search` answer.
pub(crate) fn search_page(
    label: &Path,
    text: &str,
    mapping: &EsFeedConfig,
    options: &ImportOptions,
) -> Result<EsPage, ImportError> {
    let doc = Doc::new(label, text);
    let root = doc.parse()?;
    let root_path = JsonPath::default();
    let root = doc.object(&root, &root_path)?;
    // Shards that failed leave holes in the page: taking it would move the high-water mark
    // past documents never read.
    if let Some(failed) = root
        .get("_shards")
        .and_then(|s| s.get("failed"))
        .and_then(Value::as_u64)
        && failed > 0
    {
        return Err(doc.error(
            &root_path.key("_shards").key("failed"),
            format!("{failed} shard(s) failed; the page is incomplete"),
        ));
    }
    if root.get("timed_out") == Some(&Value::Bool(true)) {
        return Err(doc.error(
            &root_path.key("timed_out"),
            "the search timed out; the page is incomplete",
        ));
    }
    let pit_id = doc.str(root, &root_path, "pit_id")?.map(str::to_string);
    let hits_at = root_path.key("hits");
    let hits = match root.get("hits") {
        Some(hits) => doc.object(hits, &hits_at)?,
        None => return Err(doc.error(&hits_at, "is missing; this is not a search answer")),
    };
    let list = doc.array(hits, &hits_at, "hits")?;
    let list_at = hits_at.key("hits");
    let mut imported = Imported::new(options.max_prefix);
    let mut last_sort = None;
    for (n, hit) in list.iter().enumerate() {
        let at = list_at.index(n);
        let hit = doc.object(hit, &at)?;
        let sort = doc.array(hit, &at, "sort")?;
        if sort.is_empty() {
            return Err(doc.error(
                &at.key("sort"),
                "is missing; a paged search needs the sort values of every hit",
            ));
        }
        last_sort = Some(sort.to_vec());
        let source_at = at.key("_source");
        let source = match hit.get("_source") {
            Some(source) => doc.object(source, &source_at)?,
            None => {
                imported.skip(At::Json(source_at), "hit without `_source`");
                continue;
            }
        };
        hit_indicator(doc, source, &source_at, mapping, options, &mut imported)?;
    }
    Ok(EsPage {
        imported,
        hits: list.len(),
        last_sort,
        pit_id,
    })
}

fn hit_indicator(
    doc: Doc<'_>,
    source: &Map<String, Value>,
    at: &JsonPath,
    mapping: &EsFeedConfig,
    options: &ImportOptions,
    imported: &mut Imported,
) -> Result<(), ImportError> {
    let text = |field: &str| -> Result<Option<(String, JsonPath)>, ImportError> {
        match lookup(source, at, field) {
            None => Ok(None),
            Some((Value::String(s), place)) => Ok(Some((s.clone(), place))),
            Some((other, place)) => {
                Err(doc.error(&place, format!("must be a string, not {}", describe(other))))
            }
        }
    };
    let Some((value, value_at)) = text(&mapping.value_field)? else {
        imported.skip(
            At::Json(at.clone()),
            format!("no `{}` field", mapping.value_field),
        );
        return Ok(());
    };
    let kind = match text(&mapping.type_field)? {
        None => None,
        Some((name, place)) => match kind_of(&name) {
            Some(kind) => Some(kind),
            None => {
                imported.skip(
                    At::Json(place),
                    "a type that is no address, range, domain, URL or hash",
                );
                return Ok(());
            }
        },
    };
    let confidence = match lookup(source, at, &mapping.confidence_field) {
        None => None,
        Some((value, place)) => Some(confidence(value).ok_or_else(|| {
            doc.error(
                &place,
                format!(
                    "must be a whole number from 0 to 100 or low/medium/high, not {}",
                    describe(value)
                ),
            )
        })?),
    };
    let threat = text(&mapping.threat_field)?.map(|(threat, _)| threat);
    let seen = match lookup(source, at, &mapping.timestamp_field) {
        None => None,
        Some((Value::String(s), place)) => {
            parse_time_field(s).map_err(|message| doc.error(&place, message))?
        }
        // A date field's raw number is epoch milliseconds in Elasticsearch.
        Some((Value::Number(n), place)) => Some(
            n.as_i64()
                .filter(|ms| jiff::Timestamp::from_millisecond(*ms).is_ok())
                .ok_or_else(|| doc.error(&place, format!("{n} is not epoch milliseconds")))?,
        ),
        Some((other, place)) => {
            return Err(doc.error(
                &place,
                format!("must be a timestamp, not {}", describe(other)),
            ));
        }
    };
    imported.add(
        || At::Json(value_at),
        kind,
        &value,
        &options.source,
        |indicator| {
            if let Some(confidence) = confidence {
                indicator.confidence = confidence;
            }
            indicator.threat = threat;
            indicator.last_seen_ms = seen;
        },
    );
    Ok(())
}

/// A field by name: the literal key first (Elasticsearch allows dots in keys), else the
/// dotted path through nested objects.
fn lookup<'v>(
    source: &'v Map<String, Value>,
    at: &JsonPath,
    field: &str,
) -> Option<(&'v Value, JsonPath)> {
    if let Some(value) = source.get(field).filter(|v| !v.is_null()) {
        return Some((value, at.key(field)));
    }
    let (head, rest) = field.split_once('.')?;
    let inner = source.get(head)?.as_object()?;
    lookup(inner, &at.key(head), rest)
}

/// The indicator kind an index's type name means; `ip` kinds cover ranges too (the value
/// decides).
fn kind_of(name: &str) -> Option<IndicatorKind> {
    let name = name.trim().to_ascii_lowercase();
    let name = name
        .strip_prefix("hash_")
        .or_else(|| name.strip_prefix("hash-"))
        .or_else(|| name.strip_prefix("file.hash."))
        .unwrap_or(&name);
    Some(match name {
        "ip" | "ipv4" | "ipv6" | "ipv4-addr" | "ipv6-addr" | "ip-dst" | "ip-src" => {
            IndicatorKind::Ip
        }
        "cidr" | "network" => IndicatorKind::Cidr,
        "domain" | "domain-name" | "hostname" | "fqdn" => IndicatorKind::Domain,
        "url" | "uri" => IndicatorKind::Url,
        "md5" => IndicatorKind::Md5,
        "sha1" => IndicatorKind::Sha1,
        "sha256" => IndicatorKind::Sha256,
        _ => return None,
    })
}

/// A confidence as a number 0–100 (or a string of digits), or ECS's words.
fn confidence(value: &Value) -> Option<u8> {
    let number = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "low" => Some(30),
            "medium" => Some(60),
            "high" => Some(90),
            other => other.parse::<u64>().ok(),
        },
        _ => None,
    };
    number
        .and_then(|n| u8::try_from(n).ok())
        .filter(|n| *n <= 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intel::IntelMaxPrefix;

    fn options() -> ImportOptions {
        ImportOptions {
            source: "es".into(),
            kind: None,
            confidence: None,
            severity: None,
            max_prefix: IntelMaxPrefix::default(),
            subdomains: None,
        }
    }

    #[test]
    fn a_search_page_maps_the_seed_index_fields() {
        let text = r#"{"pit_id":"p2","timed_out":false,"_shards":{"total":1,"successful":1,"failed":0},
"hits":{"hits":[
 {"_index":"threat_intel_iocs","_source":{"ioc_value":"185.12.33.4","ioc_type":"ipv4","threat":"Emotet C2","confidence":80,"timestamp":"2025-11-01T00:00:00Z"},"sort":[1761955200000,3]},
 {"_index":"threat_intel_iocs","_source":{"ioc_value":"EVIL.example","ioc_type":"domain"},"sort":[1761955200001,4]},
 {"_index":"threat_intel_iocs","_source":{"ioc_value":"x","ioc_type":"registry-key"},"sort":[1761955200002,5]}
]}}"#;
        let page = search_page(
            Path::new("page"),
            text,
            &EsFeedConfig::default(),
            &options(),
        )
        .expect("page");
        assert_eq!(page.hits, 3);
        assert_eq!(page.pit_id.as_deref(), Some("p2"));
        assert_eq!(
            page.last_sort,
            Some(vec![Value::from(1_761_955_200_002_i64), Value::from(5)])
        );
        let values: Vec<_> = page
            .imported
            .indicators
            .iter()
            .map(|i| (i.kind, i.value.as_str(), i.confidence, i.threat.as_deref()))
            .collect();
        assert_eq!(
            values,
            [
                (IndicatorKind::Ip, "185.12.33.4", 80, Some("Emotet C2")),
                (IndicatorKind::Domain, "evil.example", 50, None),
            ]
        );
        assert_eq!(page.imported.skipped_total(), 1);
    }

    #[test]
    fn a_confidence_of_the_wrong_type_names_its_place_and_refuses_the_page() {
        let text = "{\"hits\":{\"hits\":[\n{\"_source\":{\"ioc_value\":\"185.12.33.4\",\"confidence\":[1]},\"sort\":[1,1]}]}}";
        let err = search_page(
            Path::new("page"),
            text,
            &EsFeedConfig::default(),
            &options(),
        )
        .expect_err("refused");
        assert_eq!(err.line, 2);
        assert!(
            err.message.contains("hits.hits[0]._source.confidence"),
            "{err}"
        );
    }

    #[test]
    fn a_page_with_failed_shards_is_refused() {
        let text = r#"{"_shards":{"failed":1},"hits":{"hits":[]}}"#;
        assert!(
            search_page(
                Path::new("page"),
                text,
                &EsFeedConfig::default(),
                &options()
            )
            .is_err()
        );
    }

    #[test]
    fn nested_fields_are_read_by_their_dotted_name() {
        let mapping = EsFeedConfig {
            value_field: "threat.indicator.ip".into(),
            type_field: "threat.indicator.type".into(),
            threat_field: "threat.feed.name".into(),
            ..EsFeedConfig::default()
        };
        let text = r#"{"hits":{"hits":[{"_source":{"threat":{"indicator":{"ip":"203.0.113.9","type":"ipv4-addr"},"feed":{"name":"Partner"}}},"sort":[1,1]}]}}"#;
        let page = search_page(Path::new("page"), text, &mapping, &options()).expect("page");
        assert_eq!(page.imported.indicators[0].value, "203.0.113.9");
        assert_eq!(
            page.imported.indicators[0].threat.as_deref(),
            Some("Partner")
        );
    }
}
