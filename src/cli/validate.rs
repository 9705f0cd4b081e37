//! `palisade validate [DIR]`

use crate::attack::Catalogue;
use crate::content::Content;
use crate::diagnostics::Diagnostics;
use crate::sigma::SigmaReport;
use crate::testing::inventory::{gates, inventory};

use super::{CannotRun, OutputFormat, Place, Status};

/// `strict`: the CI gates (a positive and a negative test case per rule, known ATT&CK tags)
/// are errors instead of warnings.
pub fn run(
    at: &Place,
    format: OutputFormat,
    refusals: bool,
    strict: bool,
) -> Result<Status, CannotRun> {
    let loaded = at.content()?;
    // Errors and warnings together; warnings alone do not fail validation. The gates are
    // checked on content that loaded (a rule that does not load has no tests to count).
    let problems = match &loaded {
        Ok(content) => {
            let mut problems = content.warnings.clone();
            problems.extend(gates(&inventory(content), Catalogue::enterprise()?, strict));
            problems.sorted()
        }
        Err(problems) => problems.clone(),
    };
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&problems)?),
        OutputFormat::Text => match &loaded {
            Ok(_) if problems.errors() > 0 => {
                println!("{}", problems.render());
                println!("\n{}", counts(&problems, strict));
            }
            Ok(content) => {
                if !problems.is_empty() {
                    println!("{}\n", problems.render());
                }
                println!("{}", summary(content, &problems));
                let not_run = content.not_run();
                if !not_run.is_empty() {
                    println!("not run: {not_run}");
                }
                if content.sigma.report.files > 0 {
                    print!("{}", sigma_report(&content.sigma.report, refusals));
                }
            }
            Err(problems) => {
                println!("{}", problems.render());
                println!("\n{}", counts(problems, false));
            }
        },
    }
    Ok(if problems.errors() == 0 {
        Status::Ok
    } else {
        Status::Findings
    })
}

/// `3 problem(s) found, 1 warning(s)`.
fn counts(problems: &Diagnostics, strict: bool) -> String {
    let warnings = problems.len() - problems.errors();
    format!(
        "{} problem(s) found{}{}",
        problems.errors(),
        if warnings > 0 {
            format!(", {warnings} warning(s)")
        } else {
            String::new()
        },
        if strict {
            " (--strict: untested rules and unknown ATT&CK tags are errors)"
        } else {
            ""
        }
    )
}

fn summary(content: &Content, problems: &Diagnostics) -> String {
    let warnings = match problems.len() {
        0 => String::new(),
        n => format!(", {n} warning(s)"),
    };
    format!(
        "ok: {} rule(s), {} Sigma rule(s), {} correlation(s), {} playbook(s), config {}{warnings}",
        content.rules.len(),
        content.sigma.rules.len(),
        content.sigma.correlations.len(),
        content.playbooks.len(),
        content
            .config_path
            .as_ref()
            .map_or("(embedded default)".to_string(), |p| p
                .display()
                .to_string())
    )
}

/// What the Sigma folders held: loaded, skipped by reason, refused by reason (or each refusal).
fn sigma_report(report: &SigmaReport, each_refusal: bool) -> String {
    use std::fmt::Write as _;
    let skipped: usize = report.skipped.values().sum();
    let refused = report.refused.len();
    let mut out = format!(
        "sigma: {} file(s): {} rule(s) loaded, {} filter(s), {skipped} skipped, {refused} refused\n",
        report.files, report.loaded, report.filters
    );
    let mut skipped: Vec<_> = report.skipped.iter().collect();
    skipped.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    // A corpus skips dozens of logsources once or twice; the long tail is one line unless asked.
    let shown = if each_refusal { skipped.len() } else { 12 };
    for (reason, count) in skipped.iter().take(shown) {
        let _ = writeln!(out, "  skipped {count:>6}  {reason}");
    }
    if skipped.len() > shown {
        let rest: usize = skipped.iter().skip(shown).map(|(_, n)| **n).sum();
        let _ = writeln!(
            out,
            "  skipped {rest:>6}  for {} other reasons (--refusals lists them)",
            skipped.len() - shown
        );
    }
    let mut by_code = std::collections::BTreeMap::<&str, usize>::new();
    for problems in &report.refused {
        if let Some(first) = problems.iter().next() {
            *by_code.entry(first.code).or_default() += 1;
        }
    }
    let mut by_code: Vec<_> = by_code.into_iter().collect();
    by_code.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (code, count) in by_code {
        let _ = writeln!(out, "  refused {count:>6}  {code}");
    }
    if each_refusal {
        for diagnostic in report.refused.iter().flat_map(|problems| problems.iter()) {
            let _ = writeln!(out, "{}", diagnostic.render_as("refused"));
        }
    } else if refused > 0 {
        out.push_str("  (--refusals lists each refused rule with its file:line:col and reason)\n");
    }
    out
}
