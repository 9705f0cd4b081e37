//! Parsing Sigma rules and running them with the direct evaluator: every modifier and condition
//! form on events built here, and every refusal with its position.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use crate::diagnostics::Diagnostic;
use crate::event::{Event, EventKind, Field};

use super::ast::{GlobPart, Level, SearchBody, SigmaRule, Status, TextMatch, ValueTest};
use super::eval::matches;
use super::modifiers::base64_offsets;
use super::{SigmaConfig, SigmaLoad, load, load_source};

const FILE: &str = "rules/proc_creation_test.yml";

/// A process_creation rule around `detection` (indented two spaces under `detection:`).
fn doc(detection: &str) -> String {
    format!(
        "title: Test rule\nid: 11111111-2222-3333-4444-555555555555\nstatus: test\nlevel: high\nlogsource:\n  category: process_creation\n  product: windows\ndetection:\n{detection}"
    )
}

fn load_text(text: &str) -> SigmaLoad {
    load_text_with(text, &SigmaConfig::default())
}

fn load_text_with(text: &str, config: &SigmaConfig) -> SigmaLoad {
    load_source(Path::new(FILE), text, config)
}

fn rule(detection: &str) -> SigmaRule {
    let loaded = load_text(&doc(detection));
    assert!(
        loaded.refused.is_empty(),
        "refused: {}",
        loaded.diagnostics().render()
    );
    assert_eq!(loaded.rules.len(), 1, "one rule loads");
    loaded.rules.into_iter().next().expect("one rule")
}

/// The first problem of the one refused document.
fn refusal(text: &str) -> Diagnostic {
    let loaded = load_text(text);
    assert!(loaded.rules.is_empty(), "the rule is refused, not loaded");
    assert_eq!(loaded.refused.len(), 1, "one document refused");
    loaded.refused[0].iter().next().expect("a problem").clone()
}

fn process(cmdline: &str, image: &str) -> Event {
    let mut event = Event::new("e1", EventKind::ProcessCreate, 0);
    event.cmdline = Some(cmdline.to_string());
    event.image = Some(image.to_string());
    event
}

fn cmd(cmdline: &str) -> Event {
    process(cmdline, "C:\\Windows\\System32\\cmd.exe")
}

fn network(ip: &str, port: u16) -> Event {
    let mut event = Event::new("e2", EventKind::NetworkConnection, 0);
    event.remote_ip = Some(ip.parse::<IpAddr>().expect("address"));
    event.remote_port = Some(port);
    event
}

fn network_rule(detection: &str) -> SigmaRule {
    let text = doc(detection).replace("process_creation", "network_connection");
    let loaded = load_text(&text);
    assert!(
        loaded.refused.is_empty(),
        "{}",
        loaded.diagnostics().render()
    );
    loaded.rules.into_iter().next().expect("one rule")
}

#[test]
fn metadata_and_logsource_map_onto_the_rule() {
    let text = "title: Encoded PowerShell\nid: abc-123\nname: encoded_powershell\nstatus: stable\nlevel: critical\ndescription: Finds it\nauthor: Someone\nreferences:\n  - https://example.org/a\nfalsepositives:\n  - Admin scripts\n  -\ntags:\n  - attack.execution\n  - attack.t1059.001\nlogsource:\n  category: process_creation\n  product: windows\ndetection:\n  selection:\n    CommandLine|contains: ' -enc '\n  condition: selection\n";
    let loaded = load_text(text);
    let rule = &loaded.rules[0];
    assert_eq!(rule.title, "Encoded PowerShell");
    assert_eq!(&*rule.id, "abc-123");
    assert_eq!(rule.name.as_deref(), Some("encoded_powershell"));
    assert_eq!(&*rule.stem, "proc_creation_test");
    assert_eq!(rule.status, Some(Status::Stable));
    assert_eq!(rule.level, Level::Critical);
    assert_eq!(rule.description.as_deref(), Some("Finds it"));
    assert_eq!(rule.author.as_deref(), Some("Someone"));
    assert_eq!(rule.references, vec!["https://example.org/a"]);
    assert_eq!(rule.falsepositives, vec!["Admin scripts"]);
    assert_eq!(rule.tags, vec!["attack.execution", "attack.t1059.001"]);
    assert_eq!(rule.kinds, vec![EventKind::ProcessCreate]);
    assert_eq!(rule.position.line, 1);
}

#[test]
fn id_falls_back_to_the_file_stem() {
    let text = doc("  selection:\n    Image: x\n  condition: selection\n")
        .replace("id: 11111111-2222-3333-4444-555555555555\n", "");
    assert_eq!(&*load_text(&text).rules[0].id, "proc_creation_test");
}

