//! Indicators of compromise and the one normalization both indicators and event values go
//! through, so that `HTTP://Evil.COM/a` from a feed and `http://evil.com/a` from a sensor meet.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

// The kind is plain data a detection carries with its hits; it lives with the detection.
pub use crate::detection::IndicatorKind;

/// One indicator from one source. The same value from two sources is two indicators; both
/// match, and each keeps its own confidence and lifetime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Indicator {
    pub kind: IndicatorKind,
    /// The canonical value (see [`canonical`]).
    pub value: String,
    pub source: String,
    /// 0–100.
    pub confidence: u8,
    /// 0–100: how bad the threat is when the indicator is right.
    pub severity: u8,
    pub tags: Vec<String>,
    /// Threat or malware family (`Emotet`, `botnet_cc`).
    pub threat: Option<String>,
    /// Milliseconds since the epoch.
    pub first_seen_ms: Option<i64>,
    pub last_seen_ms: Option<i64>,
    /// After this the indicator never matches.
    pub valid_until_ms: Option<i64>,
    /// A link or id at the source.
    pub reference: Option<String>,
    /// For domains: whether subdomains match too.
    pub subdomains: bool,
    pub revoked: bool,
}

impl Indicator {
    /// An indicator with neutral defaults, for importers to fill in.
    pub fn new(kind: IndicatorKind, value: String, source: &str) -> Indicator {
        Indicator {
            kind,
            value,
            source: source.to_string(),
            confidence: 50,
            severity: 50,
            tags: Vec::new(),
            threat: None,
            first_seen_ms: None,
            last_seen_ms: None,
            valid_until_ms: None,
            reference: None,
            subdomains: kind == IndicatorKind::Domain,
            revoked: false,
        }
    }

    /// Seed 001's threat score: 0.7 × confidence + 0.3 × severity, 0–100.
    pub fn score(&self) -> f64 {
        0.7 * f64::from(self.confidence) + 0.3 * f64::from(self.severity)
    }

    /// Whether the indicator may match at `now_ms`.
    pub fn is_live(&self, now_ms: i64) -> bool {
        !self.revoked && self.valid_until_ms.is_none_or(|until| until > now_ms)
    }
}

/// Why a value could not become an indicator: the value (shortened, escaped) and the reason,
/// kept apart so a report can count reasons without one entry per distinct value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidIndicator {
    /// The value as given (at most 80 characters, control characters escaped); may be empty.
    pub value: String,
    pub reason: String,
}

impl std::fmt::Display for InvalidIndicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.value.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "`{}` {}", self.value, self.reason)
        }
    }
}

impl std::error::Error for InvalidIndicator {}

/// `value` refused for `reason` (which reads after the value: "is not a domain").
fn refused(value: &str, reason: impl Into<String>) -> InvalidIndicator {
    InvalidIndicator {
        value: shorten(value),
        reason: reason.into(),
    }
}

fn invalid(message: impl Into<String>) -> InvalidIndicator {
    InvalidIndicator {
        value: String::new(),
        reason: message.into(),
    }
}

/// Undoes the usual defanging (`hxxp`, `[.]`, `(.)`, `[:]`) that reports use so links are not
/// clickable.
pub fn refang(value: &str) -> String {
    value
        .trim()
        .replace("[.]", ".")
        .replace("(.)", ".")
        .replace("{.}", ".")
        .replace("[:]", ":")
        .replace("hxxps://", "https://")
        .replace("hxxp://", "http://")
        .replace("HXXPS://", "https://")
        .replace("HXXP://", "http://")
}

