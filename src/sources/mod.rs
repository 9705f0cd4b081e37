//! Where events come from. Every source hands raw messages to an [`Intake`], which normalizes
//! them and accounts for the ones that cannot be normalized.
//!
//! Today: JSON lines from a file or standard input ([`jsonl`]). Redis streams and pub/sub
//! channels are further sources of the same shape.

mod intake;
pub mod jsonl;

pub use intake::{Intake, RejectCounts};
