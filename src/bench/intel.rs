//! `palisade bench intel`: threat intelligence at scale.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::generate::{Lcg, indicator_mix};

/// What `palisade bench intel` measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntelBenchReport {
    pub indicators: usize,
    pub import_seconds: f64,
    pub load_seconds: f64,
    /// Resident memory of the whole process after loading, in MB.
    pub resident_mb: f64,
    pub lookups: usize,
    pub lookups_per_second: f64,
    pub hits: usize,
}

impl std::fmt::Display for IntelBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "indicators:          {}", self.indicators)?;
        writeln!(f, "import into SQLite:  {:.2} s", self.import_seconds)?;
        writeln!(
            f,
            "load into matcher:   {:.2} s   (target < 5 s)",
            self.load_seconds
        )?;
        writeln!(
            f,
            "resident after load: {:.0} MB  (target < 300 MB)",
            self.resident_mb
        )?;
        write!(
            f,
            "lookups:             {:.1} M/s  ({} event values, {} hits; target > 5 M/s)",
            self.lookups_per_second / 1e6,
            self.lookups,
            self.hits
        )
    }
}

fn resident_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Imports `count` indicators into a scratch database, loads them into a matcher, and times
/// lookups of event values (addresses, domains, hashes; about one in ten listed).
pub async fn intel(count: usize, state_dir: &Path) -> Result<IntelBenchReport, String> {
    use crate::event::{Event, EventKind};
    use crate::intel::{IntelStore, Matcher, Warninglists};
    let indicators = indicator_mix(count);
    // Event values to look up: a tenth taken from the indicators, the rest not listed.
    let mut events = Vec::new();
    let mut rng = Lcg(7);
    for i in 0..100_000usize {
        let mut event = Event::new("e", EventKind::NetworkConnection, 0);
        match i % 10 {
            0 => match indicators[(rng.next() as usize) % indicators.len()]
                .value
                .parse::<IpAddr>()
            {
                Ok(ip) => event.remote_ip = Some(ip),
                Err(_) => event.remote_ip = Some(IpAddr::from([9, 9, 9, 9])),
            },
            1..=5 => {
                event.remote_ip = Some(IpAddr::from([
                    (rng.next() % 223) as u8 + 1,
                    rng.next() as u8,
                    rng.next() as u8,
                    rng.next() as u8,
                ]))
            }
            6 | 7 => {
                event.kind = EventKind::DnsQuery;
                event.query_name = Some(format!("www.site{}.example.com", rng.next() % 1_000_000));
            }
            _ => {
                event.kind = EventKind::ProcessCreate;
                event.process_hash = Some(format!("{:064x}", rng.next()));
            }
        }
        events.push(event);
    }
    let path = state_dir.join("bench-intel.db");
    let state = crate::state::StateStore::open(&path)
        .await
        .map_err(|e| e.to_string())?;
    let store = IntelStore::new(&state);
    let started = Instant::now();
    store
        .upsert(&indicators, 0)
        .await
        .map_err(|e| e.to_string())?;
    let import_seconds = started.elapsed().as_secs_f64();
    drop(indicators);

    let started = Instant::now();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let live = store.live(now).await.map_err(|e| e.to_string())?;
    let matcher = Matcher::build(live, &Warninglists::default(), now);
    let load_seconds = started.elapsed().as_secs_f64();
    let resident = resident_mb();
    state.close().await;

    let mut hits = Vec::new();
    let rounds = 50;
    let started = Instant::now();
    let mut total_hits = 0;
    for _ in 0..rounds {
        for event in &events {
            hits.clear();
            matcher.enrich(std::hint::black_box(event), &mut hits);
            total_hits += hits.len();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let lookups = events.len() * rounds;
    Ok(IntelBenchReport {
        indicators: matcher.len(),
        import_seconds,
        load_seconds,
        resident_mb: resident,
        lookups,
        lookups_per_second: lookups as f64 / seconds,
        hits: total_hits / rounds,
    })
}
