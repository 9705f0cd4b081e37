use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::window::{CorrelationHandle, Limits, WindowRow};
use super::*;
use crate::detection::{Detection, Entity, Stage};
use crate::event::{Event, EventKind};
use crate::sigma::ast::{Condition, Item, Search, SearchBody, TextMatch, ValueTest};

const FILE: &str = "rules/brute_force.yml";

/// A Sigma rule as the parser would hand it over: failed logins, or anything of `kind`.
fn sigma_rule(id: &str, name: Option<&str>, kind: EventKind) -> SigmaRule {
    SigmaRule {
        path: PathBuf::from("rules/base.yml"),
        position: Position::START,
        id: id.into(),
        stem: id.into(),
        name: name.map(Arc::from),
        title: format!("rule {id}"),
        description: None,
        status: Some(Status::Test),
        level: Level::Low,
        author: None,
        references: Vec::new(),
        falsepositives: Vec::new(),
        tags: Vec::new(),
        kinds: vec![kind],
        searches: vec![Search {
            name: "selection".into(),
            body: SearchBody::AllOf(vec![Item {
                field: Field::Outcome,
                written: "outcome".into(),
                tests: vec![ValueTest::Text {
                    how: TextMatch::Exact,
                    needle: "failure".into(),
                    cased: false,
                }],
                all: false,
            }]),
        }],
        condition: Condition::Search(0),
    }
}

fn base_rules() -> Vec<Arc<SigmaRule>> {
    [
        sigma_rule("failed-login", Some("failed_login"), EventKind::Login),
        sigma_rule("good-login", Some("good_login"), EventKind::Login),
        sigma_rule("recon-a", None, EventKind::Login),
        sigma_rule("recon-b", None, EventKind::Login),
        sigma_rule("recon-c", None, EventKind::Login),
        sigma_rule("spawn", None, EventKind::ProcessCreate),
    ]
    .into_iter()
    .map(Arc::new)
    .collect()
}

fn parse_text(source: &str) -> Result<CorrelationRule, Diagnostics> {
    // The loader hands over each document with where it starts; these files hold one.
    let document: Value = yaml_serde::from_str(source).unwrap();
    parse(&document, Path::new(FILE), source, Position::START)
}

fn build(source: &str, limits: Limits) -> CorrelationHandle {
    let rule = parse_text(source).unwrap();
    let correlation = resolve(&rule, &base_rules(), &[]).unwrap();
    CorrelationHandle::new(vec![correlation], limits)
}

const LIMITS: Limits = Limits {
    max_groups: 100,
    max_values: 100,
};

const BRUTE_FORCE: &str = "\
title: Many failed logins from one source
id: brute-force
level: high
tags: [attack.credential_access, attack.t1110]
correlation:
  type: event_count
  rules:
    - failed_login
  group-by:
    - source_ip
  timespan: 5m
  condition:
    gte: 20
";

const T0: i64 = 1_764_500_000_000;

fn login(n: usize, at_ms: i64, source: &str, user: &str) -> Event {
    let mut event = Event::new(format!("e{n}"), EventKind::Login, at_ms);
    event.source_ip = source.parse().ok();
    event.user = Some(user.into());
    event.outcome = Some("failure".into());
    event
}

fn detection_of(rule: &str, event: &Event) -> Detection {
    Detection {
        event_id: event.id.clone(),
        rule: rule.into(),
        stage: Stage::Rule,
        severity: crate::detection::Severity::Low,
        status: crate::detection::RuleStatus::Stable,
        title: rule.into(),
        tags: Arc::from(Vec::<String>::new()),
        entity: None,
        score: None,
        intel: Vec::new(),
        attribution: None,
    }
}

/// Feeds one event matched by `rules`; the correlation detections it produced.
fn feed(handle: &CorrelationHandle, event: &Event, rules: &[&str]) -> Vec<Detection> {
    let mut detections: Vec<Detection> = rules.iter().map(|r| detection_of(r, event)).collect();
    handle.observe(event, &mut detections, 0);
    detections.retain(|d| !rules.contains(&&*d.rule));
    detections
}

fn failed_logins(
    handle: &CorrelationHandle,
    from: usize,
    count: usize,
    start: i64,
    step: i64,
    source: &str,
) -> Vec<Detection> {
    (from..from + count)
        .flat_map(|i| {
            let event = login(i, start + (i - from) as i64 * step, source, "alice");
            feed(handle, &event, &["failed-login"])
        })
        .collect()
}

