//! `palisade run`: the engine on its configured source.

use std::path::Path;

use crate::config::SourceConfig;
use crate::server::Options;
use crate::shutdown::Shutdown;
use crate::sinks::AlertFormat;

use super::{CannotRun, LogFormat, Place, Status, load_runnable_content};

pub fn run(at: &Place, events: Option<&Path>, format: LogFormat) -> Result<Status, CannotRun> {
    let content = load_runnable_content(&at.dir, at.config.as_deref())?;
    let options = Options {
        // `--events` overrides the configured source.
        source: events.map(|path| SourceConfig::Jsonl {
            path: path.to_path_buf(),
        }),
        ..Options::new(match format {
            LogFormat::Text => AlertFormat::Text,
            LogFormat::Json => AlertFormat::Json,
        })
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime
        .block_on(async { crate::server::run(content, options, Shutdown::on_signals()).await });
    // A reader blocked on standard input cannot be interrupted; do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result?;
    Ok(Status::Ok)
}
