//! Hot reload: rules, playbooks, the config and warninglists are watched; a change (or SIGHUP)
//! is debounced, the whole content is loaded and validated off to the side, a new pipeline is
//! built from it, and the engine swaps it in between two batches, so every event sees one
//! consistent set. A change that does not validate keeps the running set: every problem is
//! logged as `palisade validate` shows it, counted, kept for `/healthz` and audited.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;

use crate::audit::{AuditEntry, AuditLog};
use crate::content::Content;
use crate::intel::IntelHandle;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, Stages};

use super::Shutdown;

/// Quiet time after the last change before reloading: an editor's save is several events.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// What a reload needs besides the files.
pub struct ReloadSettings {
    pub dir: PathBuf,
    pub config_file: Option<PathBuf>,
    pub current: Arc<Content>,
    pub intel: IntelHandle,
    pub stages: Stages,
    /// Planning's dry-run, fixed at start: `actions` changes take a restart.
    pub dry_run: bool,
    pub audit: Option<Arc<AuditLog>>,
    pub actor: String,
    pub metrics: Arc<Metrics>,
}

/// The places whose changes matter, resolved once: notify reports absolute paths, and the
/// content folder also holds the state database, whose every write is a change too.
struct Watched {
    rules: PathBuf,
    playbooks: PathBuf,
    warninglists: PathBuf,
    /// The config may not exist yet: its folder is watched and only its name counts.
    config_folder: PathBuf,
    config_name: Option<std::ffi::OsString>,
}

impl Watched {
    fn new(content: &Content, config_file: Option<&Path>) -> Watched {
        let absolute = |path: PathBuf| std::fs::canonicalize(&path).unwrap_or(path);
        let config = config_file
            .map(Path::to_path_buf)
            .unwrap_or_else(|| content.resolve(Path::new(crate::config::CONFIG_FILE)));
        let folder = config
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Watched {
            rules: absolute(content.resolve(&content.config.content.rules)),
            playbooks: absolute(content.resolve(&content.config.content.playbooks)),
            warninglists: absolute(content.resolve(Path::new(crate::content::WARNINGLISTS_DIR))),
            config_folder: absolute(folder),
            config_name: config.file_name().map(ToOwned::to_owned),
        }
    }

    fn targets(&self) -> [(&Path, notify::RecursiveMode); 4] {
        use notify::RecursiveMode::{NonRecursive, Recursive};
        [
            (&self.rules, Recursive),
            (&self.playbooks, Recursive),
            (&self.warninglists, Recursive),
            (&self.config_folder, NonRecursive),
        ]
    }

    fn is_warninglist(&self, path: &Path) -> bool {
        path.starts_with(&self.warninglists)
    }

    fn relevant(&self, path: &Path) -> bool {
        let is_config = path.parent() == Some(self.config_folder.as_path())
            && path.file_name() == self.config_name.as_deref();
        is_config
            || path.starts_with(&self.rules)
            || path.starts_with(&self.playbooks)
            || self.is_warninglist(path)
    }
}

