//! The `palisade` command line. Each subcommand is one file; this one parses arguments, sets up
//! logging and maps results to exit codes: 0 ok, 1 findings (validation errors, failing tests),
//! 2 could not run (bad flags, unreadable files, unreachable services).

mod audit;
mod bench;
mod control;
mod coverage;
mod diff;
mod explain;
mod init;
mod intel;
mod model;
mod publish;
mod replay;
mod rules;
mod run;
mod schema;
mod test;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// What a command found; mapped to the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Everything is fine.
    Ok,
    /// The command ran and found problems (invalid content, failing tests).
    Findings,
}

/// The command could not do its job (exit 2). The message is shown as is.
#[derive(Debug)]
pub struct CannotRun(pub String);

impl<E: std::fmt::Display> From<E> for CannotRun {
    fn from(err: E) -> CannotRun {
        CannotRun(err.to_string())
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "palisade",
    version,
    about = "Correlate host telemetry with threat intelligence, decide with Rhai rules, respond through guarded YAML playbooks.",
    long_about = "palisade reads sensor events (process starts, network connections, DNS queries, logins), \
runs them through Rhai rules, and plans the steps of the YAML playbooks whose triggers match.\n\n\
A content directory holds `rules/*.rhai`, `playbooks/*.yaml`, optional `palisade.yaml` and `tests/fixtures/`. \
Check it with `palisade validate`, run its embedded tests with `palisade test`, and see what it would do \
with recorded events with `palisade replay --events FILE`.",
    after_help = "Exit codes: 0 ok, 1 findings (validation errors, failing tests), 2 could not run.\n\
Docs: docs/rules.md (writing rules), docs/playbooks.md (writing playbooks), docs/architecture.md."
)]
pub struct Cli {
    /// Log format on standard error; `json` for machines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// Where a command finds its content and config. Every command that reads either takes these
/// two options the same way, so an operator command (`mode`, `approvals`, `audit`, `unblock`,
/// `intel`, `model`) given the options `palisade run` was started with reads the same state
/// database that engine writes.
#[derive(Debug, Clone, clap::Args)]
pub struct Place {
    /// The content directory (holding rules/, playbooks/, palisade.yaml); relative paths in the
    /// config are resolved against it.
    #[arg(long = "dir", short = 'C', default_value = ".")]
    pub dir: PathBuf,
    /// Config file; default DIR/palisade.yaml, else the embedded default.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl Place {
    /// The config file named, or the content directory's own when it has one.
    fn config_file(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| {
            let own = crate::content::display_path(
                &self.dir,
                std::path::Path::new(crate::config::CONFIG_FILE),
            );
            own.exists().then_some(own)
        })
    }

    /// Only the config, for commands that act on what an engine stored. A config that does not
    /// parse is an error naming its file, line and field, never a silent fall back to the
    /// default (which would name another state database); problems in rules or playbooks do
    /// not matter here.
    fn read_config(&self) -> Result<crate::config::Config, CannotRun> {
        if !self.dir.is_dir() {
            return Err(CannotRun(format!(
                "`{}` is not a directory",
                self.dir.display()
            )));
        }
        let Some(path) = self.config_file() else {
            return Ok(crate::config::Config::default());
        };
        let text = std::fs::read_to_string(&path).map_err(|err| {
            CannotRun(format!(
                "cannot read config file `{}`: {err}",
                path.display()
            ))
        })?;
        crate::config::parse(&path, &text).map_err(|problems| {
            CannotRun(format!(
                "config file `{}` is invalid:\n{}",
                path.display(),
                problems.render()
            ))
        })
    }

    /// The content, as `palisade run` with these options loads it.
    fn content(
        &self,
    ) -> Result<Result<crate::content::Content, crate::diagnostics::Diagnostics>, CannotRun> {
        load_content(&self.dir, self.config.as_deref())
    }

    /// The content directory given as a positional argument (`validate DIR`) wins over `-C`.
    fn with_content(self, content: Option<PathBuf>) -> Place {
        match content {
            Some(dir) => Place { dir, ..self },
            None => self,
        }
    }

