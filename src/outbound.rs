//! Outbound HTTP: the one client that feed pulls and webhooks go through, so every call palisade
//! makes to another system is held to the same limits.
//!
//! - **Bounded reads.** A body is read chunk by chunk and refused as soon as it passes
//!   `max_body_bytes` (an announced `Content-Length` past the limit is refused before any of it
//!   is read); the whole exchange, every redirect hop and the body included, must finish within
//!   `read_timeout`. A slow drip cannot hold a pull open and an endless body cannot grow memory.
//! - **Redirects stay on their origin.** Redirects are followed here, by hand, never by the HTTP
//!   library: only to the same scheme, host and port (`same_host`, the default) or not at all
//!   (`none`). Headers, credentials among them, therefore never reach another host. A request
//!   with a body is only re-sent for 307 and 308, which keep the method and the body; a 301, 302
//!   or 303 would turn it into a bodiless GET, so that is refused too, not mistaken for a
//!   delivery.
//! - **Every limit hit is reported**: a warning naming the URL and the limit, and a counter per
//!   edge and limit ([`limit_hits`], shown on `/metrics`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION};
use reqwest::{Method, StatusCode};
use tokio::time::Instant;

/// Redirect hops followed at most for one request.
pub const MAX_REDIRECTS: usize = 5;

/// Which redirects are followed.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Redirects {
    /// Only to the same scheme, host and port as the request (a path moved on the same server).
    #[default]
    SameHost,
    /// None: any redirect is an error naming its target.
    None,
}

/// The limits one edge's requests are held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: u64,
    /// For the whole exchange: connecting, every redirect hop, headers and body.
    pub read_timeout: Duration,
    pub redirects: Redirects,
}

/// Who is calling out, for logs and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Feed,
    Webhook,
}

impl Edge {
    pub fn name(self) -> &'static str {
        match self {
            Edge::Feed => "feed",
            Edge::Webhook => "webhook",
        }
    }
}

/// The limits a call out can hit, each counted per edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The body passed `max_body_bytes`.
    BodySize,
    /// The exchange took longer than `read_timeout`.
    ReadTime,
    /// A redirect was refused.
    Redirect,
    /// A paged feed passed its page cap.
    Pages,
    /// A paged feed repeated a cursor or a page.
    RepeatedPage,
    /// A page held more entries than were asked for.
    PageSize,
    /// A feed answered something that is not its data (HTML, an empty or mostly unparseable
    /// body), so it changed nothing.
    NotData,
}

impl Limit {
    const ALL: [Limit; 7] = [
        Limit::BodySize,
        Limit::ReadTime,
        Limit::Redirect,
        Limit::Pages,
        Limit::RepeatedPage,
        Limit::PageSize,
        Limit::NotData,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Limit::BodySize => "body_size",
            Limit::ReadTime => "read_time",
            Limit::Redirect => "redirect",
            Limit::Pages => "pages",
            Limit::RepeatedPage => "repeated_page",
            Limit::PageSize => "page_size",
            Limit::NotData => "not_data",
        }
    }
}

/// Process-wide counts (one engine per process): an edge without the engine's metrics at hand
/// (a plugin, `palisade intel pull`) still counts, and `/metrics` reads them.
static HITS: [[AtomicU64; Limit::ALL.len()]; 2] = [
    [const { AtomicU64::new(0) }; Limit::ALL.len()],
    [const { AtomicU64::new(0) }; Limit::ALL.len()],
];

/// Counts a limit hit and logs it once, with what was refused.
pub fn hit(edge: Edge, limit: Limit, message: &str) {
    let index = Limit::ALL.iter().position(|l| *l == limit).unwrap_or(0);
    HITS[edge as usize][index].fetch_add(1, Ordering::Relaxed);
    tracing::warn!(edge = edge.name(), limit = limit.name(), "{message}");
}

/// `(edge, limit, count)` for every pair, zeros included, for `/metrics`.
pub fn limit_hits() -> Vec<(&'static str, &'static str, u64)> {
    let mut out = Vec::new();
    for edge in [Edge::Feed, Edge::Webhook] {
        for (index, limit) in Limit::ALL.iter().enumerate() {
            out.push((
                edge.name(),
                limit.name(),
                HITS[edge as usize][index].load(Ordering::Relaxed),
            ));
        }
    }
    out
}

