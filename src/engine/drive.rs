//! Driving an [`Engine`] from each kind of source. Each driver reads a batch, has the engine
//! handle it, commits what it produced and only then acknowledges the input, until the source
//! ends or shutdown fires.
//!
//! Committing decides each detection once (`record`): the batch's decisions are stored
//! first, and a detection whose key (event id, rule) is already stored — a redelivered event —
//! is dropped with its steps and alert; then the executor acts on the new steps; then their
//! outcomes are stored, with the alerts that report them written to the outbox in the same
//! transaction. A task beside the driver ([`Outbox`]) publishes the outbox to Redis in order;
//! acknowledging does not wait for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::actions::Executor;
use crate::sinks::AlertPublisher;
use crate::sources::jsonl::JsonlReader;
use crate::sources::redis_channel::ChannelSource;
use crate::sources::redis_stream::{Entry, StreamSource};
use crate::state::StateWriter;

use super::{Engine, Handled, Shutdown, ShutdownTrigger};

/// Why a driver stopped before its input ended.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("cannot read `{origin}`: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// Where a handled batch goes: the state writer, alerts on Redis, and the executor.
pub struct Outputs {
    /// How committed batches are shown on standard output.
    pub format: super::AlertFormat,
    pub state: StateWriter,
    pub alerts: Option<AlertPublisher>,
    pub executor: Option<Arc<Executor>>,
    /// Where decided steps, latency and queue depths are counted.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Alerts waiting for the outcomes of their steps in the effects pool.
    pub settled: Option<Arc<SettledAlerts>>,
}

/// Commits one batch. When it has detections: its decisions (detections and their steps as
/// planned) are stored before anything acts, and detections already on record are dropped
/// with their steps (counted, and noted in the log); the executor then decides what becomes of
/// each new step; the batch is shown and counted; and the steps' outcomes are stored together
/// with the alerts that report them (into the outbox, when `alerts` are published) and the
/// batch's other rows. A crash after the executor acted and before the outcomes were stored
/// leaves the steps `planned` on record, and a redelivery does not act on them again.
async fn record(handled: &mut Handled, outputs: &Outputs, alerts: bool) -> Result<(), DriveError> {
    record_later(handled, outputs, alerts).await?.wait().await
}

/// A batch's last write, handed to the state writer and not yet known to be committed. Its
/// input is acknowledged only after [`Committing::wait`]; meanwhile the next batch can be
/// decided, and the writer commits both together when they meet in its queue.
#[must_use = "the batch is only stored once this is awaited"]
struct Committing {
    stored: crate::state::Stored,
    /// Steps in the effects pool, held until their rows are stored: a pooled outcome never
    /// overtakes its row.
    dispatched: Option<crate::actions::pool::Dispatched>,
}

impl Committing {
    fn stored() -> Committing {
        Committing {
            stored: crate::state::Stored::nothing(),
            dispatched: None,
        }
    }

    async fn wait(self) -> Result<(), DriveError> {
        self.stored.wait().await?;
        drop(self.dispatched);
        Ok(())
    }
}

