//! The engine's configuration file, `palisade.yaml`. `schemas/config.schema.json` is generated
//! from these types; [`DEFAULT_CONFIG`] is what `palisade run` uses when the file is absent.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diagnostics::{Diagnostic, Diagnostics, YamlPath, locate};
use crate::rules::RuleLimits;

mod check;

pub use check::parse;

/// The embedded default configuration (dry-run, events from standard input).
pub const DEFAULT_CONFIG: &str = include_str!("default.yaml");

/// The file name `palisade` looks for in the content directory.
pub const CONFIG_FILE: &str = "palisade.yaml";

/// The JSON Schema of the config file, built once from [`Config`]. It lives beside the type
/// because reading the file needs it (unknown keys are reported against it).
pub fn schema() -> &'static serde_json::Value {
    static SCHEMA: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(|| {
        serde_json::to_value(schemars::schema_for!(Config)).unwrap_or(serde_json::Value::Null)
    });
    &SCHEMA
}

/// So do the anomaly stage, the tracker and intel.
pub use crate::anomaly::{AnomalyConfig, LearningConfig};
/// The audit trail owns its config type; the config file only assembles it.
pub use crate::audit::AuditConfig;
pub use crate::intel::{FeedConfig, FeedFetchConfig, FeedType, IntelConfig, IntelMaxPrefix};
pub use crate::tracker::TrackerConfig;

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
    /// Where the audit trail's key and anchor live (docs/audit.md).
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
    #[serde(default)]
    pub actions: ActionsConfig,
    #[serde(default)]
    pub redis: RedisConfig,
    #[serde(default)]
    pub alerts: AlertsConfig,
    #[serde(default)]
    pub intel: IntelConfig,
    /// Budgets for every rule evaluation and `when` condition.
    #[serde(default)]
    pub limits: RuleLimits,
    /// The anomaly model, scoring events no rule matched.
    #[serde(default)]
    pub anomaly: AnomalyConfig,
    /// The long-term behaviour tracker.
    #[serde(default)]
    pub tracker: TrackerConfig,
    /// How event times from sensors are trusted.
    #[serde(default)]
    pub events: EventsConfig,
    /// `/healthz`, `/readyz` and `/metrics` while `palisade run` runs.
    #[serde(default)]
    pub http: HttpConfig,
    /// Sigma rules: extra folders, which statuses and levels load, `expand` placeholders
    /// (docs/sigma.md).
    #[serde(default)]
    pub sigma: crate::sigma::SigmaConfig,
    /// Which rule statuses run (docs/rules.md, "Lifecycle").
    #[serde(default)]
    pub rules: crate::rules::RulesConfig,
    /// The operator console: screens for the people in charge of the engine (docs/console.md).
    #[serde(default)]
    pub console: crate::console::ConsoleConfig,
}

/// The engine's HTTP endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct HttpConfig {
    pub enabled: bool,
    /// A loopback address and port (`127.0.0.1:9464`, `[::1]:9464`); port 0 picks a free one
    /// and the log says which. Other addresses are refused: put a proxy in front to expose it.
    pub listen: String,
    /// Connections served at once; one more is closed as soon as it is accepted (and counted),
    /// so idle clients cannot take the process's file descriptors.
    pub max_connections: usize,
    /// Time a client has to send a request's headers, from the moment the server waits for
    /// them (a new connection, or the next request on a kept-alive one), in milliseconds.
    pub header_timeout_ms: u64,
    /// Time a connection may go without a byte read or written, in milliseconds.
    pub idle_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            enabled: true,
            listen: "127.0.0.1:9464".into(),
            max_connections: 64,
            header_timeout_ms: 5_000,
            idle_timeout_ms: 30_000,
        }
    }
}

/// What happens to an event dated too far ahead of the engine's clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FutureTime {
    /// Process it with the newest plausible event time seen instead (counted).
    #[default]
    Clamp,
    /// Dead-letter it with the reason (counted as `future_timestamp`).
    Reject,
}

/// Event time is what the sensor says, so it is untrusted input
/// (`docs/operations.md#event-time`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct EventsConfig {
    /// An event dated more than this ahead of the engine's clock is not believed.
    pub max_future_skew: crate::duration::Span,
    /// What is done with such an event: `clamp` or `reject`.
    pub future_time: FutureTime,
    /// Fields beyond the event model that sensors are expected to send, as dotted paths into
    /// the event as it arrived (`sensor.version`, `winlog.event_data.RuleName`). A rule or
    /// playbook reading an `event.*` name that is neither a typed field nor covered by one of
    /// these gets a warning from `validate` (a typo reads nothing at runtime).
    pub extra_fields: Vec<String>,
}

