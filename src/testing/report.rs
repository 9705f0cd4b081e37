//! `palisade test` results for machines: JSON, and JUnit XML as CI systems read it (one
//! `testsuite` per file, one `testcase` per case, a `failure` carrying the case's problems).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::runner::{CaseResult, TestReport};

/// The report as one JSON object: totals and every case with its problems.
pub fn to_json(report: &TestReport) -> Value {
    let cases: Vec<Value> = report
        .cases
        .iter()
        .map(|case| {
            json!({
                "file": case.file.display().to_string(),
                "line": case.line,
                "owner": case.owner,
                "name": case.name,
                "passed": case.passed(),
                "skipped": case.skipped,
                "problems": case.problems,
            })
        })
        .collect();
    json!({
        "passed": report.passed(),
        "failed": report.failed(),
        "skipped": report.skipped(),
        "cases": cases,
    })
}

/// The report as JUnit XML. Suites are the files holding the cases, in path order; cases keep
/// the order they ran in. Every piece of text is escaped for XML (characters XML 1.0 cannot
/// carry at all, such as most control characters an event may hold, are written as `\u{…}`).
pub fn to_junit(report: &TestReport) -> String {
    let mut suites: BTreeMap<String, Vec<&CaseResult>> = BTreeMap::new();
    for case in &report.cases {
        suites
            .entry(case.file.display().to_string())
            .or_default()
            .push(case);
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"palisade\" tests=\"{}\" failures=\"{}\" errors=\"0\">",
        report.cases.len(),
        report.failed()
    );
    for (file, cases) in &suites {
        let failures = cases.iter().filter(|c| !c.problems.is_empty()).count();
        let skipped = cases.iter().filter(|c| c.skipped.is_some()).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">",
            escape(file),
            cases.len()
        );
        for case in cases {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" line=\"{}\"",
                escape(&case.name),
                escape(&case.owner),
                escape(file),
                case.line
            );
            if case.passed() {
                out.push_str("/>\n");
                continue;
            }
            // A disabled rule's case did not run: skipped, with the rule's reason.
            if let (Some(reason), true) = (&case.skipped, case.problems.is_empty()) {
                let _ = writeln!(
                    out,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    escape(reason)
                );
                continue;
            }
            let first = case
                .problems
                .first()
                .map(String::as_str)
                .unwrap_or_default();
            let _ = writeln!(
                out,
                ">\n      <failure message=\"{}\" type=\"palisade-test\">{}</failure>\n    </testcase>",
                escape(first.lines().next().unwrap_or_default()),
                escape(&case.problems.join("\n"))
            );
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Text made safe for XML attribute values and element content alike.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Kept as characters in attributes, where a raw newline would be read as a space.
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            // Not allowed in XML 1.0 even as a reference.
            c if is_forbidden_in_xml(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

fn is_forbidden_in_xml(c: char) -> bool {
    // A `char` is never a surrogate, so these are all the code points XML 1.0 refuses.
    matches!(u32::from(c), 0x00..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f | 0xfffe | 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_xml_and_forbidden_characters_are_spelled_out() {
        assert_eq!(
            escape("a<b>&\"c\"'d'\n\u{1}"),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;&#10;\\u{0001}"
        );
    }
}
