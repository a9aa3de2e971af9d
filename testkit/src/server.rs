//! [`TestServer`]: natsd or nats-server as a child process on free 127.0.0.1 ports.
//!
//! Readiness is the server's own `Server is ready` log line (both servers print it after
//! every listener is bound), never a poll of the port. Ports come from the log too, so `-p -1`
//! and `port: -1` work. Every line of stdout and stderr is kept; when the test panics the log
//! is printed, and `NATSD_TEST_LOG=1` echoes it as it arrives. The process is killed on drop.

use std::ffi::OsString;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::ports::free_port;
use crate::raw::RawClient;
use crate::wait::try_eventually;

/// How long a server gets to print `Server is ready`. Debug builds on a loaded 2-core machine
/// can be slow, so this is generous; a healthy start takes milliseconds.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The line both servers log once every listener is up.
const READY_LINE: &str = "Server is ready";

/// How a start is attempted again when its free port was taken in the meantime.
const START_ATTEMPTS: usize = 3;

/// What to start. By default: `-a 127.0.0.1 -p <free port>`, no monitor, no config.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    config: Option<String>,
    config_file: Option<PathBuf>,
    args: Vec<OsString>,
    listen_flags: bool,
    monitor: bool,
    pid_file: bool,
    store: Option<Store>,
    env: Vec<(OsString, OsString)>,
    current_dir: Option<PathBuf>,
    log_file: Option<PathBuf>,
    dir_prefix: Option<String>,
}

#[derive(Clone, Debug)]
enum Store {
    /// `store/` inside the server's own directory.
    Own,
    /// A directory the test owns (it outlives the server, to reopen it with another one).
    At(PathBuf),
}

impl Default for ServerSpec {
    fn default() -> Self {
        Self {
            config: None,
            config_file: None,
            args: Vec::new(),
            listen_flags: true,
            monitor: false,
            pid_file: false,
            store: None,
            env: Vec::new(),
            current_dir: None,
            log_file: None,
            dir_prefix: None,
        }
    }
}

impl ServerSpec {
    /// A plain server: no config, no monitor, client port chosen by the harness.
    pub fn new() -> Self {
        Self::default()
    }

    /// Use `content` as the config file (`-c`), written into the server's directory.
    /// `@PORT@` in it becomes the client port the harness chose.
    pub fn config(mut self, content: &str) -> Self {
        self.config = Some(content.to_string());
        self
    }

    /// Use an existing config file (`-c path`); reloads may rewrite it.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// The config names the host and ports: no `-a`/`-p` from the harness. The ports are
    /// read from the log.
    pub fn ports_from_config(mut self) -> Self {
        self.listen_flags = false;
        self
    }

    /// Append one command-line argument (after the harness's own, so it wins).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Append command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Start the HTTP monitor on a free port (`-m PORT`).
    pub fn monitor(mut self) -> Self {
        self.monitor = true;
        self
    }

    /// Write a pid file (`-P FILE`) into the server's directory.
    pub fn pid_file(mut self) -> Self {
        self.pid_file = true;
        self
    }

    /// JetStream on (`-js -sd DIR`) with its store inside the server's directory; a
    /// [`TestServer::restart`] reopens it.
    pub fn jetstream(mut self) -> Self {
        self.store = Some(Store::Own);
        self
    }

    /// JetStream on (`-js -sd DIR`) with the store in `dir`, which the test owns.
    pub fn store_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.store = Some(Store::At(dir.into()));
        self
    }

    /// Set an environment variable for the server.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Log to `path` (`-l path`), as a deployment does; the harness follows the file, so
    /// readiness, [`TestServer::log`] and the waits work as with a log on stderr. Each run
    /// is read from where the file ended when it started.
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_file = Some(path.into());
        self
    }

    /// Name the server's own temporary directory `<prefix>XXXXXX`, so a caller killed before
    /// its destructors ran can find and remove what it left.
    pub fn dir_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.dir_prefix = Some(prefix.into());
        self
    }

    /// Run the server in `dir` (relative paths in its config resolve there).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }
}

/// Why a server did not come up.
#[derive(Debug)]
pub struct StartError {
    /// The binary.
    pub bin: PathBuf,
    /// What went wrong.
    pub reason: String,
    /// Everything it logged.
    pub log: String,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}; its log:\n{}",
            self.bin.display(),
            self.reason,
            self.log
        )
    }
}

impl std::error::Error for StartError {}

