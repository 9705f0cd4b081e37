//! The composition root: from loaded content and its config, everything a running engine is
//! made of (state, policy, plugins and executor, background tasks, intel and its pulls, model
//! and learner, tracker, reload, metrics and HTTP) and the driver for its source.
//!
//! `palisade run` is argument handling around [`run`]; `palisade bench pipeline` builds its
//! engine with [`Server::build`] too, so what it measures is what runs.

mod http;
mod orphans;
mod periodic;
mod stages;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::actions::Executor;
use crate::audit::AuditLog;
use crate::bus::{Health, Link};
use crate::config::SourceConfig;
use crate::content::Content;
use crate::engine::drive::{
    CommitProbe, DriveError, NoProbe, Outputs, SettledAlerts, drive_channel, drive_jsonl,
    drive_stream,
};
use crate::engine::{Counters, Engine};
use crate::intel::IntelHandle;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::sinks::AlertFormat;
use crate::sinks::{AlertPublisher, DeadLetter};
use crate::sources::Intake;
use crate::sources::jsonl::JsonlReader;
use crate::sources::redis_stream::StreamSource;
use crate::state::{StateError, StateStore, spawn_writer};

use periodic::{Periodic, stop_before_the_store_closes};

/// Why the engine could not start or did not finish cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Drive(#[from] DriveError),
    #[error("cannot open the dead-letter file `{path}`: {source}")]
    DeadLetter {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read `{path}`: {source}")]
    Events {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the {what} failed: {source}")]
    Task {
        what: &'static str,
        source: tokio::task::JoinError,
    },
    /// A component refused its part of the config (policy, plugins, Redis address, rules).
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Redis(#[from] crate::bus::InvalidRedisUrl),
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
    #[error(transparent)]
    Plugins(#[from] crate::actions::plugins::RegistryError),
    #[error(transparent)]
    Policy(#[from] crate::config::PolicyError),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
}

/// What the caller decides rather than the config.
pub struct Options {
    /// Read this source instead of the configured one (`palisade run --events FILE`).
    pub source: Option<SourceConfig>,
    /// How alerts are shown on standard output.
    pub format: AlertFormat,
    /// Use these deciding stages as they are instead of building them from the content and
    /// restoring them from the state database (the bench's rules-only run).
    pub stages: Option<crate::pipeline::Stages>,
}

impl Options {
    pub fn new(format: AlertFormat) -> Options {
        Options {
            source: None,
            format,
            stages: None,
        }
    }
}

/// What a finished engine did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub counters: Counters,
    pub state_batches: u64,
}

/// Builds the engine for `content` and runs it on its source until the source ends or
/// `shutdown` fires.
pub async fn run(
    content: Arc<Content>,
    options: Options,
    shutdown: Shutdown,
) -> Result<Summary, ServerError> {
    let server = Server::build(content, options, shutdown).await?;
    server.serve(NoProbe).await.map(|(summary, _)| summary)
}

/// An engine with everything around it started, ready to read its source.
pub struct Server {
    content: Arc<Content>,
    source: SourceConfig,
    shutdown: Shutdown,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    audit: Arc<AuditLog>,
    /// Kept to flush held-back notifications at the end.
    executor: Arc<Executor>,
    periodic: Vec<Periodic>,
    /// Away on the reading thread while JSON lines are read.
    engine: Option<Engine>,
    outputs: Outputs,
    writer: JoinHandle<Result<u64, StateError>>,
    writer_stop: Arc<Notify>,
}

impl Server {
    /// Opens state, builds the executor and the stages, loads intel, and starts the background
    /// tasks, the HTTP endpoints and the reloader; nothing is read from the source yet.
    pub async fn build(
        content: Arc<Content>,
        options: Options,
        shutdown: Shutdown,
    ) -> Result<Server, ServerError> {
        let config = &content.config;
        // `--events` overrides the configured source.
        let source = options.source.unwrap_or_else(|| config.source.clone());
        let health = Arc::new(Health::default());
        // Before anything is opened: a console that may not listen stops the start.
        let console = crate::console::Plan::from_config(&config.console)?;
        let state_path = content.resolve(&config.state.path);
        let store = StateStore::open(&state_path).await?;
        let actor = actor_name(&source);
        let mut periodic = Vec::new();
        let audit = open_audit(&content, &store).await?;
        // Alerts of detections with steps in the effects pool wait for those outcomes.
        let settled = SettledAlerts::waiting();
        // `file.scan` reads the running content's YARA rules; a reload swaps them in.
        let yara = crate::actions::plugins::yara_handle(content.yara.clone());
        let executor = build_executor(
            &content,
            &yara,
            &source,
            &store,
            audit.clone(),
            actor.clone(),
            &shutdown,
            &mut periodic,
        )
        .await?;
        executor.set_settled_hook(settled.hook());
        // Before the writer takes the store: the tracker is restored over the same connections.
        let stages = match options.stages {
            Some(stages) => stages,
            None => stages::restore(&content, store.pool(), &source).await?,
        };
        let metrics = Arc::new(Metrics::default());
        // Before the source is read: steps a crashed run left in the effects pool get their
        // outcome (`abandoned`) and their detections' alerts.
        settle_orphans(&content, &store, &audit, &metrics, &actor).await?;
        let writer_stop = Arc::new(Notify::new());
        let (state, writer) = spawn_writer(store, writer_stop.clone());
        settled.write_through(state.clone(), options.format);
        let dead_letter_path = content.resolve(&config.dead_letter.path);
        let dead_letter =
            DeadLetter::open(&dead_letter_path).map_err(|source| ServerError::DeadLetter {
                path: dead_letter_path,
                source,
            })?;
        let publishes = publishes_alerts(&content, &source);
        let alerts = if publishes {
            let link = Link::new(&config.redis.url, "alerts", health.clone())?;
            Some(AlertPublisher::new(link, &config.alerts))
        } else {
            None
        };
        if let Some(es) = &config.alerts.elasticsearch {
            if publishes {
                periodic.push(start_es_sink(es, state.store().clone(), &shutdown)?);
            } else {
                // The sink reads the alert outbox, which is written only when alerts are on.
                tracing::warn!(
                    "`alerts.elasticsearch` is set but alerts are off (`alerts.enabled`, default: when the source is Redis): nothing is indexed"
                );
            }
        }
        let intel = start_intel(&content, &state_path, &shutdown).await?;
        metrics.set_source(source_kind(&source));
        let mode = executor.load_mode().await?;
        metrics.set_mode(&mode);
        log_mode_at_start(&mode);
        periodic.push(follow_mode(&executor, &metrics, &shutdown));
        start_effects_pool(
            &executor,
            &config.actions.effects,
            &state_path,
            &metrics,
            &shutdown,
        )
        .await?;
        start_learning(&stages, &state_path, &audit, &metrics, &shutdown).await?;
        if config.http.enabled {
            http::serve(&config.http, &metrics, &health, &shutdown).await;
        }
        if let Some(plan) = console {
            http::serve_console(plan, &state_path, &audit, &shutdown).await?;
        }
        let reloads = start_reload(
            &content, &intel, &stages, &yara, &audit, actor, &metrics, &shutdown,
        );
        let mut engine = Engine::new(
            content.clone(),
            intel,
            Intake::new(Some(dead_letter)).with_time_policy(config.events.time_policy()),
            options.format,
            stages,
        )?
        .with_metrics(metrics.clone());
        if let Some(reloads) = reloads {
            engine = engine.with_reloads(reloads);
        }
        let not_run = content.not_run();
        tracing::info!(
            rules = content.rules.len(),
            playbooks = content.playbooks.len(),
            dry_run = config.actions.dry_run,
            state = %state_path.display(),
            alerts = publishes,
            disabled = not_run.disabled,
            not_run_for_status = not_run.by_status_total(),
            "palisade is running"
        );
        if !not_run.is_empty() {
            tracing::info!("rules loaded but not run: {not_run}");
        }
        // Where every driver's committed batches go.
        let outputs = Outputs {
            format: engine.format(),
            state,
            alerts,
            executor: Some(executor.clone()),
            metrics: Some(metrics.clone()),
            settled: Some(settled),
        };
        Ok(Server {
            content,
            source,
            shutdown,
            health,
            metrics,
            audit,
            executor,
            periodic,
            engine: Some(engine),
            outputs,
            writer,
            writer_stop,
        })
    }

    /// Reads the source until it ends or the shutdown fires, then stops everything in order:
    /// the background tasks, the tracker's last counts, the state writer, the audit anchor.
    /// `probe` sees each committed batch of a stream source (the bench's latency figures).
    pub async fn serve<P: CommitProbe + Send + 'static>(
        mut self,
        probe: P,
    ) -> Result<(Summary, P), ServerError> {
        self.metrics.set_ready(true);
        let config = &self.content.config;
        let source = self.source.clone();
        let driven = match source {
            SourceConfig::Jsonl { path } => {
                let path = if path == Path::new("-") {
                    path
                } else {
                    self.content.resolve(&path)
                };
                match self.read_jsonl(path).await? {
                    Some(result) => result.map(|()| probe),
                    // Stopped while the reader may be blocked on a terminal.
                    None => return self.stop_while_reading().await.map(|s| (s, probe)),
                }
            }
            SourceConfig::RedisStream(stream) => {
                let link = Link::new(&config.redis.url, "source", self.health.clone())?;
                let source = StreamSource::new(link, stream);
                tracing::info!(
                    stream = source.stream(),
                    consumer = source.consumer(),
                    "reading the stream"
                );
                let outputs = self.take_outputs();
                match self.engine.as_mut() {
                    Some(engine) => {
                        drive_stream(engine, source, outputs, &self.shutdown, probe).await
                    }
                    None => return Err(no_engine()),
                }
            }
            SourceConfig::RedisChannel(channel) => {
                let link = Link::new(&config.redis.url, "source", self.health.clone())?;
                let mut source = crate::sources::redis_channel::ChannelSource::new(link, channel);
                tracing::info!(channel = source.channel(), "reading the channel");
                // Owned here, so its writer handle is gone when the channel ends (the writer
                // finishes once every handle is).
                let mut outputs = self.take_outputs();
                let Some(engine) = self.engine.as_mut() else {
                    return Err(no_engine());
                };
                let result = drive_channel(engine, &mut source, &mut outputs, &self.shutdown).await;
                drop(outputs);
                result.map(|()| probe)
            }
        };
        let summary = self.stop().await?;
        Ok((summary, driven?))
    }

    /// The outputs for a driver that takes them by value; what is left holds a state writer
    /// handle only until [`Server::stop`] drops it.
    fn take_outputs(&mut self) -> Outputs {
        Outputs {
            format: self.outputs.format,
            state: self.outputs.state.clone(),
            alerts: self.outputs.alerts.take(),
            executor: self.outputs.executor.take(),
            metrics: self.outputs.metrics.take(),
            settled: self.outputs.settled.clone(),
        }
    }

    /// Reads JSON lines on a blocking thread. `None` when the shutdown came first.
    async fn read_jsonl(
        &mut self,
        path: PathBuf,
    ) -> Result<Option<Result<(), DriveError>>, ServerError> {
        let reader = JsonlReader::open(&path).map_err(|source| ServerError::Events {
            path: path.clone(),
            source,
        })?;
        let origin = path.display().to_string();
        tracing::info!(source = %origin, "reading JSON lines");
        let reader_shutdown = self.shutdown.clone();
        let runtime = tokio::runtime::Handle::current();
        let mut outputs = self.take_outputs();
        // The engine goes to the reading thread and comes back with its result.
        let Some(mut engine) = self.engine.take() else {
            return Err(no_engine());
        };
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
                let (engine, result) = finished.map_err(|source| ServerError::Task { what: "reading thread", source })?;
                self.engine = Some(engine);
                Ok(Some(result))
            }
            () = self.shutdown.wait() => Ok(None),
        }
    }

    /// The shutdown came while the reader may be blocked on a terminal; what it handled is
    /// already queued.
    async fn stop_while_reading(self) -> Result<Summary, ServerError> {
        stop_before_the_store_closes(self.periodic, &self.executor).await;
        if let Some(settled) = &self.outputs.settled {
            settled.flush().await;
        }
        self.writer_stop.notify_one();
        drop(self.outputs);
        let batches = self.writer.await.map_err(|source| ServerError::Task {
            what: "state writer",
            source,
        })??;
        self.audit.flush().await;
        tracing::info!(state_batches = batches, "stopped");
        Ok(Summary {
            counters: Counters::default(),
            state_batches: batches,
        })
    }

    /// Stops everything in order once the driver is done.
    async fn stop(self) -> Result<Summary, ServerError> {
        let Server {
            metrics,
            periodic,
            executor,
            engine,
            outputs,
            writer,
            audit,
            health,
            ..
        } = self;
        metrics.set_ready(false);
        stop_before_the_store_closes(periodic, &executor).await;
        // Alerts of steps the pool settled or abandoned just now (published at the next start
        // if the outbox publisher has stopped).
        if let Some(settled) = &outputs.settled {
            settled.flush().await;
        }
        // The tracker's last counts (written once a second while running).
        let mut engine = engine.ok_or_else(no_engine)?;
        let rest = engine.finish();
        if !rest.is_empty()
            && let Err(err) = outputs.state.write(rest).await
        {
            tracing::error!("cannot store the behaviour tracker's last counts: {err}");
        }
        drop(outputs);
        let batches = writer.await.map_err(|source| ServerError::Task {
            what: "state writer",
            source,
        })??;
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
        Ok(Summary {
            counters,
            state_batches: batches,
        })
    }
}

