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
}
