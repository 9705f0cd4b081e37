//! `palisade train` and `palisade model eval|sample`: the anomaly model's life outside the
//! engine.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{CannotRun, Status};
use crate::anomaly::evaluate::Evaluation;
use crate::anomaly::synth::{self, SampleKind};
use crate::anomaly::{Model, train};
use crate::event::{Event, normalize};
use crate::sources::jsonl::JsonlReader;

/// The model `explain` and `eval` use, and whose it is.
pub struct ChosenModel {
    pub path: PathBuf,
    /// Said beside the path: which model this is.
    pub what: &'static str,
}

/// The model a person means when naming none: the deployment's own. The file its config names
/// (`anomaly.model`), else the model its engine learned (`anomaly.learning.model_file`, when the
/// engine has written one). The shipped example model is not this deployment's normal, so it
/// is used only when named; without a model of its own the command says so instead of judging
/// with a stranger's.
pub fn chosen(at: &super::Place, named: Option<&Path>) -> Result<ChosenModel, CannotRun> {
    if let Some(path) = named {
        return Ok(ChosenModel {
            path: path.to_path_buf(),
            what: "named with --model",
        });
    }
    let config = super::control::anomaly_config(at)?;
    if let Some(file) = config.model.as_ref().filter(|_| config.enabled) {
        return Ok(ChosenModel {
            path: at.resolve(file),
            what: "the model file `anomaly.model` names",
        });
    }
    let learned = at.resolve(&config.learning.model_file);
    if learned.exists() {
        return Ok(ChosenModel {
            path: learned,
            what: "the model this deployment's engine learned",
        });
    }
    Err(CannotRun(format!(
        "no model of this deployment yet: the config names no `anomaly.model` and the engine has not written `{}` (`palisade model status` shows how far learning is); name one with --model (the shipped example: --model {})",
        learned.display(),
        crate::anomaly::EXAMPLE_MODEL
    )))
}

/// Reads every event of a JSON-lines file; a line that is not an event stops with its
/// `file:line` and reason, since a model trained or judged on half a file would mislead.
pub fn read_events(path: &Path) -> Result<Vec<Event>, CannotRun> {
    let shown = path.display();
    let mut reader =
        JsonlReader::open(path).map_err(|e| CannotRun(format!("cannot read `{shown}`: {e}")))?;
    let mut events = Vec::new();
    while let Some(line) = reader
        .next_line()
        .map_err(|e| CannotRun(format!("cannot read `{shown}`: {e}")))?
    {
        if line.bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let event = normalize(&line.bytes)
            .map_err(|e| CannotRun(format!("{shown}:{}: {}", line.number, e.message)))?;
        events.push(event);
    }
    Ok(events)
}

pub fn train_model(events: &Path, out: &Path) -> Result<Status, CannotRun> {
    let started = std::time::Instant::now();
    let baseline = read_events(events)?;
    eprintln!("read {} events from {}", baseline.len(), events.display());
    let model = train::train(&baseline, &events.display().to_string())?;
    model.save(out)?;
    println!(
        "wrote {} in {:.1} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    for (kind, summary) in &model.summary.kinds {
        println!(
            "  {kind:<20} {:>6} fitted, {:>5} held out, {:>2} clusters; held-out events at or above 0.9: {:.2}%",
            summary.fitted,
            summary.held_out,
            summary.clusters,
            summary.held_out_above_0_9 * 100.0
        );
    }
    for skipped in &model.summary.skipped {
        println!("  not modelled: {skipped}");
    }
    Ok(Status::Ok)
}

pub fn eval(
    at: &super::Place,
    named: Option<&Path>,
    normal: &Path,
    attacks: &Path,
    threshold: f64,
    plot: &Path,
) -> Result<Status, CannotRun> {
    let chosen = chosen(at, named)?;
    let model = Model::load(&chosen.path)?;
    println!("model {} ({})", chosen.path.display(), chosen.what);
    let normal = read_events(normal)?;
    let attacks = read_events(attacks)?;
    let evaluation = Evaluation::new(&model, &normal, &attacks, threshold);
    println!("{evaluation}");
    evaluation.plot(plot).map_err(CannotRun)?;
    println!(
        "wrote {} (blue: normal, red: attacks, dashed line: threshold)",
        plot.display()
    );
    Ok(Status::Ok)
}

