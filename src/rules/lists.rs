//! Named lists: `lists/*.yaml` in the content folder, one list per file, shared by every rule.
//!
//! A list is either text (compared ignoring ASCII case, like every filter) or addresses (`kind:
//! addresses`: single addresses and CIDR ranges, IPv4 and IPv6, parsed when the file loads).
//! Lookups are hash lookups: a text list is a set of lowercased values, an address list a set of
//! masked networks per prefix length, so a list of ten thousand admin hosts costs one lookup per
//! distinct prefix length, not ten thousand comparisons.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diagnostics::{Diagnostic, Diagnostics, Position, YamlPath, locate};

/// One file of `lists/`, as written.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ListSpec {
    /// How rules name the list (`in_list` in a filter, `in_list(name, value)` in `detect`):
    /// lowercase letters, digits, `_`, `-` or `.`.
    pub name: String,
    /// What the list holds and why, for reviewers.
    #[serde(default)]
    pub description: Option<String>,
    /// `strings` (the default): text compared ignoring ASCII case. `addresses`: IP addresses
    /// and CIDR ranges, IPv4 or IPv6.
    #[serde(default)]
    pub kind: ListKind,
    /// The entries; at least one.
    pub values: Vec<String>,
}

/// What a list's values are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    #[default]
    Strings,
    Addresses,
}

/// A set of addresses and networks, looked up by prefix length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressSet {
    /// `(is IPv4, prefix length, networks masked to that length)`, one entry per length used.
    by_prefix: Vec<(bool, u8, HashSet<IpAddr>)>,
}

