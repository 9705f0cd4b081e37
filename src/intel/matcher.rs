//! The in-memory matcher: built from the live indicators off to the side, then swapped in
//! whole ([`IntelHandle`]), so a lookup always sees one consistent snapshot.
//!
//! Exact kinds (addresses, domains, URLs, hashes) are hash-map probes. Ranges are kept in one
//! map per prefix length that occurs; a lookup masks the address once per such length, so it
//! finds *every* range containing the address, from every source, in at most 33 (IPv4) or 129
//! (IPv6) probes. Domains also match their parents when the parent's indicator says subdomains
//! count: `a.b.evil.example` probes `a.b.evil.example`, `b.evil.example`, `evil.example`.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;

use super::indicator::{
    Indicator, IndicatorKind, canonical, canonical_domain, canonical_url, mask,
};
use super::warninglist::Warninglists;
pub use crate::detection::IntelHit;

/// One indicator's facts, compactly: the value itself is the map key.
#[derive(Debug, Clone, Copy)]
struct Entry {
    source: u32,
    threat: u32,
    warning: u32,
    confidence: u8,
    severity: u8,
    subdomains: bool,
}

const NONE: u32 = u32::MAX;

/// A run of entries in [`Matcher::entries`] (one value, possibly from several sources).
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

/// A snapshot of the live indicators, ready for lookups.
#[derive(Debug, Default)]
pub struct Matcher {
    entries: Vec<Entry>,
    /// Interned sources, threats and warninglist names.
    names: Vec<Arc<str>>,
    ips: FxHashMap<IpAddr, Span>,
    /// (prefix length, masked network) → entries; one map per family keeps probes cheap.
    v4_ranges: FxHashMap<(u8, IpAddr), Span>,
    v6_ranges: FxHashMap<(u8, IpAddr), Span>,
    v4_prefixes: Vec<u8>,
    v6_prefixes: Vec<u8>,
    domains: FxHashMap<Box<str>, Span>,
    urls: FxHashMap<Box<str>, Span>,
    hashes: FxHashMap<Box<str>, Span>,
    built_at_ms: i64,
}

impl Matcher {
    /// Builds a snapshot of the indicators live at `now_ms`, marking those on a warninglist.
    pub fn build(
        mut indicators: Vec<Indicator>,
        warninglists: &Warninglists,
        now_ms: i64,
    ) -> Matcher {
        indicators.retain(|i| i.is_live(now_ms));
        indicators.sort_by(|a, b| (a.kind, &a.value).cmp(&(b.kind, &b.value)));
        let mut matcher = Matcher {
            built_at_ms: now_ms,
            ..Matcher::default()
        };
        let mut interned: FxHashMap<Arc<str>, u32> = FxHashMap::default();
        let mut intern = |names: &mut Vec<Arc<str>>, text: &str| -> u32 {
            if let Some(index) = interned.get(text) {
                return *index;
            }
            let index = u32::try_from(names.len()).unwrap_or(NONE);
            let name: Arc<str> = Arc::from(text);
            names.push(name.clone());
            interned.insert(name, index);
            index
        };
        let mut i = 0;
        while i < indicators.len() {
            let (kind, value) = (indicators[i].kind, indicators[i].value.clone());
            let start = u32::try_from(matcher.entries.len()).unwrap_or(NONE);
            let warning = warninglists.listing(kind, &value);
            while i < indicators.len() && indicators[i].kind == kind && indicators[i].value == value
            {
                let indicator = &indicators[i];
                let entry = Entry {
                    source: intern(&mut matcher.names, &indicator.source),
                    threat: indicator
                        .threat
                        .as_deref()
                        .map_or(NONE, |t| intern(&mut matcher.names, t)),
                    warning: warning.map_or(NONE, |w| intern(&mut matcher.names, w)),
                    confidence: indicator.confidence,
                    severity: indicator.severity,
                    subdomains: indicator.subdomains,
                };
                matcher.entries.push(entry);
                i += 1;
            }
            let span = Span {
                start,
                len: u32::try_from(matcher.entries.len()).unwrap_or(NONE) - start,
            };
            matcher.insert(kind, &value, span);
        }
        matcher.v4_prefixes.sort_unstable_by(|a, b| b.cmp(a));
        matcher.v6_prefixes.sort_unstable_by(|a, b| b.cmp(a));
        matcher
    }

