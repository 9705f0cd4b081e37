//! A rule's declarative `filter` map, checked in Rust before any Rhai runs.
//!
//! Most events are benign, and most rules look for one program or one string. Checking those
//! conditions on the typed event costs nanoseconds, so a rule's script runs only for events that
//! pass its pre-filter; this is what lets a hundred rules keep up with a sensor stream.
//!
//! `filter: #{ parent_name: ["winword.exe", "excel.exe"], "cmdline|contains": ["-enc"] }` means:
//! every key must hold, and a key holds when the field equals (or, with a modifier, contains,
//! starts with, ends with, matches the regular expression, lies in the network, is on the named
//! list) any of its values. `|not` after the modifier turns a key around: it holds when the
//! field matches none of the values (or is absent). `field|exists: true` holds when the event
//! carries the field. Comparison ignores ASCII case.

use std::net::IpAddr;

use crate::event::{Event, Field, FieldType};

use super::helpers::{ends_with_ignore_case, icontains, starts_with_ignore_case};
use super::lists::{AddressSet, Lists, NamedList};

/// How a condition compares the field with its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    Contains,
    StartsWith,
    EndsWith,
    /// `re`: a regular expression, matched anywhere in the value, ignoring case.
    Regex,
    /// `cidr`: an address field lies in one of the networks.
    Cidr,
    /// `exists`: the event carries the field (`true`) or does not (`false`).
    Exists,
    /// `in_list`: the value is on one of the named lists (`lists/*.yaml`).
    InList,
}

/// Every modifier a `filter` key may have, for messages.
pub const MODIFIERS: [&str; 8] = [
    "contains",
    "startswith",
    "endswith",
    "re",
    "cidr",
    "exists",
    "in_list",
    "not",
];

/// Most bytes one compiled `re` pattern may take: a hostile pattern (`\w{1,1000}`) would
/// otherwise cost tens of MiB per rule, per worker.
pub const MAX_REGEX_BYTES: usize = 2 * 1024 * 1024;

impl Operator {
    fn parse(modifier: &str) -> Option<Operator> {
        match modifier {
            "contains" => Some(Operator::Contains),
            "startswith" => Some(Operator::StartsWith),
            "endswith" => Some(Operator::EndsWith),
            "re" => Some(Operator::Regex),
            "cidr" => Some(Operator::Cidr),
            "exists" => Some(Operator::Exists),
            "in_list" => Some(Operator::InList),
            _ => None,
        }
    }

    /// The modifier as written in a `filter` key (`equals` has none).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "equals",
            Operator::Contains => "contains",
            Operator::StartsWith => "startswith",
            Operator::EndsWith => "endswith",
            Operator::Regex => "re",
            Operator::Cidr => "cidr",
            Operator::Exists => "exists",
            Operator::InList => "in_list",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: Field,
    pub operator: Operator,
    pub values: Vec<String>,
    /// `|not`: the condition holds when the field matches none of the values.
    pub negated: bool,
    /// The values parsed once at load (numbers, addresses, patterns, networks, lists), so the
    /// hot path compares values instead of formatting or parsing the event's field as text.
    typed: Typed,
}

#[derive(Debug, Clone, PartialEq)]
enum Typed {
    Text,
    Numbers(Vec<i64>),
    Addresses(Vec<IpAddr>),
    Regexes(Vec<Pattern>),
    Networks(AddressSet),
    Exists(bool),
    Lists(Vec<std::sync::Arc<NamedList>>),
}

