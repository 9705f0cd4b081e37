//! `palisade audit tail | verify | export`

use std::io::Write;
use std::path::Path;

use crate::audit::{AuditError, AuditFiles, AuditReader, AuditRecord};
use crate::state::StateStore;

use super::{CannotRun, Place, Status};

/// The state database and the audit trail's key and anchor, as an engine started with the same
/// options uses them (only the config is read).
pub(super) fn paths(at: &Place) -> Result<(std::path::PathBuf, AuditFiles), CannotRun> {
    let config = at.read_config()?;
    Ok((
        at.resolve(&config.state.path),
        AuditFiles::from_config(&config.audit, &config.state.path, |p| at.resolve(p)),
    ))
}

fn with_log<T>(
    at: &Place,
    work: impl AsyncFnOnce(&AuditReader, &AuditFiles) -> Result<T, AuditError>,
) -> Result<T, CannotRun> {
    let (path, files) = paths(at)?;
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
            let result = work(&AuditReader::new(&state), &files).await;
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

pub fn tail(at: &Place, count: i64) -> Result<Status, CannotRun> {
    let records = with_log(at, async |log, _| Ok(log.tail(count).await?))?;
    for record in &records {
        // Rows carry event values (ids, targets, reasons): shown inert.
        println!("{}", crate::text::Inert(&line(record)));
    }
    if let Some(last) = records.last() {
        println!("head: row {} hash {}", last.seq, last.hash);
    }
    Ok(Status::Ok)
}

/// How many findings to print; the count of the rest follows.
const SHOWN_FINDINGS: usize = 50;

pub fn verify(at: &Place) -> Result<Status, CannotRun> {
    let report = with_log(at, async |log, files| log.verify(files).await)?;
    for finding in report.findings.iter().take(SHOWN_FINDINGS) {
        println!("BROKEN: {finding}");
    }
    if report.findings.len() > SHOWN_FINDINGS {
        println!(
            "... and {} more finding(s)",
            report.findings.len() - SHOWN_FINDINGS
        );
    }
    let mut summary = format!("{} row(s)", report.rows);
    if let Some(first) = report.keyed_from
        && report.legacy_rows > 0
    {
        summary.push_str(&format!(
            "; rows before {first} were written before the audit key existed (unkeyed hashes, sealed by row {first})"
        ));
    }
    if let Some(anchored) = report.anchored
        && report.last > anchored
    {
        summary.push_str(&format!(
            "; rows {}-{} came after the anchor was last written (a stop between the two writes)",
            anchored + 1,
            report.last
        ));
    }
    if report.intact() {
        println!("intact: {summary}; every MAC, link and the anchor check out");
        Ok(Status::Ok)
    } else {
        println!("{} finding(s) in {summary}", report.findings.len());
        Ok(Status::Findings)
    }
}

pub fn export(at: &Place, out: Option<&Path>) -> Result<Status, CannotRun> {
    let records = with_log(at, async |log, _| Ok(log.records(None).await?))?;
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
