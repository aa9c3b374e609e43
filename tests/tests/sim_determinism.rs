//! The simulator is deterministic: the same scenario and seed give byte-identical JSON reports, with the
//! sled store and with the memory store; another seed gives another run.

use warden_sim::runner::{RunOptions, StoreKind, run};
use warden_sim::scenario::Scenario;
use warden_tests::scenarios_dir;

fn report_json(scenario: &Scenario, store: StoreKind, seed: Option<u64>) -> String {
    let output = run(scenario, &RunOptions { store, seed, ..RunOptions::default() }).expect("the scenario runs");
    serde_json::to_string_pretty(&output.report).expect("the report encodes")
}

#[test]
fn same_scenario_and_seed_give_identical_reports() {
    for name in ["silent-deauth-under-load.toml", "restart-mid-refresh.toml"] {
        let scenario = Scenario::load(&scenarios_dir().join(name)).expect("the shipped scenario parses");
        for store in [StoreKind::Sled, StoreKind::Memory] {
            let first = report_json(&scenario, store, None);
            let second = report_json(&scenario, store, None);
            assert_eq!(first, second, "{name} with {store:?} replays identically");
            assert!(first.contains("\"requests_total\""), "{first}");
        }
    }
}

#[test]
fn another_seed_gives_another_run() {
    let scenario = Scenario::load(&scenarios_dir().join("silent-deauth-under-load.toml")).expect("parses");
    let a = report_json(&scenario, StoreKind::Memory, Some(1));
    let b = report_json(&scenario, StoreKind::Memory, Some(2));
    assert_ne!(a, b, "the seed drives arrivals and broker randomness");
}
