//! Normalization at the edge, with an account of everything rejected.

use std::collections::BTreeMap;
use std::fmt::Display;

use crate::event::{Event, MAX_EVENT_BYTES, NormalizeError, RejectKind, normalize};
use crate::sinks::DeadLetter;

use super::jsonl::Line;

/// How many messages were rejected, per kind of problem.
pub type RejectCounts = BTreeMap<RejectKind, u64>;

/// Normalizes raw messages. A message that cannot become an event is counted, logged the first
/// time its kind of problem is seen, and written to the dead-letter sink; it never stops the
/// engine.
pub struct Intake {
    accepted: u64,
    rejected: RejectCounts,
    dead_letter: Option<DeadLetter>,
}

impl Intake {
    pub fn new(dead_letter: Option<DeadLetter>) -> Intake {
        Intake {
            accepted: 0,
            rejected: RejectCounts::new(),
            dead_letter,
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
        match result {
            Ok(event) => {
                self.accepted += 1;
                Ok(event)
            }
            Err(err) => {
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
                Err(err)
            }
        }
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
