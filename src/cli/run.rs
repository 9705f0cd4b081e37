//! `palisade run`: the engine on a JSON-lines source.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use crate::config::SourceConfig;
use crate::content::Content;
use crate::pipeline::{Outcome, Pipeline};
use crate::sinks::{DeadLetter, render_action, render_detection, replay_lines};
use crate::sources::Intake;
use crate::sources::jsonl::JsonlReader;
use crate::state::{Batch, DetectionRow, StateStore, spawn_writer};

use super::{CannotRun, LogFormat, Status, load_runnable_content, log_outcome_problems};

/// What the reading thread did, for the closing summary.
#[derive(Debug, Default)]
struct Summary {
    events: u64,
    rejected: u64,
    detections: u64,
    actions: u64,
    failures: u64,
}

pub fn run(
    dir: &Path,
    config: Option<&Path>,
    events: Option<&Path>,
    format: LogFormat,
) -> Result<Status, CannotRun> {
    let content = load_runnable_content(dir, config)?;
    let source: PathBuf = match (events, &content.config.source) {
        (Some(path), _) => path.to_path_buf(),
        (None, SourceConfig::Jsonl { path }) if path == Path::new("-") => path.clone(),
        (None, SourceConfig::Jsonl { path }) => content.resolve(path),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(engine(content, source, format));
    // A reader blocked on standard input cannot be interrupted; do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

async fn engine(
    content: Arc<Content>,
    source: PathBuf,
    format: LogFormat,
) -> Result<Status, CannotRun> {
    let config = &content.config;
    let state_path = content.resolve(&config.state.path);
    let store = StateStore::open(&state_path).await?;
    let shutdown = Arc::new(Notify::new());
    let (sender, writer) = spawn_writer(store, shutdown.clone());
    let dead_letter_path = content.resolve(&config.dead_letter.path);
    let dead_letter = DeadLetter::open(&dead_letter_path).map_err(|e| {
        CannotRun(format!(
            "cannot open the dead-letter file `{}`: {e}",
            dead_letter_path.display()
        ))
    })?;
    let reader = JsonlReader::open(&source)
        .map_err(|e| CannotRun(format!("cannot read `{}`: {e}", source.display())))?;
    let pipeline = Pipeline::new(content.clone(), config.actions.dry_run).map_err(CannotRun)?;
    tracing::info!(
        rules = content.rules.len(),
        playbooks = content.playbooks.len(),
        dry_run = config.actions.dry_run,
        source = %source.display(),
        state = %state_path.display(),
        "palisade is running"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let reading = {
        let stop = stop.clone();
        let origin = source.display().to_string();
        tokio::task::spawn_blocking(move || {
            read_all(
                reader,
                origin,
                pipeline,
                Intake::new(Some(dead_letter)),
                sender,
                stop,
                format,
            )
        })
    };
    let summary = tokio::select! {
        finished = reading => finished.map_err(|e| CannotRun(format!("the reading thread failed: {e}")))??,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted: stopping after the events already read");
            stop.store(true, Ordering::Relaxed);
            shutdown.notify_one();
            Summary::default()
        }
    };
    let batches = writer
        .await
        .map_err(|e| CannotRun(format!("the state writer failed: {e}")))??;
    tracing::info!(
        events = summary.events,
        rejected = summary.rejected,
        detections = summary.detections,
        actions = summary.actions,
        rule_failures = summary.failures,
        state_batches = batches,
        "input finished"
    );
    Ok(Status::Ok)
}

fn read_all(
    mut reader: JsonlReader,
    origin: String,
    mut pipeline: Pipeline,
    mut intake: Intake,
    sender: tokio::sync::mpsc::Sender<Batch>,
    stop: Arc<AtomicBool>,
    format: LogFormat,
) -> Result<Summary, CannotRun> {
    let mut summary = Summary::default();
    let mut outcome = Outcome::default();
    let stdout = std::io::stdout();
    while !stop.load(Ordering::Relaxed) {
        let Some(line) = reader
            .next_line()
            .map_err(|e| CannotRun(format!("cannot read `{origin}`: {e}")))?
        else {
            break;
        };
        let Some(event) = intake.accept_line(&origin, &line) else {
            continue;
        };
        summary.events += 1;
        outcome.clear();
        pipeline.process(&event, &mut outcome);
        log_outcome_problems(&outcome);
        summary.detections += outcome.detections.len() as u64;
        summary.actions += outcome.actions.len() as u64;
        summary.failures += outcome.failures.len() as u64;
        if outcome.detections.is_empty() {
            continue;
        }
        let mut out = stdout.lock();
        match format {
            LogFormat::Text => {
                for detection in &outcome.detections {
                    writeln!(out, "{}", render_detection(&event, detection))?;
                    for action in outcome.actions.iter().filter(|a| a.rule == detection.rule) {
                        writeln!(out, "{}", render_action(action))?;
                    }
                }
            }
            LogFormat::Json => {
                for value in replay_lines(&outcome) {
                    writeln!(out, "{value}")?;
                }
            }
        }
        out.flush()?;
        drop(out);
        let batch = Batch {
            detections: outcome
                .detections
                .iter()
                .map(|d| DetectionRow {
                    detection: d.clone(),
                    event_time: event.timestamp_rfc3339(),
                    host: event.host.clone(),
                })
                .collect(),
            actions: outcome.actions.clone(),
        };
        if sender.blocking_send(batch).is_err() {
            // The writer closed: shutting down, or it failed and will report why.
            break;
        }
    }
    summary.rejected = intake.rejected_total();
    Ok(summary)
}
