//! A Redis stream read through a consumer group.
//!
//! Redis, not palisade, spreads the entries over the engines of a group and remembers what
//! each one was given. An entry is acknowledged only after the engine has committed what it
//! produced, so an engine that dies leaves its entries pending; after `claim_idle_ms` any engine
//! of the group claims them (`XAUTOCLAIM`). An entry delivered `max_deliveries` times without an
//! acknowledgement (it keeps killing engines) goes to the dead-letter stream with the reason.
//!
//! An engine hands each entry to its pipeline once: entries it holds (read, not yet
//! acknowledged) are remembered, so re-reading its own pending entries after a reconnect, or a
//! claim that sweeps up its own slow entries, never feeds them in a second time.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::Value;
use redis::aio::MultiplexedConnection;

use crate::bus::{Link, is_connection_error};
use crate::config::{StreamSourceConfig, StreamStart};
use crate::shutdown::Shutdown;

/// One stream entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    /// The event JSON: the entry's `data` field (or `event`). For an entry with neither, the
    /// entry's fields and values as a JSON object, kept for the dead-letter stream.
    pub payload: Vec<u8>,
    /// Why the entry holds no event, naming its fields, when it has neither `data` nor `event`.
    pub missing: Option<String>,
}

/// The ids of the entries this engine has read and not yet acknowledged or dead-lettered:
/// shared by the reading half, which adds them, and the acknowledging half, which removes them.
#[derive(Debug, Clone, Default)]
struct InFlight(Arc<Mutex<HashSet<String>>>);

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        // The set holds plain ids; a panic elsewhere while it was held leaves nothing half-done.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps the entries not already held and marks them held.
    fn admit(&self, entries: &mut Vec<Entry>) {
        let mut held = self.lock();
        entries.retain(|entry| held.insert(entry.id.clone()));
    }

    fn holds(&self, id: &str) -> bool {
        self.lock().contains(id)
    }

    fn release(&self, ids: &[String]) {
        let mut held = self.lock();
        for id in ids {
            held.remove(id);
        }
    }
}

pub struct StreamSource {
    link: Link,
    config: StreamSourceConfig,
    consumer: String,
    /// While this consumer's own pending entries are being read (after a start or a lost
    /// connection, before new ones): the id to read after. Each read moves it past what it
    /// returned; reading from `0` every time would return the same unacknowledged entries again
    /// and again while the pipeline still holds them.
    pending_after: Option<String>,
    /// Where the next `XAUTOCLAIM` scan of the group's pending entries starts.
    claim_from: String,
    held: InFlight,
    group_ready: bool,
    last_claim: Option<Instant>,
}

