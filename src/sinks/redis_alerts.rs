//! Alerts on Redis: each detection is published on a channel (the seeds' responders subscribe to
//! `high_severity_alerts`) and appended to a capped stream for consumers that must not miss one.
//! The alerts come from the state file's outbox (`engine::drive::Outbox`), in the order their
//! outcomes were stored.

use crate::bus::Link;
use crate::config::AlertsConfig;
use crate::shutdown::Shutdown;

pub struct AlertPublisher {
    link: Link,
    channel: Option<String>,
    stream: Option<String>,
    maxlen: usize,
}

impl AlertPublisher {
    pub fn new(link: Link, config: &AlertsConfig) -> AlertPublisher {
        AlertPublisher {
            link,
            channel: config.channel.clone(),
            stream: config.stream.clone(),
            maxlen: config.stream_maxlen,
        }
    }

    /// Publishes every alert on the channel and appends it to the stream, in one pipeline.
    /// Retries until done, sending again only what was not done: a server that refuses the
    /// appends (out of memory) while it still takes `PUBLISH` gets each alert published once,
    /// and only the appends it refused retried. (After a lost connection nothing says which
    /// commands arrived, and all of them are sent again.) False when shutdown fired first (the
    /// alerts then stay in the outbox, unmarked, and are sent at the next start).
    pub async fn publish(&mut self, alerts: &[String], shutdown: &Shutdown) -> bool {
        let mut owed: Vec<Delivery> = Vec::with_capacity(alerts.len() * 2);
        for alert in alerts {
            if let Some(channel) = &self.channel {
                owed.push(Delivery::Publish { channel, alert });
            }
            if let Some(stream) = &self.stream {
                owed.push(Delivery::Append { stream, alert });
            }
        }
        while !owed.is_empty() {
            let Some(mut connection) = self.link.connection(shutdown).await else {
                return false;
            };
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for delivery in &owed {
                match delivery {
                    Delivery::Publish { channel, alert } => {
                        pipe.cmd("PUBLISH").arg(*channel).arg(*alert);
                    }
                    Delivery::Append { stream, alert } => {
                        pipe.cmd("XADD")
                            .arg(*stream)
                            .arg("MAXLEN")
                            .arg("~")
                            .arg(self.maxlen)
                            .arg("*")
                            .arg("alert")
                            .arg(*alert);
                    }
                }
            }
            match pipe
                .query_async::<Vec<redis::RedisResult<redis::Value>>>(&mut connection)
                .await
            {
                Ok(results) => {
                    let mut refusal = None;
                    let mut answers = results.into_iter();
                    owed.retain(|_| match answers.next() {
                        Some(Ok(_)) => false,
                        Some(Err(err)) => {
                            refusal.get_or_insert(err);
                            true
                        }
                        None => true,
                    });
                    let Some(err) = refusal else {
                        self.link.accepted();
                        continue;
                    };
                    if !self.link.refused(&err, shutdown).await {
                        return false;
                    }
                }
                Err(err) => {
                    if !self.link.failed(&err, shutdown).await {
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// One command an alert still needs.
enum Delivery<'a> {
    Publish { channel: &'a str, alert: &'a str },
    Append { stream: &'a str, alert: &'a str },
}
