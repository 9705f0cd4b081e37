//! A Redis pub/sub channel, the seeds' `internal_logs`.
//!
//! Pub/sub is at most once: Redis keeps nothing for a subscriber that is not connected, so
//! whatever sensors publish while no engine listens (or while this one reconnects) is lost.
//! Use a stream source where that matters.

use futures_util::StreamExt;
use redis::aio::PubSubStream;

use crate::bus::Link;
use crate::config::ChannelSourceConfig;
use crate::shutdown::Shutdown;

pub struct ChannelSource {
    link: Link,
    config: ChannelSourceConfig,
    messages: Option<PubSubStream>,
}

impl ChannelSource {
    pub fn new(link: Link, config: ChannelSourceConfig) -> ChannelSource {
        ChannelSource {
            link,
            config,
            messages: None,
        }
    }

    pub fn channel(&self) -> &str {
        &self.config.channel
    }

    /// The next messages: waits for one, then takes those already arrived, up to
    /// `batch_size`. `None` once `shutdown` has fired.
    pub async fn next_batch(&mut self, shutdown: &Shutdown) -> Option<Vec<Vec<u8>>> {
        loop {
            if shutdown.is_triggered() {
                return None;
            }
            let Some(messages) = &mut self.messages else {
                let mut pubsub = self.link.pubsub(shutdown).await?;
                if let Err(err) = pubsub.subscribe(&self.config.channel).await {
                    if !self.link.failed(&err, shutdown).await {
                        return None;
                    }
                    continue;
                }
                tracing::info!(channel = self.config.channel, "subscribed");
                self.messages = Some(pubsub.into_on_message());
                continue;
            };
            let first = tokio::select! {
                message = messages.next() => message,
                () = shutdown.wait() => return None,
            };
            let Some(first) = first else {
                tracing::warn!(
                    channel = self.config.channel,
                    "lost the subscription; messages published until it is back are lost (pub/sub keeps nothing)"
                );
                self.messages = None;
                continue;
            };
            let mut batch = vec![first.get_payload_bytes().to_vec()];
            while batch.len() < self.config.batch_size {
                match futures_util::FutureExt::now_or_never(messages.next()) {
                    Some(Some(message)) => batch.push(message.get_payload_bytes().to_vec()),
                    _ => break,
                }
            }
            return Some(batch);
        }
    }
}
