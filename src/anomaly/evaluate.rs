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

/// One generated fleet judged after learning its own baseline: a row of the table in
/// docs/anomaly.md.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetRow {
    pub name: &'static str,
    pub hosts: usize,
    pub joiners: usize,
    pub learning_events: usize,
    /// Normal events after the learning period, and the share of them at or above the
    /// threshold.
    pub later_normal: usize,
    pub normal_flagged: f64,
    /// Labelled attacks, and the share of them at or above the threshold (an attack of a kind
    /// the model does not cover counts as missed).
    pub attacks: usize,
    pub attacks_detected: f64,
    /// Missed attacks by label.
    pub missed: std::collections::BTreeMap<String, usize>,
}

fn events_of(values: &[serde_json::Value], what: &str) -> Result<Vec<Event>, String> {
    values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            crate::event::normalize(value.to_string().as_bytes())
                .map_err(|e| format!("{what} event {}: {}", i + 1, e.message))
        })
        .collect()
}

/// Generates `fleet`, trains on its learning period with [`super::train::train`] and judges the
/// model on what came after: normal activity (joiners included) and the labelled attacks.
pub fn judge_fleet(fleet: &super::synth::Fleet, threshold: f64) -> Result<FleetRow, String> {
    let generated = fleet.generate();
    let learning = events_of(&generated.learning, "learning")?;
    let normal = events_of(&generated.later_normal, "normal")?;
    let attacks = events_of(&generated.attacks, "attack")?;
    let model = super::train::train(&learning, fleet.name).map_err(|e| e.to_string())?;
    let evaluation = Evaluation::new(&model, &normal, &[], threshold);
    let mut scratch = Vec::new();
    let mut missed = std::collections::BTreeMap::new();
    for (value, event) in generated.attacks.iter().zip(&attacks) {
        if model
            .score_only(event, &mut scratch)
            .is_none_or(|s| s < threshold)
        {
            let label = value["label"].as_str().unwrap_or("unlabelled").to_string();
            *missed.entry(label).or_insert(0) += 1;
        }
    }
    let caught = attacks.len() - missed.values().sum::<usize>();
    Ok(FleetRow {
        name: fleet.name,
        hosts: fleet.workstations + fleet.servers + fleet.joiners,
        joiners: fleet.joiners,
        learning_events: learning.len(),
        later_normal: evaluation.normal.len(),
        normal_flagged: evaluation.false_positive_rate(),
        attacks: attacks.len(),
        attacks_detected: caught as f64 / attacks.len().max(1) as f64,
        missed,
    })
}

