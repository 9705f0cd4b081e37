use std::path::{Path, PathBuf};

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/intel")
        .join(name)
}

fn options(source: &str) -> ImportOptions {
    ImportOptions {
        source: source.into(),
        kind: None,
        confidence: None,
        severity: None,
        max_prefix: crate::intel::IntelMaxPrefix::default(),
        subdomains: None,
    }
}

fn values(imported: &Imported) -> Vec<(IndicatorKind, String)> {
    let mut out: Vec<_> = imported
        .indicators
        .iter()
        .map(|i| (i.kind, i.value.clone()))
        .collect();
    out.sort();
    out
}

/// Writes `text` to a scratch file and imports it.
fn import_text(format: Format, text: &str) -> Result<Imported, ImportError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed");
    std::fs::write(&path, text).unwrap();
    import(&path, format, &options(format.name()))
}

#[test]
fn stix_samples() {
    let c2 = import(
        &fixture("stix/indicator-for-c2-ip-address.json"),
        Format::Stix,
        &options("stix"),
    )
    .unwrap();
    assert_eq!(values(&c2), [(IndicatorKind::Ip, "10.0.0.0".into())]);
    let coa = import(
        &fixture("stix/indicators-for-C2-with-COA.json"),
        Format::Stix,
        &options("stix"),
    )
    .unwrap();
    let found = values(&coa);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().any(|(k, _)| *k == IndicatorKind::Sha256));
    let url = import(
        &fixture("stix/indicator-for-malicious-url.json"),
        Format::Stix,
        &options("stix"),
    )
    .unwrap();
    assert_eq!(
        values(&url),
        [(IndicatorKind::Url, "http://x4z9arb.cn/4712/".into())]
    );
    // The malware the indicator `indicates` names the threat.
    assert!(
        url.indicators[0].threat.is_some(),
        "{:?}",
        url.indicators[0]
    );
    let sighting = import(
        &fixture("stix/sighting-of-an-indicator.json"),
        Format::Stix,
        &options("stix"),
    )
    .unwrap();
    assert!(sighting.indicators.len() <= 1);
}

#[test]
fn stix_corners() {
    let bundle = r#"{"type":"bundle","id":"bundle--1","objects":[
      {"type":"indicator","id":"indicator--a","pattern":"[domain-name:value = 'Evil.Example']","pattern_type":"stix","valid_from":"2025-01-01T00:00:00Z","valid_until":"2030-01-01T00:00:00Z","confidence":85},
      {"type":"indicator","id":"indicator--b","pattern":"[file:name = 'x' AND file:size = 5]","pattern_type":"stix","valid_from":"2025-01-01T00:00:00Z"},
      {"type":"indicator","id":"indicator--c","pattern":"alert tcp any any","pattern_type":"snort","valid_from":"2025-01-01T00:00:00Z"},
      {"type":"indicator","id":"indicator--d","pattern":"[ipv4-addr:value = '203.0.113.5']","valid_from":"2025-01-01T00:00:00Z","revoked":true},
      {"type":"x-custom","id":"x-custom--1"}
    ]}"#;
    let imported = import_text(Format::Stix, bundle).unwrap();
    assert_eq!(
        values(&imported),
        [
            (IndicatorKind::Ip, "203.0.113.5".into()),
            (IndicatorKind::Domain, "evil.example".into())
        ]
    );
    let domain = imported
        .indicators
        .iter()
        .find(|i| i.kind == IndicatorKind::Domain)
        .unwrap();
    assert_eq!(domain.confidence, 85);
    assert!(!domain.subdomains, "STIX equality is exact");
    assert!(domain.valid_until_ms.is_some());
    assert!(imported.indicators.iter().any(|i| i.revoked));
    assert_eq!(imported.skipped_total(), 2);
}

