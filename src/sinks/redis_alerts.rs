//! Alerts on Redis: each detection is published on a channel (the seeds' responders subscribe to
//! `high_severity_alerts`) and appended to a capped stream for consumers that must not miss one.

use crate::bus::Link;
use crate::config::AlertsConfig;
use crate::engine::Shutdown;

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

    /// Publishes every alert in one pipeline. Retries until done; false when shutdown fired
    /// first (the source then does not acknowledge, so the alerts are produced again).
    pub async fn publish(&mut self, alerts: &[String], shutdown: &Shutdown) -> bool {
        if alerts.is_empty() || (self.channel.is_none() && self.stream.is_none()) {
            return true;
        }
        let mut pipe = redis::pipe();
        for alert in alerts {
            if let Some(channel) = &self.channel {
                pipe.cmd("PUBLISH").arg(channel).arg(alert).ignore();
            }
            if let Some(stream) = &self.stream {
                pipe.cmd("XADD")
                    .arg(stream)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(self.maxlen)
                    .arg("*")
                    .arg("alert")
                    .arg(alert)
                    .ignore();
            }
        }
        loop {
            let Some(mut connection) = self.link.connection(shutdown).await else {
                return false;
            };
            match pipe.query_async::<()>(&mut connection).await {
                Ok(()) => return true,
                Err(err) => {
                    if !self.link.failed(&err, shutdown).await {
                        return false;
                    }
                }
            }
        }
    }
}
