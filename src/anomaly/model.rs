//! The trained model: per event kind, the feature scaling, k-means centroids and the calibration
//! that turns a distance into a score in [0, 1].
//!
//! Why k-means distance: scoring is one pass over k centroids (a few dozen multiplications), the
//! distance splits into per-feature parts that say which features made an event unusual, the
//! fit takes milliseconds and is deterministic, and the model is small enough to read. A
//! one-class SVM scores against every support vector (slower per event, no per-feature
//! explanation); a k-NN distance needs the whole baseline at scoring time.
//!
//! Why the calibration holds: the latest fifth of the baseline (by event time) is held out of
//! the fit, so it meets the hosts, accounts and programs that appeared later, as live events
//! do. Its distances give the empirical chance `p` that a baseline event lies at least as far
//! from every centroid; past the 95th percentile the tail is an exponential fitted to the
//! excesses (peaks over a threshold), so rarer distances than the held-out set contains still
//! get a probability. The score is `1 - p^(1/3)`: 0.9 means `p = 0.001`, one baseline event in
//! a thousand is as far out, so at the default threshold about 0.1% of events like the
//! baseline are flagged.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::features::{self, Vocabulary};
use crate::event::{Event, EventKind};

/// What the first line of a model file says it is.
pub const FORMAT: &str = "palisade-anomaly-model";
/// The model file version this build reads and writes.
/// (Version 2: rarities per host, peer group and fleet, and a time-ordered hold-out.)
pub const VERSION: u32 = 2;

/// How much of the held-out distribution the empirical part covers; beyond it, the fitted tail.
pub const TAIL_SHARE: f64 = 0.05;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Held-out distances at evenly spaced quantiles, ascending (at most 1001 points).
    pub quantiles: Vec<f64>,
    /// The distance beyond which the exponential tail applies (the 95th percentile).
    pub tail_start: f64,
    /// Mean excess over `tail_start` of the held-out distances past it.
    pub tail_mean_excess: f64,
}

impl Calibration {
    /// From held-out distances (any order, at least one).
    pub fn fit(mut distances: Vec<f64>) -> Calibration {
        distances.sort_by(f64::total_cmp);
        let n = distances.len();
        let at = |q: f64| distances[((q * (n - 1) as f64).round() as usize).min(n - 1)];
        let points = n.min(1001);
        let quantiles: Vec<f64> = (0..points)
            .map(|i| at(i as f64 / (points - 1).max(1) as f64))
            .collect();
        let tail_start = at(1.0 - TAIL_SHARE);
        let excess: Vec<f64> = distances
            .iter()
            .filter(|d| **d > tail_start)
            .map(|d| d - tail_start)
            .collect();
        let mean_excess = if excess.is_empty() {
            0.0
        } else {
            excess.iter().sum::<f64>() / excess.len() as f64
        };
        Calibration {
            quantiles,
            tail_start,
            // A tail with no spread would make every farther event certain; keep it finite.
            tail_mean_excess: mean_excess.max(0.05 * tail_start).max(1e-6),
        }
    }

    /// The chance that a baseline event is at least `distance` from every centroid.
    pub fn tail_probability(&self, distance: f64) -> f64 {
        if distance > self.tail_start {
            return TAIL_SHARE * (-(distance - self.tail_start) / self.tail_mean_excess).exp();
        }
        let below = self.quantiles.partition_point(|q| *q < distance);
        let share = 1.0 - below as f64 / self.quantiles.len().max(1) as f64;
        share.max(TAIL_SHARE)
    }

    /// The score of a distance: `1 - p^(1/3)`, so 0.9 is one baseline event in a thousand.
    pub fn score(&self, distance: f64) -> f64 {
        (1.0 - self.tail_probability(distance).cbrt()).clamp(0.0, 1.0)
    }
}

/// The model of one event kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindModel {
    pub features: Vec<String>,
    /// Per feature: subtracted, then divided by `scale`, before distances are taken.
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    /// Cluster centres in scaled space.
    pub centroids: Vec<Vec<f64>>,
    pub calibration: Calibration,
}

/// What training saw and produced, kept in the file for whoever reads it later.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    /// The baseline file, as given on the command line.
    pub baseline: String,
    pub events: usize,
    /// Per event kind: (events fitted, events held out for calibration, clusters).
    pub kinds: BTreeMap<String, KindSummary>,
    /// Kinds without enough events to model; their events are not scored.
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KindSummary {
    pub fitted: usize,
    pub held_out: usize,
    pub clusters: usize,
    /// Share of the held-out events scoring at or above 0.9 (expected near 0.001).
    pub held_out_above_0_9: f64,
}

/// A model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub format: String,
    pub version: u32,
    pub trained_at: String,
    pub summary: TrainingSummary,
    pub vocabulary: Vocabulary,
    /// By event kind name.
    pub kinds: BTreeMap<String, KindModel>,
    #[serde(skip)]
    by_kind: [Option<KindModel>; 4],
}

