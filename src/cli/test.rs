//! `palisade test [DIR]`

use std::sync::Arc;

use crate::testing::inventory::inventory;
use crate::testing::report::{to_json, to_junit};
use crate::testing::{CaseResult, SnapshotUpdate, TestReport, run_tests, update_snapshots};

use super::{CannotRun, Place, Status, TestFormat};

pub fn run(
    at: &Place,
    filter: Option<&str>,
    format: TestFormat,
    update: bool,
) -> Result<Status, CannotRun> {
    let content = match at.content()? {
        Ok(content) => Arc::new(content),
        Err(problems) => {
            let text = format!(
                "{}\n\nthe content does not validate; fix the {} problem(s) above first",
                problems.render(),
                problems.len()
            );
            // A CI report still shows why nothing ran: one failed case, "the content validates".
            let report = TestReport {
                cases: vec![CaseResult {
                    file: at.dir.clone(),
                    line: 1,
                    owner: "content".into(),
                    name: "the content validates".into(),
                    problems: vec![text.clone()],
                    skipped: None,
                }],
            };
            match format {
                TestFormat::Text => println!("{text}"),
                TestFormat::Json => {
                    println!("{}", serde_json::to_string_pretty(&to_json(&report))?);
                    eprintln!("{text}");
                }
                TestFormat::Junit => {
                    print!("{}", to_junit(&report));
                    eprintln!("{text}");
                }
            }
            return Ok(Status::Findings);
        }
    };
    // Warnings go to stderr: they do not fail the run, and stdout stays the cases' report.
    if !content.warnings.is_empty() {
        eprintln!("{}\n", content.warnings.render());
    }
    let mut update_failed = false;
    if update {
        for outcome in update_snapshots(&content, filter)? {
            // Told on standard error, so a JSON or JUnit report on standard output stays whole.
            match outcome {
                SnapshotUpdate::Rewritten(path) => eprintln!("updated  {}", path.display()),
                SnapshotUpdate::Unchanged(path) => eprintln!("same     {}", path.display()),
                SnapshotUpdate::Failed(path, problem) => {
                    update_failed = true;
                    eprintln!("FAILED   {}: {problem}", path.display());
                }
            }
        }
    }
    let report = run_tests(&content, filter)?;
    match format {
        TestFormat::Text => print_text(&report, &content),
        TestFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&to_json(&report))?);
            list_failures(&report);
        }
        TestFormat::Junit => {
            print!("{}", to_junit(&report));
            list_failures(&report);
        }
    }
    Ok(if report.failed() == 0 && !update_failed {
        Status::Ok
    } else {
        Status::Findings
    })
}

fn print_text(report: &TestReport, content: &crate::content::Content) {
    for case in &report.cases {
        let verdict = if case.skipped.is_some() {
            "SKIP"
        } else if case.passed() {
            "PASS"
        } else {
            "FAIL"
        };
        println!(
            "{verdict}  {} › {}  ({}:{})",
            case.owner,
            case.name,
            case.file.display(),
            case.line
        );
        for problem in &case.problems {
            println!("      {problem}");
        }
        if let Some(reason) = &case.skipped {
            println!("      {reason}");
        }
    }
    if report.cases.is_empty() {
        println!("no test cases found: add `let tests = [...]` to rules or `tests:` to playbooks");
    }
    // Passing cases say nothing about a rule that has no case that could fail: one that
    // never fires passes every negative case.
    let gaps: Vec<_> = inventory(content)
        .into_iter()
        .filter(|r| r.own && r.tested_through.is_none() && (r.positive == 0 || r.negative == 0))
        .collect();
    if !gaps.is_empty() {
        println!();
        for rule in &gaps {
            println!(
                "note  rule `{}` has {} positive and {} negative case(s); `palisade validate --strict` requires one of each  ({}:{})",
                rule.id,
                rule.positive,
                rule.negative,
                rule.file.display(),
                rule.line
            );
        }
    }
    let skipped = match report.skipped() {
        0 => String::new(),
        n => format!(", {n} skipped"),
    };
    println!(
        "\ncases: {} passed, {} failed{skipped}",
        report.passed(),
        report.failed()
    );
}

/// For people reading a CI log while the report goes to a file.
fn list_failures(report: &TestReport) {
    for case in report.cases.iter().filter(|c| !c.problems.is_empty()) {
        // Problems quote event values, which come from outside.
        eprintln!(
            "FAIL  {} › {}  ({}:{})",
            crate::text::inert(&case.owner),
            crate::text::inert(&case.name),
            case.file.display(),
            case.line
        );
        for problem in &case.problems {
            eprintln!("      {}", crate::text::inert_keeping_lines(problem));
        }
    }
    eprintln!(
        "cases: {} passed, {} failed",
        report.passed(),
        report.failed()
    );
}