#[test]
fn logsources_map_to_event_kinds_and_others_are_skipped_with_their_reason() {
    let cases: &[(&str, Option<EventKind>)] = &[
        (
            "category: process_creation\n  product: windows",
            Some(EventKind::ProcessCreate),
        ),
        (
            "category: process_creation\n  product: linux",
            Some(EventKind::ProcessCreate),
        ),
        (
            "category: process_creation\n  product: macos",
            Some(EventKind::ProcessCreate),
        ),
        (
            "category: network_connection\n  product: windows",
            Some(EventKind::NetworkConnection),
        ),
        (
            "category: dns_query\n  product: windows",
            Some(EventKind::DnsQuery),
        ),
        ("category: dns", Some(EventKind::DnsQuery)),
        (
            "category: login\n  product: palisade",
            Some(EventKind::Login),
        ),
        ("category: registry_set\n  product: windows", None),
        ("product: aws\n  service: cloudtrail", None),
    ];
    for (logsource, kind) in cases {
        let text = format!(
            "title: t\nlogsource:\n  {logsource}\ndetection:\n  keywords:\n    - evil\n  condition: keywords\n"
        );
        let loaded = load_text(&text);
        assert!(
            loaded.refused.is_empty(),
            "{logsource}: {}",
            loaded.diagnostics().render()
        );
        match kind {
            Some(kind) => assert_eq!(loaded.rules[0].kinds, vec![*kind], "{logsource}"),
            None => {
                assert!(loaded.rules.is_empty(), "{logsource}");
                assert_eq!(loaded.skipped.len(), 1, "{logsource}");
            }
        }
    }
    let text = "title: t\nlogsource:\n  category: registry_set\n  product: windows\ndetection:\n  sel:\n    NoSuchField: 1\n  condition: sel\n";
    let loaded = load_text(text);
    assert!(
        loaded.refused.is_empty(),
        "a skipped rule is not held to its detection"
    );
    assert_eq!(
        loaded.skipped_by_reason().keys().collect::<Vec<_>>(),
        vec!["logsource windows/registry_set/-"]
    );
}

#[test]
fn statuses_not_configured_and_levels_below_the_floor_are_skipped_and_counted() {
    let selection = "  selection:\n    Image: x\n  condition: selection\n";
    let experimental = doc(selection).replace("status: test", "status: experimental");
    let low = doc(selection).replace("level: high", "level: low");
    let config = SigmaConfig {
        min_level: Level::Medium,
        ..SigmaConfig::default()
    };
    let loaded = load_text_with(&format!("{experimental}---\n{low}"), &config);
    assert!(loaded.rules.is_empty());
    let reasons = loaded.skipped_by_reason();
    assert_eq!(
        reasons.keys().collect::<Vec<_>>(),
        vec!["level low", "status experimental"]
    );
    // A rule without a status loads whatever the configured statuses.
    let unstated = doc(selection).replace("status: test\n", "");
    assert_eq!(load_text(&unstated).rules.len(), 1);
}

#[test]
fn a_map_is_and_a_value_list_is_or_and_a_list_of_maps_is_or() {
    let r = rule(
        "  selection:\n    Image|endswith: '\\cmd.exe'\n    CommandLine:\n      - '*whoami*'\n      - '*net user*'\n  condition: selection\n",
    );
    assert!(matches(&r, &cmd("cmd /c whoami")));
    assert!(matches(&r, &cmd("cmd /c net user x")));
    assert!(!matches(&r, &cmd("cmd /c dir")));
    assert!(!matches(&r, &process("whoami", "C:\\x\\powershell.exe")));
    let r = rule(
        "  selection:\n    - Image|endswith: '\\powershell.exe'\n    - CommandLine|contains: whoami\n  condition: selection\n",
    );
    assert!(matches(&r, &process("x", "C:\\a\\powershell.exe")));
    assert!(matches(&r, &cmd("whoami")));
    assert!(!matches(&r, &cmd("dir")));
}

#[test]
fn matching_is_case_insensitive_unless_cased() {
    let r = rule("  selection:\n    CommandLine|contains: 'WhoAmI'\n  condition: selection\n");
    assert!(matches(&r, &cmd("WHOAMI /all")));
    let r =
        rule("  selection:\n    CommandLine|contains|cased: 'WhoAmI'\n  condition: selection\n");
    assert!(matches(&r, &cmd("x WhoAmI")));
    assert!(!matches(&r, &cmd("x whoami")));
}

#[test]
fn wildcards_become_prefix_suffix_substring_tests_or_globs() {
    let r = rule(
        "  a:\n    CommandLine: 'abc*'\n  b:\n    CommandLine: '*abc'\n  c:\n    CommandLine: '*abc*'\n  d:\n    CommandLine: 'a*b?c'\n  e:\n    CommandLine: abc\n  condition: 1 of them\n",
    );
    let first = |i: usize| match &r.searches[i].body {
        SearchBody::AllOf(items) => items[0].tests[0].clone(),
        other => panic!("not a map: {other:?}"),
    };
    let text = |how, needle: &str| ValueTest::Text {
        how,
        needle: needle.to_string(),
        cased: false,
    };
    assert_eq!(first(0), text(TextMatch::StartsWith, "abc"));
    assert_eq!(first(1), text(TextMatch::EndsWith, "abc"));
    assert_eq!(first(2), text(TextMatch::Contains, "abc"));
    assert_eq!(
        first(3),
        ValueTest::Glob {
            pattern: vec![
                GlobPart::Literal("a".into()),
                GlobPart::AnyRun,
                GlobPart::Literal("b".into()),
                GlobPart::AnyOne,
                GlobPart::Literal("c".into()),
            ],
            cased: false
        }
    );
    assert_eq!(first(4), text(TextMatch::Exact, "abc"));
    let glob = rule("  s:\n    CommandLine: 'a*b?c'\n  condition: s\n");
    assert!(matches(&glob, &cmd("a-long-bXc")));
    assert!(!matches(&glob, &cmd("a-long-bc")));
}

