//! MISP warninglists: benign infrastructure (private ranges, documentation networks, public
//! resolvers, the empty file's hashes) that feeds list by mistake. An indicator on one is kept
//! but marked; it yields at most an informational detection and never an automatic block.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use serde::Deserialize;

use super::indicator::{IndicatorKind, canonical_domain, canonical_network};

/// A list as MISP publishes it (`lists/<name>/list.json`).
#[derive(Debug, Clone, Deserialize)]
struct ListFile {
    name: String,
    #[serde(rename = "type", default = "default_type")]
    kind: String,
    list: Vec<String>,
}

fn default_type() -> String {
    "string".into()
}

/// A list's entries, indexed so that a lookup costs the same for a list of 60,000 resolvers as
/// for a list of three ranges (the matcher marks every indicator against every list).
#[derive(Debug, Clone)]
enum Entries {
    /// Per address family, per prefix length present: the networks of that length.
    Cidr(Vec<(bool, u8, HashSet<IpAddr>)>),
    /// Exact, lower-cased.
    Exact(HashSet<String>),
    /// The value equals an entry or is below it in the DNS tree.
    Hostname(HashSet<String>),
    Substring(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Warninglist {
    pub name: String,
    entries: Entries,
}

/// Every loaded warninglist.
#[derive(Debug, Clone, Default)]
pub struct Warninglists {
    lists: Vec<Warninglist>,
}

/// A file that is not a warninglist palisade can use.
#[derive(Debug, thiserror::Error)]
pub enum WarninglistError {
    #[error("not a MISP warninglist: {0}")]
    NotAWarninglist(#[from] serde_json::Error),
    #[error("warninglist `{name}` has type `{kind}`, which palisade does not support")]
    UnsupportedType { name: String, kind: String },
}

impl Warninglist {
    /// Parses one list; `regex` lists are refused (palisade has no backtracking-free regex
    /// engine for MISP's PCRE patterns).
    pub fn parse(text: &str) -> Result<Warninglist, WarninglistError> {
        let file: ListFile = serde_json::from_str(text)?;
        let entries = match file.kind.as_str() {
            "cidr" => {
                let mut by_length: BTreeMap<(bool, u8), HashSet<IpAddr>> = BTreeMap::new();
                for entry in &file.list {
                    let network = match canonical_network(entry) {
                        Ok((IndicatorKind::Ip, ip)) => ip
                            .parse::<IpAddr>()
                            .ok()
                            .map(|ip| (ip, if ip.is_ipv4() { 32 } else { 128 })),
                        Ok((_, cidr)) => cidr.split_once('/').and_then(|(ip, prefix)| {
                            Some((ip.parse::<IpAddr>().ok()?, prefix.parse::<u8>().ok()?))
                        }),
                        Err(_) => None,
                    };
                    if let Some((ip, length)) = network {
                        by_length
                            .entry((ip.is_ipv4(), length))
                            .or_default()
                            .insert(ip);
                    }
                }
                Entries::Cidr(
                    by_length
                        .into_iter()
                        .map(|((v4, length), networks)| (v4, length, networks))
                        .collect(),
                )
            }
            "string" => Entries::Exact(
                file.list
                    .iter()
                    .map(|e| e.trim().trim_end_matches('.').to_ascii_lowercase())
                    .collect(),
            ),
            "hostname" => Entries::Hostname(
                file.list
                    .iter()
                    .filter_map(|e| canonical_domain(e.trim_start_matches('.')).ok())
                    .collect(),
            ),
            "substring" => {
                Entries::Substring(file.list.iter().map(|e| e.to_ascii_lowercase()).collect())
            }
            other => {
                return Err(WarninglistError::UnsupportedType {
                    name: file.name,
                    kind: other.to_string(),
                });
            }
        };
        Ok(Warninglist {
            name: file.name,
            entries,
        })
    }

    /// Whether a canonical indicator is on this list.
    pub fn lists(&self, kind: IndicatorKind, value: &str) -> bool {
        match &self.entries {
            Entries::Cidr(ranges) => {
                let (ip, prefix) = match (kind, value.split_once('/')) {
                    (IndicatorKind::Ip, _) => match value.parse::<IpAddr>() {
                        Ok(ip) => (ip, if ip.is_ipv4() { 32 } else { 128 }),
                        Err(_) => return false,
                    },
                    (IndicatorKind::Cidr, Some((ip, prefix))) => {
                        match (ip.parse::<IpAddr>(), prefix.parse::<u8>()) {
                            (Ok(ip), Ok(prefix)) => (ip, prefix),
                            _ => return false,
                        }
                    }
                    _ => return false,
                };
                ranges.iter().any(|(v4, length, networks)| {
                    *v4 == ip.is_ipv4()
                        && prefix >= *length
                        && networks.contains(&super::indicator::mask(ip, *length))
                })
            }
            Entries::Exact(values) => values.contains(value),
            Entries::Hostname(names) => {
                // The name itself and every parent: `a.b.example` checks `a.b.example`,
                // `b.example` and `example`.
                kind == IndicatorKind::Domain
                    && std::iter::successors(Some(value), |name| {
                        name.split_once('.').map(|(_, parent)| parent)
                    })
                    .any(|name| names.contains(name))
            }
            Entries::Substring(parts) => parts.iter().any(|p| value.contains(p.as_str())),
        }
    }
}

impl Warninglists {
    pub fn new(lists: Vec<Warninglist>) -> Warninglists {
        Warninglists { lists }
    }

    /// The name of the first list the indicator is on.
    pub fn listing(&self, kind: IndicatorKind, value: &str) -> Option<&str> {
        self.lists
            .iter()
            .find(|l| l.lists(kind, value))
            .map(|l| l.name.as_str())
    }

    pub fn len(&self) -> usize {
        self.lists.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn shipped(name: &str) -> Warninglist {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("warninglists")
            .join(name);
        Warninglist::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_shipped_lists_load_and_match() {
        let rfc1918 = shipped("rfc1918.json");
        assert!(rfc1918.lists(IndicatorKind::Ip, "10.0.0.0"));
        assert!(rfc1918.lists(IndicatorKind::Cidr, "192.168.4.0/24"));
        assert!(
            !rfc1918.lists(IndicatorKind::Cidr, "192.0.0.0/8"),
            "a wider range is not inside the list"
        );
        assert!(!rfc1918.lists(IndicatorKind::Ip, "185.12.33.4"));
        let rfc5735 = shipped("rfc5735.json");
        assert!(rfc5735.lists(IndicatorKind::Ip, "203.0.113.9"));
        let dns6 = shipped("public-dns-v6.json");
        assert!(dns6.lists(IndicatorKind::Ip, "2001:4860:4860::8888"));
        let empty = shipped("empty-hashes.json");
        assert!(empty.lists(IndicatorKind::Md5, "d41d8cd98f00b204e9800998ecf8427e"));
        assert!(empty.lists(
            IndicatorKind::Sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ));
    }

    #[test]
    fn cidr_lists_match_by_every_prefix_length_they_hold() {
        let list = Warninglist::parse(
            r#"{"name":"n","type":"cidr","list":["10.0.0.0/8","192.0.2.7","2001:db8::/32","::ffff:198.51.100.0/120"]}"#,
        )
        .unwrap();
        assert!(list.lists(IndicatorKind::Ip, "10.200.3.4"));
        assert!(list.lists(IndicatorKind::Cidr, "10.1.0.0/16"));
        assert!(!list.lists(IndicatorKind::Cidr, "10.0.0.0/7"));
        assert!(list.lists(IndicatorKind::Ip, "192.0.2.7"));
        assert!(!list.lists(IndicatorKind::Ip, "192.0.2.8"));
        assert!(list.lists(IndicatorKind::Ip, "2001:db8::1"));
        assert!(list.lists(IndicatorKind::Ip, "198.51.100.9"));
        assert!(!list.lists(IndicatorKind::Ip, "11.0.0.1"));
    }

    #[test]
    fn hostname_lists_cover_subdomains() {
        let list = Warninglist::parse(r#"{"name":"cdn","type":"hostname","list":["akamaiedge.net"],"description":"d","version":1}"#).unwrap();
        assert!(list.lists(IndicatorKind::Domain, "a.akamaiedge.net"));
        assert!(list.lists(IndicatorKind::Domain, "akamaiedge.net"));
        assert!(!list.lists(IndicatorKind::Domain, "notakamaiedge.net"));
        assert!(
            Warninglist::parse(r#"{"name":"r","type":"regex","list":["^a"]}"#)
                .unwrap_err()
                .to_string()
                .contains("does not support")
        );
    }
}
