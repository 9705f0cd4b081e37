//! The impact report as people read it: text for a terminal, Markdown for a pull-request
//! comment. (JSON is the [`Impact`] itself, serialized.)
//!
//! Every value that came from an event or from content was made inert when the report was
//! built; the Markdown form also escapes it, so an event's command line cannot close a
//! `<details>` block, start a table cell, mention someone or run HTML in the comment.

use std::fmt::Write;

use super::{ActionExample, Counts, DetectionExample, EventRef, Impact};

/// The report as text for a terminal.
pub fn text(impact: &Impact) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "palisade diff: {} -> {}", impact.base, impact.head);
    let _ = writeln!(out, "corpus: {}", corpus_line(impact));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<18} {:>8} {:>8} {:>8} {:>8}",
        "", "base", "head", "gained", "lost"
    );
    for (name, counts) in [
        ("detections", &impact.totals.detections),
        ("planned actions", &impact.totals.actions),
    ] {
        let _ = writeln!(
            out,
            "{:<18} {:>8} {:>8} {:>8} {:>8}",
            name, counts.base, counts.head, counts.gained, counts.lost
        );
    }
    if !impact.changed() {
        let _ = writeln!(
            out,
            "\nno change: every event gets the same detections and planned actions on both sides"
        );
        return out;
    }
    let _ = writeln!(
        out,
        "\n{} event(s) are decided differently.",
        impact.totals.events_changed
    );
    for rule in impact.rules.iter().filter(|r| r.detections.changed()) {
        let _ = writeln!(
            out,
            "\nrule {}: {} detection(s) (base {}, head {})",
            rule.rule,
            signed(&rule.detections),
            rule.detections.base,
            rule.detections.head
        );
        for (word, examples) in [
            ("gained", &rule.examples.gained),
            ("lost", &rule.examples.lost),
        ] {
            for example in examples.iter() {
                let _ = writeln!(out, "  {word:<6} {}", detection_text(example));
            }
        }
    }
    for playbook in impact.playbooks.iter().filter(|p| p.actions.changed()) {
        let _ = writeln!(
            out,
            "\nplaybook {}: {} planned action(s) (base {}, head {})",
            playbook.playbook,
            signed(&playbook.actions),
            playbook.actions.base,
            playbook.actions.head
        );
        for (word, examples) in [
            ("gained", &playbook.examples.gained),
            ("lost", &playbook.examples.lost),
        ] {
            for example in examples.iter() {
                let _ = writeln!(out, "  {word:<6} {}", action_text(example));
            }
        }
    }
    let unchanged_rules = impact
        .rules
        .iter()
        .filter(|r| !r.detections.changed())
        .count();
    let unchanged_playbooks = impact
        .playbooks
        .iter()
        .filter(|p| !p.actions.changed())
        .count();
    if unchanged_rules + unchanged_playbooks > 0 {
        let _ = writeln!(
            out,
            "\nunchanged: {unchanged_rules} rule(s), {unchanged_playbooks} playbook(s) with the same outcomes on both sides"
        );
    }
    out
}

fn corpus_line(impact: &Impact) -> String {
    let corpus = &impact.corpus;
    let mut line = format!(
        "{} event(s) from {} test case(s) and {} file(s)",
        corpus.events,
        corpus.cases,
        corpus.files.len()
    );
    if corpus.rejected_total() > 0 {
        let kinds: Vec<String> = corpus
            .rejected
            .iter()
            .map(|(kind, n)| format!("{kind}: {n}"))
            .collect();
        let _ = write!(
            line,
            "; {} rejected ({})",
            corpus.rejected_total(),
            kinds.join(", ")
        );
    }
    line
}

fn signed(counts: &Counts) -> String {
    format!("+{} -{}", counts.gained, counts.lost)
}

fn event_text(event: &EventRef) -> String {
    let fields: Vec<String> = event
        .fields
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    format!(
        "{} ({}) {} {}",
        event.id,
        event.origin,
        event.kind,
        fields.join(" ")
    )
}

fn detection_text(example: &DetectionExample) -> String {
    format!(
        "{} [{:?}] on {}",
        example.title,
        example.severity,
        event_text(&example.event)
    )
}

fn action_text(example: &ActionExample) -> String {
    format!(
        "{} {} (step {}, {}, rule {}) on {}",
        example.action,
        example.target,
        example.step,
        status(example),
        example.rule,
        event_text(&example.event)
    )
}

