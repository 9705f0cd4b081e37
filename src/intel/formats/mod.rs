//! Importers: each reads one feed format into [`Indicator`]s. A file is parsed completely
//! before anything is stored, so a malformed file is reported (with its position) and stores
//! nothing; so is a JSON field of the wrong type or a time that does not parse (see
//! `json.rs`). Entries that are valid but not usable (a STIX pattern with no single-event
//! meaning, a MISP attribute not meant for detection) and values that are no indicator (junk,
//! a range wider than `intel.max_prefix`) are skipped: counted per reason, the first
//! [`EXAMPLES`] kept with their position.

mod abusech;
pub(crate) mod elasticsearch;
mod json;
mod misp;
mod otx_abuseipdb;
mod stix;
mod stix_pattern;

use std::collections::BTreeMap;
use std::path::Path;

use super::indicator::{Indicator, IndicatorKind, canonical, check_breadth};
use crate::intel::IntelMaxPrefix;
use json::JsonPath;
pub(crate) use json::describe;

/// The formats `palisade intel import --format` accepts.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// A STIX 2.1 bundle (patterns that stand for indicators become them; docs/intel.md).
    Stix,
    /// A MISP event (`{"Event": ...}` or a bare event), `to_ids` attributes only.
    Misp,
    /// A MISP feed directory: `manifest.json` and one event file per entry.
    MispFeed,
    /// abuse.ch Feodo Tracker IP blocklist, CSV or JSON.
    Feodo,
    /// abuse.ch URLhaus dump, CSV or JSON.
    Urlhaus,
    /// abuse.ch ThreatFox export or API response, CSV or JSON.
    Threatfox,
    /// AlienVault OTX pulses (one pulse, or a page of `results`).
    Otx,
    /// AbuseIPDB blacklist JSON.
    Abuseipdb,
    /// One indicator per line; `#` starts a comment.
    Plain,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Stix => "stix",
            Format::Misp => "misp",
            Format::MispFeed => "misp-feed",
            Format::Feodo => "feodo",
            Format::Urlhaus => "urlhaus",
            Format::Threatfox => "threatfox",
            Format::Otx => "otx",
            Format::Abuseipdb => "abuseipdb",
            Format::Plain => "plain",
        }
    }
}

/// A file that could not be read as its format. Nothing from it is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ImportError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl ImportError {
    pub(crate) fn at(
        file: &Path,
        line: usize,
        column: usize,
        message: impl Into<String>,
    ) -> ImportError {
        ImportError {
            file: file.display().to_string(),
            line,
            column,
            message: message.into(),
        }
    }

    pub(crate) fn json(file: &Path, err: &serde_json::Error) -> ImportError {
        ImportError::at(
            file,
            err.line(),
            err.column(),
            format!("not valid JSON: {err}"),
        )
    }
}

/// How many skipped entries an import reports one by one; the rest are only counted.
pub const EXAMPLES: usize = 10;

/// Distinct skip reasons counted apart; more (reasons can quote a feed's own type names) are
/// counted together, so a hostile file cannot grow the report without bound.
const MAX_REASONS: usize = 100;

/// Where an entry is in its file: a line (CSV, plain lists) or a place in a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum At {
    Line(usize),
    Json(JsonPath),
}

/// What an import produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Imported {
    pub indicators: Vec<Indicator>,
    /// Why entries were skipped or refused, with how many each. Reasons never quote the value,
    /// so a file of junk gives a few reasons, not one per line.
    pub skipped: BTreeMap<String, usize>,
    /// The first [`EXAMPLES`] skipped entries, each with its file, line and value.
    pub examples: Vec<ImportError>,
    /// Examples whose JSON places are not yet located in the text.
    pending: Vec<(At, String)>,
    limits: IntelMaxPrefix,
}

impl Imported {
    /// An empty import whose ranges are held to `limits`.
    pub(crate) fn new(limits: IntelMaxPrefix) -> Imported {
        Imported {
            limits,
            ..Imported::default()
        }
    }

    /// Counts an entry skipped for `reason`.
    pub(crate) fn skip(&mut self, at: At, reason: impl Into<String>) {
        let reason = reason.into();
        self.skip_with(at, reason.clone(), reason);
    }

