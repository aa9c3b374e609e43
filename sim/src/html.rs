//! The HTML report: one self-contained page (inline CSS and SVG, no scripts, no downloads) with, per run,
//! its figures and expectations, an overview of the whole run, and one row per calendar day so that
//! intraday detail stays visible on a multi-day run.
//!
//! Times are shown in the scenario's market zone (`[workload] market_hours.tz`, default the zone of
//! `start`); hovering over anything shows its instant in that zone and in UTC. Each session has a lane of
//! its states; markers show logins, rejections (when the broker judged the request), the broker's
//! de-authentications and resets, the engine's cut-offs and warm-up logins, restarts and give-ups; below
//! the lanes, requests ok and failed per 5 minutes. Every element a reader (or a test) may look for
//! carries a class and a `data-marker` attribute: `<g class="marker rejection" data-marker="rejection">`.

use std::fmt::Write as _;

use warden_engine::{StateKind, UnixMs};

use crate::report::{Report, RunDay};
use crate::runner::{Marker, MarkerKind, Timeline};

const WIDTH: f64 = 960.0;
const LEFT: f64 = 150.0;
const RIGHT: f64 = 10.0;
const LANE: f64 = 18.0;
const BARS: f64 = 40.0;
const AXIS: f64 = 14.0;

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