#[test]
fn escaped_wildcards_and_backslashes_follow_the_specification() {
    // `\*` is a plain star, `\\` one backslash, a backslash before anything else is itself.
    let r = rule("  s:\n    CommandLine: 'C:\\Windows\\x\\*y\\?'\n  condition: s\n");
    assert!(matches(&r, &cmd("C:\\Windows\\x*y?")));
    assert!(!matches(&r, &cmd("C:\\Windows\\xZZy?")));
    let r = rule("  s:\n    CommandLine: 'a\\\\b'\n  condition: s\n");
    assert!(matches(&r, &cmd("a\\b")));
    // `\\*`: a backslash, then a wildcard.
    let r = rule("  s:\n    CommandLine: 'dir\\\\*'\n  condition: s\n");
    assert!(matches(&r, &cmd("dir\\anything")));
    assert!(!matches(&r, &cmd("dir*")));
}

#[test]
fn contains_all_needs_every_value() {
    let r = rule(
        "  s:\n    CommandLine|contains|all:\n      - ' -nop '\n      - ' -enc '\n  condition: s\n",
    );
    assert!(matches(&r, &cmd("powershell -nop -w hidden -enc AAA")));
    assert!(!matches(&r, &cmd("powershell -nop -w hidden")));
}

#[test]
fn startswith_and_endswith() {
    let r = rule("  s:\n    CommandLine|startswith: 'net '\n  condition: s\n");
    assert!(matches(&r, &cmd("NET user")));
    assert!(!matches(&r, &cmd("x net user")));
    let r = rule("  s:\n    Image|endswith: '\\rundll32.exe'\n  condition: s\n");
    assert!(matches(&r, &process("", "C:\\W\\RUNDLL32.EXE")));
}

#[test]
fn re_is_case_sensitive_and_takes_i_m_s() {
    let r = rule("  s:\n    CommandLine|re: 'Invoke-[A-Z]+'\n  condition: s\n");
    assert!(matches(&r, &cmd("x Invoke-MIMI")));
    assert!(!matches(&r, &cmd("x invoke-MIMI")));
    let r = rule("  s:\n    CommandLine|re|i: '^invoke-[a-z]+$'\n  condition: s\n");
    assert!(matches(&r, &cmd("INVOKE-Mimi")));
    let r = rule("  s:\n    CommandLine|re|m: '^second$'\n  condition: s\n");
    assert!(matches(&r, &cmd("first\nsecond\nthird")));
    let r = rule("  s:\n    CommandLine|re|s: 'a.b'\n  condition: s\n");
    assert!(matches(&r, &cmd("a\nb")));
    let r = rule("  s:\n    CommandLine|re: 'a.b'\n  condition: s\n");
    assert!(!matches(&r, &cmd("a\nb")));
}

#[test]
fn windash_matches_every_dash_variant() {
    let r = rule("  s:\n    CommandLine|contains|windash: ' -enc '\n  condition: s\n");
    for dash in ["-", "/", "\u{2013}", "\u{2014}", "\u{2015}"] {
        assert!(
            matches(&r, &cmd(&format!("powershell {dash}enc AAA"))),
            "{dash}"
        );
    }
    assert!(!matches(&r, &cmd("powershell _enc AAA")));
    // Both orders of `contains` and `windash` mean the same.
    let r = rule("  s:\n    CommandLine|windash|contains: '-a -b'\n  condition: s\n");
    assert!(matches(&r, &cmd("x /a \u{2014}b y")));
}

#[test]
fn windash_on_a_value_with_many_dashes_is_refused_not_exploded() {
    let d = refusal(&doc(
        "  s:\n    CommandLine|windash: '-a-b-c-d-e-f'\n  condition: s\n",
    ));
    assert_eq!(d.code, "sigma-too-many-variants");
    assert_eq!((d.line, d.column), (10, 26));
}

#[test]
fn cidr_matches_v4_and_v6_networks() {
    let r = network_rule(
        "  s:\n    DestinationIp|cidr:\n      - 10.0.0.0/8\n      - 'fe80::/10'\n  condition: s\n",
    );
    assert!(matches(&r, &network("10.1.2.3", 80)));
    assert!(matches(&r, &network("fe80::1", 80)));
    assert!(!matches(&r, &network("11.0.0.1", 80)));
}

#[test]
fn bad_cidr_is_refused_at_its_value() {
    let text = doc("  s:\n    DestinationIp|cidr: 10.0.0.0/33\n  condition: s\n")
        .replace("process_creation", "network_connection");
    let d = refusal(&text);
    assert_eq!(d.code, "sigma-bad-cidr");
    assert_eq!((d.line, d.column), (10, 25));
    assert!(d.message.contains("10.0.0.0/33"), "{}", d.message);
}

