//! All output goes through [`Printer`]: human text with optional colour, one JSON document
//! with `--json`, nothing but errors with `--quiet`, and spinners only on a terminal.

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use console::Style;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The heavy rule of the seed's boxes.
pub const RULE: &str = "━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━";

/// How output is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Text for people.
    Human,
    /// Only errors.
    Quiet,
    /// One JSON document on stdout.
    Json,
}

/// Writes to stdout and stderr according to the mode and colour choice.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    mode: Mode,
    progress: bool,
}

/// Write to stdout; a closed pipe (`manage list | head`) ends the program quietly.
fn emit(text: &str) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

impl Printer {
    /// A printer; `progress` is further limited to terminals.
    pub fn new(mode: Mode, progress: bool) -> Self {
        let progress = progress && mode == Mode::Human && io::stderr().is_terminal();
        Self { mode, progress }
    }

    /// Whether `--json` is on.
    pub fn is_json(&self) -> bool {
        self.mode == Mode::Json
    }

    /// A line of human output on stdout.
    pub fn line(&self, text: impl AsRef<str>) {
        if self.mode == Mode::Human {
            emit(&format!("{}\n", text.as_ref()));
        }
    }

    /// The JSON document (only in JSON mode).
    pub fn json(&self, value: &serde_json::Value) {
        if self.mode == Mode::Json {
            let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
            emit(&format!("{text}\n"));
        }
    }

    /// A cargo-style status line on stderr (`     Created tenant `myapp``).
    pub fn status(&self, verb: &str, message: impl AsRef<str>) {
        if self.mode == Mode::Human {
            eprintln!(
                "{} {}",
                style::ok().apply_to(format!("{verb:>12}")),
                message.as_ref()
            );
        }
    }

    /// A warning on stderr (also in JSON mode; stdout stays one document).
    pub fn warn(&self, message: impl AsRef<str>) {
        if self.mode != Mode::Quiet {
            eprintln!(
                "{} {}",
                style::warning().apply_to("warning:"),
                message.as_ref()
            );
        }
    }

    /// A spinner on stderr while waiting on the server; hidden unless on a terminal.
    pub fn spinner(&self, message: impl Into<String>) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.into());
        bar.enable_steady_tick(Duration::from_millis(80));
        bar
    }

    /// A box as in the seed: rule, title, rule, body lines, rule.
    pub fn boxed(&self, title: &str, body: &[String]) {
        let rule = style::rule().apply_to(RULE).to_string();
        let mut text = format!("{rule}\n  {}\n{rule}\n", style::title().apply_to(title));
        for line in body {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&rule);
        self.line(text);
    }
}

/// Rows of cells as box lines: every column as wide as its widest cell, two spaces between,
/// each line indented by two.
pub fn table(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            format!("  {}", cells.join("  ").trim_end())
        })
        .collect()
}

/// Semantic styles; `console` turns them off when colours are disabled.
pub mod style {
    use super::Style;

    /// Success, status verbs.
    pub fn ok() -> Style {
        Style::new().green().bold()
    }
    /// Failures.
    pub fn error() -> Style {
        Style::new().red().bold()
    }
    /// Warnings.
    pub fn warning() -> Style {
        Style::new().yellow().bold()
    }
    /// Box rules.
    pub fn rule() -> Style {
        Style::new().cyan()
    }
    /// Box titles, tenant names.
    pub fn title() -> Style {
        Style::new().bold()
    }
    /// Paths and secondary text.
    pub fn dim() -> Style {
        Style::new().dim()
    }
}
