//! Telling people and systems: the log, webhooks (generic JSON or Slack-compatible), a Redis
//! channel, and syslog (RFC 5424 over UDP or TCP) for SIEMs.
//!
//! A message is a template filled with event values, and people read it: every message goes
//! out inert (`crate::text::inert`), so a value cannot forge a line or drive a terminal.

use std::time::Duration;

use serde_json::json;

use super::{Action, ActionCall, ActionError, ActionFuture};
use crate::actions::ParamValue;

pub(super) struct Log;

impl Action for Log {
    fn name(&self) -> &'static str {
        "notify.log"
    }

    fn execute<'a>(&'a self, call: &'a ActionCall) -> ActionFuture<'a> {
        Box::pin(async move {
            let message = call.text("message").unwrap_or_default();
            let message = crate::text::inert(&message);
            match call.text("level").as_deref() {
                Some("error") => {
                    tracing::error!(target: "palisade::notify", rule = call.rule, playbook = call.playbook, "{message}")
                }
                Some("info") => {
                    tracing::info!(target: "palisade::notify", rule = call.rule, playbook = call.playbook, "{message}")
                }
                _ => {
                    tracing::warn!(target: "palisade::notify", rule = call.rule, playbook = call.playbook, "{message}")
                }
            }
            Ok("logged".into())
        })
    }
}

/// Attempts per webhook call, and the wait before each retry.
const WEBHOOK_ATTEMPTS: u32 = 3;
const WEBHOOK_FIRST_WAIT: Duration = Duration::from_millis(500);

/// Posts a message to a receiver through the bounded outbound client: an attempt lasts at most
/// `actions.webhook.read_timeout`, and only a 2xx answer is a delivery. A redirect the client
/// does not follow (another host, or one that would re-send the message as a bodiless GET) is a
/// failure naming its target, never retried: the message did not arrive.
pub(super) struct Webhook {
    client: crate::outbound::Client,
}

impl Webhook {
    pub(super) fn new(
        limits: crate::outbound::Limits,
    ) -> Result<Webhook, crate::outbound::ClientError> {
        Ok(Webhook {
            client: crate::outbound::Client::new(crate::outbound::Edge::Webhook, limits)?,
        })
    }
}

impl Action for Webhook {
    fn name(&self) -> &'static str {
        "notify.webhook"
    }

    fn execute<'a>(&'a self, call: &'a ActionCall) -> ActionFuture<'a> {
        Box::pin(async move {
            let Some(ParamValue::Url(url)) = call.params.get("url").cloned() else {
                return Err(ActionError::new("no url"));
            };
            let message = call.text("message").unwrap_or_default();
            let message = crate::text::inert(&message);
            let body = match call.text("format").as_deref() {
                Some("slack") => json!({"text": message}),
                _ => {
                    json!({"message": message, "event_id": call.event_id, "rule": call.rule, "playbook": call.playbook, "source": "palisade"})
                }
            };
            let mut wait = WEBHOOK_FIRST_WAIT;
            let mut last = String::new();
            for attempt in 1..=WEBHOOK_ATTEMPTS {
                let request = crate::outbound::Request::post_json(url.clone(), &body);
                match self.client.send(request).await {
                    Ok(response) if response.status().is_success() => {
                        return Ok(format!(
                            "delivered (HTTP {}, attempt {attempt})",
                            response.status().as_u16()
                        ));
                    }
                    // A redirect the client did not follow (no `Location`, `300`) is no more
                    // a delivery than one it refused.
                    Ok(response) if response.status().is_redirection() => {
                        return Err(ActionError::new(format!(
                            "the webhook answered HTTP {} and the message was not delivered",
                            response.status().as_u16()
                        )));
                    }
                    Ok(response)
                        if response.status().is_client_error()
                            && response.status().as_u16() != 429 =>
                    {
                        let status = response.status().as_u16();
                        let answer = response.excerpt(200).await;
                        let answer = crate::text::inert(answer.trim());
                        return Err(ActionError::new(if answer.is_empty() {
                            format!("the webhook refused the message: HTTP {status}")
                        } else {
                            format!("the webhook refused the message: HTTP {status}: {answer}")
                        }));
                    }
                    Ok(response) => last = format!("HTTP {}", response.status().as_u16()),
                    Err(err) if !err.retryable() => {
                        return Err(ActionError::new(format!("not delivered: {err}")));
                    }
                    Err(err) => last = err.to_string(),
                }
                if attempt < WEBHOOK_ATTEMPTS {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
            Err(ActionError::new(format!(
                "gave up after {WEBHOOK_ATTEMPTS} attempts: {last}"
            )))
        })
    }
}

pub(super) struct RedisPublish {
    client: redis::Client,
}

impl RedisPublish {
    pub(super) fn new(url: &str) -> Result<RedisPublish, crate::bus::InvalidRedisUrl> {
        Ok(RedisPublish {
            client: crate::bus::InvalidRedisUrl::open(url)?,
        })
    }
}

impl Action for RedisPublish {
    fn name(&self) -> &'static str {
        "notify.redis"
    }

    fn execute<'a>(&'a self, call: &'a ActionCall) -> ActionFuture<'a> {
        Box::pin(async move {
            let channel = call.text("channel").unwrap_or_default();
            let message = json!({"message": call.text("message").map(|m| crate::text::inert(&m).into_owned()), "event_id": call.event_id, "rule": call.rule, "playbook": call.playbook}).to_string();
            let mut connection = self
                .client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| ActionError::new(format!("cannot reach Redis: {e}")))?;
            let receivers: i64 = redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(message)
                .query_async(&mut connection)
                .await
                .map_err(|e| ActionError::new(format!("PUBLISH failed: {e}")))?;
            Ok(format!(
                "published on `{channel}` to {receivers} subscriber(s)"
            ))
        })
    }
}

