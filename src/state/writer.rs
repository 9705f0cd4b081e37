//! The one task that writes the state file, and the handle the rest of the engine writes
//! through.
//!
//! Jobs arrive over a channel in the order they were sent. The writer takes the first job and
//! every job already waiting behind it (up to a bound of rows) and stores them all in one
//! transaction, in order, then answers each: under load one batch's outcomes, the outbox
//! publisher's marks and the next batch's decisions share a commit, while an idle writer
//! commits a lone job at once. Grouping never reorders: a job is stored in its group's commit,
//! never before a job sent ahead of it.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{
    Batch, Decided, DetectionKey, OutboxAlert, ROWS_PER_STATEMENT, StateError, StateStore,
    outcome_rows, published_rows, split_decided, transient, unrecorded, write_rows,
};
use crate::decision::ActionRecord;

/// Who waits for a job, and for what answer.
type Reply<T> = oneshot::Sender<Result<T, String>>;

/// Rows one group may hold before the writer commits it; more waiting go in the next.
const ROWS_PER_GROUP: usize = 10 * ROWS_PER_STATEMENT;

/// Jobs one group may hold.
const JOBS_PER_GROUP: usize = 64;

/// One unit of work for the writer.
enum Job {
    /// Batches, and who to tell when they are stored. Consecutive batches are merged into one
    /// (fewer, larger statements).
    Batch { batch: Batch, done: Vec<Reply<()>> },
    /// A batch whose detections are decided: stored, and answered with the ones new.
    Decide {
        batch: Batch,
        alerts: bool,
        done: Reply<Decided>,
    },
    /// The rest of a decided batch's rows, its steps' outcomes, and the alerts that report
    /// them.
    Outcomes {
        rows: Batch,
        actions: Vec<ActionRecord>,
        alerts: Vec<OutboxAlert>,
        done: Reply<()>,
    },
    /// Outbox rows up to this id were published.
    Published { up_to: i64, done: Reply<()> },
}

impl Job {
    /// Tells whoever waits for this job that it was not stored.
    fn fail(self, message: &str) {
        match self {
            Job::Batch { done, .. } => {
                for done in done {
                    let _ = done.send(Err(message.to_string()));
                }
            }
            Job::Decide { done, .. } => {
                let _ = done.send(Err(message.to_string()));
            }
            Job::Outcomes { done, .. } | Job::Published { done, .. } => {
                let _ = done.send(Err(message.to_string()));
            }
        }
    }

    fn rows(&self) -> usize {
        match self {
            Job::Batch { batch, .. } | Job::Decide { batch, .. } => batch.rows(),
            Job::Outcomes {
                rows,
                actions,
                alerts,
                ..
            } => rows.rows() + actions.len() + alerts.len(),
            Job::Published { .. } => 1,
        }
    }
}

/// What a stored job comes to, before its answer is sent.
enum Written {
    Done,
    /// A decided batch: the detection keys inserted now, and the alert ids owed.
    Decided {
        inserted: HashSet<DetectionKey>,
        owed: HashSet<String>,
    },
}

/// Stores a group of jobs, in order, in one transaction.
async fn store_group(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    jobs: &[Job],
) -> Result<Vec<Written>, StateError> {
    let mut stored = Vec::with_capacity(jobs.len());
    for job in jobs {
        stored.push(match job {
            Job::Batch { batch, .. } => {
                write_rows(tx, batch).await?;
                Written::Done
            }
            Job::Decide { batch, alerts, .. } => {
                let inserted = write_rows(tx, batch).await?;
                let owed = if *alerts {
                    unrecorded(tx, batch, &inserted).await?
                } else {
                    HashSet::new()
                };
                Written::Decided { inserted, owed }
            }
            Job::Outcomes {
                rows,
                actions,
                alerts,
                ..
            } => {
                if !rows.is_empty() {
                    write_rows(tx, rows).await?;
                }
                outcome_rows(tx, actions, alerts).await?;
                Written::Done
            }
            Job::Published { up_to, .. } => {
                published_rows(tx, *up_to).await?;
                Written::Done
            }
        });
    }
    Ok(stored)
}