/// A compiled `re` value; compared by its source (the compiled form has no equality).
#[derive(Debug, Clone)]
struct Pattern(regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Condition {
    /// Rough cost of checking this condition, for ordering: typed and hashed comparisons
    /// first, then prefix and suffix checks, then scans, regular expressions last.
    fn cost(&self) -> usize {
        let base = match (&self.typed, self.operator) {
            (Typed::Numbers(_) | Typed::Addresses(_) | Typed::Exists(_), _) => 0,
            (Typed::Lists(_), _) => 1,
            (Typed::Networks(_), _) => 1,
            (Typed::Text, Operator::Equals) => 1,
            (Typed::Text, Operator::StartsWith | Operator::EndsWith) => 2,
            (Typed::Text, _) => 4,
            (Typed::Regexes(_), _) => 6,
        };
        base * 8 + self.values.len().min(7)
    }

    /// Whether the condition holds for `event`.
    pub fn holds(&self, event: &Event) -> bool {
        if let Typed::Exists(want) = self.typed {
            return self.field.text(event).is_some() == want;
        }
        self.any_value_matches(event) != self.negated
    }

    /// Whether the field matches at least one value (an absent field matches none).
    fn any_value_matches(&self, event: &Event) -> bool {
        match &self.typed {
            Typed::Numbers(numbers) => {
                return self
                    .field
                    .number(event)
                    .is_some_and(|n| numbers.contains(&n));
            }
            Typed::Addresses(addresses) => {
                return self
                    .field
                    .address(event)
                    .is_some_and(|a| addresses.contains(&a));
            }
            Typed::Networks(networks) => {
                return self
                    .field
                    .address(event)
                    .is_some_and(|a| networks.contains(a));
            }
            Typed::Lists(lists) => {
                if let Some(address) = self.field.address(event) {
                    return lists.iter().any(|list| list.contains_address(address));
                }
                return self
                    .field
                    .text(event)
                    .is_some_and(|text| lists.iter().any(|list| list.contains_text(&text)));
            }
            Typed::Regexes(patterns) => {
                return self
                    .field
                    .text(event)
                    .is_some_and(|text| patterns.iter().any(|p| p.0.is_match(&text)));
            }
            Typed::Exists(_) | Typed::Text => {}
        }
        let Some(actual) = self.field.text(event) else {
            return false;
        };
        let actual = actual.as_ref();
        self.values.iter().any(|value| match self.operator {
            Operator::Contains => icontains(actual, value),
            Operator::StartsWith => starts_with_ignore_case(actual, value),
            Operator::EndsWith => ends_with_ignore_case(actual, value),
            _ => actual.eq_ignore_ascii_case(value),
        })
    }
}

/// A rule's filter judged on one event, every condition reported (none short-circuited).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FilterReport {
    /// The `intel` key, when the filter has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intel: Option<IntelReport>,
    /// In the order they are checked (cheapest first).
    pub conditions: Vec<ConditionReport>,
    /// Whether the rule's script (or, for a declarative rule, its detection) ran.
    pub passed: bool,
}

/// The `intel` key of a filter on one event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IntelReport {
    /// The indicator kinds asked for; empty means any.
    pub kinds: Vec<crate::intel::IndicatorKind>,
    /// Whether the event had a hit of one of them.
    pub held: bool,
}

/// One filter condition on one event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConditionReport {
    pub field: &'static str,
    pub operator: String,
    pub values: Vec<String>,
    /// The event's value of the field as text; `None` when the event has none.
    pub actual: Option<String>,
    pub held: bool,
}

/// All conditions of one rule's `filter` map. Empty means every event of the rule's types.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prefilter {
    pub conditions: Vec<Condition>,
    /// `intel: [...]`: the event must have threat-intelligence hits of one of these kinds (any
    /// kind when empty). Checked on the hits the pipeline already computed, so intel rules cost
    /// nothing for the events no indicator matches.
    pub intel: Option<Vec<crate::intel::IndicatorKind>>,
}

impl Prefilter {
    /// Builds a pre-filter, checking the cheapest conditions first so that most events are
    /// rejected by an exact comparison before any substring scan runs.
    pub fn new(mut conditions: Vec<Condition>) -> Prefilter {
        conditions.sort_by_key(Condition::cost);
        Prefilter {
            conditions,
            intel: None,
        }
    }

    /// Requires intel hits (of `kinds`, or any kind when empty).
    pub fn with_intel(mut self, kinds: Vec<crate::intel::IndicatorKind>) -> Prefilter {
        self.intel = Some(kinds);
        self
    }

