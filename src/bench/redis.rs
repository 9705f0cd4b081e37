//! The Redis side of the bench: a producer that stamps events with their send time, the wait
//! for a consumer group to drain, and the server's own ceiling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::probe::now_micros;

/// Publishes every line (stamping its id with the send time), in pipelines of `chunk`, at most
/// `rate` events/s when given.
pub(super) async fn produce(
    mut connection: MultiplexedConnection,
    stream: String,
    lines: Arc<Vec<String>>,
    rate: Option<f64>,
) -> redis::RedisResult<()> {
    let chunk = if rate.is_some() { 50 } else { 500 };
    let started = Instant::now();
    for (n, batch) in lines.chunks(chunk).enumerate() {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64((n * chunk) as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let sent = now_micros();
        let mut pipe = redis::pipe();
        for (i, line) in batch.iter().enumerate() {
            let id = format!("b{}-{sent}", n * chunk + i);
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("data")
                .arg(line.replace("@ID@", &id))
                .ignore();
        }
        pipe.query_async::<()>(&mut connection).await?;
    }
    Ok(())
}

/// Waits until the group has read every one of `total` entries and has none pending.
pub(super) async fn wait_drained(
    connection: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
    total: usize,
) -> redis::RedisResult<()> {
    loop {
        let groups: Vec<redis::Value> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(connection)
            .await?;
        let drained = groups.iter().any(|g| {
            let fields = match g {
                redis::Value::Map(pairs) => pairs.clone(),
                redis::Value::Array(items) => items.chunks(2).filter_map(|p| Some((p.first()?.clone(), p.get(1)?.clone()))).collect(),
                _ => Vec::new(),
            };
            let field = |name: &str| {
                fields.iter().find_map(|(k, v)| match (k, v) {
                    (redis::Value::BulkString(k), redis::Value::Int(n)) if k == name.as_bytes() => Some(*n),
                    _ => None,
                })
            };
            let named = fields.iter().any(|(k, v)| {
                matches!((k, v), (redis::Value::BulkString(k), redis::Value::BulkString(v)) if k == b"name" && v == group.as_bytes())
            });
            named && field("entries-read") == Some(total as i64) && field("pending") == Some(0)
        });
        if drained {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(super) async fn connect(url: &str) -> Result<MultiplexedConnection, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    client
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new().set_response_timeout(None),
        )
        .await
        .map_err(|e| format!("cannot connect to Redis at `{url}`: {e}"))
}

pub(super) async fn fresh_stream(
    connection: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
) -> redis::RedisResult<()> {
    let _: () = redis::cmd("DEL")
        .arg(stream)
        .query_async(connection)
        .await?;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(connection)
        .await?;
    Ok(())
}

/// The raw `XADD` → `XREADGROUP` → `XACK` throughput of the server.
pub(super) async fn ceiling(url: &str, lines: &Arc<Vec<String>>) -> Result<f64, String> {
    let (stream, group) = ("palisade:bench:ceiling", "bench");
    let mut admin = connect(url).await?;
    fresh_stream(&mut admin, stream, group)
        .await
        .map_err(|e| e.to_string())?;
    let mut consumer = connect(url).await?;
    let total = lines.len();
    let started = Instant::now();
    let producer = tokio::spawn(produce(
        connect(url).await?,
        stream.into(),
        lines.clone(),
        None,
    ));
    let mut acked = 0usize;
    while acked < total {
        let reply: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg("c1")
            .arg("COUNT")
            .arg(500)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query_async(&mut consumer)
            .await
            .map_err(|e| e.to_string())?;
        let ids = entry_ids(reply);
        if ids.is_empty() {
            continue;
        }
        let _: () = redis::cmd("XACK")
            .arg(stream)
            .arg(group)
            .arg(&ids)
            .query_async(&mut consumer)
            .await
            .map_err(|e| e.to_string())?;
        acked += ids.len();
    }
    let seconds = started.elapsed().as_secs_f64();
    producer
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let _: () = redis::cmd("DEL")
        .arg(stream)
        .query_async(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    Ok(total as f64 / seconds)
}

fn entry_ids(reply: redis::Value) -> Vec<Vec<u8>> {
    let mut ids = Vec::new();
    if let redis::Value::Array(streams) = reply {
        for stream in streams {
            if let redis::Value::Array(parts) = stream
                && let Some(redis::Value::Array(entries)) = parts.into_iter().nth(1)
            {
                for entry in entries {
                    if let redis::Value::Array(fields) = entry
                        && let Some(redis::Value::BulkString(id)) = fields.into_iter().next()
                    {
                        ids.push(id);
                    }
                }
            }
        }
    }
    ids
}