pub fn sample(
    kind: SampleKind,
    events: usize,
    days: i64,
    seed: u64,
    out: Option<&Path>,
) -> Result<Status, CannotRun> {
    let values = match kind {
        SampleKind::Normal => synth::normal(events, days, seed),
        SampleKind::Attacks => synth::attacks(events, days, seed),
    };
    let mut text = String::with_capacity(values.len() * 200);
    for value in values {
        text.push_str(&value.to_string());
        text.push('\n');
    }
    match out {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| CannotRun(format!("cannot write `{}`: {e}", path.display())))?,
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| CannotRun(e.to_string()))?,
    }
    Ok(Status::Ok)
}

/// `palisade model explain`: the event from the argument, or from `file` by `event_id`.
pub fn explain(
    at: &super::Place,
    named: Option<&Path>,
    event: Option<&str>,
    file: Option<&Path>,
    event_id: Option<&str>,
) -> Result<Status, CannotRun> {
    let event = match (event, file, event_id) {
        (Some(text), _, _) => normalize(text.as_bytes())
            .map_err(|e| CannotRun(format!("the event argument is not an event: {}", e.message)))?,
        (None, Some(file), Some(id)) => read_events(file)?
            .into_iter()
            .find(|e| e.id == id)
            .ok_or_else(|| {
                CannotRun(format!(
                    "`{}` has no event with the id `{id}`",
                    file.display()
                ))
            })?,
        _ => {
            return Err(CannotRun(
                "give the event as a JSON argument, or --file and --event-id".to_string(),
            ));
        }
    };
    let chosen = chosen(at, named)?;
    let model_path = &chosen.path;
    let model = Model::load(model_path)?;
    let Some(explained) = model.explain(&event) else {
        return Err(CannotRun(format!(
            "`{}` does not model {} events (its baseline had too few of them), so it does not score this one",
            model_path.display(),
            event.kind
        )));
    };
    let host = if explained.host.is_empty() {
        "no host"
    } else {
        &explained.host
    };
    println!(
        "event {} ({} on {host}), model {} ({})",
        event.id,
        event.kind,
        model_path.display(),
        chosen.what
    );
    println!(
        "score {:.3} (distance {:.2} from the nearest centre; 0.9 is as far as one normal event in a thousand)",
        explained.score, explained.distance
    );
    println!();
    println!("{:<22} {:>9} {:>7}", "feature", "value", "share");
    for (name, value, share) in &explained.features {
        println!("{name:<22} {value:>9.3} {:>6.1}%", share * 100.0);
    }
    println!();
    let peers = &explained.peers;
    let shown: Vec<&str> = peers.iter().take(8).map(String::as_str).collect();
    println!(
        "peer group `{}`: {} host{} in the baseline{}{}",
        explained.peer_group,
        peers.len(),
        if peers.len() == 1 { "" } else { "s" },
        if shown.is_empty() { "" } else { ": " },
        shown.join(", ")
            + if peers.len() > shown.len() {
                ", …"
            } else {
                ""
            }
    );
    println!("what the baseline holds (times seen of events counted):");
    for (table, value, seen) in &explained.seen {
        println!(
            "  {:<13} {value}: this host {} of {}, peers {} of {}, fleet {} of {}; chance {:.2e} (fleet new-value rate {:.2e})",
            table.as_str(),
            seen.host.0,
            seen.host.1,
            seen.peer.0,
            seen.peer.1,
            seen.fleet.0,
            seen.fleet.1,
            seen.probability,
            seen.novelty
        );
    }
    Ok(Status::Ok)
}
