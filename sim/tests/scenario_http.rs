//! The `transport` key of a scenario: `"http"` loads for the brokers that have a mock, and is refused
//! with an error that names the key and the problem for a model without one or a run too long for real
//! time; the shipped HTTP scenarios load.

use warden_sim::scenario::{Scenario, Transport};

fn scenario(model: &str, duration: &str, transport: &str) -> String {
    format!(
        "name = \"t\"\nseed = 1\nstart = \"2026-03-10T10:00:00Z\"\nduration = \"{duration}\"\ntransport = \"{transport}\"\n\
         [broker]\nmodel = \"{model}\"\ntoken_lifetime = \"20s\"\n[policy]\nrefresh_buffer = \"5s\"\nexpiry_margin = \"1s\"\n"
    )
}

#[test]
fn http_transport_loads_for_served_brokers() {
    let s = Scenario::parse(&scenario("oauth2", "30s", "http"), "t.toml").unwrap();
    assert_eq!(s.transport, Transport::Http);
    let s = Scenario::parse(&scenario("oauth2", "30s", "virtual"), "t.toml").unwrap();
    assert_eq!(s.transport, Transport::Virtual);
}

#[test]
fn http_transport_errors_name_the_key_and_the_problem() {
    let e = Scenario::parse(&scenario("openalgo", "30s", "http"), "t.toml").unwrap_err().to_string();
    assert!(e.starts_with("t.toml line 5, column 1: `transport`: the `openalgo` model has no mock broker"), "{e}");
    let e = Scenario::parse(&scenario("oauth2", "2h", "http"), "t.toml").unwrap_err().to_string();
    assert!(e.contains("`duration`: an HTTP scenario runs in real time: the run is 2h, at most 10m"), "{e}");
    let e = Scenario::parse(&scenario("oauth2", "30s", "carrier-pigeon"), "t.toml").unwrap_err().to_string();
    assert!(e.contains("line 5") && e.contains("carrier-pigeon"), "{e}");
}

#[test]
fn shipped_http_scenarios_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/http");
    let scenarios = Scenario::load_dir(&dir).unwrap();
    assert_eq!(scenarios.len(), 5);
    for s in &scenarios {
        assert_eq!(s.transport, Transport::Http, "{}", s.name);
        assert!(s.duration.as_secs() <= 30, "{} runs {:?} in real time", s.name, s.duration);
        assert_eq!(s.origin.rsplit('/').next(), Some(format!("{}.toml", s.name).as_str()));
    }
}
