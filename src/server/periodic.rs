//! Background tasks that use the state database every second, and the order they stop in.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::shutdown::Shutdown;

/// A task run once a second until the engine stops. A failure is logged once an episode (a
/// database locked for a minute is one error, not sixty), its end once.
pub(super) struct Periodic {
    stop: Arc<Notify>,
    handle: tokio::task::JoinHandle<()>,
}

impl Periodic {
    pub(super) fn spawn<F>(
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

/// Stops the tasks that use the state database and sends what notification limits still hold
/// back, while the database is open: at the end of input the store closes next, and a task
/// still running then would meet a closed pool.
pub(super) async fn stop_before_the_store_closes(
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
