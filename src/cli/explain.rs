//! `palisade explain EVENT`: why one event did or did not match, stage by stage. The
//! explanation is built by the pipeline (`pipeline::explain`); this file reads the event,
//! builds the pipeline without opening anything for writing, and renders the result.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;

use crate::content::Content;
use crate::event::Event;
use crate::pipeline::explain::{AnomalyView, Explanation};
use crate::pipeline::{Outcome, Pipeline, Stages};
use crate::rules::DetectReport;
use crate::sources::Intake;
use crate::sources::jsonl::{JsonlReader, Line};
use crate::text::inert;

use super::{CannotRun, OutputFormat, Place, Status, load_runnable_content};

/// Which event of a file to explain.
#[derive(Debug, Clone, Copy)]
pub enum Pick<'a> {
    Id(&'a str),
    /// 1-based line number.
    Line(u64),
}

pub fn run(
    at: &Place,
    input: &str,
    pick: Option<Pick<'_>>,
    format: OutputFormat,
) -> Result<Status, CannotRun> {
    let content = load_runnable_content(&at.dir, at.config.as_deref())?;
    let mut intake = Intake::new(None).with_time_policy(content.config.events.time_policy());
    let inline = input.trim_start().starts_with('{');
    let dry_run = content.config.actions.dry_run;
    let mut pipeline = read_only_pipeline(&content, dry_run)?;
    let mut outcome = Outcome::default();
    let explanation = if inline || input == "-" {
        if pick.is_some() {
            return Err(CannotRun(
                "--id and --line pick an event from a file; an inline event needs neither".into(),
            ));
        }
        let text = if inline {
            input.to_string()
        } else {
            let mut text = String::new();
            std::io::stdin()
                .take(crate::event::MAX_EVENT_BYTES as u64 + 1)
                .read_to_string(&mut text)
                .map_err(|e| CannotRun(format!("cannot read standard input: {e}")))?;
            text
        };
        let origin = if inline {
            "the event argument"
        } else {
            "standard input"
        };
        let event = accept(&mut intake, origin, 0, text.trim().as_bytes())?;
        pipeline.explain(&event, &mut outcome)
    } else {
        let Some(pick) = pick else {
            return Err(CannotRun(format!(
                "`{input}` is read as a file of events: name the one to explain with --id ID or --line N (or give the event as JSON)"
            )));
        };
        explain_in_file(&mut pipeline, &mut intake, Path::new(input), pick)?
    };
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&explanation)?),
        OutputFormat::Text => print!("{}", render(&explanation)),
    }
    Ok(Status::Ok)
}

/// A pipeline over the content as `palisade run` would build it, with nothing opened for
/// writing: intel read from the state database read-only, the anomaly model from its file
/// (the named one, else the model this deployment's engine learned), a tracker and
/// correlation windows that start empty (restoring them from the state database would prune
/// it).
pub fn read_only_pipeline(content: &Arc<Content>, dry_run: bool) -> Result<Pipeline, CannotRun> {
    let intel = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(crate::intel::from_state_file_read_only(
            &content.resolve(&content.config.state.path),
            &content.warninglists,
            content.config.intel.max_prefix,
        ))?;
    let mut stages = Stages::from_content(content)?;
    let config = &content.config.anomaly;
    if stages.anomaly.current().is_none() && config.enabled && config.model.is_none() {
        let learned = content.resolve(&config.learning.model_file);
        if let Some(model) = crate::anomaly::load_optional(&learned)? {
            stages.anomaly = crate::anomaly::AnomalyHandle::new(Some(model), config.threshold);
        }
    }
    Ok(Pipeline::with_stages(
        content.clone(),
        dry_run,
        intel,
        stages,
    )?)
}

/// The event from `raw` (line `number` of `origin`, 0 when it is not a file), or the intake's
/// reason for refusing it (naming the field), as a could-not-run error.
fn accept(intake: &mut Intake, origin: &str, number: u64, raw: &[u8]) -> Result<Event, CannotRun> {
    let line = Line {
        number,
        bytes: raw.to_vec(),
        full_len: raw.len(),
    };
    intake.accept_line(&origin, &line).map_err(|e| {
        // A file's line is named by its number; an argument or standard input by itself.
        let place = if number == 0 {
            origin.to_string()
        } else {
            format!("{origin}:{number}")
        };
        CannotRun(format!(
            "{place} is not an event ({}): {}",
            e.kind.as_str(),
            e.message
        ))
    })
}

