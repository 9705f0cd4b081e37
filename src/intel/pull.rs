//! Pulling feeds over HTTP: files that change (ETag / If-Modified-Since), TAXII 2.1 collections
//! (`added_after` cursor, `more`/`next` paging) and MISP `restSearch`.
//!
//! Every page is parsed completely and stored in one transaction before the cursor that points
//! past it is saved, so a pull that fails half-way resumes where it stopped and never skips
//! data. A snapshot feed expires what vanished from it only after a complete, valid download.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, ETAG, HeaderMap, HeaderName, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED,
};
use serde_json::{Value, json};

use super::formats::{Format, ImportOptions, import_text};
use super::store::{FeedState, IntelStore};
use crate::config::IntelMaxPrefix;
use crate::config::{FeedConfig, FeedType};

/// The TAXII 2.1 media type, required in `Accept`.
const TAXII_MEDIA_TYPE: &str = "application/taxii+json;version=2.1";

/// What one pull did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PullReport {
    pub feed: String,
    /// Indicators stored (inserted or updated).
    pub stored: usize,
    pub skipped: usize,
    /// Indicators revoked because they vanished from a snapshot.
    pub expired: u64,
    pub pages: usize,
    /// The server said nothing changed.
    pub not_modified: bool,
}

/// Why a pull failed; `retryable` failures are tried again with backoff.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct PullError {
    pub message: String,
    pub retryable: bool,
}

impl PullError {
    fn fatal(message: impl Into<String>) -> PullError {
        PullError {
            message: message.into(),
            retryable: false,
        }
    }

    fn from_http(err: reqwest::Error) -> PullError {
        PullError {
            message: format!("request failed: {err}"),
            retryable: true,
        }
    }