#[test]
fn numbers_are_values_and_compare_with_gt_gte_lt_lte() {
    let r = network_rule("  s:\n    DestinationPort: 445\n  condition: s\n");
    assert!(matches(&r, &network("10.0.0.1", 445)));
    assert!(!matches(&r, &network("10.0.0.1", 4450)));
    let r = network_rule(
        "  s:\n    DestinationPort|gte: 1024\n  t:\n    DestinationPort|lt: 2000\n  condition: s and t\n",
    );
    assert!(matches(&r, &network("10.0.0.1", 1024)));
    assert!(!matches(&r, &network("10.0.0.1", 2000)));
    assert!(!matches(&r, &network("10.0.0.1", 1023)));
    let r = network_rule(
        "  s:\n    DestinationPort|gt: 1024\n  t:\n    DestinationPort|lte: 1025\n  condition: s and t\n",
    );
    assert!(matches(&r, &network("10.0.0.1", 1025)));
    assert!(!matches(&r, &network("10.0.0.1", 1024)));
}

#[test]
fn base64offset_gives_the_three_shifts_the_specification_defines() {
    // Every base64 text that encodes the value at any byte position contains one of the three.
    let value = b"http://evil";
    let offsets = base64_offsets(value);
    assert_eq!(
        offsets,
        vec!["aHR0cDovL2V2aW", "h0dHA6Ly9ldmls", "odHRwOi8vZXZpb"]
    );
    use base64::Engine as _;
    for before in 0..6 {
        for after in 0..4 {
            let mut text = vec![b'Q'; before];
            text.extend_from_slice(value);
            text.extend(vec![b'Z'; after]);
            let encoded = base64::engine::general_purpose::STANDARD.encode(&text);
            assert!(
                offsets.iter().any(|o| encoded.contains(o.as_str())),
                "{before} before, {after} after: {encoded}"
            );
        }
    }
}

#[test]
fn base64_and_base64offset_match_encoded_command_lines() {
    let r = rule("  s:\n    CommandLine|base64offset|contains: 'IEX'\n  condition: s\n");
    use base64::Engine as _;
    for prefix in ["", "a", "ab"] {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{prefix}IEX (New-Object)"));
        assert!(
            matches(&r, &cmd(&format!("powershell -e {encoded}"))),
            "{prefix}"
        );
    }
    let r = rule("  s:\n    CommandLine|base64|contains: 'IEX'\n  condition: s\n");
    // base64 of `IEX` is `SUVY`; matching stays case-insensitive as Sigma says.
    assert!(matches(&r, &cmd("x SUVY y")));
}

#[test]
fn wide_and_utf16_encode_before_base64() {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let utf16le: Vec<u8> = "cmd".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let utf16be: Vec<u8> = "cmd".encode_utf16().flat_map(u16::to_be_bytes).collect();
    let mut with_bom = vec![0xFF, 0xFE];
    with_bom.extend(&utf16le);
    for (modifier, bytes) in [
        ("wide", &utf16le),
        ("utf16le", &utf16le),
        ("utf16be", &utf16be),
        ("utf16", &with_bom),
    ] {
        let r = rule(&format!(
            "  s:\n    CommandLine|{modifier}|base64: 'cmd'\n  condition: s\n"
        ));
        assert!(matches(&r, &cmd(&b64(bytes))), "{modifier}");
    }
    let r = rule("  s:\n    CommandLine|wide|base64offset|contains: 'cmd'\n  condition: s\n");
    let mut shifted: Vec<u8> = "xx".encode_utf16().flat_map(u16::to_le_bytes).collect();
    shifted.push(0x41);
    shifted.extend(&utf16le);
    assert!(matches(
        &r,
        &cmd(&format!("powershell -enc {}", b64(&shifted)))
    ));
}

#[test]
fn utf16_without_base64_is_refused() {
    let d = refusal(&doc("  s:\n    CommandLine|wide: 'cmd'\n  condition: s\n"));
    assert_eq!(d.code, "sigma-encoding-without-base64");
}

#[test]
fn expand_uses_the_configured_placeholders() {
    let mut placeholders = BTreeMap::new();
    placeholders.insert(
        "Administrators".to_string(),
        vec!["alice".to_string(), "adm_*".to_string()],
    );
    let config = SigmaConfig {
        placeholders,
        ..SigmaConfig::default()
    };
    let text = doc("  s:\n    User|expand: '%Administrators%'\n  condition: s\n");
    let loaded = load_text_with(&text, &config);
    assert!(
        loaded.refused.is_empty(),
        "{}",
        loaded.diagnostics().render()
    );
    let r = &loaded.rules[0];
    let user = |name: &str| {
        let mut e = cmd("x");
        e.user = Some(name.to_string());
        e
    };
    assert!(matches(r, &user("Alice")));
    assert!(matches(r, &user("adm_bob")));
    assert!(!matches(r, &user("bob")));
    // Without `expand` a placeholder is plain text.
    let r = rule("  s:\n    User: '%Administrators%'\n  condition: s\n");
    assert!(matches(&r, &user("%administrators%")));
}

