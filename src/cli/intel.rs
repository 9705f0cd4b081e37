//! `palisade intel import | lookup | stats`

use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::IntelMaxPrefix;
use crate::content::WARNINGLISTS_DIR;
use crate::intel::formats::{Format, ImportOptions, Imported, import};
use crate::intel::{IndicatorKind, IntelStore, Warninglists, load_matcher};
use crate::state::StateStore;

use super::{CannotRun, Place, Status};

/// The state file, warninglists and intel limits as an engine started with the same options
/// uses them. Only a broken config stops the command: intel can be managed before any rule
/// exists, or while one is broken.
fn context(at: &Place) -> Result<(std::path::PathBuf, Warninglists, IntelMaxPrefix), CannotRun> {
    let config = at.read_config()?;
    let lists = match at.content()? {
        Ok(content) => content.warninglists.clone(),
        Err(_) => crate::content::load_warninglists(
            &at.resolve(Path::new(WARNINGLISTS_DIR)),
            config.content.max_file_bytes,
        )
        .map_err(|problems| CannotRun(problems.render()))?,
    };
    Ok((
        at.resolve(&config.state.path),
        lists,
        config.intel.max_prefix,
    ))
}

fn runtime() -> Result<tokio::runtime::Runtime, CannotRun> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// What `intel import`'s options choose over the format's defaults.
pub struct ImportChoices {
    pub source: Option<String>,
    pub kind: Option<IndicatorKind>,
    pub confidence: Option<u8>,
    pub severity: Option<u8>,
    pub subdomains: Option<bool>,
}

pub fn import_file(
    at: &Place,
    file: &Path,
    format: Format,
    choices: ImportChoices,
) -> Result<Status, CannotRun> {
    let (state_path, _, max_prefix) = context(at)?;
    let options = ImportOptions {
        source: choices.source.unwrap_or_else(|| format.name().to_string()),
        kind: choices.kind,
        confidence: choices.confidence.map(|c| c.min(100)),
        severity: choices.severity.map(|s| s.min(100)),
        max_prefix,
        subdomains: choices.subdomains,
    };
    let started = Instant::now();
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner.set_message(format!("reading {}", file.display()));
    let imported = match import(file, format, &options) {
        Ok(imported) => imported,
        Err(err) => {
            spinner.finish_and_clear();
            println!("{err}");
            println!("nothing was imported");
            return Ok(Status::Findings);
        }
    };
    let total = imported.indicators.len() as u64;
    spinner.finish_and_clear();
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("storing");
    let now = jiff::Timestamp::now().as_millisecond();
    runtime()?.block_on(async {
        let state = StateStore::open(&state_path).await?;
        let store = IntelStore::new(&state);
        // One transaction for the whole file: a failure stores nothing.
        store.upsert(&imported.indicators, now).await?;
        bar.set_position(total);
        state.close().await;
        Ok::<(), crate::state::StateError>(())
    })?;
    bar.finish_and_clear();
    println!(
        "imported {} indicator(s) from {} as source `{}` in {:.2}s",
        imported.indicators.len(),
        file.display(),
        options.source,
        started.elapsed().as_secs_f64()
    );
    report_skipped(&imported);
    // A file that gave nothing but refusals is not a list of indicators: say so in the status.
    Ok(
        if imported.indicators.is_empty() && imported.skipped_total() > 0 {
            Status::Findings
        } else {
            Status::Ok
        },
    )
}

/// The skipped entries as a count per reason and the first few with their place: a file of
/// junk costs a few lines of output, not one per line of input.
fn report_skipped(imported: &Imported) {
    let total = imported.skipped_total();
    if total == 0 {
        return;
    }
    println!(
        "skipped or refused {total} entr{}:",
        if total == 1 { "y" } else { "ies" }
    );
    for (reason, count) in &imported.skipped {
        println!("  {count} {reason}");
    }
    let shown = imported.examples.len();
    if shown > 0 {
        println!(
            "{}:",
            if shown < total {
                format!("the first {shown}")
            } else {
                "each".to_string()
            }
        );
        for example in &imported.examples {
            println!("  {example}");
        }
    }
}

