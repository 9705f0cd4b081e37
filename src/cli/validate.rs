//! `palisade validate [DIR]`

use std::path::Path;

use super::{CannotRun, OutputFormat, Status, load_content};

pub fn run(dir: &Path, format: OutputFormat) -> Result<Status, CannotRun> {
    let loaded = load_content(dir, None)?;
    let problems = match &loaded {
        Ok(_) => Default::default(),
        Err(problems) => problems.clone(),
    };
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&problems)?),
        OutputFormat::Text => match &loaded {
            Ok(content) => println!(
                "ok: {} rule(s), {} playbook(s), config {}",
                content.rules.len(),
                content.playbooks.len(),
                content
                    .config_path
                    .as_ref()
                    .map_or("(embedded default)".to_string(), |p| p
                        .display()
                        .to_string())
            ),
            Err(problems) => {
                println!("{}", problems.render());
                println!("\n{} problem(s) found", problems.len());
            }
        },
    }
    Ok(if problems.is_empty() {
        Status::Ok
    } else {
        Status::Findings
    })
}
