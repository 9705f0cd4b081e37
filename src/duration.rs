//! Durations as people write them in config, playbooks and step parameters (`30s`, `5m`,
//! `1h`, `7d`, `2w`, or whole seconds). One parser for all of them, at the bottom of the crate.

use std::time::Duration;

/// `30s`, `5m`, `1h`, `7d`, `2w`, or whole seconds. Zero is refused: a block with no duration is
/// a mistake, not "forever".
pub fn parse(text: &str) -> Option<Duration> {
    let digits_end = text
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    if digits_end == 0 {
        return None;
    }
    let amount: u64 = text[..digits_end].parse().ok()?;
    let unit = match &text[digits_end..] {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    let seconds = amount.checked_mul(unit)?;
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// A duration setting that is not a duration above zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` is `{text}`, not a duration above zero like 5s or 2m")]
pub struct SettingError {
    /// The setting's dotted path, e.g. `intel.fetch.read_timeout`.
    pub key: &'static str,
    pub text: String,
}

/// A configured duration, read where it is used: a text that is not a duration is an error
/// naming the setting, never a silent default.
pub fn setting(key: &'static str, text: &str) -> Result<Duration, SettingError> {
    parse(text).ok_or_else(|| SettingError {
        key,
        text: text.to_string(),
    })
}

/// A configured duration: written `30s`, `5m`, `1h`, `7d`, `2w` (or whole seconds) in a config
/// file, held as a [`Duration`] from the moment the file is read, so no later reader parses it
/// again or falls back to a default when the text is wrong.
///
/// It serializes back in the largest unit that divides it (`3600s` is written `1h`). Zero is
/// refused like [`parse`] refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(Duration);

impl Span {
    /// A span of whole seconds; zero (never a valid setting) is refused.
    pub const fn from_secs(seconds: u64) -> Option<Span> {
        if seconds == 0 {
            None
        } else {
            Some(Span(Duration::from_secs(seconds)))
        }
    }

    /// A span written in code (a default). Call it in a const context (`const { Span::secs(10) }`)
    /// so a zero fails the build instead of the program.
    pub const fn secs(seconds: u64) -> Span {
        assert!(seconds > 0, "a span is above zero");
        Span(Duration::from_secs(seconds))
    }

    pub const fn duration(self) -> Duration {
        self.0
    }

    /// In milliseconds, for event-time arithmetic (saturating: a span of centuries is
    /// `i64::MAX` milliseconds, not a negative number).
    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

impl From<Span> for Duration {
    fn from(span: Span) -> Duration {
        span.0
    }
}

/// Text that is not a duration above zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a duration above zero like 5s or 2m")]
pub struct SpanError(pub String);

impl std::str::FromStr for Span {
    type Err = SpanError;

    fn from_str(text: &str) -> Result<Span, SpanError> {
        parse(text)
            .map(Span)
            .ok_or_else(|| SpanError(text.to_string()))
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.0.as_secs();
        let (amount, unit) = [(604_800, "w"), (86_400, "d"), (3600, "h"), (60, "m")]
            .into_iter()
            .find(|(size, _)| seconds.is_multiple_of(*size))
            .map_or((seconds, "s"), |(size, unit)| (seconds / size, unit));
        write!(f, "{amount}{unit}")
    }
}

impl serde::Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Span, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The name config readers look for in the schema to find every duration in a document.
pub const SPAN_SCHEMA_NAME: &str = "Span";

/// What the schema says of a duration: the same grammar as [`parse`] (zero is refused when read).
pub const SPAN_PATTERN: &str = "^[0-9]+[smhdw]?$";

impl schemars::JsonSchema for Span {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        SPAN_SCHEMA_NAME.into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration above zero: a whole number followed by s, m, h, d or w (`30s`, `5m`, `1h`), or whole seconds.",
            "type": "string",
            "pattern": SPAN_PATTERN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_reads_and_writes_the_text_people_write() {
        for (text, written) in [("30s", "30s"), ("90", "90s"), ("120s", "2m"), ("60m", "1h")] {
            let span: Span = text.parse().unwrap();
            assert_eq!(span.to_string(), written, "{text}");
            assert_eq!(written.parse::<Span>().unwrap(), span);
        }
        assert_eq!("14d".parse::<Span>().unwrap().to_string(), "2w");
        assert_eq!(
            "0s".parse::<Span>().unwrap_err().to_string(),
            "`0s` is not a duration above zero like 5s or 2m"
        );
        let span: Span = serde_json::from_str("\"5m\"").unwrap();
        assert_eq!(span.duration(), Duration::from_secs(300));
        assert_eq!(serde_json::to_string(&span).unwrap(), "\"5m\"");
        assert!(serde_json::from_str::<Span>("\"soon\"").is_err());
        assert!(serde_json::from_str::<Span>("300").is_err());
        let pattern = regex::Regex::new(SPAN_PATTERN).unwrap();
        assert!(pattern.is_match("15m") && !pattern.is_match("5 m"));
    }

    #[test]
    fn units_and_refusals() {
        assert_eq!(parse("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse("0s"), None);
        assert_eq!(parse("1y"), None);
        assert_eq!(parse("h"), None);
        assert_eq!(parse("2w"), Some(Duration::from_secs(1_209_600)));
        assert_eq!(parse("99999999999999999w"), None);
        assert_eq!(parse("5 m"), None);
    }

    #[test]
    fn a_setting_that_is_not_a_duration_names_its_key() {
        assert_eq!(setting("a.b", "2m"), Ok(Duration::from_secs(120)));
        let err = setting("intel.fetch.read_timeout", "0s").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`intel.fetch.read_timeout` is `0s`, not a duration above zero like 5s or 2m"
        );
    }
}
