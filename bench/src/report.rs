//! Collecting run outputs and rendering the comparison as text, a markdown
//! table, or JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::scenarios::{Anomalies, Better, Metric, RunOutput, Settings};
use crate::server::ServerKind;
use crate::stats::{median, spread_percent};

/// Distinct error texts kept per scenario and server.
const MAX_ERRORS_KEPT: usize = 5;

/// Raw outputs of all runs.
#[derive(Debug, Default)]
pub struct Results {
    /// One entry per scenario, in run order.
    pub scenarios: Vec<ScenarioResults>,
}

/// Raw outputs of one scenario.
#[derive(Debug)]
pub struct ScenarioResults {
    /// Scenario name.
    pub name: String,
    natsd: KindResults,
    nats_server: KindResults,
}

/// Raw outputs of one scenario on one server.
#[derive(Debug, Default)]
pub struct KindResults {
    /// Metrics of each successful run.
    pub runs: Vec<Vec<Metric>>,
    /// Anomalies summed over runs.
    pub anomalies: Anomalies,
    /// Errors of failed runs.
    pub errors: Vec<String>,
}

impl ScenarioResults {
    /// Empty results for `name`.
    pub fn new(name: String) -> Self {
        Self {
            name,
            natsd: KindResults::default(),
            nats_server: KindResults::default(),
        }
    }

    /// Results of one server.
    pub fn of(&self, kind: ServerKind) -> &KindResults {
        match kind {
            ServerKind::Natsd => &self.natsd,
            ServerKind::NatsServer => &self.nats_server,
        }
    }

    fn of_mut(&mut self, kind: ServerKind) -> &mut KindResults {
        match kind {
            ServerKind::Natsd => &mut self.natsd,
            ServerKind::NatsServer => &mut self.nats_server,
        }
    }

    /// Adds a successful run.
    pub fn record(&mut self, kind: ServerKind, output: RunOutput) {
        let slot = self.of_mut(kind);
        slot.runs.push(output.metrics);
        let mut anomalies = output.anomalies;
        anomalies
            .errors
            .retain(|e| !slot.anomalies.errors.contains(e));
        anomalies
            .errors
            .truncate(MAX_ERRORS_KEPT.saturating_sub(slot.anomalies.errors.len()));
        slot.anomalies.absorb(anomalies);
    }

    /// Adds a failed run.
    pub fn record_error(&mut self, kind: ServerKind, error: String) {
        let slot = self.of_mut(kind);
        if slot.errors.len() < MAX_ERRORS_KEPT && !slot.errors.contains(&error) {
            slot.errors.push(error);
        }
    }
}

/// A binary under test.
#[derive(Debug, Clone, Serialize)]
pub struct BinaryInfo {
    /// Path run.
    pub path: String,
    /// Its `--version` output.
    pub version: String,
}

/// Conditions of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    /// natsd binary.
    pub natsd: BinaryInfo,
    /// nats-server binary.
    pub nats_server: BinaryInfo,
    /// Rounds per scenario.
    pub rounds: usize,
    /// Counts used.
    pub settings: Settings,
    /// CPUs available to this process.
    pub cpus: usize,
    /// /proc/loadavg before the first run.
    pub load_before: String,
    /// /proc/loadavg after the last run.
    pub load_after: String,
}

/// Samples of one metric on one server.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// One value per successful round.
    pub samples: Vec<f64>,
    /// Their median.
    pub median: Option<f64>,
    /// (max − min) / median in percent.
    pub spread_pct: Option<f64>,
}

impl Series {
    fn of(samples: Vec<f64>) -> Self {
        Self {
            median: median(&samples),
            spread_pct: spread_percent(&samples),
            samples,
        }
    }
}

/// One metric of one scenario, both servers side by side.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Scenario name.
    pub scenario: String,
    /// Metric name.
    pub metric: String,
    /// Unit.
    pub unit: String,
    /// Direction of improvement.
    pub better: Better,
    /// natsd figures.
    pub natsd: Series,
    /// nats-server figures.
    pub nats_server: Series,
    /// natsd median / nats-server median.
    pub ratio: Option<f64>,
}

/// Something that went wrong in a scenario on one server.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Scenario name.
    pub scenario: String,
    /// Which server.
    pub server: ServerKind,
    /// Anomalies summed over runs.
    pub anomalies: Anomalies,
    /// Errors of failed runs.
    pub failed_runs: Vec<String>,
}