#[test]
fn unknown_placeholder_is_refused_naming_it() {
    let d = refusal(&doc(
        "  s:\n    User|expand: '%JumpServers%'\n  condition: s\n",
    ));
    assert_eq!(d.code, "sigma-unknown-placeholder");
    assert!(d.message.contains("%JumpServers%"), "{}", d.message);
    assert_eq!((d.line, d.column), (10, 18));
}

#[test]
fn fieldref_compares_two_fields_of_the_event() {
    let r = rule("  s:\n    ParentImage|fieldref: Image\n  condition: s\n");
    let mut e = cmd("x");
    e.parent_image = Some("C:\\WINDOWS\\system32\\cmd.exe".to_string());
    assert!(matches(&r, &e));
    e.parent_image = Some("C:\\explorer.exe".to_string());
    assert!(!matches(&r, &e));
    let r = rule("  s:\n    CommandLine|fieldref|contains: Image\n  condition: s\n");
    assert!(matches(&r, &cmd("\"C:\\Windows\\System32\\cmd.exe\" /c x")));
}

#[test]
fn exists_null_and_empty_values() {
    let r = rule("  s:\n    ParentImage|exists: true\n  condition: s\n");
    let mut e = cmd("x");
    assert!(!matches(&r, &e));
    e.parent_image = Some(String::new());
    assert!(matches(&r, &e));
    let r = rule("  s:\n    ParentImage: null\n  condition: s\n");
    assert!(matches(&r, &cmd("x")));
    assert!(!matches(&r, &e));
    let r = rule("  s:\n    ParentImage: ''\n  condition: s\n");
    assert!(matches(&r, &e));
    assert!(!matches(&r, &cmd("x")));
}

#[test]
fn keywords_are_found_anywhere_and_all_keywords_need_every_one() {
    let r = rule("  keywords:\n    - 'mimikatz'\n    - 'sekurlsa'\n  condition: keywords\n");
    assert!(matches(&r, &cmd("run MIMIKATZ.exe")));
    assert!(matches(&r, &process("x", "C:\\tools\\sekurlsa.exe")));
    assert!(!matches(&r, &cmd("dir")));
    let r = rule(
        "  keywords:\n    '|all':\n      - 'invoke'\n      - 'mimikatz'\n  condition: keywords\n",
    );
    assert!(matches(&r, &cmd("Invoke-Mimikatz")));
    assert!(!matches(&r, &cmd("Invoke-Other")));
}

#[test]
fn conditions_and_or_not_parentheses_and_quantifiers_evaluate() {
    let r = rule(
        "  selection_img:\n    Image|endswith: '\\cmd.exe'\n  selection_cli:\n    CommandLine|contains: whoami\n  filter_main:\n    CommandLine|contains: harmless\n  _internal:\n    CommandLine|contains: never\n  condition: all of selection_* and not 1 of filter_*\n",
    );
    assert!(matches(&r, &cmd("whoami")));
    assert!(!matches(&r, &cmd("whoami harmless")));
    assert!(!matches(&r, &process("whoami", "C:\\x\\ps.exe")));
    let r = rule(
        "  a:\n    CommandLine|contains: aaa\n  _b:\n    CommandLine|contains: bbb\n  condition: all of them\n",
    );
    // `them` leaves out `_b`, so `aaa` alone is enough.
    assert!(matches(&r, &cmd("aaa")));
    let r = rule(
        "  a:\n    CommandLine|contains: aaa\n  b:\n    CommandLine|contains: bbb\n  c:\n    CommandLine|contains: ccc\n  condition: a and (b or c)\n",
    );
    assert!(matches(&r, &cmd("aaa ccc")));
    assert!(!matches(&r, &cmd("bbb ccc")));
}

#[test]
fn a_list_of_conditions_is_ored() {
    let r = rule(
        "  a:\n    CommandLine|contains: aaa\n  b:\n    CommandLine|contains: bbb\n  condition:\n    - a\n    - b\n",
    );
    assert!(matches(&r, &cmd("bbb")));
    assert!(matches(&r, &cmd("aaa")));
    assert!(!matches(&r, &cmd("ccc")));
}

#[test]
fn unknown_modifier_is_refused_at_its_key() {
    let d = refusal(&doc("  s:\n    CommandLine|contians: x\n  condition: s\n"));
    assert_eq!(d.code, "sigma-unknown-modifier");
    assert_eq!((d.line, d.column), (10, 5));
    assert!(d.message.contains("contians"), "{}", d.message);
    assert_eq!(d.file, Path::new(FILE));
}

#[test]
fn unknown_field_is_refused_naming_the_field() {
    let d = refusal(&doc(
        "  s:\n    Image: x\n    TargetObject|contains: Run\n  condition: s\n",
    ));
    assert_eq!(d.code, "sigma-unknown-field");
    assert!(d.message.contains("`TargetObject`"), "{}", d.message);
    assert_eq!((d.line, d.column), (11, 5));
}

