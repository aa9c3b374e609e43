//! Property tests of the session state machine: one named property per rule of DESIGN §2.
//!
//! The runs are proptest-state-machine sequences. The reference state machine ([`SessionModel`]) draws
//! a policy from the presets with small variations ([`support::model::Spec`]) and then steps that any
//! driver may see: time jumps small and large and ticks at `poll_timeout()`, requests (with and without
//! `newer_than`), cancels, rejections of the current and of older generations with every error class,
//! answers to the outstanding login/refresh (grants with lifetimes from 1 ms to two days, with and
//! without refresh tokens, and every error class), keep-alive answers, operator actions, logout, give-up,
//! and process restarts that round-trip the snapshot through rmp-serde. It predicts what can be predicted
//! without re-implementing the session (a logged-out session stays `Stopped`; a session the supervisor
//! gave up on stays `Invalid` until reset), and the system under test, a [`Driver`], checks every input
//! against the obligations model ([`support::model::Observer`]), which records each broken rule.
//!
//! Each property runs the same kind of sequences and fails on its own rule only, so a failure names the
//! rule. Every property also asserts that `poll_timeout()` is `None` or later than `now` after every
//! input, and that a tick before `poll_timeout()` does nothing. The number of cases follows
//! `PROPTEST_CASES` (`ProptestConfig::default()` reads it).

mod support;

use std::collections::BTreeSet;
use std::marker::PhantomData;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};
use warden_engine::retry::{AfterFailure, FailedCall, Idempotency, after_failure};
use warden_engine::{Delivery, ErrorClass, InvalidReason, Policy, StateKind};

use support::model::{Driver, Rule, Spec, Stats, Step, spec_strategy, step_strategy};

/// The reference state: the drawn policy, and what the model predicts about the session's state.
#[derive(Clone, Debug)]
struct Model {
    spec: Spec,
    /// Logged out (until a restart, which opens the session again).
    stopped: bool,
    /// The supervisor gave up (until a reset, new credentials, a logout, or a restart: a new process has a
    /// fresh restart budget).
    given_up: bool,
}

/// The reference state machine.
struct SessionModel;

impl ReferenceStateMachine for SessionModel {
    type State = Model;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Model> {
        spec_strategy().prop_map(|spec| Model { spec, stopped: false, given_up: false }).boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Step> {
        step_strategy(state.stopped)
    }

    fn apply(mut state: Model, step: &Step) -> Model {
        match step {
            Step::Logout => {
                state.stopped = true;
                state.given_up = false;
            }
            Step::Restart { .. } => {
                state.stopped = false;
                state.given_up = false;
            }
            Step::GiveUp if !state.stopped => state.given_up = true,
            Step::Reset | Step::CredentialsUpdated if !state.stopped => state.given_up = false,
            _ => {}
        }
        state
    }
}

/// The rule a test enforces.
trait RuleCheck {
    const RULE: Rule;
}

/// A state-machine test that fails on violations of `R` only.
struct RuleTest<R>(PhantomData<R>);

impl<R: RuleCheck> StateMachineTest for RuleTest<R> {
    type SystemUnderTest = Driver;
    type Reference = SessionModel;

    fn init_test(reference: &Model) -> Driver {
        Driver::new(reference.spec.clone(), false)
    }

    fn apply(mut driver: Driver, _reference: &Model, step: Step) -> Driver {
        driver.step(&step);
        driver
    }

