//! Typed, validated server options: what the rest of the server reads.
//!
//! Every field documents its default (the real nats-server's where one exists).

use std::path::PathBuf;
use std::time::Duration;

/// The account every user lands in when no `accounts` block names one.
pub const GLOBAL_ACCOUNT: &str = "$G";
/// The system account's name when `system_account` is not set.
pub const DEFAULT_SYSTEM_ACCOUNT: &str = "$SYS";

/// nats-server's default client port.
pub const DEFAULT_PORT: i32 = 4222;
/// nats-server's default monitoring port (used when `-m` / `http_port` asks for it).
pub const DEFAULT_HTTP_PORT: i32 = 8222;
/// nats-server's default max_payload: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// nats-server's default max_control_line.
pub const DEFAULT_MAX_CONTROL_LINE: usize = 4096;
/// nats-server's default max_connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64 * 1024;
/// nats-server's default per-client outbound buffer limit (slow consumer above it): 64 MiB.
pub const DEFAULT_MAX_PENDING: usize = 64 * 1024 * 1024;
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(120);
pub const DEFAULT_PING_MAX: u32 = 2;
pub const DEFAULT_WRITE_DEADLINE: Duration = Duration::from_secs(10);
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_LAME_DUCK_DURATION: Duration = Duration::from_secs(120);
pub const DEFAULT_LAME_DUCK_GRACE_PERIOD: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_CLOSED_CLIENTS: usize = 10_000;
/// `allow_responses: true` means one response ...
pub const DEFAULT_ALLOW_RESPONSES_MAX: u32 = 1;
/// ... within two minutes of the request.
pub const DEFAULT_ALLOW_RESPONSES_EXPIRES: Duration = Duration::from_secs(120);
/// nats-server's TLS handshake timeout default (`tls { timeout }`): 2s.
pub const DEFAULT_TLS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `host` / `net` / `-a`. Default `0.0.0.0`.
    pub host: String,
    /// `port` / `-p`. Default 4222; `-1` picks a random free port.
    pub port: i32,
    /// `server_name` / `-n`. Default: the server id.
    pub server_name: Option<String>,
    /// Monitoring bind host (`http: "host:port"`); default: `host`.
    pub http_host: Option<String>,
    /// `http` / `http_port` / `-m`. Default: monitoring off. `-1` = random port.
    pub http_port: Option<i32>,
    /// Separate port that serves only `/metrics` (where Surveyor stood, e.g. 7777). Default off.
    pub metrics_port: Option<i32>,
    /// Default 65536.
    pub max_connections: usize,
    /// Default 1 MiB.
    pub max_payload: usize,
    /// Default 4096.
    pub max_control_line: usize,
    /// Per-client outbound limit. Default 64 MiB.
    pub max_pending: usize,
    /// Server-wide max subscriptions per connection; 0 = unlimited.
    pub max_subs: usize,
    /// Default 2m.
    pub ping_interval: Duration,
    /// Default 2.
    pub ping_max: u32,
    /// Default 10s. natsd applies it to the time a socket accepts no byte at all.
    pub write_deadline: Duration,
    /// Drop messages for a receiver that is behind instead of holding its publishers back
    /// (nats-server 2.11+'s option). Default false.
    pub no_fast_producer_stall: bool,
    pub pid_file: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    pub debug: bool,
    pub trace: bool,
    /// Default true.
    pub logtime: bool,
    /// Default 2m.
    pub lame_duck_duration: Duration,
    /// Default 10s.
    pub lame_duck_grace_period: Duration,
    /// Entries kept for `/connz?state=closed`. Default 10000.
    pub max_closed_clients: usize,
    pub no_header_support: bool,
    pub auth: AuthOptions,
    /// Accounts declared in the `accounts` block (users live in [`AuthOptions::users`]).
    pub accounts: Vec<AccountConfig>,
    /// Top-level `mappings` / `maps`: subject mappings of the global account `$G`.
    pub mappings: Vec<SubjectMapping>,
    /// `system_account` / `system`. Default `$SYS`.
    pub system_account: Option<String>,
    /// `jetstream` block or `-js`; `None` = disabled.
    pub jetstream: Option<JetStreamConfig>,
    /// Top-level `store_dir` / `-sd`. Copied into [`JetStreamConfig::store_dir`] when JetStream is
    /// on and its block names none (`-sd` always wins, as in nats-server).
    pub store_dir: Option<PathBuf>,
    pub tls: Option<TlsConfig>,
    /// Top-level `ocsp`: how the server certificate's OCSP status is stapled. natsd staples
    /// nothing, so it starts only where nats-server would not staple either (see `tls.rs`).
    pub ocsp: Option<OcspConfig>,
    /// `websocket` block with a port; `None` = no WebSocket listener.
    pub websocket: Option<WebsocketConfig>,
    /// Operator (JWT) mode: `operator` with `resolver: MEMORY`. `None` in config mode.
    pub operator: Option<OperatorMode>,
    /// The file these options came from (for reload and `-t`).
    pub config_file: Option<PathBuf>,
}

