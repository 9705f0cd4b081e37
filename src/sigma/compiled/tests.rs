//! The compiled set against the direct evaluator: the evaluator defines the meaning, so on every
//! generated rule and event the two must name the same rules.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;

use crate::diagnostics::Position;
use crate::event::{Event, EventKind, Field};
use crate::sigma::ast::{
    Compare, Condition, GlobPart, Item, Level, Regex, Search, SearchBody, SigmaRule, TextMatch,
    ValueTest,
};
use crate::sigma::eval;

use super::CompiledSet;

/// Words values and needles are made of, so that needles often occur in values: path pieces,
/// command-line switches, and non-ASCII text whose lowercase differs in length or form (`İ`
/// lowercases to two characters, `Σ` to `σ` or `ς` by position, `ß` has no one-letter capital).
const WORDS: &[&str] = &[
    "cmd",
    "exe",
    "\\",
    ".",
    "c:",
    "windows",
    "powershell",
    "-enc",
    " ",
    "/c",
    "a",
    "ab",
    "é",
    "İ",
    "ß",
    "Σ",
    "σ",
    "x",
    "1",
    "10",
    "=",
    "/",
    "sha1=",
];

fn word() -> impl Strategy<Value = String> {
    prop::sample::select(WORDS).prop_map(str::to_owned)
}

/// A word in some case: as written, upper, or lower.
fn cased_word() -> impl Strategy<Value = String> {
    (word(), 0..3u8).prop_map(|(w, case)| match case {
        0 => w,
        1 => w.to_uppercase(),
        _ => w.to_lowercase(),
    })
}

fn text(max_words: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(cased_word(), 0..max_words).prop_map(|words| words.concat())
}

/// A needle as the parser stores it: lowercased unless cased. Now and then an uncased needle
/// keeps capitals or is empty, which the parser never writes but the set must still get right.
fn needle(cased: bool) -> impl Strategy<Value = String> {
    (text(4), 0..10u8).prop_map(move |(t, odd)| match (cased, odd) {
        (_, 0) => String::new(),
        (false, 1) => t,
        (false, _) => t.to_lowercase(),
        (true, _) => t,
    })
}

fn text_match() -> impl Strategy<Value = TextMatch> {
    prop_oneof![
        Just(TextMatch::Exact),
        Just(TextMatch::Contains),
        Just(TextMatch::StartsWith),
        Just(TextMatch::EndsWith),
    ]
}

/// Fields of several types: text, an integer and an address, on two event kinds.
const FIELDS: &[Field] = &[
    Field::Cmdline,
    Field::Image,
    Field::ParentName,
    Field::User,
    Field::Pid,
    Field::RemoteIp,
];

fn field() -> impl Strategy<Value = Field> {
    prop::sample::select(FIELDS)
}

fn glob_part(cased: bool) -> impl Strategy<Value = GlobPart> {
    prop_oneof![
        3 => needle(cased).prop_map(GlobPart::Literal),
        1 => Just(GlobPart::AnyRun),
        1 => Just(GlobPart::AnyOne),
    ]
}

const REGEXES: &[&str] = &[
    "(?i)cmd.*exe",
    "^[0-9]+$",
    "é",
    "(?i)σ",
    "^$",
    "\\\\windows\\\\",
    // Regular expressions with a text every match holds, which gates them.
    "\\s-c\\s",
    "-enc\\s+x",
    "(?:ab)+cmd",
    "a|cmd",
    "(?i)\\s(-u|--user)\\s*:",
    "c:\\\\windows",
    "CMD.*é",
    "(?i)windows.exe",
    "(?i)cmd.{0,3}σ",
    "(?i)İx",
];