/// The finished comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Conditions.
    pub meta: Meta,
    /// Figures.
    pub rows: Vec<Row>,
    /// Anomalies and failures.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Reduces raw results to medians and ratios.
    pub fn build(meta: Meta, results: &Results) -> Self {
        let mut rows = Vec::new();
        let mut problems = Vec::new();
        for scenario in &results.scenarios {
            let mut metrics: Vec<(&'static str, &'static str, Better)> = Vec::new();
            for kind in ServerKind::BOTH {
                for m in scenario.of(kind).runs.iter().flatten() {
                    if !metrics.iter().any(|(name, _, _)| *name == m.name) {
                        metrics.push((m.name, m.unit, m.better));
                    }
                }
            }
            let samples = |kind: ServerKind, name: &str| {
                let values = scenario.of(kind).runs.iter().flatten();
                Series::of(values.filter(|m| m.name == name).map(|m| m.value).collect())
            };
            for (name, unit, better) in metrics {
                let natsd = samples(ServerKind::Natsd, name);
                let nats_server = samples(ServerKind::NatsServer, name);
                let ratio = match (natsd.median, nats_server.median) {
                    (Some(a), Some(b)) if b != 0.0 => Some(a / b),
                    _ => None,
                };
                rows.push(Row {
                    scenario: scenario.name.clone(),
                    metric: name.into(),
                    unit: unit.into(),
                    better,
                    natsd,
                    nats_server,
                    ratio,
                });
            }
            if scenario.natsd.runs.is_empty() && scenario.nats_server.runs.is_empty() {
                rows.push(Row {
                    scenario: scenario.name.clone(),
                    metric: "-".into(),
                    unit: String::new(),
                    better: Better::Higher,
                    natsd: Series::of(Vec::new()),
                    nats_server: Series::of(Vec::new()),
                    ratio: None,
                });
            }
            for kind in ServerKind::BOTH {
                let slot = scenario.of(kind);
                if !slot.anomalies.is_clean() || !slot.errors.is_empty() {
                    problems.push(Problem {
                        scenario: scenario.name.clone(),
                        server: kind,
                        anomalies: slot.anomalies.clone(),
                        failed_runs: slot.errors.clone(),
                    });
                }
            }
        }
        Self {
            meta,
            rows,
            problems,
        }
    }

    fn cells(&self) -> Vec<[String; 7]> {
        self.rows
            .iter()
            .map(|row| {
                let arrow = match row.better {
                    Better::Higher => "↑",
                    Better::Lower => "↓",
                };
                let value = |s: &Series| {
                    s.median
                        .map_or("error".into(), |v| format_value(v, &row.unit))
                };
                let spread = |s: &Series| s.spread_pct.map_or("-".into(), |p| format!("{p:.0}%"));
                [
                    row.scenario.clone(),
                    format!("{} {arrow}", row.metric),
                    value(&row.natsd),
                    value(&row.nats_server),
                    row.ratio.map_or("-".into(), |r| format!("{r:.2}")),
                    spread(&row.natsd),
                    spread(&row.nats_server),
                ]
            })
            .collect()
    }

    const HEADERS: [&'static str; 7] = [
        "scenario",
        "metric",
        "natsd",
        "nats-server",
        "natsd/nats-server",
        "spread natsd",
        "spread nats-server",
    ];

    /// Aligned plain-text table plus notes.
    pub fn to_text(&self) -> String {
        let cells = self.cells();
        let mut widths = Self::HEADERS.map(|h| h.chars().count());
        for row in &cells {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = self.header_text();
        let line = |out: &mut String, row: &[String]| {
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                let pad = w - cell.chars().count();
                if i < 2 {
                    let _ = write!(out, "{cell}{}  ", " ".repeat(pad));
                } else {
                    let _ = write!(out, "{}{cell}  ", " ".repeat(pad));
                }
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
        };
        line(&mut out, &Self::HEADERS.map(String::from));
        let mut last_scenario = String::new();
        for row in cells {
            let mut row = row;
            if row[0] == last_scenario {
                row[0] = String::new();
            } else {
                last_scenario = row[0].clone();
            }
            line(&mut out, &row);
        }
        out.push_str(&self.problems_text());
        out
    }

    /// GitHub-flavoured markdown table plus notes, for the README.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Medians of {} rounds; natsd {} vs {}; {} CPUs. ↑ higher is better, ↓ lower is better.\n",
            self.meta.rounds, self.meta.natsd.version, self.meta.nats_server.version, self.meta.cpus
        );
        let _ = writeln!(out, "| {} |", Self::HEADERS.join(" | "));
        let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|");
        for row in self.cells() {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        let problems = self.problems_text();
        if !problems.is_empty() {
            out.push('\n');
            for line in problems.lines().filter(|l| !l.is_empty()) {
                let _ = writeln!(out, "- {}", line.trim_start_matches("  "));
            }
        }
        out
    }

    /// Pretty JSON of the whole report.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    fn header_text(&self) -> String {
        let m = &self.meta;
        format!(
            "natsd:       {} ({})\nnats-server: {} ({})\nrounds: {}  cpus: {}  loadavg before: {}  after: {}\n\n",
            m.natsd.path,
            m.natsd.version,
            m.nats_server.path,
            m.nats_server.version,
            m.rounds,
            m.cpus,
            m.load_before,
            m.load_after
        )
    }

    fn problems_text(&self) -> String {
        if self.problems.is_empty() {
            return String::new();
        }
        let mut out = String::from("\nProblems:\n");
        for p in &self.problems {
            let a = &p.anomalies;
            let _ = write!(out, "  {} on {}:", p.scenario, p.server.label());
            if a.slow_consumers > 0 {
                let _ = write!(
                    out,
                    " {} subscriber disconnects (slow consumer?);",
                    a.slow_consumers
                );
            }
            if a.lost > 0 {
                let _ = write!(out, " {} msgs lost;", a.lost);
            }
            if a.duplicates > 0 {
                let _ = write!(out, " {} duplicates;", a.duplicates);
            }
            for e in a.errors.iter().chain(&p.failed_runs) {
                let _ = write!(out, " {e};");
            }
            out.push('\n');
        }
        out
    }
}

