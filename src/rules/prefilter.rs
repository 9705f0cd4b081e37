//! A rule's declarative `filter` map, checked in Rust before any Rhai runs.
//!
//! Most events are benign, and most rules look for one program or one string. Checking those
//! conditions on the typed event costs nanoseconds, so a rule's script runs only for events that
//! pass its pre-filter; this is what lets a hundred rules keep up with a sensor stream.
//!
//! `filter: #{ parent_name: ["winword.exe", "excel.exe"], "cmdline|contains": ["-enc"] }` means:
//! every key must hold, and a key holds when the field equals (or, with a modifier, contains,
//! starts with, ends with) any of its values. Comparison ignores ASCII case.

use std::net::IpAddr;

use crate::event::{Event, Field, FieldType};

use super::helpers::{ends_with_ignore_case, icontains, starts_with_ignore_case};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    Contains,
    StartsWith,
    EndsWith,
}

impl Operator {
    fn parse(modifier: &str) -> Option<Operator> {
        match modifier {
            "contains" => Some(Operator::Contains),
            "startswith" => Some(Operator::StartsWith),
            "endswith" => Some(Operator::EndsWith),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: Field,
    pub operator: Operator,
    pub values: Vec<String>,
    /// For equality on a typed field, the values parsed once at load, so the hot path compares
    /// numbers and addresses instead of formatting the event's value as text.
    typed: Typed,
}

#[derive(Debug, Clone, PartialEq)]
enum Typed {
    Text,
    Numbers(Vec<i64>),
    Addresses(Vec<IpAddr>),
}

impl Condition {
    /// Rough cost of checking this condition, for ordering: exact comparisons before scans.
    fn cost(&self) -> usize {
        let base = match (&self.typed, self.operator) {
            (Typed::Numbers(_) | Typed::Addresses(_), _) => 0,
            (Typed::Text, Operator::Equals) => 1,
            (Typed::Text, Operator::StartsWith | Operator::EndsWith) => 2,
            (Typed::Text, Operator::Contains) => 4,
        };
        base * 8 + self.values.len().min(7)
    }

    fn holds(&self, event: &Event) -> bool {
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
            Typed::Text => {}
        }
        let Some(actual) = self.field.text(event) else {
            return false;
        };
        let actual = actual.as_ref();
        self.values.iter().any(|value| match self.operator {
            Operator::Equals => actual.eq_ignore_ascii_case(value),
            Operator::Contains => icontains(actual, value),
            Operator::StartsWith => starts_with_ignore_case(actual, value),
            Operator::EndsWith => ends_with_ignore_case(actual, value),
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
                // Named from the variant, so an operator added later is reported without a
                // change here.
                operator: format!("{:?}", condition.operator).to_ascii_lowercase(),
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

    /// Parses one `filter` key (`field` or `field|modifier`) and its values.
    pub fn parse_condition(key: &str, values: Vec<String>) -> Result<Condition, String> {
        let (name, modifier) = match key.split_once('|') {
            Some((name, modifier)) => (name, Some(modifier)),
            None => (key, None),
        };
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
        let operator = match modifier {
            None => Operator::Equals,
            Some(m) => Operator::parse(m).ok_or_else(|| {
                const MODIFIERS: [&str; 3] = ["contains", "startswith", "endswith"];
                format!(
                    "unknown `filter` modifier `{m}`{}; modifiers: {}",
                    crate::diagnostics::did_you_mean(m, MODIFIERS),
                    MODIFIERS.join(", ")
                )
            })?,
        };
        if values.is_empty() {
            return Err(format!(
                "`filter` key `{key}` has no values, so the rule could never fire"
            ));
        }
        let typed = match (operator, field.field_type()) {
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
            typed,
        })
    }
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