fn value_test() -> impl Strategy<Value = ValueTest> {
    prop_oneof![
        6 => (text_match(), any::<bool>())
            .prop_flat_map(|(how, cased)| needle(cased)
                .prop_map(move |needle| ValueTest::Text { how, needle, cased })),
        3 => any::<bool>().prop_flat_map(|cased| prop::collection::vec(glob_part(cased), 0..5)
            .prop_map(move |pattern| ValueTest::Glob { pattern, cased })),
        1 => prop::sample::select(REGEXES).prop_filter_map("regex compiles", |source| {
            regex::Regex::new(source).ok().map(|compiled| ValueTest::Regex(Regex {
                source: source.to_owned(),
                compiled,
            }))
        }),
        1 => prop::sample::select(&[("10.0.0.0", 8u8), ("192.168.1.0", 24), ("::1", 128), ("0.0.0.0", 0)][..])
            .prop_filter_map("address parses", |(net, prefix)| net.parse::<IpAddr>().ok()
                .map(|network| ValueTest::Cidr { network, prefix })),
        1 => (prop_oneof![Just(Compare::Gt), Just(Compare::Gte), Just(Compare::Lt), Just(Compare::Lte)],
              prop::sample::select(&[0.0, 10.0, 100.0, 4000.5, 1e9][..]))
            .prop_map(|(op, value)| ValueTest::Compare { op, value }),
        1 => any::<bool>().prop_map(ValueTest::Exists),
        1 => Just(ValueTest::Null),
        1 => (field(), text_match(), any::<bool>())
            .prop_map(|(other, how, cased)| ValueTest::FieldRef { other, how, cased }),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    (
        field(),
        prop::collection::vec(value_test(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(field, tests, all)| Item {
            field,
            written: field.as_str().to_owned(),
            tests,
            all,
        })
}

fn search_body() -> impl Strategy<Value = SearchBody> {
    prop_oneof![
        3 => prop::collection::vec(item(), 0..3).prop_map(SearchBody::AllOf),
        1 => prop::collection::vec(prop::collection::vec(item(), 0..3), 0..3)
            .prop_map(SearchBody::AnyOf),
        1 => (prop::collection::vec(value_test(), 0..3), any::<bool>())
            .prop_map(|(tests, all)| SearchBody::Keywords { tests, all }),
    ]
}

/// A condition over `searches` search identifiers (one index past the end now and then).
fn condition(searches: usize) -> impl Strategy<Value = Condition> {
    let leaf = (0..=searches).prop_map(Condition::Search);
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|c| Condition::Not(Box::new(c))),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Condition::And),
            prop::collection::vec(inner, 0..3).prop_map(Condition::Or),
        ]
    })
}

fn kinds() -> impl Strategy<Value = Vec<EventKind>> {
    prop_oneof![
        3 => Just(vec![EventKind::ProcessCreate]),
        1 => Just(vec![EventKind::NetworkConnection]),
        1 => Just(vec![EventKind::ProcessCreate, EventKind::NetworkConnection]),
    ]
}

pub(crate) fn rule(
    searches: Vec<Search>,
    condition: Condition,
    kinds: Vec<EventKind>,
) -> SigmaRule {
    SigmaRule {
        path: PathBuf::from("generated.yml"),
        position: Position::START,
        id: Arc::from("generated"),
        stem: Arc::from("generated"),
        name: None,
        title: "generated".to_owned(),
        description: None,
        status: None,
        level: Level::Medium,
        author: None,
        references: Vec::new(),
        falsepositives: Vec::new(),
        tags: Vec::new(),
        kinds,
        searches,
        condition,
    }
}

fn sigma_rule() -> impl Strategy<Value = SigmaRule> {
    (prop::collection::vec(search_body(), 1..4), kinds()).prop_flat_map(|(bodies, kinds)| {
        let count = bodies.len();
        condition(count).prop_map(move |condition| {
            let searches = bodies
                .iter()
                .enumerate()
                .map(|(i, body)| Search {
                    name: format!("selection{i}"),
                    body: body.clone(),
                })
                .collect();
            rule(searches, condition, kinds.clone())
        })
    })
}