pub(super) struct Syslog;

/// An RFC 5424 message: facility security/authorization (10), severity warning (4).
fn rfc5424(message: &str, call: &ActionCall) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "-".into());
    let clean = crate::text::inert(message);
    let escape = |v: &str| {
        crate::text::inert(v)
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace(']', "\\]")
    };
    format!(
        "<84>1 {} {} palisade {} detection [palisade@32473 rule=\"{}\" playbook=\"{}\" event=\"{}\"] {}",
        jiff::Timestamp::now(),
        if host.is_empty() { "-" } else { &host },
        std::process::id(),
        escape(&call.rule),
        escape(&call.playbook),
        escape(&call.event_id),
        clean
    )
}

impl Action for Syslog {
    fn name(&self) -> &'static str {
        "notify.syslog"
    }

    fn execute<'a>(&'a self, call: &'a ActionCall) -> ActionFuture<'a> {
        Box::pin(async move {
            let Some(ParamValue::HostPort { host, port }) = call.params.get("server").cloned()
            else {
                return Err(ActionError::new("no server"));
            };
            let line = rfc5424(&call.text("message").unwrap_or_default(), call);
            let address = format!("{host}:{port}");
            match call.text("transport").as_deref() {
                Some("tcp") => {
                    use tokio::io::AsyncWriteExt;
                    let mut stream =
                        tokio::net::TcpStream::connect(&address)
                            .await
                            .map_err(|e| {
                                ActionError::new(format!("cannot connect to {address}: {e}"))
                            })?;
                    // RFC 6587 octet counting: the length, a space, the message.
                    let framed = format!("{} {line}", line.len());
                    stream
                        .write_all(framed.as_bytes())
                        .await
                        .map_err(|e| ActionError::new(format!("cannot send to {address}: {e}")))?;
                    stream
                        .flush()
                        .await
                        .map_err(|e| ActionError::new(e.to_string()))?;
                }
                _ => {
                    let socket = tokio::net::UdpSocket::bind(if host.contains(':') {
                        "[::]:0"
                    } else {
                        "0.0.0.0:0"
                    })
                    .await
                    .map_err(|e| ActionError::new(e.to_string()))?;
                    socket
                        .send_to(line.as_bytes(), &address)
                        .await
                        .map_err(|e| ActionError::new(format!("cannot send to {address}: {e}")))?;
                }
            }
            Ok(format!("sent to {address}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use axum::http::{HeaderMap, Method, StatusCode};
    use axum::response::IntoResponse;

    use super::*;
    use crate::outbound::{Limits, Redirects};

    /// What a receiver was sent: `METHOD path body`.
    type Seen = Arc<Mutex<Vec<String>>>;

    /// A real loopback receiver: `/hook/{status}` answers `status` with `Location: to` (from
    /// the query), `/hang` never answers, anything else records the request and answers 200.
    async fn receiver() -> (String, Seen) {
        let seen: Seen = Arc::default();
        let kept = seen.clone();
        let app = axum::Router::new()
            .route(
                "/hook/{status}",
                axum::routing::any(
                    |axum::extract::Path(status): axum::extract::Path<u16>,
                     axum::extract::Query(query): axum::extract::Query<
                        BTreeMap<String, String>,
                    >| async move {
                        (
                            StatusCode::from_u16(status).unwrap(),
                            [("location", query.get("to").cloned().unwrap_or_default())],
                        )
                            .into_response()
                    },
                ),
            )
            .route(
                "/refuse",
                axum::routing::post(|| async {
                    let mut first = true;
                    let stream = futures_util::stream::repeat_with(move || {
                        let chunk = if std::mem::take(&mut first) {
                            "invalid_payload\n".to_string()
                        } else {
                            "x".repeat(65536)
                        };
                        Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(chunk))
                    });
                    (
                        StatusCode::BAD_REQUEST,
                        axum::body::Body::from_stream(stream),
                    )
                }),
            )
            .route(
                "/hang",
                axum::routing::post(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    StatusCode::OK
                }),
            )
            .fallback(
                move |method: Method, uri: axum::http::Uri, _: HeaderMap, body: String| {
                    let kept = kept.clone();
                    async move {
                        kept.lock()
                            .unwrap()
                            .push(format!("{method} {} {body}", uri.path()));
                        StatusCode::OK
                    }
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (base, seen)
    }

    fn webhook(redirects: Redirects) -> Webhook {
        Webhook::new(Limits {
            max_body_bytes: 64 * 1024,
            read_timeout: Duration::from_secs(1),
            redirects,
        })
        .unwrap()
    }

    fn call(url: &str) -> ActionCall {
        ActionCall {
            action: "notify.webhook",
            params: BTreeMap::from([
                ("url", ParamValue::Url(url::Url::parse(url).unwrap())),
                ("message", ParamValue::Text("hello".into())),
            ]),
            event_time_ms: 0,
            rule: "r".into(),
            playbook: "p".into(),
            event_id: "e1".into(),
        }
    }

    #[tokio::test]
    async fn a_webhook_redirected_to_another_host_is_not_a_delivery_and_never_connects_there() {
        let (base, _) = receiver().await;
        let (other, other_seen) = receiver().await;
        for status in [301, 302, 307, 308] {
            let target = format!("{other}/stolen");
            let outcome = webhook(Redirects::SameHost)
                .execute(&call(&format!("{base}/hook/{status}?to={target}")))
                .await;
            let message = outcome.expect_err("a redirect is not a delivery").message;
            assert!(
                message.contains(&format!(
                    "redirected (HTTP {status}) to {target}, which was not followed: it is another host"
                )),
                "{status}: {message}"
            );
        }
        assert!(
            other_seen.lock().unwrap().is_empty(),
            "the other host is never called"
        );
    }

    #[tokio::test]
    async fn a_webhook_301_on_the_same_host_is_not_a_delivery() {
        // Followed, it would be a GET without the message, answered 200: "delivered".
        let (base, seen) = receiver().await;
        for status in [301, 302, 303] {
            let outcome = webhook(Redirects::SameHost)
                .execute(&call(&format!("{base}/hook/{status}?to=/moved")))
                .await;
            let message = outcome.expect_err("not a delivery").message;
            assert!(
                message.contains("following it would send a bodiless GET instead of this POST"),
                "{status}: {message}"
            );
        }
        assert!(
            seen.lock().unwrap().is_empty(),
            "{:?}",
            seen.lock().unwrap()
        );
    }

    #[tokio::test]
    async fn a_webhook_307_or_308_on_the_same_host_is_followed_with_the_message() {
        let (base, seen) = receiver().await;
        for status in [307, 308] {
            let outcome = webhook(Redirects::SameHost)
                .execute(&call(&format!("{base}/hook/{status}?to=/moved")))
                .await;
            assert_eq!(outcome.unwrap(), "delivered (HTTP 200, attempt 1)");
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        for line in seen {
            assert!(
                line.starts_with("POST /moved {") && line.contains("\"message\":\"hello\""),
                "{line}"
            );
        }
        // `redirects: none` follows none of them.
        let outcome = webhook(Redirects::None)
            .execute(&call(&format!("{base}/hook/307?to=/moved")))
            .await;
        assert!(
            outcome
                .unwrap_err()
                .message
                .contains("redirects are not followed (`redirects: none`)")
        );
    }

    #[tokio::test]
    async fn a_webhook_refusal_is_quoted_and_its_endless_answer_is_not_read() {
        let (base, _) = receiver().await;
        let started = Instant::now();
        let outcome = webhook(Redirects::SameHost)
            .execute(&call(&format!("{base}/refuse")))
            .await;
        let message = outcome.unwrap_err().message;
        assert!(
            message.starts_with("the webhook refused the message: HTTP 400: invalid_payload"),
            "{message}"
        );
        assert!(message.len() < 300, "{} bytes", message.len());
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_webhook_that_never_answers_fails_within_its_read_timeout_without_retries() {
        let (base, _) = receiver().await;
        let started = Instant::now();
        let outcome = webhook(Redirects::SameHost)
            .execute(&call(&format!("{base}/hang")))
            .await;
        let took = started.elapsed();
        let message = outcome.unwrap_err().message;
        assert!(
            message.contains("did not answer completely within 1s (`read_timeout`)"),
            "{message}"
        );
        // Three attempts with waits would take over 4 s.
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
}