/// The engine is away only while the reading thread holds it, and comes back with it.
fn no_engine() -> ServerError {
    ServerError::Setup("the engine was lost with its reading thread".into())
}

/// Who the audit trail names for the engine's decisions: the stream consumer's name.
fn actor_name(source: &SourceConfig) -> String {
    let consumer = match source {
        SourceConfig::RedisStream(stream) => stream.consumer.clone(),
        _ => None,
    };
    format!(
        "engine:{}",
        consumer.unwrap_or_else(crate::sources::redis_stream::default_consumer_name)
    )
}

fn source_kind(source: &SourceConfig) -> &'static str {
    match source {
        SourceConfig::Jsonl { .. } => "jsonl",
        SourceConfig::RedisStream(_) => "redis_stream",
        SourceConfig::RedisChannel(_) => "redis_channel",
    }
}

/// Alerts go to Redis when configured so, by default when the events come from Redis.
fn publishes_alerts(content: &Content, source: &SourceConfig) -> bool {
    content.config.alerts.enabled.unwrap_or(source.is_redis())
}

async fn open_audit(content: &Content, store: &StateStore) -> Result<Arc<AuditLog>, ServerError> {
    let config = &content.config;
    let files = crate::audit::AuditFiles::from_config(&config.audit, &config.state.path, |p| {
        content.resolve(p)
    });
    Ok(Arc::new(AuditLog::open(store, &files).await?))
}