    fn from_status(feed: &str, status: StatusCode, body: &str) -> PullError {
        let body: String = body.chars().take(200).collect();
        PullError {
            message: format!("feed `{feed}` answered {status}: {body}"),
            // Server trouble and rate limits pass; a wrong URL or key does not.
            retryable: status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// One HTTP client for every feed: TLS through rustls with the ring provider, bounded timeouts.
pub fn client() -> Result<reqwest::Client, String> {
    // Installing twice is harmless; the first provider stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .user_agent(concat!("palisade/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn key_headers(feed: &FeedConfig) -> Result<HeaderMap, PullError> {
    let mut headers = HeaderMap::new();
    let Some(variable) = &feed.api_key_env else {
        return Ok(headers);
    };
    let key = std::env::var(variable).map_err(|_| PullError::fatal(format!("feed `{}` needs its API key in the environment variable `{variable}`, which is not set", feed.name)))?;
    let name = feed.api_key_header.as_deref().unwrap_or("Authorization");
    let value = if feed.kind == FeedType::Taxii
        && name.eq_ignore_ascii_case("authorization")
        && !key.contains(' ')
    {
        format!("Bearer {key}")
    } else {
        key
    };
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| PullError::fatal(format!("`{name}` is not a header name")))?;
    let mut value = HeaderValue::from_str(&value).map_err(|_| {
        PullError::fatal(format!(
            "the key in `{variable}` is not a valid header value"
        ))
    })?;
    value.set_sensitive(true);
    headers.insert(name, value);
    Ok(headers)
}

/// Pulls one feed, retrying retryable failures with backoff (1 s, 2 s, 4 s); the outcome is
/// recorded in the feed's state either way.
pub async fn pull_with_retry(
    feed: &FeedConfig,
    max_prefix: IntelMaxPrefix,
    store: &IntelStore,
    client: &reqwest::Client,
    attempts: u32,
) -> Result<PullReport, PullError> {
    let mut wait = Duration::from_secs(1);
    let mut attempt = 1;
    loop {
        match pull(feed, max_prefix, store, client).await {
            Ok(report) => return Ok(report),
            Err(err) if err.retryable && attempt < attempts => {
                tracing::warn!(
                    feed = feed.name,
                    attempt,
                    "pull failed, retrying in {wait:?}: {err}"
                );
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            Err(err) => {
                tracing::error!(feed = feed.name, "pull failed: {err}");
                let _ = store
                    .save_feed_error(&feed.name, &err.message, now_ms())
                    .await;
                return Err(err);
            }
        }
    }
}

/// Pulls one feed once.
pub async fn pull(
    feed: &FeedConfig,
    max_prefix: IntelMaxPrefix,
    store: &IntelStore,
    client: &reqwest::Client,
) -> Result<PullReport, PullError> {
    let state = store
        .feed_state(&feed.name)
        .await
        .map_err(|e| PullError::fatal(e.to_string()))?;
    let headers = key_headers(feed)?;
    match feed.kind {
        FeedType::Http => pull_file(feed, max_prefix, store, client, state, headers).await,
        FeedType::Taxii => pull_taxii(feed, max_prefix, store, client, state, headers).await,
        FeedType::Misp => pull_misp(feed, max_prefix, store, client, state, headers).await,
    }
}

fn options(feed: &FeedConfig, max_prefix: IntelMaxPrefix) -> ImportOptions {
    ImportOptions {
        source: feed.name.clone(),
        kind: None,
        confidence: None,
        severity: None,
        max_prefix,
    }
}

async fn pull_file(
    feed: &FeedConfig,
    max_prefix: IntelMaxPrefix,
    store: &IntelStore,
    client: &reqwest::Client,
    mut state: FeedState,
    headers: HeaderMap,
) -> Result<PullReport, PullError> {
    let format = feed
        .format
        .ok_or_else(|| PullError::fatal(format!("feed `{}` has no format", feed.name)))?;
    let mut request = client.get(&feed.url).headers(headers);
    if let Some(etag) = &state.etag {
        request = request.header(IF_NONE_MATCH, etag);
    }
    if let Some(modified) = &state.last_modified {
        request = request.header(IF_MODIFIED_SINCE, modified);
    }
    let response = request.send().await.map_err(PullError::from_http)?;
    let mut report = PullReport {
        feed: feed.name.clone(),
        pages: 1,
        ..PullReport::default()
    };
    if response.status() == StatusCode::NOT_MODIFIED {
        report.not_modified = true;
        store
            .save_feed_progress(&feed.name, &state, now_ms())
            .await
            .map_err(|e| PullError::fatal(e.to_string()))?;
        return Ok(report);
    }
    let status = response.status();
    let etag = response
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let modified = response
        .headers()
        .get(LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.text().await.map_err(PullError::from_http)?;
    if !status.is_success() {
        return Err(PullError::from_status(&feed.name, status, &body));
    }
    let imported = import_text(
        Path::new(&feed.url),
        &body,
        format,
        &options(feed, max_prefix),
    )
    .map_err(|e| PullError::fatal(format!("feed `{}`: {e}", feed.name)))?;
    if feed.snapshot && imported.indicators.is_empty() && imported.skipped_total() == 0 {
        // An empty download of a whole list is far likelier a broken feed than a clean world.
        return Err(PullError {
            message: format!(
                "feed `{}` sent an empty snapshot; nothing was expired",
                feed.name
            ),
            retryable: true,
        });
    }
    let now = now_ms();
    report.stored = imported.indicators.len();
    report.skipped = imported.skipped_total();
    if feed.snapshot {
        report.expired = store
            .replace_snapshot(&feed.name, &imported.indicators, now)
            .await
            .map_err(|e| PullError::fatal(e.to_string()))?;
    } else {
        store
            .upsert(&imported.indicators, now)
            .await
            .map_err(|e| PullError::fatal(e.to_string()))?;
    }
    state.etag = etag;
    state.last_modified = modified;
    store
        .save_feed_progress(&feed.name, &state, now)
        .await
        .map_err(|e| PullError::fatal(e.to_string()))?;
    Ok(report)
}

/// Parses one page completely and stores it in one transaction; returns the time it was
/// stored at, for the cursor saved next.
async fn store_page(
    feed: &FeedConfig,
    max_prefix: IntelMaxPrefix,
    store: &IntelStore,
    url: &str,
    text: &str,
    format: Format,
    report: &mut PullReport,
) -> Result<i64, PullError> {
    let imported = import_text(Path::new(url), text, format, &options(feed, max_prefix))
        .map_err(|e| PullError::fatal(format!("feed `{}`: {e}", feed.name)))?;
    let now = now_ms();
    store
        .upsert(&imported.indicators, now)
        .await
        .map_err(|e| PullError::fatal(e.to_string()))?;
    report.pages += 1;
    report.stored += imported.indicators.len();
    report.skipped += imported.skipped_total();
    Ok(now)
}

async fn pull_taxii(
    feed: &FeedConfig,
    max_prefix: IntelMaxPrefix,
    store: &IntelStore,
    client: &reqwest::Client,
    mut state: FeedState,
    headers: HeaderMap,
) -> Result<PullReport, PullError> {
    let objects_url = format!("{}/objects/", feed.url.trim_end_matches('/'));
    let mut report = PullReport {
        feed: feed.name.clone(),
        ..PullReport::default()
    };
    let mut next: Option<String> = None;
    loop {
        let mut query: Vec<(&str, String)> = vec![("limit", feed.page_size.to_string())];
        if let Some(cursor) = &state.cursor {
            query.push(("added_after", cursor.clone()));
        }
        if let Some(next) = &next {
            query.push(("next", next.clone()));
        }
        let response = client
            .get(&objects_url)
            .headers(headers.clone())
            .header(ACCEPT, TAXII_MEDIA_TYPE)
            .query(&query)
            .send()
            .await
            .map_err(PullError::from_http)?;
        let status = response.status();
        let added_last = response
            .headers()
            .get("X-TAXII-Date-Added-Last")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.text().await.map_err(PullError::from_http)?;
        if !status.is_success() {
            return Err(PullError::from_status(&feed.name, status, &body));
        }
        let envelope: Value = serde_json::from_str(&body).map_err(|e| {
            PullError::fatal(format!(
                "feed `{}`: page {} is not JSON: {e}",
                feed.name,
                report.pages + 1
            ))
        })?;
        // A wrong type here is a broken page, not "no more pages".
        let more = match envelope.get("more") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(more)) => *more,
            Some(other) => {
                return Err(PullError::fatal(format!(
                    "feed `{}`: page {}: `more` must be true or false, not {}",
                    feed.name,
                    report.pages + 1,
                    super::formats::describe(other)
                )));
            }
        };
        let page_next = match envelope.get("next") {
            None | Some(Value::Null) => None,
            Some(Value::String(next)) => Some(next.clone()),
            Some(other) => {
                return Err(PullError::fatal(format!(
                    "feed `{}`: page {}: `next` must be a string, not {}",
                    feed.name,
                    report.pages + 1,
                    super::formats::describe(other)
                )));
            }
        };
        let objects = envelope
            .get("objects")
            .cloned()
            .unwrap_or_else(|| json!([]));
        let bundle =
            json!({"type": "bundle", "id": "bundle--taxii-page", "objects": objects}).to_string();
        let now = store_page(
            feed,
            max_prefix,
            store,
            &objects_url,
            &bundle,
            Format::Stix,
            &mut report,
        )
        .await?;
        // The cursor moves only now that the page is stored.
        if let Some(added_last) = added_last {
            state.cursor = Some(added_last);
        }
        store
            .save_feed_progress(&feed.name, &state, now)
            .await
            .map_err(|e| PullError::fatal(e.to_string()))?;
        next = page_next;
        if !more {
            return Ok(report);
        }
        if next.is_none() && state.cursor.is_none() {
            return Err(PullError::fatal(format!(
                "feed `{}` says there is more but gives neither `next` nor X-TAXII-Date-Added-Last",
                feed.name
            )));
        }
    }
}

async fn pull_misp(
    feed: &FeedConfig,
    max_prefix: IntelMaxPrefix,
    store: &IntelStore,
    client: &reqwest::Client,
    mut state: FeedState,
    headers: HeaderMap,
) -> Result<PullReport, PullError> {
    let url = format!("{}/attributes/restSearch", feed.url.trim_end_matches('/'));
    let mut report = PullReport {
        feed: feed.name.clone(),
        ..PullReport::default()
    };
    let since = state.cursor.clone();
    let mut newest: i64 = since.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut page = 1;
    loop {
        let mut body =
            json!({"returnFormat": "json", "to_ids": 1, "limit": feed.page_size, "page": page});
        if let Some(since) = &since {
            body["timestamp"] = json!(since);
        }
        let response = client
            .post(&url)
            .headers(headers.clone())
            .header(ACCEPT, "application/json")
            .json(&body)
            .send()
            .await
            .map_err(PullError::from_http)?;
        let status = response.status();
        let text = response.text().await.map_err(PullError::from_http)?;
        if !status.is_success() {
            return Err(PullError::from_status(&feed.name, status, &text));
        }
        let document: Value = serde_json::from_str(&text).map_err(|e| {
            PullError::fatal(format!(
                "feed `{}`: page {page} is not JSON: {e}",
                feed.name
            ))
        })?;
        let attributes = document
            .pointer("/response/Attribute")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| {
                PullError::fatal(format!(
                    "feed `{}`: page {page} has no response.Attribute",
                    feed.name
                ))
            })?;
        for attribute in &attributes {
            let stamp = attribute.get("timestamp").and_then(|t| {
                t.as_str()
                    .and_then(|s| s.parse().ok())
                    .or_else(|| t.as_i64())
            });
            newest = newest.max(stamp.unwrap_or(0));
        }
        let count = attributes.len();
        let event = json!({"Event": {"info": format!("MISP {}", feed.name), "uuid": "restsearch", "Attribute": attributes}}).to_string();
        let now = store_page(
            feed,
            max_prefix,
            store,
            &url,
            &event,
            Format::Misp,
            &mut report,
        )
        .await?;
        let last_page = count < feed.page_size;
        if last_page {
            // The cursor moves past this pull only when every page is stored: MISP pages by
            // offset, so a cursor moved mid-way would shift the pages still to come.
            state.cursor = (newest > 0).then(|| newest.to_string());
        }
        store
            .save_feed_progress(&feed.name, &state, now)
            .await
            .map_err(|e| PullError::fatal(e.to_string()))?;
        if last_page {
            return Ok(report);
        }
        page += 1;
    }
}