    /// Resolves a path from the config against the content directory, as the engine does.
    fn resolve(&self, path: &std::path::Path) -> PathBuf {
        crate::content::display_path(&self.dir, path)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// How `palisade test` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestFormat {
    Text,
    Json,
    /// JUnit XML, as CI systems read test results.
    Junit,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Every rule (Rhai and Sigma): id, title, status, severity, engine, tags, its positive and
    /// negative test cases, and when its file last changed.
    #[command(
        after_help = "The last change is the date of the last commit that touched the file when the content directory is in a git repository, else the file's modification time; the output says which.\n\nExamples:\n  palisade rules list\n  palisade rules list --format json | jq '.[] | select(.positive == 0)'"
    )]
    List {
        /// The content directory; the same as `-C`.
        #[arg(conflicts_with = "dir", value_name = "DIR")]
        content: Option<PathBuf>,
        #[command(flatten)]
        at: Place,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Detection rate on attacks and false-positive rate on normal events at the threshold, and
    /// a PNG of both score distributions.
    #[command(
        after_help = "Without --model, the deployment's own model is judged (the file `anomaly.model` names, else the engine's learned model).\n\nExample:\n  palisade model eval --model models/anomaly.model --normal tests/fixtures/anomaly/heldout-normal.jsonl \\\n    --attacks tests/fixtures/anomaly/heldout-attacks.jsonl --plot scores.png"
    )]
    Eval {
        /// Events known to be normal (not the ones the model was trained on).
        #[arg(long)]
        normal: PathBuf,
        /// Events known to be attacks.
        #[arg(long)]
        attacks: PathBuf,
        /// The model to judge; by default the deployment's own (the file `anomaly.model` names,
        /// else the engine's learned model). The shipped example is used only when named
        /// (`--model models/anomaly.model`).
        #[arg(long)]
        model: Option<PathBuf>,
        #[command(flatten)]
        at: Place,
        #[arg(long, default_value_t = 0.9)]
        threshold: f64,
        /// Where to write the histogram PNG.
        #[arg(long, default_value = "anomaly-scores.png")]
        plot: PathBuf,
    },
    /// How far the engine's learning is ("learning: 41,000 of 50,000 events, 3 of 7 days"), the
    /// model in use and a retrain held for review.
    Status {
        #[command(flatten)]
        at: Place,
    },
    /// Put the retrained model held for review (its alert rate jumped) in use.
    Accept {
        #[command(flatten)]
        at: Place,
    },
    /// Why an event scores what it scores: the score, every feature's value and share of the
    /// distance, and what the baseline holds for the event's host and its peer group.
    #[command(
        after_help = "Give the event as a JSON argument, or name a file of JSON lines and the event's id. Without --model, the deployment's own model is used (the file `anomaly.model` names, else the engine's learned model).\n\nExamples:\n  palisade model explain '{\"type\":\"process_create\",\"timestamp\":1791190800000,\"host\":\"ws-07\",\"name\":\"powershell.exe\",\"parent_name\":\"winword.exe\",\"user\":\"CORP\\\\user07\",\"cmdline\":\"powershell -enc SQBFAFgA\"}'\n  palisade model explain --file tests/fixtures/mixed.jsonl --event-id m-01 --model models/anomaly.model"
    )]
    Explain {
        /// The event, as one JSON object (either event shape).
        #[arg(conflicts_with_all = ["file", "event_id"], required_unless_present = "file")]
        event: Option<String>,
        /// A JSON-lines file holding the event.
        #[arg(long, requires = "event_id")]
        file: Option<PathBuf>,
        /// The id of the event in `--file`.
        #[arg(long, requires = "file")]
        event_id: Option<String>,
        /// The model to explain with; by default the deployment's own (the file
        /// `anomaly.model` names, else the engine's learned model). The shipped example is used
        /// only when named (`--model models/anomaly.model`).
        #[arg(long)]
        model: Option<PathBuf>,
        #[command(flatten)]
        at: Place,
    },
    /// Generate events of a made-up 36-host office fleet: normal activity, or labelled attacks.
    #[command(after_help = "The shipped model and its test sets were made with:\n  \