/// Every decision is audited; steps planned to act are executed (dry-run plans none). Starts
/// the tasks that keep the executor's world in order (firewall expiry, approved steps).
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the arguments are what the executor and its plugins are built over"
)]
async fn build_executor(
    content: &Content,
    yara: &crate::intel::yara::YaraHandle,
    source: &SourceConfig,
    store: &StateStore,
    audit: Arc<AuditLog>,
    actor: String,
    shutdown: &Shutdown,
    periodic: &mut Vec<Periodic>,
) -> Result<Arc<Executor>, ServerError> {
    let config = &content.config;
    let policy = config.actions.policy(&config.redis.url)?;
    let registry =
        crate::actions::plugins::Registry::new(&crate::actions::plugins::PluginSettings {
            redis_url: config.redis.url.clone(),
            blocks: Some(store.pool().clone()),
            firewall: config.actions.firewall,
            webhook: config.actions.webhook.limits(),
            // Checked when the content was loaded; a config that does not check has no server.
            email: config.actions.email.settings().ok().flatten(),
            file_scan: crate::actions::plugins::FileScanSettings {
                rules: yara.clone(),
                roots: config.actions.file_scan.roots.clone(),
                limits: config.actions.file_scan.limits(),
            },
        })?;
    if !config.actions.dry_run {
        restore_firewall_blocks(store, config.actions.firewall, &policy).await;
        periodic.push(expire_firewall_blocks(
            store,
            config.actions.firewall,
            shutdown,
        ));
    }
    let executor = Arc::new(
        Executor::new(
            registry,
            audit,
            crate::approvals::Approvals::new(store),
            policy,
            actor,
        )
        .with_manual_mode_channel(
            publishes_alerts(content, source)
                .then(|| config.alerts.channel.clone())
                .flatten(),
        ),
    );
    executor.load_mode().await?;
    periodic.push(run_approved_steps(&executor, shutdown));
    Ok(executor)
}