/// The canonical form of `value` as an indicator of `kind`; `None` for `kind` guesses it.
pub fn canonical(
    kind: Option<IndicatorKind>,
    value: &str,
) -> Result<(IndicatorKind, String), InvalidIndicator> {
    let value = refang(value);
    let kind = match kind {
        Some(kind) => kind,
        None => guess_kind(&value)
            .ok_or_else(|| refused(&value, "is not an address, range, domain, URL or hash"))?,
    };
    let canonical = match kind {
        IndicatorKind::Ip | IndicatorKind::Cidr => {
            let (kind, network) = canonical_network(&value)?;
            // `0.0.0.0` and `::` name no host: a feed row for one is junk (random text yields
            // `::` readily), and as a block it would mean nothing or everything.
            if kind == IndicatorKind::Ip
                && network
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_unspecified())
            {
                return Err(refused(
                    &value,
                    "is the unspecified address, which no host has",
                ));
            }
            return Ok((kind, network));
        }
        IndicatorKind::Domain => {
            let domain = canonical_domain(&value)?;
            refuse_public_suffix(&domain)?;
            domain
        }
        IndicatorKind::Url => canonical_url(&value)?,
        IndicatorKind::Md5 | IndicatorKind::Sha1 | IndicatorKind::Sha256 => {
            let (hash_kind, hash) = canonical_hash(&value)?;
            if hash_kind != kind {
                return Err(refused(
                    &value,
                    format!("is not a {} hash (length {})", kind.as_str(), value.len()),
                ));
            }
            hash
        }
    };
    Ok((kind, canonical))
}

fn shorten(value: &str) -> String {
    let cut: String = value.chars().take(80).collect();
    cut.escape_debug().to_string()
}

fn guess_kind(value: &str) -> Option<IndicatorKind> {
    if value.contains("://") {
        return Some(IndicatorKind::Url);
    }
    if value.contains('/') && canonical_network(value).is_ok() {
        return Some(IndicatorKind::Cidr);
    }
    if value.parse::<IpAddr>().is_ok() {
        return Some(IndicatorKind::Ip);
    }
    if let Ok((kind, _)) = canonical_hash(value) {
        return Some(kind);
    }
    canonical_domain(value).ok().map(|_| IndicatorKind::Domain)
}

/// An address or range: IPv4-mapped IPv6 becomes IPv4, host bits are masked, and a /32 or /128
/// is a plain address.
pub fn canonical_network(value: &str) -> Result<(IndicatorKind, String), InvalidIndicator> {
    let (ip_text, prefix_text) = match value.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix)),
        None => (value, None),
    };
    let ip: IpAddr = ip_text
        .trim()
        .parse()
        .map_err(|_| refused(value, "is not an IP address"))?;
    let mapped_prefix_shift = matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
    let ip = crate::event::canonical_ip(ip);
    let full: u8 = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = match prefix_text {
        None => full,
        Some(p) => {
            let p: u8 = p
                .trim()
                .parse()
                .map_err(|_| refused(value, "has a bad prefix length"))?;
            // `::ffff:1.2.3.0/120` is `1.2.3.0/24`.
            let p = if mapped_prefix_shift {
                p.checked_sub(96)
                    .ok_or_else(|| refused(value, "is wider than IPv4"))?
            } else {
                p
            };
            if p > full {
                return Err(refused(value, format!("has a prefix longer than {full}")));
            }
            p
        }
    };
    if prefix == full {
        return Ok((IndicatorKind::Ip, ip.to_string()));
    }
    Ok((
        IndicatorKind::Cidr,
        format!("{}/{prefix}", mask(ip, prefix)),
    ))
}

/// Refuses a canonical range wider than `limits` allows for its family. The value checked is
/// the canonical one (host bits masked, IPv4-mapped IPv6 unmapped), the form the matcher and a
/// firewall would act on, so `::ffff:0.0.0.0/96` and `1.2.3.4/0` are both seen as `0.0.0.0/0`.
pub fn check_breadth(
    kind: IndicatorKind,
    value: &str,
    limits: crate::intel::IntelMaxPrefix,
) -> Result<(), InvalidIndicator> {
    if kind != IndicatorKind::Cidr {
        return Ok(());
    }
    let Some((ip, prefix)) = value.split_once('/') else {
        return Ok(());
    };
    let (Ok(ip), Ok(prefix)) = (ip.parse::<IpAddr>(), prefix.parse::<u8>()) else {
        return Err(refused(value, "is not a canonical range"));
    };
    let (family, key, limit) = if ip.is_ipv4() {
        ("IPv4", "ipv4", limits.ipv4)
    } else {
        ("IPv6", "ipv6", limits.ipv6)
    };
    if prefix < limit {
        return Err(InvalidIndicator {
            value: value.to_string(),
            reason: format!(
                "is wider than the /{limit} an {family} indicator may cover (`intel.max_prefix.{key}`)"
            ),
        });
    }
    Ok(())
}