palisade model sample --kind normal --events 30000 --days 14 --seed 1 --out tests/fixtures/anomaly/baseline.jsonl\n  \
palisade model sample --kind normal --events 10000 --days 14 --seed 2 --out tests/fixtures/anomaly/heldout-normal.jsonl\n  \
palisade model sample --kind attacks --events 1000 --days 14 --seed 3 --out tests/fixtures/anomaly/heldout-attacks.jsonl")]
    Sample {
        #[arg(long, value_enum)]
        kind: crate::anomaly::synth::SampleKind,
        #[arg(long, default_value_t = 10_000)]
        events: usize,
        /// Spread over this many days from 2026-10-05.
        #[arg(long, default_value_t = 14)]
        days: i64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a detection-as-code repository: an example rule and playbook with tests, a
    /// fixture snapshot, the config, the JSON Schemas and a CI job that validates and tests.
    #[command(
        after_help = "Writes only into a new or empty directory.\n\nExample:\n  palisade init detections && cd detections && palisade test"
    )]
    Init {
        /// The directory to create.
        dir: PathBuf,
    },
    /// Check every rule, playbook and the config, and report all problems as file:line:col.
    #[command(
        after_help = "Examples:\n  palisade validate\n  palisade validate my-detections --format json\n  palisade validate . --config sigmahq.yaml --refusals\n\nSigma rules in the content's rules/ folder that cannot run exactly are errors; in the\nfolders named by `sigma.folders` (a community corpus) they are refused, counted by reason and\nleft out, and validate still succeeds."
    )]
    Validate {
        /// The content directory (holding rules/, playbooks/, palisade.yaml); the same as `-C`.
        #[arg(conflicts_with = "dir", value_name = "DIR")]
        content: Option<PathBuf>,
        #[command(flatten)]
        at: Place,
        /// `json` prints an array of {file, line, column, code, message, context, source_line}.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// List every Sigma rule refused in the configured `sigma.folders`, with its
        /// file:line:col and reason (by default they are counted by reason).
        #[arg(long)]
        refusals: bool,
        /// For CI: every rule of the content's own rules/ folder must have a positive and a
        /// negative test case, and every `attack.*` tag must name a known, non-revoked ATT&CK
        /// technique or a tactic. Without it these are warnings.
        #[arg(long)]
        strict: bool,
    },
    /// Run the test cases embedded in rules and playbooks, and fixture snapshots.
    #[command(
        after_help = "Examples:\n  palisade test\n  palisade test . --filter office\n  palisade test . --format junit > test-results.xml\n  palisade test --update   # after a change that is meant to alter what the fixtures produce\n\nWith --format json or junit the report is on standard output and failing cases are also listed on standard error."
    )]
    Test {
        /// The content directory; the same as `-C`.
        #[arg(conflicts_with = "dir", value_name = "DIR")]
        content: Option<PathBuf>,
        #[command(flatten)]
        at: Place,
        /// Only cases whose rule, playbook or name contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// `json`: one object with every case; `junit`: JUnit XML for CI.
        #[arg(long, value_enum, default_value_t = TestFormat::Text)]
        format: TestFormat,
        /// Rewrite the fixture snapshots (`tests/fixtures/NAME.expected.jsonl`) whose
        /// expectation changed to what the engine produces now, print which, then run the tests.
        #[arg(long)]
        update: bool,
    },
    /// List the rules with their metadata and test counts.
    Rules {
        #[command(subcommand)]
        which: RulesCommand,
    },
    /// Which MITRE ATT&CK techniques the rules claim through their `attack.t…` tags, per
    /// tactic, checked against the ATT&CK Enterprise list palisade ships.
    #[command(
        after_help = "A tag is the author's claim, not a measurement. Tags naming no known technique or tactic (or a revoked technique) are listed as unknown.\n\nExamples:\n  palisade coverage\n  palisade coverage --navigator coverage-layer.json   # open in the ATT&CK Navigator\n  palisade coverage --format json"
    )]
    Coverage {
        /// The content directory; the same as `-C`.
        #[arg(conflicts_with = "dir", value_name = "DIR")]
        content: Option<PathBuf>,
        #[command(flatten)]
        at: Place,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// Also write an ATT&CK Navigator layer (JSON) here: covered techniques scored and
        /// coloured by their number of rules, the rule ids as each one's comment.
        #[arg(long, value_name = "FILE")]
        navigator: Option<PathBuf>,
    },
    /// Push recorded events through rules and playbooks; print detections and planned actions
    /// as JSON lines. Nothing is executed. Exits 1 when the file had lines and every one was
    /// rejected.
    #[command(
        after_help = "Examples:\n  palisade replay --events tests/fixtures/mixed.jsonl\n  cat events.jsonl | palisade replay --events - | jq 'select(.kind == \"action\")'"
    )]
    Replay {
        /// JSON-lines file of events; `-` reads standard input.
        #[arg(long)]
        events: PathBuf,
        #[command(flatten)]
        at: Place,
        /// Write rejected input lines (with the reason) to this file.
        #[arg(long)]
        dead_letter: Option<PathBuf>,
        /// Plan steps as dry-run, as `palisade run` does by default.
        #[arg(long)]
        dry_run: bool,
        /// Instead of the JSON lines, print for every event (those that matched nothing too)
        /// why it did or did not match, as `palisade explain` does.
        #[arg(long)]
        explain: bool,
        /// With --explain: `json` prints one explanation per line.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text, requires = "explain")]
        format: OutputFormat,
    },
    /// Why an event did or did not match: every rule of its kind with each filter condition's
    /// outcome and what `detect` returned, Sigma rules, intel hits, the anomaly score, the
    /// tracker's view and each playbook's trigger and steps as they would be planned. Nothing
    /// is executed and nothing is written.
    #[command(
        after_help = "Give the event as JSON, `-` to read it from standard input, or a JSON-lines file and the event's --id or 1-based --line (the events before it in the file run first, as in a replay).\n\nExit codes: 0 explained, 2 the event could not be read (the reason names the field).\n\nExamples:\n  palisade explain '{\"type\":\"process_create\",\"timestamp\":1791190800000,\"host\":\"ws-07\",\"name\":\"powershell.exe\",\"cmdline\":\"powershell -enc SQBFAFgA\"}'\n  palisade explain tests/fixtures/mixed.jsonl --id m-01\n  palisade explain events.jsonl --line 7 --format json"
    )]
    Explain {
        /// The event as one JSON object, `-` for standard input, or a JSON-lines file.
        event: String,
        /// The id of the event to explain in the file.
        #[arg(long, conflicts_with = "line")]
        id: Option<String>,
        /// The 1-based line of the event to explain in the file.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        line: Option<u64>,
        #[command(flatten)]
        at: Place,
        /// `json` prints the same explanation as one JSON document.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Replay recorded events through the content at a git revision (or a directory) and
    /// through the working tree, and report per rule and playbook the detections and planned
    /// actions gained and lost. Nothing is executed and no state is written.
    #[command(
        after_help = "The default corpus is every test case's events (both sides' cases) and every `*.jsonl` under\n\
events/ and tests/fixtures/ (not `*.expected.jsonl`); --events replaces it. Exit 0 whether or not\n\
anything changed, unless --fail-on-change. See docs/operations.md, \"Impact of a change\".\n\n\
Examples:\n  palisade diff --base origin/main\n  palisade diff --base HEAD~1 --events recorded/ --format json\n  \
palisade diff --base origin/main --format markdown > impact.md"
    )]
    Diff {
        #[command(flatten)]
        args: diff::DiffArgs,
        #[command(flatten)]
        at: Place,
    },
    /// Run the engine: read events, print alerts, record detections and decisions in SQLite.
    #[command(
        after_help = "Without palisade.yaml the embedded default is used: events from standard input \
(or --events FILE), state in ./data/palisade.db, rejected input in ./data/dead-letter.jsonl, actions in dry-run.\n\n\
Examples:\n  palisade run --events tests/fixtures/mixed.jsonl\n  sensor | palisade run --log-format json"
    )]
    Run {
        /// Read events from this JSON-lines file (`-` for standard input) instead of the configured source.
        #[arg(long)]
        events: Option<PathBuf>,
        #[command(flatten)]
        at: Place,
    },
    /// Publish recorded events to a Redis stream or channel, as a sensor would.
    #[command(
        after_help = "Without --stream or --channel, the configured source's stream or channel is used \
(or the stream `palisade:events`).\n\n\
Examples:\n  palisade publish --events tests/fixtures/mixed.jsonl\n  palisade publish --events seed.jsonl --channel internal_logs --redis redis://127.0.0.1:6379/"
    )]
    Publish {
        /// JSON-lines file of events; `-` reads standard input. Lines are sent as they are.
        #[arg(long)]
        events: PathBuf,
        /// Append to this stream (`XADD ... data LINE`).
        #[arg(long)]
        stream: Option<String>,
        /// Publish on this channel.
        #[arg(long)]
        channel: Option<String>,
        /// Redis URL; default from the config.
        #[arg(long)]
        redis: Option<String>,
        #[command(flatten)]
        at: Place,
    },
    /// Manage the threat-intelligence store: import feeds, look values up, see what is loaded.
    Intel {
        #[command(subcommand)]
        which: IntelCommand,
    },
    /// Steps waiting for a person: list them, approve or reject one.
    Approvals {
        #[command(subcommand)]
        which: ApprovalsCommand,
    },
    /// Show the engine's mode, or switch it: `manual` queues every step for approval, `auto`
    /// lets planned steps act again.
    Mode {
        #[arg(value_parser = ["auto", "manual"])]
        set: Option<String>,
        #[command(flatten)]
        at: Place,
    },
    /// Remove a block palisade placed (in this network namespace), and close its record.
    Unblock {
        address: String,
        #[command(flatten)]
        at: Place,
    },
    /// Read and check the audit trail of what the engine and its operators did.
    Audit {
        #[command(subcommand)]
        which: AuditCommand,
    },
    /// Measure the engine: `palisade bench pipeline`.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
    /// Fit the anomaly model to a baseline of normal events and write the model file.
    #[command(
        after_help = "The model scores events no rule matched: 0 is ordinary, 0.9 means one baseline event in a \
thousand was as unusual. A baseline should be weeks of normal activity from the fleet the engine watches.\n\n\
Examples:\n  palisade train --events tests/fixtures/anomaly/baseline.jsonl --out models/anomaly.model\n\n\
See docs/anomaly.md."
    )]
    Train {
        /// JSON-lines file of normal events.
        #[arg(long)]
        events: PathBuf,
        /// Where to write the model.
        #[arg(long, default_value = "models/anomaly.model")]
        out: PathBuf,
    },
    /// Judge the anomaly model on labelled sets, or generate such sets.
    Model {
        #[command(subcommand)]
        which: ModelCommand,
    },
    /// The operator console's helpers (docs/console.md).
    Console {
        #[command(subcommand)]
        which: ConsoleCommand,
    },
    /// Write the JSON Schemas for playbooks and the config file.
    Schema {
        /// Directory to write into.
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
        /// Only check that the files there are current; exit 1 when stale.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum IntelCommand {
    /// Import indicators from a feed file (or a MISP feed directory) into the state database.
    /// The whole file is parsed first: a malformed file is reported with its position and
    /// nothing from it is stored.
    #[command(
        after_help = "Examples:\n  palisade intel import feodo.csv --format feodo\n  palisade intel import bundle.json --format stix --source taxii-partner\n  palisade intel import blocklist.txt --format plain --kind ip --confidence 90"
    )]
    Import {
        file: PathBuf,
        #[arg(long, value_enum)]
        format: crate::intel::formats::Format,
        /// Source name stored with the indicators (default: the format's name).
        #[arg(long)]
        source: Option<String>,
        /// Plain lists: the kind of every line (ip, cidr, domain, url, md5, sha1, sha256).
        #[arg(long, value_parser = parse_kind)]
        kind: Option<crate::intel::IndicatorKind>,
        /// Confidence 0-100 for every indicator, instead of the format's default.
        #[arg(long)]
        confidence: Option<u8>,
        /// Severity 0-100 for every indicator, instead of the format's default.
        #[arg(long)]
        severity: Option<u8>,
        /// Whether the file's domain indicators also match the names under them (true or
        /// false), instead of the format's rule (STIX: exact; the others: subdomains too).
        #[arg(long)]
        subdomains: Option<bool>,
        #[command(flatten)]
        at: Place,
    },
    /// Show every indicator an address, domain, URL or hash matches (ranges and parent domains
    /// included). Exit 1 when nothing matches.
    Lookup {
        value: String,
        #[command(flatten)]
        at: Place,
    },
    /// Pull the feeds configured under `intel.feeds` now (all, or the one named). `palisade run`
    /// pulls them on their schedule by itself.
    Pull {
        feed: Option<String>,
        #[command(flatten)]
        at: Place,
    },
    /// Scan files and folders with the content's YARA rules (`yara/*.yar`; needs a build with
    /// the `yara` feature). Prints each matching file with its rules, and stores the file's
    /// sha256, sha1 and md5 as indicators of source `yara`, so events carrying them are
    /// detected. Links out of the given paths, devices and FIFOs are skipped; files over
    /// `actions.file_scan.max_bytes` are not read. Exit 1 when a file matched.
    #[command(
        after_help = "Examples:\n  palisade intel scan /srv/uploads\n  palisade intel scan suspicious.bin --no-store"
    )]
    Scan {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print the matches without storing their hashes.
        #[arg(long)]
        no_store: bool,
        #[command(flatten)]
        at: Place,
    },
    /// Count indicators by kind and source, and show each feed's last pull.
    Stats {
        #[command(flatten)]
        at: Place,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Read a password from standard input (its first line) and print the hash to put in
    /// `console.operators[].password_hash`. The password never appears in the arguments.
    #[command(
        after_help = "Example:\n  printf '%s\\n' \"$PASSWORD\" | palisade console hash-password"
    )]
    HashPassword {
        /// PBKDF2 rounds; more is slower for an attacker and for each login.
        #[arg(long, default_value_t = crate::console::password::DEFAULT_ITERATIONS)]
        iterations: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Steps waiting for approval (all decisions with --all).
    List {
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        at: Place,
    },
    /// Approve a step; a running engine executes it within a second, through the same policy.
    Approve {
        id: i64,
        #[command(flatten)]
        at: Place,
    },
    /// Reject a step: it will not run.
    Reject {
        id: i64,
        #[command(flatten)]
        at: Place,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The newest records, oldest first, and the head hash to note down.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        count: i64,
        #[command(flatten)]
        at: Place,
    },
    /// Walk the hash chain; exit 1 when a row was edited or removed.
    Verify {
        #[command(flatten)]
        at: Place,
    },
    /// Every record as JSON lines, for a SIEM or an archive.
    Export {
        /// Only `jsonl` today.
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl"])]
        format: String,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        at: Place,
    },
}

