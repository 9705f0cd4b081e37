//! The effects pool: steps that call an outside system run here, off the committing task.
//!
//! A webhook receiver, a syslog server or another Redis that hangs must not stop event
//! processing, so the executor records such a step as `dispatched` (before its batch is
//! acknowledged) and hands it to this pool: a fixed number of workers taking jobs from a bounded
//! queue. When the queue is full the committing task waits for room (back-pressure, counted in
//! the metrics), so memory stays bounded and nothing is dropped. Each act runs under its
//! family's time limit. The outcome is recorded when it arrives, by
//! [`super::Executor::complete`]. At shutdown the pool waits a bounded time for what it holds,
//! then gives up on the rest, which is recorded as `abandoned`.
//! After a crash nothing is waited for: the next start of the engine finds the steps left
//! `dispatched` and records them `abandoned` (`server/orphans.rs`); they are never run again.
//!
//! Local containment (`firewall.*`, `process.*`) and `notify.log` stay in the committing task:
//! they call nothing outside the host, are bounded by `actions.timeout`, and a block or kill is
//! meant to be in place before the batch that asked for it is acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::ActionRecord;
use crate::shutdown::Shutdown;

/// The actions that call a system outside this host, and so run in the pool.
pub const POOLED_ACTIONS: &[&str] = &[
    "notify.webhook",
    "notify.redis",
    "notify.syslog",
    "notify.email",
];

/// Whether `action` runs in the effects pool rather than in the committing task.
pub fn is_pooled(action: &str) -> bool {
    POOLED_ACTIONS.contains(&action)
}

/// `actions.effects` in the config: the pool that runs steps calling outside systems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct EffectsConfig {
    /// Steps running at once.
    pub workers: usize,
    /// Jobs (a pooled step and the later steps of its playbook) waiting for a worker; when the
    /// queue is full, the engine waits before it commits more.
    pub queue: usize,
    /// The longest one pooled act may take, per action family (`notify`), retries included;
    /// after it the step is `failed` with "timed out after ...". A family not named here uses
    /// `actions.timeout`.
    pub time_limits: BTreeMap<String, crate::duration::Span>,
    /// How long shutdown waits for running and queued jobs before it records them as
    /// `abandoned`.
    pub shutdown_wait: crate::duration::Span,
}

impl Default for EffectsConfig {
    fn default() -> EffectsConfig {
        EffectsConfig {
            workers: 4,
            queue: 1024,
            // Three webhook attempts of 5 s with waits in between fit in 20 s.
            time_limits: BTreeMap::from([(
                "notify".to_string(),
                const { crate::duration::Span::secs(20) },
            )]),
            shutdown_wait: const { crate::duration::Span::secs(10) },
        }
    }
}

/// [`EffectsConfig`], checked.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub workers: usize,
    pub queue: usize,
    pub time_limits: HashMap<String, Duration>,
    pub shutdown_wait: Duration,
}

impl EffectsConfig {
    /// The checked settings, or the first problem, naming its key.
    pub fn settings(&self) -> Result<PoolSettings, (String, String)> {
        if self.workers == 0 {
            return Err((
                "workers".into(),
                "`actions.effects.workers` must be at least 1".into(),
            ));
        }
        if self.queue == 0 {
            return Err((
                "queue".into(),
                "`actions.effects.queue` must be at least 1".into(),
            ));
        }
        let families: Vec<&str> = super::names()
            .map(|name| name.split('.').next().unwrap_or(name))
            .collect();
        let mut time_limits = HashMap::new();
        for (family, limit) in &self.time_limits {
            if !families.contains(&family.as_str()) {
                return Err((
                    "time_limits".into(),
                    format!(
                        "`actions.effects.time_limits` names `{family}`, which is no action family (known: {})",
                        dedup(&families).join(", ")
                    ),
                ));
            }
            time_limits.insert(family.clone(), limit.duration());
        }
        Ok(PoolSettings {
            workers: self.workers,
            queue: self.queue,
            time_limits,
            shutdown_wait: self.shutdown_wait.duration(),
        })
    }
}