/// The table of [`judge_fleet`] rows, as Markdown.
pub fn fleet_table(rows: &[FleetRow]) -> String {
    let mut out = String::from(
        "| fleet | hosts (joined later) | learning events | later normal events | normal flagged at 0.9 | attacks | attacks detected |\n| --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {} ({}) | {} | {} | {:.2}% | {} | {:.1}% |\n",
            row.name,
            row.hosts,
            row.joiners,
            row.learning_events,
            row.later_normal,
            row.normal_flagged * 100.0,
            row.attacks,
            row.attacks_detected * 100.0
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::synth::Fleet;

    /// Issue 13: a model learned on a fleet's own baseline must flag at most 0.5% of its later
    /// normal events (new hosts, new users and new programs included) and catch at least 90%
    /// of the labelled attacks. Two shapes, made small to keep the test fast: a shop with strong
    /// habits, and a campus with many hosts and fifteen joiners at 400 events a day.
    #[test]
    fn generated_fleets_flag_few_normal_events_and_most_attacks_after_learning() {
        let shapes = Fleet::shapes();
        let small = |name: &str, events_per_day: usize, attacks: usize| {
            let mut fleet = shapes
                .iter()
                .find(|f| f.name == name)
                .cloned()
                .expect("a fleet shape");
            fleet.events_per_day = events_per_day;
            fleet.attacks = attacks;
            fleet
        };
        for fleet in [small("shop", 400, 500), small("campus", 400, 500)] {
            let row = judge_fleet(&fleet, 0.9).expect("judged");
            assert!(row.later_normal > 1000, "{row:?}");
            assert!(row.normal_flagged <= 0.005, "{row:?}");
            assert!(row.attacks_detected >= 0.9, "{row:?}");
        }
    }

    /// The shop fleet, generated, and a model trained on its learning period: once for every
    /// test that needs it (training is the slow part).
    fn shop_trained() -> &'static (
        Fleet,
        crate::anomaly::synth::FleetEvents,
        crate::anomaly::Model,
    ) {
        static SHOP: std::sync::OnceLock<(
            Fleet,
            crate::anomaly::synth::FleetEvents,
            crate::anomaly::Model,
        )> = std::sync::OnceLock::new();
        SHOP.get_or_init(|| {
            let fleet = Fleet::shapes()
                .into_iter()
                .find(|f| f.name == "shop")
                .expect("shop");
            let generated = fleet.generate();
            let learning = events_of(&generated.learning, "learning").expect("events");
            let model = crate::anomaly::train::train(&learning, "shop").expect("trained");
            (fleet, generated, model)
        })
    }

    /// Issue 13, item 3: a value never seen anywhere, in an otherwise ordinary event, scored
    /// 1.000 (the rarity alone was most of the distance). Now it is as unusual as the fleet's own
    /// rate of new values says, and an attack with several unusual parts still stands out.
    #[test]
    fn a_never_seen_value_alone_does_not_score_1() {
        let (_, generated, model) = shop_trained();
        let later = events_of(&generated.later_normal, "normal").expect("events");
        let ordinary = later
            .iter()
            .find(|e| {
                e.kind == crate::event::EventKind::ProcessCreate
                    && e.host.as_deref() == Some("pc-03")
                    && e.name.as_deref() == Some("outlook.exe")
            })
            .expect("an ordinary start");
        let mut scratch = Vec::new();
        let score =
            |e: &Event, scratch: &mut Vec<f64>| model.score_only(e, scratch).expect("scored");
        assert!(score(ordinary, &mut scratch) < 0.9);

        // A new account on a known host, and a program nobody in the fleet ever started.
        let mut new_user = ordinary.clone();
        new_user.user = Some("SHOP\\newhire".into());
        let mut new_program = ordinary.clone();
        new_program.name = Some("zoom.exe".into());
        for event in [&new_user, &new_program] {
            let s = score(event, &mut scratch);
            assert!(s < 0.99, "{s}: {event:?}");
        }

        // The same workstation starting a shell from Word with an encoded command: several
        // unusual parts at once.
        let mut attack = ordinary.clone();
        attack.parent_name = Some("winword.exe".into());
        attack.name = Some("powershell.exe".into());
        attack.cmdline = Some(format!(
            "powershell.exe -nop -w hidden -enc {}",
            "SQBFAFgA".repeat(60)
        ));
        assert!(score(&attack, &mut scratch) >= 0.9);
    }

    /// Issue 13, item 3: hosts and users that join after learning and do what their peers do
    /// were strangers to the model, so all their events scored near 1.
    #[test]
    fn a_new_host_and_user_doing_what_peers_do_score_as_normal() {
        let (fleet, generated, model) = shop_trained();
        // Joiners are the workstations numbered past the fleet's own.
        let joiners: Vec<String> = (fleet.workstations + 1..=fleet.workstations + fleet.joiners)
            .map(|w| format!("{}{w:02}", fleet.workstation_prefix))
            .collect();
        let theirs: Vec<Event> = events_of(&generated.later_normal, "normal")
            .expect("events")
            .into_iter()
            .filter(|e| e.host.as_ref().is_some_and(|h| joiners.contains(h)))
            .collect();
        assert!(theirs.len() > 200, "{}", theirs.len());
        let flagged = scores(model, &theirs).iter().filter(|s| **s >= 0.9).count();
        assert!(
            flagged as f64 <= 0.01 * theirs.len() as f64,
            "{flagged} of {}",
            theirs.len()
        );
    }
}
