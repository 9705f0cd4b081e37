//! Hot reload: rules, playbooks, lists, helpers, exceptions, the config and warninglists are
//! watched; a change (or SIGHUP) is debounced, the whole content is loaded and validated off to
//! the side, a new pipeline is built from it, and the engine swaps it in between two batches, so
//! every event sees one consistent set. A change that does not validate keeps the running set: every problem is
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

/// How long a reload waits for content files still open for writing to be closed. A writer
/// that keeps a file open longer (or a close the watcher missed) does not hold reloads back
/// for ever: the content is then loaded as it is, and validation as a whole still guards it.
const MAX_WRITE_WAIT: Duration = Duration::from_secs(60);

/// What a reload needs besides the files.
pub struct ReloadSettings {
    pub dir: PathBuf,
    pub config_file: Option<PathBuf>,
    pub current: Arc<Content>,
    pub intel: IntelHandle,
    pub stages: Stages,
    /// The YARA rules `file.scan` reads, swapped for the reloaded content's.
    pub yara: crate::intel::yara::YaraHandle,
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
    /// `lists/`, `lib/`, `exceptions/` and `yara/`: what every rule shares.
    shared: Vec<PathBuf>,
    /// The folders of Sigma rules named by `sigma.folders` (a SigmaHQ checkout, say).
    sigma: Vec<PathBuf>,
    /// The config may not exist yet: its folder is watched and only its name counts.
    config_folder: PathBuf,
    config_name: Option<std::ffi::OsString>,
    /// The anomaly model file, when the stage is on: its folder (which may not exist yet; the
    /// loop watches it once it does) and its name.
    model: Option<(PathBuf, std::ffi::OsString)>,
}

/// What a batch of file events touched.
#[derive(Debug, Clone, Copy, Default)]
struct Touched {
    /// Rules, playbooks, the config or warninglists: the content is loaded again.
    content: bool,
    /// Warninglists among them: the intel matcher is rebuilt too.
    warninglists: bool,
    /// The anomaly model file (or its folder appeared).
    model: bool,
}

impl Touched {
    fn all() -> Touched {
        Touched {
            content: true,
            warninglists: true,
            model: true,
        }
    }

