//! Runs Sigma rules over a JSON-lines file of events and reports what matched and how fast; and
//! writes the Sysmon-shaped event mix the Sigma bench uses, so another engine can read the same
//! events. `scripts/sigma-vs-rsigma` drives it.
//!
//! ```text
//! sigma_match generate COUNT SEED SYSMON.jsonl FLAT.jsonl
//! sigma_match run RULES_DIR FLAT.jsonl MATCHES.tsv LOADED.txt
//! ```
//!
//! `run` writes one line per event (`index<TAB>rule ids, sorted, comma-separated`) and the paths
//! of the rule files that loaded, and prints the figures.

#[path = "../benches/sigma/events.rs"]
mod events;

use std::collections::BTreeSet;
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use palisade::event::{EventKind, normalize};
use palisade::sigma::{CompiledSet, Level, SigmaConfig, Status, eval, load};

/// Passes over the normalized events when timing the matcher alone; the best one is reported.
const MATCHING_PASSES: usize = 5;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["generate", count, seed, sysmon, flat] => generate(count, seed, sysmon, flat),
        ["run", rules, events, matches, loaded] => run(rules, events, matches, loaded),
        _ => bail!(
            "usage: sigma_match generate COUNT SEED SYSMON.jsonl FLAT.jsonl\n       \
             sigma_match run RULES_DIR FLAT.jsonl MATCHES.tsv LOADED.txt"
        ),
    }
}

fn generate(count: &str, seed: &str, sysmon: &str, flat: &str) -> anyhow::Result<()> {
    let count: usize = count.parse().context("COUNT is a number")?;
    let seed: u64 = seed.parse().context("SEED is a number")?;
    let mut sysmon_out = BufWriter::new(std::fs::File::create(sysmon)?);
    let mut flat_out = BufWriter::new(std::fs::File::create(flat)?);
    for (i, start) in events::generate(count, seed, 20).iter().enumerate() {
        let mut record = start.sysmon();
        // The event's position, so matches can be paired with it across engines.
        if let Some(map) = record.as_object_mut() {
            map.insert("EventRecordID".to_owned(), i.into());
        }
        writeln!(sysmon_out, "{record}")?;
        writeln!(flat_out, "{}", start.flat(i))?;
    }
    sysmon_out.flush()?;
    flat_out.flush()?;
    Ok(())
}

fn run(rules_dir: &str, events: &str, matches: &str, loaded_out: &str) -> anyhow::Result<()> {
    let config = SigmaConfig {
        statuses: vec![Status::Stable, Status::Test, Status::Experimental],
        min_level: Level::Informational,
        ..SigmaConfig::default()
    };
    let started = Instant::now();
    let loaded = load(&[PathBuf::from(rules_dir)], &config);
    let rules: Vec<Arc<_>> = loaded
        .rules
        .into_iter()
        .filter(|rule| rule.kinds.contains(&EventKind::ProcessCreate))
        .map(Arc::new)
        .collect();
    let load_time = started.elapsed();
    let started = Instant::now();
    let set = CompiledSet::new(&rules)?;
    let compile_time = started.elapsed();
    let files: BTreeSet<_> = rules.iter().map(|r| r.path.display().to_string()).collect();
    std::fs::write(
        loaded_out,
        files.iter().map(|f| format!("{f}\n")).collect::<String>(),
    )?;

    let lines: Vec<String> = std::io::BufReader::new(std::fs::File::open(events)?)
        .lines()
        .collect::<Result<_, _>>()?;

    // End to end: parse and normalize each line, then match.
    let mut scratch = set.scratch();
    let mut out = Vec::new();
    let started = Instant::now();
    let cpu_before = thread_cpu_ns();
    let mut results = Vec::with_capacity(lines.len());
    for line in &lines {
        let event = normalize(line.as_bytes())?;
        set.matches(&event, &mut scratch, &mut out);
        results.push(out.clone());
    }
    let end_to_end = started.elapsed();
    let end_to_end_cpu = thread_cpu_ns()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before) as f64 / 1e9);

    // Matching only, on events already normalized: the best of a few passes, so another
    // process's burst on a shared machine does not become the figure.
    let normalized = lines
        .iter()
        .map(|line| normalize(line.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut matching = std::time::Duration::MAX;
    let mut matching_cpu: Option<f64> = None;
    let mut hits = 0;
    for _ in 0..MATCHING_PASSES {
        let started = Instant::now();
        let cpu_before = thread_cpu_ns();
        hits = 0;
        for event in &normalized {
            set.matches(event, &mut scratch, &mut out);
            hits += out.len();
        }
        matching = matching.min(started.elapsed());
        let cpu = thread_cpu_ns()
            .zip(cpu_before)
            .map(|(after, before)| after.saturating_sub(before) as f64 / 1e9);
        matching_cpu = match (matching_cpu, cpu) {
            (Some(best), Some(now)) => Some(best.min(now)),
            (best, now) => now.or(best),
        };
    }

    // The evaluator's answer, to be sure the figure is for the right answer.
    let disagreements = normalized
        .iter()
        .zip(&results)
        .filter(|(event, got)| {
            let want: Vec<usize> = (0..rules.len())
                .filter(|&i| rules.get(i).is_some_and(|r| eval::matches(r, event)))
                .collect();
            &want != *got
        })
        .count();

    let mut writer = BufWriter::new(std::fs::File::create(matches)?);
    for (i, found) in results.iter().enumerate() {
        let mut ids: Vec<&str> = found
            .iter()
            .filter_map(|&r| rules.get(r).map(|rule| &*rule.id))
            .collect();
        ids.sort_unstable();
        writeln!(writer, "{i}\t{}", ids.join(","))?;
    }
    writer.flush()?;

    let n = lines.len() as f64;
    println!(
        "palisade: {} rules ({} refused, {} skipped) loaded in {load_time:.2?}, compiled in {compile_time:.2?}, ~{:.1} MiB",
        rules.len(),
        loaded.refused.len(),
        loaded.skipped.len(),
        set.heap_bytes() as f64 / (1024.0 * 1024.0)
    );
    println!(
        "palisade: {} events, {hits} matches, {disagreements} disagreements with the direct evaluator",
        lines.len(),
    );
    // Wall-clock rates suffer when other processes share the core; CPU time does not.
    println!(
        "palisade: parse+normalize+match {:.0} events/s wall, {:.0} events/s cpu",
        n / end_to_end.as_secs_f64(),
        end_to_end_cpu.map_or(0.0, |s| n / s)
    );
    println!(
        "palisade: match only (best of {MATCHING_PASSES} passes) {:.0} events/s wall, {:.0} events/s cpu",
        n / matching.as_secs_f64(),
        matching_cpu.map_or(0.0, |s| n / s)
    );
    Ok(())
}

/// CPU time this thread has run, in nanoseconds (Linux), to state one core's rate on a busy host.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
