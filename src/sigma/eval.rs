//! The direct evaluator: what a Sigma rule means, written as plainly as possible.
//!
//! It walks the rule's condition and tests each value one at a time. The compiled set
//! (`compiled.rs`) is what runs in the pipeline; property tests hold it to this evaluator, so
//! this file is the definition of palisade's Sigma semantics (docs/sigma.md says the same).

use std::borrow::Cow;
use std::net::IpAddr;

use crate::event::{Event, Field};

use super::ast::{Compare, Condition, GlobPart, Item, SearchBody, SigmaRule, TextMatch, ValueTest};

/// Whether `rule` matches `event`. The event's kind is not checked here: the caller picks the
/// rules for the event's kind.
pub fn matches(rule: &SigmaRule, event: &Event) -> bool {
    condition(&rule.condition, rule, event)
}

fn condition(condition: &Condition, rule: &SigmaRule, event: &Event) -> bool {
    match condition {
        Condition::Search(index) => rule
            .searches
            .get(*index)
            .is_some_and(|search| search_matches(&search.body, event)),
        Condition::Not(inner) => !self::condition(inner, rule, event),
        Condition::And(all) => all.iter().all(|c| self::condition(c, rule, event)),
        Condition::Or(any) => any.iter().any(|c| self::condition(c, rule, event)),
    }
}

/// Whether one search identifier's body matches.
pub fn search_matches(body: &SearchBody, event: &Event) -> bool {
    match body {
        SearchBody::AllOf(items) => items.iter().all(|item| item_matches(item, event)),
        SearchBody::AnyOf(maps) => maps
            .iter()
            .any(|items| items.iter().all(|item| item_matches(item, event))),
        SearchBody::Keywords { tests, all } => {
            let found = |test: &ValueTest| keyword_fields().any(|f| test_matches(test, f, event));
            if *all {
                tests.iter().all(found)
            } else {
                tests.iter().any(found)
            }
        }
    }
}

/// The fields a keyword (field-less) search looks in: every field that describes what happened,
/// not the event's own id, type or time.
pub fn keyword_fields() -> impl Iterator<Item = Field> {
    Field::ALL
        .into_iter()
        .filter(|f| !matches!(f, Field::Id | Field::Type | Field::Timestamp))
}

fn item_matches(item: &Item, event: &Event) -> bool {
    if item.all {
        item.tests
            .iter()
            .all(|test| test_matches(test, item.field, event))
    } else {
        item.tests
            .iter()
            .any(|test| test_matches(test, item.field, event))
    }
}

/// Whether one value test holds for `field` of `event`.
pub fn test_matches(test: &ValueTest, field: Field, event: &Event) -> bool {
    match test {
        ValueTest::Null => field.text(event).is_none(),
        ValueTest::Exists(wanted) => field.text(event).is_some() == *wanted,
        ValueTest::Text { how, needle, cased } => field
            .text(event)
            .is_some_and(|value| text_matches(&fold(value, *cased), needle, *how)),
        ValueTest::Glob { pattern, cased } => field
            .text(event)
            .is_some_and(|value| glob_matches(&fold(value, *cased), pattern)),
        ValueTest::Regex(regex) => field
            .text(event)
            .is_some_and(|value| regex.compiled.is_match(&value)),
        ValueTest::Cidr { network, prefix } => {
            address(field, event).is_some_and(|ip| in_network(ip, *network, *prefix))
        }
        ValueTest::Compare { op, value } => number(field, event).is_some_and(|n| match op {
            Compare::Gt => n > *value,
            Compare::Gte => n >= *value,
            Compare::Lt => n < *value,
            Compare::Lte => n <= *value,
        }),
        ValueTest::FieldRef { other, how, cased } => match (field.text(event), other.text(event)) {
            (Some(value), Some(reference)) => {
                text_matches(&fold(value, *cased), &fold(reference, *cased), *how)
            }
            _ => false,
        },
    }
}

/// The value as compared: lowercased unless the test is cased.
pub fn fold(value: Cow<'_, str>, cased: bool) -> Cow<'_, str> {
    if cased || (value.is_ascii() && !value.bytes().any(|b| b.is_ascii_uppercase())) {
        value
    } else {
        Cow::Owned(value.to_lowercase())
    }
}

pub fn text_matches(value: &str, needle: &str, how: TextMatch) -> bool {
    match how {
        TextMatch::Exact => value == needle,
        TextMatch::Contains => value.contains(needle),
        TextMatch::StartsWith => value.starts_with(needle),
        TextMatch::EndsWith => value.ends_with(needle),
    }
}

/// Whether `value` matches the whole glob: `*` any run of characters, `?` exactly one.
pub fn glob_matches(value: &str, pattern: &[GlobPart]) -> bool {
    match pattern.split_first() {
        None => value.is_empty(),
        Some((GlobPart::Literal(literal), rest)) => value
            .strip_prefix(literal.as_str())
            .is_some_and(|after| glob_matches(after, rest)),
        Some((GlobPart::AnyOne, rest)) => {
            let mut chars = value.chars();
            chars.next().is_some() && glob_matches(chars.as_str(), rest)
        }
        Some((GlobPart::AnyRun, rest)) => {
            if rest.is_empty() {
                return true;
            }
            value
                .char_indices()
                .map(|(at, _)| at)
                .chain(std::iter::once(value.len()))
                .any(|at| glob_matches(&value[at..], rest))
        }
    }
}

/// The field's value as an address: typed address fields directly, text fields when they parse.
fn address(field: Field, event: &Event) -> Option<IpAddr> {
    field
        .address(event)
        .or_else(|| field.text(event).and_then(|text| text.trim().parse().ok()))
}

/// The field's value as a number: integer fields directly, text fields when they parse.
fn number(field: Field, event: &Event) -> Option<f64> {
    field
        .number(event)
        .map(|n| n as f64)
        .or_else(|| field.text(event).and_then(|text| text.trim().parse().ok()))
}

/// Whether `ip` lies in `network/prefix`. IPv4 and IPv6 never contain each other.
pub fn in_network(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let bits = u32::from(prefix.min(32));
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let bits = u32::from(prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}
