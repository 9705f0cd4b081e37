//! MISP warninglists (third-party JSON in the content's `warninglists/`): parse one list, then
//! ask it about indicators of every kind, as marking an import does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade::intel::IndicatorKind;
use palisade::intel::warninglist::Warninglist;

/// Canonical indicators, as the importers store them, to look up in each parsed list.
const PROBES: [(IndicatorKind, &str); 10] = [
    (IndicatorKind::Ip, "8.8.8.8"),
    (IndicatorKind::Ip, "10.1.2.3"),
    (IndicatorKind::Ip, "2001:4860:4860::8888"),
    (IndicatorKind::Cidr, "10.0.0.0/8"),
    (IndicatorKind::Cidr, "0.0.0.0/0"),
    (IndicatorKind::Cidr, "2000::/3"),
    (IndicatorKind::Domain, "dns.google"),
    (IndicatorKind::Url, "http://evil.example/x"),
    (IndicatorKind::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
    (
        IndicatorKind::Sha256,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ),
];

fuzz_target!(|data: &[u8]| {
    // Lists are read as UTF-8 text; other bytes never reach the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(list) = Warninglist::parse(text) else {
        return;
    };
    for (kind, value) in PROBES {
        let _ = list.lists(kind, value);
    }
});
