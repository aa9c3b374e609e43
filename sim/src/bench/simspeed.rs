//! The simulator's speed: the saxo scenario (5 trading days, 10 strategies at 1 request/s, about 1.17
//! million requests) through the simulator's public run function, timed on the wall clock.
//!
//! `sim_requests_per_s` is the scenario's requests over the run's wall time (parsing excluded, the
//! runtime, the store and the whole replay included); `sim_speedup` is the simulated span over the wall
//! time. The median of several runs.

use std::path::Path;

use crate::runner::{RunOptions, run as run_scenario};
use crate::scenario::Scenario;

use super::stats::{Stopwatch, median};
use super::{BenchError, Figures, setup};

pub(crate) fn run(figures: &mut Figures, quick: bool) -> Result<(), BenchError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join("saxo.toml");
    let scenario = Scenario::load(&path).map_err(setup)?;
    // A clock for timing only: the scenario runs on its own (paused) runtime.
    let timing = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(setup)?;
    let clock = timing.block_on(async { warden_actors::Clock::system() });
    let runs = if quick { 1 } else { 5 };
    let mut per_s = Vec::with_capacity(runs);
    let mut speedup = Vec::with_capacity(runs);
    let mut requests = 0;
    for _ in 0..runs {
        let watch = Stopwatch::start(&clock);
        let output = run_scenario(&scenario, &RunOptions::default()).map_err(setup)?;
        let wall = watch.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
        if !output.report.passed() {
            return Err(BenchError::Broken("the saxo scenario failed its expectations".into()));
        }
        requests = output.report.requests_total;
        per_s.push(requests as f64 / wall);
        speedup.push(scenario.duration.as_secs_f64() / wall);
    }
    figures.section(&format!("simulator: saxo.toml ({requests} requests over 5 days), median of {runs}"));
    figures.set("sim_requests_per_s", Some(median(&mut per_s)), "requests replayed per wall-clock second");
    figures.set("sim_speedup", Some(median(&mut speedup)), "simulated time / wall time");
    Ok(())
}