impl Default for EventsConfig {
    fn default() -> EventsConfig {
        EventsConfig {
            max_future_skew: const { crate::duration::Span::secs(3600) },
            future_time: FutureTime::Clamp,
            extra_fields: Vec::new(),
        }
    }
}

impl EventsConfig {
    /// The intake's policy for event times.
    pub fn time_policy(&self) -> crate::event::TimePolicy {
        crate::event::TimePolicy {
            max_ahead_ms: self.max_future_skew.as_millis_i64(),
            reject: self.future_time == FutureTime::Reject,
        }
    }
}

impl Config {
    /// Whether detections are published to Redis: as configured, else when the source is Redis.
    pub fn publishes_alerts(&self) -> bool {
        self.alerts.enabled.unwrap_or(self.source.is_redis())
    }
}

/// Where the rules and playbooks are, relative to the content directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct ContentConfig {
    pub rules: PathBuf,
    pub playbooks: PathBuf,
    /// The largest rule, playbook or config file read, in bytes; a larger one is a validation
    /// error (and a running engine keeps its previous set) instead of being read into memory.
    pub max_file_bytes: u64,
}

/// The default cap on one content file: rule and playbook files are kilobytes, so 4 MiB leaves
/// room for generated ones while a stray multi-gigabyte file is refused unread.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