impl Options {
    /// Whether a listener maps client certificates to users (`verify_and_map` in the top-level
    /// `tls {}` or in the `websocket { tls {} }` block). A user without a password is then a
    /// certificate identity: it logs in only through a listener that maps.
    pub fn maps_certificates(&self) -> bool {
        let maps = |tls: Option<&TlsConfig>| tls.is_some_and(|t| t.verify_and_map);
        maps(self.tls.as_ref()) || maps(self.websocket.as_ref().and_then(|ws| ws.tls.as_ref()))
    }

    /// Whether a user's password is stored in plain text (nats-server's start-up warning). NKEY
    /// users have none, and a user without one under `verify_and_map` is a certificate
    /// identity, not a weak password.
    pub fn has_plaintext_passwords(&self) -> bool {
        let tls_map = self.maps_certificates();
        self.auth
            .users
            .iter()
            .any(|u| !(u.nkey || super::is_bcrypt(&u.password) || tls_map && u.password.is_empty()))
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            host: "0.0.0.0".to_string(),
            port: DEFAULT_PORT,
            server_name: None,
            http_host: None,
            http_port: None,
            metrics_port: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_control_line: DEFAULT_MAX_CONTROL_LINE,
            max_pending: DEFAULT_MAX_PENDING,
            max_subs: 0,
            ping_interval: DEFAULT_PING_INTERVAL,
            ping_max: DEFAULT_PING_MAX,
            write_deadline: DEFAULT_WRITE_DEADLINE,
            no_fast_producer_stall: false,
            pid_file: None,
            log_file: None,
            debug: false,
            trace: false,
            logtime: true,
            lame_duck_duration: DEFAULT_LAME_DUCK_DURATION,
            lame_duck_grace_period: DEFAULT_LAME_DUCK_GRACE_PERIOD,
            max_closed_clients: DEFAULT_MAX_CLOSED_CLIENTS,
            no_header_support: false,
            auth: AuthOptions::default(),
            accounts: Vec::new(),
            mappings: Vec::new(),
            system_account: None,
            jetstream: None,
            store_dir: None,
            tls: None,
            ocsp: None,
            websocket: None,
            operator: None,
            config_file: None,
        }
    }
}

impl Options {
    /// Fill the JetStream store directory from the top-level `store_dir` when the `jetstream`
    /// block did not set one.
    pub fn resolve_store_dir(&mut self) {
        if let (Some(js), Some(dir)) = (self.jetstream.as_mut(), self.store_dir.as_ref()) {
            if js.store_dir.is_none() {
                js.store_dir = Some(dir.clone());
            }
        }
    }