/// Answers every job of a group with its result.
fn answer_group(jobs: Vec<Job>, result: Result<Vec<Written>, String>, bell: &Notify) {
    let mut stored = match result {
        Ok(stored) => stored.into_iter(),
        Err(message) => {
            for job in jobs {
                job.fail(&message);
            }
            return;
        }
    };
    let mut ring = false;
    for job in jobs {
        let this = stored.next();
        match job {
            Job::Batch { done, .. } => {
                for done in done {
                    let _ = done.send(Ok(()));
                }
            }
            Job::Decide { batch, done, .. } => {
                let decided = match this {
                    Some(Written::Decided { inserted, owed }) => {
                        Ok(split_decided(batch, inserted, owed))
                    }
                    _ => Err("the writer lost a decided batch's answer".to_string()),
                };
                let _ = done.send(decided);
            }
            Job::Outcomes { alerts, done, .. } => {
                ring |= !alerts.is_empty();
                let _ = done.send(Ok(()));
            }
            Job::Published { done, .. } => {
                let _ = done.send(Ok(()));
            }
        }
    }
    if ring {
        bell.notify_one();
    }
}

/// Waits for the writer's answer to a job.
async fn answer<T>(stored: oneshot::Receiver<Result<T, String>>) -> Result<T, StateError> {
    match stored.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(StateError::Failed(message)),
        Err(_) => Err(StateError::WriterGone),
    }
}

/// A job handed to the writer whose commit has not been waited for yet: the commit path hands
/// its batch's outcomes to the writer and goes on with the next batch, and whoever acknowledges
/// the input waits for this first.
#[must_use = "a write is only known to be stored once this is awaited"]
pub struct Stored {
    reply: Option<oneshot::Receiver<Result<(), String>>>,
}

impl Stored {
    /// Nothing was handed to the writer: stored at once.
    pub fn nothing() -> Stored {
        Stored { reply: None }
    }

    /// Waits until the job is committed.
    pub async fn wait(self) -> Result<(), StateError> {
        match self.reply {
            Some(reply) => answer(reply).await,
            None => Ok(()),
        }
    }
}

/// The handle sources use to hand batches to the writer task.
#[derive(Clone)]
pub struct StateWriter {
    jobs: mpsc::Sender<Job>,
    /// For reads beside the writer (the outbox publisher); the file is in WAL mode, so reads
    /// never wait for the writer.
    store: StateStore,
    /// Rung after alerts were written to the outbox, for its publisher.
    outbox_bell: Arc<Notify>,
}