#[test]
fn event_count_fires_once_per_source_per_window_with_the_source_as_entity() {
    let handle = build(BRUTE_FORCE, LIMITS);
    // 19 failures in under 5 minutes: nothing yet.
    assert!(failed_logins(&handle, 0, 19, T0, 10_000, "203.0.113.9").is_empty());
    // The 20th: one detection, for that source, at the rule's level.
    let fired = failed_logins(&handle, 19, 1, T0 + 190_000, 10_000, "203.0.113.9");
    assert_eq!(fired.len(), 1);
    let d = &fired[0];
    assert_eq!(&*d.rule, "brute-force");
    assert_eq!(d.title, "Many failed logins from one source");
    assert_eq!(d.severity, crate::detection::Severity::High);
    assert_eq!(d.stage, Stage::Rule);
    assert_eq!(d.event_id, "e19");
    assert_eq!(&*d.tags, ["attack.credential_access", "attack.t1110"]);
    assert_eq!(
        d.entity,
        Some(Entity::Address {
            ip: "203.0.113.9".parse().unwrap()
        })
    );
    // Another source is counted on its own.
    assert!(failed_logins(&handle, 100, 19, T0, 10_000, "198.51.100.7").is_empty());
}

#[test]
fn reset_after_firing_more_events_in_the_window_that_fired_make_no_second_detection() {
    let handle = build(BRUTE_FORCE, LIMITS);
    let fired = failed_logins(&handle, 0, 20, T0, 1_000, "203.0.113.9");
    assert_eq!(fired.len(), 1);
    // 100 more within 5 minutes of the firing event: still one detection for the window.
    let more = failed_logins(&handle, 20, 100, T0 + 20_000, 2_000, "203.0.113.9");
    assert!(more.is_empty(), "{more:?}");
    // After the window, 20 more fire again, once.
    let next = failed_logins(
        &handle,
        200,
        40,
        T0 + 19_000 + 300_000,
        1_000,
        "203.0.113.9",
    );
    assert_eq!(next.len(), 1);
}

#[test]
fn window_expiry_failures_spread_over_more_than_the_timespan_never_fire() {
    let handle = build(BRUTE_FORCE, LIMITS);
    // One failure every 20 s: at most 15 fall in any 5 minutes, however long it goes on.
    let fired = failed_logins(&handle, 0, 200, T0, 20_000, "203.0.113.9");
    assert!(fired.is_empty());
    let window = handle.window("brute-force", &["203.0.113.9"]).unwrap();
    assert!(window.entries.len() <= 16, "{}", window.entries.len());
    // The stage counts by event time: a late event older than every open window is not counted.
    let late = login(999, T0, "203.0.113.9", "alice");
    assert!(feed(&handle, &late, &["failed-login"]).is_empty());
    assert!(
        handle
            .window("brute-force", &["203.0.113.9"])
            .unwrap()
            .entries
            .iter()
            .all(|e| e.ts > T0)
    );
}

#[test]
fn an_event_matched_by_two_named_rules_counts_once_for_event_count() {
    let handle = build(
        &BRUTE_FORCE.replace(
            "    - failed_login\n",
            "    - failed_login\n    - good_login\n",
        ),
        LIMITS,
    );
    for i in 0..19 {
        let event = login(i, T0 + i as i64, "203.0.113.9", "alice");
        assert!(feed(&handle, &event, &["failed-login", "good-login"]).is_empty());
    }
    let event = login(19, T0 + 19, "203.0.113.9", "alice");
    assert_eq!(feed(&handle, &event, &["good-login"]).len(), 1);
}

#[test]
fn value_count_counts_distinct_values_per_group() {
    let handle = build(
        "\
title: One source tries many accounts
id: spray
correlation:
  type: value_count
  rules: [failed-login]
  group-by: [IpAddress]
  timespan: 10m
  condition:
    field: user
    gte: 3
",
        LIMITS,
    );
    let mut fired = Vec::new();
    // The same account again and again is one value.
    for i in 0..10 {
        fired.extend(feed(
            &handle,
            &login(i, T0 + i as i64, "192.0.2.1", "alice"),
            &["failed-login"],
        ));
    }
    assert!(fired.is_empty());
    fired.extend(feed(
        &handle,
        &login(10, T0 + 10, "192.0.2.1", "bob"),
        &["failed-login"],
    ));
    assert!(fired.is_empty());
    fired.extend(feed(
        &handle,
        &login(11, T0 + 11, "192.0.2.1", "carol"),
        &["failed-login"],
    ));
    assert_eq!(fired.len(), 1);
    assert_eq!(
        fired[0].entity,
        Some(Entity::Address {
            ip: "192.0.2.1".parse().unwrap()
        })
    );
}