#[test]
fn misp_samples() {
    let feed_event = import(
        &fixture("misp/57c4445b-c548-4654-af0b-4be3950d210f.json"),
        Format::Misp,
        &options("circl"),
    )
    .unwrap();
    let kinds: Vec<IndicatorKind> = values(&feed_event).into_iter().map(|(k, _)| k).collect();
    assert!(
        kinds.contains(&IndicatorKind::Md5)
            && kinds.contains(&IndicatorKind::Sha1)
            && kinds.contains(&IndicatorKind::Sha256),
        "{kinds:?}"
    );
    assert!(
        feed_event.skipped.keys().any(|k| k.contains("to_ids")),
        "{:?}",
        feed_event.skipped
    );
    assert!(
        feed_event
            .indicators
            .iter()
            .all(|i| i.tags.iter().any(|t| t == "tlp:white"))
    );
    let exported = import(
        &fixture("misp/misp_event.json"),
        Format::Misp,
        &options("misp"),
    )
    .unwrap();
    assert!(exported.indicators.len() + exported.skipped_total() > 0);
}

#[test]
fn misp_feed_directory_needs_every_listed_event() {
    let dir = tempfile::tempdir().unwrap();
    let uuid = "57c4445b-c548-4654-af0b-4be3950d210f";
    std::fs::copy(
        fixture(&format!("misp/{uuid}.json")),
        dir.path().join(format!("{uuid}.json")),
    )
    .unwrap();
    std::fs::write(dir.path().join("manifest.json"), format!(r#"{{"{uuid}": {{"info": "x", "timestamp": "1", "date": "2016-08-31", "Orgc": {{"name": "CIRCL"}}}}}}"#)).unwrap();
    let imported = import(dir.path(), Format::MispFeed, &options("circl")).unwrap();
    assert!(!imported.indicators.is_empty());
    std::fs::write(
        dir.path().join("manifest.json"),
        r#"{"00000000-0000-0000-0000-000000000000": {"info": "gone"}}"#,
    )
    .unwrap();
    let err = import(dir.path(), Format::MispFeed, &options("circl")).unwrap_err();
    assert!(err.message.contains("cannot be read"), "{err}");
}

#[test]
fn feodo_csv_and_json() {
    let csv = "################################################################\n# abuse.ch Feodo Tracker Botnet C2 IP Blocklist (CSV)          #\n################################################################\n#\n\"first_seen_utc\",\"dst_ip\",\"dst_port\",\"c2_status\",\"last_online\",\"malware\"\n\"2021-01-17 07:44:46\",\"51.178.161.32\",\"4643\",\"online\",\"2021-08-18\",\"Dridex\"\n\"2021-01-18 07:44:46\",\"185.12.33.4\",\"80\",\"offline\",\"2021-08-18\",\"Emotet\"\n# Number of entries: 2\n";
    let imported = import_text(Format::Feodo, csv).unwrap();
    assert_eq!(imported.indicators.len(), 2);
    let emotet = imported
        .indicators
        .iter()
        .find(|i| i.value == "185.12.33.4")
        .unwrap();
    assert_eq!(
        (emotet.threat.as_deref(), emotet.confidence),
        (Some("Emotet"), 60)
    );
    assert!(emotet.first_seen_ms.is_some());
    let json = r#"[{"ip_address":"51.178.161.32","port":4643,"status":"online","hostname":null,"first_seen":"2021-01-17 07:44:46","last_online":"2022-11-15","malware":"Dridex"}]"#;
    assert_eq!(
        import_text(Format::Feodo, json).unwrap().indicators[0].confidence,
        90
    );
}

#[test]
fn urlhaus_csv_maps_columns_from_a_commented_header() {
    // The older 8-column layout, without last_online: columns come from the header.
    let csv = "# id,dateadded,url,url_status,threat,tags,urlhaus_link,reporter\n\"1\",\"2020-12-03 06:06:09\",\"http://Evil1.example/bin.sh\",\"online\",\"malware_download\",\"32-bit,elf,Mozi\",\"https://urlhaus.abuse.ch/url/1/\",\"x\"\n";
    let imported = import_text(Format::Urlhaus, csv).unwrap();
    let url = &imported.indicators[0];
    assert_eq!(url.value, "http://evil1.example/bin.sh");
    assert_eq!(url.tags, ["32-bit", "elf", "Mozi"]);
    assert_eq!(
        url.reference.as_deref(),
        Some("https://urlhaus.abuse.ch/url/1/")
    );
}

#[test]
fn threatfox_csv_with_spaced_separators_and_json() {
    let csv = "# \"first_seen_utc\",\"ioc_id\",\"ioc_value\",\"ioc_type\",\"threat_type\",\"fk_malware\",\"malware_alias\",\"malware_printable\",\"last_seen_utc\",\"confidence_level\",\"is_compromised\",\"reference\",\"tags\",\"anonymous\",\"reporter\"\r\n\"2026-07-04 22:19:04\", \"1844855\", \"dazayse.hi-lo.bet\", \"domain\", \"payload_delivery\", \"js.clearfake\", \"None\", \"ClearFake\", \"\", \"100\", \"False\", \"None\", \"ClearFake,windows\", \"1\", \"anonymous\"\r\n\"2026-07-04 22:19:05\", \"1844856\", \"2a02:cf40:1::5:40669\", \"ip:port\", \"botnet_cc\", \"x\", \"None\", \"X\", \"\", \"75\", \"False\", \"None\", \"None\", \"1\", \"anonymous\"\r\n";
    let imported = import_text(Format::Threatfox, csv).unwrap();
    assert_eq!(
        values(&imported),
        [
            (IndicatorKind::Ip, "2a02:cf40:1::5".into()),
            (IndicatorKind::Domain, "dazayse.hi-lo.bet".into())
        ]
    );
    let domain = imported
        .indicators
        .iter()
        .find(|i| i.kind == IndicatorKind::Domain)
        .unwrap();
    assert_eq!(domain.confidence, 100);
    assert!(domain.tags.contains(&"payload_delivery".to_string()));
    let api = r#"{"query_status":"ok","data":[{"id":"41","ioc":"gaga.com","threat_type":"botnet_cc","ioc_type":"domain","malware_printable":"Dridex","confidence_level":50,"first_seen":"2020-12-08 13:36:27 UTC","last_seen":null,"tags":["exe"]}]}"#;
    let imported = import_text(Format::Threatfox, api).unwrap();
    assert_eq!(imported.indicators[0].threat.as_deref(), Some("Dridex"));
}

#[test]
fn otx_and_abuseipdb() {
    let pulse = r#"{"id":"5f1","name":"Emotet wave","tags":["emotet"],"malware_families":[{"display_name":"Emotet"}],"attack_ids":[{"id":"T1071"}],
      "indicators":[{"indicator":"185.12.33.4","type":"IPv4","is_active":1,"expiration":"2099-01-01T00:00:00"},
                    {"indicator":"http://bad.example/x","type":"hostname","is_active":1},
                    {"indicator":"old.example","type":"domain","is_active":0},
                    {"indicator":"CVE-2021-1","type":"CVE"}]}"#;
    let imported = import_text(Format::Otx, pulse).unwrap();
    assert_eq!(imported.indicators.len(), 3);
    assert!(
        imported
            .indicators
            .iter()
            .any(|i| i.kind == IndicatorKind::Url),
        "a hostname holding a URL is a URL"
    );
    assert!(imported.indicators.iter().any(|i| i.revoked));
    assert!(
        imported.indicators[0]
            .tags
            .contains(&"attack.t1071".to_string())
    );
    assert_eq!(imported.skipped_total(), 1);
    let blacklist = r#"{"meta":{"generatedAt":"2020-09-24T19:54:11+00:00"},"data":[{"ipAddress":"5.188.10.179","countryCode":"RU","abuseConfidenceScore":100,"lastReportedAt":"2020-09-24T19:17:02+00:00"}]}"#;
    let imported = import_text(Format::Abuseipdb, blacklist).unwrap();
    assert_eq!(
        (
            imported.indicators[0].confidence,
            imported.indicators[0].severity
        ),
        (100, 40)
    );
    assert!(
        import_text(
            Format::Abuseipdb,
            r#"{"errors":[{"detail":"bad key","status":401}]}"#
        )
        .is_err()
    );
}

#[test]
fn plain_lists_guess_each_line() {
    let text = "# my list\n185.12.33.0/24\nevil.example # a comment\nhxxp://bad[.]example/x\nd41d8cd98f00b204e9800998ecf8427e\n\nnot an indicator\n";
    let imported = import_text(Format::Plain, text).unwrap();
    let kinds: Vec<IndicatorKind> = values(&imported).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        [
            IndicatorKind::Cidr,
            IndicatorKind::Domain,
            IndicatorKind::Url,
            IndicatorKind::Md5
        ]
    );
    assert_eq!(imported.skipped_total(), 1);
}