/// Every line a server printed, shared with the threads draining its pipes.
#[derive(Default)]
struct Log {
    state: Mutex<LogState>,
    changed: Condvar,
}

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    /// Pipes of the current process still open; 0 once it has exited.
    open_pipes: usize,
}

impl Log {
    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock()
    }

    /// Waits for a line at index `from` or later containing one of `needles`. `Err(true)`
    /// when the process closed its pipes first (it exited), `Err(false)` on timeout.
    fn wait_line(&self, from: usize, needles: &[&str], timeout: Duration) -> Result<String, bool> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            let found = state
                .lines
                .iter()
                .skip(from)
                .find(|l| needles.iter().any(|n| l.contains(n)));
            if let Some(line) = found {
                return Ok(line.clone());
            }
            if state.open_pipes == 0 {
                return Err(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(false);
            }
            self.changed.wait_for(&mut state, left);
        }
    }
}

/// A running natsd or nats-server; killed when dropped, its log printed if the test panicked.
pub struct TestServer {
    bin: PathBuf,
    child: Option<Child>,
    /// The full command line, fixed at the first start so a restart reuses ports and store.
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    current_dir: Option<PathBuf>,
    log_file: Option<PathBuf>,
    /// Client port on 127.0.0.1.
    pub port: u16,
    /// Monitoring port, when the spec or the config enabled the monitor.
    pub monitor_port: Option<u16>,
    dir: tempfile::TempDir,
    config_path: Option<PathBuf>,
    store_dir: Option<PathBuf>,
    log: Arc<Log>,
    /// Index of the first log line of the current process.
    run_start: usize,
}

impl TestServer {
    /// Starts the natsd under test ([`crate::natsd`]) and waits until it is ready.
    pub fn start(spec: ServerSpec) -> TestServer {
        Self::start_bin(crate::bins::natsd(), spec)
    }

    /// Starts the natsd under test with default settings.
    pub fn plain() -> TestServer {
        Self::start(ServerSpec::new())
    }

    /// Starts `bin`; panics with its log when it does not become ready.
    pub fn start_bin(bin: impl AsRef<Path>, spec: ServerSpec) -> TestServer {
        Self::try_start_bin(bin, spec).unwrap_or_else(|e| panic!("could not start {e}"))
    }

    /// Starts `bin` and waits until it is ready. A start whose free port was taken in the
    /// meantime is tried again on other ports.
    pub fn try_start_bin(
        bin: impl AsRef<Path>,
        spec: ServerSpec,
    ) -> Result<TestServer, StartError> {
        let bin = bin.as_ref();
        let mut attempt = 1;
        loop {
            match Self::try_start_once(bin, &spec) {
                Err(e) if attempt < START_ATTEMPTS && port_was_taken(&e.log) => attempt += 1,
                result => return result,
            }
        }
    }

    fn try_start_once(bin: &Path, spec: &ServerSpec) -> Result<TestServer, StartError> {
        let fail = |reason: String| StartError {
            bin: bin.to_path_buf(),
            reason,
            log: String::new(),
        };
        let dir = tempfile::Builder::new()
            .prefix(spec.dir_prefix.as_deref().unwrap_or(".tmp"))
            .tempdir()
            .map_err(|e| fail(format!("temp dir: {e}")))?;
        let port = free_port();
        let mut args: Vec<OsString> = Vec::new();
        if spec.listen_flags {
            args.extend(["-a", "127.0.0.1", "-p"].map(OsString::from));
            args.push(port.to_string().into());
        }
        let mut config_path = spec.config_file.clone();
        if let Some(config) = &spec.config {
            let path = dir.path().join("server.conf");
            std::fs::write(&path, config.replace("@PORT@", &port.to_string()))
                .map_err(|e| fail(format!("write {}: {e}", path.display())))?;
            config_path = Some(path);
        }
        if let Some(path) = &config_path {
            args.push("-c".into());
            args.push(path.into());
        }
        let monitor_port = spec.monitor.then(free_port);
        if let Some(monitor_port) = monitor_port {
            args.push("-m".into());
            args.push(monitor_port.to_string().into());
        }
        if spec.pid_file {
            args.push("-P".into());
            args.push(dir.path().join("server.pid").into());
        }
        let store_dir = match &spec.store {
            None => None,
            Some(Store::Own) => Some(dir.path().join("store")),
            Some(Store::At(path)) => Some(path.clone()),
        };
        if let Some(store) = &store_dir {
            args.push("-js".into());
            args.push("-sd".into());
            args.push(store.into());
        }
        if let Some(log_file) = &spec.log_file {
            args.push("-l".into());
            args.push(log_file.into());
        }
        args.extend(spec.args.iter().cloned());

        let mut server = TestServer {
            bin: bin.to_path_buf(),
            child: None,
            args,
            env: spec.env.clone(),
            current_dir: spec.current_dir.clone(),
            log_file: spec.log_file.clone(),
            port,
            monitor_port,
            dir,
            config_path,
            store_dir,
            log: Arc::default(),
            run_start: 0,
        };
        server.spawn_and_wait()?;
        Ok(server)
    }

