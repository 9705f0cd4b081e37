//! `palisade run`: the engine on its configured source.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::bus::{Health, Link};
use crate::config::SourceConfig;
use crate::content::Content;
use crate::engine::drive::{NoProbe, Outputs, drive_channel, drive_jsonl, drive_stream};
use crate::engine::{AlertFormat, Engine, Shutdown};
use crate::sinks::{AlertPublisher, DeadLetter};
use crate::sources::Intake;
use crate::sources::jsonl::JsonlReader;
use crate::sources::redis_channel::ChannelSource;
use crate::sources::redis_stream::StreamSource;
use crate::state::{StateStore, spawn_writer};

use super::{CannotRun, LogFormat, Status, load_runnable_content};

pub fn run(
    dir: &Path,
    config: Option<&Path>,
    events: Option<&Path>,
    format: LogFormat,
) -> Result<Status, CannotRun> {
    let content = load_runnable_content(dir, config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(engine(content, events.map(Path::to_path_buf), format));
    // A reader blocked on standard input cannot be interrupted; do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

async fn engine(
    content: Arc<Content>,
    events: Option<PathBuf>,
    format: LogFormat,
) -> Result<Status, CannotRun> {
    let config = content.config.clone();
    // `--events` overrides the configured source.
    let source = match events {
        Some(path) => SourceConfig::Jsonl { path },
        None => config.source.clone(),
    };
    let shutdown = Shutdown::on_signals();
    let health = Arc::new(Health::default());
    let state_path = content.resolve(&config.state.path);
    let store = StateStore::open(&state_path).await?;
    let writer_stop = Arc::new(Notify::new());
    // Every decision is audited; steps planned to act are executed (dry-run plans none).
    let actor = match &source {
        SourceConfig::RedisStream(stream) => format!(
            "engine:{}",
            stream
                .consumer
                .clone()
                .unwrap_or_else(crate::sources::redis_stream::default_consumer_name)
        ),
        _ => format!(
            "engine:{}",
            crate::sources::redis_stream::default_consumer_name()
        ),
    };
    let policy = config
        .actions
        .policy(&config.redis.url)
        .map_err(CannotRun)?;
    let registry =
        crate::actions::plugins::Registry::new(&crate::actions::plugins::PluginSettings {
            redis_url: config.redis.url.clone(),
            blocks: Some(store.pool().clone()),
            firewall: config.actions.firewall,
            webhook: config.actions.webhook.limits().map_err(CannotRun)?,
        })
        .map_err(CannotRun)?;
    // Tasks that use the state database every second; stopped before it closes.
    let mut periodic: Vec<Periodic> = Vec::new();
    if !config.actions.dry_run {
        // Blocks outlive the process: put back what a reboot or a flushed ruleset removed.
        let firewall = config.actions.firewall;
        if let Err(err) = crate::actions::plugins::firewall::expire(store.pool(), firewall).await {
            tracing::error!("cannot expire firewall blocks: {err}");
        }
        match crate::actions::plugins::firewall::reassert(store.pool(), firewall, &policy).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "re-asserted firewall blocks"),
            Err(err) => tracing::error!("cannot re-assert firewall blocks: {err}"),
        }
        // iptables has no timeouts: blocks whose time is up are removed here.
        let pool = store.pool().clone();
        periodic.push(Periodic::spawn(
            &shutdown,
            "expiring firewall blocks",
            move || {
                let pool = pool.clone();
                async move {
                    let count = crate::actions::plugins::firewall::expire(&pool, firewall).await?;
                    if count > 0 {
                        tracing::info!(count, "firewall blocks expired");
                    }
                    Ok(())
                }
            },
        ));
    }
    let audit_files =
        crate::audit::AuditFiles::from_config(&config.audit, &config.state.path, |p| {
            content.resolve(p)
        });
    let audit = Arc::new(crate::audit::AuditLog::open(&store, &audit_files).await?);
    let reload_actor = actor.clone();
    let executor = Arc::new(
        crate::actions::Executor::new(
            registry,
            audit.clone(),
            crate::approvals::Approvals::new(&store),
            policy,
            actor,
        )
        .with_manual_mode_channel(
            config
                .alerts
                .enabled
                .unwrap_or(source.is_redis())
                .then(|| config.alerts.channel.clone())
                .flatten(),
        ),
    );
    executor.load_mode().await?;
    // People approve queued steps from another process; run what they approved. Notifications
    // held back by a limit are summarised when their window closes.
    {
        let executor = executor.clone();
        periodic.push(Periodic::spawn(
            &shutdown,
            "running approved steps and summarised notifications",
            move || {
                let executor = executor.clone();
                async move {
                    let approved = executor
                        .run_approved()
                        .await
                        .map_err(|err| format!("cannot run approved steps: {err}"));
                    let summaries = executor
                        .flush_summaries(false)
                        .await
                        .map_err(|err| format!("cannot send summarised notifications: {err}"));
                    approved.and(summaries).map(|_| ())
                }
            },
        ));
    }
    let summaries = executor.clone();
    let executor = Some(executor);
    // Before the writer takes the store: the tracker is restored over the same connections.
    let stages = stages(&content, store.pool(), &source).await?;
    let (state, writer) = spawn_writer(store, writer_stop.clone());
    let dead_letter_path = content.resolve(&config.dead_letter.path);
    let dead_letter = DeadLetter::open(&dead_letter_path).map_err(|e| {
        CannotRun(format!(
            "cannot open the dead-letter file `{}`: {e}",
            dead_letter_path.display()
        ))
    })?;
    let publishes = config.alerts.enabled.unwrap_or(source.is_redis());
    let alerts = if publishes {
        let link = Link::new(&config.redis.url, "alerts", health.clone()).map_err(CannotRun)?;
        Some(AlertPublisher::new(link, &config.alerts))
    } else {
        None
    };
    let alert_format = match format {
        LogFormat::Text => AlertFormat::Text,
        LogFormat::Json => AlertFormat::Json,
    };
    let intel = crate::intel::for_content(&content)
        .await
        .map_err(CannotRun)?;
    if !config.intel.feeds.is_empty() {
        // Feeds are pulled on their schedule; each pull that changes something swaps a rebuilt
        // matcher in, and the next event sees it.
        let feeds_state = StateStore::open(&state_path).await?;
        tokio::spawn(crate::intel::pull_on_schedule(
            config.intel.clone(),
            crate::intel::IntelStore::new(&feeds_state),
            content.warninglists.clone(),
            intel.clone(),
            shutdown.clone(),
        ));
    }
    let metrics = Arc::new(crate::metrics::Metrics::default());
    metrics.set_source(match &source {
        SourceConfig::Jsonl { .. } => "jsonl",
        SourceConfig::RedisStream(_) => "redis_stream",
        SourceConfig::RedisChannel(_) => "redis_channel",
    });
    if let Some(executor) = &executor {
        metrics.set_manual_mode(executor.is_manual());
        start_effects_pool(
            executor,
            &config.actions.effects,
            &state_path,
            &metrics,
            &shutdown,
        )
        .await?;
    }
    if let Some(learner) = &stages.learner {
        metrics.set_learning(&learner.status());
        // Its own connections: the writer owns the first store, and training reads the sample
        // while batches are written.
        let learning_state = StateStore::open(&state_path).await?;
        tokio::spawn(crate::anomaly::learning::run(
            learner.clone(),
            stages.anomaly.clone(),
            learning_state.pool().clone(),
            Some(audit.clone()),
            Some(metrics.clone()),
            shutdown.clone(),
            learner.status().model_id,
        ));
    }
    if config.http.enabled {
        serve_http(&config.http, &metrics, &health, &shutdown).await;
    }
    let reloads = crate::engine::reload::spawn(
        crate::engine::reload::ReloadSettings {
            dir: content.dir.clone(),
            config_file: content.config_path.clone(),
            current: content.clone(),
            intel: intel.clone(),
            stages: stages.clone(),
            dry_run: config.actions.dry_run,
            audit: Some(audit.clone()),
            actor: reload_actor,
            metrics: metrics.clone(),
        },
        shutdown.clone(),
    );
    let mut engine = Engine::new(
        content.clone(),
        intel,
        Intake::new(Some(dead_letter)).with_time_policy(config.events.time_policy()),
        alert_format,
        publishes,
        stages,
    )
    .map_err(CannotRun)?
    .with_metrics(metrics.clone());
    match reloads {
        Ok(reloads) => engine = engine.with_reloads(reloads),
        // Out of inotify watches, say: run on, without picking up changes.
        Err(err) => tracing::warn!("{err}; changes to rules and playbooks need a restart"),
    }
    tracing::info!(
        rules = content.rules.len(),
        playbooks = content.playbooks.len(),
        dry_run = config.actions.dry_run,
        state = %state_path.display(),
        alerts = publishes,
        "palisade is running"
    );
    metrics.set_ready(true);

    // Where every driver's committed batches go.
    let outputs = Outputs {
        format: engine.format(),
        state: state.clone(),
        alerts,
        executor,
        metrics: Some(metrics.clone()),
    };
    let driven = match source {
        SourceConfig::Jsonl { path } => {
            let path = if path == Path::new("-") {
                path
            } else {
                content.resolve(&path)
            };
            let reader = JsonlReader::open(&path)
                .map_err(|e| CannotRun(format!("cannot read `{}`: {e}", path.display())))?;
            let origin = path.display().to_string();
            tracing::info!(source = %origin, "reading JSON lines");
            let reader_shutdown = shutdown.clone();
            let runtime = tokio::runtime::Handle::current();
            let mut outputs = outputs;
            let reading = tokio::task::spawn_blocking(move || {
                let result = drive_jsonl(
                    &mut engine,
                    reader,
                    &origin,
                    &mut outputs,
                    &reader_shutdown,
                    &runtime,
                );
                (engine, result)
            });
            tokio::select! {
                finished = reading => {
                    let (finished_engine, result) = finished.map_err(|e| CannotRun(format!("the reading thread failed: {e}")))?;
                    engine = finished_engine;
                    result
                }
                () = shutdown.wait() => {
                    // The reader may be blocked on a terminal; what it handled is already queued.
                    stop_before_the_store_closes(periodic, &summaries).await;
                    writer_stop.notify_one();
                    drop(state);
                    let batches = writer.await.map_err(|e| CannotRun(format!("the state writer failed: {e}")))??;
                    audit.flush().await;
                    tracing::info!(state_batches = batches, "stopped");
                    return Ok(Status::Ok);
                }
            }
        }
        SourceConfig::RedisStream(stream) => {
            let link = Link::new(&config.redis.url, "source", health.clone()).map_err(CannotRun)?;
            let source = StreamSource::new(link, stream);
            tracing::info!(
                stream = source.stream(),
                consumer = source.consumer(),
                "reading the stream"
            );
            drive_stream(&mut engine, source, outputs, &shutdown, NoProbe)
                .await
                .map(|_| ())
        }
        SourceConfig::RedisChannel(channel) => {
            let link = Link::new(&config.redis.url, "source", health.clone()).map_err(CannotRun)?;
            let mut source = ChannelSource::new(link, channel);
            tracing::info!(channel = source.channel(), "reading the channel");
            // Owned here, so its writer handle is gone when the channel ends (the writer
            // finishes once every handle is).
            let mut outputs = outputs;
            drive_channel(&mut engine, &mut source, &mut outputs, &shutdown).await
        }
    };
    metrics.set_ready(false);
    stop_before_the_store_closes(periodic, &summaries).await;
    // The tracker's last counts (written once a second while running).
    let rest = engine.finish();
    if !rest.is_empty()
        && let Err(err) = state.write(rest).await
    {
        tracing::error!("cannot store the behaviour tracker's last counts: {err}");
    }
    drop(state);
    let batches = writer
        .await
        .map_err(|e| CannotRun(format!("the state writer failed: {e}")))??;
    // The anchor names the last row appended before the process ends.
    audit.flush().await;
    let counters = engine.counters();
    tracing::info!(
        events = counters.events,
        rejected = counters.rejected,
        detections = counters.detections,
        actions = counters.actions,
        rule_failures = counters.rule_failures,
        state_batches = batches,
        redis_failures = health.redis_failures(),
        "stopped"
    );
    driven.map_err(|e| CannotRun(e.to_string()))?;
    Ok(Status::Ok)
}