    fn skip_with(&mut self, at: At, reason: String, example: String) {
        if self.examples.len() + self.pending.len() < EXAMPLES {
            self.pending.push((at, example));
        }
        let key = if self.skipped.len() >= MAX_REASONS && !self.skipped.contains_key(&reason) {
            "other reasons".to_string()
        } else {
            reason
        };
        *self.skipped.entry(key).or_insert(0) += 1;
    }

    /// Adds an indicator from a raw value, canonicalizing it; a value that does not canonicalize,
    /// or a range wider than the limits, is skipped with the reason.
    pub(crate) fn add(
        &mut self,
        at: impl FnOnce() -> At,
        kind: Option<IndicatorKind>,
        raw: &str,
        source: &str,
        fill: impl FnOnce(&mut Indicator),
    ) {
        let checked = canonical(kind, raw).and_then(|(kind, value)| {
            check_breadth(kind, &value, self.limits).map(|()| (kind, value))
        });
        match checked {
            Ok((kind, value)) => {
                let mut indicator = Indicator::new(kind, value, source);
                fill(&mut indicator);
                self.indicators.push(indicator);
            }
            Err(err) => self.skip_with(at(), err.reason.clone(), err.to_string()),
        }
    }

    /// Turns the pending examples into positioned reports, locating JSON places in `text`.
    pub(crate) fn locate(&mut self, file: &Path, text: &str) {
        let doc = json::Doc::new(file, text);
        for (at, message) in std::mem::take(&mut self.pending) {
            self.examples.push(match at {
                At::Line(line) => ImportError::at(file, line, 1, message),
                At::Json(path) => doc.error(&path, message),
            });
        }
    }

    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }
}

/// Options that apply to every format.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The source name stored with each indicator (default: the format's name).
    pub source: String,
    /// Plain lists: the kind of every line (guessed per line when absent).
    pub kind: Option<IndicatorKind>,
    /// Overrides the format's default confidence.
    pub confidence: Option<u8>,
    /// Overrides the format's default severity.
    pub severity: Option<u8>,
    /// The widest ranges accepted (`intel.max_prefix`).
    pub max_prefix: IntelMaxPrefix,
    /// Whether domain indicators cover their subdomains, for every domain in the file; `None`
    /// keeps the format's own rule (docs/intel.md, "Subdomains").
    pub subdomains: Option<bool>,
}

/// Reads `path` as `format`.
pub fn import(
    path: &Path,
    format: Format,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    if format == Format::MispFeed {
        let mut imported = misp::import_feed(path, options)?;
        apply_overrides(&mut imported, options);
        return Ok(imported);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ImportError::at(path, 1, 1, format!("cannot read the file: {e}")))?;
    import_text(path, &text, format, options)
}

/// Reads `text` (named `label` in errors) as `format`; a MISP feed directory cannot come as text.
pub fn import_text(
    label: &Path,
    text: &str,
    format: Format,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    let path = label;
    let mut imported = match format {
        Format::MispFeed => {
            return Err(ImportError::at(
                path,
                1,
                1,
                "a MISP feed is a directory; fetch its events as `misp`",
            ));
        }
        Format::Stix => stix::import(path, text, options)?,
        Format::Misp => misp::import_event_file(path, text, options)?,
        Format::Feodo => abusech::feodo(path, text, options)?,
        Format::Urlhaus => abusech::urlhaus(path, text, options)?,
        Format::Threatfox => abusech::threatfox(path, text, options)?,
        Format::Otx => otx_abuseipdb::otx(path, text, options)?,
        Format::Abuseipdb => otx_abuseipdb::abuseipdb(path, text, options)?,
        Format::Plain => plain(text, options),
    };
    imported.locate(path, text);
    apply_overrides(&mut imported, options);
    Ok(imported)
}

fn apply_overrides(imported: &mut Imported, options: &ImportOptions) {
    for indicator in &mut imported.indicators {
        if let Some(confidence) = options.confidence {
            indicator.confidence = confidence;
        }
        if let Some(severity) = options.severity {
            indicator.severity = severity;
        }
        if let Some(subdomains) = options.subdomains
            && indicator.kind == IndicatorKind::Domain
        {
            indicator.subdomains = subdomains;
        }
    }
}

