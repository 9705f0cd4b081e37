//! `palisade coverage`

use std::fmt::Write as _;
use std::path::Path;

use crate::attack::Catalogue;
use crate::testing::coverage::{Coverage, coverage, navigator_layer};
use crate::testing::inventory::inventory;

use super::{CannotRun, OutputFormat, Place, Status};

pub fn run(
    at: &Place,
    format: OutputFormat,
    navigator: Option<&Path>,
) -> Result<Status, CannotRun> {
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
    let catalogue = Catalogue::enterprise()?;
    let report = coverage(&inventory(&content), catalogue);
    if let Some(path) = navigator {
        let layer = serde_json::to_string_pretty(&navigator_layer(&report))?;
        std::fs::write(path, layer + "\n")
            .map_err(|e| CannotRun(format!("cannot write `{}`: {e}", path.display())))?;
    }
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => {
            print!("{}", text(&report, catalogue));
            if let Some(path) = navigator {
                println!("navigator layer written to {}", path.display());
            }
        }
    }
    // Unknown tags are findings, as `validate --strict` treats them.
    Ok(if report.unknown_tags.is_empty() {
        Status::Ok
    } else {
        Status::Findings
    })
}

fn text(report: &Coverage, catalogue: &Catalogue) -> String {
    let mut out = format!(
        "ATT&CK Enterprise {}: {} of {} techniques claimed by {} rule(s)\n",
        report.attack_version, report.techniques_covered, report.techniques_total, report.rules
    );
    for tactic in &report.tactics {
        let _ = writeln!(
            out,
            "\n{} {} ({} technique(s))",
            tactic.id,
            tactic.name,
            tactic.techniques.len()
        );
        for technique in &tactic.techniques {
            let _ = writeln!(
                out,
                "  {:<10} {:<44} {}",
                technique.id,
                technique.name,
                crate::text::inert(&technique.rules.join(", "))
            );
        }
    }
    if !report.unknown_tags.is_empty() {
        out.push_str("\nunknown tags:\n");
        for unknown in &report.unknown_tags {
            let _ = writeln!(
                out,
                "  {} ({}): {}",
                crate::text::inert(&unknown.rule),
                crate::text::inert(&unknown.file),
                crate::text::inert(&unknown.problem)
            );
        }
    }
    if !report.rules_without_technique.is_empty() {
        let _ = writeln!(
            out,
            "\nrules with no technique tag: {}",
            crate::text::inert(&report.rules_without_technique.join(", "))
        );
    }
    out.push_str(
        "\nTechniques are placed under every tactic ATT&CK lists them for. A tag is the rule author's claim, not a measurement of detection.\n",
    );
    let _ = writeln!(
        out,
        "ATT&CK® data: {}; © The MITRE Corporation, used under its terms (data/attack/LICENSE.txt in palisade's source).",
        catalogue.source
    );
    out
}
