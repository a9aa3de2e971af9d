//! nats-server style command-line flags (`-p 4222`, `--port=4222`, `-DV`, `-sd=DIR`).
//! CONTRACT: `parse_args(args: &[String]) -> Result<Command, FlagError>`; `Command::Run(FlagOptions)`
//! where `FlagOptions::apply(&self, &mut Options)` overrides file settings.
//!
//! Like Go's `flag` package: one or two dashes, `-flag value` or `-flag=value`, boolean flags
//! take no separate value (`-D=false` works), parsing stops at `--` or the first non-flag.

use std::path::PathBuf;

use super::options::{
    HandshakeFirst, JetStreamConfig, Options, TlsConfig, User, DEFAULT_TLS_TIMEOUT, GLOBAL_ACCOUNT,
};

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start the server.
    Run(FlagOptions),
    /// `-t`: validate the configuration and exit.
    Test(FlagOptions),
    /// `--signal <command>[=<pid|pidfile>]`.
    Signal {
        command: SignalCommand,
        target: Option<String>,
    },
    /// `-v` / `--version`.
    Version,
    /// `-h` / `--help`.
    Help,
}

/// The `--signal` commands and the Unix signals nats-server sends for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalCommand {
    /// SIGHUP: reload the configuration.
    Reload,
    /// SIGKILL: immediate kill.
    Stop,
    /// SIGINT: graceful shutdown.
    Quit,
    /// SIGTERM: graceful shutdown.
    Term,
    /// SIGUSR1: reopen the log file.
    Reopen,
    /// SIGUSR2: lame-duck mode.
    Ldm,
}

impl SignalCommand {
    /// The signal number (`libc::SIG*`) to send.
    pub fn signal(self) -> i32 {
        match self {
            SignalCommand::Reload => libc::SIGHUP,
            SignalCommand::Stop => libc::SIGKILL,
            SignalCommand::Quit => libc::SIGINT,
            SignalCommand::Term => libc::SIGTERM,
            SignalCommand::Reopen => libc::SIGUSR1,
            SignalCommand::Ldm => libc::SIGUSR2,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "reload" => SignalCommand::Reload,
            "stop" => SignalCommand::Stop,
            "quit" => SignalCommand::Quit,
            "term" => SignalCommand::Term,
            "reopen" => SignalCommand::Reopen,
            "ldm" => SignalCommand::Ldm,
            _ => return None,
        })
    }
}

/// Settings given on the command line; `None` means "not given, keep the file's value".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlagOptions {
    pub host: Option<String>,
    pub port: Option<i32>,
    pub server_name: Option<String>,
    pub http_port: Option<i32>,
    pub config_file: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    pub logtime: Option<bool>,
    pub debug: Option<bool>,
    pub trace: Option<bool>,
    pub jetstream: Option<bool>,
    pub store_dir: Option<PathBuf>,
    pub user: Option<String>,
    pub pass: Option<String>,
    pub auth_token: Option<String>,
    pub tls: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca_cert: Option<PathBuf>,
    pub tls_verify: Option<bool>,
    /// Flags nats-server has that natsd does not implement (clustering, leafnodes, syslog, ...),
    /// as given (`--routes`): the caller warns about them.
    pub not_built: Vec<String>,
}

/// A command line that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error("flag provided but not defined: -{0}")]
    Unknown(String),
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    #[error("invalid value \"{value}\" for flag -{flag}: {reason}")]
    InvalidValue {
        flag: String,
        value: String,
        reason: String,
    },
    #[error("unknown signal \"{0}\"")]
    UnknownSignal(String),
    #[error("unexpected argument \"{0}\"")]
    UnexpectedArgument(String),
    #[error("flag -{flag} ({what}) is not supported by natsd")]
    Refused { flag: String, what: &'static str },
}

#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Value,
}

/// Flags nats-server accepts that natsd does not build: (name, takes a value).
const NOT_BUILT: &[(&str, Kind)] = &[
    ("routes", Kind::Value),
    ("cluster", Kind::Value),
    ("cluster_listen", Kind::Value),
    ("cluster_name", Kind::Value),
    ("cluster_advertise", Kind::Value),
    ("no_advertise", Kind::Bool),
    ("connect_retries", Kind::Value),
    ("leafnodes", Kind::Value),
    ("leafnode_remote", Kind::Value),
    ("s", Kind::Bool),
    ("syslog", Kind::Bool),
    ("r", Kind::Value),
    ("remote_syslog", Kind::Value),
    ("client_advertise", Kind::Value),
    ("ports_file_dir", Kind::Value),
    ("profile", Kind::Value),
    ("log_size_limit", Kind::Value),
    ("max_traced_msg_len", Kind::Value),
];

/// Flags nats-server accepts that natsd does not build and that bear on security: a command
/// line with one is refused rather than run without it (as the same options in a file are).
const REFUSED: &[(&str, &str)] = &[
    ("ms", "monitoring over TLS"),
    ("https_port", "monitoring over TLS"),
];