    /// Spawns the command line and waits for the ready line of this run.
    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &self.current_dir {
            cmd.current_dir(dir);
        }
        // A log file is followed from where it ends now: earlier runs' lines are not this run's.
        let log_file_start = self
            .log_file
            .as_ref()
            .map(|path| std::fs::metadata(path).map_or(0, |m| m.len()));
        let mut child = cmd.spawn().map_err(|e| StartError {
            bin: self.bin.clone(),
            reason: format!("spawn: {e} (is it built / on PATH?)"),
            log: String::new(),
        })?;
        {
            let mut state = self.log.lock();
            state.open_pipes = 2 + usize::from(self.log_file.is_some());
            self.run_start = state.lines.len();
        }
        let name = self
            .bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let echo = std::env::var_os("NATSD_TEST_LOG").is_some_and(|v| !v.is_empty());
        let label = format!("{name} {}", child.id());
        // Both pipes are drained for the whole life of the process so a chatty server never
        // blocks on a full pipe.
        if let Some(pipe) = child.stderr.take() {
            spawn_reader(pipe, self.log.clone(), echo.then(|| label.clone()));
        }
        if let (Some(path), Some(start)) = (&self.log_file, log_file_start) {
            spawn_file_follower(
                path.clone(),
                start,
                self.log.clone(),
                echo.then(|| label.clone()),
            );
        }
        if let Some(pipe) = child.stdout.take() {
            spawn_reader(pipe, self.log.clone(), echo.then_some(label));
        }
        self.child = Some(child);

