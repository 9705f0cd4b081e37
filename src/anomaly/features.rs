//! What the anomaly model sees of an event: a short vector of numbers per event kind.
//!
//! Every feature is cheap (no allocation beyond a lowercase copy of a name, no I/O) and means
//! something a person can check: the hour on a circle, how rare a name was in the baseline, how
//! long and how random a command line or domain looks. `docs/anomaly.md` lists them.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventKind};

/// The feature names of each kind, in vector order.
pub fn names(kind: EventKind) -> &'static [&'static str] {
    match kind {
        EventKind::ProcessCreate => &[
            "hour_sin",
            "hour_cos",
            "process_rarity",
            "parent_child_rarity",
            "user_rarity",
            "cmdline_length",
            "cmdline_entropy",
        ],
        EventKind::NetworkConnection => &[
            "hour_sin",
            "hour_cos",
            "process_rarity",
            "port_rarity",
            "port_well_known",
            "port_ephemeral",
            "public_address",
        ],
        EventKind::DnsQuery => &[
            "hour_sin",
            "hour_cos",
            "domain_rarity",
            "domain_length",
            "label_count",
            "label_entropy",
            "digit_share",
        ],
        EventKind::Login => &[
            "hour_sin",
            "hour_cos",
            "user_rarity",
            "method_rarity",
            "public_source",
            "failed",
        ],
    }
}

/// How often each name was seen in the baseline, per kind of name. A name's rarity is
/// `ln((N + 2) / (count + 1)) / ln(N + 2)`: 0 for a name every event had, near 1 for one never
/// seen, so an unseen name is exactly as unusual as the baseline's size can tell.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Vocabulary {
    /// Events counted, per table. (Ordered maps: the model file is the same for the same
    /// baseline, so a retrained model diffs cleanly in a repository.)
    pub totals: BTreeMap<String, u64>,
    /// Table name (`process`, `parent_child`, `user`, `port`, `domain`, `method`) to name counts.
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
    /// The rarity of every counted name and of an unseen one, per table, computed once.
    #[serde(skip)]
    rarities: HashMap<&'static str, (HashMap<String, f64>, f64)>,
}

impl PartialEq for Vocabulary {
    fn eq(&self, other: &Vocabulary) -> bool {
        self.totals == other.totals && self.counts == other.counts
    }
}

const TABLES: [&str; 6] = [
    "process",
    "parent_child",
    "user",
    "port",
    "domain",
    "method",
];

/// `text` in ASCII lowercase, borrowed when it already is.
fn lowered(text: &str) -> std::borrow::Cow<'_, str> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(text.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

impl Vocabulary {
    fn add(&mut self, table: &str, name: String) {
        *self.totals.entry(table.to_string()).or_default() += 1;
        *self
            .counts
            .entry(table.to_string())
            .or_default()
            .entry(name)
            .or_default() += 1;
    }

    /// Counts the names of one baseline event.
    pub fn learn(&mut self, event: &Event) {
        for (table, name) in names_of(event) {
            self.add(table, name);
        }
    }

    /// Computes every rarity once; called after learning or loading.
    pub fn index(&mut self) {
        self.rarities = TABLES
            .iter()
            .map(|table| {
                let names = self
                    .counts
                    .get(*table)
                    .map(|counts| {
                        counts
                            .keys()
                            .map(|name| (name.clone(), self.rarity_counted(table, name)))
                            .collect()
                    })
                    .unwrap_or_default();
                (*table, (names, self.rarity_counted(table, "\u{0}unseen")))
            })
            .collect();
    }

    fn rarity(&self, table: &'static str, name: &str) -> f64 {
        match self.rarities.get(table) {
            Some((names, unseen)) => names.get(name).copied().unwrap_or(*unseen),
            None => self.rarity_counted(table, name),
        }
    }

    fn rarity_counted(&self, table: &str, name: &str) -> f64 {
        let total = self.totals.get(table).copied().unwrap_or(0) as f64;
        let count = self
            .counts
            .get(table)
            .and_then(|c| c.get(name))
            .copied()
            .unwrap_or(0) as f64;
        ((total + 2.0) / (count + 1.0)).ln() / (total + 2.0).ln()
    }
}

/// The names an event contributes to the vocabulary, lowercased.
fn names_of(event: &Event) -> Vec<(&'static str, String)> {
    let lower = |v: &Option<String>| v.as_deref().unwrap_or("").to_ascii_lowercase();
    match event.kind {
        EventKind::ProcessCreate => vec![
            ("process", lower(&event.name)),
            (
                "parent_child",
                format!("{}>{}", lower(&event.parent_name), lower(&event.name)),
            ),
            ("user", lower(&event.user)),
        ],
        EventKind::NetworkConnection => vec![
            ("process", lower(&event.name)),
            ("port", event.remote_port.unwrap_or(0).to_string()),
        ],
        EventKind::DnsQuery => vec![("domain", registered_domain(&lower(&event.query_name)))],
        EventKind::Login => vec![
            ("user", lower(&event.user)),
            ("method", lower(&event.method)),
        ],
    }
}