const RECON: &str = "\
title: Recon burst
id: recon
level: critical
correlation:
  type: TYPE
  rules: [recon-a, recon-b, recon-c]
  group-by: [user]
  timespan: 5m
";

#[test]
fn temporal_fires_when_every_named_rule_was_seen_in_any_order() {
    let handle = build(&RECON.replace("TYPE", "temporal"), LIMITS);
    let e = |n: usize, at: i64| login(n, T0 + at, "192.0.2.1", "mallory");
    assert!(feed(&handle, &e(1, 0), &["recon-c"]).is_empty());
    assert!(feed(&handle, &e(2, 1_000), &["recon-c"]).is_empty());
    assert!(feed(&handle, &e(3, 2_000), &["recon-a"]).is_empty());
    let fired = feed(&handle, &e(4, 3_000), &["recon-b"]);
    assert_eq!(fired.len(), 1);
    assert_eq!(
        fired[0].entity,
        Some(Entity::User {
            name: "mallory".into()
        })
    );
    assert_eq!(fired[0].severity, crate::detection::Severity::Critical);
    // Another user's rules do not complete mallory's set.
    let other = build(&RECON.replace("TYPE", "temporal"), LIMITS);
    assert!(feed(&other, &login(1, T0, "192.0.2.1", "alice"), &["recon-a"]).is_empty());
    assert!(feed(&other, &login(2, T0, "192.0.2.1", "bob"), &["recon-b"]).is_empty());
    assert!(feed(&other, &login(3, T0, "192.0.2.1", "carol"), &["recon-c"]).is_empty());
    // Too far apart: a seen more than 5 minutes before b and c no longer counts.
    let slow = build(&RECON.replace("TYPE", "temporal"), LIMITS);
    assert!(feed(&slow, &e(1, 0), &["recon-a"]).is_empty());
    assert!(feed(&slow, &e(2, 400_000), &["recon-b"]).is_empty());
    assert!(feed(&slow, &e(3, 401_000), &["recon-c"]).is_empty());
}

#[test]
fn temporal_ordered_fires_only_when_the_rules_were_seen_in_their_order() {
    let handle = build(&RECON.replace("TYPE", "temporal_ordered"), LIMITS);
    let e = |n: usize, at: i64| login(n, T0 + at, "192.0.2.1", "mallory");
    // c, b, a: every rule seen, but not in order.
    assert!(feed(&handle, &e(1, 0), &["recon-c"]).is_empty());
    assert!(feed(&handle, &e(2, 1_000), &["recon-b"]).is_empty());
    assert!(feed(&handle, &e(3, 2_000), &["recon-a"]).is_empty());
    // Then b and c after that a: a, b, c in order.
    assert!(feed(&handle, &e(4, 3_000), &["recon-b"]).is_empty());
    assert_eq!(feed(&handle, &e(5, 4_000), &["recon-c"]).len(), 1);
    // Events arriving out of order are placed by event time.
    let late = build(&RECON.replace("TYPE", "temporal_ordered"), LIMITS);
    assert!(feed(&late, &e(1, 5_000), &["recon-c"]).is_empty());
    assert!(feed(&late, &e(2, 1_000), &["recon-a"]).is_empty());
    assert_eq!(feed(&late, &e(3, 2_000), &["recon-b"]).len(), 1);
}

#[test]
fn bounds_the_least_recent_group_is_evicted_and_counted_when_a_correlation_is_full() {
    let handle = build(
        BRUTE_FORCE,
        Limits {
            max_groups: 3,
            max_values: 5,
        },
    );
    for (i, source) in ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]
        .iter()
        .enumerate()
    {
        failed_logins(&handle, i * 10, 2, T0 + i as i64 * 1_000, 10, source);
    }
    assert_eq!(handle.groups()[0].1, 3);
    assert!(handle.window("brute-force", &["192.0.2.1"]).is_none());
    assert!(handle.window("brute-force", &["192.0.2.4"]).is_some());
    assert_eq!(handle.evicted().groups, 1);
    // A group keeps at most 5 entries, the newest.
    failed_logins(&handle, 100, 12, T0 + 10_000, 10, "192.0.2.4");
    let window = handle.window("brute-force", &["192.0.2.4"]).unwrap();
    assert_eq!(window.entries.len(), 5);
    assert_eq!(window.entries[4].ts, T0 + 10_000 + 110);
    assert_eq!(handle.evicted().values, 9);
}

