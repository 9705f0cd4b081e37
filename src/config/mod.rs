//! The engine's configuration file, `palisade.yaml`. `schemas/config.schema.json` is generated
//! from these types; [`DEFAULT_CONFIG`] is what `palisade run` uses when the file is absent.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diagnostics::{Diagnostic, Diagnostics, YamlPath, locate};
use crate::rules::RuleLimits;

/// The embedded default configuration (dry-run, events from standard input).
pub const DEFAULT_CONFIG: &str = include_str!("default.yaml");

/// The file name `palisade` looks for in the content directory.
pub const CONFIG_FILE: &str = "palisade.yaml";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(title = "palisade configuration")]
pub struct Config {
    #[serde(default)]
    pub content: ContentConfig,
    #[serde(default)]
    pub source: SourceConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
    #[serde(default)]
    pub actions: ActionsConfig,
    /// Budgets for every rule evaluation and `when` condition.
    #[serde(default)]
    pub limits: RuleLimits,
}

/// Where the rules and playbooks are, relative to the content directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct ContentConfig {
    pub rules: PathBuf,
    pub playbooks: PathBuf,
}

impl Default for ContentConfig {
    fn default() -> ContentConfig {
        ContentConfig {
            rules: PathBuf::from("rules"),
            playbooks: PathBuf::from("playbooks"),
        }
    }
}

/// Where events come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// JSON lines from a file, or from standard input when `path` is `-`.
    Jsonl {
        #[serde(default = "stdin_path")]
        path: PathBuf,
    },
}

fn stdin_path() -> PathBuf {
    PathBuf::from("-")
}

impl Default for SourceConfig {
    fn default() -> SourceConfig {
        SourceConfig::Jsonl { path: stdin_path() }
    }
}

/// The SQLite file for state that outlives the process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct StateConfig {
    pub path: PathBuf,
}

impl Default for StateConfig {
    fn default() -> StateConfig {
        StateConfig {
            path: PathBuf::from("data/palisade.db"),
        }
    }
}

/// Where messages that could not be normalized are written, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct DeadLetterConfig {
    pub path: PathBuf,
}

impl Default for DeadLetterConfig {
    fn default() -> DeadLetterConfig {
        DeadLetterConfig {
            path: PathBuf::from("data/dead-letter.jsonl"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct ActionsConfig {
    /// Record what playbooks would do (status `dry_run`) instead of doing it.
    pub dry_run: bool,
}

impl Default for ActionsConfig {
    fn default() -> ActionsConfig {
        ActionsConfig { dry_run: true }
    }
}

/// Parses and checks a configuration file's text; `path` names it in diagnostics.
pub fn parse(path: &Path, source: &str) -> Result<Config, Diagnostics> {
    let mut problems = Diagnostics::default();
    // An empty file (or one with only comments) means all defaults.
    let config: Config = if source
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        Config::default()
    } else {
        let (config, unknown_keys) =
            crate::diagnostics::parse_yaml(path, source, crate::schema::config())?;
        problems.extend(unknown_keys);
        config
    };
    let mut report = |at: YamlPath, message: String| {
        problems.push(Diagnostic::at(
            path,
            source,
            locate(source, &at),
            "config-invalid",
            message,
        ));
    };
    let root = YamlPath::root();
    let limits = &config.limits;
    let at = root.key("limits");
    for (name, value) in [
        ("max_operations", limits.max_operations),
        ("time_budget_ms", limits.time_budget_ms),
        ("max_call_depth", limits.max_call_depth as u64),
        ("max_expr_depth", limits.max_expr_depth as u64),
        ("max_string_size", limits.max_string_size as u64),
        ("max_array_size", limits.max_array_size as u64),
        ("max_map_size", limits.max_map_size as u64),
    ] {
        if value == 0 {
            report(
                at.key(name),
                format!(
                    "`limits.{name}` must be greater than 0; a zero limit would stop every rule"
                ),
            );
        }
    }
    for (at, value) in [
        (root.key("content").key("rules"), &config.content.rules),
        (
            root.key("content").key("playbooks"),
            &config.content.playbooks,
        ),
        (root.key("state").key("path"), &config.state.path),
        (
            root.key("dead_letter").key("path"),
            &config.dead_letter.path,
        ),
    ] {
        if value.as_os_str().is_empty() {
            report(at, "path must not be empty".into());
        }
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_is_the_default() {
        let parsed = parse(Path::new("default.yaml"), DEFAULT_CONFIG).unwrap();
        assert_eq!(parsed, Config::default());
        assert!(parsed.actions.dry_run, "the default must never act");
    }

    #[test]
    fn bad_config_is_located() {
        let source = "actions:\n  dry_run: true\nlimits:\n  max_operations: 0\n";
        let problems = parse(Path::new("palisade.yaml"), source).unwrap_err();
        let d = problems.iter().next().unwrap();
        assert_eq!((d.line, d.column), (4, 19));
        let problems = parse(Path::new("palisade.yaml"), "actions:\n  dry_rn: true\n").unwrap_err();
        let d = problems.iter().next().unwrap();
        assert_eq!(d.line, 2);
        assert!(d.message.contains("unknown key `dry_rn`"), "{}", d.message);
        assert!(
            d.message.contains("did you mean `dry_run`"),
            "{}",
            d.message
        );
    }
}