fn event() -> impl Strategy<Value = Event> {
    (
        prop_oneof![3 => Just(EventKind::ProcessCreate), 1 => Just(EventKind::NetworkConnection)],
        prop::option::weighted(0.8, text(6)),
        prop::option::weighted(0.8, text(4)),
        prop::option::weighted(0.5, text(3)),
        prop::option::weighted(0.5, text(2)),
        prop::option::of(prop::sample::select(
            &[0u32, 10, 100, 4000, 4001, 123_456][..],
        )),
        prop::option::of(
            prop::sample::select(&["10.1.2.3", "192.168.1.7", "::1", "8.8.8.8"][..])
                .prop_filter_map("address parses", |a| a.parse::<IpAddr>().ok()),
        ),
    )
        .prop_map(|(kind, cmdline, image, parent, user, pid, remote_ip)| {
            let mut event = Event::new("e", kind, 0);
            event.cmdline = cmdline;
            event.image = image;
            event.parent_name = parent;
            event.user = user;
            event.pid = pid;
            event.remote_ip = remote_ip;
            event
        })
}

/// What the evaluator says: the rules for the event's kind that match.
pub(crate) fn expected(rules: &[Arc<SigmaRule>], event: &Event) -> Vec<usize> {
    rules
        .iter()
        .enumerate()
        .filter(|(_, rule)| rule.kinds.contains(&event.kind) && eval::matches(rule, event))
        .map(|(i, _)| i)
        .collect()
}

/// A rule with one item: `needles` tested on `field` in one way.
fn one_item_rule(field: Field, how: TextMatch, cased: bool, needles: Vec<String>) -> SigmaRule {
    rule(
        vec![search(
            "s",
            SearchBody::AllOf(vec![Item {
                field,
                written: field.as_str().to_owned(),
                tests: needles
                    .into_iter()
                    .map(|needle| ValueTest::Text { how, needle, cased })
                    .collect(),
                all: false,
            }]),
        )],
        Condition::Search(0),
        vec![EventKind::ProcessCreate],
    )
}

/// Needles that hold `=` (so a field's needles can share a pivot byte), or, unless `pivoted`,
/// now and then a path tail.
fn structured_needle(cased: bool, pivoted: bool) -> impl Strategy<Value = String> {
    let (fixed, free, tail) = if pivoted { (1, 0, 0) } else { (1, 1, 1) };
    prop_oneof![
        // Few shapes, as hash lists have (`md5=` and 32 digits): what a pivot needs.
        fixed => (
            prop::sample::select(&["md5", "sha1", "x"][..]),
            prop::collection::vec(prop::sample::select(&['a', 'b', 'A', '1', '='][..]), 3),
        )
            .prop_map(|(algo, digits)| format!("{algo}={}", digits.into_iter().collect::<String>())),
        free => (text(2), text(3)).prop_map(|(a, b)| format!("{a}={b}")),
        tail => text(2).prop_map(|a| format!("\\{a}")),
    ]
    .prop_map(move |n| if cased { n } else { n.to_lowercase() })
}