/// Runs the file's events before the picked one through the pipeline (so the tracker and the
/// correlation windows see what came before it, as in a replay), then explains it.
fn explain_in_file(
    pipeline: &mut Pipeline,
    intake: &mut Intake,
    path: &Path,
    pick: Pick<'_>,
) -> Result<Explanation, CannotRun> {
    let shown = path.display().to_string();
    let mut reader =
        JsonlReader::open(path).map_err(|e| CannotRun(format!("cannot read `{shown}`: {e}")))?;
    let mut outcome = Outcome::default();
    while let Some(line) = reader
        .next_line()
        .map_err(|e| CannotRun(format!("cannot read `{shown}`: {e}")))?
    {
        if let Pick::Line(wanted) = pick
            && line.number == wanted
        {
            let event = accept(intake, &shown, line.number, &line.bytes)?;
            return Ok(pipeline.explain(&event, &mut outcome));
        }
        let Ok(event) = intake.accept_line(&shown.as_str(), &line) else {
            continue;
        };
        if let Pick::Id(id) = pick
            && event.id == id
        {
            outcome.clear();
            return Ok(pipeline.explain(&event, &mut outcome));
        }
        outcome.clear();
        pipeline.process(&event, &mut outcome);
    }
    Err(CannotRun(match pick {
        Pick::Id(id) => format!("`{shown}` has no event with the id `{id}`"),
        Pick::Line(n) => format!("`{shown}` has no line {n} (or it is blank)"),
    }))
}