fn parse_kind(text: &str) -> Result<crate::intel::IndicatorKind, String> {
    crate::intel::IndicatorKind::parse(text).ok_or_else(|| {
        const KINDS: [&str; 7] = ["ip", "cidr", "domain", "url", "md5", "sha1", "sha256"];
        format!(
            "unknown kind `{text}`{}; kinds: {}",
            crate::diagnostics::did_you_mean(text, KINDS),
            KINDS.join(", ")
        )
    })
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Events/s from a Redis stream through the whole engine, next to the raw Redis ceiling
    /// measured in the same run, and latency from publish to detection recorded and to action
    /// dispatched, at full and half load.
    #[command(
        after_help = "Without --redis it starts its own redis-server on a free loopback port.\n\n\
Example:\n  cargo run --release -- bench pipeline --rules 100 --indicators 1000000 --repeat 3"
    )]
    Pipeline {
        /// Events per run.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// One event in this many is malicious (produces detections and actions).
        #[arg(long, default_value_t = 100)]
        malicious_every: usize,
        /// Use this Redis server instead of starting one. Its streams `palisade:bench:*` are overwritten.
        #[arg(long)]
        redis: Option<String>,
        /// Replace the playbooks by one posting each malicious detection to a local webhook
        /// receiver that answers at once (`healthy`) or never (`hang`).
        #[arg(long, value_enum)]
        webhook: Option<crate::bench::webhook::WebhookMode>,
        #[command(flatten)]
        at: Place,
        /// Generated rules (Rhai and Sigma, shaped like real content) added to the content
        /// directory's own, in a scratch copy.
        #[arg(long, default_value_t = 0)]
        rules: usize,
        /// Generated indicators of every kind loaded into intel.
        #[arg(long, default_value_t = 0)]
        indicators: usize,
        /// Rounds (ceiling and runs); each is reported, and the medians.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        repeat: u16,
        /// Print the report as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Threat intelligence at scale: import time, load time, resident memory and lookups/s
    /// for a generated mix of indicators.
    #[command(after_help = "Example:\n  cargo run --release -- bench intel --indicators 1000000")]
    Intel {
        #[arg(long, default_value_t = 1_000_000)]
        indicators: usize,
    },
}

