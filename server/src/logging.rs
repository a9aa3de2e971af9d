//! Log lines in nats-server's format: `[pid] 2006/01/02 15:04:05.000000 [INF] message`.
//!
//! Test harnesses of the client libraries read these lines (`Listening for client connections
//! on HOST:PORT`, `Server is ready`), so the shape matters more than the mechanism. We keep
//! `tracing` as the front end and render events with our own formatter.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

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
}

impl<S, N> FormatEvent<S, N> for NatsFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
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
        write!(writer, "{} ", level_tag(*event.metadata().level()))?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
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