    /// Checks nats-server runs only when it starts (so `-t` passes them): `max_payload` above
    /// `max_pending`, an undeclared `system_account`, a `no_auth_user` that names nobody.
    /// Each message is worded like the real server's startup error.
    pub fn check_startup(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.max_payload > self.max_pending {
            errors.push(format!(
                "max_payload ({}) cannot be higher than max_pending ({})",
                self.max_payload, self.max_pending
            ));
        }
        if let Some(sys) = &self.system_account {
            if sys != DEFAULT_SYSTEM_ACCOUNT && !self.accounts.iter().any(|a| &a.name == sys) {
                errors.push("error resolving system account: account missing".to_string());
            }
        }
        if let Some(user) = &self.auth.no_auth_user {
            if !self.auth.users.iter().any(|u| &u.name == user) {
                errors.push(format!(
                    "no_auth_user: \"{user}\" not present as user or nkey in authorization block or account configuration"
                ));
            }
        }
        if let Some(ws) = &self.websocket {
            ws.check_startup(self, &mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuthOptions {
    /// Every configured user, from `authorization` (account `$G`) and from each account.
    /// User names are unique across accounts (a duplicate is a config error).
    pub users: Vec<User>,
    /// `authorization { token }` or `--auth`.
    pub token: Option<String>,
    /// `authorization { timeout }`. Default 2s.
    pub timeout: Duration,
    /// `no_auth_user`: who a client without credentials becomes.
    pub no_auth_user: Option<String>,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            users: Vec::new(),
            token: None,
            timeout: DEFAULT_AUTH_TIMEOUT,
            no_auth_user: None,
        }
    }
}

/// Operator (JWT) mode. Its accounts are in [`Options::accounts`] (named by public key, with
/// the limits of their JWTs); nobody is configured as a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorMode {
    /// The trusted operators' JWTs (each verified as it was loaded).
    pub operators: Vec<String>,
    /// `resolver_preload`, and for the directory resolver the account JWTs its directory
    /// held: account public key → account JWT (each verified as it was loaded).
    pub preload: Vec<(String, String)>,
    /// `resolver: { type: full, dir: ... }`: where account JWTs pushed with
    /// `$SYS.REQ.CLAIMS.UPDATE` are kept (`<public key>.jwt`). `None` for `resolver: MEMORY`.
    pub dir: Option<std::path::PathBuf>,
    /// The directory resolver's `allow_delete` / `hard_delete`: what `$SYS.REQ.CLAIMS.DELETE`
    /// does with an account's JWT file. Default: [`ClaimsDelete::Refused`].
    pub delete: ClaimsDelete,
}

/// What the directory resolver does with a JWT an operator asks it to delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClaimsDelete {
    /// `allow_delete: false` (the default): deletion requests are answered with an error.
    #[default]
    Refused,
    /// `allow_delete: true`: `<key>.jwt` is renamed to `<key>.jwt.deleted`.
    Rename,
    /// `allow_delete: true, hard_delete: true`: the file is removed.
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name, or for an NKEY user its public key (`U...`).
    pub name: String,
    /// Plain text, or a bcrypt hash (`$2a$`, `$2b$`, `$2x$`, `$2y$`). Empty for an NKEY user.
    pub password: String,
    /// An NKEY user (`nkey: U...`): it proves itself by signing the nonce the server sends in
    /// INFO, and the server holds no secret for it.
    pub nkey: bool,
    /// The account the user belongs to (`$G` for the `authorization` block).
    pub account: String,
    /// The user's own permissions, else the account's / block's default permissions, else none.
    pub permissions: Option<Permissions>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Option<SubjectPermission>,
    pub subscribe: Option<SubjectPermission>,
    pub allow_responses: Option<ResponsePermission>,
}

/// `allow: None` means everything not denied is allowed; `Some(vec![])` allows nothing.
/// Subscribe entries may be `"subject queue"` (allow only that queue group).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectPermission {
    pub allow: Option<Vec<String>>,
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsePermission {
    /// Default 1.
    pub max: u32,
    /// Default 2m.
    pub expires: Duration,
}

