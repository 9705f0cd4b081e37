//! Indicators of compromise and the one normalization both indicators and event values go
//! through, so that `HTTP://Evil.COM/a` from a feed and `http://evil.com/a` from a sensor meet.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// What an indicator is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndicatorKind {
    /// A single IPv4 or IPv6 address.
    Ip,
    /// An IPv4 or IPv6 range.
    Cidr,
    Domain,
    Url,
    Md5,
    Sha1,
    Sha256,
}

impl IndicatorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IndicatorKind::Ip => "ip",
            IndicatorKind::Cidr => "cidr",
            IndicatorKind::Domain => "domain",
            IndicatorKind::Url => "url",
            IndicatorKind::Md5 => "md5",
            IndicatorKind::Sha1 => "sha1",
            IndicatorKind::Sha256 => "sha256",
        }
    }

    pub fn parse(name: &str) -> Option<IndicatorKind> {
        [
            IndicatorKind::Ip,
            IndicatorKind::Cidr,
            IndicatorKind::Domain,
            IndicatorKind::Url,
            IndicatorKind::Md5,
            IndicatorKind::Sha1,
            IndicatorKind::Sha256,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

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

/// Why a value could not become an indicator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidIndicator(pub String);

fn invalid(message: impl Into<String>) -> InvalidIndicator {
    InvalidIndicator(message.into())
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
        None => guess_kind(&value).ok_or_else(|| {
            invalid(format!(
                "`{}` is not an address, range, domain, URL or hash",
                shorten(&value)
            ))
        })?,
    };
    let canonical = match kind {
        IndicatorKind::Ip | IndicatorKind::Cidr => return canonical_network(&value),
        IndicatorKind::Domain => {
            let domain = canonical_domain(&value)?;
            refuse_public_suffix(&domain)?;
            domain
        }
        IndicatorKind::Url => canonical_url(&value)?,
        IndicatorKind::Md5 | IndicatorKind::Sha1 | IndicatorKind::Sha256 => {
            let (hash_kind, hash) = canonical_hash(&value)?;
            if hash_kind != kind {
                return Err(invalid(format!(
                    "`{}` is not a {} hash (length {})",
                    shorten(&value),
                    kind.as_str(),
                    value.len()
                )));
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
        .map_err(|_| invalid(format!("`{}` is not an IP address", shorten(value))))?;
    let mapped_prefix_shift = matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
    let ip = crate::event::canonical_ip(ip);
    let full: u8 = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = match prefix_text {
        None => full,
        Some(p) => {
            let p: u8 = p
                .trim()
                .parse()
                .map_err(|_| invalid(format!("`{}` has a bad prefix length", shorten(value))))?;
            // `::ffff:1.2.3.0/120` is `1.2.3.0/24`.
            let p = if mapped_prefix_shift {
                p.checked_sub(96)
                    .ok_or_else(|| invalid(format!("`{}` is wider than IPv4", shorten(value))))?
            } else {
                p
            };
            if p > full {
                return Err(invalid(format!(
                    "`{}` has a prefix longer than {full}",
                    shorten(value)
                )));
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

/// Lower case, no trailing dot, no port, IDNA A-labels. At least two labels: a bare TLD is
/// never an indicator.
pub fn canonical_domain(value: &str) -> Result<String, InvalidIndicator> {
    let value = value.trim().trim_end_matches('.');
    let host = match value.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !host.contains(':') => {
            host
        }
        _ => value,
    };
    if host.is_empty() || host.contains(['/', ' ', '@']) || host.parse::<IpAddr>().is_ok() {
        return Err(invalid(format!("`{}` is not a domain", shorten(value))));
    }
    let ascii = idna::domain_to_ascii(host)
        .map_err(|_| invalid(format!("`{}` is not a valid domain name", shorten(value))))?;
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty() || l.len() > 63) || ascii.len() > 253
    {
        return Err(invalid(format!(
            "`{}` is not a domain with at least two labels",
            shorten(value)
        )));
    }
    Ok(ascii)
}

/// A domain indicator must name something someone registered: a public suffix (`co.uk`,
/// `github.io`) would match every site below it.
pub fn refuse_public_suffix(domain: &str) -> Result<(), InvalidIndicator> {
    if psl::suffix_str(domain) == Some(domain) {
        return Err(invalid(format!(
            "`{domain}` is a public suffix, not a domain anyone owns"
        )));
    }
    Ok(())
}

/// Scheme and host lower-cased (host as IDNA), default port and user info dropped, path and
/// query kept as they are.
pub fn canonical_url(value: &str) -> Result<String, InvalidIndicator> {
    let mut url = url::Url::parse(value.trim())
        .map_err(|e| invalid(format!("`{}` is not a URL: {e}", shorten(value))))?;
    if url.host().is_none() {
        return Err(invalid(format!("`{}` has no host", shorten(value))));
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
        return Err(invalid(format!("`{}` is not a hex hash", shorten(value))));
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
                .0
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
