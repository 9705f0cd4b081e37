//! Pulling feeds over HTTP: files that change (ETag / If-Modified-Since), TAXII 2.1 collections
//! (`added_after` cursor, `more`/`next` paging) and MISP `restSearch`.
//!
//! A pull is judged before it changes anything. Every page is read within the limits of
//! `intel.fetch` (through [`crate::outbound`]) and parsed completely; the pages of one pull are
//! stored together, in one transaction, and the cursor that points past them is saved only
//! after. So a pull that fails (a limit hit, a repeated cursor or page, a broken page) stores
//! nothing and starts again from the old cursor next time; it never skips data. A snapshot feed
//! expires what vanished from it only after a complete download that is its data: not HTML,
//! not empty, and parsing at `intel.fetch.min_parsed_ratio` or better.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, ETAG, HeaderMap, HeaderName, HeaderValue, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, LAST_MODIFIED,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::formats::{Format, ImportOptions, Imported, import_text};
use super::indicator::Indicator;
use super::store::{FeedState, IntelStore};
use super::{FeedConfig, FeedType, IntelConfig, IntelMaxPrefix};
use crate::outbound::{self, Edge, Limit, OutboundError, Request};

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

    fn from_outbound(feed: &str, err: OutboundError) -> PullError {
        PullError {
            message: format!("feed `{feed}`: {err}"),
            retryable: err.retryable(),
        }
    }

    /// A limit or a judgement refused the pull: counted, logged, never retried at once.
    fn refused(limit: Limit, message: String) -> PullError {
        outbound::hit(Edge::Feed, limit, &message);
        PullError {
            message,
            retryable: false,
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

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn key_headers(feed: &FeedConfig) -> Result<HeaderMap, PullError> {
    let mut headers = HeaderMap::new();
    if let Some(basic) = basic_auth(feed)? {
        headers.insert(AUTHORIZATION, basic);
        return Ok(headers);
    }
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
    } else if feed.kind == FeedType::Elasticsearch
        && name.eq_ignore_ascii_case("authorization")
        && !key.contains(' ')
    {
        // The encoded id:key pair Elasticsearch hands out when a key is created.
        format!("ApiKey {key}")
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

/// An `elasticsearch` feed's basic-auth header, from the two variables its config names.
fn basic_auth(feed: &FeedConfig) -> Result<Option<HeaderValue>, PullError> {
    let Some(es) = &feed.elasticsearch else {
        return Ok(None);
    };
    let (Some(user_var), Some(password_var)) = (&es.username_env, &es.password_env) else {
        return Ok(None);
    };
    let read = |variable: &String| {
        std::env::var(variable).map_err(|_| {
            PullError::fatal(format!(
                "feed `{}` needs the environment variable `{variable}`, which is not set",
                feed.name
            ))
        })
    };
    let user = read(user_var)?;
    let password = read(password_var)?;
    if user.contains(':') {
        return Err(PullError::fatal(format!(
            "feed `{}`: the user name in `{user_var}` contains `:`, which basic auth cannot carry",
            feed.name
        )));
    }
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| PullError::fatal("basic-auth credentials are not a valid header value"))?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// Pulls feeds with the limits of `intel.fetch`: one client for every feed.
#[derive(Debug, Clone)]
pub struct Puller {
    client: outbound::Client,
    max_prefix: IntelMaxPrefix,
    max_pages: usize,
    min_parsed_ratio: f64,
    max_pull_time: Duration,
}

impl Puller {
    pub fn new(config: &IntelConfig) -> Result<Puller, outbound::ClientError> {
        Ok(Puller {
            client: outbound::Client::new(Edge::Feed, config.fetch.limits())?,
            max_prefix: config.max_prefix,
            max_pages: config.fetch.max_pages.max(1),
            min_parsed_ratio: config.fetch.min_parsed_ratio,
            max_pull_time: config.fetch.max_pull_time.duration(),
        })
    }

    /// Pulls one feed, retrying retryable failures with backoff (1 s, 2 s, 4 s); the outcome is
    /// recorded in the feed's state either way.
    pub async fn pull_with_retry(
        &self,
        feed: &FeedConfig,
        store: &IntelStore,
        attempts: u32,
    ) -> Result<PullReport, PullError> {
        let mut wait = Duration::from_secs(1);
        let mut attempt = 1;
        loop {
            match self.pull(feed, store).await {
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
        &self,
        feed: &FeedConfig,
        store: &IntelStore,
    ) -> Result<PullReport, PullError> {
        let state = store
            .feed_state(&feed.name)
            .await
            .map_err(|e| PullError::fatal(e.to_string()))?;
        let headers = key_headers(feed)?;
        // Every page of the pull must be in by then: a server slow on every page, each within
        // `read_timeout`, still cannot hold the schedule (and the other feeds) for hours.
        let deadline = tokio::time::Instant::now() + self.max_pull_time;
        match feed.kind {
            FeedType::Http => self.pull_file(feed, store, state, headers, deadline).await,
            FeedType::Taxii => self.pull_taxii(feed, store, state, headers, deadline).await,
            FeedType::Misp => self.pull_misp(feed, store, state, headers, deadline).await,
            FeedType::Elasticsearch => {
                self.pull_elasticsearch(feed, store, state, headers, deadline)
                    .await
            }
        }
    }

    fn options(&self, feed: &FeedConfig) -> ImportOptions {
        ImportOptions {
            source: feed.name.clone(),
            kind: None,
            confidence: None,
            severity: None,
            max_prefix: self.max_prefix,
            subdomains: feed.subdomains,
        }
    }

    /// Sends one request and reads its answer within the limits. A 304 comes back with an
    /// empty body; any other answer that is not a success, or that is an HTML page, is an
    /// error (the server's words cut short).
    async fn fetch(
        &self,
        feed: &FeedConfig,
        request: Request,
        deadline: tokio::time::Instant,
    ) -> Result<(StatusCode, HeaderMap, String), PullError> {
        match tokio::time::timeout_at(deadline, self.fetch_within_limits(feed, request)).await {
            Ok(result) => result,
            Err(_) => Err(PullError::refused(
                Limit::ReadTime,
                format!(
                    "feed `{}`: the pull took longer than {}s (`intel.fetch.max_pull_time`); nothing from it was stored",
                    feed.name,
                    self.max_pull_time.as_secs()
                ),
            )),
        }
    }

    async fn fetch_within_limits(
        &self,
        feed: &FeedConfig,
        request: Request,
    ) -> Result<(StatusCode, HeaderMap, String), PullError> {
        let response = self
            .client
            .send(request)
            .await
            .map_err(|e| PullError::from_outbound(&feed.name, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        if status == StatusCode::NOT_MODIFIED {
            return Ok((status, headers, String::new()));
        }
        if !status.is_success() {
            let excerpt = response.excerpt(200).await;
            return Err(PullError::from_status(&feed.name, status, &excerpt));
        }
        let url = response.url().to_string();
        // A maintenance or login page is not the feed, whatever the status says.
        if let Some(media) = response.media_type()
            && matches!(media.as_str(), "text/html" | "application/xhtml+xml")
        {
            return Err(PullError::refused(
                Limit::NotData,
                format!(
                    "feed `{}`: {url} answered a web page (`{media}`), not the feed; nothing was stored or expired",
                    feed.name
                ),
            ));
        }
        let body = response
            .body()
            .await
            .map_err(|e| PullError::from_outbound(&feed.name, e))?;
        let text = String::from_utf8_lossy(&body).into_owned();
        // No format palisade reads starts with `<`: a page served without its type is still HTML.
        if text
            .trim_start_matches('\u{feff}')
            .trim_start()
            .starts_with('<')
        {
            return Err(PullError::refused(
                Limit::NotData,
                format!(
                    "feed `{}`: {url} answered markup (it starts with `<`), not the feed; nothing was stored or expired",
                    feed.name
                ),
            ));
        }
        Ok((status, headers, text))
    }

    async fn pull_file(
        &self,
        feed: &FeedConfig,
        store: &IntelStore,
        mut state: FeedState,
        mut headers: HeaderMap,
        deadline: tokio::time::Instant,
    ) -> Result<PullReport, PullError> {
        let format = feed
            .format
            .ok_or_else(|| PullError::fatal(format!("feed `{}` has no format", feed.name)))?;
        let url =
            outbound::parse_url(&feed.url).map_err(|e| PullError::from_outbound(&feed.name, e))?;
        if let Some(etag) = state
            .etag
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(IF_NONE_MATCH, etag);
        }
        if let Some(modified) = state
            .last_modified
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(IF_MODIFIED_SINCE, modified);
        }
        let mut request = Request::get(url);
        request.headers = headers;
        let (status, headers, body) = self.fetch(feed, request, deadline).await?;
        let mut report = PullReport {
            feed: feed.name.clone(),
            pages: 1,
            ..PullReport::default()
        };
        if status == StatusCode::NOT_MODIFIED {
            report.not_modified = true;
            store
                .save_feed_progress(&feed.name, &state, now_ms())
                .await
                .map_err(|e| PullError::fatal(e.to_string()))?;
            return Ok(report);
        }
        let header = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header(ETAG);
        let modified = header(LAST_MODIFIED);
        let imported = import_text(Path::new(&feed.url), &body, format, &self.options(feed))
            .map_err(|e| PullError::fatal(format!("feed `{}`: {e}", feed.name)))?;
        if feed.snapshot {
            self.judge_snapshot(feed, &imported)?;
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

    /// Whether a snapshot may replace the stored list: it must hold indicators, and at least
    /// `min_parsed_ratio` of its entries must have parsed. An empty download or a page of
    /// something else is far likelier a broken feed than a clean world.
    fn judge_snapshot(&self, feed: &FeedConfig, imported: &Imported) -> Result<(), PullError> {
        let parsed = imported.indicators.len();
        let skipped = imported.skipped_total();
        if parsed == 0 {
            return Err(PullError::refused(
                Limit::NotData,
                format!(
                    "feed `{}` sent an empty snapshot ({skipped} entries skipped, none parsed); nothing was expired",
                    feed.name
                ),
            ));
        }
        let ratio = parsed as f64 / (parsed + skipped) as f64;
        if ratio < self.min_parsed_ratio {
            return Err(PullError::refused(
                Limit::NotData,
                format!(
                    "feed `{}` sent a snapshot of which only {parsed} of {} entries parse ({:.0}%, below `intel.fetch.min_parsed_ratio` {}); nothing was stored or expired",
                    feed.name,
                    parsed + skipped,
                    ratio * 100.0,
                    self.min_parsed_ratio
                ),
            ));
        }
        Ok(())
    }

    /// Refuses the next page when the pull already took `max_pages`.
    fn check_page_cap(&self, feed: &FeedConfig, pages: usize) -> Result<(), PullError> {
        if pages >= self.max_pages {
            return Err(PullError::refused(
                Limit::Pages,
                format!(
                    "feed `{}` has more than {} pages (`intel.fetch.max_pages`); nothing from this pull was stored",
                    feed.name, self.max_pages
                ),
            ));
        }
        Ok(())
    }

    /// Parses one page completely into the pull's batch.
    fn parse_page(
        &self,
        feed: &FeedConfig,
        url: &str,
        text: &str,
        format: Format,
        batch: &mut Vec<Indicator>,
        report: &mut PullReport,
    ) -> Result<(), PullError> {
        let imported = import_text(Path::new(url), text, format, &self.options(feed))
            .map_err(|e| PullError::fatal(format!("feed `{}`: {e}", feed.name)))?;
        report.pages += 1;
        report.stored += imported.indicators.len();
        report.skipped += imported.skipped_total();
        batch.extend(imported.indicators);
        Ok(())
    }

    async fn pull_taxii(
        &self,
        feed: &FeedConfig,
        store: &IntelStore,
        mut state: FeedState,
        headers: HeaderMap,
        deadline: tokio::time::Instant,
    ) -> Result<PullReport, PullError> {
        let objects_url = format!("{}/objects/", feed.url.trim_end_matches('/'));
        let base = outbound::parse_url(&objects_url)
            .map_err(|e| PullError::from_outbound(&feed.name, e))?;
        let mut report = PullReport {
            feed: feed.name.clone(),
            ..PullReport::default()
        };
        let mut batch = Vec::new();
        let mut pages = PageGuard::default();
        // Where the next request starts; saved only once every page is stored.
        let mut cursor = state.cursor.clone();
        let mut next: Option<String> = None;
        loop {
            self.check_page_cap(feed, report.pages)?;
            pages.ask(feed, (next.clone(), cursor.clone()))?;
            let mut url = base.clone();
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("limit", &feed.page_size.to_string());
                if let Some(cursor) = &cursor {
                    query.append_pair("added_after", cursor);
                }
                if let Some(next) = &next {
                    query.append_pair("next", next);
                }
            }
            let mut request = Request::get(url);
            request.headers = headers.clone();
            request
                .headers
                .insert(ACCEPT, HeaderValue::from_static(TAXII_MEDIA_TYPE));
            let (_, answer_headers, body) = self.fetch(feed, request, deadline).await?;
            pages.answered(feed, report.pages + 1, &body)?;
            let added_last = answer_headers
                .get("X-TAXII-Date-Added-Last")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
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
            if let Some(count) = objects.as_array().map(Vec::len)
                && count > feed.page_size
            {
                return Err(too_many_entries(feed, report.pages + 1, count, "objects"));
            }
            let bundle = json!({"type": "bundle", "id": "bundle--taxii-page", "objects": objects})
                .to_string();
            self.parse_page(
                feed,
                &objects_url,
                &bundle,
                Format::Stix,
                &mut batch,
                &mut report,
            )?;
            if let Some(added_last) = added_last {
                cursor = Some(added_last);
            }
            next = page_next;
            if !more {
                break;
            }
            if next.is_none() && cursor.is_none() {
                return Err(PullError::fatal(format!(
                    "feed `{}` says there is more but gives neither `next` nor X-TAXII-Date-Added-Last",
                    feed.name
                )));
            }
        }
        let now = now_ms();
        store
            .upsert(&batch, now)
            .await
            .map_err(|e| PullError::fatal(e.to_string()))?;
        // The cursor moves only now that every page is stored.
        state.cursor = cursor;
        store
            .save_feed_progress(&feed.name, &state, now)
            .await
            .map_err(|e| PullError::fatal(e.to_string()))?;
        Ok(report)
    }

    async fn pull_misp(
        &self,
        feed: &FeedConfig,
        store: &IntelStore,
        mut state: FeedState,
        headers: HeaderMap,
        deadline: tokio::time::Instant,
    ) -> Result<PullReport, PullError> {
        let url = format!("{}/attributes/restSearch", feed.url.trim_end_matches('/'));
        let target =
            outbound::parse_url(&url).map_err(|e| PullError::from_outbound(&feed.name, e))?;
        let mut report = PullReport {
            feed: feed.name.clone(),
            ..PullReport::default()
        };
        let mut batch = Vec::new();
        let mut pages = PageGuard::default();
        let since = state.cursor.clone();
        let mut newest: i64 = since.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut page = 1;
        loop {
            self.check_page_cap(feed, report.pages)?;
            let mut body =
                json!({"returnFormat": "json", "to_ids": 1, "limit": feed.page_size, "page": page});
            if let Some(since) = &since {
                body["timestamp"] = json!(since);
            }
            let mut request = Request::post_json(target.clone(), &body);
            request.headers.extend(headers.clone());
            request
                .headers
                .insert(ACCEPT, HeaderValue::from_static("application/json"));
            let (_, _, text) = self.fetch(feed, request, deadline).await?;
            pages.answered(feed, page, &text)?;
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
            let count = attributes.len();
            // A server that ignores `limit` would send the whole instance in one page.
            if count > feed.page_size {
                return Err(too_many_entries(feed, page, count, "attributes"));
            }
            for attribute in &attributes {
                let stamp = attribute.get("timestamp").and_then(|t| {
                    t.as_str()
                        .and_then(|s| s.parse().ok())
                        .or_else(|| t.as_i64())
                });
                newest = newest.max(stamp.unwrap_or(0));
            }
            let event = json!({"Event": {"info": format!("MISP {}", feed.name), "uuid": "restsearch", "Attribute": attributes}}).to_string();
            self.parse_page(feed, &url, &event, Format::Misp, &mut batch, &mut report)?;
            if count < feed.page_size {
                break;
            }
            page += 1;
        }
        let now = now_ms();
        store
            .upsert(&batch, now)
            .await
            .map_err(|e| PullError::fatal(e.to_string()))?;
        // The cursor moves past this pull only when every page is stored: MISP pages by
        // offset, so a cursor moved mid-way would shift the pages still to come.
        state.cursor = (newest > 0).then(|| newest.to_string());
        store
            .save_feed_progress(&feed.name, &state, now)
            .await
            .map_err(|e| PullError::fatal(e.to_string()))?;
        Ok(report)
    }
}

impl Puller {
    /// Reads an index through a point in time, sorted on the timestamp field and `_shard_doc`,
    /// paging with `search_after` from the stored high-water mark. The pages are stored
    /// together and the mark moves only after; the point in time is closed whatever happened.
    async fn pull_elasticsearch(
        &self,
        feed: &FeedConfig,
        store: &IntelStore,
        mut state: FeedState,
        headers: HeaderMap,
        deadline: tokio::time::Instant,
    ) -> Result<PullReport, PullError> {
        let es = feed.elasticsearch.clone().unwrap_or_default();
        let base = feed.url.trim_end_matches('/');
        let keep_alive = format!("{}s", es.keep_alive.duration().as_secs().max(1));
        let mut open_url = outbound::parse_url(&format!("{base}/{}/_pit", es.index))
            .map_err(|e| PullError::from_outbound(&feed.name, e))?;
        open_url
            .query_pairs_mut()
            .append_pair("keep_alive", &keep_alive);
        let mut request = Request::post_json(open_url, &json!({}));
        request.body = None;
        request.headers.extend(headers.clone());
        let (_, _, text) = self.fetch(feed, request, deadline).await?;
        let opened: Value = serde_json::from_str(&text).map_err(|e| {
            PullError::fatal(format!(
                "feed `{}`: the point-in-time answer is not JSON: {e}",
                feed.name
            ))
        })?;
        let Some(mut pit) = opened.get("id").and_then(Value::as_str).map(str::to_string) else {
            return Err(PullError::fatal(format!(
                "feed `{}`: the point-in-time answer has no `id`",
                feed.name
            )));
        };
        let result = self
            .read_pit(
                feed,
                &es,
                base,
                &keep_alive,
                &mut pit,
                &state,
                &headers,
                deadline,
            )
            .await;
        // A point in time holds segments on the cluster until it expires: close it even when
        // the pull failed (best effort; it lapses after `keep_alive` anyway).
        self.close_pit(feed, base, &pit, &headers, deadline).await;
        let (batch, mark, report) = result?;
        let now = now_ms();
        store
            .upsert(&batch, now)
            .await
            .map_err(|e| PullError::fatal(e.to_string()))?;
        // The mark moves only now that every page is stored.
        if mark.is_some() {
            state.cursor = mark;
        }
        store
            .save_feed_progress(&feed.name, &state, now)
            .await
            .map_err(|e| PullError::fatal(e.to_string()))?;
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    async fn read_pit(
        &self,
        feed: &FeedConfig,
        es: &super::EsFeedConfig,
        base: &str,
        keep_alive: &str,
        pit: &mut String,
        state: &FeedState,
        headers: &HeaderMap,
        deadline: tokio::time::Instant,
    ) -> Result<(Vec<Indicator>, Option<String>, PullReport), PullError> {
        let search_url = outbound::parse_url(&format!("{base}/_search"))
            .map_err(|e| PullError::from_outbound(&feed.name, e))?;
        let mut report = PullReport {
            feed: feed.name.clone(),
            ..PullReport::default()
        };
        let mut batch = Vec::new();
        let mut pages = PageGuard::default();
        let mut after: Option<Vec<Value>> = None;
        let mut mark = None;
        loop {
            self.check_page_cap(feed, report.pages)?;
            let after_key = after.as_ref().map(|a| Value::Array(a.clone()).to_string());
            pages.ask(feed, (after_key, state.cursor.clone()))?;
            let mut body = json!({
                "size": feed.page_size,
                "pit": {"id": pit.as_str(), "keep_alive": keep_alive},
                "sort": [
                    {es.timestamp_field.as_str(): {"order": "asc", "format": "strict_date_optional_time_nanos"}},
                    {"_shard_doc": "asc"}
                ],
                "track_total_hits": false,
            });
            // `gte`, not `gt`: documents stamped in the same instant as the mark but indexed
            // after the last pull are read; those read before are upserted again, unchanged.
            if let Some(cursor) = &state.cursor {
                body["query"] = json!({"range": {es.timestamp_field.as_str(): {"gte": cursor}}});
            }
            if let Some(after) = &after {
                body["search_after"] = Value::Array(after.clone());
            }
            let mut request = Request::post_json(search_url.clone(), &body);
            request.headers.extend(headers.clone());
            let (_, _, text) = self.fetch(feed, request, deadline).await?;
            let page_number = report.pages + 1;
            pages.answered(feed, page_number, &text)?;
            let label = format!("{base}/_search (page {page_number})");
            let mut page = super::formats::elasticsearch::search_page(
                Path::new(&label),
                &text,
                es,
                &self.options(feed),
            )
            .map_err(|e| PullError::fatal(format!("feed `{}`: {e}", feed.name)))?;
            if page.hits > feed.page_size {
                return Err(too_many_entries(feed, page_number, page.hits, "hits"));
            }
            page.imported.locate(Path::new(&label), &text);
            report.pages += 1;
            report.stored += page.imported.indicators.len();
            report.skipped += page.imported.skipped_total();
            batch.extend(page.imported.indicators);
            // The server may hand out a new id with every page; the newest is the one to use.
            if let Some(id) = page.pit_id {
                *pit = id;
            }
            if let Some(sort) = page.last_sort {
                // The first sort value is the timestamp, as the date string asked for.
                if let Some(stamp) = sort.first().and_then(Value::as_str) {
                    mark = Some(stamp.to_string());
                }
                after = Some(sort);
            }
            if page.hits < feed.page_size {
                break;
            }
        }
        Ok((batch, mark, report))
    }

    async fn close_pit(
        &self,
        feed: &FeedConfig,
        base: &str,
        pit: &str,
        headers: &HeaderMap,
        deadline: tokio::time::Instant,
    ) {
        let Ok(url) = outbound::parse_url(&format!("{base}/_pit")) else {
            return;
        };
        let mut request = Request::post_json(url, &json!({"id": pit}));
        request.method = reqwest::Method::DELETE;
        request.headers.extend(headers.clone());
        if let Err(err) = self.fetch(feed, request, deadline).await {
            tracing::warn!(feed = feed.name, "cannot close the point in time: {err}");
        }
    }
}

fn too_many_entries(feed: &FeedConfig, page: usize, count: usize, what: &str) -> PullError {
    PullError::refused(
        Limit::PageSize,
        format!(
            "feed `{}`: page {page} has {count} {what}, more than the {} asked for (`page_size`); nothing from this pull was stored",
            feed.name, feed.page_size
        ),
    )
}

/// What one paged pull has asked and been answered, to stop a server that leads it in a
/// circle: the same request twice (a `next` or cursor that does not move) or the same page
/// twice (a server that ignores the page asked for).
#[derive(Default)]
struct PageGuard {
    asked: HashSet<(Option<String>, Option<String>)>,
    pages: Vec<[u8; 32]>,
}

impl PageGuard {
    fn ask(
        &mut self,
        feed: &FeedConfig,
        request: (Option<String>, Option<String>),
    ) -> Result<(), PullError> {
        if self.asked.contains(&request) {
            let (next, cursor) = request;
            return Err(PullError::refused(
                Limit::RepeatedPage,
                format!(
                    "feed `{}` led back to a page already asked for (next {}, added_after {}); nothing from this pull was stored",
                    feed.name,
                    next.as_deref().unwrap_or("none"),
                    cursor.as_deref().unwrap_or("none")
                ),
            ));
        }
        self.asked.insert(request);
        Ok(())
    }

    fn answered(&mut self, feed: &FeedConfig, page: usize, body: &str) -> Result<(), PullError> {
        let digest: [u8; 32] = Sha256::digest(body.as_bytes()).into();
        if let Some(earlier) = self.pages.iter().position(|d| *d == digest) {
            return Err(PullError::refused(
                Limit::RepeatedPage,
                format!(
                    "feed `{}`: page {page} is the same as page {}; the server does not page, and nothing from this pull was stored",
                    feed.name,
                    earlier + 1
                ),
            ));
        }
        self.pages.push(digest);
        Ok(())
    }
}