#[test]
fn field_of_another_event_kind_is_refused() {
    let d = refusal(&doc("  s:\n    QueryName: evil.com\n  condition: s\n"));
    assert_eq!(d.code, "sigma-field-not-for-logsource");
    assert!(d.message.contains("`QueryName`"), "{}", d.message);
}

#[test]
fn bad_regex_is_refused_at_its_value() {
    let d = refusal(&doc(
        "  s:\n    CommandLine|re: 'a(?<=b)'\n  condition: s\n",
    ));
    assert_eq!(d.code, "sigma-bad-regex");
    assert_eq!((d.line, d.column), (10, 21));
}

#[test]
fn malformed_condition_is_refused_at_its_column() {
    let d = refusal(&doc("  s:\n    Image: x\n  condition: s and (s or\n"));
    assert_eq!(d.code, "sigma-bad-condition");
    // One past the text's end, where an operand was expected.
    assert_eq!((d.line, d.column), (11, 25));
    let d = refusal(&doc("  s:\n    Image: x\n  condition: 's and nope'\n"));
    assert_eq!(d.code, "sigma-unknown-search");
    assert_eq!((d.line, d.column), (11, 21));
    let d = refusal(&doc(
        "  s:\n    Image: x\n  condition: s and not 1 of filter*\n",
    ));
    assert_eq!(d.code, "sigma-no-search-matches");
    assert_eq!((d.line, d.column), (11, 29));
}

#[test]
fn every_problem_of_a_refused_rule_is_reported() {
    let loaded = load_text(&doc(
        "  s:\n    Nope1: x\n    Image|bogus: y\n  condition: s\n",
    ));
    let codes: Vec<&str> = loaded.refused[0].iter().map(|d| d.code).collect();
    assert_eq!(codes, vec!["sigma-unknown-field", "sigma-unknown-modifier"]);
}

#[test]
fn yaml_safeguards_apply_duplicate_keys_depth_and_bom() {
    let d = refusal(&doc("  s:\n    Image: x\n    Image: y\n  condition: s\n"));
    assert_eq!(d.code, "yaml-duplicate-key");
    assert_eq!(d.line, 11);
    let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let d = refusal(&doc(&format!("  s:\n    Image: {deep}\n  condition: s\n")));
    assert_eq!(d.code, "yaml-too-deep");
    let with_bom = format!("\u{feff}{}", doc("  s:\n    Image: x\n  condition: s\n"));
    assert_eq!(load_text(&with_bom).rules.len(), 1);
}

#[test]
fn positions_in_a_later_document_count_from_the_file_start() {
    let first = doc("  s:\n    Image: x\n  condition: s\n");
    let second = doc("  s:\n    Image|bogus: x\n  condition: s\n").replace("11111111", "22222222");
    let text = format!("{first}---\n{second}");
    let loaded = load_text(&text);
    assert_eq!(loaded.rules.len(), 1);
    let d = loaded.refused[0].iter().next().expect("a problem");
    // The first document is 11 lines, the marker line 12; the key is on line 10 of the second.
    assert_eq!((d.line, d.column), (12 + 10, 5));
    assert_eq!(d.source_line.as_deref(), Some("    Image|bogus: x"));
}

#[test]
fn duplicate_ids_are_refused_naming_both_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = doc("  s:\n    Image: x\n  condition: s\n");
    std::fs::create_dir_all(dir.path().join("a")).expect("dir");
    std::fs::write(dir.path().join("a/one.yml"), &text).expect("write");
    std::fs::write(dir.path().join("two.yaml"), &text).expect("write");
    let loaded = load(&[dir.path().to_path_buf()], &SigmaConfig::default());
    assert_eq!(loaded.files, 2);
    assert_eq!(loaded.rules.len(), 1);
    let d = loaded.refused[0].iter().next().expect("a problem");
    assert_eq!(d.code, "sigma-duplicate-id");
    assert!(d.file.ends_with("two.yaml"), "{}", d.file.display());
    assert!(d.message.contains("one.yml"), "{}", d.message);
}

#[test]
fn loader_walks_folders_sorted_and_refuses_large_files_and_outside_links() {
    let dir = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("temp dir");
    let text = |id: &str| {
        doc("  s:\n    Image: x\n  condition: s\n")
            .replace("11111111-2222-3333-4444-555555555555", id)
    };
    std::fs::create_dir_all(dir.path().join("z/deeper")).expect("dir");
    std::fs::write(dir.path().join("z/deeper/b.yml"), text("b")).expect("write");
    std::fs::write(dir.path().join("a.yml"), text("a")).expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not a rule").expect("write");
    let big = format!(
        "{}\n# {}\n",
        text("big"),
        "x".repeat(super::MAX_SIGMA_FILE_BYTES as usize)
    );
    std::fs::write(dir.path().join("big.yml"), big).expect("write");
    std::fs::write(outside.path().join("secret.yml"), text("outside")).expect("write");
    std::os::unix::fs::symlink(
        outside.path().join("secret.yml"),
        dir.path().join("link.yml"),
    )
    .expect("link");
    std::os::unix::fs::symlink(dir.path().join("a.yml"), dir.path().join("inside.yml"))
        .expect("link");
    std::os::unix::fs::symlink(dir.path(), dir.path().join("z/loop")).expect("link");
    let loaded = load(&[dir.path().to_path_buf()], &SigmaConfig::default());
    let ids: Vec<&str> = loaded.rules.iter().map(|r| &*r.id).collect();
    assert_eq!(
        ids,
        vec!["a", "b"],
        "sorted; the inside link is read but its id is taken"
    );
    let codes: Vec<&str> = loaded
        .refused
        .iter()
        .filter_map(|p| p.iter().next())
        .map(|d| d.code)
        .collect();
    assert!(codes.contains(&"sigma-file-too-large"), "{codes:?}");
    assert!(codes.contains(&"sigma-link-outside"), "{codes:?}");
    assert!(codes.contains(&"sigma-duplicate-id"), "{codes:?}");
    assert!(!ids.contains(&"outside"));
}

