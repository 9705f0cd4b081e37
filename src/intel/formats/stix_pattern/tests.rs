use super::*;

fn atoms(pattern: &str) -> Vec<(IndicatorKind, String, Scope)> {
    match indicators(pattern) {
        Ok(atoms) => atoms
            .into_iter()
            .map(|a| (a.kind, a.value, a.scope))
            .collect(),
        Err(refused) => panic!("{pattern}: refused: {refused:?}"),
    }
}

fn reason(pattern: &str) -> &'static str {
    match indicators(pattern) {
        Ok(atoms) => panic!("{pattern}: not refused: {atoms:?}"),
        Err(refused) => refused.reason,
    }
}

fn exact(kind: IndicatorKind, value: &str) -> (IndicatorKind, String, Scope) {
    (kind, value.to_string(), Scope::Exact)
}

#[test]
fn simple_comparisons_quotes_and_escapes() {
    assert_eq!(
        atoms("[ipv4-addr:value = '198.51.100.1']"),
        [exact(IndicatorKind::Ip, "198.51.100.1")]
    );
    assert_eq!(
        atoms("[file:hashes.'SHA-256' = 'AEFC']"),
        [exact(IndicatorKind::Sha256, "AEFC")]
    );
    assert_eq!(
        atoms("[file:hashes.MD5 == 'x']"),
        [exact(IndicatorKind::Md5, "x")]
    );
    assert_eq!(
        atoms(r"[url:value = 'http://x/it\'s\\here']"),
        [exact(IndicatorKind::Url, r"http://x/it's\here")]
    );
    // Keywords inside strings are text, not operators.
    assert_eq!(
        atoms("[url:value = 'http://x/?a=OR FOLLOWEDBY [b]']"),
        [exact(IndicatorKind::Url, "http://x/?a=OR FOLLOWEDBY [b]")]
    );
}

#[test]
fn issubset_is_a_range_and_issuperset_only_an_address() {
    assert_eq!(
        atoms("[ipv4-addr:value ISSUBSET '198.51.100.0/24']"),
        [exact(IndicatorKind::Ip, "198.51.100.0/24")]
    );
    assert_eq!(
        atoms("[network-traffic:dst_ref.value ISSUBSET '2001:db8::/48']"),
        [exact(IndicatorKind::Ip, "2001:db8::/48")]
    );
    assert_eq!(
        atoms("[ipv4-addr:value ISSUPERSET '198.51.100.7']"),
        [exact(IndicatorKind::Ip, "198.51.100.7")]
    );
    assert_eq!(
        reason("[ipv4-addr:value ISSUPERSET '198.51.100.0/24']"),
        "ISSUPERSET of a range matches no single address"
    );
    assert_eq!(
        reason("[domain-name:value ISSUBSET 'example.com']"),
        "ISSUBSET and ISSUPERSET apply to addresses only"
    );
}

#[test]
fn in_or_and_observation_or_give_every_value() {
    let found = atoms(
        "[ipv4-addr:value = '1.2.3.4' OR ipv4-addr:value IN ('5.6.7.8', '9.9.9.0/24')] \
         OR ([domain-name:value = 'evil.example'] OR [url:value = 'http://evil.example/a'])",
    );
    assert_eq!(found.len(), 5, "{found:?}");
    assert!(found.contains(&exact(IndicatorKind::Domain, "evil.example")));
    assert!(found.contains(&exact(IndicatorKind::Ip, "9.9.9.0/24")));
}

#[test]
fn and_keeps_only_hashes_of_one_file() {
    assert_eq!(
        atoms("[file:hashes.MD5 = 'AA' AND file:hashes.'SHA-256' = 'BB']"),
        [
            exact(IndicatorKind::Md5, "aa"),
            exact(IndicatorKind::Sha256, "bb")
        ]
    );
    for pattern in [
        "[file:name = 'a' AND file:hashes.MD5 = 'x']",
        "[ipv4-addr:value = '1.2.3.4' AND ipv4-addr:value = '1.2.3.5']",
        "[file:hashes.MD5 = 'x' AND (file:hashes.SHA1 = 'y' OR file:hashes.SHA1 = 'z')]",
    ] {
        assert_eq!(
            reason(pattern),
            "AND narrows the match to more than one property, which no indicator expresses",
            "{pattern}"
        );
    }
    assert_eq!(
        reason("[file:hashes.MD5 = 'aa' AND file:hashes.MD5 = 'bb']"),
        "AND of two different values for one property matches nothing"
    );
    assert_eq!(
        reason("[file:hashes.MD5 = 'aa'] AND [file:hashes.MD5 = 'bb']"),
        "AND between observations needs more than one event"
    );
}

