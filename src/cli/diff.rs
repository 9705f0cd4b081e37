//! `palisade diff --base REV`: what a content change would do differently, on recorded events.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::ValueEnum;

use crate::diagnostics::Diagnostics;
use crate::impact::{Comparison, DEFAULT_EXAMPLES, Side, default_files, report, test_cases};
use crate::sources::Intake;

use super::{CannotRun, Place, Status, load_content};

/// How the report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    /// For a terminal.
    Text,
    /// For a pull-request comment: tables and collapsible examples.
    Markdown,
    /// One JSON document, for machines.
    Json,
}

/// What `palisade diff` was asked.
#[derive(Debug, Clone, clap::Args)]
#[command(group = clap::ArgGroup::new("baseline").required(true).args(["base", "base_dir"]))]
pub struct DiffArgs {
    /// The git revision to compare with (a branch, tag or commit of the repository holding
    /// the content directory), e.g. `origin/main`.
    #[arg(long, value_name = "REV")]
    pub base: Option<String>,
    /// Compare with the content in this directory instead of a revision.
    #[arg(long, value_name = "DIR")]
    pub base_dir: Option<PathBuf>,
    /// JSON-lines files, or folders of them, to replay instead of the default corpus (every
    /// test case's events, and `*.jsonl` under `events/` and `tests/fixtures/`).
    #[arg(long, value_name = "FILE|DIR")]
    pub events: Vec<PathBuf>,
    /// How the report is written.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub format: DiffFormat,
    /// Examples shown per rule and playbook, for gains and for losses each.
    #[arg(long, default_value_t = DEFAULT_EXAMPLES, value_name = "N")]
    pub examples: usize,
    /// Exit 1 when anything changed (by default the exit is 0 either way).
    #[arg(long)]
    pub fail_on_change: bool,
}

pub fn run(at: &Place, args: &DiffArgs) -> Result<Status, CannotRun> {
    let head = Side {
        label: "working tree".into(),
        content: loaded(&at.dir, at.config.as_deref(), "the working tree", None)?,
        shown_as: None,
    };
    // Kept alive (the scratch directory) until the comparison is done.
    let mut _revision = None;
    let base = match (&args.base, &args.base_dir) {
        (Some(revision), _) => {
            let materialized = crate::impact::revision::materialize(&at.dir, revision)
                .map_err(|e| CannotRun(format!("cannot read the content at `{revision}`: {e}")))?;
            for path in &materialized.left_out {
                tracing::info!("{revision}:{path} is a link or a submodule; it is left out");
            }
            let label = format!("{revision} ({})", materialized.short());
            let shown = (materialized.dir().to_path_buf(), revision.clone());
            let side = Side {
                content: loaded(
                    materialized.dir(),
                    at.config.as_deref(),
                    &format!("the base `{revision}`"),
                    Some(&shown),
                )?,
                label,
                shown_as: Some(shown),
            };
            _revision = Some(materialized);
            side
        }
        (None, Some(dir)) => Side {
            label: dir.display().to_string(),
            content: loaded(
                dir,
                at.config.as_deref(),
                &format!("the base `{}`", dir.display()),
                None,
            )?,
            shown_as: None,
        },
        (None, None) => return Err(CannotRun("give --base REV or --base-dir DIR".into())),
    };

    let mut comparison = Comparison::new(&base, &head, args.examples)?;
    let bar = indicatif::ProgressBar::new_spinner();
    let mut progress = |events: u64| {
        bar.set_message(format!("{events} event(s) replayed through both sides"));
        bar.tick();
    };
    if args.events.is_empty() {
        for case in test_cases(&head, &base) {
            comparison.run_case(&case)?;
        }
    }
    let files = if args.events.is_empty() {
        default_files(&at.dir)
    } else {
        named_files(&args.events)?
    };
    let mut intake = Intake::new(None).with_time_policy(head.content.config.events.time_policy());
    for (path, shown) in &files {
        comparison.run_file(path, shown, &mut intake, &mut progress)?;
    }
    bar.finish_and_clear();
    comparison.count_rejected(&intake);
    let impact = comparison.finish();
    tracing::info!(
        "compared {} event(s): detections +{} -{}, planned actions +{} -{}",
        impact.corpus.events,
        impact.totals.detections.gained,
        impact.totals.detections.lost,
        impact.totals.actions.gained,
        impact.totals.actions.lost
    );
    let text = match args.format {
        DiffFormat::Text => report::text(&impact),
        DiffFormat::Markdown => report::markdown(&impact),
        DiffFormat::Json => format!("{}\n", serde_json::to_string_pretty(&impact)?),
    };
    print!("{text}");
    if impact.corpus.events == 0 {
        tracing::warn!(
            "no event was replayed: give recorded events with --events, or add test cases or files under events/"
        );
    }
    Ok(if args.fail_on_change && impact.changed() {
        Status::Findings
    } else {
        Status::Ok
    })
}

/// One side's content; invalid content stops the command, its problems printed under the
/// side's name.
fn loaded(
    dir: &Path,
    config: Option<&Path>,
    side: &str,
    shown_as: Option<&(PathBuf, String)>,
) -> Result<Arc<crate::content::Content>, CannotRun> {
    match load_content(dir, config)? {
        Ok(content) => Ok(Arc::new(content)),
        Err(problems) => {
            let problems = match shown_as {
                Some((root, name)) => relabel(problems, root, name),
                None => problems,
            };
            eprintln!("{}", problems.render());
            Err(CannotRun(format!(
                "the content of {side} does not validate ({} problem(s)); nothing was compared",
                problems.errors()
            )))
        }
    }
}

/// Diagnostics of content written to a scratch directory, naming `REV:path` instead.
fn relabel(problems: Diagnostics, root: &Path, name: &str) -> Diagnostics {
    let mut out = Diagnostics::default();
    let scratch = root.display().to_string();
    for mut problem in problems {
        if let Ok(rest) = problem.file.strip_prefix(root) {
            problem.file = PathBuf::from(format!("{name}:{}", rest.display()));
        }
        // Messages name paths too (found neither `<dir>/rules` nor ...).
        problem.message = problem.message.replace(&scratch, &format!("{name}:"));
        out.push(problem);
    }
    out
}

/// The files `--events` names: each file as given, each folder's `*.jsonl` (not followed
/// into links), sorted.
fn named_files(named: &[PathBuf]) -> Result<Vec<(PathBuf, String)>, CannotRun> {
    let mut files = Vec::new();
    for path in named {
        if path.is_dir() {
            let mut found: Vec<(PathBuf, String)> = std::fs::read_dir(path)
                .map_err(|e| CannotRun(format!("cannot list `{}`: {e}", path.display())))?
                .filter_map(Result::ok)
                .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
                .map(|entry| entry.path())
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "jsonl")
                        && !p.to_string_lossy().ends_with(".expected.jsonl")
                })
                .map(|p| {
                    let shown = p.display().to_string();
                    (p, shown)
                })
                .collect();
            found.sort();
            files.extend(found);
        } else if path.is_file() {
            files.push((path.clone(), path.display().to_string()));
        } else {
            return Err(CannotRun(format!(
                "`{}` is neither a file nor a folder of JSON-lines files",
                path.display()
            )));
        }
    }
    Ok(files)
}
