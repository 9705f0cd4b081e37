//! Reporting rule failures without one log line per event.
//!
//! A rule that fails on every event (a typo reaching a field most events lack, a limit it always
//! hits) would otherwise write a warning per event: 2,000 lines for 2,000 events, burying
//! everything else. Each rule's first failure is written in full; after that its failures are
//! counted and written as one summary line per [`FAILURE_REPORT_EVERY`], and once more when the
//! input ends ([`FailureLog::flush`]). Every failure is still counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::RuleFailure;

/// How often a failing rule's count is written.
pub const FAILURE_REPORT_EVERY: Duration = Duration::from_secs(60);

/// Rule failures counted per rule, written at a bounded rate.
#[derive(Debug, Default)]
pub struct FailureLog {
    rules: HashMap<Arc<str>, RuleFailures>,
}

#[derive(Debug)]
struct RuleFailures {
    total: u64,
    /// Failures since the last line written about this rule.
    unreported: u64,
    reported_at: Instant,
    /// The latest failure's event and message, for the summary line.
    last_event: String,
    last_message: String,
}

impl FailureLog {
    /// Counts `failure`, and writes it or a summary when one is due.
    pub fn record(&mut self, failure: &RuleFailure) {
        self.record_at(failure, Instant::now());
    }

    /// [`FailureLog::record`] at a given time.
    pub fn record_at(&mut self, failure: &RuleFailure, now: Instant) {
        let Some(counts) = self.rules.get_mut(&failure.rule) else {
            // Messages and ids may quote event values: written inert, they cannot forge a line.
            tracing::warn!(
                rule = &*failure.rule,
                event_id = %crate::text::inert(&failure.event_id),
                "rule skipped for this event: {} (further failures of this rule are counted and reported every {}s)",
                crate::text::inert(&failure.message),
                FAILURE_REPORT_EVERY.as_secs()
            );
            self.rules.insert(
                failure.rule.clone(),
                RuleFailures {
                    total: 1,
                    unreported: 0,
                    reported_at: now,
                    last_event: failure.event_id.clone(),
                    last_message: failure.message.clone(),
                },
            );
            return;
        };
        counts.total += 1;
        counts.unreported += 1;
        counts.last_event.clone_from(&failure.event_id);
        counts.last_message.clone_from(&failure.message);
        if now.duration_since(counts.reported_at) >= FAILURE_REPORT_EVERY {
            report(&failure.rule, counts, now);
        }
    }

    /// Writes every count not yet written (at the end of the input or at a stop).
    pub fn flush(&mut self) {
        let now = Instant::now();
        for (rule, counts) in &mut self.rules {
            if counts.unreported > 0 {
                report(rule, counts, now);
            }
        }
    }

    /// Failures of `rule` counted so far.
    pub fn total(&self, rule: &str) -> u64 {
        self.rules.get(rule).map_or(0, |counts| counts.total)
    }
}

fn report(rule: &str, counts: &mut RuleFailures, now: Instant) {
    tracing::warn!(
        rule,
        failures = counts.unreported,
        total = counts.total,
        "rule skipped for {} more event(s) in the last {}s ({} in all); latest, event `{}`: {}",
        counts.unreported,
        now.duration_since(counts.reported_at).as_secs(),
        counts.total,
        crate::text::inert(&counts.last_event),
        crate::text::inert(&counts.last_message)
    );
    counts.unreported = 0;
    counts.reported_at = now;
}
