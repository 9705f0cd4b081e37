//! Normalization at the edge, with an account of everything rejected.

use std::collections::BTreeMap;
use std::fmt::Display;

use crate::event::{
    Event, MAX_EVENT_BYTES, NormalizeError, RejectKind, TimePolicy, TimeVerdict, judge_time,
    normalize,
};
use crate::sinks::DeadLetter;

use super::jsonl::Line;

/// How many messages were rejected, per kind of problem.
pub type RejectCounts = BTreeMap<RejectKind, u64>;

/// Normalizes raw messages. A message that cannot become an event is counted, logged the first
/// time its kind of problem is seen, and written to the dead-letter sink; it never stops the
/// engine. Event times too far ahead of the clock are clamped (or rejected) here, at the edge,
/// so nothing behind it ever sees them.
pub struct Intake {
    accepted: u64,
    rejected: RejectCounts,
    dead_letter: Option<DeadLetter>,
    time: TimePolicy,
    /// The newest event time kept as it was: what a clamped event gets.
    newest_plausible: Option<i64>,
    clamped: u64,
    /// The clock when last read: read again only for an event beyond what it allows, so the
    /// usual event costs no clock read (a stale clock only ever judges more strictly).
    clock_ms: i64,
}

impl Intake {
    pub fn new(dead_letter: Option<DeadLetter>) -> Intake {
        Intake {
            accepted: 0,
            rejected: RejectCounts::new(),
            dead_letter,
            time: TimePolicy::default(),
            newest_plausible: None,
            clamped: 0,
            clock_ms: i64::MIN,
        }
    }

    /// Judges event times by `policy` (`events` in the config) instead of the default.
    pub fn with_time_policy(mut self, policy: TimePolicy) -> Intake {
        self.time = policy;
        self
    }

    /// Tells the intake an event time already known to be plausible (the tracker's newest
    /// restored record), so an event clamped before any other arrives stays in that time.
    pub fn saw_time(&mut self, ts_ms: i64) {
        self.newest_plausible = Some(self.newest_plausible.map_or(ts_ms, |n| n.max(ts_ms)));
    }

    /// Events whose time was clamped so far.
    pub fn clamped(&self) -> u64 {
        self.clamped
    }

    /// Applies the time policy to an event that normalized.
    fn judge(&mut self, origin: &dyn Display, mut event: Event) -> Result<Event, NormalizeError> {
        if event.timestamp_ms > self.clock_ms.saturating_add(self.time.max_ahead_ms) {
            self.clock_ms = crate::event::now_ms();
        }
        match judge_time(
            event.timestamp_ms,
            self.clock_ms,
            self.newest_plausible,
            &self.time,
        ) {
            TimeVerdict::Keep => {
                self.saw_time(event.timestamp_ms);
                Ok(event)
            }
            TimeVerdict::Clamp { to_ms } => {
                self.clamped += 1;
                if self.clamped == 1 {
                    tracing::warn!(
                        origin = %origin,
                        event_id = %crate::text::inert(&event.id),
                        claimed = %crate::event::rfc3339_ms(event.timestamp_ms),
                        now = %crate::event::rfc3339_ms(to_ms),
                        "an event is dated too far ahead of the engine's clock; its time is clamped (further clamps are counted, not logged)"
                    );
                }
                event.timestamp_ms = to_ms;
                Ok(event)
            }
            TimeVerdict::Reject(err) => Err(err),
        }
    }

    /// Normalizes one line; `origin` names where it came from (`events.jsonl`). A rejected line is
    /// already counted, logged and dead-lettered when this returns its error.
    pub fn accept_line(
        &mut self,
        origin: &dyn Display,
        line: &Line,
    ) -> Result<Event, NormalizeError> {
        let result = if line.full_len > MAX_EVENT_BYTES {
            Err(NormalizeError {
                kind: RejectKind::Oversize,
                message: format!(
                    "message is {} bytes, the limit is {MAX_EVENT_BYTES}",
                    line.full_len
                ),
            })
        } else {
            normalize(&line.bytes)
        };
        let origin = LineOrigin {
            file: origin,
            line: line.number,
        };
        self.account(&origin, &line.bytes, result)
    }

    /// Normalizes one message from a source without line numbers. `origin` is formatted only
    /// when the message is rejected.
    pub fn accept(&mut self, origin: &dyn Display, raw: &[u8]) -> Result<Event, NormalizeError> {
        self.account(origin, raw, normalize(raw))
    }

    fn account(
        &mut self,
        origin: &dyn Display,
        raw: &[u8],
        result: Result<Event, NormalizeError>,
    ) -> Result<Event, NormalizeError> {
        let result = match result {
            Ok(event) => self.judge(origin, event),
            Err(err) => Err(err),
        };
        match result {
            Ok(event) => {
                self.accepted += 1;
                Ok(event)
            }
            Err(err) => Err(self.reject(origin, raw, err)),
        }
    }

    /// Counts, logs (the first of its kind) and dead-letters a message that is not an event,
    /// for a reason found before normalization (a stream entry without its `data` field).
    pub fn reject(
        &mut self,
        origin: &dyn Display,
        raw: &[u8],
        err: NormalizeError,
    ) -> NormalizeError {
        let origin = origin.to_string();
        let origin = origin.as_str();
        let count = self.rejected.entry(err.kind).or_insert(0);
        *count += 1;
        if *count == 1 {
            tracing::warn!(
                origin,
                kind = err.kind.as_str(),
                "rejected a message: {}; further `{}` rejects are counted and dead-lettered, not logged",
                err.message,
                err.kind.as_str()
            );
        }
        if let Some(sink) = &mut self.dead_letter
            && let Err(io) = sink.write(origin, &err, raw)
        {
            tracing::error!(origin, "cannot write to the dead-letter file: {io}");
        }
        err
    }

    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    pub fn rejected(&self) -> &RejectCounts {
        &self.rejected
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// `file:line`, formatted only when needed.
struct LineOrigin<'a> {
    file: &'a dyn Display,
    line: u64,
}

impl Display for LineOrigin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}