    fn insert(&mut self, kind: IndicatorKind, value: &str, span: Span) {
        match kind {
            IndicatorKind::Ip => {
                if let Ok(ip) = value.parse() {
                    self.ips.insert(ip, span);
                }
            }
            IndicatorKind::Cidr => {
                let Some((ip, prefix)) = value.split_once('/') else {
                    return;
                };
                let (Ok(ip), Ok(prefix)) = (ip.parse::<IpAddr>(), prefix.parse::<u8>()) else {
                    return;
                };
                let (ranges, prefixes) = match ip {
                    IpAddr::V4(_) => (&mut self.v4_ranges, &mut self.v4_prefixes),
                    IpAddr::V6(_) => (&mut self.v6_ranges, &mut self.v6_prefixes),
                };
                ranges.insert((prefix, ip), span);
                if !prefixes.contains(&prefix) {
                    prefixes.push(prefix);
                }
            }
            IndicatorKind::Domain => {
                self.domains.insert(value.into(), span);
            }
            IndicatorKind::Url => {
                self.urls.insert(value.into(), span);
            }
            IndicatorKind::Md5 | IndicatorKind::Sha1 | IndicatorKind::Sha256 => {
                self.hashes.insert(value.into(), span);
            }
        }
    }

    /// How many indicators the snapshot holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn built_at_ms(&self) -> i64 {
        self.built_at_ms
    }

    fn hits(
        &self,
        span: Span,
        value: &str,
        indicator: &str,
        kind: IndicatorKind,
        parent_only: bool,
        out: &mut Vec<IntelHit>,
    ) {
        let name = |index: u32| (index != NONE).then(|| self.names[index as usize].to_string());
        for entry in &self.entries[span.start as usize..(span.start + span.len) as usize] {
            if parent_only && !entry.subdomains {
                continue;
            }
            out.push(IntelHit {
                value: value.to_string(),
                indicator: indicator.to_string(),
                kind,
                source: name(entry.source).unwrap_or_default(),
                confidence: entry.confidence,
                severity: entry.severity,
                score: 0.7 * f64::from(entry.confidence) + 0.3 * f64::from(entry.severity),
                threat: name(entry.threat),
                warning: name(entry.warning),
            });
        }
    }

    /// Every indicator matching the address: itself, and every range containing it.
    pub fn lookup_ip(&self, ip: IpAddr, out: &mut Vec<IntelHit>) {
        let ip = crate::event::canonical_ip(ip);
        let text = || ip.to_string();
        if let Some(span) = self.ips.get(&ip) {
            let t = text();
            self.hits(*span, &t, &t, IndicatorKind::Ip, false, out);
        }
        let (ranges, prefixes) = match ip {
            IpAddr::V4(_) => (&self.v4_ranges, &self.v4_prefixes),
            IpAddr::V6(_) => (&self.v6_ranges, &self.v6_prefixes),
        };
        for prefix in prefixes {
            let network = mask(ip, *prefix);
            if let Some(span) = ranges.get(&(*prefix, network)) {
                self.hits(
                    *span,
                    &text(),
                    &format!("{network}/{prefix}"),
                    IndicatorKind::Cidr,
                    false,
                    out,
                );
            }
        }
    }

    /// Whether any indicator matches the address (the fast check, no allocation).
    pub fn contains_ip(&self, ip: IpAddr) -> bool {
        let ip = crate::event::canonical_ip(ip);
        if self.ips.contains_key(&ip) {
            return true;
        }
        let (ranges, prefixes) = match ip {
            IpAddr::V4(_) => (&self.v4_ranges, &self.v4_prefixes),
            IpAddr::V6(_) => (&self.v6_ranges, &self.v6_prefixes),
        };
        prefixes
            .iter()
            .any(|p| ranges.contains_key(&(*p, mask(ip, *p))))
    }

    /// A canonical domain: exact indicators, and parents whose indicators include subdomains.
    pub fn lookup_domain(&self, domain: &str, out: &mut Vec<IntelHit>) {
        if self.domains.is_empty() {
            return;
        }
        let mut rest = domain;
        let mut exact = true;
        loop {
            if let Some(span) = self.domains.get(rest) {
                self.hits(*span, domain, rest, IndicatorKind::Domain, !exact, out);
            }
            match rest.split_once('.') {
                // Stop before probing a bare TLD: it can never be an indicator.
                Some((_, parent)) if parent.contains('.') => {
                    rest = parent;
                    exact = false;
                }
                _ => break,
            }
        }
    }

    pub fn lookup_url(&self, url: &str, out: &mut Vec<IntelHit>) {
        if let Some(span) = self.urls.get(url) {
            self.hits(*span, url, url, IndicatorKind::Url, false, out);
        }
    }

    /// A lower-case hex hash of any supported length.
    pub fn lookup_hash(&self, hash: &str, out: &mut Vec<IntelHit>) {
        if let Some(span) = self.hashes.get(hash) {
            let kind = match hash.len() {
                32 => IndicatorKind::Md5,
                40 => IndicatorKind::Sha1,
                _ => IndicatorKind::Sha256,
            };
            self.hits(*span, hash, hash, kind, false, out);
        }
    }

    /// Any value: its kind is guessed and it is canonicalized first (Rhai's `intel_lookup` and
    /// `palisade intel lookup`).
    pub fn lookup(&self, value: &str) -> Vec<IntelHit> {
        let mut out = Vec::new();
        let Ok((kind, canonical)) = canonical(None, value) else {
            return out;
        };
        match kind {
            IndicatorKind::Ip | IndicatorKind::Cidr => {
                if let Ok(ip) = canonical.split('/').next().unwrap_or_default().parse() {
                    self.lookup_ip(ip, &mut out);
                }
            }
            IndicatorKind::Domain => self.lookup_domain(&canonical, &mut out),
            IndicatorKind::Url => {
                self.lookup_url(&canonical, &mut out);
                // A URL's host is checked too: feeds list hosts more often than URLs.
                if let Ok(url) = url::Url::parse(&canonical) {
                    match url.host() {
                        Some(url::Host::Domain(host)) => self.lookup_domain(host, &mut out),
                        Some(url::Host::Ipv4(ip)) => self.lookup_ip(IpAddr::V4(ip), &mut out),
                        Some(url::Host::Ipv6(ip)) => self.lookup_ip(IpAddr::V6(ip), &mut out),
                        None => {}
                    }
                }
            }
            IndicatorKind::Md5 | IndicatorKind::Sha1 | IndicatorKind::Sha256 => {
                self.lookup_hash(&canonical, &mut out)
            }
        }
        out
    }

    /// The event's values checked against the snapshot: remote and source addresses, the
    /// queried domain, the process hash, and a `url` field when a sensor sends one.
    pub fn enrich(&self, event: &crate::event::Event, out: &mut Vec<IntelHit>) {
        if self.is_empty() {
            return;
        }
        for ip in [event.remote_ip, event.source_ip].into_iter().flatten() {
            if self.contains_ip(ip) {
                self.lookup_ip(ip, out);
            }
        }
        if let Some(name) = &event.query_name
            && let Ok(domain) = canonical_domain(name)
        {
            self.lookup_domain(&domain, out);
        }
        if let Some(hash) = &event.process_hash {
            self.lookup_hash(hash, out);
        }
        if let Some(serde_json::Value::String(url)) = event.extra.get("url")
            && let Ok(url) = canonical_url(url)
        {
            self.lookup_url(&url, out);
        }
    }
}