/// Formats a value with its unit: rates with k/M suffixes, small costs with
/// three significant digits.
pub fn format_value(value: f64, unit: &str) -> String {
    if value.is_nan() {
        return "n/a".into();
    }
    if unit.ends_with("/s") {
        let (scaled, suffix) = if value >= 1e6 {
            (value / 1e6, "M")
        } else if value >= 1e3 {
            (value / 1e3, "k")
        } else {
            (value, "")
        };
        return format!("{}{suffix} {unit}", significant(scaled));
    }
    if unit == "×" {
        return format!("{value:.2}×");
    }
    format!("{} {unit}", significant(value))
}

fn significant(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        let info = BinaryInfo {
            path: "x".into(),
            version: "v".into(),
        };
        Meta {
            natsd: info.clone(),
            nats_server: info,
            rounds: 3,
            settings: Settings::quick(),
            cpus: 2,
            load_before: "0".into(),
            load_after: "0".into(),
        }
    }

    fn output(rate: f64, cpu: f64) -> RunOutput {
        RunOutput {
            metrics: vec![
                Metric::higher("msgs/s", "msg/s", rate),
                Metric::lower("CPU/msg", "µs", cpu),
            ],
            anomalies: Anomalies::default(),
        }
    }

    #[test]
    fn medians_and_ratios_per_metric() {
        let mut s = ScenarioResults::new("pub 16B".into());
        for (a, b) in [(100.0, 200.0), (300.0, 220.0), (200.0, 180.0)] {
            s.record(ServerKind::Natsd, output(a, 1.0));
            s.record(ServerKind::NatsServer, output(b, 2.0));
        }
        let report = Report::build(meta(), &Results { scenarios: vec![s] });
        assert_eq!(report.rows.len(), 2);
        assert_eq!(report.rows[0].natsd.median, Some(200.0));
        assert_eq!(report.rows[0].nats_server.median, Some(200.0));
        assert_eq!(report.rows[0].ratio, Some(1.0));
        assert_eq!(report.rows[1].ratio, Some(0.5));
        assert!(report.problems.is_empty());
        let md = report.to_markdown();
        assert!(
            md.contains("| pub 16B | msgs/s ↑ | 200 msg/s | 200 msg/s | 1.00 |"),
            "{md}"
        );
    }

    #[test]
    fn failures_and_anomalies_become_problems() {
        let mut s = ScenarioResults::new("q".into());
        s.record_error(ServerKind::Natsd, "refused".into());
        let mut out = output(10.0, 1.0);
        out.anomalies.lost = 3;
        s.record(ServerKind::NatsServer, out);
        let report = Report::build(meta(), &Results { scenarios: vec![s] });
        assert_eq!(report.rows[0].natsd.median, None);
        assert_eq!(report.rows[0].ratio, None);
        assert_eq!(report.problems.len(), 2);
        let text = report.to_text();
        assert!(text.contains("3 msgs lost"), "{text}");
        assert!(text.contains("refused"), "{text}");
    }

    #[test]
    fn value_formatting() {
        assert_eq!(format_value(3_210_000.0, "msg/s"), "3.21M msg/s");
        assert_eq!(format_value(45_600.0, "conn/s"), "45.6k conn/s");
        assert_eq!(format_value(0.3125, "µs"), "0.312 µs");
        assert_eq!(format_value(12.34, "KiB"), "12.3 KiB");
        assert_eq!(format_value(0.987, "×"), "0.99×");
        assert_eq!(format_value(f64::NAN, "µs"), "n/a");
    }
}
