//! The engine's HTTP endpoints, on a loopback address only: `/healthz` (the process is alive,
//! with what it knows about Redis), `/readyz` (it reads its source), `/metrics` (Prometheus).
//!
//! Every connection is bounded ([`Limits`]): how many are served at once, how long a client
//! may take to send a request's headers, and how long a connection may sit idle. Clients that
//! open connections and send nothing, or send headers a byte at a time, are cut off and
//! counted; they cannot take the descriptors the engine needs for its state database.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::Metrics;
use crate::bus::Health;

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

async fn healthz(State(shared): State<Shared>) -> impl IntoResponse {
    let (mode, change) = shared.metrics.mode();
    // `mode_since` is null when the mode was never switched (the default since the start).
    let mode_since = change
        .as_ref()
        .filter(|c| c.since_ms > 0)
        .and_then(|c| jiff::Timestamp::from_millisecond(c.since_ms).ok())
        .map(|t| t.to_string());
    let mode_by = change.as_ref().map(|c| c.by.clone());
    let mode_reason = change.map(|c| c.reason);
    let body = serde_json::json!({
        "status": "ok",
        "redis_up": shared.health.redis_up(),
        "redis_failures": shared.health.redis_failures(),
        "last_error": shared.health.last_error(),
        "events_processed": shared.metrics.events_processed(),
        "mode": mode,
        "mode_since": mode_since,
        "mode_by": mode_by,
        "mode_reason": mode_reason,
        "last_reload_error": shared.metrics.reload_error(),
        "limit_hits": shared.metrics.limit_hits(),
        "transient_faults": shared.metrics.transient_faults(),
        "anomaly": shared.metrics.learning().map(|status| serde_json::json!({
            "state": status.state,
            "progress": status.line(),
            "events": status.events,
            "min_events": status.min_events,
            "days": status.days,
            "min_days": status.min_days,
            "sample": status.sample,
            "model": status.model_id,
            "trained_at": status.trained_at,
            "held": status.held,
            "last_error": status.last_error,
        })),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

async fn readyz(State(shared): State<Shared>) -> impl IntoResponse {
    if shared.metrics.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not reading its source\n")
    }
}

async fn prometheus(State(shared): State<Shared>) -> impl IntoResponse {
    shared
        .metrics
        .set_redis_failures(shared.health.redis_failures());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
}

/// The bounds on the endpoint's connections (`http.*` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Limits {
    pub fn from_config(config: &crate::config::HttpConfig) -> Limits {
        Limits {
            // Zero would refuse everyone, including the health checks the endpoint is for.
            max_connections: config.max_connections.max(1),
            header_timeout: Duration::from_millis(config.header_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms.max(1)),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::from_config(&crate::config::HttpConfig::default())
    }
}

/// Binds `listen` (a loopback address; port 0 picks one) and serves until `shutdown`, within
/// `limits`. Returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: crate::shutdown::Shutdown,
    limits: Limits,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .with_state(Shared {
            metrics: metrics.clone(),
            health,
        });
    tokio::spawn(accept_loop(listener, app, metrics, shutdown, limits));
    Ok(bound)
}

/// The longest pause after a failed accept (out of descriptors, say): the listener is tried
/// again at least this often.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    metrics: Arc<Metrics>,
    shutdown: crate::shutdown::Shutdown,
    limits: Limits,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Each episode (at the cap, or accept failing) is logged when it starts and when it ends.
    let mut refusing = false;
    let mut accept_backoff: Option<Duration> = None;
    loop {
        let accepted = tokio::select! {
            () = shutdown.wait() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                if accept_backoff.take().is_some() {
                    tracing::info!("the HTTP endpoint accepts connections again");
                }
                stream
            }
            Err(err) => {
                let wait = match accept_backoff {
                    None => {
                        metrics.fault("http_accept");
                        tracing::warn!(
                            "the HTTP endpoint cannot accept a connection ({err}); retrying"
                        );
                        Duration::from_millis(10)
                    }
                    Some(wait) => (wait * 2).min(MAX_ACCEPT_BACKOFF),
                };
                accept_backoff = Some(wait);
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                if refusing && permits.available_permits() >= limits.max_connections / 2 {
                    refusing = false;
                    tracing::info!("the HTTP endpoint is below its connection cap again");
                }
                tokio::spawn(connection(
                    stream,
                    permit,
                    app.clone(),
                    metrics.clone(),
                    shutdown.clone(),
                    limits,
                ));
            }
            Err(_) => {
                // Closed at once: held in the backlog it would still wait on us, and served it
                // would take a descriptor past the cap.
                drop(stream);
                metrics.limit_hit("http_connections");
                if !refusing {
                    refusing = true;
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "the HTTP endpoint holds `http.max_connections` connections; closing new ones until some end"
                    );
                }
            }
        }
    }
}

