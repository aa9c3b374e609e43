//! `docs/state-machine.md` cannot drift from the code: this test reads the page, drives every row of its
//! transition table through the real [`warden_engine::Session`] (with the fixtures of
//! `support/table.rs`) and checks the state and the outputs the row names; checks that the page lists
//! exactly the rows of [`support::table::TABLE`]; and checks that the mermaid diagram draws exactly the
//! (from, to) pairs of the table.

mod support;

use std::collections::BTreeSet;

use support::output_names;
use support::table::{TABLE, run};

const PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/state-machine.md");
const HEADER: &str = "| from | input / condition | to | outputs |";

/// A (from, to) pair of states.
type Edge = (String, String);

/// One row of the page's transition table.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct DocRow {
    from: String,
    key: String,
    to: String,
    outputs: BTreeSet<String>,
}

fn page() -> String {
    std::fs::read_to_string(PAGE).unwrap_or_else(|e| panic!("cannot read {PAGE}: {e}"))
}

/// The rows of the table under [`HEADER`]; the input key is the first code span of the second cell.
fn doc_rows(text: &str) -> Vec<DocRow> {
    let mut lines = text.lines().skip_while(|l| l.trim() != HEADER);
    assert!(lines.next().is_some(), "{PAGE}: no table with the header `{HEADER}`");
    let separator = lines.next().unwrap_or_default();
    assert!(separator.starts_with("| ---"), "{PAGE}: the table header is not followed by a separator");
    lines
        .take_while(|l| l.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 4, "{PAGE}: row `{line}` does not have four cells");
            let key = cells[1].split('`').nth(1).unwrap_or_else(|| panic!("{PAGE}: row `{line}` names no `key`"));
            let outputs = match cells[3] {
                "—" | "" => BTreeSet::new(),
                list => list.split(", ").map(|o| o.trim().to_owned()).collect(),
            };
            DocRow { from: cells[0].to_owned(), key: key.to_owned(), to: cells[2].to_owned(), outputs }
        })
        .collect()
}

/// The `from --> to` edges of the page's mermaid `stateDiagram-v2`.
fn diagram_edges(text: &str) -> BTreeSet<Edge> {
    let mut lines = text.lines().skip_while(|l| l.trim() != "```mermaid");
    assert!(lines.next().is_some(), "{PAGE}: no mermaid block");
    let body: Vec<&str> = lines.take_while(|l| l.trim() != "```").collect();
    assert_eq!(body.first().map(|l| l.trim()), Some("stateDiagram-v2"), "{PAGE}: the diagram is not a stateDiagram-v2");
    body.iter()
        .filter_map(|line| {
            let (edge, _label) = line.split_once(':').unwrap_or((line, ""));
            let (from, to) = edge.split_once("-->")?;
            Some((from.trim().to_owned(), to.trim().to_owned()))
        })
        .collect()
}

/// Drives each row; returns one line per row that does not hold.
fn drive_rows(rows: &[DocRow]) -> Vec<String> {
    let mut failures = Vec::new();
    for row in rows {
        match run(&row.from, &row.key) {
            Err(e) => failures.push(format!("{} / {}: {e}", row.from, row.key)),
            Ok(outcome) => {
                let got = output_names(&outcome.outputs);
                if outcome.to.name() != row.to || got != row.outputs {
                    failures.push(format!(
                        "{} / `{}`: the page says {} {:?}, the session gives {} {:?}",
                        row.from, row.key, row.to, row.outputs, outcome.to, got
                    ));
                }
            }
        }
    }
    failures
}

/// The table's (from, to) pairs the diagram misses, and the diagram's edges no row backs.
fn diagram_mismatch(text: &str) -> (Vec<Edge>, Vec<Edge>) {
    let edges = diagram_edges(text);
    let pairs: BTreeSet<Edge> = doc_rows(text).into_iter().map(|r| (r.from, r.to)).collect();
    (pairs.difference(&edges).cloned().collect(), edges.difference(&pairs).cloned().collect())
}

#[test]
fn every_row_of_the_page_holds_when_driven() {
    let rows = doc_rows(&page());
    assert!(rows.len() > 100, "{PAGE}: only {} rows", rows.len());
    let failures = drive_rows(&rows);
    assert!(failures.is_empty(), "{PAGE} disagrees with the code:\n{}", failures.join("\n"));
}

#[test]
fn the_page_lists_exactly_the_rows_of_the_transition_table_test() {
    let mut on_page = doc_rows(&page());
    let mut in_code: Vec<DocRow> = TABLE
        .iter()
        .map(|r| DocRow {
            from: r.from.to_owned(),
            key: r.input.to_owned(),
            to: r.to.to_owned(),
            outputs: r.outputs.iter().map(|o| (*o).to_owned()).collect(),
        })
        .collect();
    on_page.sort();
    in_code.sort();
    let missing: Vec<&DocRow> = in_code.iter().filter(|r| !on_page.contains(r)).collect();
    let extra: Vec<&DocRow> = on_page.iter().filter(|r| !in_code.contains(r)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{PAGE} and support/table.rs differ.\nonly in the code: {missing:#?}\nonly on the page: {extra:#?}"
    );
}

#[test]
fn the_diagram_draws_exactly_the_pairs_of_the_table() {
    let (undrawn, unbacked) = diagram_mismatch(&page());
    assert!(
        undrawn.is_empty() && unbacked.is_empty(),
        "{PAGE}: table pairs missing from the diagram: {undrawn:?}; diagram edges no row backs: {unbacked:?}"
    );
}

/// The checks notice drift: a row naming the wrong state, and a diagram missing an edge.
#[test]
fn the_checks_notice_a_drifted_page() {
    let text = page();
    let original = "| Valid | `Tick@refresh_at`:";
    assert!(text.contains(original));
    let rows = doc_rows(&text);
    let mut wrong = rows.into_iter().find(|r| r.from == "Valid" && r.key == "Tick@refresh_at").expect("row");
    wrong.to = "Expired".to_owned();
    let failures = drive_rows(std::slice::from_ref(&wrong));
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("the session gives ExpiringSoon"), "{failures:?}");

    let without_edge = text.replace("    Valid --> ExpiringSoon", "    %% edge removed");
    let (undrawn, unbacked) = diagram_mismatch(&without_edge);
    assert_eq!(undrawn, vec![("Valid".to_owned(), "ExpiringSoon".to_owned())]);
    assert!(unbacked.is_empty());
    let extra_edge =
        text.replace("    Stopped --> Stopped", "    Stopped --> Valid : resurrected\n    Stopped --> Stopped");
    assert_eq!(diagram_mismatch(&extra_edge).1, vec![("Stopped".to_owned(), "Valid".to_owned())]);
}