/// A task run once a second until the engine stops. A failure is logged once an episode (a
/// database locked for a minute is one error, not sixty), its end once.
struct Periodic {
    stop: Arc<Notify>,
    handle: tokio::task::JoinHandle<()>,
}

impl Periodic {
    fn spawn<F>(
        shutdown: &Shutdown,
        what: &'static str,
        mut tick: impl FnMut() -> F + Send + 'static,
    ) -> Periodic
    where
        F: std::future::Future<Output = Result<(), String>> + Send,
    {
        let stop = Arc::new(Notify::new());
        let shutdown = shutdown.clone();
        let stopped = stop.clone();
        let handle = tokio::spawn(async move {
            let mut failing = false;
            loop {
                match tick().await {
                    Ok(()) if failing => {
                        tracing::info!("{what}: works again");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(err) if failing => tracing::debug!("{what}: still failing: {err}"),
                    Err(err) => {
                        tracing::error!(
                            "{what}: {err}; tried again every second, logged again when it works"
                        );
                        failing = true;
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    () = shutdown.wait() => return,
                    () = stopped.notified() => return,
                }
            }
        });
        Periodic { stop, handle }
    }
}

/// Starts the pool that runs steps calling outside systems, over its own connections to the
/// state database (it records their outcomes while the writer writes batches).
async fn start_effects_pool(
    executor: &Arc<crate::actions::Executor>,
    config: &crate::actions::EffectsConfig,
    state_path: &Path,
    metrics: &Arc<crate::metrics::Metrics>,
    shutdown: &Shutdown,
) -> Result<(), CannotRun> {
    let settings = config
        .settings()
        .map_err(|(_, message)| CannotRun(message))?;
    let store = StateStore::open(state_path).await?;
    executor.start_pool(settings, store, Some(metrics.clone()), shutdown.clone());
    Ok(())
}

/// Stops the tasks that use the state database and sends what notification limits still hold
/// back, while the database is open: at the end of input the store closes next, and a task
/// still running then would meet a closed pool.
async fn stop_before_the_store_closes(
    periodic: Vec<Periodic>,
    executor: &crate::actions::Executor,
) {
    for task in periodic {
        // `notify_one` keeps the permit if the task is busy, so it stops at its next wait.
        task.stop.notify_one();
        if let Err(err) = task.handle.await {
            tracing::error!("a background task failed: {err}");
        }
    }
    // Summaries of held notifications go to the effects pool like other messages; then the
    // pool gets its bounded wait, and what it abandons is recorded while the store is open.
    if let Err(err) = executor.flush_summaries(true).await {
        tracing::error!("cannot send summarised notifications: {err}");
    }
    if let Err(err) = executor.close_pool().await {
        tracing::error!("cannot record the effects pool's abandoned steps: {err}");
    }
}

/// The anomaly stage (a named model file, which the reloader watches, or the learner restored
/// from the state database with the model it trained), the tracker and the correlation windows
/// (restored from the state database).
async fn stages(
    content: &Content,
    pool: &sqlx::SqlitePool,
    source: &SourceConfig,
) -> Result<crate::pipeline::Stages, CannotRun> {
    let mut stages = crate::pipeline::Stages::from_content(content).map_err(CannotRun)?;
    let config = &content.config;
    match &config.anomaly.model {
        Some(path) if config.anomaly.enabled => {
            let path = content.resolve(path);
            match stages.anomaly.current() {
                Some(model) => tracing::info!(
                    model = %path.display(),
                    trained_at = model.trained_at,
                    threshold = config.anomaly.threshold,
                    "anomaly model loaded"
                ),
                None => tracing::info!(
                    model = %path.display(),
                    "no anomaly model yet; events are scored once `palisade train` writes it"
                ),
            }
        }
        _ if config.anomaly.learns() => {
            let settings = crate::anomaly::learning::Settings::from_config(
                &config.anomaly,
                learning_name(source),
                content.resolve(&config.anomaly.learning.model_file),
            );
            let (learner, restored, _) =
                crate::anomaly::learning::prepare(pool, settings, &stages.anomaly)
                    .await
                    .map_err(|e| {
                        CannotRun(format!("cannot restore the anomaly stage's learning: {e}"))
                    })?;
            let status = learner.status();
            tracing::info!(sample_rows = restored, "anomaly stage {}", status.line());
            stages.learner = Some(learner);
        }
        _ => {}
    }
    if let Some(tracker) = &stages.tracker {
        let retention = i64::from(config.tracker.retention_days) * 86_400_000;
        let stored = crate::tracker::load_records(pool, retention).await?;
        tracker.restore(&stored);
        tracing::info!(
            records = stored.records.len(),
            day_counts = stored.days.len(),
            "behaviour tracker restored"
        );
    }
    if let Some(correlation) = &stages.correlation {
        let stored = crate::sigma::correlation::store::load_windows(pool).await?;
        let restored = correlation.restore(stored);
        tracing::info!(windows = restored, "correlation windows restored");
    }
    Ok(stages)
}

/// Whose sample rows these are in a state database engines may share: the stream consumer's
/// configured name, else the host's name (stable across restarts, unlike the default consumer
/// name, which carries the process id).
fn learning_name(source: &SourceConfig) -> String {
    if let SourceConfig::RedisStream(stream) = source
        && let Some(consumer) = &stream.consumer
    {
        return consumer.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "palisade".into())
}

/// Starts `/healthz`, `/readyz` and `/metrics`. A port already taken (another engine on this
/// machine) is logged and the engine runs without them: they report on it, they are not it.
async fn serve_http(
    http: &crate::config::HttpConfig,
    metrics: &Arc<crate::metrics::Metrics>,
    health: &Arc<Health>,
    shutdown: &Shutdown,
) {
    let listen = &http.listen;
    let Ok(address) = listen.parse() else {
        tracing::error!("`http.listen` is `{listen}`, not an address; no HTTP endpoints");
        return;
    };
    let limits = crate::metrics::http::Limits::from_config(http);
    match crate::metrics::http::serve(
        address,
        metrics.clone(),
        health.clone(),
        shutdown.clone(),
        limits,
    )
    .await
    {
        Ok(bound) => tracing::info!("serving /healthz, /readyz and /metrics on http://{bound}"),
        Err(err) => tracing::warn!(
            "cannot serve the HTTP endpoints on {address}: {err}; running without them"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The end-of-input order: once stopped, a periodic task has finished and never runs again,
    /// so the state database can close under it without a "closed pool" error.
    #[tokio::test]
    async fn a_stopped_periodic_task_has_finished_and_never_ticks_again() {
        let (_trigger, shutdown) = Shutdown::new();
        let ticks = Arc::new(AtomicUsize::new(0));
        let counted = ticks.clone();
        let task = Periodic::spawn(&shutdown, "counting", move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                // A tick in progress when the stop comes is finished first.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Ok(())
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        task.stop.notify_one();
        task.handle.await.unwrap();
        let after_stop = ticks.load(Ordering::SeqCst);
        assert_eq!(after_stop, 1);
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), after_stop);
    }
}
