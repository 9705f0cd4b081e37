//! Fitting a model to a baseline of normal events (`palisade train`).

use std::collections::BTreeMap;

use linfa::DatasetBase;
use linfa::traits::Fit;
use linfa_clustering::KMeans;
use ndarray::Array2;

use super::features::{self, Vocabulary};
use super::model::{Calibration, KindModel, KindSummary, Model, TrainingSummary, nearest_centre};
use crate::event::{Event, EventKind};

/// The latest fifth of each kind's events (by event time) is held out of the fit to calibrate
/// the score: they meet the hosts, users and programs that appeared after the rest, as live
/// events will.
const HOLD_OUT_SHARE: f64 = 0.2;
/// The least scale of a rarity feature. A rarity is in [0, 1]; in a fleet whose baseline never
/// shows a new value its spread is tiny, and dividing by it would let one unseen value push an
/// event arbitrarily far by itself. With this floor one rarity moves an event at most
/// `1 / RARITY_SCALE_FLOOR` scaled units; the held-out part then says how often that happens.
pub const RARITY_SCALE_FLOOR: f64 = 0.25;
/// Fewer events of a kind than this in the baseline and the kind is not modelled.
pub const MIN_EVENTS_PER_KIND: usize = 200;
/// Clusters per kind, at most; fewer when the kind has few events.
const MAX_CLUSTERS: usize = 12;

/// Why no model could be fitted.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(
        "no event type has at least {MIN_EVENTS_PER_KIND} events in `{baseline}`; a baseline needs weeks of normal activity, or at least a few thousand events"
    )]
    TooFewEvents { baseline: String },
    #[error("fitting {kind}: {message}")]
    Fit { kind: EventKind, message: String },
    #[error("the features do not form a matrix: {0}")]
    Shape(#[from] ndarray::ShapeError),
}

/// Fits one model per event kind with enough events. `baseline` names the file, for the summary.
pub fn train(events: &[Event], baseline: &str) -> Result<Model, TrainError> {
    let mut summary = TrainingSummary {
        baseline: baseline.to_string(),
        events: events.len(),
        ..TrainingSummary::default()
    };
    // Split first, so the vocabulary (and so the rarity features) comes from the fitted part
    // only: the held-out part then meets unseen names as often as live events will.
    let mut fit: BTreeMap<EventKind, Vec<&Event>> = BTreeMap::new();
    let mut held: BTreeMap<EventKind, Vec<&Event>> = BTreeMap::new();
    let mut vocabulary = Vocabulary::default();
    for kind in EventKind::ALL {
        let mut of_kind: Vec<&Event> = events.iter().filter(|e| e.kind == kind).collect();
        // Stable: events with one time keep their order, so the split is reproducible.
        of_kind.sort_by_key(|e| e.timestamp_ms);
        let keep = of_kind.len() - (of_kind.len() as f64 * HOLD_OUT_SHARE).round() as usize;
        let later = of_kind.split_off(keep);
        for event in &of_kind {
            vocabulary.learn(event);
        }
        fit.insert(kind, of_kind);
        held.insert(kind, later);
    }
    vocabulary.index();
    let mut kinds = BTreeMap::new();
    let mut scratch = Vec::new();
    for kind in EventKind::ALL {
        let fitted = fit.remove(&kind).unwrap_or_default();
        let held_out = held.remove(&kind).unwrap_or_default();
        if fitted.len() + held_out.len() < MIN_EVENTS_PER_KIND {
            summary.skipped.push(format!(
                "{kind}: {} events, at least {MIN_EVENTS_PER_KIND} needed",
                fitted.len() + held_out.len()
            ));
            continue;
        }
        let width = features::names(kind).len();
        let matrix = |events: &[&Event], scratch: &mut Vec<f64>| {
            let mut values = Vec::with_capacity(events.len() * width);
            for event in events {
                features::extract(event, &vocabulary, scratch);
                values.extend_from_slice(scratch);
            }
            Array2::from_shape_vec((events.len(), width), values)
        };
        let raw = matrix(&fitted, &mut scratch)?;
        let mean: Vec<f64> = (0..width)
            .map(|j| raw.column(j).mean().unwrap_or(0.0))
            .collect();
        let scale: Vec<f64> = (0..width)
            .map(|j| {
                let sd = raw.column(j).std(0.0);
                if features::rarity_table(kind, j).is_some() {
                    sd.max(RARITY_SCALE_FLOOR)
                } else if sd > 1e-9 {
                    sd
                } else {
                    // A feature constant in the baseline keeps unit scale, so any change shows.
                    1.0
                }
            })
            .collect();
        let standardize = |mut m: Array2<f64>| {
            for mut row in m.rows_mut() {
                for (j, x) in row.iter_mut().enumerate() {
                    *x = (*x - mean[j]) / scale[j];
                }
            }
            m
        };
        let scaled = standardize(raw);
        let clusters = (fitted.len() / 50).clamp(1, MAX_CLUSTERS);
        let fitted_model = KMeans::params(clusters)
            .n_runs(4)
            .max_n_iterations(300)
            .tolerance(1e-5)
            .fit(&DatasetBase::from(scaled))
            .map_err(|e| TrainError::Fit {
                kind,
                message: e.to_string(),
            })?;
        let centroids: Vec<Vec<f64>> = fitted_model
            .centroids()
            .rows()
            .into_iter()
            .map(|r| r.to_vec())
            .collect();
        let held_scaled = standardize(matrix(&held_out, &mut scratch)?);
        let distances: Vec<f64> = held_scaled
            .rows()
            .into_iter()
            .filter_map(|row| nearest_centre(&centroids, row.iter().copied()))
            .map(|(_, squared)| squared.sqrt())
            .collect();
        let calibration = Calibration::fit(distances.clone());
        let above = distances
            .iter()
            .filter(|d| calibration.score(**d) >= 0.9)
            .count();
        summary.kinds.insert(
            kind.as_str().to_string(),
            KindSummary {
                fitted: fitted.len(),
                held_out: held_out.len(),
                clusters,
                held_out_above_0_9: above as f64 / distances.len().max(1) as f64,
            },
        );
        kinds.insert(
            kind.as_str().to_string(),
            KindModel {
                features: features::names(kind)
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                mean,
                scale,
                centroids,
                calibration,
            },
        );
    }
    if kinds.is_empty() {
        return Err(TrainError::TooFewEvents {
            baseline: baseline.to_string(),
        });
    }
    Ok(Model::new(summary, vocabulary, kinds))
}