/// [`record`], up to handing the last write to the state writer: deciding and acting are
/// done when this returns, storing the outcomes may not be.
async fn record_later(
    handled: &mut Handled,
    outputs: &Outputs,
    alerts: bool,
) -> Result<Committing, DriveError> {
    if handled.state.detections.is_empty() {
        if let Some(executor) = &outputs.executor
            && !handled.degrade.is_empty()
        {
            drop(executor.run(&mut [], &[], &handled.degrade).await?);
        }
        if handled.state.is_empty() {
            return Ok(Committing::stored());
        }
        let stored = outputs
            .state
            .write_later(std::mem::take(&mut handled.state))
            .await?;
        return Ok(Committing {
            stored,
            dispatched: None,
        });
    }
    // Only the decisions are stored before acting (a small transaction, so acting waits
    // little); the batch's other rows go with the outcomes, before the input is acknowledged.
    let mut rest = std::mem::take(&mut handled.state);
    let decisions = crate::state::Batch {
        detections: std::mem::take(&mut rest.detections),
        actions: std::mem::take(&mut rest.actions),
        ..crate::state::Batch::default()
    };
    let decided = outputs.state.decide(decisions, alerts).await?;
    if decided.recognised > 0 {
        if let Some(metrics) = &outputs.metrics {
            metrics.redelivered(decided.recognised as u64);
        }
        tracing::info!(
            detections = decided.recognised,
            "recognised detections of redelivered events as already decided: not acted on or alerted again"
        );
    }
    handled.state.detections = decided.detections;
    handled.state.actions = decided.actions;
    let owed = owed_alerts(decided.unrecorded, decided.unrecorded_actions);
    if handled.state.detections.is_empty() {
        if owed.is_empty() && rest.is_empty() {
            return Ok(Committing::stored());
        }
        let stored = outputs.state.outcomes_later(rest, Vec::new(), owed).await?;
        return Ok(Committing {
            stored,
            dispatched: None,
        });
    }
    // Steps handed to the effects pool are stored as `dispatched`; `dispatched` is held until
    // the outcomes are stored, so a pooled outcome never overtakes its row.
    let dispatched = match &outputs.executor {
        Some(executor) => Some(
            executor
                .run(
                    &mut handled.state.actions,
                    &handled.state.detections,
                    &handled.degrade,
                )
                .await?,
        ),
        None => None,
    };
    if let Some(metrics) = &outputs.metrics {
        for row in &handled.state.detections {
            metrics.detection(&row.detection.rule, row.detection.stage.as_str());
            metrics.detection_status(row.detection.status);
        }
        // A dispatched step is counted when its outcome arrives.
        for action in &handled.state.actions {
            if action.status != crate::actions::ActionStatus::Dispatched {
                metrics.action(action.action, action.status.as_str());
            }
        }
        if let Some(executor) = &outputs.executor {
            metrics.set_manual_mode(executor.is_manual());
        }
    }
    crate::sinks::show(outputs.format, &handled.state);
    let mut alerts = if alerts {
        // A detection with a step in the effects pool gets its alert when that step's outcome
        // arrives ([`SettledAlerts`]), so the alert says what happened, not `dispatched`.
        let (now, later) = match &outputs.settled {
            Some(settled) => settled.defer(&handled.state),
            None => (handled.state.detections.iter().collect(), Vec::new()),
        };
        let alerts = alerts_of(&now, &handled.state.actions);
        if let Some(settled) = &outputs.settled {
            settled.wait_for(later, &handled.state.actions);
        }
        alerts
    } else {
        Vec::new()
    };
    alerts.extend(owed);
    let state = std::mem::take(&mut handled.state);
    let stored = outputs
        .state
        .outcomes_later(rest, state.actions, alerts)
        .await?;
    Ok(Committing { stored, dispatched })
}

/// A detection's event id and rule.
type DetectionKey = (String, String);

/// A detection whose alert waits, with its steps as decided.
type AwaitingAlert = (
    crate::state::DetectionRow,
    Vec<crate::actions::ActionRecord>,
);

/// Alerts of detections whose steps are in the effects pool, written to the outbox when the
/// last of those steps has its outcome (or, for a step abandoned at shutdown, when the engine
/// stops; after a crash, the next start writes it), each with the outcomes of all its steps.
#[derive(Default)]
pub struct SettledAlerts {
    waiting: std::sync::Mutex<std::collections::HashMap<DetectionKey, AwaitingAlert>>,
    state: std::sync::OnceLock<StateWriter>,
    /// How the settled outcomes are shown on standard output.
    format: std::sync::OnceLock<super::AlertFormat>,
}

impl SettledAlerts {
    /// Nothing waiting yet; [`SettledAlerts::write_through`] names the state writer before the
    /// first batch.
    pub fn waiting() -> Arc<SettledAlerts> {
        Arc::new(SettledAlerts::default())
    }

    /// Alerts go out through `state`'s outbox; settled outcomes are shown in `format`.
    pub fn write_through(&self, state: StateWriter, format: super::AlertFormat) {
        let _ = self.state.set(state);
        let _ = self.format.set(format);
    }