impl Default for ContentConfig {
    fn default() -> ContentConfig {
        ContentConfig {
            rules: PathBuf::from("rules"),
            playbooks: PathBuf::from("playbooks"),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
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
    /// A Redis stream read through a consumer group: durable, acknowledged after handling,
    /// shared by every engine in the group.
    RedisStream(StreamSourceConfig),
    /// A Redis pub/sub channel (the seeds' `internal_logs`). At most once: what is published
    /// while no engine listens is lost.
    RedisChannel(ChannelSourceConfig),
}

fn stdin_path() -> PathBuf {
    PathBuf::from("-")
}

impl Default for SourceConfig {
    fn default() -> SourceConfig {
        SourceConfig::Jsonl { path: stdin_path() }
    }
}

impl SourceConfig {
    pub fn is_redis(&self) -> bool {
        !matches!(self, SourceConfig::Jsonl { .. })
    }
}

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamStart {
    /// Everything already in the stream (sensors may publish before the first engine starts).
    #[default]
    Beginning,
    /// Only entries added after the group is created.
    New,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StreamSourceConfig {
    pub stream: String,
    pub group: String,
    /// This engine's name in the group; defaults to `HOST-PID`.
    pub consumer: Option<String>,
    /// Entries read per `XREADGROUP`.
    pub batch_size: usize,
    /// How long one read waits for new entries, in milliseconds.
    pub block_ms: u64,
    /// Entries left unacknowledged this long by any consumer (one that died) are claimed.
    pub claim_idle_ms: u64,
    /// An entry delivered this many times without being acknowledged goes to the dead-letter
    /// stream instead of being retried again.
    pub max_deliveries: u64,
    /// Where rejected and repeatedly failing entries go, with the reason.
    pub dead_letter_stream: String,
    /// Cap on the dead-letter stream's length (`MAXLEN ~`).
    pub dead_letter_maxlen: usize,
    pub start: StreamStart,
}

impl Default for StreamSourceConfig {
    fn default() -> StreamSourceConfig {
        StreamSourceConfig {
            stream: "palisade:events".into(),
            group: "palisade".into(),
            consumer: None,
            batch_size: 500,
            block_ms: 1000,
            claim_idle_ms: 30_000,
            max_deliveries: 5,
            dead_letter_stream: "palisade:events:dead".into(),
            dead_letter_maxlen: 100_000,
            start: StreamStart::Beginning,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelSourceConfig {
    pub channel: String,
    /// Most messages handled as one batch.
    pub batch_size: usize,
}

impl Default for ChannelSourceConfig {
    fn default() -> ChannelSourceConfig {
        ChannelSourceConfig {
            channel: "internal_logs".into(),
            batch_size: 500,
        }
    }
}

/// The Redis server sources and alerts use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db`, `rediss://` for TLS is not built in.
    pub url: String,
}

impl Default for RedisConfig {
    fn default() -> RedisConfig {
        RedisConfig {
            url: "redis://127.0.0.1:6379/".into(),
        }
    }
}

/// How long a webhook call waits for its receiver and which redirects it follows. Of the
/// receiver's answer only the status and, for a refusal, the first [`WEBHOOK_ANSWER_BYTES`]
/// are read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The longest one attempt may take, redirects included: `5s`.
    pub read_timeout: crate::duration::Span,
    /// `same_host` (default): only 307 and 308 redirects to the same scheme, host and port are
    /// followed (they keep the method and the message); `none`: never.
    pub redirects: crate::outbound::Redirects,
}

impl Default for WebhookConfig {
    fn default() -> WebhookConfig {
        WebhookConfig {
            read_timeout: const { crate::duration::Span::secs(5) },
            redirects: crate::outbound::Redirects::SameHost,
        }
    }
}

/// The most of a webhook receiver's answer ever read (quoted in a refusal's outcome).
pub const WEBHOOK_ANSWER_BYTES: u64 = 4096;

impl WebhookConfig {
    pub fn limits(&self) -> crate::outbound::Limits {
        crate::outbound::Limits {
            max_body_bytes: WEBHOOK_ANSWER_BYTES,
            read_timeout: self.read_timeout.duration(),
            redirects: self.redirects,
        }
    }
}

/// Where detections are announced for responders and other tools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Publish alerts to Redis. Default: when the source is Redis.
    pub enabled: Option<bool>,
    /// Pub/sub channel each alert is published on (the seeds' responders subscribe here).
    pub channel: Option<String>,
    /// Stream each alert is appended to, for consumers that must not miss one.
    pub stream: Option<String>,
    /// Cap on the alerts stream's length (`MAXLEN ~`).
    pub stream_maxlen: usize,
    /// Also index every alert, with its steps' outcomes, into Elasticsearch (read from the
    /// same outbox, so it needs alerts enabled).
    pub elasticsearch: Option<EsSinkConfig>,
}

/// `alerts.elasticsearch`: where alerts are indexed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct EsSinkConfig {
    /// The cluster: `https://es.example:9200`.
    pub url: String,
    /// The index (or data stream) alerts are written to.
    pub index: String,
    /// Environment variable holding an API key, sent as `Authorization: ApiKey KEY`.
    pub api_key_env: Option<String>,
    /// Environment variables holding a basic-auth user and password (instead of a key).
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    /// Alerts per `_bulk` request.
    pub batch: usize,
    /// The first wait before a retry; it doubles per retry within a round (three retries),
    /// then the round ends and the next, a second later, starts over.
    pub retry_backoff: crate::duration::Span,
    /// The longest one `_bulk` request may take.
    pub timeout: crate::duration::Span,
}

impl Default for EsSinkConfig {
    fn default() -> EsSinkConfig {
        EsSinkConfig {
            url: "http://localhost:9200".into(),
            index: "palisade-alerts".into(),
            api_key_env: None,
            username_env: None,
            password_env: None,
            batch: 500,
            retry_backoff: const { crate::duration::Span::secs(1) },
            timeout: const { crate::duration::Span::secs(30) },
        }
    }
}

impl Default for AlertsConfig {
    fn default() -> AlertsConfig {
        AlertsConfig {
            enabled: None,
            channel: Some("high_severity_alerts".into()),
            stream: Some("palisade:alerts".into()),
            stream_maxlen: 100_000,
            elasticsearch: None,
        }
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
    /// Addresses and ranges never blocked: gateways, DNS resolvers, partners. Loopback,
    /// unspecified and multicast addresses and the Redis server's address always are.
    pub protected_addresses: Vec<String>,
    /// Process names never killed. PID 1 and palisade itself never are.
    pub critical_processes: Vec<String>,
    /// The widest range one `firewall.block` may cover, as the shortest prefix length per
    /// family (`{ipv4: 24, ipv6: 48}`). A step may go wider only with its own `widest_prefix`,
    /// and then waits for approval.
    pub widest_block: crate::actions::WidestBlock,
    /// No second act on the same target by the same action within this time. A notification's
    /// subject is its detection: only a second message about the same detection to the same
    /// destination is held back.
    pub cooldown: Cooldown,
    /// Acts per action per minute, at most. Notifications are summarised instead: per step and
    /// destination, messages beyond this many a minute are counted into the step's next message
    /// (a playbook's `notification_limit` sets its own cap).
    pub max_per_minute: usize,
    /// How long one act may take.
    pub timeout: crate::duration::Span,
    /// This many failed acts within `degrade_window` switch the engine to manual mode.
    pub degrade_after_failures: usize,
    pub degrade_window: crate::duration::Span,
    /// How long a step waits for approval before it expires (and counts as not done).
    pub approval_expiry: crate::duration::Span,
    /// What enforces `firewall.block`: `auto` (nftables when installed, else iptables),
    /// `nftables` or `iptables`.
    pub firewall: crate::actions::plugins::firewall::Backend,
    /// What `notify.webhook` reads of a receiver's answer, how long it waits, which redirects
    /// it follows.
    pub webhook: WebhookConfig,
    /// The SMTP server `notify.email` sends through: `server`, `security`, `from`, and the
    /// names of the environment variables holding the credentials.
    pub email: crate::actions::plugins::email::EmailConfig,
    /// The pool that runs steps calling outside systems (`notify.webhook`, `notify.redis`,
    /// `notify.syslog`, `notify.email`) off the committing task: workers, queue, time limits, shutdown wait.
    pub effects: crate::actions::EffectsConfig,
    /// What `file.scan` may read and for how long, and the bounds `palisade intel scan` scans
    /// with (docs/actions.md, `file.scan`).
    pub file_scan: FileScanConfig,
}

impl Default for ActionsConfig {
    fn default() -> ActionsConfig {
        ActionsConfig {
            dry_run: true,
            protected_addresses: Vec::new(),
            critical_processes: [
                "systemd",
                "init",
                "sshd",
                "palisade",
                "redis-server",
                "lsass.exe",
                "csrss.exe",
                "wininit.exe",
                "services.exe",
                "winlogon.exe",
            ]
            .map(String::from)
            .to_vec(),
            widest_block: crate::actions::WidestBlock::default(),
            cooldown: Cooldown::After(const { crate::duration::Span::secs(600) }),
            max_per_minute: 30,
            timeout: const { crate::duration::Span::secs(30) },
            degrade_after_failures: 5,
            degrade_window: const { crate::duration::Span::secs(600) },
            approval_expiry: const { crate::duration::Span::secs(3600) },
            firewall: crate::actions::plugins::firewall::Backend::Auto,
            webhook: WebhookConfig::default(),
            email: crate::actions::plugins::email::EmailConfig::default(),
            effects: crate::actions::EffectsConfig::default(),
            file_scan: FileScanConfig::default(),
        }
    }
}

/// `actions.file_scan`: the folders a `file.scan` step may read (none by default: the action
/// refuses every path until roots are named), the largest file scanned, and the time budget
/// of one file's scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct FileScanConfig {
    /// Folders whose files `file.scan` may read; a path whose real location (links resolved)
    /// is outside all of them is refused.
    pub roots: Vec<PathBuf>,
    /// Files larger than this many bytes are not read.
    pub max_bytes: u64,
    /// The longest one file's scan may take: `10s`.
    pub timeout: crate::duration::Span,
}

impl Default for FileScanConfig {
    fn default() -> FileScanConfig {
        FileScanConfig {
            roots: Vec::new(),
            max_bytes: 64 * 1024 * 1024,
            timeout: const { crate::duration::Span::secs(10) },
        }
    }
}

impl FileScanConfig {
    pub fn limits(&self) -> crate::intel::yara::ScanLimits {
        crate::intel::yara::ScanLimits {
            max_bytes: self.max_bytes,
            timeout: self.timeout.duration(),
        }
    }
}

/// `actions.cooldown`: a duration, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cooldown {
    /// Every act is allowed, however close to the last on the same target.
    Off,
    After(crate::duration::Span),
}

impl Cooldown {
    /// The schema's name for it, by which the config reader finds every one in a file.
    pub const SCHEMA_NAME: &'static str = "Cooldown";

