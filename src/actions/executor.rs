//! The executor: the one place planned steps become acts, with one policy for every plugin.
//!
//! For each planned step, in order: refuse protected targets (loopback and configured
//! addresses; PID 1, the engine itself and critical processes), skip a repeat within the
//! cooldown (keyed on what is acted on: the target of a block or kill, the detection a
//! notification tells of), hold back beyond the per-action rate limit (a notification over its
//! limit is summarised instead), then write the intent to the audit trail (durably) *before*
//! calling the plugin under a timeout, and the outcome after. Steps that were not planned to act
//! (dry-run, shadow, queued, skipped, refused in planning) are audited as decided. In dry-run
//! nothing acts, approved steps included. Nothing here runs when the audit trail cannot be
//! written.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Mutex;

use std::collections::HashSet;

use super::OnFailure;
use super::plugins::{ActionCall, Registry, process_info};
use super::policy::{Target, Verdict, check};
use super::pool::{self, Dispatched, EffectPool, PooledStep};
use super::{ActionRecord, ActionStatus, NotificationLimit, ParamValue, is_notification, lookup};
use crate::approvals::{Approvals, Mode};
use crate::audit::{AuditEntry, AuditLog};
use crate::state::{DetectionRow, StateError};

/// The executor's policy, from `actions` in the config.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Ranges never blocked (loopback, unspecified and multicast always are).
    pub protected_addresses: Vec<(IpAddr, u8)>,
    /// Process names never killed (PID 1 and the engine itself never are).
    pub critical_processes: Vec<String>,
    /// Plan and audit, never act: a step planned to act, or approved by a person, is recorded
    /// as `dry_run` instead.
    pub dry_run: bool,
    /// The widest range one block may cover unless a step allows more (with approval).
    pub widest_block: super::WidestBlock,
    /// No second act on the same target by the same action within this time; for a
    /// notification, no second message about the same detection to the same destination.
    pub cooldown: Duration,
    /// Acts per action per minute, at most. For notifications: messages per step and
    /// destination per minute, unless the playbook sets `notification_limit`; the rest are
    /// summarised.
    pub max_per_minute: usize,
    /// How long one act may take.
    pub timeout: Duration,
    /// This many failed acts within `degrade_window` switch the engine to manual mode.
    pub degrade_after_failures: usize,
    pub degrade_window: Duration,
    /// How long a queued step waits for a person before it expires.
    pub approval_expiry: Duration,
}

pub struct Executor {
    registry: Registry,
    /// Where people hear that the engine switched to manual mode (the alert channel), besides
    /// the log.
    manual_mode_channel: Option<String>,
    audit: Arc<AuditLog>,
    approvals: Approvals,
    /// The mode as last read or set: refreshed every second by `run_approved` and at every
    /// switch, so batches need not ask the database.
    manual: std::sync::atomic::AtomicBool,
    /// Held while the mode is read from or written to the database and cached, so a refresh
    /// can never overwrite a switch that happened meanwhile.
    mode_lock: Mutex<()>,
    /// Recent failed acts per action family (`firewall`, `process`, `notify`, ...): the
    /// breaker counts each family on its own.
    failures: Mutex<std::collections::HashMap<&'static str, VecDeque<Instant>>>,
    policy: Policy,
    actor: String,
    cooldowns: Mutex<HashMap<(&'static str, String), Instant>>,
    recent: Mutex<HashMap<&'static str, VecDeque<Instant>>>,
    /// Notification limits, per (playbook, step, destination).
    summaries: Mutex<HashMap<(String, String, String), Summary>>,
    /// The effects pool, once started: steps that call outside systems run there.
    effects: std::sync::OnceLock<Effects>,
    /// Pool jobs not yet over, per detection (event id, rule).
    settling: Mutex<HashMap<(String, String), usize>>,
    settled_hook: std::sync::OnceLock<SettledHook>,
}

/// Called with (event id, rule) once every pooled step of a detection has its outcome recorded.
pub type SettledHook = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// The effects pool and where its outcomes are recorded.
struct Effects {
    pool: EffectPool,
    state: crate::state::StateStore,
    metrics: Option<Arc<dyn super::pool::EffectsObserver>>,
}

/// Gives a `dispatched` action row its outcome. The oldest matching row still `dispatched` is
/// the one: a redelivered event may have recorded the same step twice, and each outcome settles
/// one of them.
async fn settle_row(
    state: &crate::state::StateStore,
    record: &ActionRecord,
) -> Result<(), StateError> {
    crate::state::transient::retry(
        "recording a pooled step's outcome",
        StateError::is_transient,
        || async {
            sqlx::query(
                "UPDATE actions SET status = ?, reason = ? WHERE id = (
                     SELECT id FROM actions
                     WHERE event_id = ? AND rule = ? AND playbook = ? AND step = ? AND action = ?
                       AND status = 'dispatched'
                     ORDER BY id LIMIT 1)",
            )
            .bind(record.status.as_str())
            .bind(record.reason.as_deref())
            .bind(&record.event_id)
            .bind(&*record.rule)
            .bind(&*record.playbook)
            .bind(&record.step)
            .bind(record.action)
            .execute(state.pool())
            .await
            .map(|_| ())
            .map_err(StateError::from)
        },
    )
    .await
}

/// One notification step's window: how many messages went out, and the ones held back since the
/// last message went out.
struct Summary {
    window_start: Instant,
    limit: NotificationLimit,
    sent: usize,
    held: usize,
    first_held: Option<Instant>,
    /// The latest held notification: the one that carries the count when the window closes
    /// without another message to carry it.
    latest: Option<Held>,
}

struct Held {
    record: ActionRecord,
    params: BTreeMap<&'static str, ParamValue>,
    event_time_ms: i64,
}

