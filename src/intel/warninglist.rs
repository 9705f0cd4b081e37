//! MISP warninglists: benign infrastructure (private ranges, documentation networks, public
//! resolvers, the empty file's hashes) that feeds list by mistake. An indicator on one is kept
//! but marked; it yields at most an informational detection and never an automatic block.

use std::net::IpAddr;
use std::path::Path;

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

#[derive(Debug, Clone)]
enum Entries {
    /// (network, prefix length).
    Cidr(Vec<(IpAddr, u8)>),
    /// Exact, lower-cased.
    Exact(Vec<String>),
    /// The value equals an entry or is below it in the DNS tree.
    Hostname(Vec<String>),
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

impl Warninglist {
    /// Parses one list; `regex` lists are refused (palisade has no backtracking-free regex
    /// engine for MISP's PCRE patterns).
    pub fn parse(text: &str) -> Result<Warninglist, String> {
        let file: ListFile =
            serde_json::from_str(text).map_err(|e| format!("not a MISP warninglist: {e}"))?;
        let entries = match file.kind.as_str() {
            "cidr" => Entries::Cidr(
                file.list
                    .iter()
                    .filter_map(|entry| match canonical_network(entry) {
                        Ok((IndicatorKind::Ip, ip)) => ip
                            .parse::<IpAddr>()
                            .ok()
                            .map(|ip| (ip, if ip.is_ipv4() { 32 } else { 128 })),
                        Ok((_, cidr)) => {
                            let (ip, prefix) = cidr.split_once('/')?;
                            Some((ip.parse().ok()?, prefix.parse().ok()?))
                        }
                        Err(_) => None,
                    })
                    .collect(),
            ),
            "string" => Entries::Exact(
                file.list
                    .iter()
                    .map(|e| e.trim().to_ascii_lowercase())
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
                return Err(format!(
                    "warninglist `{}` has type `{other}`, which palisade does not support",
                    file.name
                ));
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
                ranges.iter().any(|(network, length)| {
                    network.is_ipv4() == ip.is_ipv4()
                        && prefix >= *length
                        && super::indicator::mask(ip, *length) == *network
                })
            }
            Entries::Exact(values) => values.iter().any(|v| v == value),
            Entries::Hostname(names) => {
                kind == IndicatorKind::Domain
                    && names.iter().any(|n| {
                        value == n
                            || (value.ends_with(n.as_str())
                                && value.as_bytes().get(value.len() - n.len() - 1) == Some(&b'.'))
                    })
            }
            Entries::Substring(parts) => parts.iter().any(|p| value.contains(p.as_str())),
        }
    }
}

impl Warninglists {
    pub fn new(lists: Vec<Warninglist>) -> Warninglists {
        Warninglists { lists }
    }

    /// Loads every `*.json` in `dir` (none when it does not exist). Problems name the file.
    pub fn load_dir(dir: &Path) -> Result<Warninglists, Vec<String>> {
        let mut lists = Vec::new();
        let mut problems = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(Warninglists::default());
        };
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        for path in paths {
            match std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| Warninglist::parse(&text))
            {
                Ok(list) => lists.push(list),
                Err(message) => problems.push(format!("{}: {message}", path.display())),
            }
        }
        if problems.is_empty() {
            Ok(Warninglists { lists })
        } else {
            Err(problems)
        }
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
    fn hostname_lists_cover_subdomains() {
        let list = Warninglist::parse(r#"{"name":"cdn","type":"hostname","list":["akamaiedge.net"],"description":"d","version":1}"#).unwrap();
        assert!(list.lists(IndicatorKind::Domain, "a.akamaiedge.net"));
        assert!(list.lists(IndicatorKind::Domain, "akamaiedge.net"));
        assert!(!list.lists(IndicatorKind::Domain, "notakamaiedge.net"));
        assert!(
            Warninglist::parse(r#"{"name":"r","type":"regex","list":["^a"]}"#)
                .unwrap_err()
                .contains("does not support")
        );
    }
}
