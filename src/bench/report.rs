//! What `palisade bench pipeline` measured, each run and the medians.

use serde::Serialize;

use super::probe::Latency;

/// One palisade run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunFigures {
    pub offered_per_second: Option<f64>,
    pub events_per_second: f64,
    pub to_recorded: Latency,
    pub to_dispatched: Latency,
}

/// One round: the ceiling and the three palisade runs, measured one after the other.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Round {
    pub ceiling_per_second: f64,
    pub full: RunFigures,
    /// Full load with rules and playbooks only.
    pub rules_only: RunFigures,
    pub half: RunFigures,
}

impl Round {
    /// Full-load events/s over the ceiling measured in the same round.
    pub fn ratio(&self) -> f64 {
        self.full.events_per_second / self.ceiling_per_second.max(1.0)
    }

    pub fn rules_only_ratio(&self) -> f64 {
        self.rules_only.events_per_second / self.ceiling_per_second.max(1.0)
    }
}

/// What the engine ran with, and every round.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BenchReport {
    pub events: usize,
    pub detections_per_run: usize,
    /// Rhai rules and Sigma rules loaded, generated ones included.
    pub rules: usize,
    pub sigma_rules: usize,
    pub generated_rules: usize,
    pub playbooks: usize,
    /// Indicators in the matcher the engine loaded.
    pub indicators: usize,
    /// Whether the anomaly model and the tracker ran in `full` and `half`.
    pub model: bool,
    pub tracker: bool,
    pub rounds: Vec<Round>,
}

/// The median of `values` (the lower middle one of an even count); 0 when there are none.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[(values.len() - 1) / 2]
}

impl BenchReport {
    fn median_of(&self, figure: impl Fn(&Round) -> f64) -> f64 {
        median(self.rounds.iter().map(figure).collect())
    }

    /// The median round, figure by figure.
    pub fn medians(&self) -> Round {
        let latency = |pick: &dyn Fn(&Round) -> &Latency| Latency {
            samples: self.median_of(|r| pick(r).samples as f64) as usize,
            p50: self.median_of(|r| pick(r).p50),
            p99: self.median_of(|r| pick(r).p99),
            max: self.median_of(|r| pick(r).max),
        };
        let run = |pick: &dyn Fn(&Round) -> &RunFigures| RunFigures {
            offered_per_second: pick(&self.rounds[0])
                .offered_per_second
                .map(|_| self.median_of(|r| pick(r).offered_per_second.unwrap_or_default())),
            events_per_second: self.median_of(|r| pick(r).events_per_second),
            to_recorded: latency(&|r| &pick(r).to_recorded),
            to_dispatched: latency(&|r| &pick(r).to_dispatched),
        };
        if self.rounds.is_empty() {
            return Round::default();
        }
        Round {
            ceiling_per_second: self.median_of(|r| r.ceiling_per_second),
            full: run(&|r| &r.full),
            rules_only: run(&|r| &r.rules_only),
            half: run(&|r| &r.half),
        }
    }

    /// The median of each round's ratio to its own ceiling.
    pub fn ratio(&self) -> f64 {
        self.median_of(Round::ratio)
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "events per run: {} ({} detections); {} rule(s) and {} Sigma rule(s), {} of them generated; {} playbook(s); {} indicator(s)",
            self.events,
            self.detections_per_run,
            self.rules,
            self.sigma_rules,
            self.generated_rules,
            self.playbooks,
            self.indicators
        )?;
        writeln!(
            f,
            "stages after the rules: anomaly model {}, tracker {}",
            if self.model {
                "on"
            } else {
                "off (no model file)"
            },
            if self.tracker { "on" } else { "off" }
        )?;
        for (n, round) in self.rounds.iter().enumerate() {
            writeln!(
                f,
                "run {}: ceiling {:.0}/s; full {:.0}/s ({:.0}%); rules only {:.0}/s ({:.0}%); half load {:.0}/s offered, publish -> action p50 {:.2} ms, p99 {:.2} ms",
                n + 1,
                round.ceiling_per_second,
                round.full.events_per_second,
                round.ratio() * 100.0,
                round.rules_only.events_per_second,
                round.rules_only_ratio() * 100.0,
                round.half.offered_per_second.unwrap_or_default(),
                round.half.to_dispatched.p50,
                round.half.to_dispatched.p99,
            )?;
        }
        let m = self.medians();
        writeln!(f, "median of {} run(s):", self.rounds.len())?;
        writeln!(
            f,
            "redis ceiling (XADD -> XREADGROUP -> XACK): {:>9.0} events/s",
            m.ceiling_per_second
        )?;
        writeln!(
            f,
            "palisade, full load:                        {:>9.0} events/s  ({:.0}% of the ceiling)",
            m.full.events_per_second,
            self.ratio() * 100.0
        )?;
        writeln!(
            f,
            "  publish -> detection recorded:  {}",
            m.full.to_recorded
        )?;
        writeln!(
            f,
            "  publish -> action dispatched:   {}",
            m.full.to_dispatched
        )?;
        writeln!(
            f,
            "palisade, full load, rules only:            {:>9.0} events/s  ({:.0}% of the ceiling)",
            m.rules_only.events_per_second,
            self.median_of(Round::rules_only_ratio) * 100.0
        )?;
        writeln!(
            f,
            "palisade, half load ({:.0} events/s offered): {:>9.0} events/s",
            m.half.offered_per_second.unwrap_or_default(),
            m.half.events_per_second
        )?;
        writeln!(
            f,
            "  publish -> detection recorded:  {}",
            m.half.to_recorded
        )?;
        write!(
            f,
            "  publish -> action dispatched:   {}",
            m.half.to_dispatched
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_and_of_an_even_count_the_lower_middle() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.0);
        assert_eq!(median(Vec::new()), 0.0);
    }
}
