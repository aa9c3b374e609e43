//! The HTML report: one self-contained page (inline CSS and SVG, no scripts, no downloads) with, per
//! scenario, its figures, its expectations, each session's state over time with logins marked, and
//! requests and failures over time.

use std::fmt::Write as _;

use warden_engine::{StateKind, UnixMs};

use crate::report::Report;
use crate::runner::Timeline;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 150.0;
const ROW: f64 = 22.0;

fn colour(state: StateKind) -> &'static str {
    match state {
        StateKind::Initializing => "#9ecae1",
        StateKind::Valid => "#31a354",
        StateKind::ExpiringSoon => "#a1d99b",
        StateKind::Expired => "#bdbdbd",
        StateKind::Reinitializing => "#fd8d3c",
        StateKind::Invalid => "#de2d26",
        StateKind::Stopped => "#636363",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The x coordinate of `t` on a chart of the run.
fn x_of(t: UnixMs, timeline: &Timeline) -> f64 {
    let span = (timeline.end.as_millis() - timeline.start.as_millis()).max(1) as f64;
    let offset = (t.as_millis() - timeline.start.as_millis()).clamp(0, span as i64) as f64;
    LEFT + offset / span * (WIDTH - LEFT - 10.0)
}

fn axis(out: &mut String, timeline: &Timeline, y: f64) {
    for i in 0..=6 {
        let t = UnixMs::from_millis(
            timeline.start.as_millis() + (timeline.end.as_millis() - timeline.start.as_millis()) * i / 6,
        );
        let x = x_of(t, timeline);
        let label = t.to_string();
        let label = label.get(5..16).unwrap_or(&label).replace('T', " ");
        // The first and last labels hang inwards so that they stay on the chart.
        let anchor = match i {
            0 => "start",
            6 => "end",
            _ => "middle",
        };
        let _ = write!(
            out,
            "<line x1='{x:.1}' y1='0' x2='{x:.1}' y2='{y:.1}' class='grid'/>\
             <text x='{x:.1}' y='{:.1}' class='tick' text-anchor='{anchor}'>{label}Z</text>",
            y + 12.0
        );
    }
}

fn states_chart(out: &mut String, timeline: &Timeline) {
    let rows = timeline.sessions.len().max(1) as f64;
    let height = rows * ROW + 20.0;
    let _ = write!(out, "<svg viewBox='0 0 {WIDTH} {height}' width='{WIDTH}' height='{height}'>");
    axis(out, timeline, rows * ROW);
    for (i, name) in timeline.sessions.iter().enumerate() {
        let y = i as f64 * ROW;
        let _ = write!(out, "<text x='4' y='{:.1}' class='label'>{}</text>", y + 15.0, escape(name));
    }
    for span in &timeline.spans {
        let (x1, x2) = (x_of(span.from, timeline), x_of(span.to, timeline));
        let y = span.session as f64 * ROW + 3.0;
        let _ = write!(
            out,
            "<rect x='{x1:.2}' y='{y:.1}' width='{:.2}' height='{:.1}' fill='{}'><title>{} {} – {}</title></rect>",
            (x2 - x1).max(0.3),
            ROW - 6.0,
            colour(span.state),
            span.state,
            span.from,
            span.to
        );
    }
    for marker in timeline.markers.iter().filter(|m| m.kind == crate::runner::MarkerKind::Login) {
        let (at, session) = (&marker.at, marker.session.unwrap_or(0));
        let x = x_of(*at, timeline);
        let y = session as f64 * ROW;
        let _ = write!(
            out,
            "<line x1='{x:.2}' y1='{y:.1}' x2='{x:.2}' y2='{:.1}' class='login'><title>login {at}</title></line>",
            y + ROW
        );
    }
    out.push_str("</svg>");
}

fn requests_chart(out: &mut String, timeline: &Timeline) {
    let buckets = &timeline.buckets;
    let height = 120.0;
    let max = buckets.ok.iter().zip(&buckets.failed).map(|(a, b)| a + b).max().unwrap_or(0).max(1) as f64;
    let _ = write!(out, "<svg viewBox='0 0 {WIDTH} {}' width='{WIDTH}' height='{}'>", height + 20.0, height + 20.0);
    axis(out, timeline, height);
    let _ = write!(out, "<text x='4' y='14' class='label'>requests (max {max})</text>");
    let n = buckets.ok.len().max(1) as f64;
    let width = (WIDTH - LEFT - 10.0) / n;
    for (i, (ok, failed)) in buckets.ok.iter().zip(&buckets.failed).enumerate() {
        let x = LEFT + i as f64 * width;
        let ok_h = *ok as f64 / max * height;
        let failed_h = *failed as f64 / max * height;
        if *ok > 0 {
            let _ = write!(
                out,
                "<rect x='{x:.2}' y='{:.2}' width='{:.2}' height='{ok_h:.2}' class='ok'><title>{ok} ok</title></rect>",
                height - ok_h,
                width.max(0.5)
            );
        }
        if *failed > 0 {
            // Failures are drawn at least 2 px high: a single one must be visible.
            let h = failed_h.max(2.0);
            let _ = write!(
                out,
                "<rect x='{x:.2}' y='{:.2}' width='{:.2}' height='{h:.2}' class='failed'><title>{failed} failed</title></rect>",
                height - ok_h - h,
                width.max(0.5)
            );
        }
    }
    out.push_str("</svg>");
}

fn summary(out: &mut String, report: &Report) {
    out.push_str("<table><tr>");
    for (name, value) in [
        ("requests", report.requests_total),
        ("failed", report.requests_failed),
        ("retried", report.requests_retried),
        ("logins", report.logins),
        ("refreshes", report.refreshes),
        ("keep-alives", report.keepalives),
        ("p99 delay ms", report.p99_request_delay_ms),
        ("max delay ms", report.max_request_delay_ms),
        ("dead tokens", report.dead_token_uses),
        ("duplicates", report.duplicate_orders),
    ] {
        let _ = write!(out, "<td><b>{value}</b><br>{name}</td>");
    }
    out.push_str("</tr></table><ul class='expect'>");
    for e in &report.expectations {
        let (class, mark) = if e.pass { ("pass", "✔") } else { ("fail", "✘") };
        let line = format!("{} {} (actual {})", e.name, e.bound, e.actual);
        let _ = write!(out, "<li class='{class}'>{mark} {}</li>", escape(&line));
    }
    out.push_str("</ul>");
}

/// The page for these runs.
pub fn render(runs: &[(Report, Option<Timeline>)]) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset='utf-8'><title>warden-sim report</title><style>\
         body{font-family:system-ui,sans-serif;margin:24px;color:#222}h2{margin-top:36px}\
         table{border-collapse:collapse}td{border:1px solid #ddd;padding:4px 10px;text-align:center;font-size:13px}\
         .grid{stroke:#eee}.tick{font-size:10px;fill:#777}.label{font-size:11px;fill:#333}\
         .login{stroke:#08519c;stroke-width:1.5}.ok{fill:#74c476}.failed{fill:#de2d26}\
         .expect{font-size:13px}.pass{color:#31a354}.fail{color:#de2d26;font-weight:bold}\
         .legend span{display:inline-block;padding:2px 8px;margin-right:6px;font-size:12px;color:#fff}\
         </style></head><body><h1>warden-sim report</h1><p class='legend'>",
    );
    for state in StateKind::ALL {
        let _ = write!(out, "<span style='background:{}'>{state}</span>", colour(state));
    }
    out.push_str("<span style='background:#08519c'>login</span></p>");
    for (report, timeline) in runs {
        let verdict = if report.passed() { "passed" } else { "FAILED" };
        let _ = write!(
            out,
            "<h2>{} — {verdict}</h2><p>seed {}, policy {}</p>",
            escape(&report.scenario),
            report.seed,
            escape(&report.policy)
        );
        summary(&mut out, report);
        if let Some(timeline) = timeline {
            out.push_str("<h3>Session states and logins</h3>");
            states_chart(&mut out, timeline);
            out.push_str("<h3>Requests and failures</h3>");
            requests_chart(&mut out, timeline);
        }
    }
    out.push_str("</body></html>\n");
    out
}
