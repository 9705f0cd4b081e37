//! End-to-end tests of the `palisade` binary, as one test binary: real processes, real files,
//! real SQLite, a real redis-server on a free loopback port.

#![expect(
    clippy::expect_used,
    reason = "test helpers stop at once on a broken setup"
)]

mod anomaly;
mod audit;
mod cli;
mod command_line;
mod console;
mod correlation;
mod crash;
mod diff;
mod edges;
mod effects;
mod elasticsearch;
mod exceptions;
mod explain;
mod firewall;
mod gates;
mod intel_poison;
mod intel_pull;
mod intel_stix;
mod learning;
mod lifecycle;
mod live;
mod operator_text;
mod outcomes;
mod redis_io;
mod response;
mod sigma;
mod support;
mod targets;
mod webhook_delivery;
mod yara;
