//! `palisade test [DIR]`

use std::sync::Arc;

use crate::testing::run_tests;

use super::{CannotRun, Place, Status};

pub fn run(at: &Place, filter: Option<&str>) -> Result<Status, CannotRun> {
    let content = match at.content()? {
        Ok(content) => Arc::new(content),
        Err(problems) => {
            println!("{}", problems.render());
            println!(
                "\nthe content does not validate; fix the {} problem(s) above first",
                problems.len()
            );
            return Ok(Status::Findings);
        }
    };
    // Warnings go to stderr: they do not fail the run, and stdout stays the cases' report.
    if !content.warnings.is_empty() {
        eprintln!("{}\n", content.warnings.render());
    }
    let report = run_tests(&content, filter)?;
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
    let skipped = match report.skipped() {
        0 => String::new(),
        n => format!(", {n} skipped"),
    };
    println!(
        "\ncases: {} passed, {} failed{skipped}",
        report.passed(),
        report.failed()
    );
    Ok(if report.failed() == 0 {
        Status::Ok
    } else {
        Status::Findings
    })
}