#[test]
fn malformed_files_name_the_position() {
    let err = import_text(
        Format::Stix,
        "{\"type\": \"bundle\",\n  \"objects\": [ {,] }",
    )
    .unwrap_err();
    assert_eq!((err.line, err.column > 0), (2, true), "{err}");
    assert!(err.to_string().contains("feed:2:"), "{err}");
    let err = import_text(Format::Feodo, "\"first_seen_utc\",\"dst_ip\",\"dst_port\",\"c2_status\",\"last_online\",\"malware\"\n\"2021\",\"1.2.3.4\"\n").unwrap_err();
    assert_eq!(err.line, 2, "{err}");
    let err = import_text(Format::Urlhaus, "\"1\",\"x\"\n").unwrap_err();
    assert!(err.message.contains("header"), "{err}");
    assert!(import_text(Format::Otx, "[]").is_err());
}

#[test]
fn timestamps_in_every_feed_spelling() {
    let expected = 1_610_869_486_000;
    for text in [
        "2021-01-17T07:44:46Z",
        "2021-01-17 07:44:46",
        "2021-01-17 07:44:46 UTC",
        "2021-01-17T07:44:46.000000",
        "1610869486",
    ] {
        assert_eq!(parse_time(text), Some(expected), "{text}");
    }
    assert_eq!(parse_time("2021-01-17"), Some(1_610_841_600_000));
    assert_eq!(parse_time("None"), None);
}

