//! The HTML report's structure: for a run that has every kind of marker, the page has each of them (and
//! its legend entry), a row per calendar day in the market's zone, and local times with UTC on hover.

use std::path::Path;

use warden_sim::html;
use warden_sim::runner::{MarkerKind, RunOptions, StoreKind, run};
use warden_sim::scenario::Scenario;

#[test]
fn the_page_shows_every_marker_a_run_has() {
    // The showcase scenario, with a lighter workload (the test runs unoptimised) and three quotes sent just
    // before the 11:00 invalidation so that some are in flight across it.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/openalgo-forced-relogin.toml");
    let text = std::fs::read_to_string(path).unwrap().replace("rate_per_strategy = 1.0", "rate_per_strategy = 0.02")
        + "\n[[workload.at]]\nat = \"10:59:59.950\"\nkind = \"quote\"\ncount = 3\n";
    let scenario = Scenario::parse(&text, "showcase.toml").unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions { store: StoreKind::Memory, timeline: true, ..RunOptions::default() };
    let output = run(&scenario, &options).unwrap();
    let timeline = output.timeline.expect("asked for");
    let page = html::render(&[(output.report, Some(timeline.clone()))]);
    for kind in MarkerKind::ALL {
        assert!(timeline.markers.iter().any(|m| m.kind == kind), "the run has no {} marker", kind.name());
        assert!(page.contains(&format!("data-marker='{}'", kind.name())), "no {} marker on the page", kind.name());
        assert!(page.contains(&format!("data-legend='{}'", kind.name())), "no {} in the legend", kind.name());
    }
    // A row per calendar day the run touches (Monday 08:00 to Wednesday 08:00 IST: three).
    let days: Vec<&str> = page.match_indices("data-date='").map(|(i, _)| &page[i + 11..i + 21]).collect();
    assert_eq!(days, ["2026-03-09", "2026-03-10", "2026-03-11"]);
    // Local times, with UTC on hover: the 11:00 IST invalidation is 05:30 UTC.
    assert!(page.contains("times in Asia/Kolkata"), "the zone is named");
    assert!(page.contains("2026-03-09 11:00:00.000 IST (2026-03-09T05:30:00Z)"), "local time with UTC");
    assert!(page.contains(">09:00</text>"), "day axes are in local time");
    // Self-contained: no scripts, nothing fetched.
    assert!(!page.contains("<script") && !page.contains("http://") && !page.contains("https://"));
}
