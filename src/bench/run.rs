//! One palisade run: the engine built by the composition root, reading the stream a producer
//! fills, at full speed or at a given rate.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::server::{Options, Server};
use crate::shutdown::Shutdown;
use crate::sinks::AlertFormat;

use super::probe::{Latency, LatencyProbe};
use super::redis::{connect, fresh_stream, produce, wait_drained};
use super::report::RunFigures;
use super::setup::{ALERTS_STREAM, EVENTS_GROUP, EVENTS_STREAM, Prepared, for_run};

/// Runs the engine `palisade run` would build from the bench's content (state, executor and
/// plugins, intel, reload, expiry, the configured stages, unless `stages` replaces them) on
/// `lines`, published at `rate` events/s or as fast as Redis takes them. `name` names the
/// run's files under `work`.
pub(super) async fn palisade_run(
    prepared: &Prepared,
    work: &Path,
    name: &str,
    lines: &Arc<Vec<String>>,
    rate: Option<f64>,
    stages: Option<crate::pipeline::Stages>,
) -> Result<RunFigures, String> {
    let content = for_run(prepared, work, name)?;
    let url = content.config.redis.url.clone();
    let mut admin = connect(&url).await?;
    fresh_stream(&mut admin, EVENTS_STREAM, EVENTS_GROUP)
        .await
        .map_err(|e| e.to_string())?;
    let (trigger, shutdown) = Shutdown::new();
    let options = Options {
        stages,
        ..Options::new(AlertFormat::Quiet)
    };
    // Built before the clock starts: loading a million indicators is start-up, not throughput.
    let server = Server::build(content, options, shutdown)
        .await
        .map_err(|e| e.to_string())?;
    let total = lines.len();
    let started = Instant::now();
    let producer = tokio::spawn(produce(
        connect(&url).await?,
        EVENTS_STREAM.into(),
        lines.clone(),
        rate,
    ));
    let consumer = tokio::spawn(server.serve(LatencyProbe::default()));
    wait_drained(&mut admin, EVENTS_STREAM, EVENTS_GROUP, total)
        .await
        .map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    trigger.trigger();
    producer
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let (_, probe) = consumer
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let _: () = redis::cmd("DEL")
        .arg(EVENTS_STREAM)
        .arg(ALERTS_STREAM)
        .query_async(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    Ok(RunFigures {
        offered_per_second: rate,
        events_per_second: total as f64 / seconds,
        to_recorded: Latency::of(probe.recorded),
        to_dispatched: Latency::of(probe.dispatched),
    })
}
