//! The plain-text tables the CLI prints: one report ([`render_table`]) and several policies side by side
//! ([`render_comparison`]).

use std::fmt::Write as _;
use std::time::Duration;

use super::Report;

/// The rows of the single-report table: label and value.
fn rows(report: &Report) -> Vec<(&'static str, String)> {
    [
        ("requests_total", report.requests_total),
        ("requests_ok", report.requests_ok),
        ("requests_failed", report.requests_failed),
        ("requests_retried", report.requests_retried),
        ("logins", report.logins),
        ("login_attempts", report.login_attempts),
        ("logins_discarded", report.logins_discarded),
        ("refreshes", report.refreshes),
        ("keepalives", report.keepalives),
        ("login_failures", report.login_failures),
        ("rejections", report.rejections),
        ("max_request_delay_ms", report.max_request_delay_ms),
        ("p99_request_delay_ms", report.p99_request_delay_ms),
        ("max_token_wait_ms", report.max_token_wait_ms),
        ("p99_token_wait_ms", report.p99_token_wait_ms),
        ("dead_token_uses", report.dead_token_uses),
        ("duplicate_orders", report.duplicate_orders),
        ("outcome_unknown", report.outcome_unknown),
        ("refresh_failures", report.refresh_failures),
        ("keepalive_failures", report.keepalive_failures),
        ("rate_limited", report.rate_limited),
        ("account_lockouts", report.account_lockouts),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect()
}

/// A plain-text table of one report: the counters, the time in each state, and each expectation with
/// PASS or FAIL.
pub fn render_table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "scenario {}  (seed {}, policy {})", report.scenario, report.seed, report.policy);
    let rows = rows(report);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let value_width = rows.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    for (label, value) in &rows {
        let _ = writeln!(out, "  {label:<width$}  {value:>value_width$}");
    }
    let json = serde_json::to_value(report).unwrap_or_default();
    let nonzero = |table: &str| -> Vec<String> {
        json.get(table)
            .and_then(|v| v.as_object())
            .map(|map| {
                map.iter()
                    .filter(|(_, n)| n.as_u64().is_some_and(|n| n > 0))
                    .map(|(bucket, n)| format!("{bucket} {n}"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let failed_by = nonzero("failed_by");
    if !failed_by.is_empty() {
        let invalid_by = nonzero("invalid_by");
        let reasons =
            if invalid_by.is_empty() { String::new() } else { format!(" (invalid: {})", invalid_by.join(", ")) };
        let _ = writeln!(out, "  failed by: {}{reasons}", failed_by.join(", "));
    }
    if report.by_kind.len() > 1 || report.by_kind.values().any(|k| k.failed + k.outcome_unknown > 0) {
        let kinds: Vec<String> = report
            .by_kind
            .iter()
            .map(|(kind, k)| {
                let unknown =
                    if k.outcome_unknown > 0 { format!(", {} unknown", k.outcome_unknown) } else { String::new() };
                format!("{kind} {} ok / {} failed{unknown}", k.ok, k.failed)
            })
            .collect();
        let _ = writeln!(out, "  by kind: {}", kinds.join("; "));
    }
    let events: Vec<String> =
        report.events.iter().filter(|(_, e)| e.count > 0).map(|(name, e)| format!("{name} {}", e.count)).collect();
    if !events.is_empty() {
        let _ = writeln!(out, "  events: {}", events.join(", "));
    }
    if report.time_in_state.values().any(|ms| *ms > 0) {
        let _ = writeln!(out, "  time in state:");
        for (state, ms) in report.time_in_state.iter().filter(|(_, ms)| **ms > 0) {
            let _ =
                writeln!(out, "    {state:<14}  {}", warden_engine::time::format_duration(Duration::from_millis(*ms)));
        }
    }
    if !report.expectations.is_empty() {
        let _ = writeln!(out, "  expectations:");
        let width = report.expectations.iter().map(|e| e.name.len()).max().unwrap_or(0);
        for e in &report.expectations {
            let verdict = if e.pass { "PASS" } else { "FAIL" };
            let _ = writeln!(out, "    {verdict}  {:<width$}  {:<14}  actual {}", e.name, e.bound, e.actual);
        }
    }
    out
}

/// A side-by-side table of several runs of one scenario, one row per policy (for `compare`).
pub fn render_comparison(reports: &[Report]) -> String {
    const COLUMNS: [(&str, &str); 14] = [
        ("ok", "requests_ok"),
        ("failed", "requests_failed"),
        ("retried", "requests_retried"),
        ("logins", "logins"),
        ("refreshes", "refreshes"),
        ("keepalives", "keepalives"),
        ("login_fail", "login_failures"),
        ("rejections", "rejections"),
        ("p99_ms", "p99_request_delay_ms"),
        ("max_ms", "max_request_delay_ms"),
        ("wait_ms", "max_token_wait_ms"),
        ("dead", "dead_token_uses"),
        ("dup", "duplicate_orders"),
        ("unknown", "outcome_unknown"),
    ];
    let mut header: Vec<String> = vec!["policy".to_owned()];
    header.extend(COLUMNS.iter().map(|(h, _)| (*h).to_owned()));
    header.push("expect".to_owned());
    let mut table = vec![header];
    for report in reports {
        let mut row = vec![report.policy.clone()];
        row.extend(COLUMNS.iter().map(|(_, field)| report.number(field).unwrap_or(0).to_string()));
        let passed = report.expectations.iter().filter(|e| e.pass).count();
        row.push(format!("{passed}/{}", report.expectations.len()));
        table.push(row);
    }
    let widths: Vec<usize> =
        (0..table[0].len()).map(|c| table.iter().map(|r| r.get(c).map_or(0, String::len)).max().unwrap_or(0)).collect();
    let mut out = String::new();
    if let Some(first) = reports.first() {
        let _ = writeln!(out, "scenario {}  (seed {})", first.scenario, first.seed);
    }
    for row in &table {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| if c == 0 { format!("{cell:<w$}") } else { format!("{cell:>w$}") })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_has_a_row_per_policy() {
        let a = Report::new("s", 1, "reactive");
        let mut b = Report::new("s", 1, "hybrid");
        b.logins = 12;
        let table = render_comparison(&[a, b]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[2].starts_with("reactive"));
        assert!(lines[3].starts_with("hybrid") && lines[3].contains("12"));
    }
}