/// Why a call out failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("`{url}` is not a URL palisade can call: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("request to {url} failed: {reason}")]
    Transport { url: String, reason: String },
    #[error(
        "{url} sent more than the {limit} bytes allowed (`max_body_bytes`); nothing from it was used"
    )]
    TooLarge { url: String, limit: u64 },
    #[error(
        "{url} did not answer completely within {}s (`read_timeout`); nothing from it was used",
        limit.as_secs()
    )]
    TooSlow { url: String, limit: Duration },
    #[error("{url} redirected (HTTP {status}) to {target}, which was not followed: {why}")]
    RedirectRefused {
        url: String,
        status: u16,
        target: String,
        why: String,
    },
}

impl OutboundError {
    /// Whether trying again soon may help: a network failure may pass; a limit will not.
    pub fn retryable(&self) -> bool {
        matches!(self, OutboundError::Transport { .. })
    }
}

/// A request, kept whole so a redirect hop can send it again.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: url::Url,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
}

impl Request {
    pub fn get(url: url::Url) -> Request {
        Request {
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    pub fn post_json(url: url::Url, body: &serde_json::Value) -> Request {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/json"),
        );
        Request {
            method: Method::POST,
            url,
            headers,
            body: Some(body.to_string().into_bytes()),
        }
    }
}

/// Parses a URL to call; only `http` and `https` are.
pub fn parse_url(text: &str) -> Result<url::Url, OutboundError> {
    let url = url::Url::parse(text).map_err(|e| OutboundError::BadUrl {
        url: text.to_string(),
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OutboundError::BadUrl {
            url: text.to_string(),
            reason: "only http and https are called".into(),
        });
    }
    Ok(url)
}

/// The client for one edge: TLS through rustls with the ring provider, redirects off in the
/// library (followed in [`Client::send`]), and this edge's limits.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    limits: Limits,
    edge: Edge,
}

/// An answer whose headers are in; its body is read only through [`Response::body`] or
/// [`Response::excerpt`], within the same deadline.
#[derive(Debug)]
pub struct Response {
    inner: reqwest::Response,
    url: url::Url,
    deadline: Instant,
    limits: Limits,
    edge: Edge,
}

/// The HTTP client could not be built (its TLS setup failed).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientError(#[source] reqwest::Error);

impl Client {
    pub fn new(edge: Edge, limits: Limits) -> Result<Client, ClientError> {
        // Installing twice is harmless; the first provider stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10).min(limits.read_timeout))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("palisade/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError)?;
        Ok(Client { http, limits, edge })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Sends `request`, following the redirects the limits allow, and returns the first answer
    /// that is not a followed redirect. Its body is not read yet.
    pub async fn send(&self, mut request: Request) -> Result<Response, OutboundError> {
        let deadline = Instant::now() + self.limits.read_timeout;
        let mut hops = 0;
        loop {
            let mut builder = self
                .http
                .request(request.method.clone(), request.url.clone())
                .headers(request.headers.clone());
            if let Some(body) = &request.body {
                builder = builder.body(body.clone());
            }
            let response = match tokio::time::timeout_at(deadline, builder.send()).await {
                Err(_) => return Err(self.too_slow(&request.url)),
                Ok(Err(err)) => {
                    return Err(OutboundError::Transport {
                        url: request.url.to_string(),
                        reason: transport_reason(&err),
                    });
                }
                Ok(Ok(response)) => response,
            };
            let status = response.status();
            let Some(target) = redirect_target(&request.url, status, response.headers()) else {
                return Ok(Response {
                    inner: response,
                    url: request.url,
                    deadline,
                    limits: self.limits,
                    edge: self.edge,
                });
            };
            let refused = |why: String| {
                let err = OutboundError::RedirectRefused {
                    url: request.url.to_string(),
                    status: status.as_u16(),
                    target: target.to_string(),
                    why,
                };
                hit(self.edge, Limit::Redirect, &err.to_string());
                err
            };
            if self.limits.redirects == Redirects::None {
                return Err(refused(
                    "redirects are not followed (`redirects: none`)".into(),
                ));
            }
            if target.origin() != request.url.origin() {
                return Err(refused(
                    "it is another host (only same-host redirects are followed, and the request's headers never leave its host)".into(),
                ));
            }
            let keeps_request = matches!(
                status,
                StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
            );
            if !keeps_request && (request.body.is_some() || request.method != Method::GET) {
                return Err(refused(format!(
                    "following it would send a bodiless GET instead of this {}",
                    request.method
                )));
            }
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(refused(format!("more than {MAX_REDIRECTS} redirects")));
            }
            request.url = target;
        }
    }

