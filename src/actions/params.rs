//! Typed action parameters: text from a playbook or an event becomes a value a plugin can use
//! without interpreting it again.

use std::net::IpAddr;

pub use crate::decision::ParamValue;

/// The type of an action parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// An IP address or a CIDR range, canonical: host bits cleared, IPv4-mapped IPv6 unmapped.
    Address,
    /// A prefix length, 0 to 128.
    PrefixLength,
    /// A process id.
    Pid,
    /// A duration: `30s`, `5m`, `1h`, `7d`, or a number of seconds.
    Duration,
    /// Free text (a message); control characters other than newline and tab are written as
    /// visible escapes (`\u001b`), never refused: a message about a hostile event must still
    /// reach people, and must not act on their terminal.
    Text,
    /// An `http` or `https` URL.
    Url,
    /// A Redis channel name: printable, no spaces.
    Channel,
    /// `host:port`.
    HostPort,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// One line of text that goes into a mail header (a subject). Unlike [`ParamType::Text`],
    /// a control character is refused, not escaped: CR or LF in a header is how a value would
    /// add headers (`Bcc:`) of its own, and the step must not go out with a subject that
    /// differs from the one its values gave.
    HeaderLine,
    /// E-mail addresses separated by commas (`soc@example.com, oncall@example.com`), each parsed
    /// as an address; at most `MAX_RECIPIENTS` (50). Display names and groups are not accepted:
    /// only what can be a recipient of the envelope.
    Recipients,
}

/// The most addresses one `notify.email` step may send to.
pub const MAX_RECIPIENTS: usize = 50;

impl ParamType {
    /// How the type is described in diagnostics.
    pub fn describe(self) -> String {
        match self {
            ParamType::Address => "an IP address or CIDR range".into(),
            ParamType::PrefixLength => "a prefix length from 0 to 128".into(),
            ParamType::Pid => "a process id".into(),
            ParamType::Duration => "a duration such as 30s, 5m, 1h or 7d".into(),
            ParamType::Text => "text".into(),
            ParamType::Url => "an http or https URL".into(),
            ParamType::Channel => "a channel name without spaces".into(),
            ParamType::HostPort => "host:port".into(),
            ParamType::Choice(words) => format!("one of {}", words.join(", ")),
            ParamType::HeaderLine => "one line of text without control characters (a CR or LF \
                                      could inject a mail header)"
                .into(),
            ParamType::Recipients => format!(
                "a list of e-mail addresses separated by commas (at most {MAX_RECIPIENTS}, no \
                 control characters: a CR or LF could inject a mail header)"
            ),
        }
    }

    /// Whether text from anywhere can fill this parameter; false for the types that must parse.
    pub fn accepts_any_text(self) -> bool {
        matches!(self, ParamType::Text)
    }

    /// Parses `text` into a value of this type.
    pub fn parse(self, text: &str) -> Result<ParamValue, InvalidParam> {
        let bad = || InvalidParam {
            text: shorten(text),
            expected: self.describe(),
        };
        match self {
            ParamType::Address => parse_address(text).ok_or_else(bad),
            ParamType::PrefixLength => match text.parse::<u8>() {
                Ok(length)
                    if length <= 128
                        && !text.is_empty()
                        && text.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    Ok(ParamValue::PrefixLength(length))
                }
                _ => Err(bad()),
            },
            ParamType::Pid => match text.parse::<u32>() {
                Ok(pid) if pid > 0 && text.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok(ParamValue::Pid(pid))
                }
                _ => Err(bad()),
            },
            ParamType::Duration => crate::duration::parse(text)
                .map(ParamValue::Duration)
                .ok_or_else(bad),
            ParamType::Text => Ok(ParamValue::Text(
                crate::text::inert_keeping_lines(text).into_owned(),
            )),
            ParamType::Url => match url::Url::parse(text) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    Ok(ParamValue::Url(url))
                }
                _ => Err(bad()),
            },
            ParamType::Channel => {
                if !text.is_empty()
                    && text.len() <= 256
                    && text.chars().all(|c| c.is_ascii_graphic())
                {
                    Ok(ParamValue::Text(text.to_string()))
                } else {
                    Err(bad())
                }
            }
            ParamType::HostPort => parse_host_port(text).ok_or_else(bad),
            ParamType::Choice(words) => words
                .iter()
                .find(|word| **word == text)
                .map(|word| ParamValue::Choice(word))
                .ok_or_else(bad),
            ParamType::HeaderLine => {
                if text.chars().any(crate::text::is_active) || text.len() > 998 {
                    Err(bad())
                } else {
                    Ok(ParamValue::Text(text.to_string()))
                }
            }
            ParamType::Recipients => parse_recipients(text).ok_or_else(bad),
        }
    }
}