fn dedup<'a>(names: &[&'a str]) -> Vec<&'a str> {
    let mut seen: Vec<&str> = Vec::new();
    for name in names {
        if !seen.contains(name) {
            seen.push(name);
        }
    }
    seen
}

/// One step handed to the pool, with what the executor needs to act on it later.
#[derive(Debug, Clone)]
pub struct PooledStep {
    pub record: ActionRecord,
    pub event_time_ms: i64,
    pub why: serde_json::Value,
    /// For the step that went to the pool first: already checked (policy, cooldown, limits),
    /// with its typed parameters and evidence; only the call is left. Later steps are checked
    /// in the pool, right before they act.
    pub prepared: Option<(BTreeMap<&'static str, super::ParamValue>, serde_json::Value)>,
}

/// A pooled step and the later steps of the same playbook for the same detection, run in order
/// by one worker so `on_failure` still governs them.
pub struct Job {
    pub id: u64,
    pub steps: Vec<PooledStep>,
    /// Resolves (sent or dropped) once the batch that recorded these steps as `dispatched` is
    /// stored: an outcome never overtakes the row it updates.
    pub stored: oneshot::Receiver<()>,
    /// A summary of held notifications (sent when a limit's window closes): it has no action
    /// row of its own and settles no detection.
    pub summary: bool,
}

/// Held by the caller of [`super::Executor::run`] until the batch is stored; dropping it lets
/// the pool record outcomes.
#[derive(Default)]
pub struct Dispatched {
    gates: Vec<oneshot::Sender<()>>,
}

impl Dispatched {
    pub(crate) fn push(&mut self, gate: oneshot::Sender<()>) {
        self.gates.push(gate);
    }

    /// Steps handed to the pool by this batch.
    pub fn jobs(&self) -> usize {
        self.gates.len()
    }
}

/// Where the pool reports what it does: the engine's metrics implement it (the pool sits
/// below them and does not know them).
pub trait EffectsObserver: Send + Sync {
    /// A pooled step's outcome arrived (counted then, not when it was dispatched).
    fn action(&self, action: &str, status: &'static str);
    /// Committing waited this long for room in the full queue.
    fn queue_waited(&self, waited: std::time::Duration);
    /// Jobs waiting for a worker.
    fn queue_depth(&self, depth: usize);
    /// Steps given up at shutdown.
    fn abandoned(&self, steps: u64);
}

/// The pool's side of the queue and its workers; the executor owns it.
pub struct EffectPool {
    pub(crate) settings: PoolSettings,
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    workers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Every step handed over and not yet settled, by job and place in it: what shutdown
    /// records as abandoned.
    outstanding: Mutex<BTreeMap<(u64, usize), ActionRecord>>,
    /// Outcomes waiting for their batch to be stored (see [`EffectPool::defer`]).
    completions: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    next_id: std::sync::atomic::AtomicU64,
    metrics: Option<Arc<dyn EffectsObserver>>,
    shutdown: Shutdown,
}

impl EffectPool {
    /// A pool whose workers call `work` for each job. `shutdown` stops the committing task from
    /// waiting on a full queue once the engine is stopping.
    pub fn start<F, Fut>(
        settings: PoolSettings,
        metrics: Option<Arc<dyn EffectsObserver>>,
        shutdown: Shutdown,
        work: F,
    ) -> EffectPool
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (sender, receiver) = mpsc::channel::<Job>(settings.queue);
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let work = Arc::new(work);
        let workers = (0..settings.workers)
            .map(|_| {
                let receiver = receiver.clone();
                let work = work.clone();
                tokio::spawn(async move {
                    loop {
                        // One worker at a time waits on the queue; the others wait for it.
                        let job = receiver.lock().await.recv().await;
                        match job {
                            Some(job) => work(job).await,
                            None => return,
                        }
                    }
                })
            })
            .collect();
        EffectPool {
            settings,
            sender: Mutex::new(Some(sender)),
            workers: Mutex::new(workers),
            outstanding: Mutex::new(BTreeMap::new()),
            completions: Mutex::new(Vec::new()),
            next_id: std::sync::atomic::AtomicU64::new(1),
            metrics,
            shutdown,
        }
    }

