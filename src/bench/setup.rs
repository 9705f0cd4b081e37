//! The bench's copy of the content: the content directory's own rules and playbooks plus the
//! generated ones, its config pointed at the bench's Redis and scratch files, and a state
//! database holding the generated indicators that every run starts from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Config, SourceConfig, StreamSourceConfig};
use crate::content::Content;

use super::BenchOptions;

/// Where the bench's engine reads events and writes alerts.
pub(super) const EVENTS_STREAM: &str = "palisade:bench:events";
pub(super) const EVENTS_GROUP: &str = "palisade";
pub(super) const ALERTS_STREAM: &str = "palisade:bench:alerts";

/// The content every run starts from.
pub struct Prepared {
    pub content: Arc<Content>,
    /// A state database holding the generated indicators (absent without `--indicators`):
    /// each run gets a copy, so no run sees another's tracker records or detections.
    pub intel_state: Option<PathBuf>,
    /// Live indicators in that database.
    pub indicators: usize,
    pub generated_rules: usize,
}

/// Copies the content's rules, playbooks and warninglists into `work/content`, adds
/// `options.rules` generated rules, writes the bench's config there, and loads it as
/// `palisade run` would; then imports `options.indicators` generated indicators into a state
/// database under `work`.
pub async fn prepare(
    original: &Content,
    options: &BenchOptions,
    work: &Path,
) -> Result<Prepared, String> {
    let dir = work.join("content");
    let config = bench_config(original, options, work)?;
    copy_dir(
        &original.resolve(&original.config.content.rules),
        &dir.join("rules"),
    )?;
    copy_dir(
        &original.resolve(&original.config.content.playbooks),
        &dir.join("playbooks"),
    )?;
    copy_dir(
        &original.resolve(Path::new(crate::content::WARNINGLISTS_DIR)),
        &dir.join(crate::content::WARNINGLISTS_DIR),
    )?;
    // The shipped example model, which the runs score with when the config names none.
    copy_dir(&original.resolve(Path::new("models")), &dir.join("models"))?;
    let generated = super::generate::rule_files(options.rules);
    for rule in &generated {
        let path = dir.join("rules").join(&rule.name);
        std::fs::write(&path, &rule.text)
            .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    }
    let config_path = dir.join("palisade.yaml");
    // JSON is YAML: the config as the engine will read it, every default spelled out.
    let text = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
    std::fs::write(&config_path, text)
        .map_err(|e| format!("cannot write `{}`: {e}", config_path.display()))?;
    let content = match crate::content::load(&dir, Some(&config_path)) {
        Ok(content) => content,
        Err(problems) => {
            return Err(format!(
                "the bench's content does not validate ({} problem(s)):\n{}",
                problems.len(),
                problems.render()
            ));
        }
    };
    let (intel_state, indicators) = if options.indicators > 0 {
        let path = work.join("intel.db");
        let live = import_indicators(&path, options.indicators).await?;
        (Some(path), live)
    } else {
        (None, 0)
    };
    Ok(Prepared {
        content: Arc::new(content),
        intel_state,
        indicators,
        generated_rules: generated.len(),
    })
}

/// The content's config as `palisade run` would use it, with what the bench must own instead:
/// Redis, the source and alert streams, scratch state, dead-letter and audit files, no HTTP
/// port and no feed pulls (the indicators are the generated ones). Paths that stay the
/// deployment's (model, Sigma folders) are made absolute, since the config now lives elsewhere.
fn bench_config(original: &Content, options: &BenchOptions, work: &Path) -> Result<Config, String> {
    let mut config = original.config.clone();
    let absolute = |path: &Path| -> Result<PathBuf, String> {
        let resolved = original.resolve(path);
        if resolved.is_absolute() {
            return Ok(resolved);
        }
        std::env::current_dir()
            .map(|cwd| cwd.join(resolved))
            .map_err(|e| format!("cannot read the working directory: {e}"))
    };
    config.content.rules = PathBuf::from("rules");
    config.content.playbooks = PathBuf::from("playbooks");
    config.sigma.folders = config
        .sigma
        .folders
        .iter()
        .map(|folder| absolute(folder))
        .collect::<Result<_, _>>()?;
    if let Some(model) = &config.anomaly.model {
        config.anomaly.model = Some(absolute(model)?);
    }
    config.anomaly.learning.model_file = work.join("learned.model");
    config.redis.url = options.redis_url.clone();
    config.source = SourceConfig::RedisStream(StreamSourceConfig {
        stream: EVENTS_STREAM.into(),
        group: EVENTS_GROUP.into(),
        consumer: Some("bench".into()),
        block_ms: 100,
        ..Default::default()
    });
    config.alerts.enabled = Some(true);
    config.alerts.stream = Some(ALERTS_STREAM.into());
    config.http.enabled = false;
    config.intel.feeds.clear();
    config.audit.key = None;
    config.audit.anchor = None;
    config.state.path = work.join("state.db");
    config.dead_letter.path = work.join("dead-letter.jsonl");
    Ok(config)
}

/// `content` for one run: its own state database (a copy of the indicators' one) and
/// dead-letter file, named `name` under `work`.
pub(super) fn for_run(
    prepared: &Prepared,
    work: &Path,
    name: &str,
) -> Result<Arc<Content>, String> {
    let mut content = (*prepared.content).clone();
    let state = work.join(format!("{name}.db"));
    if let Some(template) = &prepared.intel_state {
        std::fs::copy(template, &state)
            .map_err(|e| format!("cannot copy `{}`: {e}", template.display()))?;
    }
    content.config.state.path = state;
    content.config.dead_letter.path = work.join(format!("{name}-dead-letter.jsonl"));
    Ok(Arc::new(content))
}