#[test]
fn groups_whose_window_has_passed_are_dropped_and_their_rows_deleted() {
    let handle = build(BRUTE_FORCE, LIMITS);
    failed_logins(&handle, 0, 3, T0, 10, "192.0.2.1");
    let rows = handle.take_changes();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].state.is_some());
    // Ten minutes later another source: the first one's window is long gone.
    failed_logins(&handle, 10, 1, T0 + 600_000, 10, "192.0.2.2");
    assert!(handle.window("brute-force", &["192.0.2.1"]).is_none());
    let mut rows = handle.take_changes();
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].key, r#"["192.0.2.1"]"#);
    assert_eq!(rows[0].state, None);
    assert!(rows[1].state.is_some());
}

#[test]
fn an_event_without_a_group_by_value_is_counted_in_no_group() {
    let handle = build(BRUTE_FORCE, LIMITS);
    for i in 0..30 {
        let mut event = login(i, T0 + i as i64, "192.0.2.1", "alice");
        event.source_ip = None;
        assert!(feed(&handle, &event, &["failed-login"]).is_empty());
    }
    assert_eq!(handle.groups()[0].1, 0);
}

// ---- parsing and resolving ----

fn problems(result: Result<CorrelationRule, Diagnostics>) -> Vec<String> {
    result.unwrap_err().iter().map(|d| d.render()).collect()
}