/// What changed between two content sets, for the log and the audit trail.
fn summary(old: &Content, new: &Content) -> (String, serde_json::Value) {
    let mut changes = serde_json::Map::new();
    let mut parts = Vec::new();
    let mut compare = |what: &str, old: Vec<(String, String)>, new: Vec<(String, String)>| {
        let added: Vec<&String> = new
            .iter()
            .filter(|(id, _)| !old.iter().any(|(o, _)| o == id))
            .map(|(id, _)| id)
            .collect();
        let removed: Vec<&String> = old
            .iter()
            .filter(|(id, _)| !new.iter().any(|(n, _)| n == id))
            .map(|(id, _)| id)
            .collect();
        let changed: Vec<&String> = new
            .iter()
            .filter(|(id, text)| old.iter().any(|(o, t)| o == id && t != text))
            .map(|(id, _)| id)
            .collect();
        for (kind, ids) in [
            ("added", &added),
            ("removed", &removed),
            ("changed", &changed),
        ] {
            if !ids.is_empty() {
                parts.push(format!(
                    "{what} {kind}: {}",
                    ids.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        changes.insert(
            what.to_string(),
            serde_json::json!({"added": added, "removed": removed, "changed": changed}),
        );
    };
    let rules = |c: &Content| {
        c.rules
            .iter()
            .map(|r| (r.id.to_string(), r.source.to_string()))
            .collect()
    };
    let playbooks = |c: &Content| {
        c.playbooks
            .iter()
            .map(|p| (p.id.to_string(), format!("{p:?}")))
            .collect()
    };
    compare("rules", rules(old), rules(new));
    compare("playbooks", playbooks(old), playbooks(new));
    if old.config != new.config {
        parts.push("config changed".into());
    }
    if parts.is_empty() {
        parts.push("no change in rules or playbooks".into());
    }
    (parts.join("; "), serde_json::Value::Object(changes))
}

/// Config sections the running engine cannot change; a changed one is applied at restart.
fn needs_restart(old: &crate::config::Config, new: &crate::config::Config) -> Vec<&'static str> {
    let mut sections = Vec::new();
    if old.source != new.source {
        sections.push("source");
    }
    if old.redis != new.redis {
        sections.push("redis");
    }
    if old.state != new.state {
        sections.push("state");
    }
    if old.actions != new.actions {
        sections.push("actions");
    }
    if old.alerts != new.alerts {
        sections.push("alerts");
    }
    if old.http != new.http {
        sections.push("http");
    }
    if old.anomaly != new.anomaly || old.tracker != new.tracker {
        sections.push("anomaly/tracker");
    }
    sections
}

async fn audit(
    settings: &ReloadSettings,
    status: &str,
    reason: String,
    details: serde_json::Value,
) {
    let Some(audit) = &settings.audit else { return };
    let entry = AuditEntry {
        kind: "reload".into(),
        actor: settings.actor.clone(),
        status: Some(status.into()),
        reason: Some(reason),
        details,
        ..AuditEntry::default()
    };
    if let Err(err) = audit.append(&[entry]).await {
        tracing::error!("cannot audit the reload: {err}");
    }
}

/// Rebuilds the intel matcher against the new warninglists and swaps it in (the pipelines share
/// its handle). Without a state database there are no indicators to mark.
async fn rematch(settings: &ReloadSettings, content: &Content) {
    let path = content.resolve(&content.config.state.path);
    if !path.exists() {
        return;
    }
    let rebuilt = async {
        let state = crate::state::StateStore::open(&path)
            .await
            .map_err(|e| e.to_string())?;
        let matcher = crate::intel::load_matcher(
            &crate::intel::IntelStore::new(&state),
            &content.warninglists,
        )
        .await
        .map_err(|e| e.to_string());
        state.close().await;
        matcher
    };
    match rebuilt.await {
        Ok(matcher) => {
            let indicators = matcher.len();
            settings.intel.swap(matcher);
            tracing::info!(
                indicators,
                "indicators marked against the changed warninglists"
            );
        }
        Err(err) => tracing::error!("cannot apply the changed warninglists: {err}"),
    }
}

/// Loads, validates and builds the content now on disk; hands a good set to the engine.
async fn reload(
    settings: &mut ReloadSettings,
    engine: &std::sync::mpsc::Sender<Pipeline>,
    warninglists: bool,
) {
    let loaded = crate::content::load(&settings.dir, settings.config_file.as_deref());
    let content = match loaded {
        Ok(content) => Arc::new(content),
        Err(problems) => {
            let problems = problems.sorted();
            for problem in problems.iter() {
                tracing::error!("{}", problem.render());
            }
            let reason = format!(
                "{} problem(s); the running rules and playbooks stay in use",
                problems.len()
            );
            tracing::error!("reload refused: {reason}");
            settings.metrics.reloaded(false);
            settings.metrics.set_reload_error(Some(reason.clone()));
            let details = serde_json::json!({
                "problems": problems.iter().map(|p| p.render()).collect::<Vec<_>>(),
            });
            audit(settings, "failed", reason, details).await;
            return;
        }
    };
    if warninglists {
        rematch(settings, &content).await;
    }
    let built = Pipeline::with_stages(
        content.clone(),
        settings.dry_run,
        settings.intel.clone(),
        settings.stages.clone(),
    );
    let pipeline = match built {
        Ok(pipeline) => pipeline,
        Err(message) => {
            tracing::error!("reload refused: {message}");
            settings.metrics.reloaded(false);
            settings.metrics.set_reload_error(Some(message.clone()));
            audit(settings, "failed", message, serde_json::Value::Null).await;
            return;
        }
    };
    if engine.send(pipeline).is_err() {
        return;
    }
    let (text, details) = summary(&settings.current, &content);
    let restart = needs_restart(&settings.current.config, &content.config);
    if !restart.is_empty() {
        tracing::warn!(
            "config sections {} changed; they apply at the next restart",
            restart.join(", ")
        );
    }
    tracing::info!(
        rules = content.rules.len(),
        playbooks = content.playbooks.len(),
        "content reloaded: {text}"
    );
    settings.metrics.reloaded(true);
    settings.metrics.set_reload_error(None);
    audit(settings, "ok", text, details).await;
    settings.current = content;
}

/// Watches the content and reloads on changes and on SIGHUP until `shutdown`. Returns the
/// receiving end the engine takes new pipelines from.
pub fn spawn(
    mut settings: ReloadSettings,
    shutdown: Shutdown,
) -> Result<std::sync::mpsc::Receiver<Pipeline>, String> {
    let (to_engine, from_reloader) = std::sync::mpsc::channel();
    // Each change says whether a warninglist was among it: only then is the matcher rebuilt
    // (with a million indicators that takes seconds, too long for every rule edit).
    let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let watched = Watched::new(&settings.current, settings.config_file.as_deref());
    let targets: Vec<(PathBuf, notify::RecursiveMode)> = watched
        .targets()
        .iter()
        .map(|(path, mode)| (path.to_path_buf(), *mode))
        .collect();
    let notify_changed = changed.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        if event.paths.iter().any(|p| watched.relevant(p)) {
            let warninglist = event.paths.iter().any(|p| watched.is_warninglist(p));
            let _ = notify_changed.send(warninglist);
        }
    })
    .map_err(|e| format!("cannot watch the content for changes: {e}"))?;
    for (path, mode) in targets {
        if path.exists()
            && let Err(err) = watcher.watch(&path, mode)
        {
            tracing::warn!("cannot watch `{}` for changes: {err}", path.display());
        }
    }
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| format!("cannot listen for SIGHUP: {e}"))?;
    tokio::spawn(async move {
        // Owned by the task: dropping the watcher would stop the notifications.
        let _watcher = watcher;
        loop {
            let mut warninglists = tokio::select! {
                () = shutdown.wait() => return,
                Some(warninglist) = changes.recv() => warninglist,
                Some(()) = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    true
                }
            };
            // Debounce: wait until the files have been quiet for a moment.
            loop {
                tokio::select! {
                    () = tokio::time::sleep(DEBOUNCE) => break,
                    Some(warninglist) = changes.recv() => warninglists |= warninglist,
                }
            }
            reload(&mut settings, &to_engine, warninglists).await;
        }
    });
    drop(changed);
    Ok(from_reloader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_content_files_count_as_changes() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["rules", "playbooks", "data"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let mut content = crate::content::load(dir.path(), None).unwrap();
        content.dir = dir.path().to_path_buf();
        let watched = Watched::new(&content, None);
        let root = std::fs::canonicalize(dir.path()).unwrap();
        assert!(watched.relevant(&root.join("rules/new.rhai")));
        assert!(watched.relevant(&root.join("playbooks/a/b.yaml")));
        assert!(watched.relevant(&root.join("palisade.yaml")));
        assert!(watched.relevant(&root.join("warninglists/x.json")));
        assert!(watched.is_warninglist(&root.join("warninglists/x.json")));
        assert!(!watched.relevant(&root.join("data/palisade.db-wal")));
        assert!(!watched.relevant(&root.join("notes.txt")));
    }
}
