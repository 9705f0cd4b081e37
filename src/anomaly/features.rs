//! What the anomaly model sees of an event: a short vector of numbers per event kind.
//!
//! Every feature is cheap (no allocation unless a domain name has capitals, no I/O; a handful of
//! hash lookups) and means something a person can check: the hour on a circle, how surprising a
//! combination is for this host given what the host, its peers and the whole fleet did in the
//! baseline, how long and how random a command line or domain looks. `docs/anomaly.md` lists
//! them.
//!
//! Why the surprise is layered: a fleet gains users, hosts and programs every day, so a value
//! never seen before is only as unusual as the baseline says new values are. Over the fleet,
//! the chance of a value not seen at all is the fleet's own rate of new values (values seen
//! once, plus one, over events plus one: Good–Turing). Below it, the host's peers (hosts whose
//! names have the same shape, `ws-07` and `ws-31` both `ws-#`) and then the host itself mix
//! their own counts with the level above, weighing the level above by how many distinct values
//! they have seen — each was new once, so that is how often this level meets new values
//! (Witten–Bell smoothing). A host with no history takes its peers' view whole; a host with a
//! long history of few programs has little chance left for anything new. A new workstation
//! with a new user that does what the other workstations do is not unusual; a workstation
//! starting a program none of its peers start is.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventKind};
// The address and name helpers are shared with the tracker; they live at the bottom.
use crate::net::registrable;
pub use crate::net::{is_public, registered_domain};

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
            "process_port_rarity",
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

/// The counted combinations. Each is counted per host, per peer group and over the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Program started (process_create).
    Process,
    /// `parent>child` (process_create).
    ParentChild,
    /// Account starting processes on the host (process_create).
    User,
    /// Program making connections (network_connection).
    NetProcess,
    /// `program>port` (network_connection).
    ProcessPort,
    /// Registered domain looked up (dns_query).
    Domain,
    /// Account logging in to the host (login).
    LoginUser,
    /// Login method used on the host (login).
    Method,
}

