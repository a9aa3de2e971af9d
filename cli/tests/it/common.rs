//! `TestContext`: an isolated deployment directory on free ports, and helpers to run the
//! real `manage` binary in it.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use testkit::{free_port, free_port_range};

/// A precomputed bcrypt hash (password "s3cret", from reference/config.md) for tenant files written directly by tests.
pub(crate) const TEST_HASH: &str = "$2a$11$rMWCjY8x.9EQ1Byq6YIIiO8R1Ex/idX7uJJChXxmHUCZe3OhteZpK";

/// The server binary the tests use: `NATSD_BIN` (manage reads the same variable), else the
/// natsd built beside this manage binary (`cargo test --workspace` builds it). `None` only
/// when neither exists; [`require_server!`] turns that into a failure.
pub(crate) fn server_binary() -> Option<String> {
    if let Ok(bin) = std::env::var("NATSD_BIN") {
        return Some(bin);
    }
    let natsd = Path::new(env!("CARGO_BIN_EXE_manage")).with_file_name("natsd");
    natsd.is_file().then(|| natsd.display().to_string())
}

/// The real nats-server, for the scale-out journeys: a failure when it is missing (testkit),
/// `None` only under `NATSD_SKIP_REFERENCE=1` (the test is then skipped).
pub(crate) fn reference_server() -> Option<String> {
    testkit::reference_server().map(|bin| bin.display().to_string())
}

/// A test that runs a server fails without one: a skipped test would pass for the wrong reason.
#[macro_export]
macro_rules! require_server {
    () => {
        assert!(
            $crate::common::server_binary().is_some(),
            "no server binary: build natsd (`cargo test --workspace` does) or set NATSD_BIN"
        );
    };
}

/// One deployment.
pub(crate) struct TestContext {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) port: u16,
    pub(crate) http_port: u16,
    /// Route port of the first node (a cluster deployment).
    pub(crate) cluster_port: Option<u16>,
    started: bool,
    server: Option<String>,
}

impl TestContext {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            http_port: free_port(),
            cluster_port: None,
            started: false,
            server: server_binary(),
        }
    }

    /// A deployment for a local cluster of `nodes` nats-server nodes: every node's client,
    /// monitoring and route ports free. Fails without nats-server; `None` (the test is
    /// skipped) only under `NATSD_SKIP_REFERENCE=1`.
    pub(crate) fn cluster(nodes: u16) -> Option<Self> {
        let reference = reference_server()?;
        // One run of free ports for all three kinds, so no two ranges overlap.
        let base = free_port_range(3 * nodes);
        Some(Self {
            dir: tempfile::tempdir().unwrap(),
            port: base,
            http_port: base + nodes,
            cluster_port: Some(base + 2 * nodes),
            started: false,
            server: Some(reference),
        })
    }

    /// The same deployment driven against another server binary.
    pub(crate) fn with_server(mut self, bin: String) -> Self {
        self.server = Some(bin);
        self
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_manage"));
        cmd.args(args)
            .env("MANAGE_DIR", self.root())
            .env("NATS_PORT", self.port.to_string())
            .env("NATS_HTTP_PORT", self.http_port.to_string())
            .env("NATS_SERVER_NAME", "test-1")
            .env("NO_COLOR", "1")
            .env_remove("NATS_HOST")
            .env_remove("NATS_RELOAD")
            .env_remove("NATS_URL_HOST")
            .stdin(Stdio::null());
        if let Some(bin) = &self.server {
            cmd.env("NATSD_BIN", bin);
        }
        match self.cluster_port {
            Some(port) => {
                cmd.env("NATS_CLUSTER_PORT", port.to_string());
                if let Some(bin) = &self.server {
                    cmd.env("NATS_CLUSTER_BIN", bin);
                }
            }
            None => {
                cmd.env_remove("NATS_CLUSTER_PORT");
                cmd.env_remove("NATS_CLUSTER_BIN");
            }
        }
        cmd.env_remove("NATS_CLUSTER_NAME")
            .env_remove("NATS_CLUSTER_PASSWORD");
        cmd
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Run, assert success, return stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "manage {args:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run with --json, assert success, parse.
    pub(crate) fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Run, assert the exit code, return stderr.
    pub(crate) fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "manage {args:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    pub(crate) fn up(&mut self) {
        self.ok(&["up"]);
        self.started = true;
    }

    /// A server was started outside [`TestContext::up`] (`manage up --json`): stop it on drop.
    pub(crate) fn started_for_drop(&mut self) {
        self.started = true;
    }

    pub(crate) fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    pub(crate) fn mode(&self, rel: &str) -> u32 {
        std::fs::metadata(self.path(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    /// Validate the deployment's config with its server binary.
    pub(crate) fn server_accepts_config(&self) -> bool {
        let bin = self.server.clone().expect(
            "no server binary: build natsd (`cargo test --workspace` does) or set NATSD_BIN",
        );
        Command::new(bin)
            .args(["-t", "-c"])
            .arg(self.path("config/nats.conf"))
            .current_dir(self.root())
            .env("NATS_PORT", self.port.to_string())
            .env("NATS_HTTP_PORT", self.http_port.to_string())
            .env("NATS_SERVER_NAME", "test-1")
            .env("NATS_HOST", "127.0.0.1")
            .status()
            .unwrap()
            .success()
    }

    /// Write a tenant file directly (fast setup for many tenants).
    pub(crate) fn write_tenant(&self, name: &str, memory: &str, storage: &str) {
        let text = format!(
            "memory = \"{memory}\"\nstorage = \"{storage}\"\n\n[users.{name}]\npassword_hash = \"{TEST_HASH}\"\n"
        );
        std::fs::write(self.path(&format!("config/tenants/{name}.toml")), text).unwrap();
    }
}

impl TestContext {
    /// Whether the server on this deployment's port lets `user` in with `password` (a raw
    /// CONNECT and PING: PONG means in, `-ERR` or a closed connection means out).
    pub(crate) fn login(&self, user: &str, password: &str) -> bool {
        use std::io::{BufRead as _, BufReader, Write as _};
        let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || !line.starts_with("INFO") {
            return false;
        }
        let connect = serde_json::json!({"verbose": false, "user": user, "pass": password});
        let mut writer = stream;
        if writer
            .write_all(format!("CONNECT {connect}\r\nPING\r\n").as_bytes())
            .is_err()
        {
            return false;
        }
        line.clear();
        reader.read_line(&mut line).is_ok() && line.starts_with("PONG")
    }

    /// `NATS_PASSWORD` of a credentials file.
    pub(crate) fn password(&self, rel: &str) -> String {
        env_value(&self.read(rel), "NATS_PASSWORD")
    }

    /// Every file of the deployment that manage writes, with its contents, for before/after
    /// comparisons (`data/` and the server's log are left out).
    pub(crate) fn snapshot(&self) -> Vec<(String, String)> {
        let mut files = Vec::new();
        for dir in ["config", "config/tenants", ".credentials"] {
            let Ok(entries) = std::fs::read_dir(self.path(dir)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_file() {
                    let rel = path
                        .strip_prefix(self.root())
                        .unwrap()
                        .display()
                        .to_string();
                    files.push((rel, std::fs::read_to_string(&path).unwrap_or_default()));
                }
            }
        }
        files.sort();
        files
    }
}

impl Drop for TestContext {
    fn drop(&mut self) {
        if self.started {
            let _ = self.run(&["down"]);
        }
    }
}

/// Pull `KEY=value` from a credentials file.
pub(crate) fn env_value(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing in:\n{text}"))
        .to_owned()
}