/// An engine restarted in manual mode must say so: nothing it plans acts until a person says.
fn log_mode_at_start(mode: &crate::approvals::ModeState) {
    let since = if mode.since_ms == 0 {
        "the start".to_string()
    } else {
        jiff::Timestamp::from_millisecond(mode.since_ms)
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    match mode.mode {
        crate::approvals::Mode::Auto => tracing::info!(
            since = %since,
            by = %crate::text::Inert(&mode.changed_by),
            "mode: auto"
        ),
        crate::approvals::Mode::Manual => tracing::warn!(
            since = %since,
            by = %crate::text::Inert(&mode.changed_by),
            reason = %crate::text::Inert(&mode.reason),
            "mode: manual; every action waits for approval until `palisade mode auto`"
        ),
    }
}

/// `/metrics` and `/healthz` follow the recorded mode within a second, also when another
/// process (`palisade mode`) switched it: the event path updates the gauge only per batch,
/// and an idle engine has none.
/// Indexes the alert outbox into Elasticsearch, on its own task with its own cursor: a slow or
/// down cluster holds up nothing else.
fn start_es_sink(
    config: &crate::sinks::elasticsearch::EsSinkConfig,
    store: StateStore,
    shutdown: &Shutdown,
) -> Result<Periodic, ServerError> {
    let sink = Arc::new(
        crate::sinks::elasticsearch::EsSink::new(config, store)
            .map_err(|e| ServerError::Setup(e.to_string()))?,
    );
    Ok(Periodic::spawn(
        shutdown,
        "indexing alerts into elasticsearch",
        move || {
            let sink = sink.clone();
            async move {
                // Rounds until the outbox is read up to its end (a few at most, so a stop is not
                // held up by a long backlog), then rest a second.
                for _ in 0..8 {
                    if sink.round().await.map_err(|e| e.to_string())? == 0 {
                        break;
                    }
                }
                Ok(())
            }
        },
    ))
}

fn follow_mode(executor: &Arc<Executor>, metrics: &Arc<Metrics>, shutdown: &Shutdown) -> Periodic {
    let executor = executor.clone();
    let metrics = metrics.clone();
    Periodic::spawn(shutdown, "reading the mode", move || {
        let executor = executor.clone();
        let metrics = metrics.clone();
        async move {
            let mode = executor
                .load_mode()
                .await
                .map_err(|err| format!("cannot read the mode: {err}"))?;
            metrics.set_mode(&mode);
            Ok(())
        }
    })
}

/// Blocks outlive the process: put back what a reboot or a flushed ruleset removed.
async fn restore_firewall_blocks(
    store: &StateStore,
    firewall: crate::actions::plugins::firewall::Backend,
    policy: &crate::actions::Policy,
) {
    if let Err(err) = crate::actions::plugins::firewall::expire(store.pool(), firewall).await {
        tracing::error!("cannot expire firewall blocks: {err}");
    }
    match crate::actions::plugins::firewall::reassert(store.pool(), firewall, policy).await {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "re-asserted firewall blocks"),
        Err(err) => tracing::error!("cannot re-assert firewall blocks: {err}"),
    }
}

