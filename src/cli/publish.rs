//! `palisade publish --events FILE`: put recorded events on a Redis stream or channel, as a
//! sensor would, for testing and demos.

use std::path::Path;
use std::time::Instant;

use crate::config::SourceConfig;
use crate::sources::jsonl::JsonlReader;

use super::{CannotRun, Place, Status};

/// Where `publish` sends events.
pub enum Target {
    Stream(String),
    Channel(String),
}

pub fn run(
    at: &Place,
    events: &Path,
    stream: Option<String>,
    channel: Option<String>,
    redis_url: Option<String>,
) -> Result<Status, CannotRun> {
    // The config supplies defaults. Only the config is read: a rule being edited (or broken)
    // must not send the events somewhere else.
    let config = at.read_config()?;
    let target = match (stream, channel, &config.source) {
        (Some(stream), None, _) => Target::Stream(stream),
        (None, Some(channel), _) => Target::Channel(channel),
        (Some(_), Some(_), _) => {
            return Err(CannotRun(
                "give either --stream or --channel, not both".into(),
            ));
        }
        (None, None, SourceConfig::RedisChannel(c)) => Target::Channel(c.channel.clone()),
        (None, None, SourceConfig::RedisStream(s)) => Target::Stream(s.stream.clone()),
        (None, None, SourceConfig::Jsonl { .. }) => {
            Target::Stream(crate::config::StreamSourceConfig::default().stream)
        }
    };
    let url = redis_url.unwrap_or(config.redis.url);
    let mut reader = JsonlReader::open(events)
        .map_err(|e| CannotRun(format!("cannot read `{}`: {e}", events.display())))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = redis::Client::open(url.as_str())
            .map_err(|e| CannotRun(format!("invalid Redis URL `{url}`: {e}")))?;
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| CannotRun(format!("cannot connect to Redis at `{url}`: {e}")))?;
        let started = Instant::now();
        let mut sent = 0u64;
        loop {
            let mut pipe = redis::pipe();
            let mut in_pipe = 0;
            while in_pipe < 500 {
                let Some(line) = reader
                    .next_line()
                    .map_err(|e| CannotRun(format!("cannot read `{}`: {e}", events.display())))?
                else {
                    break;
                };
                match &target {
                    Target::Stream(stream) => pipe
                        .cmd("XADD")
                        .arg(stream)
                        .arg("*")
                        .arg("data")
                        .arg(line.bytes)
                        .ignore(),
                    Target::Channel(channel) => {
                        pipe.cmd("PUBLISH").arg(channel).arg(line.bytes).ignore()
                    }
                };
                in_pipe += 1;
            }
            if in_pipe == 0 {
                break;
            }
            pipe.query_async::<()>(&mut connection).await.map_err(|e| {
                CannotRun(format!(
                    "publishing to Redis failed after {sent} events: {e}"
                ))
            })?;
            sent += in_pipe;
        }
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        let (kind, name) = match &target {
            Target::Stream(s) => ("stream", s),
            Target::Channel(c) => ("channel", c),
        };
        println!(
            "published {sent} event(s) to {kind} `{name}` in {seconds:.2}s ({:.0}/s)",
            sent as f64 / seconds
        );
        Ok(Status::Ok)
    })
}