#[test]
fn filters_parse_and_exclude_what_they_describe() {
    let rule_text = doc("  s:\n    Image: x\n  condition: s\n");
    let text = "title: Build hosts\nid: f-1\nlogsource:\n  category: process_creation\n  product: windows\nfilter:\n  rules:\n    - 11111111-2222-3333-4444-555555555555\n  build:\n    Computer|startswith: 'BUILD-'\n  condition: not build\n";
    let loaded = load_text(&format!("{rule_text}---\n{text}"));
    assert!(
        loaded.refused.is_empty(),
        "{}",
        loaded.diagnostics().render()
    );
    let filter = &loaded.filters[0];
    assert!(filter.names("11111111-2222-3333-4444-555555555555", None));
    let mut e = cmd("x");
    e.host = Some("build-07".to_string());
    assert!(!filter.passes(&e));
    e.host = Some("ws-01".to_string());
    assert!(filter.passes(&e));
    let d = refusal(
        "title: f\nlogsource:\n  category: process_creation\nfilter:\n  build:\n    Computer: x\n  condition: not build\n",
    );
    assert_eq!(d.code, "sigma-bad-filter");
}

#[test]
fn correlations_are_returned_as_written() {
    let text = format!(
        "{}---\ntitle: Many\nid: c-1\ncorrelation:\n  type: event_count\n  rules: [11111111-2222-3333-4444-555555555555]\n  group-by: [Computer]\n  timespan: 5m\n  condition: {{gte: 20}}\n",
        doc("  s:\n    Image: x\n  condition: s\n")
    );
    let loaded = load_text(&text);
    assert_eq!(loaded.rules.len(), 1);
    let c = &loaded.correlations[0];
    assert_eq!(c.position.line, 12);
    assert_eq!(
        c.value
            .get("correlation")
            .and_then(|v| v.get("type"))
            .and_then(|v| v.as_str()),
        Some("event_count")
    );
}

#[test]
fn field_names_resolve_to_typed_fields() {
    let r = rule("  s:\n    ParentCommandLine|contains: x\n  condition: s\n");
    match &r.searches[0].body {
        SearchBody::AllOf(items) => {
            assert_eq!(items[0].field, Field::ParentCmdline);
            assert_eq!(items[0].written, "ParentCommandLine");
        }
        other => panic!("not a map: {other:?}"),
    }
}

#[test]
fn numbers_keep_the_text_they_were_written_as() {
    // YAML reads `0x17` as 23; Sigma compares values as text, so the rule means `0x17`.
    let r = rule(
        "  s:\n    CommandLine: 0x17\n  t:\n    CommandLine:\n      - 1.50\n      - 7\n  condition: s or t\n",
    );
    assert!(matches(&r, &cmd("0x17")));
    assert!(!matches(&r, &cmd("23")));
    assert!(matches(&r, &cmd("1.50")));
    assert!(matches(&r, &cmd("7")));
    let r = rule("  s:\n    CommandLine: [0x10, 020]\n  condition: s\n");
    assert!(matches(&r, &cmd("0x10")));
    assert!(matches(&r, &cmd("020")));
}

#[test]
fn filter_naming_no_rule_is_refused_at_the_name() {
    let text = "title: f\nlogsource:\n  category: process_creation\nfilter:\n  rules:\n    - no-such-rule\n  build:\n    Computer: x\n  condition: not build\n";
    let d = refusal(text);
    assert_eq!(d.code, "sigma-filter-unknown-rule");
    assert_eq!((d.line, d.column), (6, 7));
    // A rule that is skipped (here by status) still exists, so a filter may name it.
    let skipped =
        doc("  s:\n    Image: x\n  condition: s\n").replace("status: test", "status: experimental");
    let named = text.replace("no-such-rule", "11111111-2222-3333-4444-555555555555");
    let loaded = load_text(&format!("{skipped}---\n{named}"));
    assert!(
        loaded.refused.is_empty(),
        "{}",
        loaded.diagnostics().render()
    );
    assert_eq!(loaded.filters.len(), 1);
}