/// Imports `count` generated indicators in one transaction of multi-row inserts, and returns
/// how many are live.
async fn import_indicators(path: &Path, count: usize) -> Result<usize, String> {
    let state = crate::state::StateStore::open(path)
        .await
        .map_err(|e| e.to_string())?;
    let store = crate::intel::IntelStore::new(&state);
    let now = crate::event::now_ms();
    let mut indicators = super::generate::indicator_mix(count);
    // In primary-key order (SQLite compares text bytewise, as `str` does): the table is stored
    // in that order, so each insert lands beside the last instead of on a random page.
    indicators.sort_unstable_by(|a, b| {
        (a.kind.as_str(), &a.value, &a.source).cmp(&(b.kind.as_str(), &b.value, &b.source))
    });
    store
        .upsert(&indicators, now)
        .await
        .map_err(|e| e.to_string())?;
    let stats = store.stats(now).await.map_err(|e| e.to_string())?;
    // Closing checkpoints the log into the file, which the runs copy.
    state.close().await;
    Ok(usize::try_from(stats.live).unwrap_or_default())
}

/// Copies `from` into `to`, folders included; a missing `from` copies nothing.
fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    if !from.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create `{}`: {e}", to.display()))?;
    let entries =
        std::fs::read_dir(from).map_err(|e| format!("cannot list `{}`: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list `{}`: {e}", from.display()))?;
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target)?;
        } else {
            std::fs::copy(&path, &target)
                .map_err(|e| format!("cannot copy `{}`: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// What `palisade run` has by default once it has learned: a learner that keeps sampling (for
/// the next retrain) beside the model in use. Its reservoirs have seen a week of the bench's
/// day (seven passes), as an engine would after `min_days`, so the run measures the steady
/// state rather than the first fill of an empty sample.
pub(super) fn learned(
    config: &crate::config::AnomalyConfig,
    lines: &[String],
) -> crate::anomaly::learning::Learner {
    use crate::anomaly::learning::{Learner, Sampler, Settings};
    let settings = Settings::from_config(
        config,
        "bench".into(),
        std::path::PathBuf::from("bench.model"),
    );
    let mut sampler = Sampler::new(&settings);
    let events: Vec<crate::event::Event> = lines
        .iter()
        .filter_map(|line| crate::event::normalize(line.as_bytes()).ok())
        .collect();
    let mut rows = Vec::new();
    for _ in 0..7 {
        for event in &events {
            sampler.observe(event, &mut rows);
            rows.clear();
        }
    }
    let _ = sampler.take_state();
    Learner::new(settings, sampler)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(rules: usize, indicators: usize) -> BenchOptions {
        BenchOptions {
            events: 0,
            malicious_every: 100,
            // Nothing connects while the content is prepared.
            redis_url: "redis://127.0.0.1:1/".into(),
            rules,
            indicators,
            repeat: 1,
            webhook: None,
        }
    }

    fn shipped() -> Content {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        crate::content::load(dir, None).expect("the shipped content validates")
    }

    /// `--rules N`: every generated rule passes the same validation as the content's own (the
    /// copy is loaded with `content::load`, which refuses content with any problem), and all
    /// N are loaded beside the content's rules, half Rhai, half Sigma.
    #[tokio::test]
    async fn the_bench_rules_validate_and_are_added_to_the_contents_own() {
        let original = shipped();
        let work = tempfile::tempdir().unwrap();
        let prepared = prepare(&original, &options(40, 0), work.path())
            .await
            .unwrap();
        assert_eq!(prepared.generated_rules, 40);
        assert_eq!(prepared.content.rules.len(), original.rules.len() + 20);
        assert_eq!(
            prepared.content.sigma.rules.len(),
            original.sigma.rules.len() + 20
        );
        assert_eq!(prepared.content.playbooks.len(), original.playbooks.len());
        let generated = prepared
            .content
            .rules
            .iter()
            .filter(|rule| rule.id.starts_with("bench-generated-"))
            .count();
        assert_eq!(generated, 20);
        // The engine's config is the bench's, not the deployment's.
        assert_eq!(prepared.content.config.redis.url, "redis://127.0.0.1:1/");
        assert!(!prepared.content.config.http.enabled);
        assert!(prepared.intel_state.is_none());
    }

    /// `--indicators N`: N indicators are in the state database each run copies, and the
    /// engine the composition root builds for a run loads all N into its matcher.
    #[tokio::test]
    async fn the_bench_indicators_load_n_into_the_engines_matcher() {
        let original = shipped();
        let work = tempfile::tempdir().unwrap();
        let prepared = prepare(&original, &options(0, 5_000), work.path())
            .await
            .unwrap();
        assert_eq!(prepared.indicators, 5_000);
        let run = for_run(&prepared, work.path(), "run").unwrap();
        let intel = run.intel().await.unwrap();
        assert_eq!(intel.current().len(), 5_000);
        // A second run starts from the same indicators, not from the first run's database.
        let again = for_run(&prepared, work.path(), "again").unwrap();
        assert_ne!(run.config.state.path, again.config.state.path);
        let intel = again.intel().await.unwrap();
        assert_eq!(intel.current().len(), 5_000);
    }
}