/// `ip` with every bit after the first `prefix` cleared.
pub fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let masked = if prefix == 0 {
                0
            } else {
                bits & (u32::MAX << (32 - u32::from(prefix)))
            };
            IpAddr::V4(masked.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let masked = if prefix == 0 {
                0
            } else {
                bits & (u128::MAX << (128 - u32::from(prefix)))
            };
            IpAddr::V6(masked.into())
        }
    }
}

/// Lower case, no trailing dot, no port, IDNA A-labels, and a host name real DNS could hold
/// (see [`hostname_problem`]). At least two labels: a bare TLD is never an indicator.
pub fn canonical_domain(value: &str) -> Result<String, InvalidIndicator> {
    let value = value.trim().trim_end_matches('.');
    let host = match value.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !host.contains(':') => {
            host
        }
        _ => value,
    };
    if host.is_empty() || host.contains(['/', ' ', '@']) || host.parse::<IpAddr>().is_ok() {
        return Err(refused(value, "is not a domain"));
    }
    let ascii =
        idna::domain_to_ascii(host).map_err(|_| refused(value, "is not a valid domain name"))?;
    if ascii.split('.').count() < 2 {
        return Err(refused(value, "is not a domain with at least two labels"));
    }
    if let Some(problem) = hostname_problem(&ascii) {
        return Err(refused(value, problem));
    }
    Ok(ascii)
}

/// Why an ASCII (IDNA-converted, lower-case) name is not a host name, or `None` when it is one.
///
/// RFC 1123 host names: labels of 1–63 letters, digits and hyphens, not starting or ending
/// with a hyphen, 253 characters in all. The top-level label is not all digits (RFC 3696 2), so
/// `999.999.999.999` (a dotted quad that is no address) is refused rather than taken as a
/// domain. An underscore is allowed only in labels left of the registrable domain (its public
/// suffix and the label before it), where real DNS uses it (`_dmarc.example.com`,
/// `_sip._tcp.example.com`, Windows host names under a zone); registries never delegate a name
/// with one.
pub fn hostname_problem(ascii: &str) -> Option<&'static str> {
    if ascii.len() > 253 {
        return Some("is longer than the 253 characters a domain name may have");
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Some("has an empty label");
    }
    if labels.iter().any(|l| l.len() > 63) {
        return Some("has a label longer than 63 characters");
    }
    let top = labels.last().copied().unwrap_or_default();
    if top.bytes().all(|b| b.is_ascii_digit()) {
        return Some(
            if labels.len() == 4 && labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
                "looks like an IPv4 address but is not one"
            } else {
                "has an all-numeric top-level label, which no domain has"
            },
        );
    }
    // A name under a top-level domain that does not exist resolves nowhere on the internet,
    // and is what noise looks like (`o.d`, `c.tjx-17hj`): the top level must be one the Public
    // Suffix List knows, or a name reserved for testing and local use (RFC 2606, 6761, 6762).
    let special = [
        "example",
        "test",
        "invalid",
        "localhost",
        "local",
        "internal",
    ];
    if !special.contains(&top) && !psl::suffix(top.as_bytes()).is_some_and(|s| s.is_known()) {
        return Some("has a top-level domain that does not exist");
    }
    // Labels that make up the registrable domain: the public suffix and one more.
    let registrable = psl::suffix_str(ascii)
        .map_or(1, |suffix| suffix.split('.').count())
        .saturating_add(1);
    let underscore_from = labels.len().saturating_sub(registrable);
    for (index, label) in labels.iter().enumerate() {
        let underscore_ok = index < underscore_from;
        let ldh = label.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || b == b'-'
                || (underscore_ok && b == b'_')
        });
        if !ldh {
            return Some(
                if label.contains('_')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    "has an underscore in its registrable domain, which registries never allow"
                } else {
                    "has characters other than letters, digits and hyphens"
                },
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some("has a label starting or ending with a hyphen");
        }
    }
    None
}