#[test]
fn the_specifications_correlation_parses_with_every_attribute() {
    let rule = parse_text(
        "\
title: Many failed logins
id: 0e95725d-7320-415d-80f7-004da920fc11
name: many_failed
description: brute force
status: test
author: someone
references: [https://example.org]
falsepositives: [Unlikely]
date: 2024-01-01
level: high
generate: true
correlation:
  type: value_count
  rules:
    - failed_login
  group-by:
    - Computer
    - IpAddress
  timespan: 1h
  condition:
    gt: 100
    lte: 200
    field: User
",
    )
    .unwrap();
    assert_eq!(&*rule.id, "0e95725d-7320-415d-80f7-004da920fc11");
    assert_eq!(rule.name.as_deref(), Some("many_failed"));
    assert_eq!(rule.kind, CorrelationType::ValueCount);
    assert_eq!(rule.timespan_ms, 3_600_000);
    assert_eq!(rule.condition, vec![Bound::Gt(100), Bound::Lte(200)]);
    assert_eq!(rule.field.as_ref().unwrap().text, "User");
    assert!(rule.generate);
    assert_eq!(rule.level, Some(Level::High));
    assert_eq!(rule.author.as_deref(), Some("someone"));
    let resolved = resolve(&rule, &base_rules(), &[]).unwrap();
    assert_eq!(resolved.group_by, vec![Field::Host, Field::SourceIp]);
    assert_eq!(resolved.field, Some(Field::User));
    assert_eq!(resolved.rules, vec![Arc::<str>::from("failed-login")]);
    assert!(
        !resolved.holds(100) && resolved.holds(101) && resolved.holds(200) && !resolved.holds(201)
    );
}

#[test]
fn hostile_correlation_documents_are_refused_with_file_line_and_field() {
    let found = problems(parse_text(
        "\
title: t
correlation:
  type: event_count
  rules: [failed_login]
  group-by: [source_ip]
  timespan: 5 minutes
  condition:
    gte: -3
  windw: 1
",
    ));
    let all = found.join("\n");
    assert!(all.contains("rules/brute_force.yml:6:13: error[sigma-correlation]: `timespan` `5 minutes` is not a number"), "{all}");
    assert!(
        all.contains(
            "rules/brute_force.yml:8:10: error[sigma-correlation]: `gte` must be a whole number"
        ),
        "{all}"
    );
    assert!(
        all.contains(
            "rules/brute_force.yml:9:3: error[unknown-key]: unknown key `windw` in `correlation`"
        ),
        "{all}"
    );

    let all = problems(parse_text(
        "title: t\ncorrelation:\n  type: count\n  rules: [a]\n  timespan: 0s\n  condition: {gte: 1}\n",
    ))
    .join("\n");
    assert!(
        all.contains(":3:9: error[sigma-correlation]: unknown correlation type `count`"),
        "{all}"
    );
    assert!(
        all.contains(":5:13: error[sigma-correlation]: `timespan` `0s` is zero"),
        "{all}"
    );

    let all = problems(parse_text(
        "title: t\ncorrelation:\n  type: value_count\n  rules: [a]\n  timespan: 99999d\n  condition: {lt: 5}\n",
    ))
    .join("\n");
    assert!(all.contains("`timespan` `99999d` is too long"), "{all}");
    assert!(all.contains("a condition of only `lt`/`lte`"), "{all}");
    assert!(
        all.contains("a value_count condition needs `field`"),
        "{all}"
    );

    let all = problems(parse_text(
        "title: t\ncorrelation:\n  type: temporal\n  rules: [a, b]\n  timespan: 1m\n  aliases:\n    ip:\n      a: source.ip\n",
    ))
    .join("\n");
    assert!(
        all.contains(":6:3: error[sigma-correlation-unsupported]: `aliases` is not supported"),
        "{all}"
    );
}

#[test]
fn a_correlation_naming_a_rule_that_does_not_exist_is_an_error_at_its_line() {
    let source = BRUTE_FORCE.replace("    - failed_login\n", "    - failed_logn\n");
    let rule = parse_text(&source).unwrap();
    let err = resolve(&rule, &base_rules(), &[]).unwrap_err();
    let text = err.render();
    assert!(
        text.contains("rules/brute_force.yml:8:7: error[sigma-correlation-unknown-rule]: no loaded Sigma rule or correlation has the id or name `failed_logn` (did you mean `failed_login`?)"),
        "{text}"
    );
}

const FOLLOWED_BY_SUCCESS: &str = "\
title: Many failed logins, then a successful one, for one user
id: brute-force-then-success
level: critical
correlation:
  type: temporal_ordered
  rules:
    - many_failed
    - good_login
  group-by:
    - user
  timespan: 10m
";

const MANY_FAILED: &str = "\
title: Many failed logins for one user
id: many-failed
name: many_failed
correlation:
  type: event_count
  rules:
    - failed_login
  group-by:
    - user
  timespan: 10m
  condition:
    gte: 10
";

#[test]
fn a_correlation_may_name_another_correlation_as_in_the_specifications_example() {
    let all = [
        parse_text(FOLLOWED_BY_SUCCESS).unwrap(),
        parse_text(MANY_FAILED).unwrap(),
    ];
    let resolved = resolve_all(&all, &base_rules(), &Default::default()).unwrap();
    assert_eq!(
        resolved[0].rules,
        vec![Arc::<str>::from("many-failed"), "good-login".into()]
    );
    assert_eq!(resolved[0].group_by, vec![Field::User]);
    let handle = CorrelationHandle::new(resolved, LIMITS);
    let e = |n: usize, at: i64| login(n, T0 + at, "192.0.2.1", "bob");
    // A success first does not count: it must follow the failures.
    assert!(feed(&handle, &e(0, 0), &["good-login"]).is_empty());
    let mut fired = Vec::new();
    for i in 1..=10 {
        fired.extend(feed(&handle, &e(i, i as i64 * 1_000), &["failed-login"]));
    }
    // The inner correlation fired, but it is named by a correlation without `generate: true`,
    // so only the outer one reports.
    assert!(fired.is_empty(), "{fired:?}");
    let fired = feed(&handle, &e(11, 20_000), &["good-login"]);
    assert_eq!(fired.len(), 1);
    assert_eq!(&*fired[0].rule, "brute-force-then-success");
    assert_eq!(fired[0].entity, Some(Entity::User { name: "bob".into() }));
}

#[test]
fn correlations_naming_each_other_in_a_cycle_are_refused() {
    let a = parse_text(&MANY_FAILED.replace("    - failed_login\n", "    - loop_b\n")).unwrap();
    let b = parse_text(
        "title: b\nid: loop-b\nname: loop_b\ncorrelation:\n  type: event_count\n  rules: [many_failed]\n  group-by: [user]\n  timespan: 1m\n  condition: {gte: 1}\n",
    )
    .unwrap();
    let err = resolve_all(&[a, b], &base_rules(), &Default::default())
        .unwrap_err()
        .render();
    assert!(
        err.contains(
            "correlations name each other in a cycle (many-failed → loop-b → many-failed)"
        ),
        "{err}"
    );
    // A correlation naming itself is the shortest cycle.
    let selfish =
        parse_text(&MANY_FAILED.replace("    - failed_login\n", "    - many-failed\n")).unwrap();
    let err = resolve_all(&[selfish], &base_rules(), &Default::default())
        .unwrap_err()
        .render();
    assert!(err.contains(":7:7: error[sigma-correlation]: correlations name each other in a cycle (many-failed → many-failed)"), "{err}");
}

#[test]
fn a_correlation_with_the_id_of_a_sigma_rule_is_refused() {
    let clash = parse_text(&BRUTE_FORCE.replace("id: brute-force", "id: spawn")).unwrap();
    let err = resolve_all(&[clash], &base_rules(), &Default::default())
        .unwrap_err()
        .render();
    assert!(
        err.contains("the Sigma rule in `rules/base.yml` already has the id `spawn`"),
        "{err}"
    );
}

#[test]
fn generate_the_named_rules_detections_are_dropped_unless_the_correlation_says_generate() {
    let event = login(1, T0, "192.0.2.1", "alice");
    let quiet = build(BRUTE_FORCE, LIMITS);
    let mut detections = vec![
        detection_of("failed-login", &event),
        detection_of("spawn", &event),
    ];
    quiet.observe(&event, &mut detections, 0);
    // The named rule's own detection goes; a rule no correlation names stays.
    let rules: Vec<&str> = detections.iter().map(|d| &*d.rule).collect();
    assert_eq!(rules, ["spawn"]);
    let loud = build(&format!("generate: true\n{BRUTE_FORCE}"), LIMITS);
    let mut detections = vec![detection_of("failed-login", &event)];
    loud.observe(&event, &mut detections, 0);
    assert_eq!(detections.len(), 1);
    // Detections of earlier events in the same outcome are not touched.
    let mut detections = vec![
        detection_of("failed-login", &event),
        detection_of("failed-login", &event),
    ];
    quiet.observe(&event, &mut detections, 1);
    assert_eq!(detections.len(), 1);
}

#[test]
fn a_group_by_field_the_named_rules_events_do_not_carry_is_refused_with_its_name() {
    let source = BRUTE_FORCE
        .replace("    - failed_login\n", "    - failed_login\n    - spawn\n")
        .replace("    - source_ip\n", "    - QueryName\n    - source_ip\n");
    let rule = parse_text(&source).unwrap();
    let err = resolve(&rule, &base_rules(), &[]).unwrap_err().render();
    assert!(
        err.contains(":11:7: error[sigma-field]: group-by `QueryName`"),
        "{err}"
    );
    assert!(err.contains(":12:7: error[sigma-field]: group-by `source_ip`: this field is not carried by every event"), "{err}");
}

#[test]
fn the_level_defaults_to_the_highest_level_of_the_named_rules() {
    let rule = parse_text(&BRUTE_FORCE.replace("level: high\n", "")).unwrap();
    let mut rules = base_rules();
    Arc::make_mut(&mut rules[0]).level = Level::Medium;
    let resolved = resolve(&rule, &rules, &[]).unwrap();
    assert_eq!(resolved.severity, crate::detection::Severity::Medium);
}

#[test]
fn a_document_later_in_a_file_reports_positions_in_the_file() {
    let source = format!("title: base\nlogsource: {{product: palisade}}\n---\n{BRUTE_FORCE}")
        .replace("timespan: 5m", "timespan: 5y");
    // Through the Sigma loader, which returns correlation documents raw with their positions.
    let parsed = crate::sigma::parse::parse_file(
        Path::new(FILE),
        &source,
        &crate::sigma::SigmaConfig::default(),
    );
    let raw = parsed
        .documents
        .iter()
        .find_map(|d| match d {
            crate::sigma::parse::Document::Correlation(raw) => Some(raw),
            _ => None,
        })
        .unwrap();
    let err = parse_raw(raw).unwrap_err().render();
    assert!(
        err.contains("rules/brute_force.yml:14:13: error[sigma-correlation]: `timespan` `5y`"),
        "{err}"
    );
    assert!(err.contains("  timespan: 5y"), "{err}");
}

// ---- the state database ----

#[tokio::test]
async fn windows_survive_a_restart_through_the_state_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = crate::state::StateStore::open(&path).await.unwrap();
    let first = build(BRUTE_FORCE, LIMITS);
    assert!(failed_logins(&first, 0, 12, T0, 1_000, "203.0.113.9").is_empty());
    assert!(failed_logins(&first, 50, 3, T0, 1_000, "198.51.100.7").is_empty());
    store
        .write(&crate::state::Batch {
            correlation: first.take_changes(),
            ..Default::default()
        })
        .await
        .unwrap();
    store.close().await;

    let store = crate::state::StateStore::open(&path).await.unwrap();
    let second = build(BRUTE_FORCE, LIMITS);
    let rows = store::load_windows(store.pool()).await.unwrap();
    assert_eq!(second.restore(rows), 2);
    // The count continues: 8 more make 20.
    assert!(failed_logins(&second, 12, 7, T0 + 12_000, 1_000, "203.0.113.9").is_empty());
    assert_eq!(
        failed_logins(&second, 19, 1, T0 + 19_000, 1_000, "203.0.113.9").len(),
        1
    );
    // The quiet period after firing is stored too.
    store
        .write(&crate::state::Batch {
            correlation: second.take_changes(),
            ..Default::default()
        })
        .await
        .unwrap();
    let third = build(BRUTE_FORCE, LIMITS);
    third.restore(store::load_windows(store.pool()).await.unwrap());
    assert!(failed_logins(&third, 20, 30, T0 + 20_000, 1_000, "203.0.113.9").is_empty());
    store.close().await;
}

