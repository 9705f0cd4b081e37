//! Driving an [`Engine`] from each kind of source. Each driver reads a batch, has the engine
//! handle it, commits what it produced (state written, alerts published) and only then
//! acknowledges the input, until the source ends or shutdown fires.

use std::sync::Arc;

use crate::actions::Executor;
use crate::sinks::AlertPublisher;
use crate::sources::jsonl::JsonlReader;
use crate::sources::redis_channel::ChannelSource;
use crate::sources::redis_stream::{Entry, StreamSource};
use crate::state::StateWriter;

use super::{Engine, Handled, Shutdown};

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
}

/// The first half of committing a batch: the executor decides what became of each step, the
/// batch is shown, and its state is stored (waiting until it is).
///
/// Steps handed to the effects pool are stored as `dispatched`; `_dispatched` is held until the
/// batch is stored, so their outcomes (recorded by the pool) never overtake the rows.
async fn record(handled: &mut Handled, outputs: &Outputs) -> Result<(), DriveError> {
    let _dispatched = match &outputs.executor {
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
    if !handled.state.is_empty() {
        outputs
            .state
            .write(std::mem::take(&mut handled.state))
            .await?;
    }
    Ok(())
}

/// The second half: the batch's alerts go out. False when shutdown fired before they were out.
async fn dispatch(handled: &Handled, outputs: &mut Outputs, shutdown: &Shutdown) -> bool {
    match &mut outputs.alerts {
        Some(publisher) => publisher.publish(&handled.alerts, shutdown).await,
        None => true,
    }
}

/// Commits one batch: state first, then alerts. False when shutdown fired before the alerts
/// were out.
async fn commit(
    handled: &mut Handled,
    outputs: &mut Outputs,
    shutdown: &Shutdown,
) -> Result<bool, DriveError> {
    record(handled, outputs).await?;
    Ok(dispatch(handled, outputs, shutdown).await)
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
    /// The detections of these events are now stored.
    fn recorded(&mut self, event_ids: &[String]);
    /// Their alerts (and so their planned actions) are now out.
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

/// A Redis stream, in three tasks: a reading task fetches batches; this one handles them; a
/// committing task writes each batch's state, publishes its alerts, and only then acknowledges
/// it (rejected entries go to the dead-letter stream with their reason). Reading, handling and
/// committing overlap, and batches are committed and acknowledged in the order they were read.
/// On shutdown the reading stops and what was already read is still handled and committed.
pub async fn drive_stream<P: CommitProbe + Send + 'static>(
    engine: &mut Engine,
    mut source: StreamSource,
    outputs: Outputs,
    shutdown: &Shutdown,
    probe: P,
) -> Result<P, DriveError> {
    let (queue, mut pending) = tokio::sync::mpsc::channel::<Pending>(PENDING_BATCHES);
    let committer = {
        let shutdown = shutdown.clone();
        let mut acker = source.acker();
        let mut outputs = outputs;
        let mut probe = probe;
        tokio::spawn(async move {
            while let Some(mut batch) = pending.recv().await {
                // Group commit: when the reader got ahead, the batches waiting are committed
                // together, so a backlog costs one round of state writes and Redis calls per
                // group instead of per batch; with no backlog nothing waits and nothing changes.
                while let Ok(more) = pending.try_recv() {
                    batch.absorb(more);
                }
                let detected: Vec<String> = if probe.active() {
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
                record(&mut batch.handled, &outputs).await?;
                if !detected.is_empty() {
                    probe.recorded(&detected);
                }
                if !dispatch(&batch.handled, &mut outputs, &shutdown).await {
                    break;
                }
                if !detected.is_empty() {
                    probe.dispatched(&detected);
                }
                if !acker.dead_letter(&batch.rejected, &shutdown).await
                    || !acker.ack(&batch.done, &shutdown).await
                {
                    break;
                }
                if let Some(metrics) = &outputs.metrics {
                    metrics.latency(batch.read_at.elapsed(), batch.done.len() as u64);
                    metrics.set_queues(pending.len(), outputs.state.queued());
                }
            }
            Ok::<P, DriveError>(probe)
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
    committer.await.map_err(|e| {
        DriveError::State(crate::state::StateError::Failed(format!(
            "the committing task failed: {e}"
        )))
    })?
}

/// A Redis pub/sub channel: nothing to acknowledge.
pub async fn drive_channel(
    engine: &mut Engine,
    source: &mut ChannelSource,
    outputs: &mut Outputs,
    shutdown: &Shutdown,
) -> Result<(), DriveError> {
    let mut handled = Handled::default();
    let origin = format!("channel {}", source.channel());
    let origin: &dyn std::fmt::Display = &origin;
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
        if !commit(&mut handled, outputs, shutdown).await? {
            break;
        }
        if let Some(metrics) = &outputs.metrics {
            metrics.latency(read_at.elapsed(), messages.len() as u64);
        }
    }
    Ok(())
}

/// JSON lines, on a blocking thread (a file or a terminal cannot be read asynchronously):
/// each line is handled as it arrives, so a person piping events in sees alerts at once.
pub fn drive_jsonl(
    engine: &mut Engine,
    mut reader: JsonlReader,
    origin: &str,
    outputs: &mut Outputs,
    shutdown: &Shutdown,
    runtime: &tokio::runtime::Handle,
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
        if decided && (outputs.alerts.is_some() || outputs.executor.is_some()) {
            if !runtime.block_on(commit(&mut handled, outputs, shutdown))? {
                break;
            }
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