/// A domain indicator must name something someone registered: a public suffix (`co.uk`,
/// `github.io`) would match every site below it.
pub fn refuse_public_suffix(domain: &str) -> Result<(), InvalidIndicator> {
    if psl::suffix_str(domain) == Some(domain) {
        return Err(refused(
            domain,
            "is a public suffix, not a domain anyone owns",
        ));
    }
    Ok(())
}

/// Scheme and host lower-cased (host as IDNA), default port and user info dropped, path and
/// query kept as they are.
pub fn canonical_url(value: &str) -> Result<String, InvalidIndicator> {
    let mut url =
        url::Url::parse(value.trim()).map_err(|e| refused(value, format!("is not a URL: {e}")))?;
    match url.host() {
        None => return Err(refused(value, "has no host")),
        // The URL parser allows characters in a host name (`!`, `$`) that DNS never holds.
        Some(url::Host::Domain(host)) => {
            if let Some(problem) = hostname_problem(host) {
                return Err(refused(
                    value,
                    format!("has a host name that is not one: it {problem}"),
                ));
            }
        }
        Some(_) => {}
    }
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_fragment(None);
    Ok(url.to_string())
}

/// Lower-case hex, its kind by length.
pub fn canonical_hash(value: &str) -> Result<(IndicatorKind, String), InvalidIndicator> {
    let value = value.trim();
    if !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refused(value, "is not a hex hash"));
    }
    let kind = match value.len() {
        32 => IndicatorKind::Md5,
        40 => IndicatorKind::Sha1,
        64 => IndicatorKind::Sha256,
        n => {
            return Err(invalid(format!(
                "a hash of {n} hex digits is not md5, sha1 or sha256"
            )));
        }
    };
    Ok((kind, value.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(kind: Option<IndicatorKind>, value: &str) -> (IndicatorKind, String) {
        canonical(kind, value).unwrap()
    }

    #[test]
    fn networks() {
        assert_eq!(
            ok(None, "185.12.33.4"),
            (IndicatorKind::Ip, "185.12.33.4".into())
        );
        assert_eq!(
            ok(None, "::ffff:185.12.33.4"),
            (IndicatorKind::Ip, "185.12.33.4".into())
        );
        assert_eq!(
            ok(None, "185.12.33.77/24"),
            (IndicatorKind::Cidr, "185.12.33.0/24".into())
        );
        assert_eq!(
            ok(None, "10.0.0.1/32"),
            (IndicatorKind::Ip, "10.0.0.1".into())
        );
        assert_eq!(
            ok(None, "2001:DB8::1/32"),
            (IndicatorKind::Cidr, "2001:db8::/32".into())
        );
        assert_eq!(
            ok(None, "::ffff:1.2.3.4/120"),
            (IndicatorKind::Cidr, "1.2.3.0/24".into())
        );
        assert_eq!(
            ok(None, "185[.]12[.]33[.]4"),
            (IndicatorKind::Ip, "185.12.33.4".into())
        );
        assert!(canonical(Some(IndicatorKind::Ip), "1.2.3.4/33").is_err());
        assert!(canonical(Some(IndicatorKind::Ip), "fe80::1%eth0").is_err());
    }

    #[test]
    fn domains_urls_hashes() {
        assert_eq!(
            ok(None, "Evil.Example.COM."),
            (IndicatorKind::Domain, "evil.example.com".into())
        );
        assert_eq!(
            ok(Some(IndicatorKind::Domain), "evil.example.com:8080"),
            (IndicatorKind::Domain, "evil.example.com".into())
        );
        assert_eq!(
            ok(None, "bücher.example"),
            (IndicatorKind::Domain, "xn--bcher-kva.example".into())
        );
        assert!(canonical(Some(IndicatorKind::Domain), "com").is_err());
        assert!(
            canonical(Some(IndicatorKind::Domain), "co.uk")
                .unwrap_err()
                .reason
                .contains("public suffix")
        );
        assert!(canonical(Some(IndicatorKind::Domain), "github.io").is_err());
        assert!(canonical(Some(IndicatorKind::Domain), "evil.co.uk").is_ok());
        assert_eq!(
            ok(None, "hxxp://User:pw@Evil.COM:80/A/b?q=1#frag"),
            (IndicatorKind::Url, "http://evil.com/A/b?q=1".into())
        );
        assert_eq!(
            ok(None, "D41D8CD98F00B204E9800998ECF8427E"),
            (
                IndicatorKind::Md5,
                "d41d8cd98f00b204e9800998ecf8427e".into()
            )
        );
        assert_eq!(ok(None, &"a".repeat(64)).0, IndicatorKind::Sha256);
        assert!(canonical(Some(IndicatorKind::Sha1), &"a".repeat(64)).is_err());
        assert!(canonical(None, "not an indicator at all").is_err());
    }

    #[test]
    fn hostnames_follow_rfc1123() {
        let domain = |v: &str| canonical(Some(IndicatorKind::Domain), v);
        assert!(domain(&format!("{}.example", "a".repeat(63))).is_ok());
        assert!(domain(&format!("{}.example", "a".repeat(64))).is_err());
        let long = format!("{}example", "abcdefghi.".repeat(25));
        assert!(long.len() > 253 && domain(&long).is_err());
        for bad in [
            "!!e$9.sju$",
            "-evil.example",
            "evil-.example",
            "ev il.example",
            "evil.exa_mple",
            "ev_il.example",
            "ev_il.co.uk",
            "999.999.999.999",
            "1.2.3",
            "evil.123",
            "o.d",
            "c.tjx-17hj",
            "evil.notatld",
        ] {
            assert!(domain(bad).is_err(), "{bad} must be refused");
            assert!(
                canonical(None, bad).is_err(),
                "{bad} must not be guessed as anything"
            );
        }
        assert!(
            domain("999.999.999.999")
                .unwrap_err()
                .reason
                .contains("looks like an IPv4 address")
        );
        // Underscores below the registrable domain, where DNS uses them.
        assert!(domain("_dmarc.evil.example").is_ok());
        assert!(domain("_sip._tcp.evil.co.uk").is_ok());
        assert!(domain("my_host.evil.example").is_ok());
        assert!(domain("xn--bcher-kva.example").is_ok());
        assert!(domain("123.evil.example").is_ok());
        for tld in ["com", "de", "xn--p1ai", "onion", "test", "internal"] {
            assert!(domain(&format!("evil.{tld}")).is_ok(), "{tld}");
        }
        assert!(canonical(None, "::").is_err() && canonical(None, "0.0.0.0").is_err());
        assert!(canonical(None, "::5").is_ok());
        // URL hosts are held to the same rule.
        assert!(canonical(Some(IndicatorKind::Url), "http://!!e$9.sju$/x").is_err());
        assert!(canonical(Some(IndicatorKind::Url), "http://evil.example/x").is_ok());
    }

    #[test]
    fn score_and_lifetime() {
        let mut i = Indicator::new(IndicatorKind::Ip, "1.2.3.4".into(), "test");
        i.confidence = 90;
        i.severity = 60;
        assert!((i.score() - 81.0).abs() < 1e-9);
        i.valid_until_ms = Some(1000);
        assert!(i.is_live(999) && !i.is_live(1000));
        i.valid_until_ms = None;
        i.revoked = true;
        assert!(!i.is_live(0));
    }

    proptest::proptest! {
        #[test]
        fn canonical_is_idempotent(value in "[a-zA-Z0-9.:/\\[\\]-]{1,40}") {
            if let Ok((kind, first)) = canonical(None, &value) {
                let again = canonical(Some(kind), &first);
                proptest::prop_assert_eq!(again, Ok((kind, first)));
            }
        }
    }
}