/// A parameter's text that is not a value of its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not {expected}")]
pub struct InvalidParam {
    /// The text, shortened for the message.
    pub text: String,
    /// What it should have been (`an IP address or CIDR range`).
    pub expected: String,
}

fn shorten(text: &str) -> String {
    let cut: String = text.chars().take(80).collect();
    let cut = cut.escape_debug().to_string();
    if text.chars().count() > 80 {
        format!("{cut}...")
    } else {
        cut
    }
}

/// An IP address or CIDR. Only the canonical textual forms parse: no zone ids (`fe80::1%eth0`),
/// no whitespace, no trailing text, so nothing but an address ever reaches a firewall.
///
/// The value is canonicalized here, once, so every check downstream sees what the kernel will
/// act on: host bits are cleared (`1.2.3.4/0` is `0.0.0.0/0`, which nftables would store for
/// it) and an IPv4-mapped IPv6 address is the IPv4 address it maps (`::ffff:1.2.3.0/120` is
/// `1.2.3.0/24`). A mapped range wider than the mapped space (`::ffff:0:0/95`) does not parse:
/// it is neither an IPv4 range nor what the text seems to say.
fn parse_address(text: &str) -> Option<ParamValue> {
    let (ip_text, prefix_text) = match text.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix)),
        None => (text, None),
    };
    let written = ip_text.parse::<IpAddr>().ok()?;
    let mapped = matches!(written, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
    let ip = crate::event::canonical_ip(written);
    let full: u8 = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_text {
        None => full,
        Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
            let prefix: u8 = p.parse().ok()?;
            // A mapped address's prefix counts IPv6 bits; 96 of them are the mapping.
            let prefix = if mapped {
                prefix.checked_sub(96)?
            } else {
                prefix
            };
            if prefix > full {
                return None;
            }
            prefix
        }
        Some(_) => return None,
    };
    Some(ParamValue::Address {
        ip: crate::intel::indicator::mask(ip, prefix),
        prefix,
    })
}