/// What [`Executor::prepare`] found: decided without acting (and audited), or to act with
/// these typed parameters and this evidence.
#[derive(Debug, Clone)]
pub(crate) enum Prepared {
    Decided(ActionStatus, Option<String>),
    Go(BTreeMap<&'static str, ParamValue>, serde_json::Value),
}

/// What the notification limit decided.
enum Summarise {
    /// Send it, and say how many were held back since the last message (and over what span).
    Send(Option<(usize, Duration)>),
    /// Over the limit: counted, to be reported by the step's next message.
    Hold(NotificationLimit),
}

/// `60s` as `1m`, `3600s` as `1h`; whole seconds otherwise.
fn span_text(span: Duration) -> String {
    let seconds = span.as_secs().max(1);
    if seconds.is_multiple_of(3600) {
        format!("{}h", seconds / 3600)
    } else if seconds.is_multiple_of(60) {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// The line a message gains when it also stands for notifications that were held back.
fn summary_note(held: usize, span: Duration) -> String {
    format!(
        "{held} more like this in the last {} (summarised)",
        span_text(span)
    )
}

impl Executor {
    pub fn new(
        registry: Registry,
        audit: Arc<AuditLog>,
        approvals: Approvals,
        policy: Policy,
        actor: String,
    ) -> Executor {
        Executor {
            registry,
            manual_mode_channel: None,
            audit,
            approvals,
            manual: std::sync::atomic::AtomicBool::new(false),
            mode_lock: Mutex::new(()),
            failures: Mutex::new(std::collections::HashMap::new()),
            policy,
            actor,
            cooldowns: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
            summaries: Mutex::new(HashMap::new()),
            effects: std::sync::OnceLock::new(),
            settling: Mutex::new(HashMap::new()),
            settled_hook: std::sync::OnceLock::new(),
        }
    }

    fn entry(
        &self,
        kind: &str,
        action: &ActionRecord,
        status: &str,
        reason: Option<String>,
        why: &serde_json::Value,
    ) -> AuditEntry {
        AuditEntry {
            kind: kind.into(),
            actor: self.actor.clone(),
            event_id: Some(action.event_id.clone()),
            rule: Some(action.rule.to_string()),
            playbook: Some(action.playbook.to_string()),
            step: Some(action.step.clone()),
            action: Some(action.action.to_string()),
            target: Some(action.target.clone()),
            status: Some(status.into()),
            reason,
            details: why.clone(),
        }
    }

    /// Executes the planned steps of one batch, updating each record's status and reason:
    /// high-risk steps and, in manual mode, every step are queued for approval; a failing step's
    /// `on_failure` stops or degrades the rest of its playbook; repeated failures switch the
    /// engine to manual mode. `degrade` carries planning's requests for manual mode.
    ///
    /// With the effects pool started, a planned step that calls an outside system (and every
    /// later planned step of the same playbook for the same detection) is recorded as
    /// `dispatched` and handed to the pool instead of awaited. The returned [`Dispatched`] is
    /// held until the batch is stored: the pool records no outcome before the row exists.
    pub async fn run(
        &self,
        actions: &mut [ActionRecord],
        detections: &[DetectionRow],
        degrade: &[String],
    ) -> Result<Dispatched, StateError> {
        let mut dispatched = Dispatched::default();
        if actions.is_empty() && degrade.is_empty() {
            return Ok(dispatched);
        }
        let mut manual = self.manual.load(std::sync::atomic::Ordering::Relaxed);
        for reason in degrade {
            if !manual {
                self.switch_to_manual(reason).await?;
                manual = true;
            }
        }
        let mut halted: HashSet<(String, String)> = HashSet::new();
        let mut decisions = Vec::new();
        // Per detection and playbook, the steps handed to the pool, in order.
        let mut jobs: Vec<((String, String), Vec<PooledStep>)> = Vec::new();
        for action in actions.iter_mut() {
            let detection = detections.iter().find(|d| {
                d.detection.event_id == action.event_id && d.detection.rule == action.rule
            });
            let why = json!({
                "params": action.params,
                "risk": action.risk,
                "detection": detection.map(|d| json!({
                    "title": d.detection.title,
                    "severity": d.detection.severity,
                    "score": d.detection.score,
                    "intel": d.detection.intel,
                    "entity": d.detection.entity,
                })),
            });
            let event_time_ms = detection
                .and_then(|d| d.event_time.parse::<jiff::Timestamp>().ok())
                .map_or(0, |t| t.as_millisecond());
            let key = (action.event_id.clone(), action.playbook.to_string());
            if halted.contains(&key)
                && matches!(action.status, ActionStatus::Planned | ActionStatus::Queued)
            {
                action.status = ActionStatus::Skipped;
                action.reason = Some("an earlier step of this playbook failed".into());
            }
            // Planning already holds back every step in dry-run; this holds even for a caller
            // that planned without it.
            if self.policy.dry_run && action.status == ActionStatus::Planned {
                action.status = ActionStatus::DryRun;
                action.reason = Some("actions are in dry-run".into());
            }
            let waits_because = match action.status {
                ActionStatus::Queued if self.policy.dry_run => Some(
                    "a high-risk step waits for approval (dry-run: approving it records it as dry_run; nothing acts)"
                        .to_string(),
                ),
                ActionStatus::Queued => Some("a high-risk step waits for approval".to_string()),
                ActionStatus::Planned if manual => Some("the engine is in manual mode".to_string()),
                _ => None,
            };
            if let Some(waits_because) = waits_because {
                self.queue_for_approval(action, event_time_ms, &waits_because)
                    .await?;
            }
            if action.status == ActionStatus::Planned && self.effects.get().is_some() {
                let behind = jobs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .and_then(|(_, steps)| steps.first())
                    .map(|first| first.record.step.clone());
                if behind.is_some() || pool::is_pooled(action.action) {
                    // The first pooled step of a playbook is checked here, in order with the
                    // batch (cooldown and notification limits are decided without waiting on
                    // anyone); only its call goes to the pool. Later steps are checked in the
                    // pool, right before they act.
                    let prepared = match &behind {
                        Some(_) => None,
                        None => match self.prepare(action, event_time_ms, &why).await? {
                            Prepared::Decided(status, reason) => {
                                // Refused, skipped or summarised: audited, and not a failure.
                                action.status = status;
                                action.reason = reason;
                                continue;
                            }
                            Prepared::Go(params, why) => Some((params, why)),
                        },
                    };
                    action.status = ActionStatus::Dispatched;
                    action.reason = Some(match &behind {
                        Some(first) => format!(
                            "runs in the effects pool after step `{first}` of this playbook"
                        ),
                        None => {
                            "handed to the effects pool; the outcome is recorded when it arrives"
                                .to_string()
                        }
                    });
                    let step = PooledStep {
                        record: action.clone(),
                        event_time_ms,
                        why: why.clone(),
                        prepared,
                    };
                    match jobs.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, steps)) => steps.push(step),
                        None => jobs.push((key.clone(), vec![step])),
                    }
                }
            }
            if action.status != ActionStatus::Planned {
                // Decided without acting (dry-run, shadow, queued, dispatched, refused or
                // skipped): on the record all the same, in one append for the batch.
                decisions.push(self.entry(
                    "decision",
                    action,
                    action.status.as_str(),
                    action.reason.clone(),
                    &why,
                ));
                continue;
            }
            let (status, reason) = self.act(action, event_time_ms, &why).await?;
            action.status = status;
            action.reason = reason;
            if status == ActionStatus::Failed && self.failed(action, &mut manual).await? {
                halted.insert(key);
            }
        }
        if !decisions.is_empty() {
            self.audit.append(&decisions).await?;
        }
        if let Some(effects) = self.effects.get() {
            // After the decisions are on record, so the trail reads decision, intent, outcome.
            for (_, steps) in jobs {
                if let Some(first) = steps.first() {
                    let detection = (first.record.event_id.clone(), first.record.rule.to_string());
                    *self.settling.lock().await.entry(detection).or_default() += 1;
                }
                dispatched.push(effects.pool.submit(steps, false).await);
            }
        }
        Ok(dispatched)
    }

    /// Queues `action` for a person's approval, saying why.
    async fn queue_for_approval(
        &self,
        action: &mut ActionRecord,
        event_time_ms: i64,
        waits_because: &str,
    ) -> Result<(), StateError> {
        let expiry = i64::try_from(self.policy.approval_expiry.as_millis()).unwrap_or(i64::MAX);
        let id = self
            .approvals
            .queue(action, event_time_ms, waits_because, expiry)
            .await?;
        action.status = ActionStatus::Queued;
        action.reason = Some(format!("{waits_because}: approval {id}"));
        Ok(())
    }

    /// A step failed when executed: applies its `on_failure` (true when the rest of its
    /// playbook stops) and counts it against its family's breaker, switching to manual mode
    /// when a containment family reaches it.
    async fn failed(&self, action: &ActionRecord, manual: &mut bool) -> Result<bool, StateError> {
        let halt = match action.on_failure {
            OnFailure::Continue => false,
            OnFailure::Abort => true,
            OnFailure::Degrade => {
                if !*manual {
                    let reason = format!(
                        "step `{}` of playbook `{}` failed and its on_failure is degrade",
                        action.step, action.playbook
                    );
                    self.switch_to_manual(&reason).await?;
                    *manual = true;
                }
                true
            }
        };
        let family = action_family(action.action);
        if !*manual && self.count_failure(family).await {
            let reason = format!(
                "{} `{family}` actions failed within {:?}",
                self.policy.degrade_after_failures, self.policy.degrade_window
            );
            if super::is_notification(action.action) {
                // A failing chat or mail integration is not failing containment: switching
                // would put every block and kill behind a person because of a receiver.
                tracing::error!(
                    "{reason}; notifications contain nothing, so the engine stays in automatic mode (see the steps' outcomes)"
                );
            } else {
                self.switch_to_manual(&reason).await?;
                *manual = true;
            }
        }
        Ok(halt)
    }