fn plain(text: &str, options: &ImportOptions) -> Imported {
    let mut imported = Imported::new(options.max_prefix);
    for (index, line) in text.lines().enumerate() {
        let value = line.split('#').next().unwrap_or_default().trim();
        if value.is_empty() {
            continue;
        }
        imported.add(
            || At::Line(index + 1),
            options.kind,
            value,
            &options.source,
            |_| {},
        );
    }
    imported
}

/// Milliseconds since the epoch from the timestamp spellings feeds use: RFC 3339, naive ISO
/// (taken as UTC), `YYYY-MM-DD HH:MM:SS[ UTC]`, a bare date, or epoch seconds. `None` when the
/// text is absent or does not parse.
#[cfg(test)]
pub(crate) fn parse_time(text: &str) -> Option<i64> {
    parse_time_field(text).ok().flatten()
}

/// Like [`parse_time`], but a time that is given and does not parse is an error (a
/// `valid_until` of `tomorrow` must not become "never expires"); empty, `None` and `null` are
/// no time.
pub(crate) fn parse_time_field(original: &str) -> Result<Option<i64>, String> {
    let text = original.trim().trim_end_matches(" UTC");
    if text.is_empty() || text == "None" || text == "null" {
        return Ok(None);
    }
    let parsed = if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        Some(ts.as_millisecond())
    } else if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<i64>()
            .ok()
            .and_then(|s| s.checked_mul(1000))
            .filter(|ms| jiff::Timestamp::from_millisecond(*ms).is_ok())
    } else if let Ok(dt) = text.replace(' ', "T").parse::<jiff::civil::DateTime>() {
        dt.to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp().as_millisecond())
    } else if let Ok(date) = text.parse::<jiff::civil::Date>() {
        date.to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp().as_millisecond())
    } else {
        None
    };
    parsed.map(Some).ok_or_else(|| {
        let cut: String = original.chars().take(40).collect();
        format!(
            "`{}` is not a time (RFC 3339, `YYYY-MM-DD HH:MM:SS`, a date or epoch seconds)",
            cut.escape_debug()
        )
    })
}

/// Reads a comma-separated feed whose header may be a `#` comment (URLhaus, ThreatFox) or a
/// plain first row (Feodo), mapping columns by the header's names. Returns each data row as
/// (line number, column name → value).
pub(crate) fn csv_rows(
    path: &Path,
    text: &str,
    first_column: &str,
) -> Result<Vec<(usize, CsvRecord)>, ImportError> {
    let split = |line: &str| -> Result<Vec<String>, String> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .trim(csv::Trim::All)
            .flexible(true)
            .from_reader(line.as_bytes());
        match reader.records().next() {
            Some(Ok(record)) => Ok(record
                .iter()
                .map(|f| f.trim_matches('"').trim().to_string())
                .collect()),
            Some(Err(e)) => Err(e.to_string()),
            None => Ok(Vec::new()),
        }
    };
    let mut header: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let candidate = trimmed.trim_start_matches('#').trim();
        if header.is_none() && candidate.trim_start_matches('"').starts_with(first_column) {
            header = Some(split(candidate).map_err(|e| ImportError::at(path, number, 1, e))?);
            continue;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        let Some(columns) = &header else {
            return Err(ImportError::at(
                path,
                number,
                1,
                format!(
                    "a data row before the header (expected a header starting with `{first_column}`)"
                ),
            ));
        };
        let fields = split(trimmed).map_err(|e| ImportError::at(path, number, 1, e))?;
        if fields.len() < columns.len() {
            return Err(ImportError::at(
                path,
                number,
                1,
                format!("{} fields, the header has {}", fields.len(), columns.len()),
            ));
        }
        rows.push((number, columns.iter().cloned().zip(fields).collect()));
    }
    if header.is_none() {
        return Err(ImportError::at(
            path,
            1,
            1,
            format!("no header row starting with `{first_column}`"),
        ));
    }
    Ok(rows)
}

/// One CSV row: column name → value.
pub(crate) type CsvRecord = BTreeMap<String, String>;

/// Whether the text is JSON (starts with `{` or `[`) rather than CSV.
pub(crate) fn is_json(text: &str) -> bool {
    text.trim_start().starts_with(['{', '['])
}

#[cfg(test)]
mod tests;