/// `example.co.uk` for `a.b.example.co.uk`; the name itself when it has no public suffix.
pub fn registered_domain(name: &str) -> String {
    let name = name.trim_end_matches('.');
    psl::domain_str(name).unwrap_or(name).to_string()
}

/// Shannon entropy in bits per character.
pub fn entropy(text: &str) -> f64 {
    if text.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for b in text.bytes() {
        counts[b as usize] += 1;
    }
    let n = text.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Whether an address is reachable from the internet (not private, loopback, link-local,
/// unique-local or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// The feature vector of an event, in the order of [`names`].
pub fn extract(event: &Event, vocabulary: &Vocabulary, out: &mut Vec<f64>) {
    out.clear();
    let seconds_of_day = event.timestamp_ms.rem_euclid(86_400_000) as f64 / 1000.0;
    let angle = seconds_of_day / 86_400.0 * std::f64::consts::TAU;
    out.push(angle.sin());
    out.push(angle.cos());
    let lower = |v: &Option<String>| lowered(v.as_deref().unwrap_or("")).into_owned();
    match event.kind {
        EventKind::ProcessCreate => {
            let name = lower(&event.name);
            let mut pair = lower(&event.parent_name);
            pair.push('>');
            pair.push_str(&name);
            out.push(vocabulary.rarity("process", &name));
            out.push(vocabulary.rarity("parent_child", &pair));
            out.push(vocabulary.rarity("user", &lowered(event.user.as_deref().unwrap_or(""))));
            let cmdline = event.cmdline.as_deref().unwrap_or("");
            out.push((1.0 + cmdline.len() as f64).ln());
            out.push(entropy(cmdline));
        }
        EventKind::NetworkConnection => {
            let port = event.remote_port.unwrap_or(0);
            out.push(vocabulary.rarity("process", &lowered(event.name.as_deref().unwrap_or(""))));
            out.push(vocabulary.rarity("port", &port.to_string()));
            out.push(f64::from(u8::from(port < 1024)));
            out.push(f64::from(u8::from(port >= 49_152)));
            out.push(f64::from(u8::from(event.remote_ip.is_some_and(is_public))));
        }
        EventKind::DnsQuery => {
            let name = lower(&event.query_name);
            let name = name.trim_end_matches('.');
            let registered = registered_domain(name);
            out.push(vocabulary.rarity("domain", &registered));
            out.push((1.0 + name.len() as f64).ln());
            out.push(name.split('.').count() as f64);
            // The most random label: a generated name or a tunnelled payload stands out there.
            out.push(name.split('.').map(entropy).fold(0.0, f64::max));
            let digits = name.bytes().filter(u8::is_ascii_digit).count();
            out.push(digits as f64 / name.len().max(1) as f64);
        }
        EventKind::Login => {
            out.push(vocabulary.rarity("user", &lowered(event.user.as_deref().unwrap_or(""))));
            out.push(vocabulary.rarity("method", &lowered(event.method.as_deref().unwrap_or(""))));
            out.push(f64::from(u8::from(event.source_ip.is_some_and(is_public))));
            let failed = event
                .outcome
                .as_deref()
                .is_some_and(|o| !o.eq_ignore_ascii_case("success"));
            out.push(f64::from(u8::from(failed)));
        }
    }
    debug_assert_eq!(out.len(), names(event.kind).len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_uniform_and_constant_text() {
        assert_eq!(entropy("aaaa"), 0.0);
        assert!((entropy("abcd") - 2.0).abs() < 1e-9);
    }

    #[test]
    fn public_and_private_addresses() {
        for private in [
            "10.1.2.3",
            "192.168.0.1",
            "127.0.0.1",
            "fd00::1",
            "fe80::1",
            "100.64.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn rarity_is_zero_for_the_common_and_near_one_for_the_unseen() {
        let mut v = Vocabulary::default();
        for _ in 0..1000 {
            v.add("process", "chrome.exe".into());
        }
        assert!(v.rarity("process", "chrome.exe") < 0.01);
        assert!(v.rarity("process", "never.exe") > 0.99);
    }

    #[test]
    fn every_kind_yields_as_many_values_as_it_has_names() {
        let mut v = Vocabulary::default();
        v.index();
        let mut out = Vec::new();
        for kind in EventKind::ALL {
            let event = Event::new("e", kind, 1_700_000_000_000);
            extract(&event, &v, &mut out);
            assert_eq!(out.len(), names(kind).len(), "{kind}");
        }
    }
}