/// iptables has no timeouts: blocks whose time is up are removed here.
fn expire_firewall_blocks(
    store: &StateStore,
    firewall: crate::actions::plugins::firewall::Backend,
    shutdown: &Shutdown,
) -> Periodic {
    let pool = store.pool().clone();
    Periodic::spawn(shutdown, "expiring firewall blocks", move || {
        let pool = pool.clone();
        async move {
            let count = crate::actions::plugins::firewall::expire(&pool, firewall).await?;
            if count > 0 {
                tracing::info!(count, "firewall blocks expired");
            }
            Ok(())
        }
    })
}

/// People approve queued steps from another process; run what they approved. Notifications
/// held back by a limit are summarised when their window closes.
fn run_approved_steps(executor: &Arc<Executor>, shutdown: &Shutdown) -> Periodic {
    let executor = executor.clone();
    Periodic::spawn(
        shutdown,
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
    )
}

/// Settles the steps an earlier run left `dispatched` (see [`orphans`]).
async fn settle_orphans(
    content: &Content,
    store: &StateStore,
    audit: &AuditLog,
    metrics: &Metrics,
    actor: &str,
) -> Result<usize, ServerError> {
    let config = &content.config;
    let settings = config
        .actions
        .effects
        .settings()
        .map_err(|(_, message)| ServerError::Setup(message))?;
    let sweep = orphans::Sweep {
        actor,
        age_limit: orphans::Sweep::age_limit(&settings, config.actions.timeout.into()),
    };
    Ok(orphans::settle(store, audit, metrics, &sweep).await?)
}

