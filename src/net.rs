//! Address and name helpers every stage may use: whether an address is on the internet, and
//! the registered domain of a name. Plain functions; they use nothing else in the crate.

use std::net::IpAddr;

/// `example.co.uk` for `a.b.example.co.uk`; the name itself when it has no public suffix.
pub fn registered_domain(name: &str) -> String {
    registrable(name).to_string()
}

/// [`registered_domain`], borrowed from the name.
pub fn registrable(name: &str) -> &str {
    let name = name.trim_end_matches('.');
    psl::domain_str(name).unwrap_or(name)
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn registered_domains() {
        assert_eq!(registered_domain("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(registered_domain("www.example.com."), "example.com");
    }
}