        let outcome = self
            .log
            .wait_line(self.run_start, &[READY_LINE], READY_TIMEOUT);
        let reason = match outcome {
            Ok(_) => {
                self.read_ports();
                return Ok(());
            }
            Err(true) => {
                let status = self.child.as_mut().and_then(|c| c.wait().ok());
                format!(
                    "exited with {} before it was ready",
                    status.map_or_else(|| "unknown status".to_string(), |s| s.to_string())
                )
            }
            Err(false) => format!("no '{READY_LINE}' within {READY_TIMEOUT:?}"),
        };
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Err(StartError {
            bin: self.bin.clone(),
            reason,
            log: self.log_since(self.run_start).join("\n"),
        })
    }

    /// The ports this run logged (they differ from the flags with `-p -1` or `port: -1`).
    fn read_ports(&mut self) {
        let lines = self.log_since(self.run_start);
        let find = |marker: &str| lines.iter().find_map(|l| port_after(l, marker));
        if let Some(port) = find("Listening for client connections on ") {
            self.port = port;
        }
        if let Some(port) = find("Starting http monitor on ") {
            self.monitor_port = Some(port);
        }
    }

    /// The binary this server runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `127.0.0.1:PORT` of the client listener.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Base URL of the monitor (`http://127.0.0.1:PORT`); panics if it is not enabled.
    pub fn monitor_url(&self) -> String {
        let port = self
            .monitor_port
            .expect("no monitor: use ServerSpec::monitor() or `http` in the config");
        format!("http://127.0.0.1:{port}")
    }

    /// GET a monitoring path (`/varz`); the answer carries its status code.
    pub async fn http_get(&self, path: &str) -> crate::http::Response {
        crate::http::get(&format!("{}{path}", self.monitor_url())).await
    }

    /// GET a monitoring path, assert 200 and parse the JSON.
    pub async fn http_json(&self, path: &str) -> serde_json::Value {
        crate::http::get_json(&format!("{}{path}", self.monitor_url())).await
    }

    /// Connects an async-nats client.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url()))
    }

    /// Connects a raw client and reads its INFO.
    pub async fn raw(&self) -> RawClient {
        RawClient::connect(&self.addr()).await
    }

    /// Raw client after `CONNECT {verbose:false,pedantic:false,headers:true,no_responders:true}`.
    pub async fn raw_ready(&self) -> RawClient {
        let mut client = self.raw().await;
        client
            .handshake(r#"{"verbose":false,"pedantic":false,"headers":true,"no_responders":true}"#)
            .await;
        client
    }

    /// Asserts the server still serves new connections (a fresh PING gets PONG).
    pub async fn assert_alive(&self) {
        let mut client = self.raw_ready().await;
        client.ping_pong().await;
    }

    /// The server's own directory (config, pid file, its store under [`ServerSpec::jetstream`]).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file passed with `-c`, if any.
    pub fn config_path(&self) -> &Path {
        self.config_path
            .as_deref()
            .expect("no config: use ServerSpec::config()")
    }

    /// The pid file (written only under [`ServerSpec::pid_file`]).
    pub fn pid_path(&self) -> PathBuf {
        self.dir.path().join("server.pid")
    }

    /// The JetStream store directory, if JetStream was turned on by the spec.
    pub fn store_dir(&self) -> Option<&Path> {
        self.store_dir.as_deref()
    }

    /// The pid of the current process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is not running").id()
    }

    /// Everything the server logged so far, over all its runs.
    pub fn log(&self) -> String {
        self.log.lock().lines.join("\n")
    }

    /// How many lines have been logged so far: a mark for [`TestServer::log_since`].
    pub fn log_len(&self) -> usize {
        self.log.lock().lines.len()
    }

    /// The lines logged from index `from` on.
    pub fn log_since(&self, from: usize) -> Vec<String> {
        self.log
            .lock()
            .lines
            .get(from..)
            .unwrap_or_default()
            .to_vec()
    }

    /// Waits until any line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.log.wait_line(0, &[needle], timeout).is_ok()
    }

    /// Waits for a line at index `from` or later containing `needle` and returns it; `None`
    /// on timeout or when the process exits first.
    pub fn wait_for_log_since(
        &self,
        from: usize,
        needle: &str,
        timeout: Duration,
    ) -> Option<String> {
        self.log.wait_line(from, &[needle], timeout).ok()
    }

    /// [`TestServer::wait_for_log_since`] from async code, for a line containing any of
    /// `needles`: the wait runs on a blocking thread so the test's runtime keeps driving its
    /// clients.
    pub async fn wait_for_log_since_async(
        &self,
        from: usize,
        needles: &[&str],
        timeout: Duration,
    ) -> Option<String> {
        let log = self.log.clone();
        let needles: Vec<String> = needles.iter().map(|n| n.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
            log.wait_line(from, &needles, timeout).ok()
        })
        .await
        .expect("log wait thread")
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).expect("pid fits i32"));
        nix::sys::signal::kill(pid, signal).unwrap_or_else(|e| panic!("kill -{signal} {pid}: {e}"));
    }

    /// Waits for the process to exit and returns its status; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("server was started");
        try_eventually(timeout, || child.try_wait().ok().flatten())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// An orderly stop (SIGTERM, which flushes stores); waits for the exit and returns its
    /// status. Panics when the process is still there after [`READY_TIMEOUT`].
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        let status = self.wait_exit(READY_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "{} still running {READY_TIMEOUT:?} after SIGTERM",
                self.bin.display()
            )
        });
        self.wait_pipes_closed();
        status
    }

    /// A crash: SIGKILL, then reap the process.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // An error means the process is already gone, which is what we want.
            let _ = child.kill();
            let _ = child.wait();
        }
        self.wait_pipes_closed();
    }

    /// After an exit, the readers soon see the pipes close; the last lines are then in the log.
    fn wait_pipes_closed(&self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut state = self.log.lock();
        while state.open_pipes > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            self.log.changed.wait_for(&mut state, left);
        }
    }

    /// Starts the same command line again (same ports, config and store) after a
    /// [`TestServer::stop`] or [`TestServer::kill`], and waits until it is ready.
    pub fn start_again(&mut self) {
        assert!(
            !self.is_running(),
            "start_again: {} is still running; stop() or kill() it first",
            self.bin.display()
        );
        self.try_start_again()
            .unwrap_or_else(|e| panic!("could not restart {e}"));
    }

    /// [`TestServer::start_again`] that reports a failed start instead of panicking.
    pub fn try_start_again(&mut self) -> Result<(), StartError> {
        self.spawn_and_wait()
    }

    /// [`TestServer::stop`] then [`TestServer::start_again`].
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "\n---- log of {} (client port {}) ----\n{}\n---- end of log ----",
                self.bin.display(),
                self.port,
                self.log()
            );
        }
    }
}