/// The index of the centre nearest to `point` (scaled features) and its squared distance.
pub fn nearest_centre(
    centroids: &[Vec<f64>],
    point: impl Iterator<Item = f64> + Clone,
) -> Option<(usize, f64)> {
    centroids
        .iter()
        .map(|c| {
            c.iter()
                .zip(point.clone())
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
        })
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

/// One event's score and the features that pushed it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub score: f64,
    pub distance: f64,
    /// The features with the largest share of the distance: name, the event's value, share.
    pub drivers: Vec<(&'static str, f64, f64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read the model `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("`{path}` is not a palisade anomaly model: {message}")]
    Invalid { path: String, message: String },
    #[error("cannot write the model `{path}`: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl Model {
    pub fn new(
        summary: TrainingSummary,
        vocabulary: Vocabulary,
        kinds: BTreeMap<String, KindModel>,
    ) -> Model {
        let mut model = Model {
            format: FORMAT.into(),
            version: VERSION,
            trained_at: jiff::Timestamp::now().to_string(),
            summary,
            vocabulary,
            kinds,
            by_kind: Default::default(),
        };
        model.index();
        model
    }

    fn index(&mut self) {
        self.vocabulary.index();
        for kind in EventKind::ALL {
            self.by_kind[kind.index()] = self.kinds.get(kind.as_str()).cloned();
        }
    }

    /// Reads and checks a model file.
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Read {
            path: shown.clone(),
            source,
        })?;
        Model::from_text(&text).map_err(|(at, message)| ModelError::Invalid {
            path: shown,
            message: match at {
                Some((line, column)) => format!("line {line}, column {column}: {message}"),
                None => message,
            },
        })
    }

    /// Parses and checks a model file's text; an error says where (line, column) when it can.
    pub fn from_text(text: &str) -> Result<Model, (Option<(usize, usize)>, String)> {
        let at = |e: serde_json::Error| (Some((e.line(), e.column())), e.to_string());
        let invalid = |message: String| (None, message);
        // Format and version first: a file of another version fails on its own terms, not on
        // the first field whose shape changed.
        #[derive(Deserialize)]
        struct Header {
            format: String,
            version: u32,
        }
        let header: Header = serde_json::from_str(text).map_err(at)?;
        if header.format != FORMAT {
            return Err(invalid(format!(
                "its `format` is `{}`, expected `{FORMAT}`",
                header.format
            )));
        }
        if header.version != VERSION {
            return Err(invalid(format!(
                "it is version {}, this palisade reads version {VERSION}; train it again with `palisade train`",
                header.version
            )));
        }
        let mut model: Model = serde_json::from_str(text).map_err(at)?;
        model.vocabulary.check().map_err(invalid)?;
        for (name, kind) in &model.kinds {
            let Some(event_kind) = EventKind::parse(name) else {
                return Err(invalid(format!("`kinds.{name}` is not an event type")));
            };
            let expected = features::names(event_kind);
            let width = expected.len();
            if kind.features != expected {
                return Err(invalid(format!(
                    "`kinds.{name}.features` is {:?}; this palisade computes {expected:?}",
                    kind.features
                )));
            }
            if kind.mean.len() != width
                || kind.scale.len() != width
                || kind.centroids.is_empty()
                || kind.centroids.iter().any(|c| c.len() != width)
                || kind.calibration.quantiles.is_empty()
            {
                return Err(invalid(format!(
                    "`kinds.{name}` does not have {width} values per feature vector, or has no centroids or calibration"
                )));
            }
        }
        model.index();
        Ok(model)
    }

    /// Writes the model as pretty JSON (readable and diffable in a repository).
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let shown = path.display().to_string();
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| ModelError::Write {
                path: shown.clone(),
                source,
            })?;
        }
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        // Written beside, then renamed: an engine watching the file never reads half of it.
        let partial = path.with_extension("model.partial");
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|source| ModelError::Write {
                path: shown,
                source,
            })
    }

    /// The distance of an event from the nearest centre and that centre's index; `None` when
    /// its kind has no model. `scratch` holds the scaled features afterwards.
    fn distance(&self, event: &Event, scratch: &mut Vec<f64>) -> Option<(f64, usize, &KindModel)> {
        let model = self.by_kind[event.kind.index()].as_ref()?;
        features::extract(event, &self.vocabulary, scratch);
        for (x, (m, s)) in scratch.iter_mut().zip(model.mean.iter().zip(&model.scale)) {
            *x = (*x - m) / s;
        }
        let (nearest, squared) = nearest_centre(&model.centroids, scratch.iter().copied())?;
        Some((squared.sqrt(), nearest, model))
    }

    /// The score of an event alone (no explanation): the cheap path for every event.
    pub fn score_only(&self, event: &Event, scratch: &mut Vec<f64>) -> Option<f64> {
        let (distance, _, model) = self.distance(event, scratch)?;
        Some(model.calibration.score(distance))
    }

    /// Scores an event and names the features that drove the score; `None` when its kind has
    /// no model. `scratch` is reused between calls.
    pub fn score(&self, event: &Event, scratch: &mut Vec<f64>) -> Option<Scored> {
        let (distance, nearest, model) = self.distance(event, scratch)?;
        let squared = distance * distance;
        let centre = &model.centroids[nearest];
        let mut raw = Vec::new();
        features::extract(event, &self.vocabulary, &mut raw);
        let mut drivers: Vec<(&'static str, f64, f64)> = features::names(event.kind)
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let part = (scratch[i] - centre[i]).powi(2);
                (*name, raw[i], part / squared.max(f64::MIN_POSITIVE))
            })
            .collect();
        drivers.sort_by(|a, b| b.2.total_cmp(&a.2));
        drivers.truncate(3);
        Some(Scored {
            score: model.calibration.score(distance),
            distance,
            drivers,
        })
    }
}

