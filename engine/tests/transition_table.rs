//! The transition table: every legal (state, input) pair of the session state machine, driven through
//! the real [`warden_engine::Session`].
//!
//! Each row of [`support::table::TABLE`] puts a session into its `from` state through real inputs (a
//! login completed, a deadline ticked, a rejection reported…), applies one input — a tick at the relevant
//! deadline, a request, a cancel, a rejection of the current or a stale generation, a login/refresh answer
//! (a grant or each error class), a keep-alive answer, reset, new credentials, a second factor, logout,
//! give-up — and asserts the state it ends in and the set of output kinds it produced. The same rows are
//! the table in `docs/state-machine.md` (checked by `state_machine_doc.rs`).

mod support;

use std::collections::{BTreeMap, BTreeSet};

use support::table::{Row, TABLE, run, state};
use support::{output_name, output_names};
use warden_engine::{Output, StateKind};

fn expected_outputs(row: &Row) -> BTreeSet<String> {
    row.outputs.iter().map(|o| (*o).to_owned()).collect()
}

#[test]
fn every_row_of_the_table_holds() {
    let mut failures = Vec::new();
    for row in TABLE {
        match run(row.from, row.input) {
            Err(e) => failures.push(format!("{} / {}: {e}", row.from, row.input)),
            Ok(outcome) => {
                let got = output_names(&outcome.outputs);
                if outcome.to.name() != row.to || got != expected_outputs(row) {
                    failures.push(format!(
                        "{} / {}: expected {} {:?}, got {} {:?}",
                        row.from,
                        row.input,
                        row.to,
                        row.outputs,
                        outcome.to,
                        got.iter().collect::<Vec<_>>()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} rows do not hold:\n{}", failures.len(), failures.join("\n"));
}

/// The input kinds every state must answer (the table's `[*]` rows are construction and restore).
const INPUT_KINDS: [&str; 12] = [
    "Tick",
    "Request",
    "Cancel",
    "Rejected",
    "AuthCompleted",
    "KeepaliveCompleted",
    "Activity",
    "Reset",
    "CredentialsUpdated",
    "SecondFactor",
    "Logout",
    "GiveUp",
];

#[test]
fn the_table_covers_every_input_kind_in_every_state() {
    let mut kinds: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for row in TABLE.iter().filter(|r| r.from != "[*]") {
        let kind = row.input.split(['(', '@', ' ']).next().unwrap_or_default();
        kinds.entry(row.from).or_default().insert(kind);
    }
    for s in StateKind::ALL {
        let seen = kinds.get(s.name()).cloned().unwrap_or_default();
        let missing: Vec<&str> = INPUT_KINDS.iter().copied().filter(|k| !seen.contains(k)).collect();
        assert!(missing.is_empty(), "state {s} has no row for {missing:?}");
    }
    // The ways a session leaves each state that DESIGN §2 names are all there.
    let edges: BTreeSet<(&str, &str)> = TABLE.iter().map(|r| (r.from, r.to)).collect();
    for edge in [
        ("Initializing", "Valid"),
        ("Initializing", "Reinitializing"),
        ("Valid", "ExpiringSoon"),
        ("Valid", "Expired"),
        ("ExpiringSoon", "Valid"),
        ("ExpiringSoon", "Expired"),
        ("Expired", "Reinitializing"),
        ("Reinitializing", "Valid"),
        ("Reinitializing", "Invalid"),
        ("Invalid", "Reinitializing"),
        ("Valid", "Stopped"),
    ] {
        assert!(edges.contains(&edge), "no row takes {} to {}", edge.0, edge.1);
    }
    // No two rows drive the same pair.
    let keys: BTreeSet<(&str, &str)> = TABLE.iter().map(|r| (r.from, r.input)).collect();
    assert_eq!(keys.len(), TABLE.len(), "duplicate rows");
}

/// Invariants that hold after every row, whatever the row: a lease exists exactly in the token-usable
/// states, nothing is published or served outside them, no login or refresh starts when the session
/// ends `Invalid` or `Stopped`, and the next deadline is in the future.
#[test]
fn every_row_keeps_the_state_invariants() {
    for row in TABLE {
        let outcome = run(row.from, row.input).unwrap_or_else(|e| panic!("{e}"));
        let session = &outcome.harness.session;
        let to = outcome.to;
        let context = format!("{} / {} → {to}", row.from, row.input);
        assert_eq!(session.lease().is_some(), to.token_usable(), "{context}: lease");
        for output in &outcome.outputs {
            match output {
                Output::Publish(Some(lease)) | Output::Serve { lease, .. } => {
                    assert!(to.token_usable(), "{context}: {} in a state without a token", output_name(output));
                    assert!(lease.usable_until > outcome.harness.now, "{context}: lease already over");
                }
                Output::Login { .. } | Output::Refresh { .. } => {
                    assert!(
                        !matches!(to, StateKind::Invalid | StateKind::Stopped),
                        "{context}: {} started",
                        output_name(output)
                    );
                }
                _ => {}
            }
        }
        if let Some(next) = session.poll_timeout() {
            assert!(next > outcome.harness.now, "{context}: poll_timeout {next} not after {}", outcome.harness.now);
        }
        assert_eq!(state(row.to).ok(), Some(to), "{context}: table names an unknown state");
    }
}