    /// The time limit of a pooled act of `action`, if its family has one.
    pub fn time_limit(&self, action: &str) -> Option<Duration> {
        let family = action.split('.').next().unwrap_or(action);
        self.settings.time_limits.get(family).copied()
    }

    /// Hands `steps` to the pool, waiting while the queue is full (the waits and the time
    /// waited are counted). Once the engine is stopping it no longer waits: the job stays on
    /// record as outstanding and [`EffectPool::close`] returns it as abandoned.
    pub async fn submit(&self, steps: Vec<PooledStep>, summary: bool) -> oneshot::Sender<()> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut outstanding) = self.outstanding.lock() {
            for (place, step) in steps.iter().enumerate() {
                outstanding.insert((id, place), step.record.clone());
            }
        }
        let (gate, stored) = oneshot::channel();
        let sender = self.sender.lock().ok().and_then(|s| s.clone());
        let Some(sender) = sender else {
            return gate;
        };
        let job = Job {
            id,
            steps,
            stored,
            summary,
        };
        match sender.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                let started = Instant::now();
                tokio::select! {
                    sent = sender.send(job) => { let _ = sent; }
                    () = self.shutdown.wait() => {}
                }
                if let Some(metrics) = &self.metrics {
                    metrics.queue_waited(started.elapsed());
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
        self.show_depth(&sender);
        gate
    }

    fn show_depth(&self, sender: &mpsc::Sender<Job>) {
        if let Some(metrics) = &self.metrics {
            metrics.queue_depth(sender.max_capacity() - sender.capacity());
        }
    }

    /// Step `place` of job `id` has its outcome recorded; true when it was the job's last.
    pub(crate) fn settled(&self, id: u64, place: usize) -> bool {
        let over = match self.outstanding.lock() {
            Ok(mut outstanding) => {
                outstanding.remove(&(id, place));
                outstanding
                    .range((id, 0)..=(id, usize::MAX))
                    .next()
                    .is_none()
            }
            Err(_) => true,
        };
        let sender = self.sender.lock().ok().and_then(|s| s.clone());
        if let Some(sender) = sender {
            self.show_depth(&sender);
        }
        over
    }

    /// Runs `recording` (a job's outcomes, waiting for their batch to be stored) beside the
    /// workers: a worker never waits for the committing task, which may itself be waiting for
    /// room in the queue.
    pub(crate) fn defer(&self, recording: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Ok(mut completions) = self.completions.lock() {
            completions.retain(|c| !c.is_finished());
            completions.push(tokio::spawn(recording));
        }
    }

    /// Takes no more jobs, waits up to the shutdown wait for the workers to finish what is
    /// queued and running, stops them, and returns every step that was not settled.
    pub async fn close(&self) -> Vec<ActionRecord> {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let workers: Vec<_> = self
            .workers
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        let started = Instant::now();
        let aborts: Vec<_> = workers.iter().map(|w| w.abort_handle()).collect();
        if tokio::time::timeout(self.settings.shutdown_wait, futures_join(workers))
            .await
            .is_err()
        {
            for abort in aborts {
                abort.abort();
            }
        }
        // Outcomes already known wait only for their batch, stored by now: what is left of the
        // wait is theirs.
        let completions: Vec<_> = self
            .completions
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        let aborts: Vec<_> = completions.iter().map(|c| c.abort_handle()).collect();
        let left = self
            .settings
            .shutdown_wait
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(500));
        if tokio::time::timeout(left, futures_join(completions))
            .await
            .is_err()
        {
            for abort in aborts {
                abort.abort();
            }
        }
        if let Some(metrics) = &self.metrics {
            metrics.queue_depth(0);
        }
        self.outstanding
            .lock()
            .map(|mut o| std::mem::take(&mut *o).into_values().collect())
            .unwrap_or_default()
    }
}

/// Waits for every handle (a worker that panicked or was aborted is simply done).
async fn futures_join(handles: Vec<tokio::task::JoinHandle<()>>) {
    for handle in handles {
        let _ = handle.await;
    }
}