impl StateWriter {
    /// Batches waiting for the writer.
    pub fn queued(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    /// The store the writer writes, for reading.
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// Notified each time alerts have been committed to the outbox.
    pub fn outbox_bell(&self) -> Arc<Notify> {
        self.outbox_bell.clone()
    }

    async fn hand<T>(
        &self,
        job: impl FnOnce(Reply<T>) -> Job,
    ) -> Result<oneshot::Receiver<Result<T, String>>, StateError> {
        let (done, stored) = oneshot::channel();
        self.jobs
            .send(job(done))
            .await
            .map_err(|_| StateError::WriterGone)?;
        Ok(stored)
    }

    async fn submit<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, StateError> {
        answer(self.hand(job).await?).await
    }

    /// Queues a batch without waiting for it to be stored.
    pub async fn send(&self, batch: Batch) -> Result<(), StateError> {
        self.jobs
            .send(Job::Batch {
                batch,
                done: Vec::new(),
            })
            .await
            .map_err(|_| StateError::WriterGone)
    }

    /// Queues a batch from a blocking thread.
    pub fn blocking_send(&self, batch: Batch) -> Result<(), StateError> {
        self.jobs
            .blocking_send(Job::Batch {
                batch,
                done: Vec::new(),
            })
            .map_err(|_| StateError::WriterGone)
    }

    /// Queues a batch and waits until it is committed: a source acknowledges its input only
    /// after this returns.
    pub async fn write(&self, batch: Batch) -> Result<(), StateError> {
        self.write_later(batch).await?.wait().await
    }

    /// Queues a batch; what comes back is waited for before its input is acknowledged.
    pub async fn write_later(&self, batch: Batch) -> Result<Stored, StateError> {
        let reply = self
            .hand(|done| Job::Batch {
                batch,
                done: vec![done],
            })
            .await?;
        Ok(Stored { reply: Some(reply) })
    }

    /// Stores a batch with its decisions (detections and their steps as planned) *before*
    /// anything acts on them, and answers with the detections decided now and their steps.
    /// Detections whose key (event id, rule) is already stored, by this batch's earlier
    /// delivery or a batch queued before it, are dropped with their steps and counted: what
    /// was decided once is not decided, acted on or announced again. With `alerts`, the
    /// recognised detections whose alert never reached the outbox come back as
    /// [`Decided::unrecorded`], so their alert can still be written.
    pub async fn decide(&self, batch: Batch, alerts: bool) -> Result<Decided, StateError> {
        self.submit(|done| Job::Decide {
            batch,
            alerts,
            done,
        })
        .await
    }

    /// Stores what became of decided steps (each row found by its key: event id, rule,
    /// playbook, step) and, in the same transaction, the alerts that report them, into the
    /// outbox; an alert whose `alert_id` is already there is not added again. Called once a
    /// detection's steps have their outcomes: by the commit path after the executor, and by
    /// whatever finishes steps later. The outbox's publisher is rung once they are stored.
    pub async fn outcomes(
        &self,
        actions: Vec<ActionRecord>,
        alerts: Vec<OutboxAlert>,
    ) -> Result<(), StateError> {
        self.outcomes_later(Batch::default(), actions, alerts)
            .await?
            .wait()
            .await
    }

    /// [`StateWriter::outcomes`] with the rest of the decided batch's rows (what
    /// [`StateWriter::decide`] did not need to store before acting: behaviour, correlation
    /// windows, the learning sample), without waiting for the commit.
    pub async fn outcomes_later(
        &self,
        rows: Batch,
        actions: Vec<ActionRecord>,
        alerts: Vec<OutboxAlert>,
    ) -> Result<Stored, StateError> {
        let reply = self
            .hand(|done| Job::Outcomes {
                rows,
                actions,
                alerts,
                done,
            })
            .await?;
        Ok(Stored { reply: Some(reply) })
    }

    /// Marks outbox rows up to `up_to` published.
    pub async fn published(&self, up_to: i64) -> Result<(), StateError> {
        self.submit(|done| Job::Published { up_to, done }).await
    }
}

/// Starts the single writer task. Jobs queued while the writer is busy are committed together
/// (see the module's comment). The task ends, having written every job already queued, when
/// every [`StateWriter`] is dropped or `shutdown` is notified; it returns how many
/// transactions it wrote.
pub fn spawn_writer(
    store: StateStore,
    shutdown: Arc<Notify>,
) -> (StateWriter, JoinHandle<Result<u64, StateError>>) {
    let (sender, mut receiver) = mpsc::channel::<Job>(1024);
    let reader = store.clone();
    let outbox_bell = Arc::new(Notify::new());
    let bell = outbox_bell.clone();
    let handle = tokio::spawn(async move {
        let mut written = 0u64;
        loop {
            let first = tokio::select! {
                biased;
                next = receiver.recv() => match next {
                    Some(job) => job,
                    None => break,
                },
                () = shutdown.notified() => {
                    // No new jobs; the ones already queued are still received and written.
                    receiver.close();
                    continue;
                }
            };
            let mut rows = first.rows();
            let mut group = vec![first];
            while rows < ROWS_PER_GROUP && group.len() < JOBS_PER_GROUP {
                let Ok(next) = receiver.try_recv() else {
                    break;
                };
                rows += next.rows();
                match (group.last_mut(), next) {
                    (
                        Some(Job::Batch { batch, done }),
                        Job::Batch {
                            batch: more,
                            done: waiting,
                        },
                    ) => {
                        batch.absorb(more);
                        done.extend(waiting);
                    }
                    (_, next) => group.push(next),
                }
            }
            // Busy or locked (another process holds the lock): wait and store the same group
            // again; whoever waits for it waits too, so nothing new is read meanwhile.
            let result = transient::retry(
                "writing to the state file",
                StateError::is_transient,
                || store.in_transaction(async |tx| store_group(tx, &group).await),
            )
            .await;
            match result {
                Ok(stored) => answer_group(group, Ok(stored), &bell),
                Err(err) => {
                    answer_group(group, Err(err.to_string()), &bell);
                    return Err(err);
                }
            }
            written += 1;
        }
        store.close().await;
        Ok(written)
    });
    (
        StateWriter {
            jobs: sender,
            store: reader,
            outbox_bell,
        },
        handle,
    )
}