/// A marker's colour and what it means, for the legend.
fn marker_style(kind: MarkerKind) -> (&'static str, &'static str) {
    match kind {
        MarkerKind::Login => ("#08519c", "login (grant installed)"),
        MarkerKind::Rejection => ("#e31a1c", "rejection (when the broker judged the request)"),
        MarkerKind::Deauth => ("#6a3d9a", "de-authentication or reset by the broker"),
        MarkerKind::Cutoff => ("#000000", "daily cut-off"),
        MarkerKind::Warmup => ("#ff7f00", "warm-up login"),
        MarkerKind::Restart => ("#b15928", "restart (actor or process)"),
        MarkerKind::GaveUp => ("#a50f15", "gave up (Invalid)"),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// `t` in the timeline's zone and in UTC, for hover text.
fn when(t: UnixMs, timeline: &Timeline) -> String {
    match t.to_timestamp() {
        Some(ts) => {
            let local = ts.to_zoned(timeline.days.zone().clone());
            format!("{} ({t})", local.strftime("%Y-%m-%d %H:%M:%S%.3f %Z"))
        }
        None => t.to_string(),
    }
}

/// `t` as a short local label.
fn label(t: UnixMs, timeline: &Timeline, with_date: bool) -> String {
    match t.to_timestamp() {
        Some(ts) => {
            let local = ts.to_zoned(timeline.days.zone().clone());
            local.strftime(if with_date { "%a %m-%d %H:%M" } else { "%H:%M" }).to_string()
        }
        None => t.to_string(),
    }
}

/// A time span drawn on a chart `WIDTH` wide.
#[derive(Clone, Copy)]
struct Span {
    from: UnixMs,
    to: UnixMs,
}

impl Span {
    fn x(&self, t: UnixMs) -> f64 {
        let span = (self.to.as_millis() - self.from.as_millis()).max(1) as f64;
        let offset = (t.as_millis() - self.from.as_millis()).clamp(0, span as i64) as f64;
        LEFT + offset / span * (WIDTH - LEFT - RIGHT)
    }

    fn contains(&self, t: UnixMs) -> bool {
        self.from <= t && t < self.to
    }
}

/// Grid lines and local-time labels at `ticks` instants.
fn axis(out: &mut String, span: Span, timeline: &Timeline, ticks: &[UnixMs], height: f64, with_date: bool) {
    for (i, t) in ticks.iter().enumerate() {
        let x = span.x(*t);
        let anchor = if i == 0 {
            "start"
        } else if i + 1 == ticks.len() {
            "end"
        } else {
            "middle"
        };
        let _ = write!(
            out,
            "<line x1='{x:.1}' y1='0' x2='{x:.1}' y2='{height:.1}' class='grid'/>\
             <text x='{x:.1}' y='{:.1}' class='tick' text-anchor='{anchor}'><title>{}</title>{}</text>",
            height + 11.0,
            escape(&when(*t, timeline)),
            escape(&label(*t, timeline, with_date)),
        );
    }
}

fn marker(out: &mut String, m: &Marker, span: Span, timeline: &Timeline, lanes: usize) {
    let (fill, _) = marker_style(m.kind);
    let x = span.x(m.at);
    let title = format!("{}: {} — {}", m.kind.name(), escape(&m.detail), escape(&when(m.at, timeline)));
    let name = m.kind.name();
    let _ = write!(out, "<g class='marker {name}' data-marker='{name}'><title>{title}</title>");
    match m.session {
        Some(session) => {
            let y = session as f64 * LANE;
            match m.kind {
                MarkerKind::Rejection | MarkerKind::GaveUp => {
                    // A small triangle above the lane's middle.
                    let _ = write!(out, "<path d='M{:.2} {:.1} l4 7 l-8 0 z' fill='{fill}'/>", x, y + 2.0);
                }
                _ => {
                    let _ = write!(
                        out,
                        "<line x1='{x:.2}' y1='{y:.1}' x2='{x:.2}' y2='{:.1}' stroke='{fill}' stroke-width='2'/>",
                        y + LANE
                    );
                }
            }
        }
        None => {
            let _ = write!(
                out,
                "<line x1='{x:.2}' y1='0' x2='{x:.2}' y2='{:.1}' stroke='{fill}' stroke-width='1.5' \
                 stroke-dasharray='3 2'/>",
                lanes as f64 * LANE
            );
        }
    }
    out.push_str("</g>");
}

/// One chart over `span`: a lane per session, markers, and requests per bucket.
fn chart(out: &mut String, timeline: &Timeline, span: Span, ticks: &[UnixMs], with_date: bool, class: &str) {
    let lanes = timeline.sessions.len().max(1);
    let lanes_h = lanes as f64 * LANE;
    let height = lanes_h + BARS + AXIS + 6.0;
    let _ = write!(out, "<svg class='{class}' viewBox='0 0 {WIDTH} {height:.0}' width='{WIDTH}' height='{height:.0}'>");
    axis(out, span, timeline, ticks, lanes_h + BARS + 4.0, with_date);
    for (i, name) in timeline.sessions.iter().enumerate() {
        let y = i as f64 * LANE;
        let _ = write!(out, "<text x='4' y='{:.1}' class='label'>{}</text>", y + 13.0, escape(name));
    }
    for s in timeline.spans.iter().filter(|s| s.to > span.from && s.from < span.to) {
        let (x1, x2) = (span.x(s.from), span.x(s.to));
        let y = s.session as f64 * LANE + 3.0;
        let _ = write!(
            out,
            "<rect class='state' x='{x1:.2}' y='{y:.1}' width='{:.2}' height='{:.1}' fill='{}'><title>{} from {} to {}</title></rect>",
            (x2 - x1).max(0.3),
            LANE - 6.0,
            colour(s.state),
            s.state,
            escape(&when(s.from, timeline)),
            escape(&when(s.to, timeline)),
        );
    }
    for m in timeline.markers.iter().filter(|m| span.contains(m.at)) {
        marker(out, m, span, timeline, lanes);
    }
    // Requests: ok (green) and failed (red, at least 2 px so a single one shows), per bucket.
    let buckets = &timeline.buckets;
    let width_ms = buckets.width_ms.max(1) as i64;
    let first = ((span.from.as_millis() - timeline.start.as_millis()).max(0) / width_ms) as usize;
    let last = ((span.to.as_millis() - timeline.start.as_millis()).max(0) / width_ms) as usize;
    let in_span = first..last.min(buckets.ok.len());
    let max = in_span.clone().map(|i| buckets.ok[i] + buckets.failed[i]).max().unwrap_or(0).max(1) as f64;
    let base = lanes_h + BARS;
    let _ = write!(out, "<text x='4' y='{:.1}' class='label'>requests (max {max}/5 min)</text>", lanes_h + 14.0);
    for i in in_span {
        let (ok, failed) = (buckets.ok[i], buckets.failed[i]);
        if ok + failed == 0 {
            continue;
        }
        let from = timeline.start.saturating_add(std::time::Duration::from_millis(i as u64 * buckets.width_ms));
        let to = from.saturating_add(std::time::Duration::from_millis(buckets.width_ms));
        let (x1, x2) = (span.x(from), span.x(to));
        let w = (x2 - x1).max(0.5);
        let ok_h = ok as f64 / max * (BARS - 4.0);
        let failed_h = if failed > 0 { (failed as f64 / max * (BARS - 4.0)).max(2.0) } else { 0.0 };
        let _ = write!(
            out,
            "<g><title>{ok} ok, {failed} failed from {}</title><rect class='ok' x='{x1:.2}' y='{:.2}' width='{w:.2}' height='{ok_h:.2}'/>",
            escape(&when(from, timeline)),
            base - ok_h
        );
        if failed > 0 {
            let _ = write!(
                out,
                "<rect class='failed' x='{x1:.2}' y='{:.2}' width='{w:.2}' height='{failed_h:.2}'/>",
                base - ok_h - failed_h
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
}

/// The day's rows: one chart per calendar day, midnight to midnight in the market's zone.
fn days(out: &mut String, timeline: &Timeline) {
    out.push_str("<div class='days'>");
    for (i, day) in timeline.days.days().iter().enumerate() {
        let RunDay { date, from, to, .. } = day;
        let trading = timeline.trading.get(i).copied().unwrap_or(true);
        let span = Span { from: *from, to: *to };
        let ticks: Vec<UnixMs> = (0..=8)
            .map(|k| UnixMs::from_millis(from.as_millis() + (to.as_millis() - from.as_millis()) * k / 8))
            .collect();
        let _ = write!(
            out,
            "<div class='day{}' data-date='{date}'><h4>{}{}</h4>",
            if trading { "" } else { " closed" },
            date.strftime("%a %Y-%m-%d"),
            if trading { "" } else { " — market closed" },
        );
        chart(out, timeline, span, &ticks, false, "day-chart");
        out.push_str("</div>");
    }
    out.push_str("</div>");
}

fn summary(out: &mut String, report: &Report) {
    out.push_str("<table class='figures'><tr>");
    for (name, value) in [
        ("requests", report.requests_total),
        ("failed", report.requests_failed),
        ("unknown", report.outcome_unknown),
        ("retried", report.requests_retried),
        ("logins", report.logins),
        ("login attempts", report.login_attempts),
        ("refreshes", report.refreshes),
        ("keep-alives", report.keepalives),
        ("rejections", report.rejections),
        ("p99 delay ms", report.p99_request_delay_ms),
        ("max delay ms", report.max_request_delay_ms),
        ("dead tokens", report.dead_token_uses),
        ("duplicates", report.duplicate_orders),
    ] {
        let _ = write!(out, "<td><b>{value}</b><br>{name}</td>");
    }
    out.push_str("</tr></table>");
    let json = serde_json::to_value(report).unwrap_or_default();
    let nonzero: Vec<String> = ["failed_by", "invalid_by"]
        .iter()
        .filter_map(|table| json.get(*table).and_then(|v| v.as_object()).map(|m| (table, m)))
        .flat_map(|(table, map)| {
            map.iter().filter(|(_, n)| n.as_u64().is_some_and(|n| n > 0)).map(move |(k, n)| format!("{table}.{k} {n}"))
        })
        .collect();
    if !nonzero.is_empty() {
        let _ = write!(out, "<p class='why'>failures: {}</p>", escape(&nonzero.join(", ")));
    }
    let events: Vec<String> =
        report.events.iter().filter(|(_, e)| e.count > 0).map(|(k, e)| format!("{k} {}", e.count)).collect();
    if !events.is_empty() {
        let _ = write!(out, "<p class='why'>events: {}</p>", escape(&events.join(", ")));
    }
    out.push_str("<ul class='expect'>");
    for e in &report.expectations {
        let (class, mark) = if e.pass { ("pass", "✔") } else { ("fail", "✘") };
        let line = format!("{} {} (actual {})", e.name, e.bound, e.actual);
        let _ = write!(out, "<li class='{class}'>{mark} {}</li>", escape(&line));
    }
    out.push_str("</ul>");
}

fn legend(out: &mut String) {
    out.push_str("<div class='legend'><span class='title'>states</span>");
    for state in StateKind::ALL {
        let _ = write!(out, "<span class='swatch' style='background:{}'></span>{state} ", colour(state));
    }
    out.push_str("<br><span class='title'>markers</span>");
    for kind in MarkerKind::ALL {
        let (fill, meaning) = marker_style(kind);
        // The same shape as on the charts: a triangle for a refused request or a give-up, a line else.
        let shape = match kind {
            MarkerKind::Rejection | MarkerKind::GaveUp => format!("<path d='M5 2 l4 7 l-8 0 z' fill='{fill}'/>"),
            _ => format!("<line x1='5' y1='0' x2='5' y2='12' stroke='{fill}' stroke-width='2'/>"),
        };
        let _ = write!(
            out,
            "<svg class='mark' data-legend='{}' width='10' height='12' viewBox='0 0 10 12'>{shape}</svg>{} ",
            kind.name(),
            escape(meaning)
        );
    }
    out.push_str(
        "<br><span class='title'>requests</span><span class='swatch' style='background:#74c476'></span>ok \
         <span class='swatch' style='background:#de2d26'></span>failed or outcome unknown (per 5 minutes). \
         Dashed markers concern the whole account or process.</div>",
    );
}

/// The page for these runs.
pub fn render(runs: &[(Report, Option<Timeline>)]) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset='utf-8'><title>warden-sim report</title><style>\
         body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}h2{margin-top:36px}\
         h4{margin:10px 0 2px;font-size:13px}.closed h4{color:#999}\
         table{border-collapse:collapse}td{border:1px solid #ddd;padding:4px 8px;text-align:center;font-size:12px}\
         .grid{stroke:#eee}.tick{font-size:10px;fill:#777}.label{font-size:11px;fill:#333}\
         .ok{fill:#74c476}.failed{fill:#de2d26}.why{font-size:12px;color:#555;margin:4px 0}\
         .expect{font-size:13px}.pass{color:#31a354}.fail{color:#de2d26;font-weight:bold}\
         .legend{font-size:12px;line-height:22px;position:sticky;top:0;background:#fff;padding:4px 0;\
         border-bottom:1px solid #eee;z-index:1}.legend .title{font-weight:bold;margin-right:8px}\
         .swatch{display:inline-block;width:12px;height:12px;margin:0 3px 0 10px;vertical-align:middle}\
         .mark{margin:0 3px 0 10px;vertical-align:middle}\
         </style></head><body><h1>warden-sim report</h1>",
    );
    legend(&mut out);
    for (report, timeline) in runs {
        let verdict = if report.passed() { "passed" } else { "FAILED" };
        let _ = write!(
            out,
            "<section class='run' data-scenario='{}'><h2>{} — {verdict}</h2><p>seed {}, policy {}</p>",
            escape(&report.scenario),
            escape(&report.scenario),
            report.seed,
            escape(&report.policy)
        );
        summary(&mut out, report);
        if let Some(timeline) = timeline {
            let zone = timeline.days.zone().iana_name().unwrap_or("the scenario's zone").to_owned();
            let _ = write!(out, "<h3>The whole run</h3><p class='why'>times in {} (UTC on hover)</p>", escape(&zone));
            let span = Span { from: timeline.start, to: timeline.end };
            let ticks: Vec<UnixMs> = (0..=6)
                .map(|k| {
                    UnixMs::from_millis(
                        timeline.start.as_millis() + (timeline.end.as_millis() - timeline.start.as_millis()) * k / 6,
                    )
                })
                .collect();
            chart(&mut out, timeline, span, &ticks, true, "overview");
            if timeline.markers_dropped > 0 {
                let _ =
                    write!(out, "<p class='why'>{} markers not drawn (too many to keep)</p>", timeline.markers_dropped);
            }
            out.push_str("<h3>Day by day</h3>");
            days(&mut out, timeline);
        }
        out.push_str("</section>");
    }
    out.push_str("</body></html>\n");
    out
}
