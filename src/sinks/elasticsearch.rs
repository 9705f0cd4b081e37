//! Alerts into Elasticsearch: the documents of the alert outbox (the ones the Redis publisher
//! sends, with each step's outcome, never a plan) are indexed with the `_bulk` API as
//! ECS-shaped documents. The sink reads the outbox with its own cursor (`sink_cursors`), moved
//! only past rows that were indexed or refused for good, so a restart or an unreachable
//! cluster loses nothing. It runs as its own background task: a down cluster never holds up
//! the pipeline, only this sink falls behind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::outbound::{self, Edge, Request};
use crate::state::StateStore;

/// The name of the sink's cursor in `sink_cursors`.
const CURSOR: &str = "elasticsearch";

static INDEXED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
static RETRIES: AtomicU64 = AtomicU64::new(0);

/// `(indexed, failed, retries)` since the process started, for `/metrics`.
pub fn counters() -> (u64, u64, u64) {
    (
        INDEXED.load(Ordering::Relaxed),
        FAILED.load(Ordering::Relaxed),
        RETRIES.load(Ordering::Relaxed),
    )
}

/// The sink's settings live with the other alert settings in `config` (this module reads them).
pub use crate::config::EsSinkConfig;

/// Why a round did not finish; the cursor stays where it was.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot read the alert outbox: {0}")]
    State(#[from] crate::state::StateError),
    #[error("elasticsearch sink: {0}")]
    Config(String),
    #[error("elasticsearch sink: {0} alert(s) still not indexed after retries: {1}")]
    Owed(usize, String),
}

/// The sink: a client and the outbox it reads.
pub struct EsSink {
    client: outbound::Client,
    config: EsSinkConfig,
    bulk_url: url::Url,
    headers: HeaderMap,
    store: StateStore,
}

impl EsSink {
    /// Checks the config and reads the credentials from the environment.
    pub fn new(config: &EsSinkConfig, store: StateStore) -> Result<EsSink, SinkError> {
        let limits = outbound::Limits {
            max_body_bytes: 16 * 1024 * 1024,
            read_timeout: config.timeout.duration(),
            redirects: outbound::Redirects::None,
        };
        let client = outbound::Client::new(Edge::Webhook, limits)
            .map_err(|e| SinkError::Config(e.to_string()))?;
        let bulk_url = outbound::parse_url(&format!("{}/_bulk", config.url.trim_end_matches('/')))
            .map_err(|e| SinkError::Config(e.to_string()))?;
        Ok(EsSink {
            client,
            bulk_url,
            headers: credentials(config)?,
            config: config.clone(),
            store,
        })
    }

    /// One round: the next batch of outbox rows after the cursor, indexed (retrying what the
    /// cluster could not take yet); the cursor moves past them only when each is indexed or
    /// refused for good.
    pub async fn round(&self) -> Result<usize, SinkError> {
        let cursor = self.store.sink_cursor(CURSOR).await?;
        let rows = self
            .store
            .outbox_after(cursor, self.config.batch.max(1))
            .await?;
        let Some(&(last, _)) = rows.last() else {
            return Ok(0);
        };
        let mut owed = Vec::new();
        for (id, document) in &rows {
            match serde_json::from_str::<Value>(document) {
                Ok(alert) => owed.push(ecs_document(&alert)),
                Err(_) => {
                    // Published rows far behind the newest keep only their key; a sink that
                    // far behind cannot index them.
                    FAILED.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        outbox_id = id,
                        "an outbox row has no alert document left; not indexed"
                    );
                }
            }
        }
        let count = owed.len();
        let mut wait = self.config.retry_backoff.duration();
        let mut attempt = 0;
        loop {
            let why = match self.bulk(&owed).await {
                Ok(retry) if retry.is_empty() => break,
                Ok(retry) => {
                    let why = format!("{} item(s) answered 429 or 5xx", retry.len());
                    owed = retry;
                    why
                }
                Err(err) => err,
            };
            if attempt >= 3 {
                return Err(SinkError::Owed(owed.len(), why));
            }
            attempt += 1;
            RETRIES.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("elasticsearch sink: {why}; retrying in {wait:?}");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(60));
        }
        self.store.set_sink_cursor(CURSOR, last).await?;
        Ok(count)
    }

    /// Sends one `_bulk` request; the documents to send again (the items answered 429 or
    /// 5xx, or all of them when the request itself failed retryably). Items refused with
    /// another status are counted as failed and dropped: sending them again would fail again.
    async fn bulk(&self, documents: &[(String, Value)]) -> Result<Vec<(String, Value)>, String> {
        let mut body = String::new();
        for (id, document) in documents {
            body.push_str(&json!({"create": {"_index": self.config.index, "_id": id}}).to_string());
            body.push('\n');
            body.push_str(&document.to_string());
            body.push('\n');
        }
        let mut request = Request::get(self.bulk_url.clone());
        request.method = reqwest::Method::POST;
        request.headers = self.headers.clone();
        request.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        request.body = Some(body.into_bytes());
        let response = self.client.send(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(format!("the cluster answered {status}"));
        }
        if !status.is_success() {
            // The whole request refused (bad credentials, no such index pattern): not an item
            // problem, and not fixed by dropping the alerts; kept for the next round.
            let excerpt = response.excerpt(200).await;
            return Err(format!("the cluster answered {status}: {excerpt}"));
        }
        let answer = response.body().await.map_err(|e| e.to_string())?;
        let answer: Value = serde_json::from_slice(&answer)
            .map_err(|e| format!("the bulk answer is not JSON: {e}"))?;
        let items = answer
            .get("items")
            .and_then(Value::as_array)
            .ok_or("the bulk answer has no `items`")?;
        if items.len() != documents.len() {
            return Err(format!(
                "the bulk answer has {} items for {} documents",
                items.len(),
                documents.len()
            ));
        }
        let mut retry = Vec::new();
        for (item, document) in items.iter().zip(documents) {
            let result = item
                .as_object()
                .and_then(|o| o.values().next())
                .cloned()
                .unwrap_or(Value::Null);
            let status = result.get("status").and_then(Value::as_u64).unwrap_or(0);
            match status {
                200..=299 => {
                    INDEXED.fetch_add(1, Ordering::Relaxed);
                }
                // Indexed by an earlier round that stopped before moving the cursor.
                409 => {}
                429 | 500..=599 => retry.push(document.clone()),
                _ => {
                    FAILED.fetch_add(1, Ordering::Relaxed);
                    let reason = result
                        .pointer("/error/reason")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason given");
                    tracing::warn!(
                        alert_id = document.0,
                        "elasticsearch refused an alert ({status}): {reason}; dropped"
                    );
                }
            }
        }
        Ok(retry)
    }
}

