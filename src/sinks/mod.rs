//! Where results go: the dead-letter file for rejected input, JSON lines for `replay` and
//! machines, readable alerts for people, alerts on Redis for responders.

mod console;
mod dead_letter;
pub mod elasticsearch;
mod jsonl;
mod redis_alerts;

pub use console::{AlertFormat, render_action, render_detection, show, show_settled};
pub use dead_letter::DeadLetter;
pub use jsonl::{action_line, detection_line, lines_for, replay_lines};
pub use redis_alerts::AlertPublisher;