/// The explanation as text for people: one section per stage.
pub fn render(e: &Explanation) -> String {
    let mut out = String::new();
    let field = |name: &str| {
        e.event
            .get(name)
            .and_then(|v| v.as_str())
            .map(|v| inert(v).into_owned())
    };
    let kind = field("type").unwrap_or_default();
    let _ = writeln!(
        out,
        "event {} ({kind}{})",
        field("id").unwrap_or_default(),
        field("host")
            .map(|h| format!(" on {h}"))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "  normalized: {}", inert(&e.event.to_string()));

    if e.intel.is_empty() {
        let _ = writeln!(out, "\nintel: no hits");
    } else {
        let _ = writeln!(out, "\nintel: {} hit(s)", e.intel.len());
        for hit in &e.intel {
            let _ = writeln!(
                out,
                "  {} matches {} ({}, source {}, score {:.1}){}",
                inert(&hit.value),
                inert(&hit.indicator),
                hit.kind.as_str(),
                inert(&hit.source),
                hit.score,
                hit.warning
                    .as_deref()
                    .map(|w| format!(", on warninglist {}", inert(w)))
                    .unwrap_or_else(|| ", not on a warninglist".into())
            );
        }
    }

    let _ = writeln!(
        out,
        "\nrules for {kind}: {} ({} rule(s) are for other event kinds)",
        e.rules.len(),
        e.other_rules
    );
    for rule in &e.rules {
        let _ = writeln!(out, "  {} ({})", rule.rule, rule.file);
        let filter = &rule.filter;
        if filter.intel.is_none() && filter.conditions.is_empty() {
            let _ = writeln!(out, "    filter: none (every {kind} event)");
        } else {
            let _ = writeln!(
                out,
                "    filter: {}",
                if filter.passed { "passed" } else { "said no" }
            );
        }
        if let Some(intel) = &filter.intel {
            let kinds: Vec<&str> = intel.kinds.iter().map(|k| k.as_str()).collect();
            let _ = writeln!(
                out,
                "      {} intel hit of kind {}",
                if intel.held { "holds:" } else { "fails:" },
                if kinds.is_empty() {
                    "any".to_string()
                } else {
                    kinds.join(", ")
                }
            );
        }
        for c in &filter.conditions {
            let _ = writeln!(
                out,
                "      {} {} {} {:?}; the event's {}: {}",
                if c.held { "holds:" } else { "fails:" },
                c.field,
                c.operator,
                c.values,
                c.field,
                c.actual
                    .as_deref()
                    .map(|v| format!("{:?}", inert(v)))
                    .unwrap_or_else(|| "(none)".into())
            );
        }
        let detect = match &rule.detect {
            DetectReport::NotRun => "not run (the filter said no)".to_string(),
            DetectReport::NoScript => "none (the filter is the whole rule): detection".to_string(),
            DetectReport::Returned {
                value,
                type_name,
                detected,
            } => format!(
                "returned {}{}: {}",
                inert(value),
                // `()` names its own type; for a value the type says what came back.
                if value == "()" {
                    String::new()
                } else {
                    format!(" ({type_name})")
                },
                if *detected {
                    "detection"
                } else {
                    "no detection"
                }
            ),
            DetectReport::Failed { message } => format!("failed: {}", inert(message)),
        };
        let _ = writeln!(out, "    detect: {detect}");
        for line in &rule.output {
            let _ = writeln!(
                out,
                "    {}: {}{}",
                line.kind,
                line.text,
                line.at
                    .as_deref()
                    .map(|a| format!(" (at {a})"))
                    .unwrap_or_default()
            );
        }
        if rule.more_output > 0 {
            let _ = writeln!(out, "    ... {} more output line(s)", rule.more_output);
        }
    }

    if !e.sigma.is_empty() || e.other_sigma > 0 {
        let _ = writeln!(
            out,
            "\nSigma rules for {kind}: {} ({} are for other event kinds)",
            e.sigma.len(),
            e.other_sigma
        );
    }
    for rule in &e.sigma {
        let gate = match rule.gate {
            Some(true) => "its literal gate let the event through",
            Some(false) => "its literal gate said no (none of its literals is in the event)",
            None => "it has no literal gate",
        };
        let searches: Vec<String> = rule
            .searches
            .iter()
            .map(|(name, held)| format!("{name} {}", if *held { "matched" } else { "did not" }))
            .collect();
        let _ = writeln!(
            out,
            "  {} ({}): {}; {gate}; {}",
            rule.name,
            rule.file,
            if rule.matched { "matched" } else { "no match" },
            searches.join(", ")
        );
    }

    match &e.anomaly {
        AnomalyView::NotScored { reason } => {
            let _ = writeln!(out, "\nanomaly: not scored: {reason}");
        }
        AnomalyView::Scored {
            score,
            threshold,
            distance,
            flagged,
            features,
        } => {
            let _ = writeln!(
                out,
                "\nanomaly: score {score:.3} ({} the threshold {threshold:.2}; distance {distance:.2})",
                if *flagged { "at or above" } else { "below" }
            );
            for f in features {
                let _ = writeln!(
                    out,
                    "  {:<22} {:>9.3} {:>6.1}%",
                    f.name,
                    f.value,
                    f.share * 100.0
                );
            }
        }
    }

    let t = &e.tracker;
    let _ = write!(out, "\ntracker: ");
    match (&t.entity, &t.reason) {
        (Some(entity), _) if t.tracked => {
            let _ = write!(out, "`{}`", inert(entity));
            if let Some((kind, count)) = &t.records {
                let _ = write!(out, ": {count} {kind} record(s) within retention");
            }
            let _ = writeln!(out);
        }
        (_, Some(reason)) => {
            let _ = writeln!(out, "{reason}");
        }
        _ => {
            let _ = writeln!(out, "not tracked");
        }
    }
    if let Some((pair, new)) = &t.first_seen {
        let _ = writeln!(out, "  first_seen({}): {new}", inert(pair));
    }
    if let Some(ports) = t.distinct_ports {
        let _ = writeln!(out, "  distinct_ports: {ports}");
    }
    if let Some(interval) = t.beacon_interval_s {
        let _ = writeln!(out, "  beacon_interval: {interval:.1}s");
    }

    if e.detections.is_empty() {
        let _ = writeln!(out, "\ndetections: none");
    } else {
        let _ = writeln!(out, "\ndetections:");
        for d in &e.detections {
            let _ = writeln!(
                out,
                "  {} ({}, {}): {}",
                d.rule,
                d.stage.as_str(),
                d.severity.as_str(),
                inert(&d.title)
            );
        }
    }
    for failure in &e.failures {
        let _ = writeln!(
            out,
            "  rule {} failed: {}",
            failure.rule,
            inert(&failure.message)
        );
    }

    if e.playbooks.is_empty() {
        let _ = writeln!(out, "\nplaybooks: none");
        return out;
    }
    let _ = writeln!(
        out,
        "\nplaybooks{}:",
        if e.dry_run {
            " (planned as dry-run; nothing is executed)"
        } else {
            " (planned only; nothing is executed)"
        }
    );
    for p in &e.playbooks {
        match &p.triggered_by {
            Some(rule) => {
                let _ = writeln!(out, "  {}: triggered by {rule}", p.playbook);
            }
            None if p.trigger.is_empty() => {
                let _ = writeln!(out, "  {}: not triggered (no detection)", p.playbook);
            }
            None => {
                let why: Vec<String> = p
                    .trigger
                    .iter()
                    .map(|(rule, why)| format!("{rule}: {}", why.unwrap_or("matched")))
                    .collect();
                let _ = writeln!(out, "  {}: not triggered ({})", p.playbook, why.join("; "));
            }
        }
        for step in &p.steps {
            let _ = writeln!(
                out,
                "    step {} ({}): when {}; {}{}{}",
                step.step,
                step.action,
                step.when,
                step.status.as_str(),
                if step.target.is_empty() {
                    String::new()
                } else {
                    format!(" {}", inert(&step.target))
                },
                step.reason
                    .as_deref()
                    .map(|r| format!(" ({})", inert(r)))
                    .unwrap_or_default()
            );
        }
    }
    out
}