    fn merge(&mut self, other: Touched) {
        self.content |= other.content;
        self.warninglists |= other.warninglists;
        self.model |= other.model;
    }
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
        // Only a named model file is watched; a learned model comes from the state database.
        let anomaly = &content.config.anomaly;
        let model = anomaly
            .model
            .as_ref()
            .filter(|_| anomaly.enabled)
            .map(|model| {
                let file = content.resolve(model);
                let folder = file
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
                // A folder that does not exist yet cannot be canonicalized: resolve its parent.
                let folder = match (folder.parent(), folder.file_name()) {
                    (Some(parent), Some(name)) if !folder.exists() => {
                        absolute(if parent.as_os_str().is_empty() {
                            PathBuf::from(".")
                        } else {
                            parent.to_path_buf()
                        })
                        .join(name)
                    }
                    _ => absolute(folder),
                };
                (
                    folder,
                    file.file_name().map(ToOwned::to_owned).unwrap_or_default(),
                )
            });
        Watched {
            model,
            rules: absolute(content.resolve(&content.config.content.rules)),
            playbooks: absolute(content.resolve(&content.config.content.playbooks)),
            warninglists: absolute(content.resolve(Path::new(crate::content::WARNINGLISTS_DIR))),
            shared: [
                crate::content::LISTS_DIR,
                crate::content::LIB_DIR,
                crate::content::EXCEPTIONS_DIR,
                crate::content::YARA_DIR,
            ]
            .iter()
            .map(|folder| {
                // Often not made yet: its parent is resolved instead, so the folder is
                // recognised by the absolute path notify reports once it appears.
                let path = content.resolve(Path::new(folder));
                match (path.exists(), path.parent(), path.file_name()) {
                    (false, Some(parent), Some(name)) => {
                        absolute(if parent.as_os_str().is_empty() {
                            PathBuf::from(".")
                        } else {
                            parent.to_path_buf()
                        })
                        .join(name)
                    }
                    _ => absolute(path),
                }
            })
            .collect(),
            sigma: content
                .config
                .sigma
                .folders
                .iter()
                .map(|folder| absolute(content.resolve(folder)))
                .collect(),
            config_folder: absolute(folder),
            config_name: config.file_name().map(ToOwned::to_owned),
        }
    }

    fn targets(&self) -> Vec<(PathBuf, notify::RecursiveMode)> {
        use notify::RecursiveMode::{NonRecursive, Recursive};
        let mut targets = vec![
            (self.rules.clone(), Recursive),
            (self.playbooks.clone(), Recursive),
            (self.warninglists.clone(), Recursive),
            (self.config_folder.clone(), NonRecursive),
        ];
        targets.extend(self.sigma.iter().map(|folder| (folder.clone(), Recursive)));
        targets.extend(self.shared.iter().map(|folder| (folder.clone(), Recursive)));
        // The folders holding the watched folders: a watched folder removed and made again is
        // heard there, and watched anew (a watch follows the folder it was put on, not its name).
        let folders: Vec<PathBuf> = targets
            .iter()
            .filter(|(_, mode)| *mode == Recursive)
            .filter_map(|(folder, _)| folder.parent().map(Path::to_path_buf))
            .collect();
        for parent in folders {
            if !targets.iter().any(|(path, _)| *path == parent) {
                targets.push((parent, NonRecursive));
            }
        }
        if let Some((folder, _)) = &self.model {
            targets.push((folder.clone(), NonRecursive));
            // Its parent too, to hear the folder appear when it does not exist yet.
            if let Some(parent) = folder.parent() {
                targets.push((parent.to_path_buf(), NonRecursive));
            }
        }
        targets
    }

    fn is_warninglist(&self, path: &Path) -> bool {
        path.starts_with(&self.warninglists)
    }

    /// The model file itself, or its folder appearing (then the file may already be in it).
    fn is_model(&self, path: &Path) -> bool {
        self.model.as_ref().is_some_and(|(folder, name)| {
            path == folder
                || (path.parent() == Some(folder.as_path()) && path.file_name() == Some(name))
        })
    }

    /// A file whose half-written state would matter: a rule, playbook, warninglist, the config
    /// or the model (an editor's swap or backup file is none of them).
    fn is_content_file(&self, path: &Path) -> bool {
        let touched = self.touched(path);
        touched.model
            || (touched.content
                && path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    matches!(e, "rhai" | "yaml" | "yml" | "json" | "yar" | "yara")
                }))
    }

    fn touched(&self, path: &Path) -> Touched {
        let is_config = path.parent() == Some(self.config_folder.as_path())
            && path.file_name() == self.config_name.as_deref();
        let warninglists = self.is_warninglist(path);
        Touched {
            content: is_config
                || path.starts_with(&self.rules)
                || path.starts_with(&self.playbooks)
                || self.sigma.iter().any(|folder| path.starts_with(folder))
                || self.shared.iter().any(|folder| path.starts_with(folder))
                || warninglists,
            warninglists,
            model: self.is_model(path),
        }
    }
}

/// Content files opened for writing and not closed yet, as the watcher saw them: a reload waits
/// for them, so a file saved in several writes is never loaded half done.
#[derive(Clone, Default)]
struct Writing(Arc<std::sync::Mutex<std::collections::BTreeSet<PathBuf>>>);

impl Writing {
    fn note(&self, event: &notify::Event, watched: &Watched) {
        use notify::EventKind::{Access, Modify, Remove};
        use notify::event::{AccessKind, AccessMode, ModifyKind};
        let Ok(mut open) = self.0.lock() else { return };
        for path in &event.paths {
            match event.kind {
                // Written to: open until the close after writing. (A file only created, a link,
                // or one renamed into place, has nothing half written.)
                Modify(ModifyKind::Data(_)) if watched.is_content_file(path) => {
                    open.insert(path.clone());
                }
                // Closed, gone, or renamed (either name): a later write would show again.
                Access(AccessKind::Close(AccessMode::Write))
                | Remove(_)
                | Modify(ModifyKind::Name(_)) => {
                    open.remove(path);
                }
                _ => {}
            }
        }
    }

