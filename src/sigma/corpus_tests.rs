//! The SigmaHQ corpus, when it is present: how much of it loads, by category and by reason.
//!
//! The corpus is not part of the project. The test reads it from `PALISADE_SIGMA_CORPUS` or
//! from `shared/data/sigma/rules` beside the checkout (or beside a folder above it), and passes
//! (saying so) when neither is there, so the suite never depends on it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{SigmaConfig, load};

fn corpus() -> Option<PathBuf> {
    let from_env = std::env::var_os("PALISADE_SIGMA_CORPUS").map(PathBuf::from);
    let beside = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/data/sigma/rules"))
        .collect::<Vec<_>>();
    from_env.into_iter().chain(beside).find(|p| p.is_dir())
}

/// Which of the measured families a file belongs to, by its place in SigmaHQ's tree.
fn family(path: &Path) -> Option<&'static str> {
    let text = path.to_string_lossy();
    [
        ("windows/process_creation/", "windows process_creation"),
        ("windows/network_connection/", "windows network_connection"),
        ("windows/dns_query/", "windows dns_query"),
        ("linux/process_creation/", "linux process_creation"),
    ]
    .into_iter()
    .find(|(part, _)| text.contains(part))
    .map(|(_, name)| name)
}

#[test]
fn sigmahq_corpus_loads_at_least_97_percent_of_the_runnable_families() {
    let Some(root) = corpus() else {
        eprintln!("SigmaHQ corpus not found (set PALISADE_SIGMA_CORPUS); skipping");
        return;
    };
    // Every status, so the rate is over the whole family, not only what the default config
    // would pick.
    let config = SigmaConfig {
        statuses: vec![
            super::Status::Stable,
            super::Status::Test,
            super::Status::Experimental,
        ],
        min_level: super::Level::Informational,
        ..SigmaConfig::default()
    };
    let started = Instant::now();
    let loaded = load(std::slice::from_ref(&root), &config);
    let elapsed = started.elapsed();
    eprintln!(
        "files {} rules {} filters {} correlations {} skipped {} refused {} in {:?}",
        loaded.files,
        loaded.rules.len(),
        loaded.filters.len(),
        loaded.correlations.len(),
        loaded.skipped.len(),
        loaded.refused.len(),
        elapsed
    );
    for (code, count) in loaded.refused_by_code() {
        eprintln!("refused {code}: {count}");
    }
    for problems in &loaded.refused {
        if let Some(first) = problems.iter().next() {
            eprintln!(
                "  {}:{}:{} {} {}",
                first.file.display(),
                first.line,
                first.column,
                first.code,
                first.message
            );
        }
    }
    let mut families: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    for rule in &loaded.rules {
        if let Some(f) = family(&rule.path) {
            families.entry(f).or_default().0 += 1;
        }
    }
    for problems in &loaded.refused {
        if let Some(f) = problems.iter().next().and_then(|d| family(&d.file)) {
            families.entry(f).or_default().1 += 1;
        }
    }
    for skip in &loaded.skipped {
        if let Some(f) = family(&skip.path) {
            eprintln!(
                "  skipped in a measured family: {} {}",
                skip.path.display(),
                skip.reason.key()
            );
            families.entry(f).or_default().1 += 1;
        }
    }
    let mut failed = Vec::new();
    for (name, (ok, not)) in &families {
        let rate = *ok as f64 / (*ok + *not).max(1) as f64;
        eprintln!("{name}: {ok} of {} load ({:.1}%)", ok + not, rate * 100.0);
        if rate < 0.97 {
            failed.push(name.to_string());
        }
    }
    assert_eq!(families.len(), 4, "every measured family is in the corpus");
    assert!(failed.is_empty(), "below 97%: {failed:?}");
}