pub fn lookup(at: &Place, value: &str) -> Result<Status, CannotRun> {
    let (state_path, lists, max_prefix) = context(at)?;
    runtime()?
        .block_on(async {
            let state = StateStore::open(&state_path).await?;
            let store = IntelStore::new(&state);
            let matcher = load_matcher(&store, &lists, max_prefix).await?;
            let hits = matcher.lookup(value);
            if hits.is_empty() {
                println!("{value}: no indicator matches");
            }
            for hit in &hits {
                let warning = hit
                    .warning
                    .as_deref()
                    .map(|w| format!("  on warninglist `{w}`: never blocked"))
                    .unwrap_or_default();
                println!(
                    "{} matches {} `{}` from {}: score {:.0} (confidence {}, severity {}){}{}",
                    hit.value,
                    hit.kind.as_str(),
                    hit.indicator,
                    hit.source,
                    hit.score,
                    hit.confidence,
                    hit.severity,
                    hit.threat
                        .as_deref()
                        .map(|t| format!(", threat {t}"))
                        .unwrap_or_default(),
                    warning
                );
                for row in store
                    .rows(hit.kind, &hit.indicator)
                    .await?
                    .iter()
                    .filter(|r| r.source == hit.source)
                {
                    if !row.tags.is_empty() {
                        println!("    tags: {}", row.tags.join(", "));
                    }
                    if let Some(reference) = &row.reference {
                        println!("    reference: {reference}");
                    }
                }
            }
            state.close().await;
            Ok::<Status, crate::state::StateError>(if hits.is_empty() {
                Status::Findings
            } else {
                Status::Ok
            })
        })
        .map_err(|e| CannotRun(e.to_string()))
}

/// `palisade intel scan`: the content's YARA rules over `paths`, the matches printed and
/// (unless `store` is off) their hashes stored in one transaction.
pub fn scan(at: &Place, paths: &[std::path::PathBuf], store: bool) -> Result<Status, CannotRun> {
    use crate::intel::yara;
    if !yara::SUPPORTED {
        return Err(CannotRun(yara::UNSUPPORTED.to_string()));
    }
    let content = at
        .content()?
        .map_err(|problems| CannotRun(problems.render()))?;
    let limits = content.config.actions.file_scan.limits();
    let state_path = content.resolve(&content.config.state.path);
    // A spinner naming the file being read; indicatif draws nothing when stderr is not a
    // terminal, so piped output stays clean.
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(120));
    let mut files = 0u64;
    let report = yara::scan_paths(&content.yara, paths, limits, &mut |path| {
        files += 1;
        spinner.set_message(format!("{files} file(s): {}", path.display()));
    });
    spinner.finish_and_clear();
    let report = report.map_err(|err| CannotRun(err.to_string()))?;
    for found in &report.matches {
        let rules: Vec<&str> = found.rules.iter().map(|m| m.rule.as_str()).collect();
        println!(
            "{}: {} (sha256 {})",
            crate::text::inert(&found.path.display().to_string()),
            rules.join(", "),
            found.sha256
        );
        for rule in &found.rules {
            for (key, value) in &rule.meta {
                println!("    {}.{key}: {}", rule.rule, crate::text::inert(value));
            }
        }
    }
    for skipped in &report.skipped {
        println!(
            "skipped {}: {}",
            crate::text::inert(&skipped.path.display().to_string()),
            skipped.reason
        );
    }
    let indicators: Vec<crate::intel::Indicator> = report
        .matches
        .iter()
        .flat_map(yara::FileMatch::indicators)
        .collect();
    if store && !indicators.is_empty() {
        let now = jiff::Timestamp::now().as_millisecond();
        runtime()?.block_on(async {
            let state = StateStore::open(&state_path).await?;
            IntelStore::new(&state).upsert(&indicators, now).await?;
            state.close().await;
            Ok::<(), crate::state::StateError>(())
        })?;
    }
    println!(
        "scanned {} file(s) with {} rule(s): {} matched, {} skipped{}",
        report.scanned,
        content.yara.rule_count(),
        report.matches.len(),
        report.skipped.len(),
        if store && !indicators.is_empty() {
            format!(
                "; stored {} indicator(s) as source `yara`",
                indicators.len()
            )
        } else {
            String::new()
        }
    );
    Ok(if report.matches.is_empty() {
        Status::Ok
    } else {
        Status::Findings
    })
}