    fn too_slow(&self, url: &url::Url) -> OutboundError {
        let err = OutboundError::TooSlow {
            url: url.to_string(),
            limit: self.limits.read_timeout,
        };
        hit(self.edge, Limit::ReadTime, &err.to_string());
        err
    }
}

/// Where a redirect answer points, when it is one (301, 302, 303, 307, 308 with a `Location`).
fn redirect_target(from: &url::Url, status: StatusCode, headers: &HeaderMap) -> Option<url::Url> {
    let redirect = matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    );
    if !redirect {
        return None;
    }
    let location = headers.get(LOCATION)?.to_str().ok()?;
    from.join(location).ok()
}

/// The error and its causes on one line (reqwest's own message hides the cause).
fn transport_reason(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The URL that answered (after any redirect followed).
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// The media type, lowercase and without parameters (`text/html`), when one is given.
    pub fn media_type(&self) -> Option<String> {
        let value = self
            .headers()
            .get(reqwest::header::CONTENT_TYPE)?
            .to_str()
            .ok()?;
        Some(
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase(),
        )
    }

    /// The whole body, or an error as soon as it passes `max_body_bytes` or the deadline.
    pub async fn body(mut self) -> Result<Vec<u8>, OutboundError> {
        let limit = self.limits.max_body_bytes;
        let too_large = |url: &url::Url, edge: Edge| {
            let err = OutboundError::TooLarge {
                url: url.to_string(),
                limit,
            };
            hit(edge, Limit::BodySize, &err.to_string());
            err
        };
        // A body announced past the limit is refused before a byte of it is read.
        if self.inner.content_length().is_some_and(|n| n > limit) {
            return Err(too_large(&self.url, self.edge));
        }
        let mut body = Vec::new();
        loop {
            let chunk = match tokio::time::timeout_at(self.deadline, self.inner.chunk()).await {
                Err(_) => {
                    let err = OutboundError::TooSlow {
                        url: self.url.to_string(),
                        limit: self.limits.read_timeout,
                    };
                    hit(self.edge, Limit::ReadTime, &err.to_string());
                    return Err(err);
                }
                Ok(Err(err)) => {
                    return Err(OutboundError::Transport {
                        url: self.url.to_string(),
                        reason: transport_reason(&err),
                    });
                }
                Ok(Ok(None)) => return Ok(body),
                Ok(Ok(Some(chunk))) => chunk,
            };
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large(&self.url, self.edge));
            }
            body.extend_from_slice(&chunk);
        }
    }

    /// Up to `max` bytes of the body as text, for an error message; whatever cannot be read
    /// within the limits is left out, never waited for.
    pub async fn excerpt(mut self, max: usize) -> String {
        let max = max.min(usize::try_from(self.limits.max_body_bytes).unwrap_or(max));
        let mut body = Vec::new();
        while body.len() < max {
            match tokio::time::timeout_at(self.deadline, self.inner.chunk()).await {
                Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body.truncate(max);
        String::from_utf8_lossy(&body).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_redirect_statuses_with_a_location_are_redirects() {
        let from = url::Url::parse("http://127.0.0.1:8080/a/b").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(LOCATION, "../c?x=1".parse().unwrap());
        let target = redirect_target(&from, StatusCode::FOUND, &headers).unwrap();
        assert_eq!(target.as_str(), "http://127.0.0.1:8080/c?x=1");
        assert!(redirect_target(&from, StatusCode::NOT_MODIFIED, &headers).is_none());
        assert!(redirect_target(&from, StatusCode::FOUND, &HeaderMap::new()).is_none());
    }

    #[test]
    fn another_port_or_scheme_is_another_origin() {
        let from = url::Url::parse("http://127.0.0.1:8080/feed").unwrap();
        for other in [
            "http://127.0.0.1:8081/feed",
            "https://127.0.0.1:8080/feed",
            "http://localhost:8080/feed",
        ] {
            assert_ne!(url::Url::parse(other).unwrap().origin(), from.origin());
        }
        assert_eq!(
            url::Url::parse("http://127.0.0.1:8080/moved")
                .unwrap()
                .origin(),
            from.origin()
        );
    }
}
