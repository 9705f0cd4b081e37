//! Sigma matching throughput: every loadable SigmaHQ Windows `process_creation` rule, compiled
//! into one set, over a Sysmon-shaped mix of process creations, on one core.
//!
//! The corpus is not part of the project: the bench reads it from `PALISADE_SIGMA_CORPUS` (a
//! SigmaHQ `rules/` folder) or from `../shared/data/sigma/rules`, and says so and stops when
//! neither is there.
//!
//! `cargo bench --bench sigma`

#![expect(
    clippy::expect_used,
    reason = "a benchmark stops at once on a broken setup"
)]

#[path = "sigma/events.rs"]
#[allow(
    dead_code,
    reason = "the Sysmon writer is for the side-by-side example"
)]
mod events;

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palisade::event::{Event, EventKind, normalize};
use palisade::sigma::{CompiledSet, Level, SigmaConfig, SigmaRule, Status, eval, load};

const EVENTS: usize = 20_000;
/// Attack-like events per thousand.
const SUSPICIOUS_PER_MILLE: u32 = 20;

/// `PALISADE_SIGMA_CORPUS`, else `shared/data/sigma/rules` beside the checkout or beside a
/// folder above it.
fn corpus() -> Option<PathBuf> {
    let beside = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/data/sigma/rules"))
        .collect::<Vec<_>>();
    std::env::var_os("PALISADE_SIGMA_CORPUS")
        .map(PathBuf::from)
        .into_iter()
        .chain(beside)
        .find(|p| p.is_dir())
}

/// Every process-creation rule of the corpus that loads, whatever its status and level.
fn process_rules(root: PathBuf) -> Vec<Arc<SigmaRule>> {
    let config = SigmaConfig {
        statuses: vec![Status::Stable, Status::Test, Status::Experimental],
        min_level: Level::Informational,
        ..SigmaConfig::default()
    };
    let folder = root.join("windows/process_creation");
    let loaded = load(&[folder], &config);
    eprintln!(
        "sigma corpus: {} files, {} rules loaded, {} skipped, {} refused",
        loaded.files,
        loaded.rules.len(),
        loaded.skipped.len(),
        loaded.refused.len()
    );
    loaded
        .rules
        .into_iter()
        .filter(|rule| rule.kinds.contains(&EventKind::ProcessCreate))
        .map(Arc::new)
        .collect()
}

fn event_mix() -> Vec<Event> {
    events::generate(EVENTS, 7, SUSPICIOUS_PER_MILLE)
        .iter()
        .enumerate()
        .map(|(i, start)| {
            normalize(start.flat(i).to_string().as_bytes()).expect("generated events normalize")
        })
        .collect()
}

fn sigma(c: &mut Criterion) {
    let Some(root) = corpus() else {
        eprintln!(
            "sigma bench: no SigmaHQ corpus (set PALISADE_SIGMA_CORPUS to a SigmaHQ rules/ folder); skipped"
        );
        return;
    };
    let rules = process_rules(root);
    let started = Instant::now();
    let set = CompiledSet::new(&rules).expect("the corpus compiles");
    let compile = started.elapsed();
    let events = event_mix();

    // The compiled set must say what the evaluator says on every event; a fast wrong answer is
    // no figure.
    let mut scratch = set.scratch();
    let mut out = Vec::new();
    let mut matched = 0;
    for event in &events {
        set.matches(event, &mut scratch, &mut out);
        let expected: Vec<usize> = (0..rules.len())
            .filter(|&i| eval::matches(&rules[i], event))
            .collect();
        assert_eq!(
            out, expected,
            "compiled set and evaluator disagree on {event:?}"
        );
        matched += usize::from(!out.is_empty());
    }
    let stats = set.stats();
    eprintln!(
        "compiled {} rules in {compile:?}: ~{:.1} MiB heap; {} literal, {} gated, {} lazy, {} deferred atoms; \
         {} automata over {} needles; {} rules wait for a hit, {} run on every event; \
         {matched} of {} events match a rule",
        rules.len(),
        set.heap_bytes() as f64 / (1024.0 * 1024.0),
        stats.literal_atoms,
        stats.gated_atoms,
        stats.lazy_atoms,
        stats.deferred_atoms,
        stats.automata,
        stats.needles,
        stats.gated_rules,
        stats.always_checked,
        events.len()
    );

    let mut group = c.benchmark_group("sigma");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(20);
    group.bench_function("compiled_process_creation", |b| {
        b.iter(|| {
            let mut hits = 0;
            for event in &events {
                set.matches(black_box(event), &mut scratch, &mut out);
                hits += out.len();
            }
            black_box(hits)
        })
    });
    // The direct evaluator over the same rules and events: what compiling buys.
    let sample = &events[..events.len() / 20];
    group.throughput(Throughput::Elements(sample.len() as u64));
    group.sample_size(10);
    group.bench_function("direct_evaluator_process_creation", |b| {
        b.iter(|| {
            let mut hits = 0;
            for event in sample {
                hits += rules
                    .iter()
                    .filter(|r| eval::matches(r, black_box(event)))
                    .count();
            }
            black_box(hits)
        })
    });
    group.finish();
}

criterion_group!(benches, sigma);
criterion_main!(benches);
