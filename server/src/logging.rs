//! Log lines in nats-server's format: `[pid] 2006/01/02 15:04:05.000000 [INF] message`.
//!
//! Test harnesses of the client libraries read these lines (`Listening for client connections
//! on HOST:PORT`, `Server is ready`), so the shape matters more than the mechanism. We keep
//! `tracing` as the front end and render events with our own formatter: structured fields
//! (`file = %path`) follow the message as plain ` (file: ..., offset: ...)`, never with
//! terminal escapes. As nats-server, only the level tag is coloured, and only when the
//! lines go to a terminal (`NO_COLOR` turns that off too).

use std::fmt;
use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// How verbose the log is: `-D` adds debug lines, `-V` adds protocol traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLevel {
    pub debug: bool,
    pub trace: bool,
}

impl LogLevel {
    fn max_level(self) -> Level {
        if self.trace {
            Level::TRACE
        } else if self.debug {
            Level::DEBUG
        } else {
            Level::INFO
        }
    }
}

struct NatsFormat {
    pid: u32,
    logtime: bool,
    /// ANSI colour on the level tag (a terminal only).
    colour: bool,
}

/// Collects an event's message and its other fields as plain text.
#[derive(Default)]
struct PlainFields {
    message: String,
    rest: Vec<String>,
}

impl Visit for PlainFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.rest.push(format!("{}: {value}", field.name()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message.push_str(&format!("{value:?}"));
        } else {
            self.rest.push(format!("{}: {value:?}", field.name()));
        }
    }
}

impl PlainFields {
    fn write(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        out.write_str(&self.message)?;
        if !self.rest.is_empty() {
            write!(out, " ({})", self.rest.join(", "))?;
        }
        Ok(())
    }
}

impl<S, N> FormatEvent<S, N> for NatsFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "[{}] ", self.pid)?;
        if self.logtime {
            write!(
                writer,
                "{} ",
                chrono::Local::now().format("%Y/%m/%d %H:%M:%S%.6f")
            )?;
        }
        let level = *event.metadata().level();
        if self.colour {
            let tag = level_tag(level);
            write!(
                writer,
                "[\x1b[{}m{}\x1b[0m] ",
                level_colour(level),
                &tag[1..tag.len() - 1]
            )?;
        } else {
            write!(writer, "{} ", level_tag(level))?;
        }
        let mut fields = PlainFields::default();
        event.record(&mut fields);
        // One event, one line: a multi-line value must not forge another log line.
        let mut text = String::new();
        fields.write(&mut text)?;
        writer.write_str(&text.replace(['\r', '\n'], " "))?;
        writeln!(writer)
    }
}

/// nats-server's label colours.
fn level_colour(level: Level) -> &'static str {
    match level {
        Level::ERROR => "31",
        Level::WARN => "0;93",
        Level::INFO => "32",
        Level::DEBUG => "36",
        Level::TRACE => "33",
    }
}

fn level_tag(level: Level) -> &'static str {
    match level {
        Level::ERROR => "[ERR]",
        Level::WARN => "[WRN]",
        Level::INFO => "[INF]",
        Level::DEBUG => "[DBG]",
        Level::TRACE => "[TRC]",
    }
}

/// Where log lines go: stderr, or an append-only file (`-l FILE` / `log_file`).
#[derive(Clone)]
enum Sink {
    Stderr,
    File(Arc<Mutex<std::fs::File>>),
}

struct SinkWriter(Sink);

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            Sink::Stderr => std::io::stderr().write(buf),
            Sink::File(file) => match file.lock() {
                Ok(mut f) => f.write(buf),
                Err(_) => Ok(buf.len()),
            },
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &self.0 {
            Sink::Stderr => std::io::stderr().flush(),
            Sink::File(file) => match file.lock() {
                Ok(mut f) => f.flush(),
                Err(_) => Ok(()),
            },
        }
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = SinkWriter;

    fn make_writer(&'a self) -> Self::Writer {
        SinkWriter(self.clone())
    }
}

/// Install the process-wide logger. Called once at start; a log file that cannot be opened
/// is a fatal start-up error for the caller to report.
pub fn init(level: LogLevel, logtime: bool, log_file: Option<&Path>) -> std::io::Result<()> {
    let colour = log_file.is_none()
        && std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let sink = match log_file {
        Some(path) => Sink::File(Arc::new(Mutex::new(
            OpenOptions::new().create(true).append(true).open(path)?,
        ))),
        None => Sink::Stderr,
    };
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level.max_level())
        .event_format(NatsFormat {
            pid: std::process::id(),
            logtime,
            colour,
        })
        .with_writer(sink)
        .finish();
    // A second init (tests starting several servers in one process) keeps the first logger.
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(())
}

/// A fatal error in nats-server's shape, written straight to stderr (the logger may not exist yet).
pub fn fatal(message: &dyn fmt::Display) {
    let now = chrono::Local::now().format("%Y/%m/%d %H:%M:%S%.6f");
    eprintln!("[{}] {} [FTL] {}", std::process::id(), now, message);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    /// Captures formatted lines.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(colour: bool, emit: impl FnOnce()) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(NatsFormat {
                pid: 7,
                logtime: true,
                colour,
            })
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text
    }

    #[test]
    fn store_warnings_are_plain_nats_lines() {
        let text = lines(false, || {
            let path = Path::new("/s/msgs/1.blk");
            tracing::warn!(file = %path.display(), offset = 12, error = "bad crc\nforged", "truncating torn tail");
            tracing::error!("JetStream store full");
        });
        assert!(!text.contains('\x1b'), "{text:?}");
        let mut it = text.lines();
        let warn = it.next().unwrap();
        let shape = regex_lite_shape(warn);
        assert!(shape, "{warn}");
        assert!(
            warn.ends_with(
                "[WRN] truncating torn tail (file: /s/msgs/1.blk, offset: 12, error: bad crc forged)"
            ),
            "{warn}"
        );
        assert!(it.next().unwrap().ends_with("[ERR] JetStream store full"));
        assert!(it.next().is_none(), "one event, one line");
    }

    #[test]
    fn colour_only_on_the_tag_when_asked() {
        let text = lines(true, || tracing::info!(port = 1, "Server is ready"));
        assert!(
            text.contains("[\x1b[32mINF\x1b[0m] Server is ready (port: 1)"),
            "{text:?}"
        );
    }

    /// `[pid] YYYY/MM/DD HH:MM:SS.ffffff [LVL] ` at the start of a line.
    fn regex_lite_shape(line: &str) -> bool {
        let b = line.as_bytes();
        let Some(close) = line.find("] ") else {
            return false;
        };
        let date = &line[close + 2..];
        line.starts_with('[')
            && line[1..close].bytes().all(|c| c.is_ascii_digit())
            && date.len() > 30
            && date.as_bytes()[4] == b'/'
            && date.as_bytes()[7] == b'/'
            && date.as_bytes()[13] == b':'
            && date.as_bytes()[19] == b'.'
            && &date[26..28] == " ["
            && b.len() > 40
    }
}
