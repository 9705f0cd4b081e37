//! `palisade rules list`

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::testing::inventory::{RuleEntry, inventory};

use super::{CannotRun, OutputFormat, Place, Status};

/// Where a rule's "last change" came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum ChangedBy {
    /// The date of the last commit that touched the file.
    Git,
    /// The file's modification time: the content is not in a git repository, or the file has
    /// changes (or is new) that are not committed.
    Mtime,
}

#[derive(Debug, Serialize)]
struct Listed {
    #[serde(flatten)]
    rule: RuleEntry,
    last_change: Option<String>,
    last_change_from: Option<ChangedBy>,
}

pub fn list(at: &Place, format: OutputFormat) -> Result<Status, CannotRun> {
    let content = match at.content()? {
        Ok(content) => content,
        Err(problems) => {
            eprintln!("{}", problems.render());
            return Err(CannotRun(format!(
                "the content does not validate ({} problem(s) above); `palisade validate` shows them",
                problems.errors()
            )));
        }
    };
    let entries = inventory(&content);
    let files: Vec<&Path> = entries.iter().map(|e| e.file.as_path()).collect();
    let changes = last_changes(&content.dir, &files);
    let listed: Vec<Listed> = entries
        .into_iter()
        .map(|rule| {
            let change = std::fs::canonicalize(&rule.file)
                .ok()
                .and_then(|real| changes.get(&real).cloned())
                .or_else(|| modified(&rule.file).map(|when| (when, ChangedBy::Mtime)));
            Listed {
                rule,
                last_change_from: change.as_ref().map(|c| c.1),
                last_change: change.map(|c| c.0),
            }
        })
        .collect();
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&listed)?),
        OutputFormat::Text => print!("{}", table(&listed)),
    }
    Ok(Status::Ok)
}

/// Aligned columns, one rule a line; the tags (of any length) last.
fn table(listed: &[Listed]) -> String {
    const TITLE_WIDTH: usize = 48;
    let header = [
        "RULE", "TITLE", "STATUS", "SEVERITY", "ENGINE", "EVENTS", "TESTS", "CHANGED", "TAGS",
    ];
    let mut rows: Vec<[String; 9]> = vec![header.map(str::to_string)];
    for item in listed {
        let rule = &item.rule;
        let mut title: String = rule.title.chars().take(TITLE_WIDTH).collect();
        if rule.title.chars().count() > TITLE_WIDTH {
            title.pop();
            title.push('…');
        }
        let tests = match &rule.tested_through {
            Some(through) => format!("via {through}"),
            None => format!("+{} -{}", rule.positive, rule.negative),
        };
        let changed = match (&item.last_change, item.last_change_from) {
            (Some(when), Some(ChangedBy::Git)) => format!("{when} (git)"),
            (Some(when), _) => format!("{when} (mtime)"),
            (None, _) => "-".into(),
        };
        rows.push([
            rule.name.clone(),
            title,
            rule.status.clone().unwrap_or_else(|| "-".into()),
            rule.severity.clone(),
            rule.engine.as_str().into(),
            rule.events.join(","),
            tests,
            changed,
            rule.tags.join(" "),
        ]);
    }
    // Titles and tags of corpus rules come from outside: nothing in them may act on a terminal.
    let rows: Vec<[String; 9]> = rows
        .into_iter()
        .map(|row| row.map(|cell| crate::text::inert(&cell).into_owned()))
        .collect();
    let mut widths = [0usize; 9];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(width - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "\n{} rule(s). RULE: a Rhai rule's id, a Sigma rule's name or file stem (`--format json` adds Sigma ids). TESTS: positive (expects it to fire) and negative cases. CHANGED: last commit touching the file (git), else the file's modification time (mtime).\n",
        listed.len()
    ));
    out
}

/// The file's modification time as RFC 3339.
fn modified(file: &Path) -> Option<String> {
    let time = std::fs::metadata(file).ok()?.modified().ok()?;
    jiff::Timestamp::try_from(time).ok().map(|t| t.to_string())
}

/// For each of `files` under git and unchanged since its last commit: that commit's date, by
/// canonical path. One `git log` for all files; nothing when `dir` is not in a git repository
/// or git cannot be run.
fn last_changes(dir: &Path, files: &[&Path]) -> HashMap<PathBuf, (String, ChangedBy)> {
    let mut found = HashMap::new();
    let git = |args: &[String]| -> Option<Vec<u8>> {
        let output = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "core.quotepath=off"])
            .args(args)
            .output()
            .ok()?;
        output.status.success().then_some(output.stdout)
    };
    let Some(top) = git(&["rev-parse".into(), "--show-toplevel".into()]) else {
        return found;
    };
    let Ok(top) = String::from_utf8(top) else {
        return found;
    };
    let Ok(top) = Path::new(top.trim_end_matches('\n')).canonicalize() else {
        return found;
    };
    // The folders holding the files, not each file: a corpus has thousands of rules in a few
    // folders, and git matches a few path specs much faster than thousands.
    let mut folders: Vec<String> = files
        .iter()
        .filter_map(|f| f.canonicalize().ok())
        .filter_map(|p| {
            let folder = p.parent()?.strip_prefix(&top).ok()?.to_str()?.to_string();
            Some(format!(":(top,literal){folder}"))
        })
        .collect();
    folders.sort();
    folders.dedup();
    if folders.is_empty() {
        return found;
    }
    let with_specs = |first: &[&'static str]| -> Vec<String> {
        first
            .iter()
            .map(|a| a.to_string())
            .chain(folders.iter().cloned())
            .collect()
    };
    // Files with uncommitted changes (or not committed at all) changed after their last commit.
    let mut dirty = std::collections::HashSet::new();
    let status_args = with_specs(&[
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        "--",
    ]);
    if let Some(out) = git(&status_args) {
        for entry in out.split(|&b| b == 0) {
            if let Some(path) = entry.get(3..).and_then(|p| std::str::from_utf8(p).ok()) {
                dirty.insert(top.join(path));
            }
        }
    }
    let log_args = with_specs(&["log", "-z", "--format=%x01%cI", "--name-only", "--"]);
    let Some(out) = git(&log_args) else {
        return found;
    };
    let mut date: Option<String> = None;
    for token in out.split(|&b| b == 0) {
        let Ok(token) = std::str::from_utf8(token) else {
            continue;
        };
        if let Some(when) = token.strip_prefix('\u{1}') {
            date = Some(when.to_string());
            continue;
        }
        let path = token.trim_start_matches('\n');
        if path.is_empty() {
            continue;
        }
        let path = top.join(path);
        if let Some(when) = &date
            && !dirty.contains(&path)
        {
            // The log runs newest first: the first date seen is the last change.
            found
                .entry(path)
                .or_insert_with(|| (when.clone(), ChangedBy::Git));
        }
    }
    found
}