impl StreamSource {
    pub fn new(link: Link, config: StreamSourceConfig) -> StreamSource {
        let consumer = config
            .consumer
            .clone()
            .unwrap_or_else(default_consumer_name);
        StreamSource {
            link,
            config,
            consumer,
            pending_after: Some("0".into()),
            claim_from: "0-0".into(),
            held: InFlight::default(),
            group_ready: false,
            last_claim: None,
        }
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    pub fn stream(&self) -> &str {
        &self.config.stream
    }

    fn claim_every(&self) -> Duration {
        Duration::from_millis(self.config.claim_idle_ms / 2)
            .clamp(Duration::from_millis(500), Duration::from_secs(10))
    }

    /// The next batch of entries: this consumer's own pending ones first, then entries idle
    /// too long at other consumers, then new ones. Waits (and reconnects) as long as needed;
    /// `None` once `shutdown` has fired.
    pub async fn next_batch(&mut self, shutdown: &Shutdown) -> Option<Vec<Entry>> {
        loop {
            if shutdown.is_triggered() {
                return None;
            }
            let mut connection = self.link.connection(shutdown).await?;
            match self.read(&mut connection).await {
                Ok(entries) if entries.is_empty() => continue,
                Ok(entries) => return Some(entries),
                Err(err) if err.code() == Some("NOGROUP") => {
                    // The stream or the group vanished (a Redis restart without persistence).
                    tracing::warn!(
                        stream = self.config.stream,
                        group = self.config.group,
                        "the consumer group is gone; creating it again"
                    );
                    self.group_ready = false;
                }
                Err(err) => {
                    if is_connection_error(&err) {
                        // A read whose reply was lost still made its entries pending here:
                        // read them again (what the pipeline already holds is skipped).
                        self.pending_after = Some("0".into());
                    } else {
                        tracing::error!(
                            stream = self.config.stream,
                            "reading the stream failed: {err}"
                        );
                    }
                    if !self.link.failed(&err, shutdown).await {
                        return None;
                    }
                }
            }
        }
    }

    async fn read(
        &mut self,
        connection: &mut MultiplexedConnection,
    ) -> redis::RedisResult<Vec<Entry>> {
        if !self.group_ready {
            self.create_group(connection).await?;
        }
        if self.pending_after.is_none()
            && self
                .last_claim
                .is_none_or(|at| at.elapsed() >= self.claim_every())
        {
            self.last_claim = Some(Instant::now());
            let claimed = self.reclaim(connection).await?;
            if !claimed.is_empty() {
                tracing::info!(
                    count = claimed.len(),
                    "claimed entries another consumer left unacknowledged"
                );
                return Ok(claimed);
            }
        }
        let mut command = redis::cmd("XREADGROUP");
        command
            .arg("GROUP")
            .arg(&self.config.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.config.batch_size);
        if self.pending_after.is_none() {
            command.arg("BLOCK").arg(self.config.block_ms);
        }
        command
            .arg("STREAMS")
            .arg(&self.config.stream)
            .arg(self.pending_after.as_deref().unwrap_or(">"));
        let reply: Value = command.query_async(connection).await?;
        let mut entries = Vec::new();
        let mut deleted = Vec::new();
        let mut last = None;
        if let Value::Array(streams) = reply {
            for stream in streams {
                if let Value::Array(parts) = stream
                    && let Some(list) = parts.into_iter().nth(1)
                {
                    last = parse_entries(list, &mut entries, &mut deleted).or(last);
                }
            }
        }
        if !deleted.is_empty() {
            // Pending entries deleted from the stream (trimmed) cannot be handled; let them go.
            ack_ids(&self.config, connection, &deleted).await?;
        }
        if self.pending_after.is_some() {
            // Own pending entries come back in id order; the next read starts after the last.
            // None left: read new entries from now on.
            self.pending_after = last;
        }
        self.held.admit(&mut entries);
        Ok(entries)
    }

    async fn create_group(
        &mut self,
        connection: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        let start = match self.config.start {
            StreamStart::Beginning => "0",
            StreamStart::New => "$",
        };
        let created: redis::RedisResult<Value> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(start)
            .arg("MKSTREAM")
            .query_async(connection)
            .await;
        match created {
            Ok(_) => tracing::info!(
                stream = self.config.stream,
                group = self.config.group,
                "created the consumer group"
            ),
            Err(err) if err.code() == Some("BUSYGROUP") => {}
            Err(err) => return Err(err),
        }
        self.group_ready = true;
        self.pending_after = Some("0".into());
        Ok(())
    }

    /// Moves entries that were delivered too often to the dead-letter stream, then claims
    /// entries idle past `claim_idle_ms` at any consumer.
    async fn reclaim(
        &mut self,
        connection: &mut MultiplexedConnection,
    ) -> redis::RedisResult<Vec<Entry>> {
        let pending: Value = redis::cmd("XPENDING")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg("IDLE")
            .arg(self.config.claim_idle_ms)
            .arg("-")
            .arg("+")
            .arg(self.config.batch_size)
            .query_async(connection)
            .await?;
        let mut poisoned = Vec::new();
        if let Value::Array(rows) = pending {
            for row in rows {
                if let Value::Array(fields) = row
                    && let [id, _consumer, _idle, Value::Int(deliveries)] = fields.as_slice()
                    && u64::try_from(*deliveries).unwrap_or(0) >= self.config.max_deliveries
                    && let Some(id) = text(id)
                    // Delivered often, but this engine is handling it now.
                    && !self.held.holds(&id)
                {
                    poisoned.push((id, *deliveries));
                }
            }
        }
        for (id, deliveries) in poisoned {
            let found: Value = redis::cmd("XRANGE")
                .arg(&self.config.stream)
                .arg(&id)
                .arg(&id)
                .query_async(connection)
                .await?;
            let mut entries = Vec::new();
            parse_entries(found, &mut entries, &mut Vec::new());
            let payload = entries.pop().map(|e| e.payload).unwrap_or_default();
            let reason = format!("delivered {deliveries} times without being acknowledged");
            tracing::error!(
                entry = id,
                "moving a stream entry to the dead-letter stream: {reason}"
            );
            dead_letter_one(&self.config, connection, &id, "poison", &reason, &payload).await?;
        }
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(&self.consumer)
            .arg(self.config.claim_idle_ms)
            .arg(&self.claim_from)
            .arg("COUNT")
            .arg(self.config.batch_size)
            .query_async(connection)
            .await?;
        let mut entries = Vec::new();
        if let Value::Array(parts) = reply {
            let mut parts = parts.into_iter();
            // The scan goes on where this one stopped (`0-0` once it has been through them all),
            // so entries that cannot be claimed yet do not hide the ones after them.
            self.claim_from = parts
                .next()
                .as_ref()
                .and_then(text)
                .unwrap_or_else(|| "0-0".into());
            if let Some(list) = parts.next() {
                parse_entries(list, &mut entries, &mut Vec::new());
            }
        }
        // XAUTOCLAIM takes idle entries from every consumer, this one too: entries this engine
        // still holds (a slow commit, Redis away for a while) are already on their way.
        self.held.admit(&mut entries);
        Ok(entries)
    }

    /// The half of the source that acknowledges, on its own connection, so a committing task
    /// can acknowledge while the reading task reads on.
    pub fn acker(&self) -> StreamAcker {
        StreamAcker {
            link: self.link.sibling("acknowledgements"),
            config: self.config.clone(),
            held: self.held.clone(),
        }
    }
}

/// Acknowledges entries and moves rejected ones to the dead-letter stream.
pub struct StreamAcker {
    link: Link,
    config: StreamSourceConfig,
    held: InFlight,
}

impl StreamAcker {
    async fn dead_letter_one(
        &self,
        connection: &mut MultiplexedConnection,
        id: &str,
        kind: &str,
        reason: &str,
        payload: &[u8],
    ) -> redis::RedisResult<()> {
        dead_letter_one(&self.config, connection, id, kind, reason, payload).await
    }