/// Everything behind one event's score, for `palisade model explain`.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub score: f64,
    pub distance: f64,
    /// Every feature in vector order: name, the event's value, its share of the distance.
    pub features: Vec<(&'static str, f64, f64)>,
    /// What the baseline held for each counted combination of the event.
    pub seen: Vec<(features::Table, String, features::Seen)>,
    /// The host, its peer group (name shape) and the hosts the baseline saw in it.
    pub host: String,
    pub peer_group: String,
    pub peers: Vec<String>,
}

impl Model {
    /// The score of an event with every feature's value and share and what the baseline held
    /// for its host and peers; `None` when its kind has no model.
    pub fn explain(&self, event: &Event) -> Option<Explanation> {
        let mut scratch = Vec::new();
        let (distance, nearest, model) = self.distance(event, &mut scratch)?;
        let centre = &model.centroids[nearest];
        let mut raw = Vec::new();
        features::extract(event, &self.vocabulary, &mut raw);
        let squared = (distance * distance).max(f64::MIN_POSITIVE);
        let features = features::names(event.kind)
            .iter()
            .enumerate()
            .map(|(i, name)| (*name, raw[i], (scratch[i] - centre[i]).powi(2) / squared))
            .collect();
        let host = event.host.as_deref().unwrap_or("");
        Some(Explanation {
            score: model.calibration.score(distance),
            distance,
            features,
            seen: features::seen_of(event, &self.vocabulary),
            host: host.to_string(),
            peer_group: features::shape(host),
            peers: self
                .vocabulary
                .peers_of(host)
                .map(|p| p.iter().cloned().collect())
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calibration_maps_one_in_a_thousand_to_0_9() {
        // Distances 0..10000 uniformly: the exponential tail starts at 9500.
        let calibration = Calibration::fit((0..10_000).map(f64::from).collect());
        assert!(calibration.score(100.0) < 0.1);
        assert!((calibration.score(9_000.0) - (1.0 - 0.1f64.cbrt())).abs() < 0.02);
        // Past the tail start, p falls off exponentially: p = 0.001 at about 3.9 mean excesses.
        let at_0_9 =
            calibration.tail_start + calibration.tail_mean_excess * (TAIL_SHARE / 0.001).ln();
        assert!((calibration.score(at_0_9) - 0.9).abs() < 1e-9);
        assert!(calibration.score(1e9) <= 1.0);
    }

    /// A version 1 file (counts per table, not per scope) failed with "expected a map" at some
    /// line of its vocabulary instead of saying it is an older model.
    #[test]
    fn an_older_model_file_is_named_by_its_version() {
        let old = r#"{"format": "palisade-anomaly-model", "version": 1, "trained_at": "x",
            "summary": {"baseline": "b", "events": 0, "kinds": {}, "skipped": []},
            "vocabulary": {"totals": {"domain": 1}, "counts": {"domain": {"bing.com": 1}}},
            "kinds": {}}"#;
        let (at, message) = Model::from_text(old).expect_err("refused");
        assert_eq!(at, None);
        assert!(message.contains("it is version 1"), "{message}");
        assert!(message.contains("palisade train"), "{message}");
    }

    #[test]
    fn scores_rise_with_distance() {
        let calibration = Calibration::fit((0..1000).map(|i| f64::from(i) / 100.0).collect());
        let mut last = -1.0;
        for d in [0.0, 1.0, 5.0, 9.0, 9.6, 10.0, 12.0, 20.0] {
            let s = calibration.score(d);
            assert!(s >= last, "{d}: {s} < {last}");
            last = s;
        }
    }
}