/// Addresses separated by commas. A control character anywhere refuses the whole list (it is
/// checked on the text as rendered, the text the addresses come from); each address must parse
/// as an e-mail address (`lettre`'s check: a local part, `@`, a domain or an address literal),
/// so nothing but addresses reaches the envelope and the `To:` header.
fn parse_recipients(text: &str) -> Option<ParamValue> {
    if text.chars().any(crate::text::is_active) {
        return None;
    }
    let mut addresses: Vec<String> = Vec::new();
    for part in text.split(',') {
        let address: lettre::Address = part.trim().parse().ok()?;
        let address = address.to_string();
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    (!addresses.is_empty() && addresses.len() <= MAX_RECIPIENTS)
        .then_some(ParamValue::Recipients(addresses))
}

fn parse_host_port(text: &str) -> Option<ParamValue> {
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let valid_name = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'));
    valid_name.then(|| ParamValue::HostPort {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_with_control_characters_is_sent_escaped_not_refused() {
        let text = |t: &str| match ParamType::Text.parse(t) {
            Ok(ParamValue::Text(text)) => text,
            other => panic!("{other:?}"),
        };
        // An escape sequence in a command line made the whole notification refused, so
        // nobody was told; now it is shown, inert.
        assert_eq!(
            text("ws-1\u{1b}[2K\rall clear"),
            "ws-1\\u001b[2K\\rall clear"
        );
        assert_eq!(text("line one\n\tline two"), "line one\n\tline two");
        // Parsing again (the executor does) changes nothing.
        let once = text("bell\u{7}");
        assert_eq!(text(&once), once);
    }

    #[test]
    fn addresses_parse_strictly() {
        let ok = |t: &str| ParamType::Address.parse(t).unwrap().to_string();
        assert_eq!(ok("185.12.33.4"), "185.12.33.4");
        assert_eq!(ok("185.12.33.0/24"), "185.12.33.0/24");
        assert_eq!(ok("::ffff:1.2.3.4"), "1.2.3.4");
        assert_eq!(ok("2001:db8::/32"), "2001:db8::/32");
        assert_eq!(ok("::ffff:1.2.3.0/120"), "1.2.3.0/24");
        for bad in [
            "1.2.3.4; rm -rf /",
            "$(reboot)",
            "1.2.3.4\n5.6.7.8",
            "fe80::1%eth0",
            " 1.2.3.4",
            "1.2.3.4/33",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "::ffff:1.2.3.4/24",
            "::ffff:1.2.3.4/129",
            "",
            &"1".repeat(5000),
        ] {
            assert!(ParamType::Address.parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    /// Defect: `1.2.3.4/0` was checked as written while nftables stored `0.0.0.0/0`.
    #[test]
    fn a_cidr_with_host_bits_is_the_network_the_kernel_stores() {
        let ok = |t: &str| ParamType::Address.parse(t).unwrap().to_string();
        assert_eq!(ok("1.2.3.4/0"), "0.0.0.0/0");
        assert_eq!(ok("1::/0"), "::/0");
        assert_eq!(ok("128.1.2.3/1"), "128.0.0.0/1");
        assert_eq!(ok("10.9.8.7/8"), "10.0.0.0/8");
        assert_eq!(ok("2001:db8::1/48"), "2001:db8::/48");
        assert_eq!(ok("::ffff:1.2.3.4"), "1.2.3.4");
        assert_eq!(ok("::ffff:127.0.0.1/104"), "127.0.0.0/8");
        // A single address keeps all its bits.
        assert_eq!(ok("185.12.33.4"), "185.12.33.4");
    }

    #[test]
    fn prefix_lengths() {
        assert_eq!(
            ParamType::PrefixLength.parse("16"),
            Ok(ParamValue::PrefixLength(16))
        );
        for bad in ["129", "-1", "", "+8", "16 ", "/16"] {
            assert!(ParamType::PrefixLength.parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pids_durations_and_choices() {
        assert_eq!(ParamType::Pid.parse("4242"), Ok(ParamValue::Pid(4242)));
        for bad in ["0", "-1", "+5", "4242 ", "42x", "99999999999"] {
            assert!(ParamType::Pid.parse(bad).is_err(), "{bad}");
        }
        assert!(ParamType::Choice(&["udp", "tcp"]).parse("tcp").is_ok());
        assert!(ParamType::Choice(&["udp", "tcp"]).parse("quic").is_err());
    }

    #[test]
    fn urls_hosts_channels_and_text() {
        assert!(
            ParamType::Url
                .parse("https://hooks.example.com/T1/B2")
                .is_ok()
        );
        assert!(ParamType::Url.parse("file:///etc/passwd").is_err());
        assert!(ParamType::Url.parse("not a url").is_err());
        assert!(ParamType::HostPort.parse("siem.example.com:514").is_ok());
        assert!(ParamType::HostPort.parse("[2001:db8::1]:514").is_ok());
        assert!(ParamType::HostPort.parse("siem;reboot:514").is_err());
        assert!(ParamType::Channel.parse("high_severity_alerts").is_ok());
        assert!(ParamType::Channel.parse("two words").is_err());
        assert!(ParamType::Text.parse("line one\nline two").is_ok());
        assert_eq!(
            ParamType::Text.parse("bell\u{7}"),
            Ok(ParamValue::Text("bell\\u0007".into()))
        );
    }

    #[test]
    fn a_subject_with_a_control_character_is_refused_not_escaped() {
        assert_eq!(
            ParamType::HeaderLine.parse("palisade: evil.exe on ws-1"),
            Ok(ParamValue::Text("palisade: evil.exe on ws-1".into()))
        );
        for bad in [
            "report.pdf\r\nBcc: attacker@evil.example",
            "report.pdf\nBcc: attacker@evil.example",
            "tab\there",
            "next line\u{85}",
            "line separator\u{2028}",
            "escape\u{1b}[2K",
            &"x".repeat(999),
        ] {
            let err = ParamType::HeaderLine.parse(bad).unwrap_err();
            assert!(err.expected.contains("could inject a mail header"), "{err}");
        }
    }

    #[test]
    fn recipients_are_each_parsed_as_an_e_mail_address() {
        assert_eq!(
            ParamType::Recipients.parse("soc@example.com, oncall@example.com,soc@example.com"),
            Ok(ParamValue::Recipients(vec![
                "soc@example.com".into(),
                "oncall@example.com".into()
            ]))
        );
        assert_eq!(
            ParamType::Recipients
                .parse("soc@example.com")
                .unwrap()
                .to_string(),
            "soc@example.com"
        );
        let too_many = vec!["a@example.com"; MAX_RECIPIENTS + 1]
            .iter()
            .enumerate()
            .map(|(i, _)| format!("a{i}@example.com"))
            .collect::<Vec<_>>()
            .join(",");
        for bad in [
            "",
            "not-an-address",
            "soc@example.com,",
            "soc@example.com, nobody",
            "Security Team <soc@example.com>",
            "soc@example.com\r\nBcc: attacker@evil.example",
            "soc@example.com\nattacker@evil.example",
            "soc@exa mple.com",
            "soc@@example.com",
            &too_many,
        ] {
            assert!(ParamType::Recipients.parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    proptest::proptest! {
        /// Whatever text fills them, a subject or recipient list that parses holds no character
        /// that could end a header line.
        #[test]
        fn nothing_that_parses_into_a_header_can_end_its_line(text in "\\PC{0,40}[\r\n\u{85}]?\\PC{0,10}") {
            for kind in [ParamType::HeaderLine, ParamType::Recipients] {
                if let Ok(value) = kind.parse(&text) {
                    let ends_a_line = value.to_string().contains(['\r', '\n', '\u{85}', '\u{2028}']);
                    proptest::prop_assert!(!ends_a_line, "{:?} parsed from {:?}", value, text);
                }
            }
        }

        #[test]
        fn an_accepted_address_prints_as_an_address(text in "\\PC{0,40}") {
            if let Ok(value) = ParamType::Address.parse(&text) {
                let printed = value.to_string();
                proptest::prop_assert!(printed.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '/')));
            }
        }

        /// Parsing is idempotent: what an accepted address prints parses to the same value, so a
        /// value checked after a round trip (planning to executor, approvals) is the value acted on.
        #[test]
        fn a_canonical_address_parses_to_itself(a in 0u32.., prefix in 0u8..=32, v6 in proptest::prelude::any::<u128>(), prefix6 in 0u8..=128) {
            for text in [format!("{}/{prefix}", std::net::Ipv4Addr::from(a)), format!("{}/{prefix6}", std::net::Ipv6Addr::from(v6))] {
                let value = ParamType::Address.parse(&text).unwrap();
                proptest::prop_assert_eq!(ParamType::Address.parse(&value.to_string()).unwrap(), value);
            }
        }
    }
}
