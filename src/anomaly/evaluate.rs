//! Judging a model on labelled sets (`palisade model eval`): detection rate on attacks, false
//! positives on normal events, both at the threshold, and the two score distributions.

use super::model::Model;
use crate::event::Event;

/// Scores of the events the model covers.
pub fn scores(model: &Model, events: &[Event]) -> Vec<f64> {
    let mut scratch = Vec::new();
    events
        .iter()
        .filter_map(|e| model.score_only(e, &mut scratch))
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub threshold: f64,
    pub normal: Vec<f64>,
    pub attacks: Vec<f64>,
}

impl Evaluation {
    pub fn new(model: &Model, normal: &[Event], attacks: &[Event], threshold: f64) -> Evaluation {
        Evaluation {
            threshold,
            normal: scores(model, normal),
            attacks: scores(model, attacks),
        }
    }

    fn share_at_or_above(scores: &[f64], threshold: f64) -> f64 {
        scores.iter().filter(|s| **s >= threshold).count() as f64 / scores.len().max(1) as f64
    }

    /// Share of attack events at or above the threshold.
    pub fn detection_rate(&self) -> f64 {
        Self::share_at_or_above(&self.attacks, self.threshold)
    }

    /// Share of normal events at or above the threshold.
    pub fn false_positive_rate(&self) -> f64 {
        Self::share_at_or_above(&self.normal, self.threshold)
    }

    /// Writes the two score histograms as a PNG.
    pub fn plot(&self, path: &std::path::Path) -> Result<(), String> {
        super::plot::histograms(path, &self.normal, &self.attacks, self.threshold)
    }
}

impl std::fmt::Display for Evaluation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "threshold:           {:.2}", self.threshold)?;
        writeln!(
            f,
            "detection rate:      {:.1}%  ({} of {} attack events at or above the threshold)",
            self.detection_rate() * 100.0,
            (self.detection_rate() * self.attacks.len() as f64).round(),
            self.attacks.len()
        )?;
        write!(
            f,
            "false-positive rate: {:.2}%  ({} of {} normal events at or above the threshold)",
            self.false_positive_rate() * 100.0,
            (self.false_positive_rate() * self.normal.len() as f64).round(),
            self.normal.len()
        )
    }
}