/// The values stored from `text`, and the reasons entries were refused.
fn stored(format: Format, text: &str) -> (Vec<String>, Imported) {
    let imported = import_text(format, text).unwrap();
    let values = imported
        .indicators
        .iter()
        .map(|i| i.value.clone())
        .collect();
    (values, imported)
}

const FEODO_HEADER: &str = "first_seen_utc,dst_ip,dst_port,c2_status,last_online,malware\n";

#[test]
fn feodo_row_for_everything_is_refused() {
    let csv = format!(
        "{FEODO_HEADER}2021-01-17 07:44:46,0.0.0.0/0,443,online,2021-01-18,Emotet\n\
         2021-01-17 07:44:46,128.0.0.0/1,443,online,2021-01-18,Emotet\n\
         2021-01-17 07:44:46,1.2.3.4/0,443,online,2021-01-18,Emotet\n\
         2021-01-17 07:44:46,::ffff:0.0.0.0/96,443,online,2021-01-18,Emotet\n\
         2021-01-17 07:44:46,10.0.0.0/8,443,online,2021-01-18,Emotet\n\
         2021-01-17 07:44:46,185.12.33.4,443,online,2021-01-18,Emotet\n"
    );
    let (values, imported) = stored(Format::Feodo, &csv);
    assert_eq!(values, ["185.12.33.4"]);
    assert_eq!(imported.skipped_total(), 5);
    // Each refusal names the file, the line and the canonical range that was refused.
    let first = imported.examples[0].to_string();
    assert!(
        first.contains("feed:2:") && first.contains("`0.0.0.0/0` is wider than the /24"),
        "{first}"
    );
    assert!(
        imported.examples[2].to_string().contains("`0.0.0.0/0`"),
        "host bits are masked before the check: {}",
        imported.examples[2]
    );
    assert!(
        imported.examples[3].to_string().contains("`0.0.0.0/0`"),
        "IPv4-mapped IPv6 is unmapped before the check: {}",
        imported.examples[3]
    );
}

#[test]
fn plain_line_for_everything_is_refused() {
    let text = "0.0.0.0/0\n128.0.0.0/1\n2000::/3\n1::/0\n::/0\n185.12.0.0/16\n185.12.33.0/24\n2001:db8:1::/48\n2001:db8::/32\n";
    let (values, imported) = stored(Format::Plain, text);
    assert_eq!(values, ["185.12.33.0/24", "2001:db8:1::/48"]);
    assert_eq!(imported.skipped_total(), 7);
    assert!(
        imported
            .skipped
            .keys()
            .any(|r| r.contains("/48 an IPv6 indicator may cover (`intel.max_prefix.ipv6`)")),
        "{:?}",
        imported.skipped
    );
}