    /// The hook the executor calls when a detection's last pooled step has its outcome.
    pub fn hook(self: &Arc<Self>) -> crate::actions::executor::SettledHook {
        let settled = Arc::downgrade(self);
        Arc::new(move |event_id: &str, rule: &str| {
            let Some(settled) = settled.upgrade() else {
                return;
            };
            let key = (event_id.to_string(), rule.to_string());
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { settled.settle(vec![key]).await });
            }
        })
    }

    /// Splits a batch's detections into those whose alert can be written now and those with a
    /// step in the pool.
    fn defer<'a>(
        &self,
        batch: &'a crate::state::Batch,
    ) -> (
        Vec<&'a crate::state::DetectionRow>,
        Vec<&'a crate::state::DetectionRow>,
    ) {
        let pooled: std::collections::HashSet<(&str, &str)> = batch
            .actions
            .iter()
            .filter(|a| a.status == crate::actions::ActionStatus::Dispatched)
            .map(|a| (a.event_id.as_str(), &*a.rule))
            .collect();
        batch.detections.iter().partition(|row| {
            !pooled.contains(&(row.detection.event_id.as_str(), &*row.detection.rule))
        })
    }

    fn wait_for(
        &self,
        rows: Vec<&crate::state::DetectionRow>,
        actions: &[crate::actions::ActionRecord],
    ) {
        if rows.is_empty() {
            return;
        }
        let Ok(mut waiting) = self.waiting.lock() else {
            return;
        };
        for row in rows {
            let key = (
                row.detection.event_id.clone(),
                row.detection.rule.to_string(),
            );
            let steps = actions
                .iter()
                .filter(|a| a.event_id == key.0 && *a.rule == *key.1)
                .cloned()
                .collect();
            waiting.insert(key, (row.clone(), steps));
        }
    }

    /// Writes the alerts of these detections with their steps' recorded outcomes.
    async fn settle(&self, keys: Vec<(String, String)>) {
        let Some(state) = self.state.get() else {
            return;
        };
        let mut alerts = Vec::new();
        for key in keys {
            let entry = match self.waiting.lock() {
                Ok(mut waiting) => waiting.remove(&key),
                Err(_) => None,
            };
            let Some((row, mut steps)) = entry else {
                continue;
            };
            let pooled: Vec<bool> = steps
                .iter()
                .map(|s| s.status == crate::actions::ActionStatus::Dispatched)
                .collect();
            match state.store().step_outcomes(&key.0, &key.1).await {
                Ok(outcomes) => {
                    for step in &mut steps {
                        if let Some((status, reason)) =
                            outcomes.get(&(step.playbook.to_string(), step.step.clone()))
                        {
                            step.status = *status;
                            step.reason.clone_from(reason);
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!("cannot read the outcomes of pooled steps for an alert: {err}")
                }
            }
            let refs: Vec<&crate::actions::ActionRecord> = steps.iter().collect();
            let settled: Vec<&crate::actions::ActionRecord> = refs
                .iter()
                .zip(&pooled)
                .filter(|(_, pooled)| **pooled)
                .map(|(step, _)| *step)
                .collect();
            crate::sinks::show_settled(
                self.format
                    .get()
                    .copied()
                    .unwrap_or(super::AlertFormat::Quiet),
                &row,
                &settled,
            );
            alerts.push(crate::state::OutboxAlert {
                alert_id: super::alert_id(&row),
                document: super::alert(&row, &refs).to_string(),
            });
        }
        if !alerts.is_empty()
            && let Err(err) = state.outcomes(Vec::new(), alerts).await
        {
            tracing::error!("cannot write the alerts of settled pooled steps: {err}");
        }
    }

    /// Writes every alert still waiting (at shutdown, once the pool is closed and its
    /// abandoned steps are recorded).
    pub async fn flush(&self) {
        let keys: Vec<(String, String)> = match self.waiting.lock() {
            Ok(waiting) => waiting.keys().cloned().collect(),
            Err(_) => Vec::new(),
        };
        if !keys.is_empty() {
            self.settle(keys).await;
        }
    }
}

/// What a step decided before a crash, whose outcome was never recorded, says in its alert.
const OUTCOME_UNRECORDED: &str = "the engine stopped after deciding this step and before recording its outcome; it is not run again (the audit trail has what was done)";

/// The alerts still owed for detections decided before a crash whose outcome never reached the
/// state file: built from the redelivered plan, each step that was to act marked as such.
fn owed_alerts(
    detections: Vec<crate::state::DetectionRow>,
    mut actions: Vec<crate::actions::ActionRecord>,
) -> Vec<crate::state::OutboxAlert> {
    if detections.is_empty() {
        return Vec::new();
    }
    tracing::warn!(
        detections = detections.len(),
        "detections decided before the engine stopped had no recorded outcome: their steps are not run again, their alerts are written now"
    );
    for action in &mut actions {
        if action.status == crate::actions::ActionStatus::Planned {
            action.reason = Some(OUTCOME_UNRECORDED.into());
        }
    }
    alerts_for(&crate::state::Batch {
        detections,
        actions,
        ..Default::default()
    })
}

/// The alert documents of a decided batch, one per detection, each with its steps' outcomes.
fn alerts_for(batch: &crate::state::Batch) -> Vec<crate::state::OutboxAlert> {
    alerts_of(&batch.detections.iter().collect::<Vec<_>>(), &batch.actions)
}

/// The alert documents of these detections, each with its steps among `actions`.
fn alerts_of(
    detections: &[&crate::state::DetectionRow],
    actions: &[crate::actions::ActionRecord],
) -> Vec<crate::state::OutboxAlert> {
    let mut steps: std::collections::HashMap<(&str, &str), Vec<&crate::actions::ActionRecord>> =
        std::collections::HashMap::new();
    for action in actions {
        steps
            .entry((action.event_id.as_str(), &*action.rule))
            .or_default()
            .push(action);
    }
    detections
        .iter()
        .map(|row| {
            let key = (row.detection.event_id.as_str(), &*row.detection.rule);
            let actions = steps.get(&key).map(Vec::as_slice).unwrap_or_default();
            crate::state::OutboxAlert {
                alert_id: super::alert_id(row),
                document: super::alert(row, actions).to_string(),
            }
        })
        .collect()
}

/// Outbox rows published per round.
const OUTBOX_ROWS: usize = 256;

/// How often the publisher looks at the outbox when nothing woke it (alerts written by another
/// process, or left by a run that stopped before publishing them).
const OUTBOX_POLL: Duration = Duration::from_secs(1);

/// How long a stopping driver lets the publisher go on sending what is in the outbox; what is
/// left is sent at the next start.
const OUTBOX_DRAIN: Duration = Duration::from_secs(5);

/// The task that publishes the outbox: alerts in the order they were stored, each row marked
/// published once Redis took it. It starts with what an earlier run left unpublished.
pub struct Outbox {
    bell: Arc<Notify>,
    finishing: Arc<AtomicBool>,
    stop: ShutdownTrigger,
    task: JoinHandle<AlertPublisher>,
}

impl Outbox {
    /// Starts publishing with the outputs' publisher (taken from them), if they have one.
    pub fn start(outputs: &mut Outputs, runtime: &tokio::runtime::Handle) -> Option<Outbox> {
        let publisher = outputs.alerts.take()?;
        let bell = outputs.state.outbox_bell();
        let finishing = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = Shutdown::new();
        let task = runtime.spawn(publish_outbox(
            publisher,
            outputs.state.clone(),
            bell.clone(),
            finishing.clone(),
            stopped,
        ));
        Some(Outbox {
            bell,
            finishing,
            stop,
            task,
        })
    }

    /// Stops at once (the commit path failed): what is in the outbox stays for the next start.
    pub async fn abandon(self) {
        self.stop.trigger();
        let _ = self.task.await;
    }

    /// Publishes what is left in the outbox, for at most 5 s, and stops; the
    /// publisher goes back to the outputs.
    pub async fn finish(self, outputs: &mut Outputs) {
        self.finishing.store(true, Ordering::SeqCst);
        self.bell.notify_one();
        let stop = self.stop;
        let mut task = self.task;
        let publisher = tokio::select! {
            done = &mut task => done.ok(),
            () = tokio::time::sleep(OUTBOX_DRAIN) => {
                stop.trigger();
                task.await.ok()
            }
        };
        if let Some(publisher) = publisher {
            outputs.alerts = Some(publisher);
        }
    }
}

async fn publish_outbox(
    mut publisher: AlertPublisher,
    state: StateWriter,
    bell: Arc<Notify>,
    finishing: Arc<AtomicBool>,
    stop: Shutdown,
) -> AlertPublisher {
    let mut maybe_sent = true;
    loop {
        if stop.is_triggered() {
            break;
        }
        let rows = match state.store().unpublished(OUTBOX_ROWS).await {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!("cannot read the alert outbox: {err}");
                if finishing.load(Ordering::SeqCst) {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(OUTBOX_POLL) => {}
                    () = stop.wait() => {}
                }
                continue;
            }
        };
        let Some(&(last, _)) = rows.last() else {
            if finishing.load(Ordering::SeqCst) {
                break;
            }
            tokio::select! {
                () = bell.notified() => {}
                () = tokio::time::sleep(OUTBOX_POLL) => {}
                () = stop.wait() => {}
            }
            continue;
        };
        let documents: Vec<String> = rows.into_iter().map(|(_, document)| document).collect();
        // The first rows after a start may have been sent by the run before, which stopped
        // before marking them.
        let first = std::mem::replace(&mut maybe_sent, false);
        if !publisher.publish(&documents, first, &stop).await {
            // Stopped before Redis took them: they stay in the outbox for the next start.
            break;
        }
        if let Err(err) = state.published(last).await {
            // Sent, but not marked: the next start finds them on the stream's tail and does
            // not append them again (the channel gets them again).
            tracing::warn!("cannot mark alerts published: {err}");
            break;
        }
    }
    publisher
}

