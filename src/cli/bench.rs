//! `palisade bench pipeline`

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench::{BenchOptions, pipeline};

/// `palisade bench pipeline`'s flags.
pub struct PipelineArgs {
    pub events: usize,
    pub malicious_every: usize,
    pub redis_url: Option<String>,
    pub rules: usize,
    pub indicators: usize,
    pub repeat: usize,
    pub json: bool,
    /// Replace the playbooks with one posting to a local webhook receiver that behaves so.
    pub webhook: Option<crate::bench::webhook::WebhookMode>,
}

use super::{CannotRun, Place, Status, load_runnable_content};

/// A redis-server the bench starts for itself and stops when done.
struct LocalRedis {
    child: Child,
    url: String,
}

impl LocalRedis {
    fn start() -> Result<LocalRedis, CannotRun> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| CannotRun(format!("no free port on 127.0.0.1: {e}")))?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| CannotRun(format!("cannot start redis-server ({e}); install it (Debian: `apt-get install redis-server`) or pass --redis URL")))?;
        let url = format!("redis://127.0.0.1:{port}/");
        let started = Instant::now();
        loop {
            let ready = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok();
            if ready {
                return Ok(LocalRedis { child, url });
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(CannotRun(format!(
                    "redis-server did not answer on port {port}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run(at: &Place, args: PipelineArgs) -> Result<Status, CannotRun> {
    let content = load_runnable_content(&at.dir, at.config.as_deref())?;
    let local = match args.redis_url {
        Some(_) => None,
        None => Some(LocalRedis::start()?),
    };
    let url = args
        .redis_url
        .unwrap_or_else(|| local.as_ref().map(|l| l.url.clone()).unwrap_or_default());
    let work = std::env::temp_dir().join(format!("palisade-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    if !args.json {
        println!(
            "palisade pipeline bench: {} events, 1 in {} malicious, {} rule(s), {} Sigma rule(s), {} correlation(s), {} playbook(s) in the content, {} generated rule(s), {} generated indicator(s), {} round(s), Redis at {url}",
            args.events,
            args.malicious_every,
            content.rules.len(),
            content.sigma.rules.len(),
            content.sigma.correlations.len(),
            content.playbooks.len(),
            args.rules,
            args.indicators,
            args.repeat
        );
    }
    if let Some(mode) = args.webhook
        && !args.json
    {
        println!(
            "the playbooks are replaced by one posting each malicious detection to a local webhook receiver that is {}",
            mode.as_str()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let options = BenchOptions {
        events: args.events,
        malicious_every: args.malicious_every,
        redis_url: url,
        rules: args.rules,
        indicators: args.indicators,
        repeat: args.repeat,
        webhook: args.webhook,
    };
    let report = runtime.block_on(pipeline(&options, content, &work));
    let _ = std::fs::remove_dir_all(&work);
    let report = report.map_err(CannotRun)?;
    if args.json {
        let mut document = serde_json::to_value(&report)?;
        document["medians"] = serde_json::to_value(report.medians())?;
        document["ratio"] = serde_json::json!(report.ratio());
        println!("{document}");
    } else {
        println!("{report}");
    }
    Ok(Status::Ok)
}

pub fn intel(indicators: usize) -> Result<Status, CannotRun> {
    let state_dir =
        std::env::temp_dir().join(format!("palisade-bench-intel-{}", std::process::id()));
    std::fs::create_dir_all(&state_dir)?;
    println!(
        "palisade intel bench: {indicators} generated indicators (45% addresses, 5% ranges, 25% domains, 10% URLs, 15% hashes)"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(crate::bench::intel(indicators, &state_dir));
    let _ = std::fs::remove_dir_all(&state_dir);
    println!("{}", report.map_err(CannotRun)?);
    Ok(Status::Ok)
}
