//! palisade: host telemetry in, correlated detections and guarded responses out.
//!
//! ```text
//! sources ──► event (normalize) ──► intel ──► rules ──► anomaly, tracker ──► detection
//!    │              │                                                            │
//!    └─ dead letter ┘        sinks, state (SQLite) ◄── actions ◄── playbooks ◄────┘
//! ```
//!
//! Modules, in the order an event meets them:
//!
//! - [`sources`]: where raw messages come from (JSON lines today), and the [`sources::Intake`]
//!   that normalizes them and dead-letters what it cannot.
//! - [`event`]: the typed event model and normalization of the flat and ECS shapes, and the
//!   judgement of event time against the engine's clock. Plain data.
//! - [`intel`]: indicators (validated like event input), feed importers, warninglists and the
//!   matcher that enriches each event before the rules.
//! - [`rules`]: Rhai rule files, the sandboxed engine (every limit and the time budget, helpers
//!   included), the per-worker evaluator.
//! - [`anomaly`]: the anomaly model for events no rule matched: features, training, scoring.
//! - [`tracker`]: the long-term behaviour tracker and its detectors.
//! - [`detection`]: what a deciding stage produces. Plain data.
//! - [`playbooks`]: YAML playbooks, their validation, and planning steps for a detection.
//! - [`actions`]: the registry of response actions, their typed (canonical) parameters, the one
//!   target policy that validation, planning and the executor ask, the executor and its plugins.
//! - [`audit`], [`approvals`]: the keyed, anchored audit trail; queued steps and the mode.
//! - [`pipeline`]: one worker's path through the stages above.
//! - [`sinks`]: replay JSON lines, readable alerts, the dead-letter file.
//! - [`state`]: the SQLite file of detections and decisions, written by one owner task.
//!
//! Around the flow: [`config`] (the engine's config file), [`content`] (config, rules and
//! playbooks loaded and validated together), [`diagnostics`] (every problem with its
//! `file:line:col`), [`testing`] (`palisade test`, the rule inventory, CI gates and ATT&CK
//! coverage), [`impact`] (`palisade diff`: the same events through two sets of content,
//! compared), [`schema`] (JSON Schemas for editors),
//! [`text`] (event values made inert before people read them), [`engine`] and [`metrics`] (the
//! running engine and its endpoints), [`server`] (the composition root that builds a running
//! engine from content, for `palisade run` and the bench), [`mod@bench`] (`palisade bench`), [`outbound`] (the one bounded HTTP client feeds and webhooks
//! call out with) and [`cli`] (the `palisade` command).
//!
//! At the bottom, for every module: [`shutdown`] (the signal every task watches), [`duration`]
//! (the one duration parser), [`net`] (address and name helpers), [`cases`] (the test case
//! types rule, playbook and Sigma files carry) and [`attack`] (the MITRE ATT&CK technique list rule
//! tags are checked against). Modules use only modules below them; the order
//! is in docs/architecture.md ("Dependency order") and `tests/architecture.rs` checks it.

pub mod actions;
pub mod anomaly;
pub mod approvals;
pub mod attack;
pub mod audit;
pub mod bench;
pub mod bus;
pub mod cases;
pub mod cli;
pub mod config;
pub mod console;
pub mod content;
pub mod decision;
pub mod detection;
pub mod diagnostics;
pub mod duration;
pub mod engine;
pub mod event;
pub mod impact;
pub mod intel;
pub mod metrics;
pub mod net;
pub mod outbound;
pub mod pipeline;
pub mod playbooks;
pub mod rules;
pub mod schema;
pub mod server;
pub mod shutdown;
pub mod sigma;
pub mod sinks;
pub mod sources;
pub mod state;
pub mod testing;
pub mod text;
pub mod tracker;