fn kind_of(name: &str) -> Option<Kind> {
    let kind = match name {
        "a" | "addr" | "net" | "p" | "port" | "n" | "server_name" | "m" | "http_port" | "c"
        | "config" | "P" | "pid" | "l" | "log" | "sd" | "store_dir" | "user" | "pass" | "auth"
        | "tlscert" | "tlskey" | "tlscacert" | "sl" | "signal" => Kind::Value,
        "t" | "T" | "logtime" | "D" | "debug" | "V" | "trace" | "DV" | "VV" | "DVV" | "js"
        | "jetstream" | "tls" | "tlsverify" | "v" | "version" | "h" | "help" | "help_tls" => {
            Kind::Bool
        }
        _ => return NOT_BUILT.iter().find(|(n, _)| *n == name).map(|(_, k)| *k),
    };
    Some(kind)
}

fn parse_bool(flag: &str, value: &str) -> Result<bool, FlagError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(FlagError::InvalidValue {
            flag: flag.into(),
            value: value.into(),
            reason: "parse error".into(),
        }),
    }
}

fn parse_port(flag: &str, value: &str) -> Result<i32, FlagError> {
    value
        .parse::<i32>()
        .ok()
        .filter(|p| (-1..=65535).contains(p))
        .ok_or_else(|| FlagError::InvalidValue {
            flag: flag.into(),
            value: value.into(),
            reason: "not a port number".into(),
        })
}

/// Parse the arguments after the program name.
pub fn parse_args(args: &[String]) -> Result<Command, FlagError> {
    let mut f = FlagOptions::default();
    let mut test = false;
    let mut signal: Option<String> = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            break;
        }
        let Some(stripped) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|s| !s.is_empty())
        else {
            return Err(FlagError::UnexpectedArgument(arg.clone()));
        };
        let (name, inline) = match stripped.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (stripped, None),
        };
        if let Some((_, what)) = REFUSED.iter().find(|(n, _)| *n == name) {
            return Err(FlagError::Refused {
                flag: name.to_string(),
                what,
            });
        }
        let kind = kind_of(name).ok_or_else(|| FlagError::Unknown(name.to_string()))?;
        let value = match (kind, inline) {
            (Kind::Bool, Some(v)) => Some(parse_bool(name, &v)?.to_string()),
            (Kind::Bool, None) => Some("true".to_string()),
            (Kind::Value, Some(v)) => Some(v),
            (Kind::Value, None) => {
                let v = args
                    .get(i)
                    .cloned()
                    .ok_or_else(|| FlagError::MissingValue(name.to_string()))?;
                i += 1;
                Some(v)
            }
        };
        let v = value.unwrap_or_default();
        let on = v == "true";
        match name {
            "a" | "addr" | "net" => f.host = Some(v),
            "p" | "port" => f.port = Some(parse_port(name, &v)?),
            "n" | "server_name" => f.server_name = Some(v),
            "m" | "http_port" => f.http_port = Some(parse_port(name, &v)?),
            "c" | "config" => f.config_file = Some(PathBuf::from(v)),
            "t" => test = on,
            "P" | "pid" => f.pid_file = Some(PathBuf::from(v)),
            "l" | "log" => f.log_file = Some(PathBuf::from(v)),
            "T" | "logtime" => f.logtime = Some(on),
            "D" | "debug" => f.debug = Some(on),
            "V" | "trace" | "VV" => f.trace = Some(on),
            "DV" | "DVV" => {
                f.debug = Some(on);
                f.trace = Some(on);
            }
            "js" | "jetstream" => f.jetstream = Some(on),
            "sd" | "store_dir" => f.store_dir = Some(PathBuf::from(v)),
            "user" => f.user = Some(v),
            "pass" => f.pass = Some(v),
            "auth" => f.auth_token = Some(v),
            "tls" => f.tls = Some(on),
            "tlscert" => f.tls_cert = Some(PathBuf::from(v)),
            "tlskey" => f.tls_key = Some(PathBuf::from(v)),
            "tlscacert" => f.tls_ca_cert = Some(PathBuf::from(v)),
            "tlsverify" => f.tls_verify = Some(on),
            "sl" | "signal" => signal = Some(v),
            "v" | "version" if on => return Ok(Command::Version),
            "h" | "help" | "help_tls" if on => return Ok(Command::Help),
            "v" | "version" | "h" | "help" | "help_tls" => {}
            _ => f.not_built.push(arg.clone()),
        }
    }
    if let Some(extra) = args.get(i) {
        return Err(FlagError::UnexpectedArgument(extra.clone()));
    }
    if let Some(s) = signal {
        let (command, target) = match s.split_once('=') {
            Some((c, t)) => (c.to_string(), Some(t.to_string())),
            None => (s.clone(), None),
        };
        let command = SignalCommand::parse(&command).ok_or(FlagError::UnknownSignal(command))?;
        return Ok(Command::Signal { command, target });
    }
    Ok(if test {
        Command::Test(f)
    } else {
        Command::Run(f)
    })
}