fn credentials(config: &EsSinkConfig) -> Result<HeaderMap, SinkError> {
    let read = |variable: &String| {
        std::env::var(variable).map_err(|_| {
            SinkError::Config(format!(
                "needs the environment variable `{variable}`, which is not set"
            ))
        })
    };
    let value = match (
        &config.api_key_env,
        &config.username_env,
        &config.password_env,
    ) {
        (Some(key), _, _) => format!("ApiKey {}", read(key)?),
        (None, Some(user), Some(password)) => {
            use base64::Engine as _;
            let pair = format!("{}:{}", read(user)?, read(password)?);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        }
        _ => return Ok(HeaderMap::new()),
    };
    let mut value = HeaderValue::from_str(&value)
        .map_err(|_| SinkError::Config("the credentials are not a valid header value".into()))?;
    value.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value);
    Ok(headers)
}

/// The ECS-shaped document of one alert, keyed by its `alert_id` (so a copy sent twice is
/// refused as a conflict, not indexed twice). What palisade has beyond ECS (the steps and
/// their outcomes, the entity) goes under `palisade`.
pub fn ecs_document(alert: &Value) -> (String, Value) {
    let id = alert["alert_id"].as_str().unwrap_or_default().to_string();
    let mut document = json!({
        "@timestamp": alert["timestamp"],
        "message": alert["title"],
        "event": {
            "kind": "alert",
            "id": id,
            "severity": alert["score"],
        },
        "rule": {"id": alert["rule"], "name": alert["title"]},
        "host": {"name": alert["host"]},
        "tags": alert["tags"],
        "palisade": {
            "alert_id": id,
            "event_id": alert["event_id"],
            "level": alert["level"],
            "severity": alert["severity"],
            "stage": alert["stage"],
            "entity": alert["entity"],
            "actions": alert["actions"],
        },
    });
    let mut threat = serde_json::Map::new();
    // ATT&CK techniques and tactics from the rule's `attack.*` tags.
    let tags: Vec<&str> = alert["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let techniques: Vec<String> = tags
        .iter()
        .filter_map(|t| t.strip_prefix("attack."))
        .filter(|t| {
            t.len() > 1
                && t.starts_with(['t', 'T'])
                && t[1..].chars().all(|c| c.is_ascii_digit() || c == '.')
        })
        .map(str::to_ascii_uppercase)
        .collect();
    if !techniques.is_empty() {
        threat.insert("framework".into(), json!("MITRE ATT&CK"));
        threat.insert("technique".into(), json!({"id": techniques}));
    }
    // The indicator that matched, when the detection came from intel.
    if let Some(intel) = alert["intel"].as_array().and_then(|i| i.first()) {
        threat.insert(
            "indicator".into(),
            json!({
                "type": intel["kind"],
                "provider": intel["source"],
                "confidence": intel["confidence"],
                "description": intel["threat"],
            }),
        );
        if let Some(name) = intel["threat"].as_str() {
            threat.insert("software".into(), json!({"name": name}));
        }
    }
    if !threat.is_empty() {
        document["threat"] = Value::Object(threat);
    }
    (id, document)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_becomes_an_ecs_document_with_its_outcomes() {
        let alert = json!({
            "kind": "alert", "alert_id": "ev-1/c2", "event_id": "ev-1", "rule": "c2",
            "title": "Connection to a C2 address", "severity": "high", "score": 90.0,
            "tags": ["attack.t1071.001", "attack.command_and_control"],
            "host": "web-01", "timestamp": "2025-11-03T14:30:05Z", "level": "HIGH",
            "intel": [{"kind": "ip", "source": "soc", "confidence": 90, "threat": "Emotet C2"}],
            "actions": [{"step": "block", "status": "executed"}]
        });
        let (id, document) = ecs_document(&alert);
        assert_eq!(id, "ev-1/c2");
        assert_eq!(document["@timestamp"], "2025-11-03T14:30:05Z");
        assert_eq!(document["event"]["kind"], "alert");
        assert_eq!(document["rule"]["id"], "c2");
        assert_eq!(document["host"]["name"], "web-01");
        assert_eq!(document["threat"]["technique"]["id"], json!(["T1071.001"]));
        assert_eq!(document["threat"]["indicator"]["provider"], "soc");
        assert_eq!(document["palisade"]["actions"][0]["status"], "executed");
    }
}
