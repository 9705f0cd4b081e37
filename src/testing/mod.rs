//! `palisade test`: the runner that pushes each case's events through the real pipeline and
//! compares what came out. The case types live in [`crate::cases`], below the rules,
//! playbooks and Sigma files that carry them.
//!
//! Beside it, what CI needs from the same content: the rule [`inventory`] (`palisade rules
//! list`) with its gates (`palisade validate --strict`), ATT&CK [`coverage`], and the
//! [`report`] formats (`palisade test --format json|junit`).

pub mod coverage;
pub mod inventory;
pub mod report;
mod runner;

pub use runner::{
    CaseResult, SnapshotUpdate, TestReport, TestRunError, run_tests, update_snapshots,
};

// Re-exported so the runner and its callers name them where they always did.
pub use crate::cases::{
    Expectation, ExpectedAction, ExpectedOutcome, MAX_FIXTURE_BYTES, TestCase, TestIndicator,
    TestInput, check_fixture_path,
};

/// What `palisade diff` shares with the runner: a case's events and matcher are made exactly as
/// `palisade test` makes them, so the default corpus means what the tests mean.
pub(crate) use runner::{case_intel, inline_event, read_fixture};