/// `palisade replay ... | head` closes our standard output early. Rust's printing then panics
/// ("failed printing to stdout: Broken pipe"); like other Unix tools, stop quietly instead.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Parses the process arguments and runs the command.
pub fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Init { dir } => init::run(&dir),
        Command::Validate {
            content,
            at,
            format,
            refusals,
            strict,
        } => validate::run(&at.with_content(content), format, refusals, strict),
        Command::Test {
            content,
            at,
            filter,
            format,
            update,
        } => test::run(&at.with_content(content), filter.as_deref(), format, update),
        Command::Rules {
            which:
                RulesCommand::List {
                    content,
                    at,
                    format,
                },
        } => rules::list(&at.with_content(content), format),
        Command::Coverage {
            content,
            at,
            format,
            navigator,
        } => coverage::run(&at.with_content(content), format, navigator.as_deref()),
        Command::Replay {
            events,
            at,
            dead_letter,
            dry_run,
            explain,
            format,
        } => replay::run(
            &at,
            &events,
            dead_letter.as_deref(),
            dry_run,
            explain.then_some(format),
        ),
        Command::Explain {
            event,
            id,
            line,
            at,
            format,
        } => {
            let pick = match (&id, line) {
                (Some(id), _) => Some(explain::Pick::Id(id)),
                (None, Some(line)) => Some(explain::Pick::Line(line)),
                (None, None) => None,
            };
            explain::run(&at, &event, pick, format)
        }
        Command::Diff { args, at } => diff::run(&at, &args),
        Command::Run { events, at } => run::run(&at, events.as_deref(), cli.log_format),
        Command::Schema { out, check } => schema::run(&out, check),
        Command::Train { events, out } => model::train_model(&events, &out),
        Command::Model { which } => match which {
            ModelCommand::Eval {
                normal,
                attacks,
                model: path,
                at,
                threshold,
                plot,
            } => model::eval(&at, path.as_deref(), &normal, &attacks, threshold, &plot),
            ModelCommand::Sample {
                kind,
                events,
                days,
                seed,
                out,
            } => model::sample(kind, events, days, seed, out.as_deref()),
            ModelCommand::Status { at } => control::model_status(&at),
            ModelCommand::Accept { at } => control::model_accept(&at),
            ModelCommand::Explain {
                event,
                file,
                event_id,
                model: path,
                at,
            } => model::explain(
                &at,
                path.as_deref(),
                event.as_deref(),
                file.as_deref(),
                event_id.as_deref(),
            ),
        },
        Command::Approvals { which } => match which {
            ApprovalsCommand::List { all, at } => control::list(&at, all),
            ApprovalsCommand::Approve { id, at } => control::decide(&at, id, true),
            ApprovalsCommand::Reject { id, at } => control::decide(&at, id, false),
        },
        Command::Mode { set, at } => control::mode(&at, set.as_deref()),
        Command::Console { which } => match which {
            ConsoleCommand::HashPassword { iterations } => control::hash_password(iterations),
        },
        Command::Unblock { address, at } => control::unblock(&at, &address),
        Command::Audit { which } => match which {
            AuditCommand::Tail { count, at } => audit::tail(&at, count),
            AuditCommand::Verify { at } => audit::verify(&at),
            AuditCommand::Export { out, at, .. } => audit::export(&at, out.as_deref()),
        },
        Command::Intel { which } => match which {
            IntelCommand::Import {
                file,
                format,
                source,
                kind,
                confidence,
                severity,
                subdomains,
                at,
            } => intel::import_file(
                &at,
                &file,
                format,
                intel::ImportChoices {
                    source,
                    kind,
                    confidence,
                    severity,
                    subdomains,
                },
            ),
            IntelCommand::Lookup { value, at } => intel::lookup(&at, &value),
            IntelCommand::Stats { at } => intel::stats(&at),
            IntelCommand::Scan {
                paths,
                no_store,
                at,
            } => intel::scan(&at, &paths, !no_store),
            IntelCommand::Pull { feed, at } => intel::pull(&at, feed.as_deref()),
        },
        Command::Bench {
            which:
                BenchCommand::Pipeline {
                    events,
                    malicious_every,
                    redis,
                    webhook,
                    at,
                    rules,
                    indicators,
                    repeat,
                    json,
                },
        } => bench::run(
            &at,
            bench::PipelineArgs {
                events,
                malicious_every,
                redis_url: redis,
                rules,
                indicators,
                repeat: usize::from(repeat),
                json,
                webhook,
            },
        ),
        Command::Bench {
            which: BenchCommand::Intel { indicators },
        } => bench::intel(indicators),
        Command::Publish {
            events,
            stream,
            channel,
            redis,
            at,
        } => publish::run(&at, &events, stream, channel, redis),
    };
    match result {
        Ok(Status::Ok) => ExitCode::SUCCESS,
        Ok(Status::Findings) => ExitCode::from(1),
        // The reader of our output went away (`| head`): nothing is wrong with the command.
        Err(CannotRun(message)) if message.contains("Broken pipe") => ExitCode::SUCCESS,
        Err(CannotRun(message)) => {
            eprintln!("palisade: {message}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PALISADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Every log line goes out inert: event values reach the log from many places, and none
        // of them may start a line of its own (`text::LogLines`).
        .with_writer(|| crate::text::LogLines(std::io::stderr()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Loads content, or explains why it could not be used. Invalid content is a finding (the
/// diagnostics are printed); a missing directory means the command cannot run.
fn load_content(
    dir: &std::path::Path,
    config: Option<&std::path::Path>,
) -> Result<Result<crate::content::Content, crate::diagnostics::Diagnostics>, CannotRun> {
    if !dir.is_dir() {
        return Err(CannotRun(format!("`{}` is not a directory", dir.display())));
    }
    if let Some(config) = config
        && !config.is_file()
    {
        return Err(CannotRun(format!(
            "config file `{}` does not exist",
            config.display()
        )));
    }
    Ok(crate::content::load(dir, config))
}

/// Loads content for a command that processes events: invalid content means it cannot run (the
/// problems are printed first).
fn load_runnable_content(
    dir: &std::path::Path,
    config: Option<&std::path::Path>,
) -> Result<std::sync::Arc<crate::content::Content>, CannotRun> {
    match load_content(dir, config)? {
        Ok(content) => {
            // A read of an unknown event field still runs; say so where the author will look.
            for warning in content.warnings.iter() {
                tracing::warn!("{}", warning.render());
            }
            Ok(std::sync::Arc::new(content))
        }
        Err(problems) => {
            eprintln!("{}", problems.render());
            Err(CannotRun(format!(
                "the content in `{}` does not validate ({} problem(s))",
                dir.display(),
                problems.errors()
            )))
        }
    }
}