impl FlagOptions {
    /// Override `opts` with every flag that was given. Call it after each (re)load of the file.
    pub fn apply(&self, opts: &mut Options) {
        if let Some(h) = &self.host {
            opts.host = h.clone();
        }
        if let Some(p) = self.port {
            opts.port = p;
        }
        if let Some(n) = &self.server_name {
            opts.server_name = Some(n.clone());
        }
        if let Some(p) = self.http_port {
            opts.http_port = Some(p);
        }
        if let Some(c) = &self.config_file {
            opts.config_file = Some(c.clone());
        }
        if let Some(p) = &self.pid_file {
            opts.pid_file = Some(p.clone());
        }
        if let Some(l) = &self.log_file {
            opts.log_file = Some(l.clone());
        }
        if let Some(b) = self.logtime {
            opts.logtime = b;
        }
        if let Some(b) = self.debug {
            opts.debug = b;
        }
        if let Some(b) = self.trace {
            opts.trace = b;
        }
        match self.jetstream {
            Some(true) if opts.jetstream.is_none() => {
                opts.jetstream = Some(JetStreamConfig::default())
            }
            Some(false) => opts.jetstream = None,
            _ => {}
        }
        if let Some(dir) = &self.store_dir {
            opts.store_dir = Some(dir.clone());
            if let Some(js) = opts.jetstream.as_mut() {
                js.store_dir = Some(dir.clone());
            }
        }
        opts.resolve_store_dir();
        if let Some(token) = &self.auth_token {
            opts.auth.token = Some(token.clone());
        }
        // `--user`/`--pass` define (or replace) the single `$G` user, like nats-server's
        // Username/Password override.
        if let Some(name) = &self.user {
            let password = self.pass.clone().unwrap_or_default();
            opts.auth.users.retain(|u| u.name != *name);
            opts.auth.users.push(User {
                name: name.clone(),
                password,
                nkey: false,
                account: GLOBAL_ACCOUNT.to_string(),
                permissions: None,
            });
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            opts.tls = Some(TlsConfig {
                cert_file: cert.clone(),
                key_file: key.clone(),
                ca_file: self.tls_ca_cert.clone(),
                verify: self.tls_verify.unwrap_or(false),
                timeout: opts.tls.as_ref().map_or(DEFAULT_TLS_TIMEOUT, |t| t.timeout),
                verify_and_map: opts.tls.as_ref().is_some_and(|t| t.verify_and_map),
                handshake_first: opts
                    .tls
                    .as_ref()
                    .map_or(HandshakeFirst::Off, |t| t.handshake_first),
            });
        } else if let Some(tls) = opts.tls.as_mut() {
            if let Some(ca) = &self.tls_ca_cert {
                tls.ca_file = Some(ca.clone());
            }
            if let Some(v) = self.tls_verify {
                tls.verify = v;
            }
        }
    }
}

/// The `-h` text.
pub fn usage() -> &'static str {
    "Usage: natsd [options]

Server Options:
    -a, --addr, --net <host>         Bind to host address (default: 0.0.0.0)
    -p, --port <port>                Use port for clients (default: 4222, -1 = random)
    -n, --server_name <server_name>  Server name (default: auto)
    -P, --pid <file>                 File to store PID
    -m, --http_port <port>           Use port for http monitoring
    -c, --config <file>              Configuration file
    -t                               Test configuration and exit
    -sl,--signal <signal>[=<pid>]    Send signal to natsd process (reload, stop, quit, term, reopen, ldm)
                                     <pid> can be a process id or the path to a pid file

Logging Options:
    -l, --log <file>                 File to redirect log output
    -T, --logtime                    Timestamp log entries (default: true)
    -D, --debug                      Enable debugging output
    -V, --trace                      Trace the raw protocol
    -VV                              Verbose trace (same as -V in natsd)
    -DV                              Debug and trace
    -DVV                             Debug and verbose trace

JetStream Options:
    -js, --jetstream                 Enable JetStream functionality
    -sd, --store_dir <dir>           Set the storage directory (data in <dir>/jetstream)

Authorization Options:
        --user <user>                User required for connections
        --pass <password>            Password required for connections
        --auth <token>               Authorization token required for connections

TLS Options:
        --tls                        Enable TLS, do not verify clients (default: false)
        --tlscert <file>             Server certificate file
        --tlskey <file>              Private key for server certificate
        --tlsverify                  Enable TLS, verify client certificates
        --tlscacert <file>           Client certificate CA for verification

Accepted but not built into natsd (a warning is printed):
        --routes, --cluster, --cluster_name, --cluster_advertise, --no_advertise,
        --connect_retries, -ms/--https_port, -s/--syslog, -r/--remote_syslog,
        --client_advertise, --ports_file_dir, --profile, --log_size_limit

Common Options:
    -h, --help                       Show this message
    -v, --version                    Show version
"
}