/// Values built from those needles' pieces, so they occur often and at the edges.
fn structured_value() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            cased_word(),
            Just("=".to_owned()),
            Just("\\".to_owned()),
            Just("MD5=".to_owned()),
            Just("sha1=a".to_owned()),
            Just("bA1".to_owned()),
        ],
        0..10,
    )
    .prop_map(|words| words.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Many needles on one field: enough for the whole-value, path-tail and pivot-byte indexes
    /// to take them out of the automaton.
    #[test]
    fn indexed_needles_agree_with_the_evaluator(
        rules in any::<bool>().prop_flat_map(|pivoted| prop::collection::vec(
            (text_match(), any::<bool>()).prop_flat_map(move |(how, cased)| {
                prop::collection::vec(structured_needle(cased, pivoted), 1..6)
                    .prop_map(move |needles| one_item_rule(Field::Hashes, how, cased, needles))
            }),
            8..24,
        )),
        values in prop::collection::vec(structured_value(), 1..12),
    ) {
        let rules: Vec<Arc<SigmaRule>> = rules.into_iter().map(Arc::new).collect();
        let set = CompiledSet::new(&rules).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut scratch = set.scratch();
        let mut out = Vec::new();
        for value in values {
            let mut event = Event::new("e", EventKind::ProcessCreate, 0);
            event.hashes = Some(value);
            set.matches(&event, &mut scratch, &mut out);
            prop_assert_eq!(&out, &expected(&rules, &event), "event {:?}", event);
        }
    }

    #[test]
    fn compiled_set_agrees_with_the_evaluator(
        rules in prop::collection::vec(sigma_rule(), 1..8),
        events in prop::collection::vec(event(), 1..12),
    ) {
        let rules: Vec<Arc<SigmaRule>> = rules.into_iter().map(Arc::new).collect();
        let set = CompiledSet::new(&rules).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // One scratch for all events, as a worker holds it: stale marks must not leak.
        let mut scratch = set.scratch();
        let mut out = Vec::new();
        for event in &events {
            set.matches(event, &mut scratch, &mut out);
            prop_assert_eq!(&out, &expected(&rules, event), "event {:?}", event);
        }
    }
}

fn text_item(field: Field, how: TextMatch, needles: &[&str]) -> Item {
    Item {
        field,
        written: field.as_str().to_owned(),
        tests: needles
            .iter()
            .map(|n| ValueTest::Text {
                how,
                needle: (*n).to_owned(),
                cased: false,
            })
            .collect(),
        all: false,
    }
}

fn search(name: &str, body: SearchBody) -> Search {
    Search {
        name: name.to_owned(),
        body,
    }
}

fn process(cmdline: &str, image: &str) -> Event {
    let mut event = Event::new("e", EventKind::ProcessCreate, 0);
    event.cmdline = Some(cmdline.to_owned());
    event.image = Some(image.to_owned());
    event
}

#[test]
fn a_rule_whose_condition_holds_without_hits_runs_on_every_event() {
    // `not filter`: true on an event none of whose needles occur, so it cannot wait for a hit.
    let rules = vec![Arc::new(rule(
        vec![search(
            "filter",
            SearchBody::AllOf(vec![text_item(
                Field::Image,
                TextMatch::EndsWith,
                &["\\svchost.exe"],
            )]),
        )],
        Condition::Not(Box::new(Condition::Search(0))),
        vec![EventKind::ProcessCreate],
    ))];
    let set = CompiledSet::new(&rules).map_err(|e| e.to_string());
    let Ok(set) = set else {
        unreachable!("hand-written rules compile: {set:?}");
    };
    assert_eq!(set.stats().always_checked, 1);
    assert_eq!(
        set.matching(&process("cmd /c whoami", "C:\\Windows\\cmd.exe")),
        vec![0]
    );
    assert!(
        set.matching(&process("", "C:\\Windows\\SVCHOST.EXE"))
            .is_empty()
    );
}

#[test]
fn startswith_endswith_and_exact_need_the_needle_at_the_value_edges() {
    let rules: Vec<Arc<SigmaRule>> = [TextMatch::StartsWith, TextMatch::EndsWith, TextMatch::Exact]
        .into_iter()
        .map(|how| {
            Arc::new(rule(
                vec![search(
                    "s",
                    SearchBody::AllOf(vec![text_item(Field::Cmdline, how, &["cmd"])]),
                )],
                Condition::Search(0),
                vec![EventKind::ProcessCreate],
            ))
        })
        .collect();
    let Ok(set) = CompiledSet::new(&rules) else {
        unreachable!("hand-written rules compile");
    };
    assert_eq!(set.matching(&process("CMD /c x", "")), vec![0]);
    assert_eq!(set.matching(&process("x cmd", "")), vec![1]);
    assert_eq!(set.matching(&process("Cmd", "")), vec![0, 1, 2]);
    assert!(set.matching(&process("x cmd x", "")).is_empty());
    // Overlapping occurrences: the one at the end must be seen although an earlier one overlaps.
    assert_eq!(set.matching(&process("cmdcmd", "")), vec![0, 1]);
}

