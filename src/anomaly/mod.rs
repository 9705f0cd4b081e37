//! The anomaly stage: for events no rule matched, a model trained on normal activity says how
//! unusual they are; above the threshold they become detections with stage `anomaly`.
//!
//! ```text
//! baseline.jsonl ──► train (features, k-means, calibration) ──► models/anomaly.model
//! event (no rule matched) ──► features ──► distance to nearest centre ──► score ──► detection
//! ```
//!
//! `features` turns events into numbers, `model` holds what training produced and scores,
//! `train` fits, `evaluate` measures a model on labelled sets and draws the score histograms,
//! `synth` generates the fleet data the shipped model and its tests use.

mod config;
pub mod evaluate;
pub mod features;
pub mod learning;
pub mod model;
mod plot;
pub mod synth;
pub mod train;

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

pub use config::{AnomalyConfig, LearningConfig};
pub use model::{Model, ModelError, Scored};

use crate::detection::{Detection, Entity, Severity, Stage};
use crate::event::{Event, EventKind};

/// The id anomaly detections carry where a rule's would be; playbooks trigger on it.
pub const DETECTOR_ID: &str = "anomaly-model";

/// The model the engine scores with, swapped whole when its file changes.
#[derive(Clone, Default)]
pub struct AnomalyHandle {
    model: Arc<ArcSwapOption<Model>>,
    threshold: f64,
}

impl AnomalyHandle {
    pub fn new(model: Option<Model>, threshold: f64) -> AnomalyHandle {
        AnomalyHandle {
            model: Arc::new(ArcSwapOption::from(model.map(Arc::new))),
            threshold,
        }
    }

    pub fn current(&self) -> Option<Arc<Model>> {
        self.model.load_full()
    }

    /// The score at which an event becomes a detection.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    pub fn swap(&self, model: Model) {
        self.model.store(Some(Arc::new(model)));
    }

    /// Scores `event` and returns a detection when it reaches the threshold.
    pub fn detect(&self, event: &Event, scratch: &mut Vec<f64>) -> Option<Detection> {
        let guard = self.model.load();
        let model = guard.as_ref()?;
        if model.score_only(event, scratch)? < self.threshold {
            return None;
        }
        Some(detection(event, &model.score(event, scratch)?))
    }
}

/// The detection for an event scored above the threshold: its score, and its title names the
/// features that drove it.
pub fn detection(event: &Event, scored: &Scored) -> Detection {
    let drivers: Vec<String> = scored
        .drivers
        .iter()
        .map(|(name, value, share)| format!("{name}={value:.2} ({:.0}%)", share * 100.0))
        .collect();
    let entity = match event.kind {
        EventKind::NetworkConnection => event.remote_ip.map(|ip| Entity::Address { ip }),
        EventKind::Login => event
            .source_ip
            .map(|ip| Entity::Address { ip })
            .or_else(|| event.user.clone().map(|name| Entity::User { name })),
        _ => event.pid.map(|pid| Entity::Process {
            pid,
            name: event.name.clone(),
        }),
    };
    Detection {
        event_id: event.id.clone(),
        rule: Arc::from(DETECTOR_ID),
        stage: Stage::Anomaly,
        severity: Severity::High,
        status: crate::detection::RuleStatus::Stable,
        title: format!(
            "Unusual {} (score {:.3}): {}",
            event.kind,
            scored.score,
            drivers.join(", ")
        ),
        tags: Arc::from(vec!["anomaly".to_string()]),
        entity,
        // Four decimals: enough to rank, and stable across builds in snapshots.
        score: Some((scored.score * 10_000.0).round() / 10_000.0),
        intel: Vec::new(),
        attribution: None,
    }
}

/// The example model shipped with palisade (trained on the generated office fleet), relative to
/// the content directory: `palisade test` cases with `anomaly: true` and `palisade bench`
/// score with it when the config names no model file. `palisade run` never does by itself.
pub const EXAMPLE_MODEL: &str = "models/anomaly.model";

/// The model file for tests and benchmarks: the configured one, else the shipped example.
pub fn model_or_example(config: &crate::anomaly::AnomalyConfig) -> std::path::PathBuf {
    config
        .model
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(EXAMPLE_MODEL))
}

/// Loads the model at `path` when it exists; a missing file means no anomaly stage, a broken one
/// is an error.
pub fn load_optional(path: &Path) -> Result<Option<Model>, ModelError> {
    if !path.exists() {
        return Ok(None);
    }
    Model::load(path).map(Some)
}