    fn check_invariants(driver: &Driver, reference: &Model) {
        let broken = driver.violations_of(R::RULE);
        assert!(broken.is_empty(), "{:?} broken (policy {:?}):\n{broken:#?}", R::RULE, driver.spec);
        let state = driver.session.state();
        assert_eq!(
            reference.stopped,
            state == StateKind::Stopped,
            "model stopped = {}, session {state}",
            reference.stopped
        );
        if reference.given_up {
            assert!(
                matches!(driver.session.invalid_reason(), Some(InvalidReason::RestartLimit { .. })),
                "the supervisor gave up, but the session is {state} ({:?})",
                driver.session.invalid_reason()
            );
        }
    }
}

macro_rules! rules {
    ($($name:ident => $rule:ident,)*) => {
        $(
            #[doc = concat!("Marker of rule `", stringify!($rule), "`.")]
            struct $name;
            impl RuleCheck for $name {
                const RULE: Rule = Rule::$rule;
            }
        )*
    };
}

rules! {
    DeadToken => NeverServeADeadToken,
    Flight => SingleFlight,
    Stale => StaleGenerationsTriggerNothing,
    Waiters => EveryWaiterAnsweredExactlyOnce,
    LoginRate => LoginAttemptsWithinRateLimit,
    Invalid => PermanentErrorOrSpentBudgetGoesInvalidAndStays,
}

prop_state_machine! {
    #![proptest_config(ProptestConfig::default())]

    /// Rule 1: no `Serve` or `Publish` hands out a lease past expiry − `expiry_margin`, past the daily
    /// cut-off after its login, or of a generation the broker rejected; a rejected generation is
    /// withdrawn from the hot path in the same step.
    #[test]
    fn never_serve_a_dead_token(sequential 1..100 => RuleTest<DeadToken>);

    /// Rule 2: at most one login/refresh outstanding and at most one keep-alive, and the session agrees
    /// with the model about which.
    #[test]
    fn single_flight(sequential 1..100 => RuleTest<Flight>);

    /// Rule 3: a rejection naming an older (or already dead) generation, a stray login answer and a
    /// keep-alive answer about an older grant change nothing and produce nothing (a stray grant is only
    /// logged out).
    #[test]
    fn stale_generations_trigger_nothing(sequential 1..100 => RuleTest<Stale>);

    /// Rule 4: every request gets exactly one `Serve` or `Fail` unless cancelled (or lost with its
    /// process), never after its deadline has passed unanswered, and `poll_timeout()` wakes the driver
    /// by the earliest deadline.
    #[test]
    fn every_waiter_answered_exactly_once(sequential 1..100 => RuleTest<Waiters>);

    /// Rule 5: logins obey `login_rate`, counted over every incarnation of the session (restarts restore
    /// the attempt history from the snapshot).
    #[test]
    fn login_attempts_within_rate_limit(sequential 1..100 => RuleTest<LoginRate>);

    /// Rule 6: a permanent login error, a second-factor demand, a spent failure budget, a yield to a
    /// competing login or a supervisor give-up goes to `Invalid` at once, for that reason only, and the
    /// session stays there — no login or refresh — until reset, new credentials or a second factor.
    #[test]
    fn permanent_error_or_spent_budget_goes_invalid_and_stays(sequential 1..100 => RuleTest<Invalid>);
}

fn error_class() -> impl Strategy<Value = ErrorClass> {
    prop_oneof![
        Just(ErrorClass::AuthExpired),
        Just(ErrorClass::Transient),
        Just(ErrorClass::Permanent),
        Just(ErrorClass::NeedsHuman),
        Just(ErrorClass::Competing),
        prop::option::of((0u64..600).prop_map(std::time::Duration::from_secs))
            .prop_map(|retry_after| ErrorClass::RateLimited { retry_after }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    /// Rule 7: only an answered authentication rejection is retried (with a newer grant, at most
    /// `retry_on_rejection` times); a call on a non-idempotent operation whose delivery is unknown is
    /// reported as `OutcomeUnknown` and never retried; a retry rejected again with a fresh grant fails
    /// without a report (no login for it).
    #[test]
    fn no_automatic_retry_of_unknown_non_idempotent_outcome(
        class in error_class(),
        delivery in prop_oneof![Just(Delivery::NotSent), Just(Delivery::Unknown), Just(Delivery::Answered)],
        idempotency in prop_oneof![Just(Idempotency::Idempotent), Just(Idempotency::NonIdempotent)],
        retries_done in 0u32..6,
        retry_limit in 0u32..6,
        grant_age_s in 0u64..30,
    ) {
        let mut policy = Policy::default();
        policy.retry_on_rejection = retry_limit;
        let grant_age = std::time::Duration::from_secs(grant_age_s);
        let call = |retries_done| FailedCall { class, delivery, idempotency, retries_done, grant_age };
        let decision = after_failure(&call(retries_done), &policy);
        if idempotency == Idempotency::NonIdempotent && delivery == Delivery::Unknown {
            prop_assert_eq!(decision, AfterFailure::OutcomeUnknown);
        }
        if decision == AfterFailure::RetryWithNewerGrant {
            prop_assert_eq!(class, ErrorClass::AuthExpired);
            prop_assert_eq!(delivery, Delivery::Answered);
            prop_assert!(retries_done < retry_limit);
        }
        if decision == AfterFailure::OutcomeUnknown {
            prop_assert_eq!(delivery, Delivery::Unknown);
            prop_assert_eq!(idempotency, Idempotency::NonIdempotent);
        }
        if decision == AfterFailure::FreshTokenRefused {
            prop_assert!(retries_done > 0 && grant_age < policy.min_grant_age);
        }
        // Repeating the same failure retries at most `retry_limit` times in all.
        let mut retries = 0;
        while after_failure(&call(retries), &policy) == AfterFailure::RetryWithNewerGrant {
            retries += 1;
            prop_assert!(retries <= retry_limit);
        }
    }
}

/// The generated runs reach what the properties talk about: every state, every reason to give up,
/// served and failed requests of every kind, stale inputs, rate-limited logins and restarts that resume
/// a grant. Without this, a property could pass because its situation never arises.
#[test]
fn generated_runs_reach_every_situation_the_properties_check() {
    let config = ProptestConfig { cases: 400, ..ProptestConfig::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let strategy = SessionModel::sequential_strategy(1..100);
    let mut stats = Stats::default();
    for _ in 0..400 {
        let (model, steps, _) = strategy.new_tree(&mut runner).expect("a case").current();
        let mut driver = Driver::new(model.spec, false);
        for step in &steps {
            driver.step(step);
        }
        assert!(driver.obs.violations.is_empty(), "{:#?}", driver.obs.violations);
        let s = driver.obs.stats;
        for (state, n) in s.states {
            *stats.states.entry(state).or_default() += n;
        }
        for (output, n) in s.outputs {
            *stats.outputs.entry(output).or_default() += n;
        }
        stats.invalid_reasons.extend(s.invalid_reasons);
        stats.stale_checked += s.stale_checked;
        stats.restarts_resuming_grant += s.restarts_resuming_grant;
        stats.rate_limited_waits += s.rate_limited_waits;
        stats.serves_near_end += s.serves_near_end;
    }
    let states: BTreeSet<StateKind> = stats.states.keys().copied().collect();
    assert_eq!(states, StateKind::ALL.into_iter().collect(), "{stats:#?}");
    for reason in ["BadCredentials", "NeedsHuman", "FailureBudgetSpent", "Competing", "RestartLimit"] {
        assert!(stats.invalid_reasons.contains(reason), "never Invalid for {reason}: {stats:#?}");
    }
    for output in [
        "Login",
        "Refresh",
        "Keepalive",
        "Logout",
        "Serve",
        "Publish(lease)",
        "Publish(none)",
        "Fail(Timeout)",
        "Fail(Overloaded)",
        "Fail(Invalid)",
        "Fail(Stopped)",
        "Revoked",
        "Deferred",
        "KeepaliveFailed",
    ] {
        assert!(stats.outputs.get(output).is_some_and(|n| *n > 0), "never saw {output}: {stats:#?}");
    }
    assert!(stats.stale_checked > 100, "{stats:#?}");
    assert!(stats.restarts_resuming_grant > 0, "{stats:#?}");
    assert!(stats.rate_limited_waits > 0, "{stats:#?}");
    assert!(stats.serves_near_end > 0, "{stats:#?}");
}