    /// Writes rejected entries to the dead-letter stream (with the reason) and acknowledges
    /// them. Retries until done; false when shutdown fired first (they stay pending).
    pub async fn dead_letter(
        &mut self,
        rejected: &[(Entry, String, String)],
        shutdown: &Shutdown,
    ) -> bool {
        for (entry, kind, reason) in rejected {
            loop {
                let Some(mut connection) = self.link.connection(shutdown).await else {
                    return false;
                };
                match self
                    .dead_letter_one(&mut connection, &entry.id, kind, reason, &entry.payload)
                    .await
                {
                    Ok(()) => {
                        self.held.release(std::slice::from_ref(&entry.id));
                        break;
                    }
                    Err(err) => {
                        if !self.link.failed(&err, shutdown).await {
                            return false;
                        }
                    }
                }
            }
        }
        true
    }

    /// Acknowledges handled entries. Retries until done; false when shutdown fired first (the
    /// entries stay pending and are handled again, by this engine or another).
    pub async fn ack(&mut self, ids: &[String], shutdown: &Shutdown) -> bool {
        if ids.is_empty() {
            return true;
        }
        loop {
            let Some(mut connection) = self.link.connection(shutdown).await else {
                return false;
            };
            match self.ack_ids(&mut connection, ids).await {
                Ok(()) => {
                    self.held.release(ids);
                    return true;
                }
                Err(err) => {
                    if !self.link.failed(&err, shutdown).await {
                        return false;
                    }
                }
            }
        }
    }