/// Hands CPU work to the current thread without starving the runtime's other tasks.
fn cpu<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Watches commits as they happen; the pipeline bench uses it to time each detection from
/// publish to recorded and to dispatched.
pub trait CommitProbe {
    /// Whether the probe wants to be called (saves collecting event ids otherwise).
    fn active(&self) -> bool;
    /// The detections of these events are now decided and stored.
    fn recorded(&mut self, event_ids: &[String]);
    /// Their steps are acted on and their outcomes and alerts stored (the alerts are in the
    /// outbox, published by [`Outbox`] without holding up the input).
    fn dispatched(&mut self, event_ids: &[String]);
}

/// The probe that watches nothing.
pub struct NoProbe;

impl CommitProbe for NoProbe {
    fn active(&self) -> bool {
        false
    }
    fn recorded(&mut self, _: &[String]) {}
    fn dispatched(&mut self, _: &[String]) {}
}

/// `stream/entry-id`, formatted only for rejected entries.
struct EntryOrigin<'a> {
    stream: &'a str,
    id: &'a str,
}

impl std::fmt::Display for EntryOrigin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.stream, self.id)
    }
}

/// One handled batch on its way from the reading task to the committing task.
struct Pending {
    /// When its entries were read, for the latency histogram.
    read_at: std::time::Instant,
    handled: Handled,
    done: Vec<String>,
    rejected: Vec<(Entry, String, String)>,
}