#[tokio::test]
async fn a_stored_window_of_a_changed_or_removed_correlation_is_not_counted_and_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::state::StateStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    let old = build(BRUTE_FORCE, LIMITS);
    failed_logins(&old, 0, 19, T0, 1_000, "203.0.113.9");
    let mut rows = old.take_changes();
    // A row that does not read back (a hand-edited or damaged file).
    rows.push(WindowRow {
        correlation: "brute-force".into(),
        fingerprint: rows[0].fingerprint.clone(),
        key: r#"["192.0.2.8"]"#.into(),
        state: Some(r#"{"entries":[{"ts":1,"rule":7}],"last":1}"#.into()),
    });
    rows.push(WindowRow {
        correlation: "gone".into(),
        fingerprint: "x".into(),
        key: "[]".into(),
        state: Some("{}".into()),
    });
    store
        .write(&crate::state::Batch {
            correlation: rows,
            ..Default::default()
        })
        .await
        .unwrap();
    // The same id now groups by user: the stored per-source count means nothing to it.
    let changed = build(&BRUTE_FORCE.replace("source_ip", "user"), LIMITS);
    assert_eq!(
        changed.restore(store::load_windows(store.pool()).await.unwrap()),
        0
    );
    assert!(
        feed(
            &changed,
            &login(99, T0 + 19_000, "203.0.113.9", "alice"),
            &["failed-login"]
        )
        .is_empty()
    );
    store
        .write(&crate::state::Batch {
            correlation: changed.take_changes(),
            ..Default::default()
        })
        .await
        .unwrap();
    let left: Vec<(String, String)> =
        sqlx::query_as("SELECT correlation, group_key FROM correlation_windows")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(
        left,
        vec![("brute-force".to_string(), r#"["alice"]"#.to_string())]
    );
    store.close().await;
}

/// Defect (far-future window): a stored window dated in the year 9000 moved the correlation's
/// watermark on restore, and every real event after it was "older than any open window".
#[test]
fn a_far_future_window_in_the_state_file_does_not_stop_counting() {
    let year_9000 = 221_845_392_000_000_i64;
    let old = build(BRUTE_FORCE, LIMITS);
    failed_logins(&old, 0, 3, T0, 1, "192.0.2.66");
    let mut rows = old.take_changes();
    rows[0].state = Some(format!(
        r#"{{"entries":[{{"ts":{year_9000},"rule":0}}],"last":{year_9000}}}"#
    ));
    let handle = build(BRUTE_FORCE, LIMITS);
    assert_eq!(handle.restore(rows), 0);
    assert_eq!(
        failed_logins(&handle, 10, 20, T0, 1_000, "203.0.113.9").len(),
        1
    );
    // The same for a live event that got past the intake with such a time.
    let live = build(BRUTE_FORCE, LIMITS);
    failed_logins(&live, 0, 3, year_9000, 1, "192.0.2.66");
    assert_eq!(
        failed_logins(&live, 10, 20, T0, 1_000, "203.0.113.9").len(),
        1
    );
}

#[test]
fn ambiguous_and_repeated_names_and_misplaced_keys_are_refused_at_their_lines() {
    // A name that two rules carry cannot say which one is meant.
    let mut rules = base_rules();
    Arc::make_mut(&mut rules[1]).name = Some("failed_login".into());
    let rule = parse_text(BRUTE_FORCE).unwrap();
    let err = resolve(&rule, &rules, &[]).unwrap_err().render();
    assert!(err.contains(":8:7: error[sigma-correlation]: `failed_login` names 2 rules (failed-login, good-login)"), "{err}");
    // The same rule twice, once by id and once by name.
    let twice = parse_text(&BRUTE_FORCE.replace(
        "    - failed_login\n",
        "    - failed_login\n    - failed-login\n",
    ))
    .unwrap();
    let err = resolve(&twice, &base_rules(), &[]).unwrap_err().render();
    assert!(err.contains(":9:7: error[sigma-correlation]: `failed-login` is rule failed-login, which this correlation already names"), "{err}");
    // Written twice, an unknown top-level key, and `field` on an event_count.
    let all = problems(parse_text(
        "title: t\nlevle: high\ncorrelation:\n  type: event_count\n  rules: [a, a]\n  timespan: 1m\n  condition: {gte: 2, field: user}\n",
    ))
    .join("\n");
    assert!(
        all.contains(":2:1: error[unknown-key]: unknown key `levle` (did you mean `level`?)"),
        "{all}"
    );
    assert!(
        all.contains(":5:14: error[sigma-correlation]: `rules` names `a` twice"),
        "{all}"
    );
    assert!(
        all.contains("`field` is only for value_count, not event_count"),
        "{all}"
    );
}

#[test]
fn two_correlations_with_one_id_are_refused_and_generate_is_read_in_either_place() {
    let one = parse_text(BRUTE_FORCE).unwrap();
    let two = parse_text(BRUTE_FORCE).unwrap();
    let err = resolve_all(&[one, two], &base_rules(), &Default::default())
        .unwrap_err()
        .render();
    assert!(
        err.contains("another correlation already has the id `brute-force`"),
        "{err}"
    );
    let inside =
        parse_text(&BRUTE_FORCE.replace("  timespan: 5m\n", "  timespan: 5m\n  generate: true\n"))
            .unwrap();
    assert!(inside.generate);
    let all = problems(parse_text(&format!("generate: maybe\n{BRUTE_FORCE}"))).join("\n");
    assert!(
        all.contains(
            ":1:11: error[sigma-correlation]: `generate` must be true or false, not `maybe`"
        ),
        "{all}"
    );
}

/// Defect (never fires): a condition no count can meet, or one needing more entries than a
/// group may keep, loaded and then silently never fired.
#[test]
fn a_condition_that_could_never_fire_is_refused() {
    let all = problems(parse_text(
        &BRUTE_FORCE.replace("    gte: 20\n", "    gt: 10\n    lt: 5\n"),
    ))
    .join("\n");
    assert!(
        all.contains(":12:3: error[sigma-correlation]: `condition` can never hold"),
        "{all}"
    );
    let all = problems(parse_text(
        &BRUTE_FORCE.replace("    gte: 20\n", "    eq: 0\n"),
    ))
    .join("\n");
    assert!(all.contains("`condition` can never hold"), "{all}");
    let rule = parse_text(&BRUTE_FORCE.replace("gte: 20", "gte: 5000")).unwrap();
    let limits = crate::sigma::CorrelationConfig {
        max_groups: 10,
        max_values: 1000,
    };
    let err = resolve_all(&[rule], &base_rules(), &limits)
        .unwrap_err()
        .render();
    assert!(err.contains(":12:3: error[sigma-correlation]: the condition needs 5000 entries in one window, more than `sigma.correlation.max_values` (1000) keeps"), "{err}");
    let rule = parse_text(&RECON.replace("TYPE", "temporal").replace(
        "  timespan: 5m\n",
        "  timespan: 5m\n  condition: {gte: 4}\n",
    ))
    .unwrap();
    let err = resolve(&rule, &base_rules(), &[]).unwrap_err().render();
    assert!(
        err.contains("the condition needs 4 different rules, but the correlation names 3"),
        "{err}"
    );
    // Without a condition, a temporal correlation needs every rule it names.
    let rule = parse_text(&RECON.replace("TYPE", "temporal_ordered")).unwrap();
    assert_eq!(rule.condition, vec![Bound::Gte(3)]);
    assert_eq!(
        smallest_count(&[Bound::Gt(100), Bound::Lte(200)]),
        Some(101)
    );
}

/// A correlation's detections carry its own `status` (`stable` when it names none), so a
/// correlation on trial is marked like a rule on trial.
#[test]
fn a_correlation_detection_carries_the_correlation_status() {
    for (status_line, expected) in [
        ("", crate::detection::RuleStatus::Stable),
        ("status: test\n", crate::detection::RuleStatus::Test),
    ] {
        let handle = build(&format!("{status_line}{BRUTE_FORCE}"), LIMITS);
        let fired = failed_logins(&handle, 0, 20, T0, 10_000, "203.0.113.9");
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].status, expected);
    }
}
