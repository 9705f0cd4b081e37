//! A rule's declarative `filter` map, checked in Rust before any Rhai runs.
//!
//! Most events are benign, and most rules look for one program or one string. Checking those
//! conditions on the typed event costs nanoseconds, so a rule's script runs only for events that
//! pass its pre-filter; this is what lets a hundred rules keep up with a sensor stream.
//!
//! `filter: #{ parent_name: ["winword.exe", "excel.exe"], "cmdline|contains": ["-enc"] }` means:
//! every key must hold, and a key holds when the field equals (or, with a modifier, contains,
//! starts with, ends with) any of its values. Comparison ignores ASCII case.

use crate::event::{Event, Field};

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
}

impl Condition {
    fn holds(&self, event: &Event) -> bool {
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

/// All conditions of one rule's `filter` map. Empty means every event of the rule's types.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prefilter {
    pub conditions: Vec<Condition>,
}

impl Prefilter {
    #[inline]
    pub fn matches(&self, event: &Event) -> bool {
        self.conditions
            .iter()
            .all(|condition| condition.holds(event))
    }

    /// Parses one `filter` key (`field` or `field|modifier`) and its values.
    pub fn parse_condition(key: &str, values: Vec<String>) -> Result<Condition, String> {
        let (name, modifier) = match key.split_once('|') {
            Some((name, modifier)) => (name, Some(modifier)),
            None => (key, None),
        };
        let field = Field::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Field::ALL.iter().map(|f| f.as_str()).collect();
            format!(
                "`filter` key `{name}` is not an event field; fields: {}",
                known.join(", ")
            )
        })?;
        let operator = match modifier {
            None => Operator::Equals,
            Some(m) => Operator::parse(m).ok_or_else(|| {
                format!(
                    "unknown `filter` modifier `{m}`; modifiers: contains, startswith, endswith"
                )
            })?,
        };
        if values.is_empty() {
            return Err(format!(
                "`filter` key `{key}` has no values, so the rule could never fire"
            ));
        }
        Ok(Condition {
            field,
            operator,
            values,
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
        Prefilter {
            conditions: conditions
                .iter()
                .map(|(key, values)| {
                    Prefilter::parse_condition(key, values.iter().map(|v| v.to_string()).collect())
                        .unwrap()
                })
                .collect(),
        }
    }

    #[test]
    fn all_keys_must_hold_and_any_value_may() {
        let e = event();
        assert!(prefilter(&[("parent_name", &["excel.exe", "winword.exe"])]).matches(&e));
        assert!(
            prefilter(&[
                ("parent_name", &["winword.exe"]),
                ("cmdline|contains", &["-enc "])
            ])
            .matches(&e)
        );
        assert!(
            !prefilter(&[
                ("parent_name", &["winword.exe"]),
                ("cmdline|contains", &["iex"])
            ])
            .matches(&e)
        );
        assert!(prefilter(&[("cmdline|startswith", &["POWERSHELL"])]).matches(&e));
        assert!(prefilter(&[("parent_name|endswith", &[".exe"])]).matches(&e));
        assert!(prefilter(&[("pid", &["42"])]).matches(&e));
        assert!(
            !prefilter(&[("user", &["bob"])]).matches(&e),
            "absent field never matches"
        );
        assert!(Prefilter::default().matches(&e));
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
}
