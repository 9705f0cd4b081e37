//! `palisade replay --events FILE`

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::pipeline::{Outcome, Pipeline};
use crate::sinks::{DeadLetter, replay_lines};
use crate::sources::Intake;
use crate::sources::jsonl::JsonlReader;

use super::{CannotRun, OutputFormat, Place, Status, load_runnable_content};

pub fn run(
    at: &Place,
    events: &Path,
    dead_letter: Option<&Path>,
    dry_run: bool,
    explain: Option<OutputFormat>,
) -> Result<Status, CannotRun> {
    let content = load_runnable_content(&at.dir, at.config.as_deref())?;
    let mut reader = JsonlReader::open(events)
        .map_err(|e| CannotRun(format!("cannot read `{}`: {e}", events.display())))?;
    let dead_letter = dead_letter
        .map(|path| {
            DeadLetter::open(path)
                .map_err(|e| CannotRun(format!("cannot open `{}`: {e}", path.display())))
        })
        .transpose()?;
    let mut intake = Intake::new(dead_letter).with_time_policy(content.config.events.time_policy());
    let mut pipeline = if explain.is_some() {
        // As `palisade explain` builds it: the state database is only read.
        super::explain::read_only_pipeline(&content, dry_run)?
    } else {
        let intel = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(content.intel())
            .map_err(|e| CannotRun(e.to_string()))?;
        Pipeline::new(content, dry_run, intel)?
    };
    let origin = events.display().to_string();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut outcome = Outcome::default();
    let mut failure_log = crate::rules::FailureLog::default();
    let (mut detections, mut actions, mut failures) = (0usize, 0usize, 0usize);
    while let Some(line) = reader
        .next_line()
        .map_err(|e| CannotRun(format!("cannot read `{origin}`: {e}")))?
    {
        let Ok(event) = intake.accept_line(&origin.as_str(), &line) else {
            continue;
        };
        outcome.clear();
        match explain {
            None => {
                pipeline.process(&event, &mut outcome);
                for value in replay_lines(&outcome) {
                    serde_json::to_writer(&mut out, &value)?;
                    out.write_all(b"\n")?;
                }
            }
            // Every event, the ones that matched nothing too: why is what was asked.
            Some(format) => {
                let explanation = pipeline.explain(&event, &mut outcome);
                match format {
                    OutputFormat::Json => {
                        serde_json::to_writer(&mut out, &explanation)?;
                        out.write_all(b"\n")?;
                    }
                    OutputFormat::Text => {
                        writeln!(out, "{}", super::explain::render(&explanation))?;
                    }
                }
            }
        }
        crate::engine::log_problems(&outcome, &mut failure_log);
        detections += outcome.detections.len();
        actions += outcome.actions.len();
        failures += outcome.failures.len();
    }
    out.flush()?;
    failure_log.flush();
    let rejected: Vec<String> = intake
        .rejected()
        .iter()
        .map(|(k, n)| format!("{}: {n}", k.as_str()))
        .collect();
    tracing::info!(
        "replayed {} event(s): {detections} detection(s), {actions} action(s), {failures} rule failure(s), {} rejected{}",
        intake.accepted(),
        intake.rejected_total(),
        if rejected.is_empty() {
            String::new()
        } else {
            format!(" ({})", rejected.join(", "))
        }
    );
    // A file none of whose lines could be read is not a quiet success: a wrong shape or a
    // truncated export would otherwise pass a CI step that replays it.
    if intake.accepted() == 0 && intake.rejected_total() > 0 {
        tracing::error!(
            "every line of `{origin}` was rejected ({}), nothing was replayed",
            rejected.join(", ")
        );
        return Ok(Status::Findings);
    }
    Ok(Status::Ok)
}