    async fn ack_ids(
        &self,
        connection: &mut MultiplexedConnection,
        ids: &[String],
    ) -> redis::RedisResult<()> {
        ack_ids(&self.config, connection, ids).await
    }
}

async fn ack_ids(
    config: &StreamSourceConfig,
    connection: &mut MultiplexedConnection,
    ids: &[String],
) -> redis::RedisResult<()> {
    redis::cmd("XACK")
        .arg(&config.stream)
        .arg(&config.group)
        .arg(ids)
        .query_async::<()>(connection)
        .await
}

/// The most of an entry's data the dead-letter stream keeps: enough to see what was sent, and a
/// flood of huge entries cannot fill Redis with copies of themselves.
pub const DEAD_LETTER_EXCERPT_BYTES: usize = 16 * 1024;

/// Appends one entry to the dead-letter stream with the reason, and acknowledges it, in one
/// round trip. Data longer than [`DEAD_LETTER_EXCERPT_BYTES`] is kept as its first bytes, with
/// its whole length in `size` (always written).
async fn dead_letter_one(
    config: &StreamSourceConfig,
    connection: &mut MultiplexedConnection,
    id: &str,
    kind: &str,
    reason: &str,
    payload: &[u8],
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    pipe.cmd("XADD")
        .arg(&config.dead_letter_stream)
        .arg("MAXLEN")
        .arg("~")
        .arg(config.dead_letter_maxlen)
        .arg("*")
        .arg("entry_id")
        .arg(id)
        .arg("kind")
        .arg(kind)
        .arg("reason")
        .arg(reason)
        .arg("size")
        .arg(payload.len())
        .arg("data")
        .arg(payload.get(..DEAD_LETTER_EXCERPT_BYTES).unwrap_or(payload))
        .ignore()
        .cmd("XACK")
        .arg(&config.stream)
        .arg(&config.group)
        .arg(id)
        .ignore();
    pipe.query_async::<()>(connection).await
}

/// `HOST-PID`: unique per running engine, readable in `XINFO CONSUMERS`.
pub fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "palisade".into());
    format!("{host}-{}", std::process::id())
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Parses `[[id, [field, value, ...]], ...]`, taking the bytes out of the reply rather than
/// copying them; entries whose body is nil (deleted while pending) go to `deleted`. Returns the
/// last id in the reply (Redis sends them in order).
fn parse_entries(
    list: Value,
    entries: &mut Vec<Entry>,
    deleted: &mut Vec<String>,
) -> Option<String> {
    let Value::Array(items) = list else {
        return None;
    };
    let mut last = None;
    entries.reserve(items.len());
    for item in items {
        let Value::Array(parts) = item else { continue };
        let mut parts = parts.into_iter();
        let id = match parts.next() {
            Some(Value::BulkString(bytes)) => match String::from_utf8(bytes) {
                Ok(id) => id,
                Err(_) => continue,
            },
            Some(Value::SimpleString(id)) => id,
            _ => continue,
        };
        last = Some(id.clone());
        match parts.next() {
            Some(Value::Array(fields)) => {
                let (payload, missing) = payload(fields);
                entries.push(Entry {
                    payload,
                    missing,
                    id,
                })
            }
            _ => deleted.push(id),
        }
    }
    last
}

/// The event JSON of an entry: its `data` field, else `event`. An entry with neither is not
/// guessed at (taking some other field's value would dead-letter it as "not JSON" with the
/// wrong text): it comes back as its fields as a JSON object, with the reason naming them.
fn payload(fields: Vec<Value>) -> (Vec<u8>, Option<String>) {
    let is_named =
        |name: &Value, wanted: &[u8]| matches!(name, Value::BulkString(n) if n == wanted);
    let chosen = fields
        .chunks(2)
        .position(|pair| is_named(&pair[0], b"data"))
        .or_else(|| {
            fields
                .chunks(2)
                .position(|pair| is_named(&pair[0], b"event"))
        });
    if let Some(pair) = chosen {
        return match fields.into_iter().nth(pair * 2 + 1) {
            Some(Value::BulkString(bytes)) => (bytes, None),
            _ => (Vec::new(), None),
        };
    }
    let mut names = Vec::new();
    let mut object = serde_json::Map::new();
    for pair in fields.chunks(2) {
        let name = match &pair[0] {
            Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            other => text(other).unwrap_or_default(),
        };
        let value = pair.get(1).and_then(|v| match v {
            Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            other => text(other),
        });
        names.push(format!("`{}`", crate::text::inert(&name)));
        object.insert(name, value.map_or(serde_json::Value::Null, Into::into));
    }
    let reason = if names.is_empty() {
        "entry has no `data` field (it has no fields)".to_string()
    } else {
        format!(
            "entry has no `data` field (its fields: {})",
            names.join(", ")
        )
    };
    (
        serde_json::Value::Object(object).to_string().into_bytes(),
        Some(reason),
    )
}