impl Pending {
    /// Appends a later batch, keeping the order in which entries were read.
    fn absorb(&mut self, later: Pending) {
        self.handled.absorb(later.handled);
        self.done.extend(later.done);
        self.rejected.extend(later.rejected);
    }
}

/// Batches handled but not yet committed; a bound keeps memory and redelivery after a crash
/// small.
const PENDING_BATCHES: usize = 4;

/// Batches read ahead of the one being handled, so the engine never waits on Redis for its
/// next batch while there is one to read.
const READ_AHEAD_BATCHES: usize = 1;

/// A Redis stream, in four tasks: a reading task fetches batches; this one handles them; a
/// committing task decides and acts on each batch and hands its last write to the state writer
/// (`record_later`); an acknowledging task waits for that write and only then acknowledges the
/// batch (rejected entries go to the dead-letter stream with their reason). Alerts are
/// published from the outbox beside them. Reading, handling, committing and acknowledging
/// overlap, and batches are committed and acknowledged in the order they were read.
/// On shutdown the reading stops and what was already read is still handled and committed.
pub async fn drive_stream<P: CommitProbe + Send + 'static>(
    engine: &mut Engine,
    mut source: StreamSource,
    outputs: Outputs,
    shutdown: &Shutdown,
    probe: P,
) -> Result<P, DriveError> {
    let (queue, mut pending) = tokio::sync::mpsc::channel::<Pending>(PENDING_BATCHES);
    let mut outputs = outputs;
    let outbox = Outbox::start(&mut outputs, &tokio::runtime::Handle::current());
    let alerts = outbox.is_some();
    // Batches decided and acted on, whose last write is on its way to the state file, in the
    // order they were read: acknowledged once it is stored.
    let (decided, mut to_acknowledge) =
        tokio::sync::mpsc::channel::<(Pending, Vec<String>, Committing)>(PENDING_BATCHES);
    let probing = probe.active();
    let acknowledger = {
        let shutdown = shutdown.clone();
        let mut acker = source.acker();
        let mut probe = probe;
        let metrics = outputs.metrics.clone();
        let state = outputs.state.clone();
        tokio::spawn(async move {
            while let Some((batch, detected, committing)) = to_acknowledge.recv().await {
                committing.wait().await?;
                if !detected.is_empty() {
                    probe.recorded(&detected);
                    probe.dispatched(&detected);
                }
                if !acker.dead_letter(&batch.rejected, &shutdown).await
                    || !acker.ack(&batch.done, &shutdown).await
                {
                    break;
                }
                if let Some(metrics) = &metrics {
                    metrics.latency(batch.read_at.elapsed(), batch.done.len() as u64);
                    metrics.set_queues(to_acknowledge.len(), state.queued());
                }
            }
            Ok::<P, DriveError>(probe)
        })
    };
    let committer = {
        tokio::spawn(async move {
            while let Some(mut batch) = pending.recv().await {
                // Group commit: when the reader got ahead, the batches waiting are committed
                // together, so a backlog costs one round of state writes and Redis calls per
                // group instead of per batch; with no backlog nothing waits and nothing changes.
                while let Ok(more) = pending.try_recv() {
                    batch.absorb(more);
                }
                let detected: Vec<String> = if probing {
                    batch
                        .handled
                        .state
                        .detections
                        .iter()
                        .map(|d| d.detection.event_id.clone())
                        .collect()
                } else {
                    Vec::new()
                };
                let committing = record_later(&mut batch.handled, &outputs, alerts).await?;
                if decided.send((batch, detected, committing)).await.is_err() {
                    // The acknowledging task stopped: it says why.
                    break;
                }
            }
            Ok::<Outputs, DriveError>(outputs)
        })
    };
    let stream = source.stream().to_string();
    let (read, mut fetched) = tokio::sync::mpsc::channel::<Vec<Entry>>(READ_AHEAD_BATCHES);
    let reader = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            while let Some(entries) = source.next_batch(&shutdown).await {
                if read.send(entries).await.is_err() {
                    break;
                }
            }
        })
    };
    while let Some(entries) = fetched.recv().await {
        engine.apply_reload();
        let mut batch = Pending {
            read_at: std::time::Instant::now(),
            handled: Handled::default(),
            done: Vec::with_capacity(entries.len()),
            rejected: Vec::new(),
        };
        cpu(|| {
            for entry in entries {
                let origin = EntryOrigin {
                    stream: &stream,
                    id: &entry.id,
                };
                let handled = match entry.missing.clone() {
                    Some(message) => Err(engine.reject(
                        &origin,
                        &entry.payload,
                        crate::event::NormalizeError {
                            kind: crate::event::RejectKind::MissingField,
                            message,
                        },
                    )),
                    None => engine.handle(&origin, &entry.payload, &mut batch.handled),
                };
                match handled {
                    Ok(()) => batch.done.push(entry.id),
                    Err(err) => {
                        batch
                            .rejected
                            .push((entry, err.kind.as_str().to_string(), err.message))
                    }
                }
            }
            engine.end_batch(&mut batch.handled);
        });
        if queue.send(batch).await.is_err() {
            // The committer stopped (shutdown, or a state write failed): it says why below.
            break;
        }
    }
    drop(fetched);
    drop(queue);
    let _ = reader.await;
    let task_failed = |e: tokio::task::JoinError| {
        DriveError::State(crate::state::StateError::Failed(format!(
            "the committing task failed: {e}"
        )))
    };
    let committed = committer.await.map_err(task_failed);
    let acknowledged = acknowledger.await.map_err(task_failed);
    let committed = match (committed, acknowledged) {
        (Ok(Ok(outputs)), Ok(Ok(probe))) => Ok(Ok((probe, outputs))),
        // The acknowledging side's failure is the cause when both stopped.
        (_, Ok(Err(err)) | Err(err)) | (Ok(Err(err)) | Err(err), _) => Ok(Err(err)),
    };
    match committed {
        Ok(Ok((probe, mut outputs))) => {
            if let Some(outbox) = outbox {
                outbox.finish(&mut outputs).await;
            }
            Ok(probe)
        }
        Ok(Err(err)) | Err(err) => {
            if let Some(outbox) = outbox {
                outbox.abandon().await;
            }
            Err(err)
        }
    }
}

