//! Event time is what a sensor says, so it is untrusted input. This module judges one event's
//! time against the engine's clock; it does no I/O (the caller reads the clock and passes it in).
//!
//! Only the future is judged. A time in the past is kept as it is: replaying old files is how
//! rules are tested and incidents are re-examined, and a past time cannot move anything that
//! runs on event time forward (the tracker's retention only ever advances to the newest time).
//! A time far ahead of the clock would: one event dated 9000-01-01 would make every other host's
//! history "older than the retention". Such a time is replaced by the newest *plausible* event
//! time seen so far (so a replay of last year's file stays in last year), or dropped.

use super::normalize::{NormalizeError, RejectKind};

/// How far ahead of the engine's clock an event may be dated, and what happens beyond that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimePolicy {
    pub max_ahead_ms: i64,
    /// Dead-letter such an event instead of clamping its time.
    pub reject: bool,
}

impl Default for TimePolicy {
    /// An hour ahead is more than any sensor's clock drifts; beyond it, clamp.
    fn default() -> TimePolicy {
        TimePolicy {
            max_ahead_ms: 3_600_000,
            reject: false,
        }
    }
}

/// The verdict on one event's time.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeVerdict {
    /// The time is plausible: keep it.
    Keep,
    /// Too far ahead: process the event at this time instead.
    Clamp { to_ms: i64 },
    /// Too far ahead: dead-letter the event with this reason.
    Reject(NormalizeError),
}

/// Judges `ts_ms` against the engine's clock `now_ms`. `newest_plausible` is the newest event
/// time already kept (`None` before the first); a clamped event gets it, or the clock's time
/// when there is none yet.
pub fn judge_time(
    ts_ms: i64,
    now_ms: i64,
    newest_plausible: Option<i64>,
    policy: &TimePolicy,
) -> TimeVerdict {
    let limit = now_ms.saturating_add(policy.max_ahead_ms);
    if ts_ms <= limit {
        return TimeVerdict::Keep;
    }
    if policy.reject {
        return TimeVerdict::Reject(NormalizeError {
            kind: RejectKind::FutureTimestamp,
            message: format!(
                "the event time {} is more than {} ahead of the engine's clock ({})",
                rfc3339_ms(ts_ms),
                ahead(policy.max_ahead_ms),
                rfc3339_ms(now_ms)
            ),
        });
    }
    TimeVerdict::Clamp {
        to_ms: newest_plausible.unwrap_or(now_ms),
    }
}

/// Milliseconds as RFC 3339 text (the number itself when out of range).
pub fn rfc3339_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

fn ahead(ms: i64) -> String {
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms => format!("{}s", ms / 1000),
    }
}

/// The wall clock in milliseconds since the epoch (0 if it is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How far past the wall clock a stored time (a tracker record, a correlation window) may be and
/// still count: more than the intake lets through (`events.max_future_skew`, an hour by default)
/// and any time zone mistake; a later one would move retention or a window past every real event.
pub const MAX_AHEAD_MS: i64 = 86_400_000;

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000_000;
    const HOUR: i64 = 3_600_000;

    fn policy(reject: bool) -> TimePolicy {
        TimePolicy {
            max_ahead_ms: HOUR,
            reject,
        }
    }

    #[test]
    fn past_and_slightly_ahead_times_are_kept() {
        let clamp = policy(false);
        for ts in [0, NOW - 400 * 86_400_000, NOW, NOW + HOUR] {
            assert_eq!(judge_time(ts, NOW, Some(NOW), &clamp), TimeVerdict::Keep);
        }
    }

    #[test]
    fn a_far_future_time_is_clamped_to_the_newest_plausible_time_or_the_clock() {
        let clamp = policy(false);
        let year_9000 = 221_845_392_000_000;
        // A replay of old data stays in its own time...
        assert_eq!(
            judge_time(year_9000, NOW, Some(NOW - 400 * 86_400_000), &clamp),
            TimeVerdict::Clamp {
                to_ms: NOW - 400 * 86_400_000
            }
        );
        // ...and before any plausible time is known, the clock's time is used.
        assert_eq!(
            judge_time(NOW + HOUR + 1, NOW, None, &clamp),
            TimeVerdict::Clamp { to_ms: NOW }
        );
    }

    #[test]
    fn a_far_future_time_is_rejected_with_its_field_and_the_limit_when_so_configured() {
        let TimeVerdict::Reject(err) = judge_time(NOW + 2 * HOUR, NOW, None, &policy(true)) else {
            panic!("not rejected");
        };
        assert_eq!(err.kind, RejectKind::FutureTimestamp);
        assert!(err.message.contains("event time"), "{}", err.message);
        assert!(
            err.message.contains("more than 1h ahead"),
            "{}",
            err.message
        );
    }
}