#[test]
fn stix_pattern_for_everything_is_refused() {
    let bundle = r#"{"type": "bundle", "id": "bundle--1", "objects": [
      {"type": "indicator", "id": "indicator--1", "pattern_type": "stix",
       "pattern": "[ipv4-addr:value = '0.0.0.0/0' OR ipv4-addr:value = '128.0.0.0/1' OR ipv6-addr:value = '2000::/3' OR ipv4-addr:value = '198.51.100.7']"}
    ]}"#;
    let (values, imported) = stored(Format::Stix, bundle);
    assert_eq!(values, ["198.51.100.7"]);
    assert_eq!(imported.skipped_total(), 3);
    let example = imported.examples[0].to_string();
    assert!(
        example.contains("feed:3:19:") && example.contains("objects[0].pattern"),
        "{example}"
    );
}

#[test]
fn the_range_limit_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed");
    std::fs::write(&path, "10.1.0.0/16\n10.0.0.0/8\n2001:db8::/32\n").unwrap();
    let mut wide = options("plain");
    wide.max_prefix = crate::intel::IntelMaxPrefix { ipv4: 16, ipv6: 32 };
    let imported = import(&path, Format::Plain, &wide).unwrap();
    assert_eq!(values(&imported).len(), 2, "{:?}", imported.skipped);
}

/// Deterministic noise: printable ASCII lines of 1–24 characters.
fn random_text(bytes: usize) -> String {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut text = String::with_capacity(bytes + 32);
    while text.len() < bytes {
        let length = 1 + next() % 24;
        for _ in 0..length {
            // Dots and letters more often than the rest, so some lines look like names.
            let c = match next() % 4 {
                0 => '.',
                1 => char::from(b'a' + (next() % 26) as u8),
                _ => char::from(b' ' + (next() % 95) as u8),
            };
            text.push(c);
        }
        text.push('\n');
    }
    text
}

#[test]
fn random_text_stores_no_garbage_domains() {
    let mut text = random_text(2_000_000);
    text.push_str("!!e$9.sju$\n999.999.999.999\n1.2.3\nevil.example\n");
    let (values, imported) = stored(Format::Plain, &text);
    for value in &values {
        let host = value.split("://").nth(1).unwrap_or(value);
        assert!(
            host.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:/?=&%#@[]+~!$'()*,;".contains(&b))
                && (!value.contains("://")
                    || crate::intel::indicator::canonical_url(value).is_ok()),
            "garbage stored: {value:?}"
        );
        if !value.contains("://") && !value.contains(':') && !value.contains('/') {
            assert!(
                value.parse::<std::net::IpAddr>().is_ok()
                    || crate::intel::indicator::hostname_problem(value).is_none(),
                "garbage stored: {value:?}"
            );
        }
    }
    assert!(values.contains(&"evil.example".to_string()));
    assert!(
        !values
            .iter()
            .any(|v| v.contains('$') || v == "999.999.999.999" || v == "1.2.3")
    );
    // The report is bounded: a few reasons and ten examples, whatever the input's size.
    assert_eq!(imported.examples.len(), EXAMPLES);
    assert!(imported.skipped.len() < 40, "{:?}", imported.skipped.keys());
    assert!(imported.skipped_total() > 100_000);
}

#[test]
fn stix_objects_not_a_list_is_an_error() {
    let err = import_text(
        Format::Stix,
        "{\"type\": \"bundle\", \"id\": \"bundle--1\",\n \"objects\": \"nope\"}",
    )
    .unwrap_err();
    assert_eq!(err.line, 2, "{err}");
    assert!(
        err.message
            .contains("objects: must be a list, not the string \"nope\""),
        "{err}"
    );
}

#[test]
fn stix_confidence_high_is_an_error() {
    for (confidence, found) in [
        ("\"high\"", "the string \"high\""),
        ("1e30", "the number 1e+30"),
        ("101", "the number 101"),
        ("-5", "the number -5"),
    ] {
        let bundle = format!(
            "{{\"type\": \"bundle\", \"objects\": [\n  {{\"type\": \"indicator\", \"pattern\": \"[ipv4-addr:value = '198.51.100.7']\"}},\n  {{\"type\": \"indicator\", \"pattern\": \"[ipv4-addr:value = '198.51.100.8']\",\n   \"confidence\": {confidence}}}\n]}}"
        );
        let err = import_text(Format::Stix, &bundle).unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        assert!(
            err.message.contains(&format!(
                "objects[1].confidence: must be a whole number from 0 to 100, not {found}"
            )),
            "{err}"
        );
    }
}