#[test]
fn like_and_matches_only_when_exact() {
    assert_eq!(
        atoms("[domain-name:value = 'Evil.Example' OR domain-name:value LIKE '%.evil.example']"),
        [(
            IndicatorKind::Domain,
            "evil.example".into(),
            Scope::WithSubdomains
        )]
    );
    assert_eq!(
        atoms(r"[domain-name:value MATCHES '(^|\\.)evil\\.example$']"),
        [(
            IndicatorKind::Domain,
            "evil.example".into(),
            Scope::WithSubdomains
        )]
    );
    assert_eq!(
        atoms(r"[url:value MATCHES '^http://evil\\.example/a\\?b=1$']"),
        [exact(IndicatorKind::Url, "http://evil.example/a?b=1")]
    );
    assert_eq!(
        atoms("[url:value LIKE 'http://evil.example/a']"),
        [exact(IndicatorKind::Url, "http://evil.example/a")]
    );
    for pattern in [
        "[domain-name:value LIKE '%evil.example']",
        "[domain-name:value LIKE 'evil.%']",
        "[domain-name:value LIKE 'ev_l.example']",
        "[url:value LIKE 'http://evil.example/%']",
        r"[domain-name:value MATCHES 'evil\\.example']",
        r"[domain-name:value MATCHES '^evil.example$']",
        r"[url:value MATCHES '^http://evil\\.example/.*$']",
        r"[url:value MATCHES '(^|\\.)evil\\.example$']",
    ] {
        assert_eq!(reason(pattern), NOT_EXACT, "{pattern}");
    }
    assert_eq!(
        reason("[domain-name:value LIKE '%.evil.example']"),
        "pattern matches a domain's subdomains but not the domain, which no domain indicator expresses"
    );
}

#[test]
fn what_has_no_single_event_meaning_is_refused_per_reason() {
    for (pattern, why) in [
        (
            "[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [ipv4-addr:value = '5.6.7.8']",
            "FOLLOWEDBY",
        ),
        ("[ipv4-addr:value = '1.2.3.4'] WITHIN 60 SECONDS", "WITHIN"),
        ("[ipv4-addr:value = '1.2.3.4'] REPEATS 5 TIMES", "REPEATS"),
        (
            "[ipv4-addr:value = '1.2.3.4'] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'",
            "START/STOP",
        ),
        ("[ipv4-addr:value != '1.2.3.4']", "negated"),
        ("[ipv4-addr:value NOT IN ('1.2.3.4')]", "negated"),
        ("[process:name = 'x']", "object path"),
        ("[EXISTS file:hashes.MD5]", "EXISTS"),
        ("[file:size > 100]", "ordering"),
    ] {
        assert!(
            reason(pattern).contains(why),
            "{pattern}: {}",
            reason(pattern)
        );
    }
}

#[test]
fn hostile_patterns_are_refused_with_a_bounded_reason() {
    assert_eq!(reason("[url:value = 'unterminated]"), SYNTAX);
    let Err(unterminated) = indicators("[url:value = 'unterminated]") else {
        panic!("an unterminated string is refused");
    };
    assert!(
        unterminated.detail.contains("never closed"),
        "{unterminated:?}"
    );
    assert_eq!(reason(r"[url:value = 'a\n']"), SYNTAX);
    assert_eq!(reason("[ipv4-addr:value = '1.2.3.4'"), SYNTAX);
    assert_eq!(reason("[ipv4-addr:value = '1.2.3.4']]"), SYNTAX);
    assert_eq!(reason("ipv4-addr:value = '1.2.3.4'"), SYNTAX);
    assert_eq!(reason(""), SYNTAX);
    assert_eq!(reason("[ipv4-addr:value ~ '1']"), SYNTAX);

    // Deep nesting stops at the bound instead of exhausting the stack.
    let deep = format!(
        "{}[ipv4-addr:value = '1.2.3.4']{}",
        "(".repeat(100_000 / 2),
        ")".repeat(100_000 / 2)
    );
    assert_eq!(reason(&deep), "pattern is longer than palisade reads");
    let deep = format!(
        "{}[ipv4-addr:value = '1.2.3.4']{}",
        "(".repeat(1000),
        ")".repeat(1000)
    );
    assert_eq!(reason(&deep), "pattern nests deeper than palisade reads");
    let deep = format!(
        "[{}ipv4-addr:value = '1.2.3.4'{}]",
        "(".repeat(1000),
        ")".repeat(1000)
    );
    assert_eq!(reason(&deep), "pattern nests deeper than palisade reads");
    let shallow = format!(
        "{}[ipv4-addr:value = '1.2.3.4']{}",
        "(".repeat(MAX_DEPTH - 1),
        ")".repeat(MAX_DEPTH - 1)
    );
    assert_eq!(atoms(&shallow).len(), 1);

    // A huge IN list is refused at the bound, not stored a value at a time.
    let list: Vec<String> = (0..MAX_VALUES + 1)
        .map(|n| format!("'10.{}.{}.{}'", n >> 16, (n >> 8) & 255, n & 255))
        .collect();
    let huge = format!("[ipv4-addr:value IN ({})]", list.join(","));
    assert!(huge.len() < MAX_PATTERN_BYTES * 4);
    let Err(refused) = indicators(&huge) else {
        panic!("a huge IN list is refused");
    };
    assert!(
        refused.reason == "pattern stands for more values than palisade reads from one pattern"
            || refused.reason == "pattern is longer than palisade reads",
        "{refused:?}"
    );
    let within: Vec<String> = (0..2000)
        .map(|n| format!("'10.0.{}.{}'", n >> 8, n & 255))
        .collect();
    let fine = format!("[ipv4-addr:value IN ({})]", within.join(","));
    assert_eq!(atoms(&fine).len(), 2000);
}
