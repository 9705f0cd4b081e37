//! Where events come from. Every source hands raw messages to an [`Intake`], which normalizes
//! them and accounts for the ones that cannot be normalized.
//!
//! JSON lines from a file or standard input ([`jsonl`]), a Redis stream through a consumer
//! group ([`redis_stream`]), a Redis pub/sub channel ([`redis_channel`]).

mod intake;
pub mod jsonl;
pub mod redis_channel;
pub mod redis_stream;

pub use intake::{Intake, RejectCounts};