pub fn stats(at: &Place) -> Result<Status, CannotRun> {
    let (state_path, lists, _) = context(at)?;
    runtime()?.block_on(async {
        let state = StateStore::open(&state_path).await?;
        let stats = IntelStore::new(&state)
            .stats(jiff::Timestamp::now().as_millisecond())
            .await?;
        println!(
            "{} indicator(s): {} live, {} expired, {} revoked; {} warninglist(s)",
            stats.total,
            stats.live,
            stats.expired,
            stats.revoked,
            lists.len()
        );
        for (kind, count) in &stats.by_kind {
            println!("  {kind:<8} {count}");
        }
        for (source, live, updated) in &stats.by_source {
            let when = jiff::Timestamp::from_millisecond(*updated)
                .map(|t| t.to_string())
                .unwrap_or_default();
            println!("  source {source}: {live} live, updated {when}");
        }
        let time = |ms: Option<i64>| {
            ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                .map_or("never".to_string(), |t| t.to_string())
        };
        for (name, feed) in IntelStore::new(&state).feeds().await? {
            let cursor = feed
                .cursor
                .map(|c| format!(", cursor {c}"))
                .unwrap_or_default();
            // A failed pull is the feed's health until the next success: its indicators are
            // the last good pull's, and the reason says what to fix.
            match feed.last_error {
                Some(error) => println!(
                    "  feed {name}: FAILED at {}: {error}; last good pull {}{cursor}",
                    time(feed.last_attempt_ms),
                    time(feed.last_success_ms)
                ),
                None => println!(
                    "  feed {name}: ok, last pulled {}{cursor}",
                    time(feed.last_success_ms)
                ),
            }
        }
        state.close().await;
        Ok::<(), crate::state::StateError>(())
    })?;
    Ok(Status::Ok)
}

pub fn pull(at: &Place, only: Option<&str>) -> Result<Status, CannotRun> {
    let content = match at.content()? {
        Ok(content) => content,
        Err(problems) => {
            eprintln!("{}", problems.render());
            return Err(CannotRun(
                "the content does not validate, so its feeds are unknown".into(),
            ));
        }
    };
    let feeds: Vec<_> = content
        .config
        .intel
        .feeds
        .iter()
        .filter(|f| only.is_none_or(|name| f.name == name))
        .cloned()
        .collect();
    if feeds.is_empty() {
        return Err(CannotRun(match only {
            Some(name) => format!("no feed named `{name}` in the config's `intel.feeds`"),
            None => {
                "no feeds configured: add them under `intel.feeds` in palisade.yaml (docs/intel.md)"
                    .into()
            }
        }));
    }
    let state_path = content.resolve(&content.config.state.path);
    runtime()?.block_on(async {
        let state = StateStore::open(&state_path).await?;
        let store = IntelStore::new(&state);
        let puller = crate::intel::pull::Puller::new(&content.config.intel)?;
        let mut failed = Vec::new();
        for feed in &feeds {
            match puller.pull_with_retry(feed, &store, 3).await {
                Ok(report) if report.not_modified => println!("{}: not modified", feed.name),
                Ok(report) => println!(
                    "{}: {} indicator(s) stored, {} skipped, {} expired, {} page(s)",
                    feed.name, report.stored, report.skipped, report.expired, report.pages
                ),
                Err(err) => {
                    println!("{}: failed: {err}", feed.name);
                    failed.push(feed.name.clone());
                }
            }
        }
        state.close().await;
        if failed.is_empty() {
            Ok(Status::Ok)
        } else {
            Err(CannotRun(format!("could not pull {}", failed.join(", "))))
        }
    })
}
