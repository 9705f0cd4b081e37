//! The anomaly stage's config type. The config module, above this one, assembles it into
//! `palisade.yaml` and checks it.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The anomaly stage (`docs/anomaly.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Score events no rule matched. Off, the stage neither learns nor scores.
    pub enabled: bool,
    /// A model file `palisade train` wrote, relative to the content directory, reloaded when it
    /// changes. Left out (the default), the engine learns this deployment's own model
    /// (`learning`) and scores nothing until it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    /// Scores at or above this become detections; 0.9 means one baseline event in a thousand
    /// was as unusual.
    pub threshold: f64,
    /// Learning the deployment's normal inside the engine, when no `model` file is named.
    pub learning: LearningConfig,
}

impl Default for AnomalyConfig {
    fn default() -> AnomalyConfig {
        AnomalyConfig {
            enabled: true,
            model: None,
            threshold: 0.9,
            learning: LearningConfig::default(),
        }
    }
}

impl AnomalyConfig {
    /// Whether the running engine learns its own model: the stage is on and names no file.
    pub fn learns(&self) -> bool {
        self.enabled && self.model.is_none() && self.learning.enabled
    }
}

/// How the engine learns its model (`docs/anomaly.md#learning`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct LearningConfig {
    /// Learn when no model file is named. Off, and without a model file, nothing is scored.
    pub enabled: bool,
    /// Events seen (not flagged by rules, intel or the model) before the first model is trained.
    pub min_events: u64,
    /// Days of event time the sample must span before the first model is trained.
    pub min_days: u32,
    /// The most events the sample keeps, spread over event type, host and hour of day.
    pub max_sample: usize,
    /// The most events kept per (event type, host, hour of day): a uniform sample of what that
    /// bucket saw.
    pub per_bucket: usize,
    /// Sample events older than this many days (by event time) are dropped: the sliding window
    /// each retrain fits.
    pub window_days: u32,
    /// How often a new model is fitted over the window once the first one is in use (`24h`).
    pub retrain_every: crate::duration::Span,
    /// How often the engine checks its progress and the stored models (`30s`).
    pub check_every: crate::duration::Span,
    /// A retrain whose alert rate on the newest day's held-out events is more than this many
    /// times the model in use's (or the 0.1% calibration target, if higher) is held for
    /// `palisade model accept`.
    pub drift_factor: f64,
    /// A model with nothing in use to compare with (the first one, or any trained while none
    /// is in use) is held for `palisade model accept` when more than this share of the sample's
    /// held-out events score at or above the threshold. At 0.9 the calibration expects one in
    /// a thousand; the default leaves room for the noise of a held-out set of a few thousand.
    pub max_held_out_rate: f64,
    /// Where the model in use is written (temporary file, then rename), relative to the content
    /// directory; a held retrain is written beside it with `.held` added.
    pub model_file: PathBuf,
}

impl Default for LearningConfig {
    fn default() -> LearningConfig {
        LearningConfig {
            enabled: true,
            min_events: 50_000,
            min_days: 7,
            max_sample: 100_000,
            per_bucket: 500,
            window_days: 28,
            retrain_every: const { crate::duration::Span::secs(86_400) },
            check_every: const { crate::duration::Span::secs(30) },
            drift_factor: 3.0,
            max_held_out_rate: 0.002,
            model_file: PathBuf::from("data/learned.model"),
        }
    }
}