/// Serves one connection until it ends, its headers take too long, it sits idle too long, or
/// the engine stops. The permit is its place under the cap.
async fn connection(
    stream: tokio::net::TcpStream,
    permit: tokio::sync::OwnedSemaphorePermit,
    app: Router,
    metrics: Arc<Metrics>,
    shutdown: crate::shutdown::Shutdown,
    limits: Limits,
) {
    let started = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let io = hyper_util::rt::TokioIo::new(Tracked {
        inner: stream,
        started,
        last: last.clone(),
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let served = builder.serve_connection(io, hyper_util::service::TowerToHyperService::new(app));
    tokio::pin!(served);
    let mut stopping = false;
    loop {
        let quiet = started
            .elapsed()
            .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
        let left = limits.idle_timeout.saturating_sub(quiet);
        tokio::select! {
            result = served.as_mut() => {
                if let Err(err) = result
                    && err.is_timeout()
                {
                    metrics.limit_hit("http_header_timeout");
                }
                break;
            }
            () = tokio::time::sleep(left) => {
                let quiet = started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if quiet >= limits.idle_timeout {
                    metrics.limit_hit("http_idle_timeout");
                    break;
                }
            }
            () = shutdown.wait(), if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
    drop(permit);
}

/// A stream that notes when a byte last went through it, for the idle timeout.
struct Tracked {
    inner: tokio::net::TcpStream,
    started: Instant,
    /// Milliseconds after `started` of the last byte read or written.
    last: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    async fn start(limits: Limits) -> (SocketAddr, Arc<Metrics>, crate::shutdown::ShutdownTrigger) {
        let metrics = Arc::new(Metrics::default());
        let (trigger, shutdown) = crate::shutdown::Shutdown::new();
        let bound = serve(
            "127.0.0.1:0".parse().unwrap(),
            metrics.clone(),
            Arc::new(Health::default()),
            shutdown,
            limits,
        )
        .await
        .unwrap();
        (bound, metrics, trigger)
    }

    /// `GET /healthz` on a fresh connection, from a blocking thread.
    async fn healthz_status(address: SocketAddr) -> Option<u16> {
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(address).ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            write!(
                stream,
                "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .ok()?;
            let mut response = String::new();
            stream.read_to_string(&mut response).ok()?;
            response.split_whitespace().nth(1)?.parse().ok()
        })
        .await
        .ok()?
    }

    fn hits(metrics: &Metrics, limit: &str) -> u64 {
        metrics
            .render()
            .lines()
            .find(|l| l.starts_with(&format!("palisade_limit_hits_total{{limit=\"{limit}\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Closed by the server: a read returns end of file or an error instead of blocking.
    fn closed_within(stream: &mut std::net::TcpStream, limit: Duration) -> bool {
        stream.set_read_timeout(Some(limit)).unwrap();
        let mut byte = [0u8; 1024];
        loop {
            match stream.read(&mut byte) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(err) => {
                    return !matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    );
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thousand_idle_connections_are_capped_and_healthz_serves_once_they_time_out() {
        let limits = Limits {
            max_connections: 16,
            header_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(30),
        };
        let (address, metrics, _trigger) = start(limits).await;
        let idle = tokio::task::spawn_blocking(move || {
            (0..1000)
                .filter_map(|_| std::net::TcpStream::connect(address).ok())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        assert!(idle.len() > 900, "{} connected", idle.len());
        // Every one of them sends nothing: the ones served are cut at the header timeout, the
        // rest were closed at once; none is left holding a place.
        let mut idle = idle;
        let cut = tokio::task::spawn_blocking(move || {
            idle.iter_mut()
                .map(|stream| closed_within(stream, Duration::from_secs(10)))
                .filter(|closed| *closed)
                .count()
        })
        .await
        .unwrap();
        assert!(cut > 900, "only {cut} closed");
        assert_eq!(healthz_status(address).await, Some(200));
        assert!(hits(&metrics, "http_connections") > 0);
        assert!(hits(&metrics, "http_header_timeout") > 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slowloris_client_sending_headers_byte_by_byte_is_cut_off() {
        let limits = Limits {
            max_connections: 16,
            header_timeout: Duration::from_millis(600),
            idle_timeout: Duration::from_secs(30),
        };
        let (address, metrics, _trigger) = start(limits).await;
        let (sent, elapsed) = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
            let mut sent = 0;
            // Each byte resets any idle timer; only a bound on the whole header stops this.
            for byte in request {
                if stream.write_all(&[*byte]).is_err() {
                    break;
                }
                sent += 1;
                std::thread::sleep(Duration::from_millis(50));
                if started.elapsed() > Duration::from_secs(10) {
                    break;
                }
            }
            assert!(closed_within(&mut stream, Duration::from_secs(5)));
            (sent, started.elapsed())
        })
        .await
        .unwrap();
        assert!(sent < 40, "sent {sent} bytes before being cut off");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        assert_eq!(hits(&metrics, "http_header_timeout"), 1);
        assert_eq!(healthz_status(address).await, Some(200));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_quiet_past_the_idle_timeout_is_closed() {
        let limits = Limits {
            max_connections: 16,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_millis(500),
        };
        let (address, metrics, _trigger) = start(limits).await;
        let elapsed = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            write!(stream, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let started = Instant::now();
            // The response arrives; the kept-alive connection then carries nothing.
            assert!(closed_within(&mut stream, Duration::from_secs(10)));
            started.elapsed()
        })
        .await
        .unwrap();
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        assert_eq!(hits(&metrics, "http_idle_timeout"), 1);
    }
}