    /// Whether nothing is filtered at all.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty() && self.intel.is_none()
    }

    /// Parses the values of the `intel` key: `any`, or indicator kinds.
    pub fn parse_intel(values: &[String]) -> Result<Vec<crate::intel::IndicatorKind>, String> {
        let mut kinds = Vec::new();
        for value in values {
            if value == "any" {
                return Ok(Vec::new());
            }
            kinds.push(crate::intel::IndicatorKind::parse(value).ok_or_else(|| {
                format!("`filter` key `intel` takes `any` or indicator kinds (ip, cidr, domain, url, md5, sha1, sha256), not `{value}`")
            })?);
        }
        Ok(kinds)
    }

    #[inline]
    pub fn matches(&self, event: &Event, hits: &[crate::intel::IntelHit]) -> bool {
        if let Some(kinds) = &self.intel
            && !hits
                .iter()
                .any(|h| kinds.is_empty() || kinds.contains(&h.kind))
        {
            return false;
        }
        self.conditions
            .iter()
            .all(|condition| condition.holds(event))
    }

    /// Every condition judged on `event`, none skipped, for `palisade explain`: the same
    /// [`Condition::holds`] the hot path runs, so what it says is what the pipeline did.
    pub fn report(&self, event: &Event, hits: &[crate::intel::IntelHit]) -> FilterReport {
        let intel = self.intel.as_ref().map(|kinds| IntelReport {
            kinds: kinds.clone(),
            held: hits
                .iter()
                .any(|h| kinds.is_empty() || kinds.contains(&h.kind)),
        });
        let conditions: Vec<ConditionReport> = self
            .conditions
            .iter()
            .map(|condition| ConditionReport {
                field: condition.field.as_str(),
                // As the author wrote it: `contains`, `re`, ..., and `|not` when negated.
                operator: if condition.negated {
                    format!("{}|not", condition.operator.as_str())
                } else {
                    condition.operator.as_str().to_string()
                },
                values: condition.values.clone(),
                actual: condition.field.text(event).map(|v| v.into_owned()),
                held: condition.holds(event),
            })
            .collect();
        let passed = intel.as_ref().is_none_or(|i| i.held) && conditions.iter().all(|c| c.held);
        FilterReport {
            intel,
            conditions,
            passed,
        }
    }

    /// Parses one `filter` key (`field`, `field|modifier`, `field|not` or
    /// `field|modifier|not`) and its values, with no named lists defined.
    pub fn parse_condition(key: &str, values: Vec<String>) -> Result<Condition, String> {
        Prefilter::parse_condition_with(key, values, &Lists::default())
    }

    /// [`Prefilter::parse_condition`], with `lists` for `in_list`.
    pub fn parse_condition_with(
        key: &str,
        values: Vec<String>,
        lists: &Lists,
    ) -> Result<Condition, String> {
        let mut parts = key.split('|');
        let name = parts.next().unwrap_or_default();
        let modifiers: Vec<&str> = parts.collect();
        let field = Field::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Field::ALL.iter().map(|f| f.as_str()).collect();
            let hint = super::references::nearest_field(name)
                .map(|f| format!(" (did you mean `{f}`?)"))
                .unwrap_or_default();
            format!(
                "`filter` key `{name}` is not an event field{hint}; fields: {}",
                known.join(", ")
            )
        })?;
        let unknown = |m: &str| {
            format!(
                "unknown `filter` modifier `{m}`{}; modifiers: {}",
                crate::diagnostics::did_you_mean(m, MODIFIERS),
                MODIFIERS.join(", ")
            )
        };
        // One order only, so two keys meaning the same thing cannot sit side by side in a map:
        // the comparison first, `not` last.
        if let Some(m) = modifiers
            .iter()
            .find(|m| **m != "not" && Operator::parse(m).is_none())
        {
            return Err(unknown(m));
        }
        let (operator, negated) = match modifiers.as_slice() {
            [] => (Operator::Equals, false),
            ["not"] => (Operator::Equals, true),
            ["not", m] if *m != "not" => {
                return Err(format!(
                    "write `{name}|{m}|not`, not `{key}`: `not` comes after the modifier it turns around"
                ));
            }
            [m] => (Operator::parse(m).ok_or_else(|| unknown(m))?, false),
            [m, "not"] => (Operator::parse(m).ok_or_else(|| unknown(m))?, true),
            _ => {
                return Err(format!(
                    "`filter` key `{key}` has too many modifiers: at most one, then `not` (`{name}|contains|not`)"
                ));
            }
        };
        if values.is_empty() {
            return Err(format!(
                "`filter` key `{key}` has no values, so the rule could never fire"
            ));
        }
        let typed = match (operator, field.field_type()) {
            (Operator::Exists, _) => {
                if negated {
                    return Err(format!(
                        "write `{name}|exists: false`, not `{key}`"
                    ));
                }
                match values.as_slice() {
                    [one] if one == "true" => Typed::Exists(true),
                    [one] if one == "false" => Typed::Exists(false),
                    _ => {
                        return Err(format!(
                            "`filter` key `{key}` takes `true` or `false`, not {}",
                            values
                                .iter()
                                .map(|v| format!("`{v}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
            }
            (Operator::Cidr, FieldType::IpAddress) => {
                let mut networks = AddressSet::default();
                for value in &values {
                    let (ip, prefix) = AddressSet::parse_network(value)
                        .map_err(|message| format!("`filter` key `{key}`: {message}"))?;
                    networks.insert(ip, prefix);
                }
                Typed::Networks(networks)
            }
            (Operator::Cidr, _) => {
                return Err(format!(
                    "`filter` key `{key}`: `cidr` applies to address fields ({}), and `{name}` is not one",
                    Field::ALL
                        .iter()
                        .filter(|f| f.field_type() == FieldType::IpAddress)
                        .map(|f| f.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            (Operator::Regex, _) => Typed::Regexes(
                values
                    .iter()
                    .map(|pattern| compile_pattern(pattern).map(Pattern).map_err(|m| format!("`filter` key `{key}`: {m}")))
                    .collect::<Result<_, _>>()?,
            ),
            (Operator::InList, _) => Typed::Lists(
                values
                    .iter()
                    .map(|list| {
                        lists
                            .resolve(list)
                            .cloned()
                            .map_err(|m| format!("`filter` key `{key}`: {m}"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            (Operator::Equals, FieldType::Integer) => Typed::Numbers(
                values
                    .iter()
                    .map(|v| v.parse::<i64>().map_err(|_| format!("`filter` key `{key}` compares a number, and `{v}` is not one")))
                    .collect::<Result<_, _>>()?,
            ),
            (Operator::Equals, FieldType::IpAddress) => Typed::Addresses(
                values
                    .iter()
                    .map(|v| {
                        v.parse::<IpAddr>()
                            .map(crate::event::canonical_ip)
                            .map_err(|_| format!("`filter` key `{key}` compares an IP address, and `{v}` is not one"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            _ => Typed::Text,
        };
        Ok(Condition {
            field,
            operator,
            values,
            negated,
            typed,
        })
    }
}

/// Compiles one `re` value, ignoring case like every other comparison, within
/// [`MAX_REGEX_BYTES`]. A pattern that does not parse is explained with the character it
/// fails at.
fn compile_pattern(pattern: &str) -> Result<regex::Regex, String> {
    if let Err(err) = regex_syntax::ast::parse::Parser::new().parse(pattern) {
        let span = err.span();
        return Err(format!(
            "`{pattern}` is not a regular expression: {} (at character {} of the pattern)",
            err.kind(),
            span.start.column
        ));
    }
    regex::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(MAX_REGEX_BYTES)
        .dfa_size_limit(MAX_REGEX_BYTES)
        .build()
        .map_err(|err| {
            let reason = err.to_string();
            let reason = reason.lines().last().unwrap_or("").trim().to_string();
            format!("`{pattern}` cannot be used as a regular expression: {reason}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    fn event() -> Event {
        let mut event = Event::new("e", EventKind::ProcessCreate, 0);
        event.parent_name = Some("WINWORD.EXE".into());
        event.cmdline = Some("powershell -NoP -Enc SQBFAFgA".into());
        event.pid = Some(42);
        event
    }

    fn prefilter(conditions: &[(&str, &[&str])]) -> Prefilter {
        Prefilter::new(
            conditions
                .iter()
                .map(|(key, values)| {
                    Prefilter::parse_condition(key, values.iter().map(|v| v.to_string()).collect())
                        .unwrap()
                })
                .collect(),
        )
    }

    #[test]
    fn all_keys_must_hold_and_any_value_may() {
        let e = event();
        assert!(prefilter(&[("parent_name", &["excel.exe", "winword.exe"])]).matches(&e, &[]));
        assert!(
            prefilter(&[
                ("parent_name", &["winword.exe"]),
                ("cmdline|contains", &["-enc "])
            ])
            .matches(&e, &[])
        );
        assert!(
            !prefilter(&[
                ("parent_name", &["winword.exe"]),
                ("cmdline|contains", &["iex"])
            ])
            .matches(&e, &[])
        );
        assert!(prefilter(&[("cmdline|startswith", &["POWERSHELL"])]).matches(&e, &[]));
        assert!(prefilter(&[("parent_name|endswith", &[".exe"])]).matches(&e, &[]));
        assert!(prefilter(&[("pid", &["42"])]).matches(&e, &[]));
        assert!(
            !prefilter(&[("user", &["bob"])]).matches(&e, &[]),
            "absent field never matches"
        );
        assert!(Prefilter::default().matches(&e, &[]));
    }

    #[test]
    fn numbers_and_addresses_compare_as_values() {
        let mut e = event();
        e.kind = EventKind::NetworkConnection;
        e.remote_port = Some(4444);
        e.remote_ip = Some("185.12.33.4".parse().unwrap());
        assert!(prefilter(&[("remote_port", &["80", "4444"])]).matches(&e, &[]));
        assert!(prefilter(&[("remote_ip", &["::ffff:185.12.33.4"])]).matches(&e, &[]));
        assert!(prefilter(&[("remote_ip|startswith", &["185.12."])]).matches(&e, &[]));
        assert!(!prefilter(&[("remote_ip", &["185.12.33.5"])]).matches(&e, &[]));
        assert!(
            Prefilter::parse_condition("remote_port", vec!["http".into()])
                .unwrap_err()
                .contains("not one")
        );
    }

    #[test]
    fn cheap_conditions_run_first() {
        let p = prefilter(&[
            ("cmdline|contains", &["a", "b"]),
            ("pid", &["1"]),
            ("name", &["x"]),
        ]);
        let order: Vec<Field> = p.conditions.iter().map(|c| c.field).collect();
        assert_eq!(order, [Field::Pid, Field::Name, Field::Cmdline]);
    }

    #[test]
    fn bad_keys_are_explained() {
        assert!(
            Prefilter::parse_condition("parnt_name", vec!["x".into()])
                .unwrap_err()
                .contains("not an event field")
        );
        assert!(
            Prefilter::parse_condition("name|regex", vec!["x".into()])
                .unwrap_err()
                .contains("modifier")
        );
        assert!(
            Prefilter::parse_condition("name", vec![])
                .unwrap_err()
                .contains("never fire")
        );
    }

    // `palisade explain`: every condition is reported with its outcome and the event's value,
    // none short-circuited, and the verdict is the one `matches` gives.
    #[test]
    fn report_gives_every_condition_and_agrees_with_matches() {
        let e = event();
        let p = prefilter(&[
            ("user", &["bob"]),
            ("parent_name", &["excel.exe"]),
            ("cmdline|contains", &["-enc"]),
        ]);
        let report = p.report(&e, &[]);
        let seen: Vec<(&str, &str, bool, Option<&str>)> = report
            .conditions
            .iter()
            .map(|c| (c.field, c.operator.as_str(), c.held, c.actual.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [
                ("user", "equals", false, None),
                ("parent_name", "equals", false, Some("WINWORD.EXE")),
                (
                    "cmdline",
                    "contains",
                    true,
                    Some("powershell -NoP -Enc SQBFAFgA")
                ),
            ]
        );
        assert!(!report.passed);
        assert_eq!(report.passed, p.matches(&e, &[]));
        let p = prefilter(&[("pid", &["42"])]).with_intel(Vec::new());
        let report = p.report(&e, &[]);
        assert_eq!(report.intel.as_ref().map(|i| i.held), Some(false));
        assert!(report.conditions[0].held);
        assert_eq!(report.passed, p.matches(&e, &[]));
    }
}