fn status(example: &ActionExample) -> String {
    serde_json::to_value(example.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The report as Markdown for a pull-request comment: the totals and a table per rule and
/// playbook that changed, and the examples in collapsible blocks.
pub fn markdown(impact: &Impact) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### palisade diff: {} → {}\n",
        code(&impact.base),
        code(&impact.head)
    );
    let _ = writeln!(out, "{}\n", escape(&corpus_line(impact)));
    let _ = writeln!(out, "| | base | head | gained | lost |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: |");
    for (name, counts) in [
        ("detections", &impact.totals.detections),
        ("planned actions", &impact.totals.actions),
    ] {
        let _ = writeln!(out, "| {name} | {} |", row(counts));
    }
    if !impact.changed() {
        let _ = writeln!(
            out,
            "\nNo change: every event gets the same detections and planned actions on both sides."
        );
        return out;
    }
    let _ = writeln!(
        out,
        "\n{} event(s) are decided differently.\n",
        impact.totals.events_changed
    );
    let _ = writeln!(out, "| changed | base | head | gained | lost |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: |");
    for rule in impact.rules.iter().filter(|r| r.detections.changed()) {
        let _ = writeln!(
            out,
            "| rule {} | {} |",
            code(&rule.rule),
            row(&rule.detections)
        );
    }
    for playbook in impact.playbooks.iter().filter(|p| p.actions.changed()) {
        let _ = writeln!(
            out,
            "| playbook {} | {} |",
            code(&playbook.playbook),
            row(&playbook.actions)
        );
    }
    for rule in impact.rules.iter().filter(|r| r.detections.changed()) {
        let _ = writeln!(
            out,
            "\n<details><summary>rule {}: {} detection(s)</summary>\n",
            code(&rule.rule),
            signed(&rule.detections)
        );
        for (word, examples) in [
            ("gained", &rule.examples.gained),
            ("lost", &rule.examples.lost),
        ] {
            for example in examples.iter() {
                let _ = writeln!(
                    out,
                    "- {word}: {} ({:?}) on {}",
                    escape(&example.title),
                    example.severity,
                    event_markdown(&example.event)
                );
            }
        }
        let _ = writeln!(out, "\n</details>");
    }
    for playbook in impact.playbooks.iter().filter(|p| p.actions.changed()) {
        let _ = writeln!(
            out,
            "\n<details><summary>playbook {}: {} planned action(s)</summary>\n",
            code(&playbook.playbook),
            signed(&playbook.actions)
        );
        for (word, examples) in [
            ("gained", &playbook.examples.gained),
            ("lost", &playbook.examples.lost),
        ] {
            for example in examples.iter() {
                let _ = writeln!(
                    out,
                    "- {word}: {} {} (step {}, {}, rule {}) on {}",
                    code(example.action),
                    code(&example.target),
                    code(&example.step),
                    status(example),
                    code(&example.rule),
                    event_markdown(&example.event)
                );
            }
        }
        let _ = writeln!(out, "\n</details>");
    }
    out
}

fn row(counts: &Counts) -> String {
    format!(
        "{} | {} | +{} | -{}",
        counts.base, counts.head, counts.gained, counts.lost
    )
}

fn event_markdown(event: &EventRef) -> String {
    let fields: Vec<String> = event
        .fields
        .iter()
        .map(|(k, v)| format!("{k} {}", code(v.as_str().unwrap_or_default())))
        .collect();
    format!(
        "{} ({}), {} {}",
        code(&event.id),
        escape(&event.origin),
        event.kind,
        fields.join(", ")
    )
}

/// `text` as inline code that nothing in it can escape from.
fn code(text: &str) -> String {
    format!("<code>{}</code>", escape(text))
}

/// `text` with every character Markdown or HTML would act on replaced by an entity.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '|' => out.push_str("&#124;"),
            '`' => out.push_str("&#96;"),
            '@' => out.push_str("&#64;"),
            '*' | '_' | '[' | ']' | '\\' | '#' | '~' | '!' => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_value_cannot_leave_its_code_span_in_markdown() {
        let hostile = "a | b `x` </code></details><img src=x onerror=alert(1)> @here [l](http://e)";
        let shown = code(hostile);
        assert!(
            !shown[6..shown.len() - 7].contains(['<', '>', '|', '`', '@', '[']),
            "{shown}"
        );
    }
}