#[test]
fn stix_valid_until_tomorrow_is_an_error() {
    let bundle = r#"{"type": "indicator", "pattern": "[ipv4-addr:value = '198.51.100.7']", "valid_until": "tomorrow"}"#;
    let err = import_text(Format::Stix, bundle).unwrap_err();
    assert!(
        err.message
            .contains("valid_until: `tomorrow` is not a time"),
        "{err}"
    );
    let bundle = r#"{"type": "indicator", "pattern": "[ipv4-addr:value = '198.51.100.7']", "valid_until": "2030-01-01T00:00:00Z"}"#;
    let imported = import_text(Format::Stix, bundle).unwrap();
    assert_eq!(
        imported.indicators[0].valid_until_ms,
        Some(1_893_456_000_000)
    );
}

#[test]
fn misp_attribute_not_a_list_is_an_error() {
    let err = import_text(
        Format::Misp,
        "{\"Event\": {\"info\": \"x\",\n  \"Attribute\": \"not a list\"}}",
    )
    .unwrap_err();
    assert_eq!(err.line, 2, "{err}");
    assert!(
        err.message.contains("Event.Attribute: must be a list"),
        "{err}"
    );
    for (field, value) in [
        ("to_ids", "\"maybe\""),
        ("value", "42"),
        ("first_seen", "\"yesterday\""),
        ("Tag", "{}"),
    ] {
        let event = format!(
            "{{\"Event\": {{\"info\": \"x\", \"Attribute\": [{{\"type\": \"ip-dst\", \"value\": \"198.51.100.7\", \"to_ids\": true}}, {{\"type\": \"ip-dst\", \"value\": \"198.51.100.8\", \"to_ids\": true, \"{field}\": {value}}}]}}}}"
        );
        let err = import_text(Format::Misp, &event).unwrap_err();
        assert!(
            err.message
                .contains(&format!("Event.Attribute[1].{field}: ")),
            "{field}: {err}"
        );
    }
}

#[test]
fn otx_and_abuseipdb_wrong_types_are_errors() {
    for (format, text, place) in [
        (
            Format::Otx,
            r#"{"indicators": "x"}"#,
            "indicators: must be a list",
        ),
        (
            Format::Otx,
            r#"{"indicators": [{"type": "IPv4", "indicator": "198.51.100.7", "expiration": "soon"}]}"#,
            "indicators[0].expiration: `soon` is not a time",
        ),
        (
            Format::Otx,
            r#"{"results": [{"indicators": [{"type": "IPv4", "indicator": "198.51.100.7", "is_active": "yes"}]}]}"#,
            "results[0].indicators[0].is_active: must be",
        ),
        (
            Format::Abuseipdb,
            r#"{"data": [{"ipAddress": "198.51.100.7", "abuseConfidenceScore": "high"}]}"#,
            "data[0].abuseConfidenceScore: must be a whole number",
        ),
        (
            Format::Abuseipdb,
            r#"{"data": {"ipAddress": "1.2.3.4"}}"#,
            "data: must be a list",
        ),
        (
            Format::Threatfox,
            r#"{"query_status": "ok", "data": [{"ioc": "evil.example", "ioc_type": "domain", "confidence_level": "high"}]}"#,
            "data[0].confidence_level: must be a whole number",
        ),
        (
            Format::Feodo,
            "first_seen_utc,dst_ip,dst_port,c2_status,last_online,malware\nlast week,185.12.33.4,443,online,2021-01-18,Emotet\n",
            "`first_seen_utc`: `last week` is not a time",
        ),
    ] {
        let err = import_text(format, text).unwrap_err();
        assert!(err.message.contains(place), "{err}");
    }
}

#[test]
fn skipped_report_is_count_plus_ten_examples() {
    let text: String = (0..5000).map(|n| format!("bad${n}.example\n")).collect();
    let (values, imported) = stored(Format::Plain, &text);
    assert!(values.is_empty());
    assert_eq!(imported.skipped_total(), 5000);
    assert_eq!(imported.skipped.len(), 1, "{:?}", imported.skipped);
    assert_eq!(imported.examples.len(), EXAMPLES);
    assert_eq!(imported.examples[9].line, 10);
}
