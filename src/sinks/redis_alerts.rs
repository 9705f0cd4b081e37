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
    ///
    /// When `maybe_sent` (the first send after a start: an earlier run may have sent these
    /// alerts and stopped before marking them), and again after a lost connection, the
    /// stream's newest entries are read first and an alert whose `alert_id` is already there is
    /// not appended again.
    pub async fn publish(
        &mut self,
        alerts: &[String],
        maybe_sent: bool,
        shutdown: &Shutdown,
    ) -> bool {
        let mut owed: Vec<Delivery> = Vec::with_capacity(alerts.len() * 2);
        for alert in alerts {
            if let Some(channel) = &self.channel {
                owed.push(Delivery::Publish { channel, alert });
            }
            if let Some(stream) = &self.stream {
                owed.push(Delivery::Append { stream, alert });
            }
        }
        let mut check_tail = maybe_sent;
        while !owed.is_empty() {
            let Some(mut connection) = self.link.connection(shutdown).await else {
                return false;
            };
            if check_tail {
                match self.drop_appended(&mut owed, &mut connection).await {
                    Ok(()) => check_tail = false,
                    Err(err) => {
                        if !self.link.failed(&err, shutdown).await {
                            return false;
                        }
                        continue;
                    }
                }
                if owed.is_empty() {
                    break;
                }
            }
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
                    // Nothing says which commands of the pipeline arrived.
                    check_tail = true;
                    if !self.link.failed(&err, shutdown).await {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Drops from `owed` the appends whose alert is already among the stream's newest entries
    /// (read back as far as twice what is owed, at least [`TAIL_CHECKED`]). Another engine's
    /// alerts interleaved in the same stream can push an earlier copy out of that window; a
    /// consumer that must never see a copy keys on `alert_id`.
    async fn drop_appended(
        &self,
        owed: &mut Vec<Delivery<'_>>,
        connection: &mut redis::aio::MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        let Some(stream) = &self.stream else {
            return Ok(());
        };
        let appends = owed
            .iter()
            .filter(|d| matches!(d, Delivery::Append { .. }))
            .count();
        if appends == 0 {
            return Ok(());
        }
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
            .arg(stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg((appends * 2).max(TAIL_CHECKED))
            .query_async(connection)
            .await?;
        let present: std::collections::HashSet<String> = entries
            .iter()
            .flat_map(|(_, fields)| fields.iter())
            .filter(|(name, _)| name == "alert")
            .filter_map(|(_, alert)| alert_id_of(alert))
            .collect();
        if present.is_empty() {
            return Ok(());
        }
        let before = owed.len();
        owed.retain(|delivery| match delivery {
            Delivery::Append { alert, .. } => {
                alert_id_of(alert).is_none_or(|id| !present.contains(&id))
            }
            Delivery::Publish { .. } => true,
        });
        let dropped = before - owed.len();
        if dropped > 0 {
            tracing::info!(
                "{dropped} alerts were already on the alerts stream (sent before a restart or a lost connection); not appended again"
            );
        }
        Ok(())
    }
}

/// How many of the alert stream's newest entries are read back, at least, before sending
/// alerts that may already be there.
const TAIL_CHECKED: usize = 1000;

/// The `alert_id` of an alert document.
fn alert_id_of(alert: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(alert).ok()?;
    value.get("alert_id")?.as_str().map(str::to_string)
}

/// One command an alert still needs.
enum Delivery<'a> {
    Publish { channel: &'a str, alert: &'a str },
    Append { stream: &'a str, alert: &'a str },
}