    /// The time held between two acts on one target (zero when off).
    pub fn duration(self) -> std::time::Duration {
        match self {
            Cooldown::Off => std::time::Duration::ZERO,
            Cooldown::After(span) => span.duration(),
        }
    }
}

impl std::str::FromStr for Cooldown {
    type Err = crate::duration::SpanError;

    fn from_str(text: &str) -> Result<Cooldown, Self::Err> {
        if text == "off" {
            Ok(Cooldown::Off)
        } else {
            text.parse().map(Cooldown::After)
        }
    }
}

impl std::fmt::Display for Cooldown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cooldown::Off => f.write_str("off"),
            Cooldown::After(span) => span.fmt(f),
        }
    }
}

impl Serialize for Cooldown {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cooldown {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Cooldown, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Cooldown {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        Cooldown::SCHEMA_NAME.into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration above zero (`30s`, `10m`), or `off`.",
            "type": "string",
            "pattern": "^(off|[0-9]+[smhdw]?)$",
        })
    }
}

/// An `actions` setting the executor's policy cannot be built from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("protected address: {0}")]
    ProtectedAddress(String),
    #[error(
        "`actions.widest_block` needs prefix lengths up to 32 for ipv4 and 128 for ipv6, not {ipv4} and {ipv6}"
    )]
    WidestBlock { ipv4: u8, ipv6: u8 },
}