/// Starts the pool that runs steps calling outside systems, over its own connections to the
/// state database (it records their outcomes while the writer writes batches).
async fn start_effects_pool(
    executor: &Arc<crate::actions::Executor>,
    config: &crate::actions::EffectsConfig,
    state_path: &Path,
    metrics: &Arc<Metrics>,
    shutdown: &Shutdown,
) -> Result<(), ServerError> {
    let settings = config
        .settings()
        .map_err(|(_, message)| ServerError::Setup(message))?;
    let store = StateStore::open(state_path).await?;
    executor.start_pool(
        settings,
        store,
        Some(metrics.clone() as _),
        shutdown.clone(),
    );
    Ok(())
}

/// The indicators stored in the state database, and the pulls of the configured feeds: each
/// pull that changes something swaps a rebuilt matcher in, and the next event sees it.
async fn start_intel(
    content: &Content,
    state_path: &Path,
    shutdown: &Shutdown,
) -> Result<IntelHandle, ServerError> {
    let intel = content
        .intel()
        .await
        .map_err(|e| ServerError::Setup(e.to_string()))?;
    let config = &content.config;
    if !config.intel.feeds.is_empty() {
        let feeds_state = StateStore::open(state_path).await?;
        tokio::spawn(crate::intel::pull_on_schedule(
            config.intel.clone(),
            crate::intel::IntelStore::new(&feeds_state),
            content.warninglists.clone(),
            intel.clone(),
            shutdown.clone(),
        ));
    }
    Ok(intel)
}

/// The learner's checks and retraining, when the anomaly stage learns.
async fn start_learning(
    stages: &crate::pipeline::Stages,
    state_path: &Path,
    audit: &Arc<AuditLog>,
    metrics: &Arc<Metrics>,
    shutdown: &Shutdown,
) -> Result<(), ServerError> {
    let Some(learner) = &stages.learner else {
        return Ok(());
    };
    metrics.set_learning(&learner.status());
    // Its own connections: the writer owns the first store, and training reads the sample
    // while batches are written.
    let learning_state = StateStore::open(state_path).await?;
    tokio::spawn(crate::engine::learning::run(
        learner.clone(),
        stages.anomaly.clone(),
        learning_state.pool().clone(),
        Some(audit.clone()),
        Some(metrics.clone()),
        shutdown.clone(),
        learner.status().model_id,
    ));
    Ok(())
}

/// Watches rules, playbooks, the config and the model file; `None` when it cannot (out of
/// inotify watches, say): the engine runs on without picking up changes.
#[expect(
    clippy::too_many_arguments,
    reason = "each is a shared handle the reload task keeps; a struct would only rename them"
)]
fn start_reload(
    content: &Arc<Content>,
    intel: &IntelHandle,
    stages: &crate::pipeline::Stages,
    yara: &crate::intel::yara::YaraHandle,
    audit: &Arc<AuditLog>,
    actor: String,
    metrics: &Arc<Metrics>,
    shutdown: &Shutdown,
) -> Option<std::sync::mpsc::Receiver<crate::pipeline::Pipeline>> {
    let reloads = crate::engine::reload::spawn(
        crate::engine::reload::ReloadSettings {
            dir: content.dir.clone(),
            config_file: content.config_path.clone(),
            current: content.clone(),
            intel: intel.clone(),
            stages: stages.clone(),
            yara: yara.clone(),
            dry_run: content.config.actions.dry_run,
            audit: Some(audit.clone()),
            actor,
            metrics: metrics.clone(),
        },
        shutdown.clone(),
    );
    match reloads {
        Ok(reloads) => Some(reloads),
        Err(err) => {
            tracing::warn!("{err}; changes to rules and playbooks need a restart");
            None
        }
    }
}