#[test]
fn non_ascii_values_are_lowercased_as_the_evaluator_does() {
    // `İ` lowercases to `i̇` (two characters): the needle `i̇x` occurs only in the folded value.
    let rules = vec![Arc::new(rule(
        vec![search(
            "s",
            SearchBody::AllOf(vec![text_item(
                Field::Cmdline,
                TextMatch::EndsWith,
                &["i\u{307}x"],
            )]),
        )],
        Condition::Search(0),
        vec![EventKind::ProcessCreate],
    ))];
    let Ok(set) = CompiledSet::new(&rules) else {
        unreachable!("hand-written rules compile");
    };
    let event = process("AİX", "");
    assert_eq!(set.matching(&event), expected(&rules, &event));
    assert_eq!(set.matching(&event), vec![0]);
}

#[test]
fn the_set_reports_its_memory() {
    let rules = vec![Arc::new(rule(
        vec![search(
            "s",
            SearchBody::AllOf(vec![text_item(
                Field::Cmdline,
                TextMatch::Contains,
                &["-enc", "iex"],
            )]),
        )],
        Condition::Search(0),
        vec![EventKind::ProcessCreate],
    ))];
    let Ok(set) = CompiledSet::new(&rules) else {
        unreachable!("hand-written rules compile");
    };
    let Ok(empty) = CompiledSet::new(&[]) else {
        unreachable!("an empty set compiles");
    };
    assert!(set.heap_bytes() > empty.heap_bytes());
}

#[test]
fn hash_lists_are_found_by_their_equals_sign_not_by_an_automaton() {
    // Sysmon's `Hashes` is long hex, the automaton's slowest input; needles that all hold `=`
    // are looked up where the value has one.
    let needles: Vec<String> = (0..20)
        .map(|i| format!("imphash={i:032x}"))
        .chain((0..4).map(|i| format!("sha256={i:064x}")))
        .collect();
    let rules = vec![Arc::new(one_item_rule(
        Field::Hashes,
        TextMatch::Contains,
        false,
        needles,
    ))];
    let Ok(set) = CompiledSet::new(&rules) else {
        unreachable!("hand-written rules compile");
    };
    assert_eq!(set.stats().indexed_needles, 24);
    let hashes = |imphash: &str| {
        let mut event = Event::new("e", EventKind::ProcessCreate, 0);
        event.hashes = Some(format!(
            "SHA1=686156E10E4181A63E5E5F10460B2DD0E884A0A0,MD5=EBA098C6B94F14AB1DB28ABB4F8B2A8F,\
             IMPHASH={imphash}"
        ));
        event
    };
    let hit = hashes(&format!("{:032X}", 7));
    assert_eq!(set.matching(&hit), vec![0]);
    assert_eq!(set.matching(&hit), expected(&rules, &hit));
    // One hex digit short of a listed hash, and one hex digit longer (contains still holds).
    let short = hashes(&format!("{:031X}", 7));
    assert_eq!(set.matching(&short), expected(&rules, &short));
    assert!(set.matching(&short).is_empty());
    let longer = hashes(&format!("{:032X}F", 7));
    assert_eq!(set.matching(&longer), vec![0]);
}

#[test]
fn exact_values_and_path_tails_are_looked_up() {
    let rules = vec![
        Arc::new(one_item_rule(
            Field::Image,
            TextMatch::EndsWith,
            false,
            vec!["\\powershell.exe".to_owned(), "\\pwsh.exe".to_owned()],
        )),
        Arc::new(one_item_rule(
            Field::OriginalFileName,
            TextMatch::Exact,
            false,
            vec!["powershell.exe".to_owned()],
        )),
    ];
    let Ok(set) = CompiledSet::new(&rules) else {
        unreachable!("hand-written rules compile");
    };
    assert_eq!(set.stats().indexed_needles, 3);
    let mut event = process(
        "",
        "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\PowerShell.EXE",
    );
    event.original_file_name = Some("PowerShell.EXE".to_owned());
    assert_eq!(set.matching(&event), vec![0, 1]);
    // The tail must be the whole last segment, and the exact value the whole value.
    let mut event = process("", "C:\\x\\notpowershell.exe");
    event.original_file_name = Some("powershell.exe.mui".to_owned());
    assert!(set.matching(&event).is_empty());
    let event = process("", "powershell.exe");
    assert!(set.matching(&event).is_empty());
}

