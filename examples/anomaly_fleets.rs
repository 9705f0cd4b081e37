//! Generates the fleets of `palisade::anomaly::synth::Fleet::shapes`, lets each learn its own
//! baseline, judges it on the days after and prints the Markdown table of docs/anomaly.md.
//!
//! ```text
//! cargo run --release --example anomaly_fleets
//! ```

use palisade::anomaly::evaluate::{fleet_table, judge_fleet};
use palisade::anomaly::synth::Fleet;

fn main() -> Result<(), String> {
    let mut rows = Vec::new();
    for fleet in Fleet::shapes() {
        let started = std::time::Instant::now();
        let row = judge_fleet(&fleet, 0.9)?;
        eprintln!("{}: {:.1} s", fleet.name, started.elapsed().as_secs_f64());
        rows.push(row);
    }
    print!("{}", fleet_table(&rows));
    Ok(())
}