impl AddressSet {
    /// Parses `10.0.0.0/8`, `2001:db8::/32` or a single address (an IPv4-mapped IPv6 address is
    /// read as the IPv4 address it carries, as events' addresses are).
    pub fn parse_network(text: &str) -> Result<(IpAddr, u8), String> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let parsed: IpAddr = address
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR range"))?;
        let mapped = matches!(parsed, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
        let ip = crate::event::canonical_ip(parsed);
        let max: u8 = if parsed.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            // Digits only: `parse::<u8>` would also take a sign (`+8`), which CIDR never has.
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}` has a prefix length over /{max}"))?,
            Some(_) => return Err(format!("`{text}` has no valid prefix length after `/`")),
        };
        // `::ffff:10.0.0.0/104` is `10.0.0.0/8`: events carry the IPv4 form.
        let prefix = if mapped {
            prefix.saturating_sub(96)
        } else {
            prefix
        };
        Ok((ip, prefix))
    }

    pub fn insert(&mut self, ip: IpAddr, prefix: u8) {
        let v4 = ip.is_ipv4();
        let network = crate::intel::indicator::mask(ip, prefix);
        match self
            .by_prefix
            .iter_mut()
            .find(|(family, length, _)| *family == v4 && *length == prefix)
        {
            Some((_, _, set)) => {
                set.insert(network);
            }
            None => {
                self.by_prefix.push((v4, prefix, HashSet::from([network])));
                // Longest prefixes first: the most specific entries are the likeliest hits.
                self.by_prefix
                    .sort_by_key(|entry| std::cmp::Reverse(entry.1));
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = crate::event::canonical_ip(ip);
        let v4 = ip.is_ipv4();
        self.by_prefix.iter().any(|(family, length, set)| {
            *family == v4 && set.contains(&crate::intel::indicator::mask(ip, *length))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }
}

/// A loaded, validated list.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedList {
    pub name: String,
    pub description: Option<String>,
    pub kind: ListKind,
    /// The file, as diagnostics name it.
    pub path: PathBuf,
    /// The kind and the sorted values, to tell whether a reload changed the list.
    pub fingerprint: String,
    strings: HashSet<String>,
    addresses: AddressSet,
}

impl NamedList {
    /// Whether `value` is on the list: for a text list, ignoring ASCII case; for an address
    /// list, when it is an address inside one of the list's networks.
    pub fn contains_text(&self, value: &str) -> bool {
        match self.kind {
            ListKind::Strings => {
                if value.bytes().any(|b| b.is_ascii_uppercase()) {
                    self.strings.contains(&value.to_ascii_lowercase())
                } else {
                    self.strings.contains(value)
                }
            }
            ListKind::Addresses => value
                .trim()
                .parse::<IpAddr>()
                .is_ok_and(|ip| self.addresses.contains(ip)),
        }
    }

    /// Whether an address is on the list (a text list compares its text form).
    pub fn contains_address(&self, ip: IpAddr) -> bool {
        match self.kind {
            ListKind::Addresses => self.addresses.contains(ip),
            ListKind::Strings => self
                .strings
                .contains(&crate::event::canonical_ip(ip).to_string()),
        }
    }

    /// How many entries the list holds (after duplicates are merged).
    pub fn len(&self) -> usize {
        match self.kind {
            ListKind::Strings => self.strings.len(),
            ListKind::Addresses => self
                .addresses
                .by_prefix
                .iter()
                .map(|(_, _, set)| set.len())
                .sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every list of the content, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lists {
    by_name: HashMap<String, Arc<NamedList>>,
}

impl Lists {
    /// Builds the set; the caller has refused duplicate names (the first of a name is kept).
    pub fn new(lists: Vec<NamedList>) -> Lists {
        let mut by_name = HashMap::new();
        for list in lists {
            by_name
                .entry(list.name.clone())
                .or_insert_with(|| Arc::new(list));
        }
        Lists { by_name }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<NamedList>> {
        self.by_name.get(name)
    }

    /// The names, sorted, for "did you mean" and messages.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every list, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<NamedList>> {
        let mut all: Vec<&Arc<NamedList>> = self.by_name.values().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all.into_iter()
    }

    /// The list called `name`, or a message naming the nearest known names.
    pub fn resolve(&self, name: &str) -> Result<&Arc<NamedList>, String> {
        self.get(name).ok_or_else(|| {
            let names = self.names();
            if names.is_empty() {
                format!("there is no list named `{name}` (no lists are defined in `lists/`)")
            } else {
                format!(
                    "there is no list named `{name}`{}; lists: {}",
                    crate::diagnostics::did_you_mean(name, names.iter().copied()),
                    names.join(", ")
                )
            }
        })
    }
}

/// The schema of a list file, built once.
pub fn schema() -> &'static serde_json::Value {
    static SCHEMA: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(|| {
        serde_json::to_value(schemars::schema_for!(ListSpec)).unwrap_or(serde_json::Value::Null)
    });
    &SCHEMA
}

/// Parses and validates one list file: a bad name, no values, an entry that is not an address
/// in an address list, are each reported at their line and column.
pub fn load_list(path: &Path, source: &str) -> Result<NamedList, Diagnostics> {
    let source = crate::diagnostics::strip_bom(source);
    let (spec, mut problems): (ListSpec, Diagnostics) =
        crate::diagnostics::parse_yaml(path, source, schema())?;
    let at = |yaml: YamlPath| -> Position { locate(source, &yaml) };
    if !super::is_valid_id(&spec.name) {
        problems.push(Diagnostic::at(
            path,
            source,
            at(YamlPath::root().key("name")),
            "list-bad-name",
            format!(
                "list name `{}` must be lowercase letters, digits, `-`, `_` or `.`",
                spec.name
            ),
        ));
    }
    if spec.values.is_empty() {
        problems.push(Diagnostic::at(
            path,
            source,
            at(YamlPath::root().key("values")),
            "list-empty",
            format!(
                "list `{}` has no values; a rule using it could never match through it",
                spec.name
            ),
        ));
    }
    let mut strings = HashSet::new();
    let mut addresses = AddressSet::default();
    for (index, value) in spec.values.iter().enumerate() {
        let position = at(YamlPath::root().key("values").index(index));
        if value.trim().is_empty() {
            problems.push(Diagnostic::at(
                path,
                source,
                position,
                "list-bad-value",
                format!("list `{}`: value {} is empty", spec.name, index + 1),
            ));
            continue;
        }
        match spec.kind {
            ListKind::Strings => {
                strings.insert(value.to_ascii_lowercase());
            }
            ListKind::Addresses => match AddressSet::parse_network(value) {
                Ok((ip, prefix)) => addresses.insert(ip, prefix),
                Err(message) => problems.push(Diagnostic::at(
                    path,
                    source,
                    position,
                    "list-bad-address",
                    format!("list `{}` holds addresses: {message}", spec.name),
                )),
            },
        }
    }
    if !problems.is_empty() {
        let context = format!("list `{}`", spec.name);
        let mut with_context = Diagnostics::default();
        for d in problems {
            with_context.push(d.with_context(context.clone()));
        }
        return Err(with_context);
    }
    let mut sorted = spec.values.clone();
    sorted.sort_unstable();
    Ok(NamedList {
        fingerprint: format!("{:?} {sorted:?}", spec.kind),
        name: spec.name,
        description: spec.description,
        kind: spec.kind,
        path: path.to_path_buf(),
        strings,
        addresses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(source: &str) -> Result<NamedList, Diagnostics> {
        load_list(Path::new("lists/x.yaml"), source)
    }

    #[test]
    fn address_lists_match_by_network_and_text_lists_ignore_case() {
        let nets = list("name: admin_nets\nkind: addresses\nvalues:\n  - 10.0.0.0/8\n  - 192.0.2.7\n  - 2001:db8::/32\n  - ::ffff:198.51.100.0/120\n")
            .expect("loads");
        for inside in [
            "10.200.1.1",
            "192.0.2.7",
            "2001:db8:1::5",
            "198.51.100.9",
            "::ffff:10.0.0.1",
        ] {
            assert!(nets.contains_text(inside), "{inside}");
        }
        for outside in ["11.0.0.1", "192.0.2.8", "2001:db9::1", "not an address"] {
            assert!(!nets.contains_text(outside), "{outside}");
        }
        let hosts = list("name: admin_hosts\nvalues: [Build-01, jump.corp]\n").expect("loads");
        assert!(hosts.contains_text("BUILD-01"));
        assert!(hosts.contains_text("jump.corp"));
        assert!(!hosts.contains_text("build-02"));
    }

    #[test]
    fn bad_lists_are_refused_at_their_line_and_column() {
        let problems = list(
            "name: nets\nkind: addresses\nvalues:\n  - 10.0.0.0/8\n  - 10.0.0.0/33\n  - nope\n",
        )
        .unwrap_err();
        let found: Vec<(usize, usize, &str)> = problems
            .iter()
            .map(|d| (d.line, d.column, d.code))
            .collect();
        assert_eq!(
            found,
            [(5, 5, "list-bad-address"), (6, 5, "list-bad-address")],
            "{}",
            problems.render()
        );
        let empty = list("name: nothing\nvalues: []\n").unwrap_err();
        assert_eq!(empty.iter().next().map(|d| d.code), Some("list-empty"));
        let unknown = list("name: x\nvalus: [a]\nvalues: [a]\n").unwrap_err();
        assert!(unknown.render().contains("values"), "{}", unknown.render());
    }
}
