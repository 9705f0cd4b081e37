//! Filter modifiers, named lists, helpers and top-level state (issue 16, item 4).

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::detection::Detection;
use crate::event::{Event, EventKind};

fn library(lists: &[&str], helpers: &[&str]) -> Library {
    let lists = lists
        .iter()
        .enumerate()
        .map(|(n, text)| {
            load_list(Path::new(&format!("lists/{n}.yaml")), text).expect("list loads")
        })
        .collect();
    let helpers = helpers
        .iter()
        .enumerate()
        .map(|(n, text)| {
            let path = std::path::PathBuf::from(format!("lib/{n}.rhai"));
            let ast = load_helpers(&path, text, &RuleLimits::default()).expect("helpers load");
            (path, ast)
        })
        .collect();
    Library::new(Lists::new(lists), helpers)
}

fn load_in(source: &str, library: &Library) -> Result<RuleDefinition, Diagnostics> {
    load_rule_in(
        Path::new("rules/r.rhai"),
        source,
        &RuleLimits::default(),
        library,
    )
}

fn refused(source: &str, library: &Library) -> Vec<(usize, usize, &'static str, String)> {
    load_in(source, library)
        .expect_err("the rule should not load")
        .into_iter()
        .map(|d| (d.line, d.column, d.code, d.message))
        .collect()
}

fn fired(rules: &[&str], library: &Library, event: &Event) -> Vec<String> {
    let definitions: Vec<Arc<RuleDefinition>> = rules
        .iter()
        .map(|s| Arc::new(load_in(s, library).expect("rule loads")))
        .collect();
    let mut engine = RuleEngine::build_in(
        &definitions,
        &RuleLimits::default(),
        &crate::intel::IntelHandle::default(),
        None,
        library,
    )
    .expect("builds");
    let (mut detections, mut failures): (Vec<Detection>, _) = (Vec::new(), Vec::new());
    engine.evaluate(event, &[], &mut detections, &mut failures);
    assert!(failures.is_empty(), "{failures:?}");
    detections.iter().map(|d| d.rule.to_string()).collect()
}

fn connection(host: &str, user: Option<&str>, remote: &str) -> Event {
    let mut event = Event::new("e1", EventKind::NetworkConnection, 0);
    event.host = Some(host.into());
    event.user = user.map(Into::into);
    event.name = Some("curl.exe".into());
    event.remote_ip = Some(remote.parse().expect("ip"));
    event.remote_port = Some(443);
    event
}

fn filter_rule(filter: &str) -> String {
    format!(
        r#"let rule = #{{ id: "f", title: "F", severity: "low", events: ["network_connection"], filter: #{{ {filter} }} }};"#
    )
}

