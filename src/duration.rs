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

#[cfg(test)]
mod tests {
    use super::*;

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