#[test]
fn a_regular_expression_waits_for_the_text_every_match_holds() {
    use super::regex_gate;
    let gate = regex_gate;
    let cased = |text: &str| Some((text.to_owned(), true));
    let folded = |text: &str| Some((text.to_owned(), false));
    assert_eq!(gate("\\s-c\\s"), cased("-c"));
    assert_eq!(gate("://[0-9]{1,3}\\."), cased("://"));
    assert_eq!(
        gate("cmd.{0,5}(?:/c|/r).+powershell.+"),
        cased("powershell")
    );
    assert_eq!(gate("(?:ab)+cmd"), cased("cmd"));
    assert_eq!(gate("(?:abcd)+x"), cased("abcd"));
    assert_eq!(gate("(?i)\\s(-u|--user)\\s*:"), cased(":"));
    // Under `(?i)` a run through letters gates the lowercased value; `s` (which also matches
    // `ſ`) and `Σ` end such a run.
    assert_eq!(gate("(?i)powerShell"), folded("power"));
    assert_eq!(
        gate("(?i)\\.exe\\s+werfaultsecure\\.exe"),
        folded("ecure.exe")
    );
    assert_eq!(gate("(?i)kΣx"), folded("k"));
    assert_eq!(gate("ΣΣΣ"), cased("ΣΣΣ"));
    // Alternatives and optional parts give no gate.
    assert_eq!(gate("a|cmd"), None);
    assert_eq!(gate("(?:cmd)?x*"), None);
    assert_eq!(regex_gate("^$"), None);
}

#[test]
fn a_short_needle_no_rule_waits_for_is_checked_when_its_rule_runs_not_scanned() {
    // `Image|endswith: \certutil.exe` wakes the rule; `-f` (in most command lines) is only
    // checked when it runs, on the value lowercased once.
    let rules = vec![Arc::new(rule(
        vec![
            search(
                "image",
                SearchBody::AllOf(vec![text_item(
                    Field::Image,
                    TextMatch::EndsWith,
                    &["\\certutil.exe"],
                )]),
            ),
            search(
                "switch",
                SearchBody::AllOf(vec![text_item(
                    Field::Cmdline,
                    TextMatch::Contains,
                    &["-f"],
                )]),
            ),
        ],
        Condition::And(vec![Condition::Search(0), Condition::Search(1)]),
        vec![EventKind::ProcessCreate],
    ))];
    let set = CompiledSet::new(&rules).map_err(|e| e.to_string());
    let Ok(set) = set else {
        unreachable!("hand-written rules compile: {set:?}");
    };
    let stats = set.stats();
    assert_eq!((stats.literal_atoms, stats.deferred_atoms), (1, 1));
    assert_eq!(stats.needles, 1, "only the waking needle is scanned");
    let certutil = "C:\\Windows\\System32\\certutil.exe";
    for (cmdline, image, hit) in [
        ("certutil -F -urlcache http://x", certutil, true),
        ("certutil -urlcache -f http://x", certutil, true),
        ("certutil -urlcache http://x", certutil, false),
        ("cmd /c -f", "C:\\Windows\\System32\\cmd.exe", false),
    ] {
        let event = process(cmdline, image);
        assert_eq!(set.matching(&event), expected(&rules, &event), "{cmdline}");
        assert_eq!(set.matching(&event).len(), usize::from(hit), "{cmdline}");
    }
}