/// A Redis pub/sub channel: nothing to acknowledge.
pub async fn drive_channel(
    engine: &mut Engine,
    source: &mut ChannelSource,
    outputs: &mut Outputs,
    shutdown: &Shutdown,
) -> Result<(), DriveError> {
    let mut handled = Handled::default();
    let outbox = Outbox::start(outputs, &tokio::runtime::Handle::current());
    let alerts = outbox.is_some();
    let origin = format!("channel {}", source.channel());
    let origin: &(dyn std::fmt::Display + Sync) = &origin;
    while let Some(messages) = source.next_batch(shutdown).await {
        engine.apply_reload();
        let read_at = std::time::Instant::now();
        handled.clear();
        cpu(|| {
            for message in &messages {
                let _ = engine.handle(origin, message, &mut handled);
            }
            engine.end_batch(&mut handled);
        });
        if let Err(err) = record(&mut handled, outputs, alerts).await {
            if let Some(outbox) = outbox {
                outbox.abandon().await;
            }
            return Err(err);
        }
        if let Some(metrics) = &outputs.metrics {
            metrics.latency(read_at.elapsed(), messages.len() as u64);
        }
    }
    if let Some(outbox) = outbox {
        outbox.finish(outputs).await;
    }
    Ok(())
}

/// JSON lines, on a blocking thread (a file or a terminal cannot be read asynchronously):
/// each line is handled as it arrives, so a person piping events in sees alerts at once.
pub fn drive_jsonl(
    engine: &mut Engine,
    reader: JsonlReader,
    origin: &str,
    outputs: &mut Outputs,
    shutdown: &Shutdown,
    runtime: &tokio::runtime::Handle,
) -> Result<(), DriveError> {
    let outbox = Outbox::start(outputs, runtime);
    let result = read_jsonl(
        engine,
        reader,
        origin,
        outputs,
        shutdown,
        runtime,
        outbox.is_some(),
    );
    if let Some(outbox) = outbox {
        match &result {
            Ok(()) => runtime.block_on(outbox.finish(outputs)),
            Err(_) => runtime.block_on(outbox.abandon()),
        }
    }
    result
}

