//! Determinism: the session is a pure function of its configuration (including the jitter seed) and its
//! inputs. The same seeded input sequence run twice gives the same output trace — every output's `Debug`
//! with the time it was produced — and a different jitter seed changes the trace exactly where jitter
//! matters (the refresh time and the backoff), and nowhere when jitter is off.

mod support;

use proptest::collection::vec;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use support::model::{AuthResult, Driver, Spec, Step, spec_strategy, step_strategy};
use warden_engine::{ErrorClass, Mode, OnCompeting, Preset};

/// A run drawn from `seed`: a policy and 200 steps.
fn scenario(seed: u64) -> (Spec, Vec<Step>) {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let strategy = (spec_strategy(), vec(step_strategy(false), 200));
    strategy.new_tree(&mut runner).expect("a scenario").current()
}

/// The trace of a run: every input and its outputs, with times.
fn trace(spec: &Spec, steps: &[Step]) -> Vec<String> {
    let mut driver = Driver::new(spec.clone(), true);
    for step in steps {
        driver.step(step);
    }
    assert!(driver.obs.violations.is_empty(), "{:#?}", driver.obs.violations);
    driver.trace.expect("tracing was on")
}

#[test]
fn the_same_seeded_run_twice_gives_the_same_trace() {
    for seed in 0..24 {
        let (spec, steps) = scenario(seed);
        let first = trace(&spec, &steps);
        let second = trace(&spec, &steps);
        assert!(first.len() > 200, "seed {seed}: a trace of {} lines says too little", first.len());
        if let Some(i) = (0..first.len().min(second.len())).find(|&i| first[i] != second[i]) {
            panic!("seed {seed}: the traces differ at line {i}:\n{}\n{}", first[i], second[i]);
        }
        assert_eq!(first.len(), second.len(), "seed {seed}");
    }
}

#[test]
fn different_scenario_seeds_give_different_traces() {
    // A sanity check of the comparison itself: different scenarios do not trace alike.
    let (a, steps_a) = scenario(1);
    let (b, steps_b) = scenario(2);
    assert_ne!(trace(&a, &steps_a), trace(&b, &steps_b));
}

/// An eager hybrid session with a refresh-token broker whose refreshes fail every other time: the
/// refresh time (spread by `jitter`) and the backoff after each failure (spread by `backoff.jitter`)
/// are the only places where randomness enters.
fn jittery(seed: u64, jitter: f64) -> (Spec, Vec<Step>) {
    let spec = Spec {
        preset: Preset::Hybrid,
        mode: Mode::Eager,
        refresh_cap: true,
        keepalive_cap: false,
        refresh_buffer_s: Some(Some(300)),
        lazy_threshold_s: Some(None),
        jitter,
        expiry_margin_s: 5,
        keepalive_interval_s: 60,
        keepalive_failures: 2,
        daily: Some(None),
        max_session_age_s: None,
        idle_timeout_s: None,
        max_failures: 3,
        login_rate: None,
        request_timeout_s: 30,
        max_waiters: 16,
        on_competing: OnCompeting::TakeOver,
        backoff: (5, 300, jitter),
        seed,
        start_ms: 0,
    };
    let ok = Step::AuthDone { result: AuthResult::Ok { lifetime_ms: Some(1_200_000), refresh: Some(None) } };
    let fail = Step::AuthDone { result: AuthResult::Err(ErrorClass::Transient) };
    let mut steps = vec![ok.clone()];
    for _ in 0..20 {
        // Refresh due → it fails → the backoff ends → it succeeds.
        steps.extend([Step::TickAtTimeout, fail.clone(), Step::TickAtTimeout, ok.clone()]);
    }
    (spec, steps)
}

#[test]
fn a_different_jitter_seed_changes_the_trace_where_jitter_matters() {
    let (a, steps) = jittery(7, 0.5);
    let (b, _) = jittery(8, 0.5);
    let first = trace(&a, &steps);
    assert_eq!(first, trace(&a, &steps), "same seed, same trace");
    let second = trace(&b, &steps);
    assert_ne!(first, second, "another seed must move the jittered refresh and backoff times");
    // What differs is time (when things happen), not what happens: the same outputs in the same order.
    let without_times =
        |t: &[String]| -> Vec<String> { t.iter().filter(|l| l.starts_with("  ")).map(|l| strip_times(l)).collect() };
    assert_eq!(without_times(&first), without_times(&second));
}

#[test]
fn without_jitter_the_seed_does_not_matter() {
    let (a, steps) = jittery(7, 0.0);
    let (b, _) = jittery(8, 0.0);
    assert_eq!(trace(&a, &steps), trace(&b, &steps));
}

/// A trace line with every RFC 3339 instant replaced by `T`.
fn strip_times(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("2026-") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('Z').map_or(rest.len(), |z| i + z + 1);
        out.push('T');
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}