impl ActionsConfig {
    /// The executor's policy, with the Redis server's address protected too.
    pub fn policy(&self, redis_url: &str) -> Result<crate::actions::Policy, PolicyError> {
        let mut protected = Vec::new();
        for text in &self.protected_addresses {
            let (_, canonical) = crate::intel::indicator::canonical_network(text)
                .map_err(|e| PolicyError::ProtectedAddress(e.to_string()))?;
            let (ip, prefix) = match canonical.split_once('/') {
                Some((ip, prefix)) => (ip.to_string(), prefix.parse::<u8>().unwrap_or(32)),
                None => (
                    canonical.clone(),
                    if canonical.contains(':') { 128 } else { 32 },
                ),
            };
            protected.push((
                ip.parse()
                    .map_err(|_| PolicyError::ProtectedAddress(format!("`{text}`")))?,
                prefix,
            ));
        }
        // The Redis server, IPv4 or IPv6 (a host name is not resolved here). `redis:` is not a
        // scheme the URL parser knows, so an IPv4 host comes back as a "domain": read it as an
        // address too.
        if let Ok(url) = url::Url::parse(redis_url) {
            let ip = match url.host() {
                Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
                Some(url::Host::Domain(name)) => name.parse::<std::net::IpAddr>().ok(),
                None => None,
            }
            .map(crate::event::canonical_ip);
            if let Some(ip) = ip.filter(|ip| !ip.is_loopback()) {
                protected.push((ip, if ip.is_ipv4() { 32 } else { 128 }));
            }
        }
        if self.widest_block.ipv4 > 32 || self.widest_block.ipv6 > 128 {
            return Err(PolicyError::WidestBlock {
                ipv4: self.widest_block.ipv4,
                ipv6: self.widest_block.ipv6,
            });
        }
        Ok(crate::actions::Policy {
            protected_addresses: protected,
            critical_processes: self.critical_processes.clone(),
            dry_run: self.dry_run,
            widest_block: self.widest_block,
            cooldown: self.cooldown.duration(),
            max_per_minute: self.max_per_minute.max(1),
            timeout: self.timeout.duration(),
            degrade_after_failures: self.degrade_after_failures.max(1),
            degrade_window: self.degrade_window.duration(),
            approval_expiry: self.approval_expiry.duration(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each problem's line and message, in order.
    fn lines_and_messages(problems: &Diagnostics) -> Vec<(usize, &str)> {
        problems
            .iter()
            .map(|d| (d.line, d.message.as_str()))
            .collect()
    }

    /// Sibling of issue 11.1: the Redis server was meant to be protected, but the URL parser
    /// gives a `redis://` URL's IPv4 host as a name, and IPv6 hosts were not looked at, so no
    /// Redis address was ever protected.
    #[test]
    fn the_redis_server_is_protected_whatever_its_address_family() {
        let actions = ActionsConfig::default();
        for (url, ip) in [
            ("redis://192.0.2.5:6379", "192.0.2.5"),
            ("redis://[2001:db8::5]:6379", "2001:db8::5"),
            ("redis://[::ffff:192.0.2.6]:6379", "192.0.2.6"),
        ] {
            let policy = actions.policy(url).unwrap();
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert!(
                policy.protected_addresses.iter().any(|(p, _)| *p == ip),
                "{url}: {:?}",
                policy.protected_addresses
            );
        }
    }

    #[test]
    fn bad_effects_pool_settings_are_named_with_their_line() {
        let problems = parse(
            Path::new("p.yaml"),
            "actions:\n  effects:\n    workers: 4\n    time_limits:\n      notify: soon\n",
        )
        .unwrap_err();
        let found = lines_and_messages(&problems);
        assert!(
            found.iter().any(|(line, message)| *line == 5
                && message.contains("`actions.effects.time_limits.notify` is `soon`")),
            "{found:?}"
        );
        let problems =
            parse(Path::new("p.yaml"), "actions:\n  effects:\n    queue: 0\n").unwrap_err();
        assert!(
            problems.iter().any(|d| d.line == 3
                && d.message
                    .contains("`actions.effects.queue` must be at least 1")),
            "{problems:?}"
        );
    }

    #[test]
    fn bad_feed_and_webhook_limits_are_named_with_their_line() {
        let problems = parse(
            Path::new("p.yaml"),
            "intel:\n  fetch:\n    read_timeout: soon\n    max_pages: 0\n    min_parsed_ratio: 1.5\n    max_body_bytes: 0\n    max_pull_time: 0s\nactions:\n  webhook:\n    read_timeout: 0s\n",
        )
        .unwrap_err();
        let found = lines_and_messages(&problems);
        for (line, text) in [
            (3, "`intel.fetch.read_timeout` is `soon`"),
            (4, "`intel.fetch.max_pages` must be at least 1"),
            (
                5,
                "`intel.fetch.min_parsed_ratio` must be between 0 and 1, not 1.5",
            ),
            (6, "`intel.fetch.max_body_bytes` must be greater than 0"),
            (7, "`intel.fetch.max_pull_time` is `0s`"),
            (10, "`actions.webhook.read_timeout` is `0s`"),
        ] {
            assert!(
                found.iter().any(|(l, m)| *l == line && m.contains(text)),
                "{text} at line {line}: {found:?}"
            );
        }
        let defaults = Config::default();
        assert_eq!(defaults.intel.fetch.max_body_bytes, 64 << 20);
        assert_eq!(
            defaults.intel.fetch.redirects,
            crate::outbound::Redirects::SameHost
        );
        assert_eq!(
            defaults.actions.webhook.redirects,
            crate::outbound::Redirects::SameHost
        );
    }

    /// Issue 14: `tracker.beacon_min_interval` stayed a string that the tracker parsed again,
    /// falling back to ten seconds when it could not. A wrong value is now refused when the file
    /// is read, and a right one is what the tracker uses.
    #[test]
    fn a_bad_tracker_window_is_an_error_not_the_default() {
        let problems = parse(
            Path::new("palisade.yaml"),
            "tracker:\n  min_records: 10\n  beacon_min_interval: 10 seconds\n",
        )
        .unwrap_err();
        let found = lines_and_messages(&problems);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, 3);
        assert!(
            found[0]
                .1
                .contains("`tracker.beacon_min_interval` is `10 seconds`"),
            "{found:?}"
        );
        let config = parse(
            Path::new("palisade.yaml"),
            "tracker:\n  beacon_min_interval: 2m\n",
        )
        .unwrap();
        let settings = crate::tracker::Settings::from_config(&config.tracker);
        assert_eq!(settings.beacon_min_interval_ms, 120_000);
        // Read by any other way (a test's config, a reloaded one), the type refuses it too: there
        // is no text left for the tracker to misread.
        let refused = serde_json::from_value::<TrackerConfig>(
            serde_json::json!({"beacon_min_interval": "soon"}),
        )
        .unwrap_err();
        assert!(
            refused.to_string().contains("`soon` is not a duration"),
            "{refused}"
        );
    }

    /// An Elasticsearch feed or sink set up so it would read the wrong thing or send half its
    /// credentials is refused at its line, never started.
    #[test]
    fn elasticsearch_settings_that_cannot_work_are_refused_at_their_line() {
        let source = "intel:\n  feeds:\n    - name: es\n      type: elasticsearch\n      url: http://es:9200\n      elasticsearch:\n        index: logs/_delete_by_query\n        username_env: U\nalerts:\n  elasticsearch:\n    url: ftp://es\n    batch: 0\n";
        let problems = parse(Path::new("palisade.yaml"), source).unwrap_err();
        let found = lines_and_messages(&problems);
        let text = format!("{found:?}");
        for want in [
            "basic auth needs both",
            "`logs/_delete_by_query` is not an Elasticsearch index name",
            "`ftp://es` must be an http or https URL",
            "`batch` must be between 1 and 10000",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
    }

    /// Issue 14: the learning loop's `retrain_every`/`check_every`, a feed's `every` and
    /// `events.max_future_skew` were re-parsed where used with a silent default (a day, 30 s,
    /// an hour, an hour). Each is a duration from the moment the file is read; several wrong
    /// ones are all reported, each at its line, and the file's other problems too.
    #[test]
    fn bad_durations_are_all_reported_not_replaced_by_defaults() {
        let source = "anomaly:\n  learning:\n    retrain_every: 1 day\n    check_every: -5\nevents:\n  max_future_skew: 0s\nintel:\n  feeds:\n    - name: f\n      url: ftp://x\n      type: http\n      format: plain\n      every: weekly\n";
        let problems = parse(Path::new("palisade.yaml"), source).unwrap_err();
        let mut found = lines_and_messages(&problems);
        found.sort_unstable();
        let expected = [
            (3, "`anomaly.learning.retrain_every` is `1 day`"),
            (4, "`anomaly.learning.check_every` is `-5`"),
            (6, "`events.max_future_skew` is `0s`"),
            (10, "feed url `ftp://x` must be an http or https URL"),
            (13, "`intel.feeds[0].every` is `weekly`"),
        ];
        assert_eq!(found.len(), expected.len(), "{found:?}");
        for ((line, message), (want_line, want)) in found.iter().zip(expected) {
            assert_eq!(*line, want_line, "{found:?}");
            assert!(message.contains(want), "{want}: {found:?}");
        }
        let config = parse(
            Path::new("palisade.yaml"),
            "anomaly:\n  learning:\n    retrain_every: 2d\n    check_every: 90\nevents:\n  max_future_skew: 10m\nintel:\n  feeds:\n    - {name: f, url: 'https://x/l', type: http, format: plain, every: 15m}\n",
        )
        .unwrap();
        let learning = crate::anomaly::learning::Settings::from_config(
            &config.anomaly,
            "e".into(),
            PathBuf::from("m"),
        );
        assert_eq!(
            learning.retrain_every,
            std::time::Duration::from_secs(172_800)
        );
        assert_eq!(learning.check_every, std::time::Duration::from_secs(90));
        assert_eq!(config.events.time_policy().max_ahead_ms, 600_000);
        assert_eq!(config.intel.feeds[0].every.as_millis_i64(), 900_000);
        for (json, text) in [
            (serde_json::json!({"retrain_every": "1 day"}), "`1 day`"),
            (serde_json::json!({"check_every": "0s"}), "`0s`"),
        ] {
            let refused = serde_json::from_value::<LearningConfig>(json).unwrap_err();
            assert!(refused.to_string().contains(text), "{refused}");
        }
        let refused = serde_json::from_value::<EventsConfig>(
            serde_json::json!({"max_future_skew": "an hour"}),
        )
        .unwrap_err();
        assert!(refused.to_string().contains("`an hour`"), "{refused}");
    }

    /// `actions.cooldown` was a string compared with `off` and parsed again when the policy was
    /// built. It is read as a duration or `off` with the file, and a wrong one is reported with
    /// the file's other wrong durations.
    #[test]
    fn a_bad_cooldown_is_reported_with_the_other_bad_durations() {
        let problems = parse(
            Path::new("palisade.yaml"),
            "actions:\n  cooldown: never\n  timeout: 0s\n  approval_expiry: 1h\n",
        )
        .unwrap_err();
        let mut found = lines_and_messages(&problems);
        found.sort_unstable();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].0 == 2 && found[0].1.contains("`actions.cooldown` is `never`"));
        assert!(found[0].1.contains("or `off`"), "{found:?}");
        assert!(found[1].0 == 3 && found[1].1.contains("`actions.timeout` is `0s`"));
        for (text, held) in [("off", 0), ("90", 90), ("5m", 300)] {
            let config = parse(
                Path::new("palisade.yaml"),
                &format!("actions:\n  cooldown: {text}\n"),
            )
            .unwrap();
            let policy = config.actions.policy("redis://127.0.0.1/").unwrap();
            assert_eq!(
                policy.cooldown,
                std::time::Duration::from_secs(held),
                "{text}"
            );
        }
        assert_eq!(
            serde_json::to_value(ActionsConfig::default()).unwrap()["cooldown"],
            "10m"
        );
    }

    /// A wrong duration and a value serde cannot read at all (a word for a number): both are
    /// reported, each at its line, whichever comes first in the file.
    #[test]
    fn a_bad_duration_does_not_hide_a_value_of_the_wrong_type() {
        for source in [
            "tracker:\n  beacon_min_interval: soon\nsource:\n  type: redis_stream\n  batch_size: many\n",
            "source:\n  type: redis_stream\n  batch_size: many\ntracker:\n  beacon_min_interval: soon\n",
        ] {
            let problems = parse(Path::new("palisade.yaml"), source).unwrap_err();
            let mut found: Vec<(usize, &str, &str)> = problems
                .iter()
                .map(|d| (d.line, d.code, d.message.as_str()))
                .collect();
            found.sort_unstable();
            assert_eq!(found.len(), 2, "{found:?}");
            let duration = found.iter().find(|f| f.1 == "invalid-duration");
            let typed = found.iter().find(|f| f.1 == "yaml");
            assert!(
                duration.is_some_and(|f| f.2.contains("`tracker.beacon_min_interval` is `soon`")),
                "{found:?}"
            );
            assert!(
                typed.is_some_and(|f| f.2.contains("batch_size") || f.2.contains("many")),
                "{found:?}"
            );
        }
    }

    #[test]
    fn the_embedded_default_is_the_default() {
        let parsed = parse(Path::new("default.yaml"), DEFAULT_CONFIG).unwrap();
        assert_eq!(parsed, Config::default());
        assert!(parsed.actions.dry_run, "the default must never act");
    }

    #[test]
    fn redis_sources_parse_with_defaults_and_are_checked() {
        let config = parse(
            Path::new("p.yaml"),
            "source:\n  type: redis_stream\n  stream: edr\n",
        )
        .unwrap();
        let SourceConfig::RedisStream(stream) = &config.source else {
            panic!("a stream source")
        };
        assert_eq!(
            (
                stream.stream.as_str(),
                stream.group.as_str(),
                stream.batch_size
            ),
            ("edr", "palisade", 500)
        );
        assert!(config.publishes_alerts());
        let problems = parse(
            Path::new("p.yaml"),
            "source:\n  type: redis_stream\n  batch_size: 0\nredis:\n  url: http://x\n",
        )
        .unwrap_err();
        let found = lines_and_messages(&problems);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, 5);
        assert_eq!(found[1].0, 3);
        let channel = parse(Path::new("p.yaml"), "source: {type: redis_channel}\n").unwrap();
        assert_eq!(
            channel.source,
            SourceConfig::RedisChannel(ChannelSourceConfig::default())
        );
    }

    /// Out of the box the anomaly stage learns (no model file named); a model file named keeps
    /// working and turns learning off; unreadable learning values are named with their line.
    #[test]
    fn the_anomaly_stage_learns_by_default_and_bad_learning_values_are_named() {
        let config = Config::default();
        assert!(config.anomaly.learns());
        assert_eq!(config.anomaly.model, None);
        let named = parse(
            Path::new("p.yaml"),
            "anomaly:\n  model: models/anomaly.model\n",
        )
        .unwrap();
        assert!(!named.anomaly.learns());
        let problems = parse(
            Path::new("p.yaml"),
            "anomaly:\n  learning:\n    retrain_every: soon\n    max_sample: 10\n    min_days: 30\n    drift_factor: 0.5\n    max_held_out_rate: 0\n",
        )
        .unwrap_err();
        let mut found = lines_and_messages(&problems);
        found.sort_unstable();
        assert_eq!(found.len(), 5, "{found:?}");
        assert!(
            found[0].0 == 3
                && found[0]
                    .1
                    .contains("`anomaly.learning.retrain_every` is `soon`")
        );
        assert!(found[1].0 == 4 && found[1].1.contains("max_sample"));
        // The window (28 days by default) is shorter than min_days: named at min_days.
        assert!(found[2].0 == 5 && found[2].1.contains("window_days"));
        assert!(found[3].0 == 6 && found[3].1.contains("drift_factor"));
        assert!(
            found[4].0 == 7
                && found[4]
                    .1
                    .contains("`anomaly.learning.max_held_out_rate` must be above 0")
        );
        assert_eq!(config.anomaly.learning.max_held_out_rate, 0.002);
    }

    #[test]
    fn intel_max_prefix_defaults_to_the_block_limit_and_is_checked() {
        let config = parse(Path::new("p.yaml"), "intel:\n  max_prefix: {ipv4: 16}\n").unwrap();
        assert_eq!(
            config.intel.max_prefix,
            IntelMaxPrefix { ipv4: 16, ipv6: 48 }
        );
        assert_eq!(
            Config::default().intel.max_prefix,
            IntelMaxPrefix { ipv4: 24, ipv6: 48 }
        );
        let problems = parse(
            Path::new("p.yaml"),
            "intel:\n  max_prefix:\n    ipv4: 33\n    ipv6: 129\n",
        )
        .unwrap_err();
        let found = lines_and_messages(&problems);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found
                .iter()
                .any(|(line, m)| *line == 3 && m.contains("`intel.max_prefix.ipv4` is 33"))
        );
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

    #[test]
    fn the_bounds_are_read_from_palisade_yaml_and_a_misspelled_one_is_refused_at_its_line() {
        use crate::sigma::correlation::Limits;

        let path = Path::new("palisade.yaml");
        let config = parse(
            path,
            "sigma:\n  correlation:\n    max_groups: 5\n    max_values: 50\n",
        )
        .unwrap();
        assert_eq!(
            Limits::from_config(&config.sigma.correlation),
            Limits {
                max_groups: 5,
                max_values: 50
            }
        );
        let err = parse(path, "sigma:\n  correlation:\n    max_group: 5\n")
            .unwrap_err()
            .render();
        assert!(
            err.contains("palisade.yaml:3:5: error[unknown-key]: unknown key `max_group` in `sigma.correlation` (did you mean `max_groups`?)"),
            "{err}"
        );
    }

    #[test]
    fn an_extra_field_with_an_empty_part_is_located() {
        let source = "events:\n  extra_fields:\n    - sensor.version\n    - sensor..name\n";
        let problems = parse(Path::new("palisade.yaml"), source).unwrap_err();
        let d = problems.iter().next().unwrap();
        assert_eq!((d.line, d.column), (4, 7));
        assert!(d.message.contains("`sensor..name`"), "{}", d.message);
        let ok = parse(
            Path::new("palisade.yaml"),
            "events:\n  extra_fields: [sensor.version]\n",
        )
        .unwrap();
        assert_eq!(ok.events.extra_fields, vec!["sensor.version".to_string()]);
    }

    /// The configured operator name ends up in audit records: a line break there would let a
    /// config forge a record line, so it is refused with its position.
    #[test]
    fn an_operator_name_with_a_line_break_is_refused_at_its_line() {
        let found = parse(
            Path::new("ops.yaml"),
            "audit:\n  operator: \"soc\\nteam\"\n",
        )
        .unwrap_err();
        let rendered = found.render();
        assert!(rendered.contains("ops.yaml:2"), "{rendered}");
        assert!(rendered.contains("audit.operator"), "{rendered}");
        let ok = parse(Path::new("ops.yaml"), "audit:\n  operator: soc-team\n").unwrap();
        assert_eq!(ok.audit.operator.as_deref(), Some("soc-team"));
    }
}