fn spawn_reader<R: Read + Send + 'static>(pipe: R, log: Arc<Log>, echo: Option<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(label) = &echo {
                eprintln!("[{label}] {line}");
            }
            log.lock().lines.push(line);
            log.changed.notify_all();
        }
        log.lock().open_pipes -= 1;
        log.changed.notify_all();
    });
}

/// Follows a log file from `offset`: a file has no readiness signal, so it is read every
/// [`crate::wait::POLL_INTERVAL`]. It stops after one last read once both pipes are closed
/// (the process has exited), and counts as the third pipe meanwhile.
fn spawn_file_follower(path: PathBuf, offset: u64, log: Arc<Log>, echo: Option<String>) {
    use std::io::{Seek, SeekFrom};
    std::thread::spawn(move || {
        let mut file = None;
        let mut pending = Vec::new();
        loop {
            let exited = log.lock().open_pipes <= 1;
            if file.is_none() {
                file = std::fs::File::open(&path)
                    .and_then(|mut f| f.seek(SeekFrom::Start(offset)).map(|_| f))
                    .ok();
            }
            if let Some(f) = file.as_mut() {
                let _ = f.read_to_end(&mut pending);
            }
            let mut lines = Vec::new();
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                lines.push(String::from_utf8_lossy(&line).trim_end().to_string());
            }
            if exited && !pending.is_empty() {
                lines.push(String::from_utf8_lossy(&pending).trim_end().to_string());
                pending.clear();
            }
            if !lines.is_empty() {
                if let Some(label) = &echo {
                    for line in &lines {
                        eprintln!("[{label}] {line}");
                    }
                }
                log.lock().lines.extend(lines);
                log.changed.notify_all();
            }
            if exited {
                break;
            }
            std::thread::sleep(crate::wait::POLL_INTERVAL);
        }
        log.lock().open_pipes -= 1;
        log.changed.notify_all();
    });
}

/// Parses the port of `...on 127.0.0.1:PORT` style log lines (a URL's trailing `/` too).
fn port_after(line: &str, marker: &str) -> Option<u16> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let addr = rest.split_whitespace().next()?.trim_end_matches('/');
    addr.rsplit(':').next()?.parse().ok()
}

/// Whether a failed start was a lost race for its free port.
fn port_was_taken(log: &str) -> bool {
    log.to_ascii_lowercase().contains("address already in use")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_from_both_servers_log_lines() {
        let client = "[1] 2026/12/07 17:00:00.000000 [INF] Listening for client connections on 127.0.0.1:4567";
        let http = "[1] [INF] Starting http monitor on 127.0.0.1:8999";
        let url = "[1] [INF] Starting http monitor on http://127.0.0.1:8998/ now";
        assert_eq!(
            port_after(client, "Listening for client connections on "),
            Some(4567)
        );
        assert_eq!(port_after(http, "Starting http monitor on "), Some(8999));
        assert_eq!(port_after(url, "Starting http monitor on "), Some(8998));
        assert_eq!(port_after(client, "Starting http monitor on "), None);
    }

    #[test]
    fn a_binary_that_exits_is_reported_with_its_output() {
        let spec = ServerSpec::new()
            .ports_from_config()
            .arg("-c")
            .arg("echo bye; exit 3");
        let err = match TestServer::try_start_bin("/bin/sh", spec) {
            Err(e) => e,
            Ok(_) => panic!("sh is no server"),
        };
        assert!(err.reason.contains("exited with exit status: 3"), "{err}");
        assert_eq!(err.log, "bye");
    }

    #[test]
    fn readiness_is_the_log_line_and_restart_keeps_the_port() {
        let script = "echo \"[1] [INF] Listening for client connections on 127.0.0.1:$1\"; \
                      echo '[1] [INF] Server is ready'; exec sleep 30";
        let mut server = TestServer::start_bin(
            "/bin/sh",
            ServerSpec::new()
                .ports_from_config()
                .args(["-c", script, "sh", "4242"]),
        );
        assert_eq!(server.port, 4242);
        assert!(server.is_running());
        server.kill();
        assert!(!server.is_running());
        server.start_again();
        assert_eq!(server.log().matches("Server is ready").count(), 2);
        server.restart();
        assert_eq!(server.log().matches("Server is ready").count(), 3);
    }
}
