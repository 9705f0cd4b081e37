//! `palisade bench`: how fast the engine runs.
//!
//! `palisade bench pipeline` measures the whole engine from a Redis stream next to the ceiling
//! of the same Redis server on the same machine, measured in the same round:
//!
//! 1. The ceiling ([`redis`]): one task `XADD`s in pipelines while another `XREADGROUP`s and
//!    `XACK`s in batches; events/s until every entry is acknowledged.
//! 2. palisade ([`run`]): the same producer, and the engine the composition root builds from
//!    the content directory's rules and playbooks plus generated ones ([`generate`],
//!    [`setup`]), with generated indicators loaded, state in a scratch SQLite file, alerts
//!    published.
//! 3. Latency from publish to detection recorded and to action dispatched ([`probe`]), at full
//!    load and at half of the measured palisade throughput.
//!
//! `palisade bench intel` measures threat intelligence at scale ([`mod@intel`]).

pub mod generate;
pub mod intel;
pub mod probe;
pub mod redis;
pub mod report;
pub mod run;
pub mod setup;
pub mod webhook;

use std::path::Path;
use std::sync::Arc;

use crate::content::Content;

pub use generate::{event_mix, indicator_mix};
pub use intel::{IntelBenchReport, intel};
pub use probe::Latency;
pub use report::{BenchReport, Round, RunFigures};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub events: usize,
    /// One event in this many is malicious (and so produces detections and actions).
    pub malicious_every: usize,
    pub redis_url: String,
    /// Generated rules added to the content directory's own.
    pub rules: usize,
    /// Generated indicators loaded into intel.
    pub indicators: usize,
    /// Rounds of ceiling and runs; the report gives each and the medians.
    pub repeat: usize,
    /// Replace the playbooks with one posting each malicious detection to a local receiver
    /// that behaves so.
    pub webhook: Option<webhook::WebhookMode>,
}

/// Runs the whole benchmark against the Redis server at `options.redis_url`, with scratch
/// files under `work`.
pub async fn pipeline(
    options: &BenchOptions,
    content: Arc<Content>,
    work: &Path,
) -> Result<BenchReport, String> {
    let lines = Arc::new(event_mix(options.events, options.malicious_every));
    let started = std::time::Instant::now();
    let content = match options.webhook {
        Some(mode) => webhook::content_posting_to(
            &content,
            &webhook::receiver(mode).await?,
            &work.join("webhook-content"),
        )?,
        None => content,
    };
    let prepared = setup::prepare(&content, options, work).await?;
    tracing::info!(
        rules = prepared.content.rules.len(),
        sigma_rules = prepared.content.sigma.rules.len(),
        indicators = prepared.indicators,
        seconds = started.elapsed().as_secs_f64(),
        "bench content prepared"
    );
    let content = prepared.content.clone();
    let mut rounds = Vec::new();
    for round in 0..options.repeat.max(1) {
        rounds.push(measure_round(&prepared, work, round, &lines).await?);
    }
    Ok(BenchReport {
        events: options.events,
        detections_per_run: rounds
            .first()
            .map_or(0, |r: &Round| r.full.to_recorded.samples),
        rules: content.rules.len(),
        sigma_rules: content.sigma.rules.len(),
        generated_rules: prepared.generated_rules,
        playbooks: content.playbooks.len(),
        indicators: prepared.indicators,
        model: content.config.anomaly.enabled
            && content
                .resolve(&crate::anomaly::model_or_example(&content.config.anomaly))
                .exists(),
        tracker: content.config.tracker.enabled,
        rounds,
    })
}

/// The ceiling, then palisade at full load as configured, with rules and playbooks only, and
/// at half of its full-load throughput.
async fn measure_round(
    prepared: &setup::Prepared,
    work: &Path,
    round: usize,
    lines: &Arc<Vec<String>>,
) -> Result<Round, String> {
    let url = prepared.content.config.redis.url.clone();
    tracing::info!(round, events = lines.len(), "measuring the Redis ceiling");
    let ceiling = redis::ceiling(&url, lines).await?;
    tracing::info!(round, "measuring palisade at full load");
    let full = run::palisade_run(
        prepared,
        work,
        &format!("full-{round}"),
        lines,
        None,
        Some(measured_stages(&prepared.content, lines)?),
    )
    .await?;
    tracing::info!(
        round,
        "measuring palisade at full load without the anomaly model and tracker"
    );
    let rules_only = run::palisade_run(
        prepared,
        work,
        &format!("rules-only-{round}"),
        lines,
        None,
        Some(crate::pipeline::Stages::none()),
    )
    .await?;
    let half_rate = full.events_per_second / 2.0;
    tracing::info!(
        round,
        rate = half_rate as u64,
        "measuring palisade at half load"
    );
    let half = run::palisade_run(
        prepared,
        work,
        &format!("half-{round}"),
        lines,
        Some(half_rate),
        Some(measured_stages(&prepared.content, lines)?),
    )
    .await?;
    Ok(Round {
        ceiling_per_second: ceiling,
        full,
        rules_only,
        half,
    })
}

/// The stages as configured, scoring with a model: the configured file, else the shipped
/// example (what a learned model costs per event is the same), and, when the engine learns,
/// a learner whose sample has seen a week of the bench's events. Fresh for each run: a tracker
/// that has seen the previous run would not be measuring the same work.
fn measured_stages(content: &Content, lines: &[String]) -> Result<crate::pipeline::Stages, String> {
    let mut stages = crate::pipeline::Stages::from_content(content).map_err(|e| e.to_string())?;
    if stages.anomaly.current().is_none() && content.config.anomaly.enabled {
        let path = content.resolve(&crate::anomaly::model_or_example(&content.config.anomaly));
        if let Some(model) = crate::anomaly::load_optional(&path).map_err(|e| e.to_string())? {
            stages.anomaly =
                crate::anomaly::AnomalyHandle::new(Some(model), content.config.anomaly.threshold);
        }
    }
    if content.config.anomaly.learns() {
        stages.learner = Some(setup::learned(&content.config.anomaly, lines));
    }
    Ok(stages)
}