impl Default for ResponsePermission {
    fn default() -> Self {
        ResponsePermission {
            max: DEFAULT_ALLOW_RESPONSES_MAX,
            expires: DEFAULT_ALLOW_RESPONSES_EXPIRES,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountConfig {
    pub name: String,
    /// Per-account JetStream limits; `None` = JetStream disabled for the account.
    pub jetstream: Option<AccountJetStreamLimits>,
    pub limits: AccountLimits,
    pub exports: Vec<Export>,
    pub imports: Vec<Import>,
    /// `mappings` / `maps` (or the account JWT's `mappings`), in the order given.
    pub mappings: Vec<SubjectMapping>,
}

pub use crate::mapping::{MapDest, SubjectMapping};

/// `-1` means unlimited, as in nats-server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountJetStreamLimits {
    pub max_memory: i64,
    pub max_store: i64,
    pub max_streams: i64,
    pub max_consumers: i64,
    /// Highest `max_ack_pending` a consumer may have (and the default's ceiling).
    pub max_ack_pending: i64,
    /// Largest `max_bytes` a memory stream may reserve.
    pub memory_max_stream_bytes: i64,
    /// Largest `max_bytes` a file stream may reserve.
    pub storage_max_stream_bytes: i64,
    /// Streams must set `max_bytes`.
    pub max_bytes_required: bool,
    /// The limits are an account JWT's `R1` tier (`tiered_limits.R1`), not untiered ones:
    /// `$JS.API.INFO` then lists them under `tiers`, as nats-server does.
    pub r1_tier: bool,
}

impl Default for AccountJetStreamLimits {
    fn default() -> Self {
        AccountJetStreamLimits {
            max_memory: -1,
            max_store: -1,
            max_streams: -1,
            max_consumers: -1,
            max_ack_pending: -1,
            memory_max_stream_bytes: -1,
            storage_max_stream_bytes: -1,
            max_bytes_required: false,
            r1_tier: false,
        }
    }
}

/// `-1` or absent means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountLimits {
    pub max_connections: i64,
    pub max_subscriptions: i64,
    pub max_payload: i64,
}

impl Default for AccountLimits {
    fn default() -> Self {
        AccountLimits {
            max_connections: -1,
            max_subscriptions: -1,
            max_payload: -1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Stream,
    Service,
}

/// How many responses a service export's request may get back through the importer's
/// reply mapping (nats-server's `response_type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResponseType {
    /// One response; the mapping is removed once it is delivered.
    #[default]
    Singleton,
    /// Any number of responses, until an empty one or until the threshold passes without one.
    Stream,
    /// As `Stream` (nats-server treats the two alike when routing responses).
    Chunked,
}

impl ResponseType {
    /// The name nats-server shows in `/accountz`.
    pub fn name(self) -> &'static str {
        match self {
            ResponseType::Singleton => "Singleton",
            ResponseType::Stream => "Streamed",
            ResponseType::Chunked => "Chunked",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub kind: ExportKind,
    pub subject: String,
    /// Accounts allowed to import; empty = public (unless `token_required`).
    pub accounts: Vec<String>,
    /// Operator mode's private export: only the `accounts` that presented a valid activation
    /// JWT may import (nobody when empty).
    pub token_required: bool,
    /// Service exports: how many responses a request may get.
    pub response_type: ResponseType,
    /// Service exports: how long a request's reply mapping lives without a response.
    /// Default (`None`): nats-server's two minutes.
    pub response_threshold: Option<Duration>,
    /// `account_token_position`: the importer's name must be this (1-based) token of the
    /// imported subject; 0 = not used.
    pub account_token_position: usize,
}

impl Export {
    /// A public export of `subject` with nats-server's defaults.
    pub fn new(kind: ExportKind, subject: &str) -> Export {
        Export {
            kind,
            subject: subject.to_string(),
            accounts: Vec::new(),
            token_required: false,
            response_type: ResponseType::Singleton,
            response_threshold: None,
            account_token_position: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub kind: ExportKind,
    pub account: String,
    /// The subject in the exporting account.
    pub subject: String,
    /// `to`: the subject in the importing account (service imports: where requests are
    /// published; stream imports: where messages arrive, mapped by wildcard position).
    pub local: Option<String>,
    /// Stream imports: `prefix`, prepended (with a `.`) to the exported subject.
    pub prefix: Option<String>,
    /// Service imports: `share`, the requester's details in `Nats-Request-Info`.
    pub share: bool,
    /// Operator mode: when the activation JWT that admits this import expires (Unix
    /// seconds); from then on the import routes nothing.
    pub expires: Option<i64>,
}

impl Import {
    /// An import of `subject` from `account`, without `to`, `prefix` or `share`.
    pub fn new(kind: ExportKind, account: &str, subject: &str) -> Import {
        Import {
            kind,
            account: account.to_string(),
            subject: subject.to_string(),
            local: None,
            prefix: None,
            share: false,
            expires: None,
        }
    }

    /// The subject in the importing account: `to`, else `prefix.subject`, else the subject.
    pub fn local_subject(&self) -> String {
        if let Some(to) = &self.local {
            return to.clone();
        }
        match &self.prefix {
            Some(p) if p.ends_with('.') => format!("{p}{}", self.subject),
            Some(p) => format!("{p}.{}", self.subject),
            None => self.subject.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamConfig {
    /// `store_dir`; data lives in `<store_dir>/jetstream`. Default: a temp dir (with a warning).
    pub store_dir: Option<PathBuf>,
    /// `max_memory_store`; -1 = sized from the machine.
    pub max_memory: i64,
    /// `max_file_store`; -1 = sized from the disk.
    pub max_store: i64,
    /// `sync_interval`: `None` = the store's documented default.
    pub sync_interval: Option<Duration>,
    /// `sync_interval: always`.
    pub sync_always: bool,
    /// `domain`: the JetStream domain; its API is also served on `$JS.<domain>.API.>`.
    pub domain: Option<String>,
    /// `strict`: API requests with members their type does not have are refused (10025).
    /// Default: true, as on nats-server.
    pub strict: bool,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        JetStreamConfig {
            store_dir: None,
            max_memory: -1,
            max_store: -1,
            sync_interval: None,
            sync_always: false,
            domain: None,
            strict: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: Option<PathBuf>,
    /// Require and verify client certificates.
    pub verify: bool,
    /// Handshake timeout (`tls { timeout }`, seconds or a duration string). Default 2s.
    pub timeout: Duration,
    /// `verify_and_map`: the user is the one the client certificate names (implies `verify`).
    pub verify_and_map: bool,
    /// `handshake_first` (also `first`, `immediate`). Default off.
    pub handshake_first: HandshakeFirst,
}

/// nats-server's wait for a ClientHello under `handshake_first: auto`.
pub const DEFAULT_TLS_HANDSHAKE_FIRST_FALLBACK: Duration = Duration::from_millis(50);

/// Whether the TLS handshake comes before the INFO line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HandshakeFirst {
    /// INFO in plain text, then the client upgrades (the NATS default).
    #[default]
    Off,
    /// The handshake first, always: a client that waits for INFO before upgrading fails.
    Always,
    /// Wait this long for a ClientHello; a client that sends nothing gets INFO in plain text
    /// and the usual upgrade, so both kinds of client connect.
    Fallback(Duration),
}

/// The top-level `ocsp` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspConfig {
    pub mode: OcspMode,
    /// `url`: a responder to ask instead of the certificate's own (`urls` is refused, as
    /// nats-server refuses it in a config file).
    pub urls: Vec<String>,
}

/// `ocsp { mode }`; `ocsp: true` is `Auto`, `ocsp: false` is `Never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OcspMode {
    /// Staple when the certificate asks for it (must-staple).
    Auto,
    /// Always staple, and stop on a revoked status.
    Always,
    /// As `Auto`, and stop on a revoked status.
    Must,
    /// Never staple.
    Never,
}

/// The `websocket` block: a second client listener speaking the same protocol inside
/// WebSocket binary frames (browsers, nats.ws).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WebsocketConfig {
    /// `host` / `net` / `listen`. Default `0.0.0.0`.
    pub host: String,
    /// `port` / `listen`; `-1` picks a random free port.
    pub port: i32,
    /// `advertise`: shown in `/varz` only (natsd has no cluster to gossip it to).
    pub advertise: Option<String>,
    /// `no_tls: true` allows a plain `ws://` listener; without it a `tls {}` block is required.
    pub no_tls: bool,
    pub tls: Option<TlsConfig>,
    /// Refuse an upgrade whose `Origin` is not this listener's own scheme, host and port.
    pub same_origin: bool,
    /// Refuse an upgrade whose `Origin` is not one of these (`scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// Time a connection gets to send its upgrade request. Default: none (zero).
    pub handshake_timeout: Duration,
    /// Offer permessage-deflate to clients that ask for it. Default false.
    pub compression: bool,
    /// `authorization { user, password, token, timeout }` for WebSocket clients only.
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub auth_timeout: Option<Duration>,
    /// Who a WebSocket client without credentials becomes (overrides the top-level one).
    pub no_auth_user: Option<String>,
    /// Cookies whose values stand in for CONNECT's `jwt`, `user`, `pass` and `auth_token`.
    pub jwt_cookie: Option<String>,
    pub user_cookie: Option<String>,
    pub pass_cookie: Option<String>,
    pub token_cookie: Option<String>,
    /// Extra headers sent with every upgrade response.
    pub headers: Vec<(String, String)>,
    /// Server PING interval for WebSocket clients (default: the top-level `ping_interval`).
    pub ping_interval: Option<Duration>,
}

impl WebsocketConfig {
    /// Whether the block overrides the authentication WebSocket clients go through.
    pub fn auth_override(&self) -> bool {
        self.username.is_some() || self.token.is_some() || self.no_auth_user.is_some()
    }

    /// nats-server's start-up checks of the block, with its wording.
    fn check_startup(&self, opts: &Options, errors: &mut Vec<String>) {
        if self.tls.is_none() && !self.no_tls {
            errors.push("websocket requires TLS configuration".to_string());
        }
        for origin in &self.allowed_origins {
            if let Err(why) = parse_origin(origin) {
                errors.push(why);
            }
        }
        if let Some(user) = &self.no_auth_user {
            if opts.auth.users.is_empty() {
                errors.push(format!(
                    "no_auth_user: \"{user}\" present, but users/nkeys are not defined"
                ));
            } else if !opts.auth.users.iter().any(|u| &u.name == user) {
                errors.push(format!(
                    "no_auth_user: \"{user}\" not present as user or nkey in authorization block or account configuration"
                ));
            }
        }
        if !opts.auth.users.is_empty() {
            if self.username.is_some() {
                errors.push(
                    "websocket authentication username not compatible with presence of users/nkeys"
                        .to_string(),
                );
            }
            if self.token.is_some() {
                errors.push(
                    "websocket authentication token not compatible with presence of users/nkeys"
                        .to_string(),
                );
            }
        }
        if let (Some(cookie), None) = (&self.jwt_cookie, &opts.operator) {
            errors.push(format!(
                "trusted operators or trusted keys configuration is required for JWT authentication via cookie \"{cookie}\""
            ));
        }
        for (key, _) in &self.headers {
            let k = key.to_ascii_lowercase();
            if matches!(
                k.as_str(),
                "host" | "content-length" | "connection" | "upgrade" | "nats-no-masking"
            ) {
                errors.push(format!("websocket: invalid header \"{key}\" not allowed"));
            } else if k.starts_with("sec-websocket-") {
                errors.push(format!(
                    "websocket: invalid header \"{key}\", \"Sec-WebSocket-\" prefix not allowed"
                ));
            }
        }
    }
}

/// An allowed origin as (scheme, lower-case host, port), with the scheme's default port when
/// none is given; the error is nats-server's start-up message for it.
pub fn parse_origin(origin: &str) -> Result<(String, String, String), String> {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(format!(
            "unable to parse allowed origin: parse \"{origin}\": invalid URI for request"
        ));
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "unable to parse allowed origin \"{origin}\": allowed origins must be absolute URLs with http or https scheme"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!(
            "unable to parse allowed origin \"{origin}\": host is required"
        ));
    }
    let (host, port) = split_origin_host(authority, scheme == "https")
        .map_err(|why| format!("unable to parse allowed origin: {why}"))?;
    Ok((scheme, host, port))
}

/// `host[:port]` as (lower-case host, port), the scheme's default port when none is given.
pub fn split_origin_host(hostport: &str, tls: bool) -> Result<(String, String), String> {
    let default_port = if tls { "443" } else { "80" };
    if let Some(rest) = hostport.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!("address {hostport}: missing ']' in address"));
        };
        let port = match after.strip_prefix(':') {
            Some(p) => p,
            None if after.is_empty() => default_port,
            None => return Err(format!("address {hostport}: unexpected text after ']'")),
        };
        return Ok((host.to_ascii_lowercase(), port.to_string()));
    }
    match hostport.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => {
            Err(format!("address {hostport}: too many colons in address"))
        }
        Some((host, port)) => Ok((host.to_ascii_lowercase(), port.to_string())),
        None => Ok((hostport.to_ascii_lowercase(), default_port.to_string())),
    }
}