impl Table {
    pub const ALL: [Table; 8] = [
        Table::Process,
        Table::ParentChild,
        Table::User,
        Table::NetProcess,
        Table::ProcessPort,
        Table::Domain,
        Table::LoginUser,
        Table::Method,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Table::Process => "process",
            Table::ParentChild => "parent_child",
            Table::User => "user",
            Table::NetProcess => "net_process",
            Table::ProcessPort => "process_port",
            Table::Domain => "domain",
            Table::LoginUser => "login_user",
            Table::Method => "method",
        }
    }

    fn parse(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Accounts are compared by shape above the host (`corp\user07` and `corp\user31` are both
    /// `corp\user#` to the peers and the fleet): a new colleague is not a stranger, while on the
    /// host itself the exact account counts.
    fn shaped_above_host(self) -> bool {
        matches!(self, Table::User | Table::LoginUser)
    }
}

/// The value of a table an event has, borrowed from the event.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    One(&'a str),
    /// Two names joined by `>`.
    Pair(&'a str, &'a str),
    /// A name and a port joined by `>`.
    Port(&'a str, u16),
}

impl Value<'_> {
    fn feed(self, key: Key, shaped: bool) -> Key {
        let text = |key: Key, s: &str| if shaped { key.shape(s) } else { key.text(s) };
        match self {
            Value::One(a) => text(key, a),
            Value::Pair(a, b) => text(text(key, a).byte(b'>'), b),
            Value::Port(a, port) => {
                let key = text(key, a).byte(b'>');
                let mut digits = [0u8; 5];
                let mut n = port;
                let mut at = digits.len();
                loop {
                    at -= 1;
                    digits[at] = b'0' + (n % 10) as u8;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                digits[at..].iter().fold(key, |k, b| k.byte(*b))
            }
        }
    }

    /// The value as the model file writes it (lowercase; shaped when asked).
    pub fn text(self, shaped: bool) -> String {
        let text = |s: &str| {
            if shaped {
                shape(s)
            } else {
                s.to_ascii_lowercase()
            }
        };
        match self {
            Value::One(a) => text(a),
            Value::Pair(a, b) => format!("{}>{}", text(a), text(b)),
            Value::Port(a, port) => format!("{}>{port}", text(a)),
        }
    }
}

/// A name's shape: ASCII lowercase, every run of digits one `#` (`WS-07` is `ws-#`). Hosts with
/// the same shape are peers.
pub fn shape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_digits = false;
    for c in name.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// FNV-1a, 64 bits, fed piece by piece: a key built from an event's parts hashes the same as
/// the joined text the model file stores, so scoring needs no string of its own. Parts are
/// separated by 0xff, a byte UTF-8 text never contains, so no name can pose as two parts.
#[derive(Debug, Clone, Copy)]
struct Key(u64);

impl Key {
    fn new(table: Table) -> Key {
        Key(0xcbf2_9ce4_8422_2325).text(table.as_str()).end()
    }

    fn byte(self, b: u8) -> Key {
        Key((self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
    }

    fn end(self) -> Key {
        self.byte(0xff)
    }

    fn text(self, s: &str) -> Key {
        s.bytes().fold(self, |k, b| k.byte(b.to_ascii_lowercase()))
    }

    fn shape(self, s: &str) -> Key {
        let mut key = self;
        let mut in_digits = false;
        for b in s.bytes() {
            if b.is_ascii_digit() {
                if !in_digits {
                    key = key.byte(b'#');
                }
                in_digits = true;
            } else {
                in_digits = false;
                key = key.byte(b.to_ascii_lowercase());
            }
        }
        key
    }

    /// The key of a scope: `*` (the fleet), `peer:<shape>` or `host:<name>`, as stored.
    fn scope(self, scope: Scope<'_>) -> Key {
        match scope {
            Scope::Fleet => self.byte(b'*'),
            Scope::Peer(host) => self.text("peer:").shape(host),
            Scope::Host(host) => self.text("host:").text(host),
        }
        .end()
    }
}

#[derive(Debug, Clone, Copy)]
enum Scope<'a> {
    Fleet,
    Peer(&'a str),
    Host(&'a str),
}

impl Scope<'_> {
    fn text(self) -> String {
        match self {
            Scope::Fleet => "*".to_string(),
            Scope::Peer(host) => format!("peer:{}", shape(host)),
            Scope::Host(host) => format!("host:{}", host.to_ascii_lowercase()),
        }
    }
}

/// A hasher for keys that are hashes already: one multiply-and-fold spreads them over buckets.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        let x = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^ (x >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<Prehashed>>;

/// What the baseline held for one value of one table: counts at each level and the smoothed
/// chance of the value for this host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    /// (times seen, events counted) on this host.
    pub host: (u64, u64),
    /// (times seen, events counted) across the host's peer group.
    pub peer: (u64, u64),
    /// (times seen, events counted) across the fleet.
    pub fleet: (u64, u64),
    /// The fleet's chance of a value it has not seen (Good–Turing: values seen once, plus one,
    /// over events plus one).
    pub novelty: f64,
    /// The smoothed chance of this value for this host.
    pub probability: f64,
    /// `-ln(probability) / ln(fleet events + 2)`, in [0, 1]: the feature.
    pub rarity: f64,
}

/// How often each value was seen in the baseline, per table and scope. Written to the model
/// file; [`Vocabulary::index`] turns it into hashed counts for scoring.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Vocabulary {
    /// Table name, then scope (`*`, `peer:<shape>`, `host:<name>`), then value, to count. (Ordered
    /// maps: the model file is the same for the same baseline, so a retrained model diffs
    /// cleanly in a repository.)
    pub counts: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>,
    /// Peer group (host name shape) to the hosts seen in it.
    pub peers: BTreeMap<String, BTreeSet<String>>,
    #[serde(skip)]
    index: Index,
}

#[derive(Debug, Clone, Default)]
struct Index {
    /// Key of table, scope and value to count.
    counts: KeyMap<u64>,
    /// Key of table and scope to what the scope saw as a whole.
    scopes: KeyMap<ScopeStats>,
    /// Per table (in `Table::ALL` order): the fleet's chance of a value it has not seen.
    novelty: [f64; 8],
    /// Per table: `1 / ln(fleet events + 2)`, the rarity's scale, worked out once.
    inverse_log_total: [f64; 8],
}

#[derive(Debug, Clone, Copy)]
struct ScopeStats {
    /// Events counted.
    total: u64,
    /// Distinct values among them.
    distinct: u64,
}

impl ScopeStats {
    /// For a scope nobody counted: the level above decides.
    const EMPTY: ScopeStats = ScopeStats {
        total: 0,
        distinct: 0,
    };

    /// The chance of a value seen `count` times here, `above` its chance one level up.
    fn chance(self, count: u64, above: f64) -> f64 {
        if self.total == 0 {
            return above;
        }
        let weight = self.distinct as f64;
        (count as f64 + weight * above) / (self.total as f64 + weight)
    }
}

/// The fleet's chance of a value it has not seen: values seen once, plus one, over events plus
/// one (Good–Turing).
fn novelty(once: u64, total: u64) -> f64 {
    ((once as f64 + 1.0) / (total as f64 + 1.0)).min(1.0)
}

impl PartialEq for Vocabulary {
    fn eq(&self, other: &Vocabulary) -> bool {
        self.counts == other.counts && self.peers == other.peers
    }
}

/// `text` in ASCII lowercase, borrowed when it already is.
fn lowered(text: &str) -> std::borrow::Cow<'_, str> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(text.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

fn field(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("")
}

/// The combinations an event is counted under, with the host they are counted for.
pub fn values_of(event: &Event) -> ([Option<(Table, Value<'_>)>; 3], &str) {
    let host = field(&event.host);
    let values = match event.kind {
        EventKind::ProcessCreate => [
            Some((Table::Process, Value::One(field(&event.name)))),
            Some((
                Table::ParentChild,
                Value::Pair(field(&event.parent_name), field(&event.name)),
            )),
            Some((Table::User, Value::One(field(&event.user)))),
        ],
        EventKind::NetworkConnection => [
            Some((Table::NetProcess, Value::One(field(&event.name)))),
            Some((
                Table::ProcessPort,
                Value::Port(field(&event.name), event.remote_port.unwrap_or(0)),
            )),
            None,
        ],
        // The registered domain is not borrowed from the event; `extract` and `learn` look it
        // up themselves.
        EventKind::DnsQuery => [None, None, None],
        EventKind::Login => [
            Some((Table::LoginUser, Value::One(field(&event.user)))),
            Some((Table::Method, Value::One(field(&event.method)))),
            None,
        ],
    };
    (values, host)
}

impl Vocabulary {
    fn add(&mut self, table: Table, host: &str, value: Value<'_>) {
        let tables = self.counts.entry(table.as_str().to_string()).or_default();
        for scope in [Scope::Fleet, Scope::Peer(host), Scope::Host(host)] {
            let shaped = table.shaped_above_host() && !matches!(scope, Scope::Host(_));
            *tables
                .entry(scope.text())
                .or_default()
                .entry(value.text(shaped))
                .or_default() += 1;
        }
        self.peers
            .entry(shape(host))
            .or_default()
            .insert(host.to_ascii_lowercase());
    }

    /// Counts the combinations of one baseline event.
    pub fn learn(&mut self, event: &Event) {
        let (values, host) = values_of(event);
        for (table, value) in values.into_iter().flatten() {
            self.add(table, host, value);
        }
        if event.kind == EventKind::DnsQuery {
            let name = lowered(field(&event.query_name));
            let domain = registrable(&name);
            self.add(Table::Domain, host, Value::One(domain));
        }
    }

    /// Hashes every count once; called after learning or loading. A table the build does not
    /// know is left out (the model check reports it).
    pub fn index(&mut self) {
        let mut index = Index::default();
        for (name, scopes) in &self.counts {
            let Some(table) = Table::parse(name) else {
                continue;
            };
            let base = Key::new(table);
            for (scope, values) in scopes {
                // Stored scopes and values are already lowercase and shaped: hashed as they are.
                let key = base.text(scope).end();
                for (value, count) in values {
                    index.counts.insert(key.text(value).0, *count);
                }
                let stats = ScopeStats {
                    // Saturating: a hand-edited file with absurd counts must not overflow.
                    total: values.values().fold(0u64, |t, c| t.saturating_add(*c)),
                    distinct: values.len() as u64,
                };
                index.scopes.insert(key.0, stats);
                if scope == "*" {
                    let once = values.values().filter(|c| **c == 1).count() as u64;
                    index.novelty[table as usize] = novelty(once, stats.total);
                    index.inverse_log_total[table as usize] = 1.0 / (stats.total as f64 + 2.0).ln();
                }
            }
        }
        for (i, table) in Table::ALL.iter().enumerate() {
            let counted = self
                .counts
                .get(table.as_str())
                .is_some_and(|scopes| scopes.contains_key("*"));
            if !counted {
                index.novelty[i] = 1.0;
                index.inverse_log_total[i] = 1.0 / 2f64.ln();
            }
        }
        self.index = index;
    }

    /// Whether every stored scope is one [`Vocabulary::index`] can match an event to.
    pub fn check(&self) -> Result<(), String> {
        for (name, scopes) in &self.counts {
            if Table::parse(name).is_none() {
                return Err(format!(
                    "`vocabulary.counts.{name}` is not a table this palisade counts"
                ));
            }
            for scope in scopes.keys() {
                let known = scope == "*"
                    || scope.strip_prefix("peer:").is_some_and(|s| shape(s) == *s)
                    || scope
                        .strip_prefix("host:")
                        .is_some_and(|s| s.to_ascii_lowercase() == *s);
                if !known {
                    return Err(format!(
                        "`vocabulary.counts.{name}` has the scope `{scope}`; scopes are `*`, `peer:<lowercase shape>` or `host:<lowercase name>`"
                    ));
                }
            }
        }
        Ok(())
    }

    /// What the baseline held for `value` of `table` on `host`, and its chance for the host.
    pub fn seen(&self, table: Table, host: &str, value: Value<'_>) -> Seen {
        let base = Key::new(table);
        let shaped = table.shaped_above_host();
        let level = |scope: Scope<'_>, shaped: bool| {
            let scope_key = base.scope(scope);
            let stats = self
                .index
                .scopes
                .get(&scope_key.0)
                .copied()
                .unwrap_or(ScopeStats::EMPTY);
            let count = if stats.total == 0 {
                0
            } else {
                let key = value.feed(scope_key, shaped);
                self.index.counts.get(&key.0).copied().unwrap_or(0)
            };
            (count, stats)
        };
        let (fleet_count, fleet) = level(Scope::Fleet, shaped);
        let (peer_count, peer) = level(Scope::Peer(host), shaped);
        let (host_count, own) = level(Scope::Host(host), false);
        let novelty = self.index.novelty[table as usize];
        let fleet_p = if fleet_count == 0 || fleet.total == 0 {
            novelty
        } else {
            (1.0 - novelty) * fleet_count as f64 / fleet.total as f64
        };
        let peer_p = peer.chance(peer_count, fleet_p);
        let probability = own.chance(host_count, peer_p).max(f64::MIN_POSITIVE);
        let rarity =
            (-probability.ln() * self.index.inverse_log_total[table as usize]).clamp(0.0, 1.0);
        Seen {
            host: (host_count, own.total),
            peer: (peer_count, peer.total),
            fleet: (fleet_count, fleet.total),
            novelty,
            probability,
            rarity,
        }
    }

    /// The hosts of `host`'s peer group in the baseline.
    pub fn peers_of(&self, host: &str) -> Option<&BTreeSet<String>> {
        self.peers.get(&shape(host))
    }
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

/// Which features are rarities, and of which table; the others are measured from the event.
pub fn rarity_table(kind: EventKind, feature: usize) -> Option<Table> {
    match (kind, feature) {
        (EventKind::ProcessCreate, 2) => Some(Table::Process),
        (EventKind::ProcessCreate, 3) => Some(Table::ParentChild),
        (EventKind::ProcessCreate, 4) => Some(Table::User),
        (EventKind::NetworkConnection, 2) => Some(Table::NetProcess),
        (EventKind::NetworkConnection, 3) => Some(Table::ProcessPort),
        (EventKind::DnsQuery, 2) => Some(Table::Domain),
        (EventKind::Login, 2) => Some(Table::LoginUser),
        (EventKind::Login, 3) => Some(Table::Method),
        _ => None,
    }
}

/// What the baseline held for each rarity feature of `event`, in feature order.
pub fn seen_of(event: &Event, vocabulary: &Vocabulary) -> Vec<(Table, String, Seen)> {
    let (values, host) = values_of(event);
    let mut out: Vec<(Table, String, Seen)> = values
        .into_iter()
        .flatten()
        .map(|(table, value)| {
            (
                table,
                value.text(false),
                vocabulary.seen(table, host, value),
            )
        })
        .collect();
    if event.kind == EventKind::DnsQuery {
        let name = lowered(field(&event.query_name));
        let domain = registrable(&name);
        out.push((
            Table::Domain,
            domain.to_string(),
            vocabulary.seen(Table::Domain, host, Value::One(domain)),
        ));
    }
    out
}

/// The feature vector of an event, in the order of [`names`].
pub fn extract(event: &Event, vocabulary: &Vocabulary, out: &mut Vec<f64>) {
    out.clear();
    let seconds_of_day = event.timestamp_ms.rem_euclid(86_400_000) as f64 / 1000.0;
    let angle = seconds_of_day / 86_400.0 * std::f64::consts::TAU;
    out.push(angle.sin());
    out.push(angle.cos());
    let (values, host) = values_of(event);
    for (table, value) in values.into_iter().flatten() {
        out.push(vocabulary.seen(table, host, value).rarity);
    }
    match event.kind {
        EventKind::ProcessCreate => {
            let cmdline = field(&event.cmdline);
            out.push((1.0 + cmdline.len() as f64).ln());
            out.push(entropy(cmdline));
        }
        EventKind::NetworkConnection => {
            let port = event.remote_port.unwrap_or(0);
            out.push(f64::from(u8::from(port < 1024)));
            out.push(f64::from(u8::from(port >= 49_152)));
            out.push(f64::from(u8::from(event.remote_ip.is_some_and(is_public))));
        }
        EventKind::DnsQuery => {
            let name = lowered(field(&event.query_name));
            let name = name.trim_end_matches('.');
            let domain = registrable(name);
            out.push(
                vocabulary
                    .seen(Table::Domain, host, Value::One(domain))
                    .rarity,
            );
            out.push((1.0 + name.len() as f64).ln());
            out.push(name.split('.').count() as f64);
            // The most random label: a generated name or a tunnelled payload stands out there.
            out.push(name.split('.').map(entropy).fold(0.0, f64::max));
            let digits = name.bytes().filter(u8::is_ascii_digit).count();
            out.push(digits as f64 / name.len().max(1) as f64);
        }
        EventKind::Login => {
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

    fn process(host: &str, user: &str, parent: &str, name: &str) -> Event {
        let mut event = Event::new("e", EventKind::ProcessCreate, 1_700_000_000_000);
        event.host = Some(host.into());
        event.user = Some(user.into());
        event.parent_name = Some(parent.into());
        event.name = Some(name.into());
        event
    }

    /// Thirty workstations, each its own user, all starting the same few programs.
    fn office() -> Vocabulary {
        let mut v = Vocabulary::default();
        for w in 1..=30 {
            for (i, name) in ["chrome.exe", "outlook.exe", "teams.exe"]
                .iter()
                .enumerate()
            {
                for _ in 0..(10 * (i + 1)) {
                    v.learn(&process(
                        &format!("WS-{w:02}"),
                        &format!("CORP\\user{w:02}"),
                        "explorer.exe",
                        name,
                    ));
                }
            }
        }
        v.index();
        v
    }

    #[test]
    fn keys_built_from_an_event_match_the_stored_text() {
        let v = office();
        let seen = v.seen(
            Table::ParentChild,
            "ws-03",
            Value::Pair("Explorer.EXE", "Chrome.exe"),
        );
        assert_eq!(seen.host, (10, 60));
        assert_eq!(seen.peer, (300, 1800));
        assert_eq!(seen.fleet, (300, 1800));
        let user = v.seen(Table::User, "WS-03", Value::One("corp\\USER03"));
        assert_eq!(user.host, (60, 60));
        assert_eq!(
            user.peer,
            (1800, 1800),
            "accounts are shaped above the host"
        );
        assert_eq!(
            v.seen(
                Table::ParentChild,
                "ws-03",
                Value::Pair("explorer.exe", "chrome.exe")
            ),
            seen
        );
    }

    #[test]
    fn a_new_host_and_user_like_their_peers_are_not_rare() {
        let v = office();
        let usual = v
            .seen(Table::User, "ws-03", Value::One("corp\\user03"))
            .rarity;
        let joiner = v
            .seen(Table::User, "ws-41", Value::One("corp\\user41"))
            .rarity;
        assert!(joiner < 0.1, "{joiner}");
        assert!((joiner - usual).abs() < 0.05, "{joiner} vs {usual}");
        let program = v
            .seen(
                Table::ParentChild,
                "ws-41",
                Value::Pair("explorer.exe", "teams.exe"),
            )
            .rarity;
        assert!(program < 0.2, "{program}");
    }

    #[test]
    fn another_account_on_a_host_with_history_is_rarer_than_its_own() {
        let v = office();
        let own = v
            .seen(Table::User, "ws-03", Value::One("corp\\user03"))
            .rarity;
        let other = v
            .seen(Table::User, "ws-03", Value::One("corp\\user17"))
            .rarity;
        assert!(other > own + 0.1, "{other} vs {own}");
    }

    #[test]
    fn an_unseen_value_is_as_rare_as_the_fleets_own_rate_of_new_values() {
        // A fleet that never showed a new program: an unseen one is as rare as it gets.
        let still = office();
        let never = still.seen(Table::Process, "ws-03", Value::One("never.exe"));
        assert!(never.rarity > 0.9, "{never:?}");
        // The same fleet where every tenth start was a program seen once (installers, updates):
        // an unseen program is far less surprising.
        let mut v = office();
        for i in 0..600 {
            v.learn(&process(
                "ws-05",
                "corp\\user05",
                "explorer.exe",
                &format!("setup-{i}.exe"),
            ));
        }
        v.index();
        let lively = v.seen(Table::Process, "ws-03", Value::One("never.exe"));
        assert!(
            lively.rarity < never.rarity - 0.2,
            "{lively:?} vs {never:?}"
        );
    }

    #[test]
    fn a_host_name_with_a_separator_does_not_reach_another_key() {
        let v = office();
        // Scope and value are separated by a byte no text has, so no host name can end where a
        // stored value would begin.
        let odd = v.seen(Table::Process, "ws-03\u{0}chrome.exe", Value::One(""));
        assert_eq!(odd.host, (0, 0));
        assert_eq!(odd.fleet.0, 0);
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