#[test]
fn regex_too_large_to_compile_is_refused_not_held() {
    let d = refusal(&doc(
        "  s:\n    CommandLine|re: '\\w{1,1000}'\n  condition: s\n",
    ));
    assert_eq!(d.code, "sigma-bad-regex");
    // SigmaHQ's largest pattern still compiles.
    rule("  s:\n    CommandLine|re: '-k\\s\\w{1,64}(?:\\s?(?:-p|-s))?'\n  condition: s\n");
}

#[test]
fn keyword_entry_beside_fields_is_refused() {
    let d = refusal(&doc(
        "  s:\n    Image: x\n    '|all':\n      - a\n      - b\n  condition: s\n",
    ));
    assert_eq!(d.code, "sigma-bad-search");
    assert_eq!((d.line, d.column), (11, 5));
}

#[test]
fn v1_timeframe_and_neq_are_refused() {
    let d = refusal(&doc(
        "  s:\n    Image: x\n  timeframe: 5m\n  condition: s\n",
    ));
    assert_eq!(d.code, "sigma-aggregation");
    let d = refusal(&doc("  s:\n    Image|neq: x\n  condition: s\n"));
    assert_eq!(d.code, "sigma-unknown-modifier");
}

#[test]
fn all_with_an_expanding_modifier_is_refused() {
    let d = refusal(&doc(
        "  s:\n    CommandLine|contains|all|windash:\n      - ' -a '\n      - ' -b '\n  condition: s\n",
    ));
    assert_eq!(d.code, "sigma-modifier-combination");
}

/// Escaping `*`, `?` and `\` in any text gives a value that matches exactly that text.
fn escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

proptest::proptest! {
    #[test]
    fn an_escaped_value_matches_exactly_its_text(
        text in "[a-zA-Z*?\\\\ -]{0,12}",
        other in "[a-zA-Z*?\\\\ -]{0,12}",
    ) {
        use super::modifiers::{RawValue, apply, Entry};
        let Ok(Entry::Tests(tests)) = apply(&[], &[RawValue::Text(escape(&text))], &BTreeMap::new(), false) else {
            panic!("applies");
        };
        let event = cmd(&text);
        proptest::prop_assert!(super::eval::test_matches(&tests.tests[0], Field::Cmdline, &event));
        let other_event = cmd(&other);
        proptest::prop_assert_eq!(
            super::eval::test_matches(&tests.tests[0], Field::Cmdline, &other_event),
            other.to_lowercase() == text.to_lowercase()
        );
    }

    #[test]
    fn contains_matches_where_the_text_is_a_substring(
        needle in "[a-z\\- ]{1,6}",
        haystack in "[a-zA-Z\\- ]{0,16}",
    ) {
        use super::modifiers::{Modifier, RawValue, apply, Entry};
        let Ok(Entry::Tests(tests)) = apply(&[Modifier::Contains], &[RawValue::Text(needle.clone())], &BTreeMap::new(), false) else {
            panic!("applies");
        };
        proptest::prop_assert_eq!(
            super::eval::test_matches(&tests.tests[0], Field::Cmdline, &cmd(&haystack)),
            haystack.to_lowercase().contains(&needle)
        );
    }
}

// `palisade explain`: each Sigma rule of the event's kind with the compiled set's verdict,
// whether its literal gate let the event through, and each search by the direct evaluator.
#[test]
fn explain_reports_the_gate_and_each_search() {
    let gated = std::sync::Arc::new(rule(
        "  selection:\n    Image|endswith: '\\certutil.exe'\n  filter:\n    CommandLine|contains: '-decode'\n  condition: selection and not filter\n",
    ));
    let mut ungated =
        rule("  selection:\n    CommandLine|re: '^a.*z$'\n  condition: not selection\n");
    ungated.id = "ungated".into();
    let rules = vec![gated, std::sync::Arc::new(ungated)];
    let compiled = std::sync::Arc::new(super::CompiledSet::new(&rules).expect("compiles"));
    let mut engine =
        super::SigmaEngine::build(&rules, Some(compiled), &crate::detection::RuleStatus::ALL);
    let cases = [
        (
            process("certutil -urlcache -f http://x a", "C:\\certutil.exe"),
            (true, Some(true), vec![true, false]),
        ),
        (
            process("certutil -decode a b", "C:\\certutil.exe"),
            (false, Some(true), vec![true, true]),
        ),
        (
            process("notepad a", "C:\\notepad.exe"),
            (false, Some(false), vec![false, false]),
        ),
    ];
    for (event, (matched, gate, searches)) in cases {
        let mut detections = Vec::new();
        let reports = engine.explain(&event, &mut detections);
        let mut plain = Vec::new();
        engine.evaluate(&event, &mut plain);
        assert_eq!(detections, plain, "the same detections as `evaluate`");
        assert_eq!(reports.len(), 2);
        let first = &reports[0];
        assert_eq!(
            (
                first.matched,
                first.gate,
                first
                    .searches
                    .iter()
                    .map(|(_, held)| *held)
                    .collect::<Vec<_>>()
            ),
            (matched, gate, searches)
        );
        assert_eq!(reports[1].gate, None, "a rule of only `not` has no gate");
        assert!(reports[1].matched);
    }
}
