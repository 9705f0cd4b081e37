//! `palisade audit tail | verify | export`

use std::io::Write;
use std::path::Path;

use crate::audit::{AuditLog, AuditRecord, Verdict};
use crate::content::display_path;
use crate::state::StateStore;

use super::{CannotRun, Status, load_content};

/// The state database of the content directory (its config's path, or the default).
fn state_path(dir: &Path) -> Result<std::path::PathBuf, CannotRun> {
    Ok(match load_content(dir, None)? {
        Ok(content) => content.resolve(&content.config.state.path),
        Err(_) => display_path(dir, &crate::config::Config::default().state.path),
    })
}

fn with_log<T>(
    dir: &Path,
    work: impl AsyncFnOnce(&AuditLog) -> Result<T, crate::state::StateError>,
) -> Result<T, CannotRun> {
    let path = state_path(dir)?;
    if !path.exists() {
        return Err(CannotRun(format!(
            "no state database at `{}`: nothing has been audited there",
            path.display()
        )));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime
        .block_on(async {
            let state = StateStore::open(&path).await?;
            let result = work(&AuditLog::new(&state)).await;
            state.close().await;
            result
        })
        .map_err(|e| CannotRun(e.to_string()))
}

fn line(record: &AuditRecord) -> String {
    let e = &record.entry;
    let field = |name: &str, value: &Option<String>| {
        value
            .as_ref()
            .map(|v| format!(" {name}={v}"))
            .unwrap_or_default()
    };
    format!(
        "{:>6} {} {:<8} {}{}{}{}{}{}{}{}",
        record.seq,
        record.recorded_at,
        e.kind,
        e.actor,
        field("event", &e.event_id),
        field("playbook", &e.playbook),
        field("step", &e.step),
        field("action", &e.action),
        field("target", &e.target),
        field("status", &e.status),
        field("reason", &e.reason),
    )
}

pub fn tail(dir: &Path, count: i64) -> Result<Status, CannotRun> {
    let records = with_log(dir, async |log| log.tail(count).await)?;
    for record in &records {
        println!("{}", line(record));
    }
    if let Some(last) = records.last() {
        println!("head: row {} hash {}", last.seq, last.hash);
    }
    Ok(Status::Ok)
}

pub fn verify(dir: &Path) -> Result<Status, CannotRun> {
    match with_log(dir, async |log| log.verify().await)? {
        Verdict::Intact { rows } => {
            println!("intact: {rows} row(s), every hash and link checks out");
            Ok(Status::Ok)
        }
        Verdict::Broken { seq, problem } => {
            println!("BROKEN at row {seq}: {problem}");
            Ok(Status::Findings)
        }
    }
}

pub fn export(dir: &Path, out: Option<&Path>) -> Result<Status, CannotRun> {
    let records = with_log(dir, async |log| log.records(None).await)?;
    let mut sink: Box<dyn Write> = match out {
        Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    for record in &records {
        serde_json::to_writer(&mut sink, record)?;
        sink.write_all(b"\n")?;
    }
    sink.flush()?;
    if let Some(path) = out {
        eprintln!("exported {} row(s) to {}", records.len(), path.display());
    }
    Ok(Status::Ok)
}