#[test]
fn a_filter_with_not_re_cidr_and_exists_matches_as_documented() {
    let none = Library::default();
    let event = connection("WS-12", None, "10.20.30.40");
    let cases: [(&str, bool); 14] = [
        (r#""host|not": ["ws-1", "ws-2"]"#, true),
        (r#""host|not": ["ws-12"]"#, false),
        (r#""host|startswith|not": ["srv-"]"#, true),
        (r#""host|startswith|not": ["WS-"]"#, false),
        (r#""host|re": ["^ws-\\d+$"]"#, true),
        (r#""host|re": ["^ws-\\d$"]"#, false),
        (r#""host|re|not": ["^srv"]"#, true),
        (r#""remote_ip|cidr": ["10.0.0.0/8", "2001:db8::/32"]"#, true),
        (r#""remote_ip|cidr": ["192.168.0.0/16"]"#, false),
        (r#""remote_ip|cidr|not": ["10.20.0.0/16"]"#, false),
        (r#""user|exists": false"#, true),
        (r#""user|exists": true"#, false),
        // An absent field is none of the values, so `not` holds for it.
        (r#""user|not": ["root"]"#, true),
        (r#""host|exists": true, "remote_port": 443"#, true),
    ];
    for (filter, expected) in cases {
        let fires = !fired(&[&filter_rule(filter)], &none, &event).is_empty();
        assert_eq!(fires, expected, "filter {filter}");
    }
    let v6 = connection("ws-12", Some("bob"), "2001:db8::7");
    assert_eq!(
        fired(
            &[&filter_rule(
                r#""remote_ip|cidr": ["2001:db8::/32"], "user|exists": true"#
            )],
            &none,
            &v6
        ),
        ["f"]
    );
    // An IPv4-mapped event address is the IPv4 address.
    let mapped = connection("ws-12", None, "::ffff:10.1.1.1");
    assert_eq!(
        fired(
            &[&filter_rule(r#""remote_ip|cidr": ["10.0.0.0/8"]"#)],
            &none,
            &mapped
        ),
        ["f"]
    );
}

#[test]
fn filter_conditions_are_checked_cheapest_first() {
    let p = Prefilter::new(
        [
            ("cmdline|re", "a.b"),
            ("cmdline|contains", "x"),
            ("remote_ip|cidr", "10.0.0.0/8"),
            ("user|exists", "true"),
            ("name", "x"),
        ]
        .iter()
        .map(|(k, v)| Prefilter::parse_condition(k, vec![v.to_string()]).expect("parses"))
        .collect(),
    );
    let order: Vec<Operator> = p.conditions.iter().map(|c| c.operator).collect();
    assert_eq!(
        order,
        [
            Operator::Exists,
            Operator::Cidr,
            Operator::Equals,
            Operator::Contains,
            Operator::Regex
        ]
    );
}

#[test]
fn a_bad_regex_in_a_filter_is_refused_with_its_position() {
    let source = "let rule = #{ id: \"f\", title: \"F\", severity: \"low\", events: [\"process_create\"],\n  filter: #{ \"cmdline|re\": [\"ok\", \"(unclosed\"] } };";
    let found = refused(source, &Library::default());
    assert_eq!(found.len(), 1, "{found:?}");
    let (line, column, code, message) = &found[0];
    assert_eq!(
        (*line, *column, *code),
        (2, 15, "rule-bad-filter"),
        "{message}"
    );
    assert!(
        message.contains("`(unclosed` is not a regular expression")
            && message.contains("unclosed group")
            && message.contains("at character 1 of the pattern"),
        "{message}"
    );
    // A pattern too large to compile is refused too, not built per worker.
    let huge = Prefilter::parse_condition("cmdline|re", vec![r"\w{1,5000}\w{1,5000}".into()])
        .expect_err("too big");
    assert!(huge.contains("cannot be used"), "{huge}");
}

#[test]
fn modifiers_are_checked_with_their_order_and_a_suggestion() {
    let err = |key: &str, value: &str| {
        Prefilter::parse_condition(key, vec![value.into()]).expect_err("refused")
    };
    let message = err("cmdline|not|contains", "x");
    assert!(
        message.contains("write `cmdline|contains|not`"),
        "{message}"
    );
    let message = err("cmdline|contians", "x");
    assert!(
        message.contains("did you mean `contains`?") && message.contains("re, cidr, exists"),
        "{message}"
    );
    assert!(err("name|cidr", "10.0.0.0/8").contains("address fields"));
    assert!(err("remote_ip|cidr", "10.0.0.0/33").contains("prefix length"));
    assert!(err("user|exists", "maybe").contains("`true` or `false`"));
    assert!(err("user|exists|not", "true").contains("exists: false"));
    assert!(err("name|contains|re|not", "x").contains("too many modifiers"));
}

const ADMIN_HOSTS: &str =
    "name: admin_hosts\ndescription: jump hosts\nvalues: [JUMP-01, jump-02]\n";
const ADMIN_NETS: &str =
    "name: admin_nets\nkind: addresses\nvalues:\n  - 10.0.0.0/8\n  - 2001:db8::/32\n";

#[test]
fn a_named_list_is_usable_from_a_filter_and_from_detect() {
    let library = library(&[ADMIN_HOSTS, ADMIN_NETS], &[]);
    let from_filter =
        filter_rule(r#""host|in_list|not": ["admin_hosts"], "remote_ip|in_list": ["admin_nets"]"#);
    let from_detect = r#"let rule = #{ id: "d", title: "D", severity: "low", events: ["network_connection"] };
fn detect(event) { !in_list("admin_hosts", event.host) && in_list("admin_nets", event.remote_ip) && !in_list("admin_hosts", event.user) }"#;
    let rules = [from_filter.as_str(), from_detect];
    assert_eq!(
        fired(&rules, &library, &connection("ws-7", None, "10.1.2.3")),
        ["f", "d"],
        "a workstation talking to an admin network"
    );
    assert!(
        fired(&rules, &library, &connection("jump-01", None, "10.1.2.3")).is_empty(),
        "an admin host, in any case"
    );
    assert!(
        fired(&rules, &library, &connection("ws-7", None, "192.0.2.1")).is_empty(),
        "outside the admin networks"
    );
    assert_eq!(
        fired(&rules, &library, &connection("ws-7", None, "2001:db8::1")),
        ["f", "d"]
    );
}

#[test]
fn an_unknown_list_name_is_refused_with_did_you_mean() {
    let library = library(&[ADMIN_HOSTS], &[]);
    let found = refused(&filter_rule(r#""host|in_list": ["admin_host"]"#), &library);
    assert!(
        found[0]
            .3
            .contains("no list named `admin_host` (did you mean `admin_hosts`?)"),
        "{found:?}"
    );
    let source = "let rule = #{ id: \"d\", title: \"D\", severity: \"low\", events: [\"network_connection\"] };\nfn detect(event) {\n    in_list(\"admin_hots\", event.host)\n}";
    let found = refused(source, &library);
    assert_eq!(
        found.iter().map(|f| (f.0, f.1, f.2)).collect::<Vec<_>>(),
        [(3, 14, "rule-unknown-list")],
        "{found:?}"
    );
    assert!(
        found[0].3.contains("did you mean `admin_hosts`?"),
        "{found:?}"
    );
}

const HELPERS: &str = r#"
// Shared by every rule.
fn is_office(name) {
    let office = ["winword.exe", "excel.exe", "powerpnt.exe"];
    office.contains(name.to_lower())
}

private fn shell_names() { ["cmd.exe", "powershell.exe"] }

fn is_shell(name) { shell_names().contains(name.to_lower()) }
"#;

#[test]
fn a_lib_helper_is_callable_from_every_rule() {
    let library = library(&[], &[HELPERS]);
    let first = r#"let rule = #{ id: "office-shell", title: "O", severity: "high", events: ["process_create"] };
fn detect(event) { is_office(event.parent_name) && is_shell(event.name) }"#;
    let second = r#"let rule = #{ id: "any-shell", title: "S", severity: "low", events: ["process_create"] };
fn detect(event) { is_shell(event.name) }"#;
    let mut event = Event::new("e1", EventKind::ProcessCreate, 0);
    event.name = Some("CMD.EXE".into());
    event.parent_name = Some("WINWORD.EXE".into());
    assert_eq!(
        fired(&[first, second], &library, &event),
        ["office-shell", "any-shell"]
    );
    event.parent_name = Some("explorer.exe".into());
    assert_eq!(fired(&[first, second], &library, &event), ["any-shell"]);
    // A rule's own function of the same name and arity wins over the helper, for that rule.
    let own = r#"let rule = #{ id: "own", title: "O", severity: "low", events: ["process_create"] };
fn is_shell(name) { false }
fn detect(event) { is_shell(event.name) }"#;
    assert_eq!(fired(&[own, second], &library, &event), ["any-shell"]);
    // Without the library the call fails, as any unknown function does.
    let definitions = vec![Arc::new(
        load_in(second, &Library::default()).expect("loads"),
    )];
    let mut engine = RuleEngine::build(
        &definitions,
        &RuleLimits::default(),
        &crate::intel::IntelHandle::default(),
    )
    .expect("builds");
    let (mut detections, mut failures) = (Vec::new(), Vec::new());
    engine.evaluate(&event, &[], &mut detections, &mut failures);
    assert!(failures[0].message.contains("is_shell"), "{failures:?}");
}

#[test]
fn a_helper_runs_under_the_calling_rules_limits() {
    let library = library(&[], &["fn spin() { loop { } }"]);
    let rule = r#"let rule = #{ id: "spin", title: "S", severity: "low", events: ["process_create"] };
fn detect(event) { spin() }"#;
    let definitions = vec![Arc::new(load_in(rule, &library).expect("loads"))];
    let mut engine = RuleEngine::build_in(
        &definitions,
        &RuleLimits::default(),
        &crate::intel::IntelHandle::default(),
        None,
        &library,
    )
    .expect("builds");
    let (mut detections, mut failures) = (Vec::new(), Vec::new());
    let event = Event::new("e1", EventKind::ProcessCreate, 0);
    engine.evaluate(&event, &[], &mut detections, &mut failures);
    assert!(
        failures[0].message.contains("operations limit")
            || failures[0].message.contains("time budget"),
        "{failures:?}"
    );
}

#[test]
fn a_lib_file_with_anything_but_functions_is_refused_with_its_position() {
    let problems = |source: &str| -> Vec<(usize, usize, &'static str)> {
        load_helpers(Path::new("lib/x.rhai"), source, &RuleLimits::default())
            .expect_err("refused")
            .into_iter()
            .map(|d| (d.line, d.column, d.code))
            .collect()
    };
    assert_eq!(
        problems("fn a() { 1 }\nlet counts = #{};\nconst LIMIT = 3;\nfn b() { 2 }\n"),
        [(2, 1, "lib-top-level"), (3, 1, "lib-top-level")]
    );
    assert_eq!(
        problems("fn a() { 1 }\nprint(\"loaded\");\n"),
        [(2, 1, "lib-top-level")]
    );
    assert_eq!(
        problems("fn detect(event) { true }\n"),
        [(1, 1, "lib-reserved-name")]
    );
    let imports = problems("import \"x\" as x;\nfn a() { 1 }\n");
    assert!(imports.contains(&(1, 1, "lib-import")), "{imports:?}");
}

#[test]
fn top_level_state_in_a_rule_is_refused_by_validate() {
    // Read (compiles, then failed on every event) and written (did not compile, with a
    // message that did not say why).
    for (body, column) in [
        ("counts.len() >= 0", 5),
        ("counts[event.host] = 1;\n    true", 5),
    ] {
        let source = format!(
            "let rule = #{{ id: \"r\", title: \"T\", severity: \"low\", events: [\"process_create\"] }};\nlet counts = #{{}};\nfn detect(event) {{\n    {body}\n}}\n"
        );
        let found = refused(&source, &Library::default());
        assert_eq!(
            found.iter().map(|f| (f.0, f.1, f.2)).collect::<Vec<_>>(),
            [(4, column, "rule-top-level-state")],
            "{found:?}"
        );
        let message = &found[0].3;
        assert!(
            message.contains("`detect` reads `counts`, defined at the top level (line 2)")
                && message.contains("rules are stateless")
                && message.contains("tracker")
                && message.contains("lists/"),
            "{message}"
        );
    }
    // A local of the same name, a map key and a property are not the top-level variable.
    let fine = "let rule = #{ id: \"r\", title: \"T\", severity: \"low\", events: [\"process_create\"] };\nlet counts = 1;\nfn detect(event) {\n    let counts = #{ counts: 1 };\n    for (x, i) in [1] { }\n    event.counts == counts.counts\n}\n";
    assert!(load_in(fine, &Library::default()).is_ok());
    // A closure's parameter is not the top-level variable either.
    let closure = "let rule = #{ id: \"r\", title: \"T\", severity: \"low\", events: [\"process_create\"] };\nlet limit = 1;\nfn detect(event) {\n    [1, 2].filter(|limit, at| limit > at).len() > 0\n}\n";
    assert!(load_in(closure, &Library::default()).is_ok());
}