    fn open(&self) -> Vec<PathBuf> {
        self.0
            .lock()
            .map(|open| open.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn forget(&self) {
        if let Ok(mut open) = self.0.lock() {
            open.clear();
        }
    }
}

/// Which folder each watch was put on, by identity: a folder removed and made again under the
/// same name is another folder, and needs a watch of its own.
#[derive(Default)]
struct Armed(std::collections::HashMap<PathBuf, (u64, u64)>);

impl Armed {
    fn rearm(
        &mut self,
        watcher: &mut notify::RecommendedWatcher,
        targets: &[(PathBuf, notify::RecursiveMode)],
    ) {
        use std::os::unix::fs::MetadataExt;
        for (path, mode) in targets {
            let Ok(meta) = std::fs::metadata(path) else {
                // Gone (or not there yet): watched again once it is back.
                self.0.remove(path);
                continue;
            };
            let identity = (meta.dev(), meta.ino());
            if self.0.get(path) == Some(&identity) {
                continue;
            }
            // The old watch, if any, belongs to a folder that no longer has this name.
            let _ = watcher.unwatch(path);
            match watcher.watch(path, *mode) {
                Ok(()) => {
                    self.0.insert(path.clone(), identity);
                }
                Err(err) => {
                    tracing::warn!("cannot watch `{}` for changes: {err}", path.display());
                }
            }
        }
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
    // A Sigma rule's parsed form, not its text: a comment or key order is not a change.
    let sigma = |c: &Content| {
        c.sigma
            .rules
            .iter()
            .map(|r| {
                let parsed = format!(
                    "{:?}{:?}{:?}{:?}",
                    r.searches, r.condition, r.level, r.kinds
                );
                (r.id.to_string(), parsed)
            })
            .collect()
    };
    compare("rules", rules(old), rules(new));
    compare("sigma rules", sigma(old), sigma(new));
    compare("playbooks", playbooks(old), playbooks(new));
    let lists = |c: &Content| {
        c.library
            .lists
            .iter()
            .map(|l| (l.name.clone(), l.fingerprint.clone()))
            .collect()
    };
    let helpers = |c: &Content| {
        c.library
            .helper_files
            .iter()
            .map(|(path, names)| (path.display().to_string(), names.join(",")))
            .collect()
    };
    let exceptions = |c: &Content| {
        c.exceptions
            .iter()
            .map(|e| (format!("{} ({})", e.rule, e.place()), format!("{e:?}")))
            .collect()
    };
    compare("lists", lists(old), lists(new));
    compare("helpers", helpers(old), helpers(new));
    compare("exceptions", exceptions(old), exceptions(new));
    compare(
        "yara rule files",
        old.yara.fingerprints.clone(),
        new.yara.fingerprints.clone(),
    );
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
            content.config.intel.max_prefix,
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

/// Loads the anomaly model file again and swaps it in; the pipelines share its handle. A file
/// that does not load leaves the running model in place.
async fn reload_model(settings: &ReloadSettings) {
    let config = &settings.current.config.anomaly;
    let Some(model) = config.model.as_ref().filter(|_| config.enabled) else {
        return;
    };
    let path = settings.current.resolve(model);
    if !path.exists() {
        return;
    }
    match crate::anomaly::Model::load(&path) {
        Ok(model) => {
            let trained_at = model.trained_at.clone();
            // Swapped before it is announced: whoever reads the log line sees it in use.
            settings.stages.anomaly.swap(model);
            tracing::info!(path = %path.display(), trained_at, "anomaly model reloaded");
            settings.metrics.reloaded(true);
            let reason = format!("anomaly model `{}` trained at {trained_at}", path.display());
            audit(settings, "ok", reason, serde_json::Value::Null).await;
        }
        Err(err) => {
            tracing::error!("{err}; the previous model stays in use");
            settings.metrics.reloaded(false);
            settings.metrics.set_reload_error(Some(err.to_string()));
            audit(settings, "failed", err.to_string(), serde_json::Value::Null).await;
        }
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
                if problem.code == "file-too-large" {
                    settings.metrics.limit_hit("content_file_bytes");
                }
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
    // Warnings do not stop a reload, but an author who edits a running engine's content reads
    // the log, not `validate`: a typo'd field reads nothing on every event until it is fixed.
    for warning in content.warnings.iter() {
        tracing::warn!("{}", warning.render());
    }
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
        Err(err) => {
            let message = err.to_string();
            tracing::error!("reload refused: {message}");
            settings.metrics.reloaded(false);
            settings.metrics.set_reload_error(Some(message.clone()));
            audit(settings, "failed", message, serde_json::Value::Null).await;
            return;
        }
    };
    if let Some(correlation) = &settings.stages.correlation {
        // Windows of correlations whose definition did not change carry over.
        correlation.replace(
            content.running_correlations(),
            crate::sigma::correlation::Limits::from_config(&content.config.sigma.correlation),
        );
    }
    if engine.send(pipeline).is_err() {
        return;
    }
    settings.yara.store(Arc::new(content.yara.clone()));
    let (text, details) = summary(&settings.current, &content);
    let restart = needs_restart(&settings.current.config, &content.config);
    if !restart.is_empty() {
        tracing::warn!(
            "config sections {} changed; they apply at the next restart",
            restart.join(", ")
        );
    }
    let not_run = content.not_run();
    tracing::info!(
        rules = content.rules.len(),
        playbooks = content.playbooks.len(),
        warnings = content.warnings.len(),
        disabled = not_run.disabled,
        not_run_for_status = not_run.by_status_total(),
        "content reloaded: {text}"
    );
    if !not_run.is_empty() {
        tracing::info!("rules loaded but not run: {not_run}");
    }
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
    // Each change says what it touched: the content is loaded again, the intel matcher rebuilt
    // only for warninglists (with a million indicators that takes seconds), the model reloaded
    // only for its file.
    let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel::<Touched>();
    let watched = Arc::new(Watched::new(
        &settings.current,
        settings.config_file.as_deref(),
    ));
    let notify_changed = changed.clone();
    let filter = watched.clone();
    let writing = Writing::default();
    let noted = writing.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        noted.note(&event, &filter);
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        let mut touched = Touched::default();
        for path in &event.paths {
            touched.merge(filter.touched(path));
        }
        if touched.content || touched.model {
            let _ = notify_changed.send(touched);
        }
    })
    .map_err(|e| format!("cannot watch the content for changes: {e}"))?;
    let targets = watched.targets();
    let mut armed = Armed::default();
    armed.rearm(&mut watcher, &targets);
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| format!("cannot listen for SIGHUP: {e}"))?;
    tokio::spawn(async move {
        // Owned by the task: dropping the watcher would stop the notifications.
        let mut watcher = watcher;
        loop {
            let mut touched = tokio::select! {
                () = shutdown.wait() => return,
                Some(touched) = changes.recv() => touched,
                Some(()) = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    Touched::all()
                }
            };
            // Debounce: wait until the files have been quiet for a moment, and until no content
            // file is still open for writing (a save in several writes is not loaded half done).
            let waiting_since = tokio::time::Instant::now();
            let mut told = false;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(DEBOUNCE) => {
                        let open = writing.open();
                        if open.is_empty() {
                            break;
                        }
                        if waiting_since.elapsed() >= MAX_WRITE_WAIT {
                            tracing::warn!(
                                "`{}` still open for writing after {}s; loading the content as it is",
                                open[0].display(),
                                MAX_WRITE_WAIT.as_secs()
                            );
                            writing.forget();
                            break;
                        }
                        if !told {
                            told = true;
                            tracing::info!(
                                "`{}` is open for writing; the reload waits until it is closed",
                                open[0].display()
                            );
                        }
                    }
                    Some(more) = changes.recv() => touched.merge(more),
                }
            }
            // A watched folder that did not exist at start (`models/` before the first
            // training), or was removed and made again, is watched (again) now.
            armed.rearm(&mut watcher, &targets);
            if touched.content {
                reload(&mut settings, &to_engine, touched.warninglists).await;
            }
            if touched.model {
                reload_model(&settings).await;
            }
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
        for sub in ["rules", "playbooks", "data", "corpus"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(
            dir.path().join("palisade.yaml"),
            "sigma: {folders: [corpus]}\nanomaly: {model: models/anomaly.model}\n",
        )
        .unwrap();
        let mut content = crate::content::load(dir.path(), None).unwrap();
        content.dir = dir.path().to_path_buf();
        let watched = Watched::new(&content, None);
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let content_change = |path: &str| watched.touched(&root.join(path)).content;
        assert!(content_change("rules/new.rhai"));
        assert!(content_change("playbooks/a/b.yaml"));
        assert!(content_change("palisade.yaml"));
        assert!(content_change("warninglists/x.json"));
        assert!(content_change("corpus/windows/process_creation/x.yml"));
        assert!(
            watched
                .touched(&root.join("warninglists/x.json"))
                .warninglists
        );
        assert!(!content_change("data/palisade.db-wal"));
        assert!(!content_change("notes.txt"));
        // The model file, and its folder appearing, are model changes and nothing else.
        for path in ["models/anomaly.model", "models"] {
            let touched = watched.touched(&root.join(path));
            assert!(touched.model && !touched.content, "{path}");
        }
        assert!(!watched.touched(&root.join("models/other.model")).model);
    }
}
