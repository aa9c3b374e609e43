//! The figures of one bench run: named numbers in the order they were measured, grouped in sections,
//! printed as a table and written as one JSON object (the names are the JSON keys; a figure that could
//! not be measured, such as 1M sessions on a machine without the memory, is `null`).

use std::fmt::Write as _;

/// One row.
#[derive(Clone, Debug)]
struct Row {
    name: String,
    value: Option<f64>,
    /// What the figure is, for the table.
    what: String,
}

/// The figures of a run.
#[derive(Clone, Debug)]
pub struct Figures {
    quick: bool,
    sections: Vec<(String, Vec<Row>)>,
    /// Facts about the run (machine, mode), written first in the JSON.
    facts: Vec<(String, String)>,
}

impl Figures {
    /// An empty set; `quick` is recorded in the JSON.
    pub fn new(quick: bool) -> Figures {
        let mut figures = Figures { quick, sections: Vec::new(), facts: Vec::new() };
        figures.fact("mode", if quick { "quick" } else { "full" });
        figures.fact("cpus", &std::thread::available_parallelism().map_or(0, |n| n.get()).to_string());
        figures.fact("cpu", &cpu_model());
        figures
    }

    /// Whether this is the short run.
    pub fn quick(&self) -> bool {
        self.quick
    }

    /// A fact about the run (a string in the JSON).
    pub fn fact(&mut self, name: &str, value: &str) {
        self.facts.push((name.to_owned(), value.to_owned()));
    }

    /// Starts a section of the table.
    pub fn section(&mut self, title: &str) {
        self.sections.push((title.to_owned(), Vec::new()));
    }

    /// Records a figure (`None`: not measured) with a description for the table.
    pub fn set(&mut self, name: &str, value: Option<f64>, what: &str) {
        if self.sections.is_empty() {
            self.section("figures");
        }
        let row = Row { name: name.to_owned(), value, what: what.to_owned() };
        if let Some((_, rows)) = self.sections.last_mut() {
            rows.push(row);
        }
    }

    /// A figure by name.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.sections.iter().flat_map(|(_, rows)| rows).find(|r| r.name == name).and_then(|r| r.value)
    }

    /// The median of several runs' figures, figure by figure (the sections and order of the first run;
    /// a figure missing from a run does not count; `null` only if no run has it).
    pub fn median_of(runs: Vec<Figures>) -> Figures {
        let Some(first) = runs.first() else { return Figures::new(false) };
        let mut merged = Figures { quick: first.quick, sections: Vec::new(), facts: first.facts.clone() };
        merged.fact("runs", &runs.len().to_string());
        for (title, rows) in &first.sections {
            let rows = rows
                .iter()
                .map(|row| {
                    let mut values: Vec<f64> = runs.iter().filter_map(|run| run.get(&row.name)).collect();
                    let value = (!values.is_empty()).then(|| super::stats::median(&mut values));
                    Row { name: row.name.clone(), value, what: row.what.clone() }
                })
                .collect();
            merged.sections.push((title.clone(), rows));
        }
        merged
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let width = self.sections.iter().flat_map(|(_, rows)| rows).map(|r| r.name.len()).max().unwrap_or(10);
        let mut out = String::new();
        for (title, rows) in &self.sections {
            let _ = writeln!(out, "\n{title}");
            for row in rows {
                let value = row.value.map_or_else(|| "-".to_owned(), format_value);
                let _ = writeln!(out, "  {:<width$}  {:>12}  {}", row.name, value, row.what);
            }
        }
        out
    }

    /// The figures as one JSON object (facts first, then figures in the order measured).
    pub fn json(&self) -> String {
        let mut out = String::from("{\n");
        let mut first = true;
        let mut item = |out: &mut String, key: &str, value: String| {
            if !first {
                out.push_str(",\n");
            }
            first = false;
            let _ = write!(out, "  {}: {value}", serde_json::Value::String(key.to_owned()));
        };
        for (name, value) in &self.facts {
            item(&mut out, name, serde_json::Value::String(value.clone()).to_string());
        }
        for row in self.sections.iter().flat_map(|(_, rows)| rows) {
            let value = match row.value {
                Some(v) if v.is_finite() => serde_json::Number::from_f64(round(v))
                    .map_or_else(|| "null".to_owned(), |n| serde_json::Value::Number(n).to_string()),
                _ => "null".to_owned(),
            };
            item(&mut out, &row.name, value);
        }
        out.push_str("\n}");
        out
    }
}

/// Three significant decimals at most: the figures are medians of noisy runs.
fn round(v: f64) -> f64 {
    if v.abs() >= 100.0 {
        (v * 10.0).round() / 10.0
    } else if v.abs() >= 1.0 {
        (v * 100.0).round() / 100.0
    } else {
        (v * 10_000.0).round() / 10_000.0
    }
}

fn format_value(v: f64) -> String {
    let v = round(v);
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { format!("{v}") }
}

/// The CPU model from `/proc/cpuinfo`, if it says.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_the_order_and_writes_null_for_missing_figures() {
        let mut figures = Figures::new(true);
        figures.section("hot path");
        figures.set("token_ns", Some(9.876_54), "token()");
        figures.set("sessions_1m_open_s", None, "skipped");
        let json = figures.json();
        assert!(json.contains("\"token_ns\": 9.88"), "{json}");
        assert!(json.contains("\"sessions_1m_open_s\": null"), "{json}");
        assert!(json.find("\"mode\"") < json.find("\"token_ns\""), "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(value["mode"], "quick");
        assert!(figures.table().contains("token_ns"));
        assert_eq!(figures.get("token_ns"), Some(9.876_54));
        let mut other = figures.clone();
        other.sections[0].1[0].value = Some(20.0);
        let third = figures.clone();
        let merged = Figures::median_of(vec![figures, other, third]);
        assert_eq!(merged.get("token_ns"), Some(9.876_54), "the median of 9.88, 20 and 9.88");
        assert_eq!(merged.get("sessions_1m_open_s"), None);
        assert!(merged.json().contains("\"runs\": \"3\""), "{}", merged.json());
    }
}