    /// Starts the effects pool: from now on, steps that call outside systems run there. Their
    /// outcomes update the action rows in `state`.
    pub fn start_pool(
        self: &Arc<Self>,
        settings: pool::PoolSettings,
        state: crate::state::StateStore,
        metrics: Option<Arc<dyn super::pool::EffectsObserver>>,
        shutdown: crate::shutdown::Shutdown,
    ) {
        let executor = Arc::downgrade(self);
        let pool = EffectPool::start(settings, metrics.clone(), shutdown, move |job| {
            let executor = executor.clone();
            async move {
                if let Some(executor) = executor.upgrade() {
                    executor.work(job).await;
                }
            }
        });
        let _ = self.effects.set(Effects {
            pool,
            state,
            metrics,
        });
    }

    /// Called for each pooled detection once the outcome of its last pooled step is recorded.
    /// Sets the hook called when a detection's last pooled step has its outcome (once; a
    /// second hook is ignored).
    pub fn set_settled_hook(&self, hook: SettledHook) {
        let _ = self.settled_hook.set(hook);
    }

    pub fn with_settled_hook(self, hook: SettledHook) -> Executor {
        self.set_settled_hook(hook);
        self
    }

    /// One pool job: its steps in order. A failure governs the later steps as it would inline
    /// (`on_failure`); a later step that contains rather than tells waits for a person if the
    /// engine went to manual mode meanwhile. The outcomes are recorded once the batch that
    /// dispatched them is stored: at once when it is, else beside the workers.
    async fn work(self: Arc<Self>, job: pool::Job) {
        let pool::Job {
            id,
            steps,
            mut stored,
            summary,
        } = job;
        let mut halted = false;
        let mut done = Vec::with_capacity(steps.len());
        for PooledStep {
            mut record,
            event_time_ms,
            why,
            prepared,
        } in steps
        {
            let mut manual = self.is_manual();
            let decided = if halted {
                record.status = ActionStatus::Skipped;
                record.reason = Some("an earlier step of this playbook failed".into());
                self.audit
                    .append(&[self.entry(
                        "decision",
                        &record,
                        "skipped",
                        record.reason.clone(),
                        &why,
                    )])
                    .await
                    .map(|_| ())
            } else if manual && !pool::is_pooled(record.action) {
                self.queue_for_approval(&mut record, event_time_ms, "the engine is in manual mode")
                    .await
            } else {
                let acted = match prepared {
                    Some((params, why)) => self.execute(&record, params, event_time_ms, &why).await,
                    None => self.act(&record, event_time_ms, &why).await,
                };
                match acted {
                    Ok((status, reason)) => {
                        record.status = status;
                        record.reason = reason;
                        if status == ActionStatus::Failed {
                            self.failed(&record, &mut manual).await.map(|halt| {
                                halted |= halt;
                            })
                        } else {
                            Ok(())
                        }
                    }
                    Err(err) => Err(err),
                }
            };
            if let Err(err) = decided {
                // The audit trail or the approvals table could not be written: nothing more of
                // this playbook acts, and the row says why.
                tracing::error!(
                    "step `{}` of playbook `{}` in the effects pool: {err}",
                    record.step,
                    record.playbook
                );
                if record.status == ActionStatus::Dispatched {
                    record.status = ActionStatus::Failed;
                    record.reason = Some(format!("cannot be recorded: {err}"));
                }
                halted = true;
            }
            done.push(record);
        }
        // Sent or dropped: either way the batch's write is over.
        let open = !matches!(
            stored.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty)
        );
        if open {
            for (place, record) in done.iter().enumerate() {
                self.complete(id, place, record, summary).await;
            }
        } else if let Some(effects) = self.effects.get() {
            let executor = self.clone();
            effects.pool.defer(async move {
                let _ = stored.await;
                for (place, record) in done.iter().enumerate() {
                    executor.complete(id, place, record, summary).await;
                }
            });
        }
    }

    /// Where a pooled step's outcome lands, the one place to extend (an alert outbox, say):
    /// the action's row gets its final status and reason, the step is counted, and once the
    /// detection's last pooled step is in, the settled hook is called.
    pub async fn complete(&self, job: u64, place: usize, record: &ActionRecord, summary: bool) {
        let Some(effects) = self.effects.get() else {
            return;
        };
        if summary {
            // Its outcome is in the audit trail; the held steps it speaks for stay `summarised`.
            if record.status == ActionStatus::Failed {
                tracing::warn!(
                    "a summary of held notifications from step `{}` of playbook `{}` failed: {}",
                    record.step,
                    record.playbook,
                    record.reason.as_deref().unwrap_or_default()
                );
            }
            effects.pool.settled(job, place);
            return;
        }
        if let Err(err) = settle_row(&effects.state, record).await {
            tracing::error!(
                "cannot record the outcome of step `{}` of playbook `{}` ({}): {err}",
                record.step,
                record.playbook,
                record.status.as_str()
            );
        }
        if let Some(metrics) = &effects.metrics {
            metrics.action(record.action, record.status.as_str());
        }
        if !effects.pool.settled(job, place) {
            // Later steps of the same job are still to come.
            return;
        }
        let detection = (record.event_id.clone(), record.rule.to_string());
        let last = {
            let mut settling = self.settling.lock().await;
            match settling.get_mut(&detection) {
                Some(pending) if *pending > 1 => {
                    *pending -= 1;
                    false
                }
                Some(_) => {
                    settling.remove(&detection);
                    true
                }
                None => false,
            }
        };
        if last && let Some(hook) = self.settled_hook.get() {
            hook(&record.event_id, &record.rule);
        }
    }

    /// Stops the effects pool: waits up to `actions.effects.shutdown_wait` for its jobs, then
    /// records each step that got no outcome as `abandoned` (row and audit trail). Returns how
    /// many were abandoned.
    pub async fn close_pool(&self) -> Result<usize, StateError> {
        let Some(effects) = self.effects.get() else {
            return Ok(0);
        };
        let wait = effects.pool.settings.shutdown_wait;
        let abandoned = effects.pool.close().await;
        let mut entries = Vec::new();
        for mut record in abandoned.iter().cloned() {
            record.status = ActionStatus::Abandoned;
            record.reason = Some(format!(
                "abandoned at shutdown: no outcome within `actions.effects.shutdown_wait` ({wait:?}); it may or may not have reached its receiver"
            ));
            tracing::warn!(
                "step `{}` of playbook `{}` ({} to `{}`): {}",
                record.step,
                record.playbook,
                record.action,
                record.target,
                record.reason.as_deref().unwrap_or_default()
            );
            if let Err(err) = settle_row(&effects.state, &record).await {
                tracing::error!("cannot record an abandoned step: {err}");
            }
            if let Some(metrics) = &effects.metrics {
                metrics.action(record.action, record.status.as_str());
            }
            entries.push(self.entry(
                "abandoned",
                &record,
                "abandoned",
                record.reason.clone(),
                &json!({"params": record.params}),
            ));
        }
        if let Some(metrics) = &effects.metrics {
            metrics.abandoned(entries.len() as u64);
        }
        if !entries.is_empty() {
            self.audit.append(&entries).await?;
        }
        Ok(entries.len())
    }

    /// Whether the engine is in manual mode, as last read or set.
    pub fn is_manual(&self) -> bool {
        self.manual.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reads the recorded mode (a manual engine stays manual across restarts), and returns
    /// it with since when and by whom.
    pub async fn load_mode(&self) -> Result<crate::approvals::ModeState, StateError> {
        let _held = self.mode_lock.lock().await;
        let state = self.approvals.mode().await?;
        self.manual.store(
            state.mode == Mode::Manual,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(state)
    }

    /// Also announce a switch to manual mode on this Redis channel.
    pub fn with_manual_mode_channel(mut self, channel: Option<String>) -> Executor {
        self.manual_mode_channel = channel;
        self
    }

    /// Counts a failed act of `family`; true when that family's failures within the window
    /// reach the limit (they are then forgotten, so the next report needs as many again).
    async fn count_failure(&self, family: &'static str) -> bool {
        let mut all = self.failures.lock().await;
        let failures = all.entry(family).or_default();
        let now = Instant::now();
        failures.push_back(now);
        while failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.policy.degrade_window)
        {
            failures.pop_front();
        }
        let reached = failures.len() >= self.policy.degrade_after_failures;
        if reached {
            failures.clear();
        }
        reached
    }

    /// Automation misbehaves: stop acting alone, persist that, and tell a person.
    async fn switch_to_manual(&self, reason: &str) -> Result<(), StateError> {
        {
            let _held = self.mode_lock.lock().await;
            self.approvals
                .set_mode(Mode::Manual, &self.actor, reason)
                .await?;
            self.manual
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let entry = AuditEntry {
            kind: "mode".into(),
            actor: self.actor.clone(),
            status: Some("manual".into()),
            reason: Some(reason.into()),
            details: json!({"from": "auto", "to": "manual"}),
            ..AuditEntry::default()
        };
        self.audit.append(&[entry]).await?;
        self.failures.lock().await.clear();
        tracing::error!(
            "switched to manual mode: {reason}; every action now waits for approval until `palisade mode auto`"
        );
        Ok(())
    }

    /// Runs the steps people approved and expires the ones nobody decided on in time. A running
    /// engine calls this every second.
    pub async fn run_approved(&self) -> Result<usize, StateError> {
        // An operator may have switched the mode from another process.
        self.load_mode().await?;
        let expired: Vec<AuditEntry> = self
            .approvals
            .expire()
            .await?
            .iter()
            .map(|expired| {
                expired.audit_entry(
                    "decision",
                    &self.actor,
                    "expired",
                    format!(
                        "approval {} expired without a decision; the step counts as not done",
                        expired.id
                    ),
                )
            })
            .collect();
        if !expired.is_empty() {
            self.audit.append(&expired).await?;
        }
        let approved = self.approvals.take_approved().await?;
        let count = approved.len();
        for approval in approved {
            if self.policy.dry_run {
                // Approved, perhaps queued while actions were live: in dry-run it is recorded,
                // never done.
                let reason = format!(
                    "approval {} by {}: actions are in dry-run, so the step is recorded and not done",
                    approval.id,
                    approval.decided_by.as_deref().unwrap_or("an operator")
                );
                let entry =
                    approval.audit_entry("decision", &self.actor, "dry_run", reason.clone());
                self.audit.append(&[entry]).await?;
                self.approvals
                    .finish(approval.id, ActionStatus::DryRun.as_str(), Some(&reason))
                    .await?;
                continue;
            }
            let Some(spec) = lookup(&approval.action) else {
                self.approvals
                    .finish(approval.id, "refused", Some("unknown action"))
                    .await?;
                continue;
            };
            // The stored row is read back like any outside text: each parameter is parsed
            // again by its type, and one that does not parse refuses the step.
            let params = match stored_params(&approval, spec) {
                Ok(params) => params,
                Err(reason) => {
                    let entry =
                        approval.audit_entry("decision", &self.actor, "refused", reason.clone());
                    self.audit.append(&[entry]).await?;
                    self.approvals
                        .finish(approval.id, "refused", Some(&reason))
                        .await?;
                    continue;
                }
            };
            let record = ActionRecord {
                event_id: approval.event_id.clone(),
                playbook: Arc::from(approval.playbook.as_str()),
                step: approval.step.clone(),
                action: spec.name,
                target: approval.target.clone(),
                status: ActionStatus::Planned,
                reason: None,
                risk: serde_json::from_value(json!(approval.risk)).unwrap_or(super::Risk::High),
                rule: Arc::from(approval.rule.as_str()),
                params,
                on_failure: OnFailure::Continue,
                notification_limit: None,
            };
            let why = json!({"params": record.params, "approval": approval.id, "approved_by": approval.decided_by});
            let (status, reason) = self.act(&record, approval.event_time_ms, &why).await?;
            self.approvals
                .finish(approval.id, status.as_str(), reason.as_deref())
                .await?;
        }
        Ok(count)
    }

    async fn act(
        &self,
        action: &ActionRecord,
        event_time_ms: i64,
        why: &serde_json::Value,
    ) -> Result<(ActionStatus, Option<String>), StateError> {
        match self.prepare(action, event_time_ms, why).await? {
            Prepared::Decided(status, reason) => Ok((status, reason)),
            Prepared::Go(params, why) => self.execute(action, params, event_time_ms, &why).await,
        }
    }

    /// Everything before the act, each refusal or hold-back audited: typed parameters, the
    /// target policy, the plugin, the cooldown, the rate limit and a notification's limit.
    async fn prepare(
        &self,
        action: &ActionRecord,
        event_time_ms: i64,
        why: &serde_json::Value,
    ) -> Result<Prepared, StateError> {
        let refuse = |reason: String| Prepared::Decided(ActionStatus::Refused, Some(reason));
        if lookup(action.action).is_none() {
            return Ok(refuse(format!("unknown action `{}`", action.action)));
        }
        // The plan rendered and parsed every parameter; the plugin acts on those values.
        let mut params = action.params.clone();
        let refused = |reason: String| (ActionStatus::Refused, Some(reason));
        let decided = if let Some(reason) = self.refusal(action, &params, why) {
            Some(refused(reason))
        } else if self.registry.get(action.action).is_none() {
            Some(refused(format!(
                "no plugin for `{}` in this build",
                action.action
            )))
        } else if let Some(reason) = self.in_cooldown(action, why).await {
            Some((ActionStatus::Skipped, Some(reason)))
        } else if !is_notification(action.action) && !self.within_rate(action.action).await {
            Some((
                ActionStatus::Skipped,
                Some(format!(
                    "more than {} `{}` per minute",
                    self.policy.max_per_minute, action.action
                )),
            ))
        } else {
            None
        };
        if let Some((status, reason)) = decided {
            self.audit
                .append(&[self.entry(
                    status.as_str(),
                    action,
                    status.as_str(),
                    reason.clone(),
                    why,
                )])
                .await?;
            return Ok(Prepared::Decided(status, reason));
        }
        let mut why = why.clone();
        if is_notification(action.action) {
            match self.summarise(action, &params, event_time_ms).await {
                Summarise::Hold(limit) => {
                    let reason = Some(format!(
                        "over this step's limit of {} per {}: counted in its next message",
                        limit.count,
                        span_text(limit.window)
                    ));
                    self.audit
                        .append(&[self.entry(
                            "summarised",
                            action,
                            ActionStatus::Summarised.as_str(),
                            reason.clone(),
                            &why,
                        )])
                        .await?;
                    return Ok(Prepared::Decided(ActionStatus::Summarised, reason));
                }
                Summarise::Send(Some((held, span))) => {
                    let note = summary_note(held, span);
                    if let Some(ParamValue::Text(message)) = params.get_mut("message") {
                        message.push_str(&format!(" [{note}]"));
                    }
                    why["summarises"] = json!(held);
                }
                Summarise::Send(None) => {}
            }
        }
        Ok(Prepared::Go(params, why))
    }

    /// Audits the intent (durably), calls the plugin under the timeout, audits the outcome.
    async fn execute(
        &self,
        action: &ActionRecord,
        params: BTreeMap<&'static str, ParamValue>,
        event_time_ms: i64,
        why: &serde_json::Value,
    ) -> Result<(ActionStatus, Option<String>), StateError> {
        let Some(spec) = lookup(action.action) else {
            return Ok((
                ActionStatus::Refused,
                Some(format!("unknown action `{}`", action.action)),
            ));
        };
        // The intent is durable before the act.
        self.audit
            .append(&[self.entry("intent", action, "executing", None, why)])
            .await?;
        let call = ActionCall {
            action: spec.name,
            params,
            event_time_ms,
            rule: action.rule.to_string(),
            playbook: action.playbook.to_string(),
            event_id: action.event_id.clone(),
        };
        let plugin = self
            .registry
            .get(action.action)
            .ok_or(StateError::Failed("plugin vanished".into()))?;
        let limit = self.time_limit(action.action);
        let result = tokio::time::timeout(limit, plugin.execute(&call)).await;
        let (status, reason) = match result {
            Ok(Ok(done)) => (ActionStatus::Executed, Some(done)),
            Ok(Err(err)) => (ActionStatus::Failed, Some(err.message)),
            Err(_) => (
                ActionStatus::Failed,
                Some(format!("timed out after {limit:?}")),
            ),
        };
        self.audit
            .append(&[self.entry("outcome", action, status.as_str(), reason.clone(), why)])
            .await?;
        Ok((status, reason))
    }

    /// How long one act of `action` may take: its family's pool time limit when it runs in the
    /// pool, `actions.timeout` otherwise.
    fn time_limit(&self, action: &str) -> Duration {
        self.effects
            .get()
            .filter(|_| pool::is_pooled(action))
            .and_then(|effects| effects.pool.time_limit(action))
            .unwrap_or(self.policy.timeout)
    }

    /// The target policy's verdict right before acting, as planning asked it, but with the
    /// live process's name and whether a person approved the step. `why` is the evidence on
    /// record for the act: the detection's intel hits, or the approval that let it through.
    fn refusal(
        &self,
        action: &ActionRecord,
        params: &BTreeMap<&'static str, ParamValue>,
        why: &serde_json::Value,
    ) -> Option<String> {
        let live = match params.get("pid") {
            Some(ParamValue::Pid(pid)) => process_info(*pid).map(|info| info.name),
            _ => None,
        };
        let named = match params.get("name") {
            Some(ParamValue::Text(name)) => Some(name.as_str()),
            _ => None,
        };
        let names: Vec<&str> = live.as_deref().into_iter().chain(named).collect();
        // Read field by field, so a hit that is on record is never lost to a failed decode.
        let evidence: Vec<Option<&str>> = why
            .pointer("/detection/intel")
            .and_then(serde_json::Value::as_array)
            .map(|hits| {
                hits.iter()
                    .map(|hit| hit.get("warning").and_then(serde_json::Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        let target = Target {
            action: action.action,
            params,
            process_names: &names,
            evidence: &evidence,
            approved: why.get("approval").is_some(),
        };
        match check(&self.policy, &target) {
            Verdict::Allowed => None,
            Verdict::NeedsApproval(reason) => Some(format!("{reason}; it was not approved")),
            Verdict::Refused(refusal) => Some(refusal.to_string()),
        }
    }

    /// Why this act repeats one done less than the cooldown ago, if it does. A cooldown keeps
    /// palisade from hitting the same thing twice, so it keys on what is acted on: a block or a
    /// kill on its target; a notification on the detection it tells of (rule, entity, event) and
    /// where it goes, so every detection reaches people and only a repeat of the same one (a
    /// redelivered event, say) is held back.
    async fn in_cooldown(&self, action: &ActionRecord, why: &serde_json::Value) -> Option<String> {
        let (key, what) = if is_notification(action.action) {
            let entity = &why["detection"]["entity"];
            (
                json!([action.target, action.rule, entity, action.event_id]).to_string(),
                format!(
                    "told `{}` of this detection (rule `{}`, event `{}`)",
                    action.target, action.rule, action.event_id
                ),
            )
        } else {
            (
                action.target.clone(),
                format!("acted on `{}`", action.target),
            )
        };
        let mut cooldowns = self.cooldowns.lock().await;
        let key = (action.action, key);
        let now = Instant::now();
        match cooldowns.get(&key) {
            Some(at) if now.duration_since(*at) < self.policy.cooldown => Some(format!(
                "`{}` {what} less than {:?} ago",
                action.action, self.policy.cooldown
            )),
            _ => {
                cooldowns.insert(key, now);
                None
            }
        }
    }

    /// Counts a notification against its step's limit (the playbook's `notification_limit`, or
    /// `max_per_minute` per minute) for its destination.
    async fn summarise(
        &self,
        action: &ActionRecord,
        params: &BTreeMap<&'static str, ParamValue>,
        event_time_ms: i64,
    ) -> Summarise {
        let limit = action.notification_limit.unwrap_or(NotificationLimit {
            count: self.policy.max_per_minute,
            window: Duration::from_secs(60),
        });
        let key = (
            action.playbook.to_string(),
            action.step.clone(),
            action.target.clone(),
        );
        let now = Instant::now();
        let mut summaries = self.summaries.lock().await;
        let summary = summaries.entry(key).or_insert(Summary {
            window_start: now,
            limit,
            sent: 0,
            held: 0,
            first_held: None,
            latest: None,
        });
        // A reload may have changed the playbook's limit.
        summary.limit = limit;
        if now.duration_since(summary.window_start) >= limit.window {
            summary.window_start = now;
            summary.sent = 0;
        }
        if summary.sent < limit.count {
            summary.sent += 1;
            summary.latest = None;
            let held = std::mem::take(&mut summary.held);
            let since = summary.first_held.take();
            return Summarise::Send(
                (held > 0).then(|| (held, since.map_or(limit.window, |t| now.duration_since(t)))),
            );
        }
        summary.held += 1;
        summary.first_held.get_or_insert(now);
        summary.latest = Some(Held {
            record: action.clone(),
            params: params.clone(),
            event_time_ms,
        });
        Summarise::Hold(limit)
    }

    /// Sends one message for each notification step whose window closed with notifications
    /// still held back (every one of them with `all`, at shutdown): the latest held message,
    /// saying how many more there were. A running engine calls this every second. Returns how
    /// many summary messages it sent.
    pub async fn flush_summaries(&self, all: bool) -> Result<usize, StateError> {
        let now = Instant::now();
        let due: Vec<(usize, Duration, Held)> = {
            let mut summaries = self.summaries.lock().await;
            summaries
                .values_mut()
                .filter(|s| {
                    s.held > 0 && (all || now.duration_since(s.window_start) >= s.limit.window)
                })
                .filter_map(|s| {
                    let latest = s.latest.take()?;
                    let held = std::mem::take(&mut s.held);
                    let span = s
                        .first_held
                        .take()
                        .map_or(s.limit.window, |t| now.duration_since(t));
                    // The summary is this window's first message.
                    s.window_start = now;
                    s.sent = 1;
                    Some((held, span, latest))
                })
                .collect()
        };
        let sent = due.len();
        for (held, span, latest) in due {
            let Held {
                mut record,
                mut params,
                event_time_ms,
            } = latest;
            // The latest held notification is one of the `held`: it is the example, the rest
            // are "more like this".
            let note = if held > 1 {
                summary_note(held - 1, span)
            } else {
                "held back by this step's limit until its window closed".to_string()
            };
            let message = format!(
                "{} [{note}]",
                params
                    .get("message")
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            );
            params.insert("message", ParamValue::Text(message.clone()));
            record.params.insert("message", ParamValue::Text(message));
            let why = json!({"params": record.params, "summarises": held});
            if let Some(effects) = self
                .effects
                .get()
                .filter(|_| pool::is_pooled(record.action))
            {
                // Like any message to an outside system, off this task: a hanging receiver
                // holds neither the approvals check nor a stop beyond the pool's wait.
                record.status = ActionStatus::Dispatched;
                let step = PooledStep {
                    record,
                    event_time_ms,
                    why: why.clone(),
                    prepared: Some((params, why)),
                };
                drop(effects.pool.submit(vec![step], true).await);
                continue;
            }
            let (status, reason) = self.execute(&record, params, event_time_ms, &why).await?;
            if status == ActionStatus::Failed {
                tracing::warn!(
                    "a summary of {held} notification(s) from step `{}` of playbook `{}` failed: {}",
                    record.step,
                    record.playbook,
                    reason.unwrap_or_default()
                );
            }
        }
        Ok(sent)
    }

    async fn within_rate(&self, action: &'static str) -> bool {
        let mut recent = self.recent.lock().await;
        let times = recent.entry(action).or_default();
        let now = Instant::now();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            times.pop_front();
        }
        if times.len() >= self.policy.max_per_minute {
            return false;
        }
        times.push_back(now);
        true
    }
}

/// An action's family: what comes before the dot (`firewall.block` → `firewall`).
fn action_family(action: &'static str) -> &'static str {
    action.split('.').next().unwrap_or(action)
}

/// An approval's parameters as stored, parsed again by their types. The row was written by
/// the planner, but it is read back from a file a person can edit: a value that no longer
/// parses refuses the step rather than reaching a plugin.
fn stored_params(
    approval: &crate::approvals::Approval,
    spec: &super::ActionSpec,
) -> Result<BTreeMap<&'static str, ParamValue>, String> {
    let mut params = BTreeMap::new();
    for (name, text) in approval.params() {
        let Some(param) = spec.param(&name) else {
            continue;
        };
        let value = param
            .kind
            .parse(&text)
            .map_err(|err| format!("stored parameter `{name}`: {err}"))?;
        params.insert(param.name, value);
    }
    Ok(params)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::actions::policy::tests::policy;

    /// An executor over a real state database in `dir`, with every plugin of this build (the
    /// firewall on `firewall`; nothing here reaches it unless a test says so).
    async fn executor_in(
        dir: &std::path::Path,
        firewall: super::super::plugins::firewall::Backend,
        policy: Policy,
    ) -> Executor {
        let database = dir.join("state.db");
        let state = crate::state::StateStore::open(&database).await.unwrap();
        let registry = Registry::new(&super::super::plugins::PluginSettings {
            redis_url: "redis://127.0.0.1:1".into(),
            blocks: None,
            firewall,
            // The limits of the shipped defaults (`actions.webhook`), written out: the config
            // that reads them sits above this module.
            webhook: crate::outbound::Limits {
                max_body_bytes: 4096,
                read_timeout: Duration::from_secs(5),
                redirects: crate::outbound::Redirects::SameHost,
            },
            email: None,
            file_scan: Default::default(),
        })
        .unwrap();
        let audit = AuditLog::open(&state, &crate::audit::AuditFiles::beside(&database))
            .await
            .unwrap();
        Executor::new(
            registry,
            Arc::new(audit),
            Approvals::new(&state),
            policy,
            "engine:test".into(),
        )
    }

    /// A real local webhook receiver keeping every message it is sent, and an executor over a
    /// real state database.
    async fn webhook_executor(
        dir: &std::path::Path,
        policy: Policy,
    ) -> (Executor, String, Arc<std::sync::Mutex<Vec<String>>>) {
        let messages = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = messages.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let kept = kept.clone();
                async move {
                    kept.lock()
                        .unwrap()
                        .push(body["message"].as_str().unwrap_or_default().to_string());
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let executor =
            executor_in(dir, super::super::plugins::firewall::Backend::Auto, policy).await;
        (executor, url, messages)
    }

    pub(crate) fn notification(
        url: &str,
        event: &str,
        limit: Option<NotificationLimit>,
    ) -> ActionRecord {
        ActionRecord {
            event_id: event.into(),
            playbook: Arc::from("p"),
            step: "tell".into(),
            action: "notify.webhook",
            target: url.into(),
            status: ActionStatus::Planned,
            reason: None,
            risk: super::super::Risk::Low,
            rule: Arc::from("r"),
            params: typed(
                "notify.webhook",
                &[("url", url), ("message", &format!("seen {event}"))],
            ),
            on_failure: OnFailure::Continue,
            notification_limit: limit,
        }
    }

    /// Defect (issue 15.5): five failed notifications switched the engine to manual mode, so
    /// one broken chat integration put every containment step behind approval.
    #[tokio::test]
    async fn failing_notifications_do_not_switch_the_engine_to_manual_mode() {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = policy();
        policy.degrade_after_failures = 2;
        policy.dry_run = false;
        policy.cooldown = Duration::ZERO;
        let executor = executor_in(
            dir.path(),
            super::super::plugins::firewall::Backend::Auto,
            policy,
        )
        .await;
        // Nothing listens on port 1: every delivery fails.
        let url = "http://127.0.0.1:1/hook";
        let mut batch: Vec<ActionRecord> = ["e1", "e2", "e3", "e4"]
            .iter()
            .map(|e| notification(url, e, None))
            .collect();
        executor.run(&mut batch, &[], &[]).await.unwrap();
        assert!(
            batch.iter().all(|a| a.status == ActionStatus::Failed),
            "{:?}",
            batch
                .iter()
                .map(|a| (a.status, a.reason.clone()))
                .collect::<Vec<_>>()
        );
        assert!(!executor.is_manual());
        assert_eq!(action_family("notify.webhook"), "notify");
        assert_eq!(action_family("firewall.block"), "firewall");
    }

    #[tokio::test]
    async fn cooldowns_key_on_the_target_of_an_act_and_the_detection_of_a_notification() {
        let dir = tempfile::tempdir().unwrap();
        let (executor, url, _) = webhook_executor(dir.path(), policy()).await;
        let kill = |event: &str| ActionRecord {
            action: "process.kill",
            target: "4242".into(),
            ..notification(&url, event, None)
        };
        let why = json!({});
        assert!(executor.in_cooldown(&kill("e1"), &why).await.is_none());
        // Another detection, the same process: the act on that target is not repeated.
        assert!(executor.in_cooldown(&kill("e2"), &why).await.is_some());
        assert!(
            executor
                .in_cooldown(&notification(&url, "e1", None), &why)
                .await
                .is_none()
        );
        // Another detection to the same webhook is another message...
        assert!(
            executor
                .in_cooldown(&notification(&url, "e2", None), &why)
                .await
                .is_none()
        );
        // ...and only the same detection again is held back.
        let repeat = executor
            .in_cooldown(&notification(&url, "e2", None), &why)
            .await;
        assert!(
            repeat
                .unwrap()
                .contains("of this detection (rule `r`, event `e2`)")
        );
    }

    #[tokio::test]
    async fn notifications_over_the_limit_are_counted_into_the_next_message() {
        let dir = tempfile::tempdir().unwrap();
        let (executor, url, messages) = webhook_executor(dir.path(), policy()).await;
        let limit = Some(NotificationLimit {
            count: 1,
            window: Duration::from_millis(400),
        });
        let mut batch: Vec<ActionRecord> = ["e1", "e2", "e3"]
            .iter()
            .map(|e| notification(&url, e, limit))
            .collect();
        executor.run(&mut batch, &[], &[]).await.unwrap();
        let got: Vec<ActionStatus> = batch.iter().map(|a| a.status).collect();
        assert_eq!(
            got,
            [
                ActionStatus::Executed,
                ActionStatus::Summarised,
                ActionStatus::Summarised
            ]
        );
        tokio::time::sleep(Duration::from_millis(450)).await;
        // The window closed: the next notification carries the count of the held ones.
        let mut next = vec![notification(&url, "e4", limit)];
        executor.run(&mut next, &[], &[]).await.unwrap();
        assert_eq!(next[0].status, ActionStatus::Executed);
        assert_eq!(executor.flush_summaries(true).await.unwrap(), 0);
        let messages = messages.lock().unwrap().clone();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert_eq!(messages[0], "seen e1");
        assert!(
            messages[1].starts_with("seen e4 [2 more like this in the last ")
                && messages[1].ends_with("(summarised)]"),
            "{messages:?}"
        );
    }

    #[tokio::test]
    async fn in_dry_run_a_step_planned_to_act_is_recorded_not_done() {
        let dir = tempfile::tempdir().unwrap();
        let (executor, url, messages) = webhook_executor(
            dir.path(),
            Policy {
                dry_run: true,
                ..policy()
            },
        )
        .await;
        let mut batch = vec![notification(&url, "e1", None)];
        executor.run(&mut batch, &[], &[]).await.unwrap();
        assert_eq!(batch[0].status, ActionStatus::DryRun);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(messages.lock().unwrap().is_empty());
    }

    /// A step's parameters as the planner hands them over: parsed by their types.
    pub(crate) fn typed(
        action: &str,
        pairs: &[(&'static str, &str)],
    ) -> BTreeMap<&'static str, ParamValue> {
        let spec = lookup(action).expect("a known action");
        pairs
            .iter()
            .map(|(name, text)| {
                let param = spec.param(name).expect("a parameter of the action");
                (param.name, param.kind.parse(text).expect("a valid value"))
            })
            .collect()
    }

    fn block(address: &str, extra: &[(&'static str, &str)]) -> ActionRecord {
        let mut pairs = vec![("address", address)];
        pairs.extend(extra.iter().copied());
        let params = typed("firewall.block", &pairs);
        ActionRecord {
            event_id: "e1".into(),
            playbook: Arc::from("p"),
            step: "block".into(),
            action: "firewall.block",
            target: address.into(),
            status: ActionStatus::Planned,
            reason: None,
            risk: super::super::Risk::Medium,
            rule: Arc::from("r"),
            params,
            on_failure: OnFailure::Continue,
            notification_limit: None,
        }
    }

    /// A stored approval is read back like outside text: a parameter edited in the database
    /// after the step was queued (here a pid that is no pid) refuses the approved step; it is
    /// never handed to the plugin.
    #[tokio::test]
    async fn an_approval_whose_stored_parameter_no_longer_parses_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let executor = executor_in(
            dir.path(),
            super::super::plugins::firewall::Backend::Iptables,
            policy(),
        )
        .await;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut kill = block("192.0.2.1", &[]);
        kill.action = "process.kill";
        kill.params = BTreeMap::from([("pid", ParamValue::Pid(child.id()))]);
        let id = executor
            .approvals
            .queue(&kill, 0, "test", 60_000)
            .await
            .unwrap();
        let edited = std::process::Command::new("sqlite3")
            .arg(dir.path().join("state.db"))
            .arg(format!(
                "UPDATE approvals SET params = '{{\"pid\":\"{} 1\"}}' WHERE id = {id};",
                child.id()
            ))
            .status()
            .unwrap();
        assert!(edited.success());
        executor
            .approvals
            .decide(id, true, "operator:test")
            .await
            .unwrap()
            .unwrap();
        executor.run_approved().await.unwrap();
        let row = executor.approvals.list(None).await.unwrap().remove(0);
        assert_eq!(row.status, "refused", "{row:?}");
        let result = row.result.unwrap_or_default();
        assert!(result.contains("stored parameter `pid`"), "{result}");
        assert!(child.try_wait().unwrap().is_none(), "the process must live");
        child.kill().unwrap();
        let _ = child.wait();
    }

    /// Defence in depth: the executor asks the target policy itself, right before acting, so a
    /// record that reached it as `planned` (from any planner) is still refused: a block resting
    /// only on warninglisted intel, a wide block nobody approved, and a range given with host
    /// bits that covers everything. None of them reaches the firewall.
    #[tokio::test]
    async fn the_executor_refuses_what_the_policy_refuses_even_when_planned() {
        let dir = tempfile::tempdir().unwrap();
        // iptables is not run: every record here is refused before a plugin is called.
        let executor = executor_in(
            dir.path(),
            super::super::plugins::firewall::Backend::Iptables,
            policy(),
        )
        .await;
        let hit = crate::intel::IntelHit {
            value: "8.8.8.8".into(),
            indicator: "8.8.8.8".into(),
            kind: crate::intel::IndicatorKind::Ip,
            source: "feed".into(),
            confidence: 90,
            severity: 90,
            score: 90.0,
            threat: None,
            warning: Some("public-dns-resolvers".into()),
        };
        let detection = DetectionRow {
            detection: crate::detection::Detection {
                event_id: "e1".into(),
                rule: Arc::from("r"),
                stage: crate::detection::Stage::Rule,
                severity: crate::detection::Severity::Critical,
                status: crate::detection::RuleStatus::Stable,
                title: "c2".into(),
                tags: Arc::from(Vec::new()),
                entity: None,
                score: None,
                intel: vec![hit],
                attribution: None,
            },
            event_time: "2026-01-01T00:00:00Z".into(),
            host: None,
        };
        let mut actions = [
            block("8.8.8.8", &[]),
            block("10.0.0.0/8", &[("widest_prefix", "8")]),
            block("1.2.3.4/0", &[]),
        ];
        // The first rests on the warninglisted hit; the others on no intel at all.
        let unrelated = DetectionRow {
            detection: crate::detection::Detection {
                event_id: "e2".into(),
                ..detection.detection.clone()
            },
            ..detection.clone()
        };
        actions[1].event_id = "e2".into();
        actions[2].event_id = "e2".into();
        let mut unrelated = unrelated;
        unrelated.detection.intel.clear();
        executor
            .run(&mut actions, &[detection, unrelated], &[])
            .await
            .unwrap();
        let reasons: Vec<String> = actions
            .iter()
            .map(|a| {
                assert_eq!(a.status, ActionStatus::Refused, "{a:?}");
                a.reason.clone().unwrap_or_default()
            })
            .collect();
        assert!(reasons[0].contains("warninglist"), "{}", reasons[0]);
        assert!(reasons[1].contains("not approved"), "{}", reasons[1]);
        assert!(reasons[2].contains("0.0.0.0/0"), "{}", reasons[2]);

        // The live process's name counts, though the step named none: a critical process
        // (here `sleep`, by this policy) is refused.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut kill = block("192.0.2.1", &[]);
        kill.action = "process.kill";
        kill.event_id = "e2".into();
        kill.params = BTreeMap::from([("pid", ParamValue::Pid(child.id()))]);
        let mut critical = policy();
        critical.critical_processes.push("sleep".into());
        let apart = dir.path().join("critical");
        std::fs::create_dir(&apart).unwrap();
        let executor = executor_in(
            &apart,
            super::super::plugins::firewall::Backend::Iptables,
            critical,
        )
        .await;
        let mut actions = [kill];
        let outcome = executor.run(&mut actions, &[], &[]).await;
        let alive = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let _ = child.wait();
        outcome.unwrap();
        assert_eq!(actions[0].status, ActionStatus::Refused, "{:?}", actions[0]);
        assert!(
            actions[0]
                .reason
                .as_deref()
                .unwrap_or_default()
                .contains("`sleep` is a critical process"),
            "{:?}",
            actions[0]
        );
        assert!(alive, "the refused kill must not have run");
    }

    /// A receiver that takes every request and never answers; counts the requests that came.
    pub(crate) async fn hanging_receiver() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let came = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = came.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, came)
    }

    /// An executor over a real state database in `dir` with its effects pool started, reporting
    /// to `observer`, and the store its rows are in.
    pub(crate) async fn pooled_in(
        dir: &std::path::Path,
        settings: pool::PoolSettings,
        observer: Option<Arc<dyn pool::EffectsObserver>>,
    ) -> (
        Arc<Executor>,
        crate::state::StateStore,
        crate::shutdown::ShutdownTrigger,
    ) {
        pooled_with_hook(dir, settings, None, observer).await
    }

    async fn pooled_with_hook(
        dir: &std::path::Path,
        settings: pool::PoolSettings,
        hook: Option<SettledHook>,
        observer: Option<Arc<dyn pool::EffectsObserver>>,
    ) -> (
        Arc<Executor>,
        crate::state::StateStore,
        crate::shutdown::ShutdownTrigger,
    ) {
        let policy = Policy {
            cooldown: Duration::ZERO,
            ..policy()
        };
        let mut executor =
            executor_in(dir, super::super::plugins::firewall::Backend::Auto, policy).await;
        if let Some(hook) = hook {
            executor = executor.with_settled_hook(hook);
        }
        let executor = Arc::new(executor);
        let store = crate::state::StateStore::open(&dir.join("state.db"))
            .await
            .unwrap();
        let (trigger, shutdown) = crate::shutdown::Shutdown::new();
        executor.start_pool(settings, store.clone(), observer, shutdown);
        (executor, store, trigger)
    }

    pub(crate) fn settings(
        workers: usize,
        queue: usize,
        limit: Duration,
        wait: Duration,
    ) -> pool::PoolSettings {
        pool::PoolSettings {
            workers,
            queue,
            time_limits: HashMap::from([("notify".to_string(), limit)]),
            shutdown_wait: wait,
        }
    }

    /// The stored rows of event `event`: (step, status, reason).
    pub(crate) async fn rows(
        store: &crate::state::StateStore,
        event: &str,
    ) -> Vec<(String, String, Option<String>)> {
        sqlx::query_as("SELECT step, status, reason FROM actions WHERE event_id = ? ORDER BY id")
            .bind(event)
            .fetch_all(store.pool())
            .await
            .unwrap()
    }

    /// Waits up to 10 s for event `event`'s rows to have no `dispatched` step left.
    async fn settled_rows(
        store: &crate::state::StateStore,
        event: &str,
    ) -> Vec<(String, String, Option<String>)> {
        for _ in 0..200 {
            let now = rows(store, event).await;
            if !now.is_empty() && now.iter().all(|(_, status, _)| status != "dispatched") {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        rows(store, event).await
    }

    /// Defect (issue 15.5): a webhook receiver that hangs held the committing task for every
    /// attempt. Now the step is recorded as dispatched at once, and its outcome, the pool's
    /// time limit, reaches the row and the audit trail when it arrives.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hanging_webhook_is_dispatched_not_awaited_and_its_timeout_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (url, came) = hanging_receiver().await;
        let (executor, store, _trigger) = pooled_in(
            dir.path(),
            settings(2, 8, Duration::from_millis(800), Duration::from_secs(5)),
            None,
        )
        .await;
        let mut batch = vec![notification(&url, "e1", None)];
        let started = Instant::now();
        let dispatched = executor.run(&mut batch, &[], &[]).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(batch[0].status, ActionStatus::Dispatched, "{batch:?}");
        assert_eq!(dispatched.jobs(), 1);
        store
            .write(&crate::state::Batch {
                actions: batch,
                ..Default::default()
            })
            .await
            .unwrap();
        drop(dispatched);
        let settled = settled_rows(&store, "e1").await;
        assert_eq!(came.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(settled.len(), 1);
        assert_eq!(settled[0].1, "failed", "{settled:?}");
        assert_eq!(settled[0].2.as_deref(), Some("timed out after 800ms"));
        let trail: Vec<(String, String)> =
            sqlx::query_as("SELECT kind, status FROM audit WHERE event_id = 'e1' ORDER BY seq")
                .fetch_all(store.pool())
                .await
                .unwrap();
        let trail: Vec<(&str, &str)> = trail
            .iter()
            .map(|(k, s)| (k.as_str(), s.as_str()))
            .collect();
        assert_eq!(
            trail,
            [
                ("decision", "dispatched"),
                ("intent", "executing"),
                ("outcome", "failed")
            ]
        );
    }

    /// A later step of a playbook whose earlier step went to the pool runs after it, in the
    /// same job: the earlier step's `on_failure: abort` still stops it, and the detection is
    /// settled once, when its last step is recorded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_later_step_waits_for_the_pooled_step_before_it_and_obeys_its_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let settled = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = settled.clone();
        let hook: SettledHook = Arc::new(move |event: &str, rule: &str| {
            seen.lock().unwrap().push(format!("{event}/{rule}"));
        });
        let (executor, store, _trigger) = pooled_with_hook(
            dir.path(),
            settings(2, 8, Duration::from_secs(5), Duration::from_secs(5)),
            Some(hook),
            None,
        )
        .await;
        // Nothing listens on port 1: the webhook fails at once.
        let mut tell = notification("http://127.0.0.1:1/hook", "e1", None);
        tell.on_failure = OnFailure::Abort;
        let log = ActionRecord {
            step: "log".into(),
            action: "notify.log",
            target: "warn".into(),
            params: typed("notify.log", &[("message", "after"), ("level", "warn")]),
            ..notification("http://127.0.0.1:1/unused", "e1", None)
        };
        let mut batch = vec![tell, log];
        let dispatched = executor.run(&mut batch, &[], &[]).await.unwrap();
        assert_eq!(dispatched.jobs(), 1);
        assert_eq!(batch[1].status, ActionStatus::Dispatched, "{batch:?}");
        assert!(
            batch[1]
                .reason
                .as_deref()
                .unwrap_or_default()
                .contains("after step `tell`"),
            "{batch:?}"
        );
        store
            .write(&crate::state::Batch {
                actions: batch,
                ..Default::default()
            })
            .await
            .unwrap();
        drop(dispatched);
        let stored = settled_rows(&store, "e1").await;
        let statuses: Vec<&str> = stored.iter().map(|(_, s, _)| s.as_str()).collect();
        assert_eq!(statuses, ["failed", "skipped"], "{stored:?}");
        assert_eq!(settled.lock().unwrap().clone(), ["e1/r"]);
    }

    /// Defect (issue 15.5): a summary of held notifications was sent inline, so a hanging
    /// receiver held the approvals check and a stop. It goes to the pool like other messages.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_summary_to_a_hanging_receiver_is_sent_from_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let (url, came) = hanging_receiver().await;
        let (executor, _, _trigger) = pooled_in(
            dir.path(),
            settings(2, 4, Duration::from_secs(60), Duration::from_millis(200)),
            None,
        )
        .await;
        let limit = Some(NotificationLimit {
            count: 1,
            window: Duration::from_secs(60),
        });
        let mut batch: Vec<ActionRecord> = ["e1", "e2"]
            .iter()
            .map(|e| notification(&url, e, limit))
            .collect();
        drop(executor.run(&mut batch, &[], &[]).await.unwrap());
        assert_eq!(batch[1].status, ActionStatus::Summarised, "{batch:?}");
        let started = Instant::now();
        assert_eq!(executor.flush_summaries(true).await.unwrap(), 1);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        for _ in 0..100 {
            if came.load(std::sync::atomic::Ordering::SeqCst) == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(came.load(std::sync::atomic::Ordering::SeqCst), 2);
        // Both hang: the message and the summary are given up at the pool's wait.
        assert_eq!(executor.close_pool().await.unwrap(), 2);
    }

    #[test]
    fn effects_settings_name_the_key_at_fault() {
        let mut config = pool::EffectsConfig::default();
        assert!(config.settings().is_ok());
        config
            .time_limits
            .insert("mail".into(), crate::duration::Span::secs(5));
        let (key, message) = config.settings().unwrap_err();
        assert_eq!(key, "time_limits");
        assert!(
            message.contains("`mail`, which is no action family"),
            "{message}"
        );
        // A zero limit cannot be written into the config at all: the type refuses it when read.
        let refused = serde_json::from_value::<pool::EffectsConfig>(
            serde_json::json!({"time_limits": {"notify": "0s"}}),
        )
        .unwrap_err();
        assert!(
            refused.to_string().contains("not a duration above zero"),
            "{refused}"
        );
        let config = pool::EffectsConfig {
            workers: 0,
            ..pool::EffectsConfig::default()
        };
        assert_eq!(config.settings().unwrap_err().0, "workers");
    }
}