/// The matcher the engine reads, swapped whole when intel changes. Cloning shares it.
#[derive(Debug, Clone)]
pub struct IntelHandle(Arc<ArcSwap<Matcher>>);

impl Default for IntelHandle {
    fn default() -> IntelHandle {
        IntelHandle::new(Matcher::default())
    }
}

impl IntelHandle {
    pub fn new(matcher: Matcher) -> IntelHandle {
        IntelHandle(Arc::new(ArcSwap::from_pointee(matcher)))
    }

    /// The current snapshot.
    pub fn current(&self) -> arc_swap::Guard<Arc<Matcher>> {
        self.0.load()
    }

    /// Replaces the snapshot; lookups already running finish on the old one.
    pub fn swap(&self, matcher: Matcher) {
        self.0.store(Arc::new(matcher));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indicator(value: &str, source: &str, confidence: u8) -> Indicator {
        let (kind, value) = canonical(None, value).unwrap();
        let mut i = Indicator::new(kind, value, source);
        i.confidence = confidence;
        i
    }

    fn matcher(indicators: Vec<Indicator>) -> Matcher {
        Matcher::build(indicators, &Warninglists::default(), 1_000)
    }

    #[test]
    fn every_matching_range_from_every_source() {
        let m = matcher(vec![
            indicator("185.12.33.0/24", "feodo", 90),
            indicator("185.12.0.0/16", "abuseipdb", 40),
            indicator("185.12.33.4", "misp", 80),
            indicator("185.12.33.4", "otx", 30),
            indicator("10.0.0.0/8", "x", 50),
        ]);
        let hits = m.lookup("185.12.33.4");
        let mut found: Vec<(String, String)> = hits
            .iter()
            .map(|h| (h.indicator.clone(), h.source.clone()))
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                ("185.12.0.0/16".into(), "abuseipdb".into()),
                ("185.12.33.0/24".into(), "feodo".into()),
                ("185.12.33.4".into(), "misp".into()),
                ("185.12.33.4".into(), "otx".into()),
            ]
        );
        assert!(m.lookup("185.13.0.1").is_empty());
        assert!(m.contains_ip("::ffff:185.12.33.200".parse().unwrap()));
    }

    #[test]
    fn ipv6_ranges() {
        let m = matcher(vec![indicator("2001:db8:abcd::/48", "x", 50)]);
        assert_eq!(m.lookup("2001:db8:abcd:12::1").len(), 1);
        assert!(m.lookup("2001:db8:abce::1").is_empty());
    }

    #[test]
    fn subdomains_match_only_when_the_indicator_says_so() {
        let mut exact = indicator("exact.example", "stix", 50);
        exact.subdomains = false;
        let m = matcher(vec![indicator("evil.example", "misp", 50), exact]);
        assert_eq!(m.lookup("a.b.evil.example").len(), 1);
        assert_eq!(m.lookup("EVIL.example.").len(), 1);
        assert_eq!(m.lookup("exact.example").len(), 1);
        assert!(m.lookup("www.exact.example").is_empty());
        assert!(m.lookup("notevil.example").is_empty());
    }

    #[test]
    fn urls_hashes_and_url_hosts() {
        let m = matcher(vec![
            indicator("http://x4z9arb.cn/4712/", "stix", 50),
            indicator(
                "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                "misp",
                50,
            ),
            indicator("bad.example", "list", 50),
        ]);
        assert_eq!(m.lookup("HTTP://X4Z9ARB.cn/4712/").len(), 1);
        assert_eq!(
            m.lookup("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                .len(),
            1
        );
        assert_eq!(m.lookup("https://cdn.bad.example/x.js").len(), 1);
    }

    #[test]
    fn expired_and_revoked_never_match() {
        let mut expired = indicator("1.1.1.1", "a", 50);
        expired.valid_until_ms = Some(500);
        let mut revoked = indicator("2.2.2.2", "a", 50);
        revoked.revoked = true;
        let m = matcher(vec![expired, revoked]);
        assert!(m.is_empty());
        assert!(m.lookup("1.1.1.1").is_empty() && m.lookup("2.2.2.2").is_empty());
    }

    #[test]
    fn the_handle_swaps_whole_snapshots() {
        let handle = IntelHandle::default();
        let before = handle.current();
        handle.swap(matcher(vec![indicator("9.9.9.9", "a", 50)]));
        assert!(
            before.lookup("9.9.9.9").is_empty(),
            "an old snapshot stays whole"
        );
        assert_eq!(handle.current().lookup("9.9.9.9").len(), 1);
    }
}