/// [`drive_jsonl`]'s loop.
fn read_jsonl(
    engine: &mut Engine,
    mut reader: JsonlReader,
    origin: &str,
    outputs: &mut Outputs,
    shutdown: &Shutdown,
    runtime: &tokio::runtime::Handle,
    alerts: bool,
) -> Result<(), DriveError> {
    let mut handled = Handled::default();
    while !shutdown.is_triggered() {
        let line = reader.next_line().map_err(|source| DriveError::Read {
            origin: origin.to_string(),
            source,
        })?;
        let Some(line) = line else { break };
        let read_at = std::time::Instant::now();
        engine.apply_reload();
        handled.clear();
        if engine.handle_line(&origin, &line, &mut handled).is_err() {
            continue;
        }
        engine.end_batch(&mut handled);
        if handled.state.is_empty() {
            continue;
        }
        let decided = !handled.state.detections.is_empty() || !handled.degrade.is_empty();
        if decided && (alerts || outputs.executor.is_some()) {
            runtime.block_on(record(&mut handled, outputs, alerts))?;
        } else {
            // Nothing waits on the write: show it, queue it and read on.
            crate::sinks::show(outputs.format, &handled.state);
            outputs
                .state
                .blocking_send(std::mem::take(&mut handled.state))?;
        }
        if let Some(metrics) = &outputs.metrics {
            metrics.latency(read_at.elapsed(), 1);
        }
    }
    Ok(())
}
