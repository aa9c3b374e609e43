//! SVG plots of a bench run, drawn by hand (no dependency, no network): resident memory per session and
//! open time against the number of sessions, and the herd's p99 wait for warden and the two naive
//! designs against the herd's size. Axes are logarithmic where the values span decades.

use std::fmt::Write as _;
use std::path::Path;

use super::Figures;

/// One line: a name, a colour and its points.
struct Series {
    name: &'static str,
    colour: &'static str,
    points: Vec<(f64, f64)>,
}

/// One chart.
struct Chart {
    title: String,
    x_label: &'static str,
    y_label: &'static str,
    log_y: bool,
    series: Vec<Series>,
}

const SIZES: [(&str, f64); 4] = [("1k", 1e3), ("10k", 1e4), ("100k", 1e5), ("1m", 1e6)];

/// Writes `rss_per_session.svg`, `open_time.svg` and `herd_p99.svg` into `dir`.
pub(crate) fn write_all(dir: &Path, figures: &Figures) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let points = |key: &dyn Fn(&str) -> String| -> Vec<(f64, f64)> {
        SIZES.iter().filter_map(|(label, x)| figures.get(&key(label)).map(|y| (*x, y))).collect()
    };
    let rss = Chart {
        title: "Resident memory per session (sled, default durability)".into(),
        x_label: "sessions",
        y_label: "KiB per session",
        log_y: false,
        series: vec![Series {
            name: "warden",
            colour: "#1f77b4",
            points: points(&|l| format!("sessions_{l}_rss_kib_per_session")),
        }],
    };
    let open = Chart {
        title: "Open time: every session serving a token (sled, default durability)".into(),
        x_label: "sessions",
        y_label: "seconds",
        log_y: true,
        series: vec![Series { name: "warden", colour: "#1f77b4", points: points(&|l| format!("sessions_{l}_open_s")) }],
    };
    let login_ms = figures.get("herd_login_ms").unwrap_or(200.0);
    let herd = Chart {
        title: format!("Herd on an expired session: p99 wait (login {login_ms:.0} ms)"),
        x_label: "requests in the herd",
        y_label: "p99 wait (ms)",
        log_y: true,
        series: vec![
            Series { name: "warden", colour: "#1f77b4", points: points(&|l| format!("herd_{l}_p99_ms")) },
            Series {
                name: "token behind a mutex",
                colour: "#d62728",
                points: points(&|l| format!("herd_{l}_p99_ms_mutex")),
            },
            Series {
                name: "no single flight",
                colour: "#2ca02c",
                points: points(&|l| format!("herd_{l}_p99_ms_no_single_flight")),
            },
        ],
    };
    std::fs::write(dir.join("rss_per_session.svg"), render(&rss))?;
    std::fs::write(dir.join("open_time.svg"), render(&open))?;
    std::fs::write(dir.join("herd_p99.svg"), render(&herd))?;
    Ok(())
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

fn render(chart: &Chart) -> String {
    let all: Vec<(f64, f64)> = chart.series.iter().flat_map(|s| s.points.iter().copied()).collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        WIDTH / 2.0,
        escape(&chart.title)
    );
    if all.is_empty() {
        svg.push_str("<text x=\"20\" y=\"80\">no data in this run</text>\n</svg>\n");
        return svg;
    }
    let (x_lo, x_hi) = decades(all.iter().map(|p| p.0));
    let (y_lo, y_hi) = if chart.log_y {
        decades(all.iter().map(|p| p.1))
    } else {
        let max = all.iter().map(|p| p.1).fold(0.0, f64::max);
        (0.0, nice_ceiling(max))
    };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x_of = |x: f64| LEFT + (x.log10() - x_lo) / (x_hi - x_lo) * plot_w;
    let y_of = |y: f64| {
        let t = if chart.log_y { (y.max(1e-9).log10() - y_lo) / (y_hi - y_lo) } else { (y - y_lo) / (y_hi - y_lo) };
        TOP + plot_h - t * plot_h
    };
    // Axes and grid.
    let _ = writeln!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#333\"/>"
    );
    let mut decade = x_lo;
    while decade <= x_hi + 1e-9 {
        let x = LEFT + (decade - x_lo) / (x_hi - x_lo) * plot_w;
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#ddd\"/>\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            TOP + plot_h,
            TOP + plot_h + 16.0,
            count_label(10f64.powf(decade))
        );
        decade += 1.0;
    }
    let ticks: Vec<f64> = if chart.log_y {
        (0..=((y_hi - y_lo).round() as i32)).map(|i| 10f64.powf(y_lo + f64::from(i))).collect()
    } else {
        (0..=4).map(|i| y_hi * f64::from(i) / 4.0).collect()
    };
    for tick in ticks {
        let y = y_of(tick);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            value_label(tick)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
         <text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{}</text>",
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0,
        escape(chart.x_label),
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(chart.y_label)
    );
    // Lines, points, values and the legend.
    for (n, series) in chart.series.iter().enumerate() {
        let path: Vec<String> = series.points.iter().map(|(x, y)| format!("{:.1},{:.1}", x_of(*x), y_of(*y))).collect();
        if path.len() > 1 {
            let _ = writeln!(
                svg,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>",
                path.join(" "),
                series.colour
            );
        }
        for (x, y) in &series.points {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{}\">{}</text>",
                x_of(*x),
                y_of(*y),
                series.colour,
                x_of(*x) + 5.0,
                y_of(*y) - 6.0,
                series.colour,
                value_label(*y)
            );
        }
        let ly = TOP + 14.0 + 18.0 * n as f64;
        let lx = LEFT + plot_w + 12.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{}\" stroke-width=\"2\"/>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            lx + 20.0,
            series.colour,
            lx + 26.0,
            ly + 4.0,
            escape(series.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The whole decades around the values' range, as log10 bounds.
fn decades(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| *v > 0.0) {
        lo = lo.min(v.log10().floor());
        hi = hi.max(v.log10().ceil());
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi <= lo { (lo, lo + 1.0) } else { (lo, hi) }
}

fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let step = 10f64.powf(max.log10().floor());
    ((max / step).ceil() * step).max(step)
}

fn count_label(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{}M", v / 1e6),
        v if v >= 1e3 => format!("{}k", v / 1e3),
        v => format!("{v}"),
    }
}

fn value_label(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_render_with_and_without_data() {
        let mut figures = Figures::new(true);
        figures.set("sessions_1k_rss_kib_per_session", Some(9.5), "");
        figures.set("sessions_10k_rss_kib_per_session", Some(8.9), "");
        figures.set("herd_1k_p99_ms", Some(203.0), "");
        figures.set("herd_1k_p99_ms_mutex", Some(210.0), "");
        let dir = tempfile::tempdir().expect("tempdir");
        write_all(dir.path(), &figures).expect("plots written");
        let rss = std::fs::read_to_string(dir.path().join("rss_per_session.svg")).expect("rss plot");
        assert!(rss.starts_with("<svg") && rss.contains("polyline") && rss.contains("10k"), "{rss}");
        let open = std::fs::read_to_string(dir.path().join("open_time.svg")).expect("open plot");
        assert!(open.contains("no data"), "{open}");
        assert_eq!(decades([150.0, 2_000.0].into_iter()), (2.0, 4.0));
        assert_eq!(nice_ceiling(9.5), 10.0);
    }
}
