//! Intel's config types (feeds, their fetch limits, the widest range). The config module,
//! above this one, assembles them into `palisade.yaml` and checks them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Threat-intelligence feeds pulled on a schedule, and the limits every imported indicator is
/// held to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct IntelConfig {
    pub feeds: Vec<FeedConfig>,
    /// The widest range an indicator may cover, per address family. A wider one (a feed row for
    /// `0.0.0.0/0` would make every address malicious) is refused at import, after its host bits
    /// are masked and IPv4-mapped IPv6 is unmapped.
    pub max_prefix: IntelMaxPrefix,
    /// What every feed pull is held to (docs/intel.md, "Limits").
    pub fetch: FeedFetchConfig,
}

/// Limits on what a feed pull reads and how far it trusts the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct FeedFetchConfig {
    /// The largest response body read, per request (page); a larger one fails the pull and
    /// nothing from it is stored. Default 64 MiB.
    pub max_body_bytes: u64,
    /// The longest one request may take, redirects, headers and body included: `30s`, `2m`.
    pub read_timeout: crate::duration::Span,
    /// `same_host` (default): redirects are followed only to the same scheme, host and port;
    /// `none`: never.
    pub redirects: crate::outbound::Redirects,
    /// The most pages one TAXII or MISP pull may take; more fails the pull and stores nothing
    /// from it.
    pub max_pages: usize,
    /// The longest one whole pull may take, every page included: `10m`. Past it the pull fails
    /// and stores nothing from it.
    pub max_pull_time: crate::duration::Span,
    /// A snapshot feed's download replaces the stored list only when at least this share of
    /// its entries parse as indicators (0–1); otherwise the pull fails and nothing expires.
    pub min_parsed_ratio: f64,
}

impl Default for FeedFetchConfig {
    fn default() -> FeedFetchConfig {
        FeedFetchConfig {
            max_body_bytes: 64 * 1024 * 1024,
            read_timeout: const { crate::duration::Span::secs(120) },
            redirects: crate::outbound::Redirects::SameHost,
            max_pages: 500,
            max_pull_time: const { crate::duration::Span::secs(600) },
            min_parsed_ratio: 0.5,
        }
    }
}

impl FeedFetchConfig {
    /// The client limits.
    pub fn limits(&self) -> crate::outbound::Limits {
        crate::outbound::Limits {
            max_body_bytes: self.max_body_bytes,
            read_timeout: self.read_timeout.duration(),
            redirects: self.redirects,
        }
    }
}

/// The shortest prefix length an indicator range may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct IntelMaxPrefix {
    /// IPv4: ranges shorter than this (wider than a /24 by default) are refused. 0–32.
    pub ipv4: u8,
    /// IPv6: ranges shorter than this (wider than a /48 by default) are refused. 0–128.
    pub ipv6: u8,
}

impl Default for IntelMaxPrefix {
    fn default() -> IntelMaxPrefix {
        IntelMaxPrefix { ipv4: 24, ipv6: 48 }
    }
}

/// How a feed is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeedType {
    /// A file over HTTP (`format` says which), fetched again only when it changed (ETag,
    /// Last-Modified).
    Http,
    /// A TAXII 2.1 collection (`url` ends in `/collections/ID/`), read from the saved
    /// `added_after` cursor, following `more`/`next` pages.
    Taxii,
    /// A MISP instance's `/attributes/restSearch`, `to_ids` attributes newer than the cursor.
    Misp,
    /// An Elasticsearch index (`url` is the cluster, `elasticsearch.index` the index), read
    /// through a point in time with `search_after` paging, newer than the saved timestamp.
    Elasticsearch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct FeedConfig {
    /// Also the source name stored with its indicators.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FeedType,
    pub url: String,
    /// For `http` feeds: the file's format.
    #[serde(default)]
    pub format: Option<super::formats::Format>,
    /// For `http` feeds: the file is the whole list, so indicators that vanish from it expire
    /// (only after a complete, valid download).
    #[serde(default)]
    pub snapshot: bool,
    /// How often to pull: `15m`, `1h`, `1d`.
    #[serde(default = "default_every")]
    pub every: crate::duration::Span,
    /// Environment variable holding the API key (never the key itself in the file).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Header the key goes in; default `Authorization` (TAXII sends `Bearer KEY`). abuse.ch
    /// uses `Auth-Key`, AbuseIPDB `Key`, OTX `X-OTX-API-KEY`.
    #[serde(default)]
    pub api_key_header: Option<String>,
    /// Objects per TAXII, MISP or Elasticsearch page.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// Whether this feed's domain indicators also match every name under them. Unset keeps the
    /// format's rule: STIX domains are exact unless the pattern names the subdomains (`OR ...
    /// LIKE '%.name'`); every other format's domains cover their subdomains.
    #[serde(default)]
    pub subdomains: Option<bool>,
    /// For `elasticsearch` feeds: the index, its field mapping and basic-auth variables.
    #[serde(default)]
    pub elasticsearch: Option<EsFeedConfig>,
}

/// Where an `elasticsearch` feed reads its indicators. The defaults fit an index of documents
/// like `{"ioc_value": "185.12.33.4", "ioc_type": "ipv4", "threat": "...", "confidence": 80,
/// "timestamp": "2025-11-01T00:00:00Z"}` (`threat_intel_iocs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct EsFeedConfig {
    /// The index (or alias) searched.
    pub index: String,
    /// The field holding the indicator's value; a dotted name reads nested objects too.
    pub value_field: String,
    /// The field naming its type (`ipv4`, `ipv6`, `ip`, `cidr`, `domain`, `url`, `md5`,
    /// `sha1`, `sha256`, with or without a `hash_` prefix, or the ECS `ipv4-addr`,
    /// `domain-name`); guessed from the value when the document has none.
    pub type_field: String,
    /// The field holding a confidence: 0–100, or `low`/`medium`/`high` (ECS).
    pub confidence_field: String,
    /// The field naming the threat or malware family.
    pub threat_field: String,
    /// The date field the pull sorts on and resumes from (the stored high-water mark).
    pub timestamp_field: String,
    /// How long the point in time is kept alive between pages: `1m`.
    pub keep_alive: crate::duration::Span,
    /// Environment variable holding the basic-auth user name (with `password_env`); an API
    /// key (`api_key_env`) is sent as `Authorization: ApiKey KEY` instead.
    pub username_env: Option<String>,
    /// Environment variable holding the basic-auth password.
    pub password_env: Option<String>,
}

impl Default for EsFeedConfig {
    fn default() -> EsFeedConfig {
        EsFeedConfig {
            index: "threat_intel_iocs".into(),
            value_field: "ioc_value".into(),
            type_field: "ioc_type".into(),
            confidence_field: "confidence".into(),
            threat_field: "threat".into(),
            timestamp_field: "timestamp".into(),
            keep_alive: const { crate::duration::Span::secs(60) },
            username_env: None,
            password_env: None,
        }
    }
}

fn default_every() -> crate::duration::Span {
    const { crate::duration::Span::secs(3600) }
}

fn default_page_size() -> usize {
    1000
}
