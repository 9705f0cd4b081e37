//! Driving an [`Engine`] from each kind of source. Each driver reads a batch, has the engine
//! handle it, commits what it produced (state written, alerts published) and only then
//! acknowledges the input, until the source ends or shutdown fires.

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

/// Commits one batch: state first (waiting until it is stored), then alerts. False when
/// shutdown fired before the alerts were out.
async fn commit(
    handled: &mut Handled,
    state: &StateWriter,
    alerts: &mut Option<AlertPublisher>,
    shutdown: &Shutdown,
) -> Result<bool, DriveError> {
    if !handled.state.is_empty() {
        state.write(std::mem::take(&mut handled.state)).await?;
    }
    if let Some(publisher) = alerts
        && !publisher.publish(&handled.alerts, shutdown).await
    {
        return Ok(false);
    }
    Ok(true)
}

/// Hands CPU work to the current thread without starving the runtime's other tasks.
fn cpu<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// A Redis stream: acknowledge each batch once committed; rejected entries go to the
/// dead-letter stream with their reason.
pub async fn drive_stream(
    engine: &mut Engine,
    source: &mut StreamSource,
    state: &StateWriter,
    alerts: &mut Option<AlertPublisher>,
    shutdown: &Shutdown,
) -> Result<(), DriveError> {
    let mut handled = Handled::default();
    let stream = source.stream().to_string();
    while let Some(entries) = source.next_batch(shutdown).await {
        handled.clear();
        let mut done = Vec::with_capacity(entries.len());
        let mut rejected: Vec<(Entry, String, String)> = Vec::new();
        cpu(|| {
            for entry in entries {
                let origin = format!("{stream}/{}", entry.id);
                match engine.handle(&origin, &entry.payload, &mut handled) {
                    Ok(()) => done.push(entry.id),
                    Err(err) => rejected.push((entry, err.kind.as_str().to_string(), err.message)),
                }
            }
        });
        if !commit(&mut handled, state, alerts, shutdown).await? {
            break;
        }
        if !source.dead_letter(&rejected, shutdown).await || !source.ack(&done, shutdown).await {
            break;
        }
    }
    Ok(())
}

/// A Redis pub/sub channel: nothing to acknowledge.
pub async fn drive_channel(
    engine: &mut Engine,
    source: &mut ChannelSource,
    state: &StateWriter,
    alerts: &mut Option<AlertPublisher>,
    shutdown: &Shutdown,
) -> Result<(), DriveError> {
    let mut handled = Handled::default();
    let origin = format!("channel {}", source.channel());
    while let Some(messages) = source.next_batch(shutdown).await {
        handled.clear();
        cpu(|| {
            for message in &messages {
                let _ = engine.handle(&origin, message, &mut handled);
            }
        });
        if !commit(&mut handled, state, alerts, shutdown).await? {
            break;
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
    state: &StateWriter,
    alerts: &mut Option<AlertPublisher>,
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
        handled.clear();
        if engine.handle_line(origin, &line, &mut handled).is_err() || handled.state.is_empty() {
            continue;
        }
        if alerts.is_some() {
            if !runtime.block_on(commit(&mut handled, state, alerts, shutdown))? {
                break;
            }
        } else {
            // Nothing waits on the write: queue it and read on.
            state.blocking_send(std::mem::take(&mut handled.state))?;
        }
    }
    Ok(())
}
