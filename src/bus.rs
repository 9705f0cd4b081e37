//! The Redis link that Redis sources and sinks share: connect, and when Redis is down, retry
//! with capped backoff, log it, and show it in [`Health`], never crash.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};

use crate::shutdown::Shutdown;

/// What an operator needs to know about the engine's links, shared by every component.
#[derive(Debug, Default)]
pub struct Health {
    redis_up: AtomicBool,
    redis_failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Health {
    pub fn redis_up(&self) -> bool {
        self.redis_up.load(Ordering::Relaxed)
    }

    /// How many times a Redis operation failed or a connection attempt was refused.
    pub fn redis_failures(&self) -> u64 {
        self.redis_failures.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn up(&self) {
        self.redis_up.store(true, Ordering::Relaxed);
    }

    fn down(&self, error: String) {
        self.redis_up.store(false, Ordering::Relaxed);
        self.redis_failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }
}

/// Backoff between reconnection attempts: 100 ms doubling to a 5 s cap.
#[derive(Debug, Clone)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(5);

    fn new() -> Backoff {
        Backoff {
            next: Backoff::FIRST,
        }
    }

    fn step(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Backoff::CAP);
        wait
    }

    fn reset(&mut self) {
        self.next = Backoff::FIRST;
    }
}

/// A connection to Redis that reconnects when it breaks.
pub struct Link {
    client: Client,
    /// Where this link is used (`source`, `alerts`), for log lines.
    role: &'static str,
    connection: Option<MultiplexedConnection>,
    health: Arc<Health>,
    backoff: Backoff,
    /// The server is refusing this link's commands (out of memory, read-only): one warning
    /// an episode, one line when it ends.
    refusing: bool,
}

/// A Redis URL the client cannot use.
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL `{url}`: {source}")]
pub struct InvalidRedisUrl {
    pub url: String,
    pub source: redis::RedisError,
}

impl InvalidRedisUrl {
    /// Opens a client for `url`, the one way the crate checks a Redis URL.
    pub fn open(url: &str) -> Result<Client, InvalidRedisUrl> {
        Client::open(url).map_err(|source| InvalidRedisUrl {
            url: url.to_string(),
            source,
        })
    }
}

impl Link {
    /// Checks the URL; does not connect.
    pub fn new(
        url: &str,
        role: &'static str,
        health: Arc<Health>,
    ) -> Result<Link, InvalidRedisUrl> {
        let client = InvalidRedisUrl::open(url)?;
        Ok(Link {
            client,
            role,
            connection: None,
            health,
            backoff: Backoff::new(),
            refusing: false,
        })
    }

    /// Another link to the same server, with its own connection, sharing health.
    pub fn sibling(&self, role: &'static str) -> Link {
        Link {
            client: self.client.clone(),
            role,
            connection: None,
            health: self.health.clone(),
            backoff: Backoff::new(),
            refusing: false,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// A live connection, connecting (and retrying with backoff) as needed. `None` only when
    /// `shutdown` fires first.
    pub async fn connection(&mut self, shutdown: &Shutdown) -> Option<MultiplexedConnection> {
        loop {
            if let Some(connection) = &self.connection {
                return Some(connection.clone());
            }
            // Blocking reads (XREADGROUP BLOCK) must not hit a response timeout.
            let config = AsyncConnectionConfig::new()
                .set_response_timeout(None)
                .set_connection_timeout(Some(Duration::from_secs(2)));
            match self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await
            {
                Ok(connection) => {
                    if !self.health.redis_up() || self.health.redis_failures() > 0 {
                        tracing::info!(role = self.role, "connected to Redis");
                    }
                    self.health.up();
                    self.backoff.reset();
                    self.connection = Some(connection);
                }
                Err(err) => {
                    if !self.wait_after(err.to_string(), shutdown).await {
                        return None;
                    }
                }
            }
        }
    }

    /// A subscriber connection, connecting (and retrying with backoff) as needed. `None` only
    /// when `shutdown` fires first.
    pub async fn pubsub(&mut self, shutdown: &Shutdown) -> Option<redis::aio::PubSub> {
        loop {
            match self.client.get_async_pubsub().await {
                Ok(pubsub) => {
                    self.health.up();
                    self.backoff.reset();
                    return Some(pubsub);
                }
                Err(err) => {
                    if !self.wait_after(err.to_string(), shutdown).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Records that an operation on the connection failed: drops the connection so the next
    /// call reconnects, and waits out the backoff. Returns false when shutdown fired meanwhile.
    pub async fn failed(&mut self, err: &redis::RedisError, shutdown: &Shutdown) -> bool {
        self.connection = None;
        self.wait_after(err.to_string(), shutdown).await
    }

    /// Records that a reachable server refused a command (`OOM` while memory is full, `READONLY`
    /// on a replica): the connection stays; the first refusal of an episode is a warning, the
    /// rest go to debug; waits out the backoff. Returns false when shutdown fired meanwhile.
    pub async fn refused(&mut self, err: &redis::RedisError, shutdown: &Shutdown) -> bool {
        let wait = self.backoff.step();
        if self.refusing {
            tracing::debug!(
                role = self.role,
                "Redis still refuses: {err}; next try in {wait:?}"
            );
        } else {
            tracing::warn!(
                role = self.role,
                "Redis refuses the command: {err}; retrying what it refused with backoff up to {:?}",
                Backoff::CAP
            );
            self.refusing = true;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = shutdown.wait() => false,
        }
    }

    /// Records that the server accepted what it last refused: ends the episode.
    pub fn accepted(&mut self) {
        if self.refusing {
            tracing::info!(
                role = self.role,
                "Redis accepts the commands it refused again"
            );
            self.refusing = false;
            self.backoff.reset();
        }
    }

    async fn wait_after(&mut self, error: String, shutdown: &Shutdown) -> bool {
        let wait = self.backoff.step();
        if self.health.redis_up() || self.health.redis_failures() == 0 {
            tracing::warn!(
                role = self.role,
                "Redis is unreachable: {error}; retrying with backoff up to {:?}",
                Backoff::CAP
            );
        } else {
            tracing::debug!(
                role = self.role,
                "Redis still unreachable: {error}; next try in {wait:?}"
            );
        }
        self.health.down(error);
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = shutdown.wait() => false,
        }
    }
}

/// Whether an error means the connection itself is gone (as opposed to a command error such as
/// `NOGROUP`, which needs a different remedy).
pub fn is_connection_error(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut backoff = Backoff::new();
        let waits: Vec<u128> = (0..8).map(|_| backoff.step().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.step().as_millis(), 100);
    }
}
