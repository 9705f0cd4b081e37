//! Where results go: the dead-letter file for rejected input, JSON lines for `replay` and
//! machines, readable alerts for people.

mod console;
mod dead_letter;
mod jsonl;

pub use console::{render_action, render_detection};
pub use dead_letter::DeadLetter;
pub use jsonl::{action_line, detection_line, replay_lines};
