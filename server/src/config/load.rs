//! Maps a parsed nats.conf tree onto [`Options`], collecting every error and warning in one pass
//! with nats-server's wording and `file:line:col` positions.

use std::path::PathBuf;
use std::time::Duration;

use super::options::*;
use super::parser::{Entry, Map, Node, Span, Value};
use natsd_conf::duration::{go_duration_nanos, parse_go_duration};
use natsd_conf::keys;

mod mappings;
mod websocket;

/// What natsd does with an option nats-server accepts but natsd does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Treatment {
    /// It bears on security or on what is stored: the configuration is refused (a start fails
    /// with `[FTL]`, `-t` fails, a reload is refused), since running without it would leave
    /// access wider or data less safe than the file says.
    Refused,
    /// Harmless on a single natsd node: a warning at start, nothing else.
    Ignored,
}

/// A group of option names (aliases included) that nats-server 2.15 accepts in one context and
/// natsd does not implement, with what natsd does about them and why.
#[derive(Debug)]
pub(crate) struct Unsupported {
    pub(crate) keys: &'static [&'static str],
    /// What the option is for, in the message.
    pub(crate) what: &'static str,
    pub(crate) treatment: Treatment,
}

const fn refused(keys: &'static [&'static str], what: &'static str) -> Unsupported {
    Unsupported {
        keys,
        what,
        treatment: Treatment::Refused,
    }
}

const fn ignored(keys: &'static [&'static str], what: &'static str) -> Unsupported {
    Unsupported {
        keys,
        what,
        treatment: Treatment::Ignored,
    }
}

/// The contexts the unsupported options appear in, each with its table; docs/differences.md
/// lists them all and a test keeps the two in step.
pub(crate) const UNSUPPORTED: &[(&str, &[Unsupported])] = &[
    ("top level", TOP_LEVEL),
    ("authorization", AUTHORIZATION),
    ("user", USER),
    ("account", ACCOUNT),
    ("account jetstream", ACCOUNT_JETSTREAM),
    ("account limits", ACCOUNT_LIMITS),
    ("jetstream", JETSTREAM),
    ("tls", TLS),
];

const TOP_LEVEL: &[Unsupported] = &[
    refused(
        &["resolver_tls", "resolver_pinned_accounts"],
        "JWT account resolver",
    ),
    refused(&["trusted", "trusted_keys"], "JWT trusted keys"),
    refused(&["default_sentinel"], "JWT default sentinel"),
    refused(&["mqtt"], "MQTT listener"),
    refused(&["https", "https_port"], "monitoring over TLS"),
    refused(&["http_base_path"], "monitoring base path"),
    refused(&["ocsp_cache"], "OCSP response cache"),
    refused(&["allow_non_tls"], "plain clients beside TLS"),
    refused(&["proxy_protocol", "proxies"], "trusted proxies"),
    refused(
        &["max_sub_tokens", "max_subscription_tokens"],
        "subscription token limit",
    ),
    refused(&["feature_flags"], "feature flags"),
    ignored(
        &[
            "cluster",
            "gateway",
            "leaf",
            "leafnodes",
            "client_advertise",
            "connect_error_reports",
            "reconnect_error_reports",
            "server_tags",
            "default_js_domain",
        ],
        "clustering; natsd runs a single node",
    ),
    ignored(
        &[
            "syslog",
            "remote_syslog",
            "logfile_size_limit",
            "log_size_limit",
            "logfile_max_num",
            "log_max_num",
            "logtime_utc",
            "trace_verbose",
            "trace_headers",
            "max_traced_msg_len",
        ],
        "logging",
    ),
    ignored(
        &[
            "ports_file_dir",
            "prof_port",
            "prof_block_rate",
            "server_metadata",
        ],
        "diagnostics",
    ),
    ignored(
        &["disable_sublist_cache", "no_sublist_cache", "write_timeout"],
        "performance tuning",
    ),
    ignored(
        &["no_system_account", "no_system", "no_sys_acc"],
        "natsd always has a system account; nobody can log in to it without a user there",
    ),
];

const AUTHORIZATION: &[Unsupported] = &[
    refused(&["auth_callout", "auth_hook"], "authorization callout"),
    refused(&["proxy_required"], "trusted proxies"),
];

const USER: &[Unsupported] = &[
    refused(
        &["allowed_connection_types", "connection_types", "clients"],
        "connection type restrictions",
    ),
    refused(&["proxy_required"], "trusted proxies"),
];

const ACCOUNT: &[Unsupported] = &[
    refused(&["nkey"], "account NKEYs"),
    ignored(&["msg_trace", "trace_dest"], "message tracing"),
];

const ACCOUNT_JETSTREAM: &[Unsupported] = &[ignored(
    &["cluster_traffic"],
    "clustering; natsd runs a single node",
)];

const ACCOUNT_LIMITS: &[Unsupported] = &[ignored(
    &["max_leafnodes", "max_leafs"],
    "leafnode limit; natsd has no leafnodes, so it always holds",
)];

const JETSTREAM: &[Unsupported] = &[
    refused(
        &[
            "key",
            "ek",
            "encryption_key",
            "prev_key",
            "prev_ek",
            "prev_encryption_key",
            "cipher",
            "tpm",
        ],
        "encryption at rest",
    ),
    refused(&["extension_hint"], "storage extension hint"),
    refused(
        &[
            "limits",
            "max_buffered_size",
            "max_buffered_msgs",
            "request_queue_limit",
            "info_queue_limit",
            "max_concurrent_io",
        ],
        "JetStream limit",
    ),
    ignored(
        &[
            "unique_tag",
            "max_outstanding_catchup",
            "meta_compact",
            "meta_compact_size",
            "meta_compact_sync",
        ],
        "clustering; natsd runs a single node",
    ),
];

const TLS: &[Unsupported] = &[
    refused(&["ocsp_peer"], "OCSP checks of client certificates"),
    refused(
        &[
            "insecure",
            "verify_cert_and_check_known_urls",
            "allow_insecure_cipher_suites",
            "cipher_suites",
            "curve_preferences",
            "connection_rate_limit",
            "pinned_certs",
            "cert_store",
            "cert_match_by",
            "cert_match",
            "ca_certs_match",
            "cert_match_skip_invalid",
            "certs",
            "certificates",
            "min_version",
        ],
        "TLS option",
    ),
];

fn find_unsupported(table: &'static [Unsupported], key: &str) -> Option<&'static Unsupported> {
    table.iter().find(|u| u.keys.contains(&key))
}

/// What the loader produces before it becomes a [`super::Loaded`].
pub(crate) struct Outcome {
    pub(crate) options: Options,
    pub(crate) errors: Vec<String>,
    pub(crate) warnings: Vec<String>,
    pub(crate) notices: Vec<String>,
}

struct Ctx {
    errors: Vec<String>,
    warnings: Vec<String>,
    notices: Vec<String>,
}

fn lower(e: &Entry) -> String {
    e.key.to_ascii_lowercase()
}

impl Ctx {
    fn err(&mut self, span: &Span, msg: impl std::fmt::Display) {
        self.errors.push(format!("{span}: {msg}"));
    }

    fn type_err(&mut self, span: &Span, node: &Node, want: &str) {
        self.err(
            span,
            format!(
                "interface conversion: interface {{}} is {}, not {want}",
                node.value.go_type()
            ),
        );
    }

    /// `unknown field` unless the entry is a variable that was used.
    fn unknown(&mut self, e: &Entry) {
        if !e.used_as_variable {
            self.err(&e.key_span, format!("unknown field \"{}\"", e.key));
        }
    }

    /// Refuse or ignore (with a warning) an option `table` lists; false when it lists none.
    fn unsupported(&mut self, e: &Entry, table: &'static [Unsupported]) -> bool {
        let Some(u) = find_unsupported(table, &lower(e)) else {
            return false;
        };
        match u.treatment {
            Treatment::Refused => self.err(
                &e.key_span,
                format!(
                    "option \"{}\" ({}) is not supported by natsd; refusing the configuration",
                    e.key, u.what
                ),
            ),
            Treatment::Ignored => self.notices.push(format!(
                "{}: option \"{}\" ({}) is not supported by natsd and is ignored",
                e.key_span, e.key, u.what
            )),
        }
        true
    }

    fn int(&mut self, e: &Entry) -> Option<i64> {
        match e.value.value {
            Value::Int(i) => Some(i),
            _ => {
                self.type_err(&e.key_span, &e.value, "int64");
                None
            }
        }
    }

    /// The server's JetStream limits: a size, or nats-server's quoted form (`"1G"`, binary).
    fn storage_size(&mut self, e: &Entry, name: &str) -> Option<i64> {
        match &e.value.value {
            Value::Int(i) => Some(*i),
            Value::Str(s) => match super::size::parse_storage_string(s) {
                Ok(n) => Some(n),
                Err(why) => {
                    self.err(&e.key_span, format!("{name} {why}"));
                    None
                }
            },
            _ => {
                self.err(&e.key_span, format!("{name} must be int64 or string"));
                None
            }
        }
    }

    fn usize(&mut self, e: &Entry) -> Option<usize> {
        self.int_as(e, "must not be negative")
    }

    fn i32(&mut self, e: &Entry) -> Option<i32> {
        self.int_as(e, "out of range")
    }

    /// An integer option narrowed to `T`; `problem` says why a value does not fit.
    fn int_as<T: TryFrom<i64>>(&mut self, e: &Entry, problem: &str) -> Option<T> {
        let i = self.int(e)?;
        match T::try_from(i) {
            Ok(v) => Some(v),
            Err(_) => {
                self.err(
                    &e.key_span,
                    format!("invalid value {i} for \"{}\": {problem}", e.key),
                );
                None
            }
        }
    }

    fn string(&mut self, e: &Entry) -> Option<String> {
        match &e.value.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.type_err(&e.key_span, &e.value, "string");
                None
            }
        }
    }

    fn boolean(&mut self, e: &Entry) -> Option<bool> {
        match e.value.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.type_err(&e.key_span, &e.value, "bool");
                None
            }
        }
    }

    fn map<'n>(&mut self, e: &'n Entry) -> Option<&'n Map> {
        match &e.value.value {
            Value::Map(m) => Some(m),
            _ => {
                self.type_err(&e.key_span, &e.value, "map[string]interface {}");
                None
            }
        }
    }

    /// A quoted Go duration; a bare integer means seconds, with nats-server's warning.
    fn duration(&mut self, e: &Entry) -> Option<Duration> {
        let name = lower(e);
        match &e.value.value {
            Value::Str(s) => match parse_go_duration(s) {
                Ok((false, d)) => Some(d),
                Ok((true, _)) => {
                    self.err(
                        &e.key_span,
                        format!("error parsing {name}: negative duration \"{s}\""),
                    );
                    None
                }
                Err(err) => {
                    self.err(&e.key_span, format!("error parsing {name}: {err}"));
                    None
                }
            },
            Value::Int(i) => {
                self.warnings.push(format!(
                    "{}: invalid use of field \"{name}\": {name} should be converted to a duration",
                    e.key_span
                ));
                Some(Duration::from_secs(u64::try_from(*i).unwrap_or(0)))
            }
            _ => {
                self.type_err(&e.key_span, &e.value, "string");
                None
            }
        }
    }

    /// Seconds as an int or float, or a duration string (auth and TLS timeouts).
    fn seconds(&mut self, e: &Entry, context: &str) -> Option<Duration> {
        match &e.value.value {
            Value::Int(i) if *i >= 0 => Some(Duration::from_secs(u64::try_from(*i).unwrap_or(0))),
            Value::Float(f) if *f >= 0.0 => match Duration::try_from_secs_f64(*f) {
                Ok(d) => Some(d),
                Err(_) => {
                    self.err(
                        &e.key_span,
                        format!("error parsing {context}, 'timeout' out of range"),
                    );
                    None
                }
            },
            Value::Str(s) => match parse_go_duration(s) {
                Ok((false, d)) => Some(d),
                Ok((true, _)) => {
                    self.err(
                        &e.key_span,
                        format!("error parsing {context}, 'timeout' must not be negative"),
                    );
                    None
                }
                Err(err) => {
                    self.err(
                        &e.key_span,
                        format!("error parsing {context}, 'timeout' {err}"),
                    );
                    None
                }
            },
            Value::Int(_) | Value::Float(_) => {
                self.err(
                    &e.key_span,
                    format!("error parsing {context}, 'timeout' must not be negative"),
                );
                None
            }
            _ => {
                self.type_err(&e.key_span, &e.value, "float64");
                None
            }
        }
    }
}

/// A `host:port` string, as Go's `net.SplitHostPort` reads it.
fn split_host_port(s: &str) -> Option<(String, i32)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:")?;
        (h, p)
    } else {
        let (h, p) = s.rsplit_once(':')?;
        if h.contains(':') {
            return None;
        }
        (h, p)
    };
    Some((host.to_string(), port.parse().ok()?))
}

fn is_valid_subject(s: &str) -> bool {
    crate::subject::is_valid_subject(s.as_bytes())
}

/// A subscribe permission entry may be `"subject queue"`.
fn is_valid_sub_permission(s: &str) -> bool {
    let parts: Vec<&str> = s.split_whitespace().collect();
    match parts.as_slice() {
        [subject] => is_valid_subject(subject),
        [subject, _queue] => is_valid_subject(subject),
        _ => false,
    }
}

/// A user's public NKEY: 56 base32 characters with the user prefix (`U`) and a valid checksum.
pub(crate) fn is_public_user_nkey(key: &str) -> bool {
    nkeys::from_public_key(key)
        .is_ok_and(|(prefix, _)| nkeys::KeyPairType::from(prefix) == nkeys::KeyPairType::User)
}

/// Users collected before duplicate checks: the user and the span to report a duplicate at.
struct PendingUser {
    user: User,
    span: Span,
}

pub(crate) fn build(root: &Map) -> Outcome {
    let mut cx = Ctx {
        errors: Vec::new(),
        warnings: Vec::new(),
        notices: Vec::new(),
    };
    let mut o = Options::default();
    let mut users: Vec<PendingUser> = Vec::new();
    let mut store_dir: Option<PathBuf> = None;
    let mut accounts_entry: Option<&Entry> = None;
    let mut operator_mode = super::operator::Pending::default();

    for e in &root.entries {
        let key = lower(e);
        match key.as_str() {
            "listen" => match &e.value.value {
                Value::Int(_) => o.port = cx.i32(e).unwrap_or(o.port),
                Value::Str(s) => match split_host_port(s) {
                    Some((host, port)) => {
                        if !host.is_empty() {
                            o.host = host;
                        }
                        o.port = port;
                    }
                    None => cx.err(
                        &e.key_span,
                        format!("could not parse address string \"{s}\""),
                    ),
                },
                _ => cx.type_err(&e.key_span, &e.value, "string"),
            },
            "host" | "net" => {
                if let Some(h) = cx.string(e) {
                    o.host = h;
                }
            }
            "port" => o.port = cx.i32(e).unwrap_or(o.port),
            "server_name" => {
                if let Some(name) = cx.string(e) {
                    if name.contains(' ') {
                        cx.err(&e.key_span, "server name cannot contain spaces");
                    } else {
                        o.server_name = Some(name);
                    }
                }
            }
            "http" => match &e.value.value {
                Value::Int(_) => o.http_port = cx.i32(e),
                Value::Str(s) => match split_host_port(s) {
                    Some((host, port)) => {
                        o.http_host = (!host.is_empty()).then_some(host);
                        o.http_port = Some(port);
                    }
                    None => cx.err(
                        &e.key_span,
                        format!("could not parse address string \"{s}\""),
                    ),
                },
                _ => cx.type_err(&e.key_span, &e.value, "string"),
            },
            "http_port" | "monitor_port" => o.http_port = cx.i32(e).or(o.http_port),
            "metrics_port" => o.metrics_port = cx.i32(e).or(o.metrics_port),
            "max_connections" | "max_conn" => {
                o.max_connections = cx.usize(e).unwrap_or(o.max_connections)
            }
            "max_payload" => {
                if let Some(v) = cx.int(e) {
                    if v > i64::from(i32::MAX) {
                        cx.err(&e.key_span, "max_payload value is too big");
                    } else if let Ok(v) = usize::try_from(v) {
                        o.max_payload = v;
                    } else {
                        cx.err(
                            &e.key_span,
                            format!("invalid value {v} for \"max_payload\": must not be negative"),
                        );
                    }
                }
            }
            "max_pending" => o.max_pending = cx.usize(e).unwrap_or(o.max_pending),
            "max_control_line" => o.max_control_line = cx.usize(e).unwrap_or(o.max_control_line),
            "max_subscriptions" | "max_subs" => o.max_subs = cx.usize(e).unwrap_or(o.max_subs),
            "ping_interval" => o.ping_interval = cx.duration(e).unwrap_or(o.ping_interval),
            "ping_max" => {
                if let Some(v) = cx.int(e) {
                    o.ping_max = u32::try_from(v).unwrap_or(0);
                }
            }
            "write_deadline" => o.write_deadline = cx.duration(e).unwrap_or(o.write_deadline),
            "no_fast_producer_stall" => {
                o.no_fast_producer_stall = cx.boolean(e).unwrap_or(o.no_fast_producer_stall)
            }
            "pid_file" | "pidfile" => {
                o.pid_file = cx.string(e).map(PathBuf::from).or(o.pid_file.take())
            }
            "log_file" | "logfile" => {
                o.log_file = cx.string(e).map(PathBuf::from).or(o.log_file.take())
            }
            "debug" => o.debug = cx.boolean(e).unwrap_or(o.debug),
            "trace" => o.trace = cx.boolean(e).unwrap_or(o.trace),
            "logtime" => o.logtime = cx.boolean(e).unwrap_or(o.logtime),
            "lame_duck_duration" => {
                if let Some(s) = cx.string(e) {
                    match parse_go_duration(&s) {
                        Ok((neg, d)) if neg || d < Duration::from_secs(30) => cx.err(
                            &e.key_span,
                            format!(
                                "invalid lame_duck_duration of {}, minimum is 30 seconds",
                                signed_go_duration(neg, d)
                            ),
                        ),
                        Ok((_, d)) => o.lame_duck_duration = d,
                        Err(err) => cx.err(
                            &e.key_span,
                            format!("error parsing lame_duck_duration: {err}"),
                        ),
                    }
                }
            }
            "lame_duck_grace_period" => {
                if let Some(s) = cx.string(e) {
                    match parse_go_duration(&s) {
                        Ok((true, _)) => cx.err(
                            &e.key_span,
                            "invalid lame_duck_grace_period, needs to be positive",
                        ),
                        Ok((false, d)) => o.lame_duck_grace_period = d,
                        Err(err) => cx.err(
                            &e.key_span,
                            format!("error parsing lame_duck_grace_period: {err}"),
                        ),
                    }
                }
            }
            "max_closed_clients" => {
                o.max_closed_clients = cx.usize(e).unwrap_or(o.max_closed_clients)
            }
            "no_header_support" => {
                o.no_header_support = cx.boolean(e).unwrap_or(o.no_header_support)
            }
            "authorization" => {
                if let Some(m) = cx.map(e) {
                    authorization(&mut cx, e, m, &mut o.auth, &mut users);
                }
            }
            "accounts" => accounts_entry = Some(e),
            "no_auth_user" => o.auth.no_auth_user = cx.string(e).or(o.auth.no_auth_user.take()),
            "system_account" | "system" => {
                o.system_account = cx.string(e).or(o.system_account.take())
            }
            "jetstream" => o.jetstream = jetstream(&mut cx, e),
            "store_dir" => store_dir = cx.string(e).map(PathBuf::from),
            "ocsp" => o.ocsp = ocsp(&mut cx, e),
            "tls" => {
                if let Some(m) = cx.map(e) {
                    o.tls = tls(&mut cx, e, m);
                }
            }
            "websocket" | "ws" => o.websocket = websocket::websocket(&mut cx, e),
            "mappings" | "maps" => o.mappings = mappings::mappings(&mut cx, e),
            "operator" | "operators" | "root" | "roots" | "root_operator" | "root_operators" => {
                match super::operator::operators(e, None) {
                    Ok(jwts) => operator_mode.operators = Some(jwts),
                    Err(errors) => errors.into_iter().for_each(|m| cx.err(&e.key_span, m)),
                }
            }
            "resolver" | "account_resolver" | "accounts_resolver" => match &e.value.value {
                Value::Str(v) if super::operator::is_memory_resolver(v) => {
                    operator_mode.resolver_memory = true
                }
                Value::Map(_) => match super::operator::directory_resolver(e) {
                    Ok((dir, delete)) => {
                        operator_mode.dir = Some(dir);
                        operator_mode.delete = delete;
                    }
                    Err(message) => cx.err(&e.key_span, message),
                },
                _ => cx.err(
                    &e.key_span,
                    format!(
                        "option \"{}\" (JWT account resolver other than MEMORY) is not supported by natsd; refusing the configuration",
                        e.key
                    ),
                ),
            },
            "resolver_preload" => match super::operator::preload(e) {
                Ok(accounts) => operator_mode.preload = accounts,
                Err(errors) => errors.into_iter().for_each(|m| cx.err(&e.key_span, m)),
            },
            _ if cx.unsupported(e, TOP_LEVEL) => {}
            _ => cx.unknown(e),
        }
    }

    if let Some(e) = accounts_entry {
        o.accounts = accounts(&mut cx, e, &mut users);
    }

    let mut seen: rustc_hash::FxHashSet<&str> = rustc_hash::FxHashSet::default();
    for pending in &users {
        if !seen.insert(&pending.user.name) {
            let kind = if pending.user.nkey { "nkey" } else { "user" };
            cx.err(
                &pending.span,
                format!("Duplicate {kind} \"{}\" detected", pending.user.name),
            );
        }
    }
    o.auth.users = users.into_iter().map(|p| p.user).collect();
    if o.has_plaintext_passwords() {
        cx.notices
            .push("Plaintext passwords detected, use nkeys or bcrypt".to_string());
    }
    if let Err(message) = super::operator::finish(operator_mode, &mut o) {
        cx.errors.push(message);
    }

    if o.max_payload > 8 * 1024 * 1024 {
        cx.notices.push(
            "Maximum payloads over 8.00 MB are generally discouraged and could lead to poor performance".to_string(),
        );
    }
    o.store_dir = store_dir;
    o.resolve_store_dir();

    Outcome {
        options: o,
        errors: cx.errors,
        warnings: cx.warnings,
        notices: cx.notices,
    }
}

fn authorization(
    cx: &mut Ctx,
    block: &Entry,
    m: &Map,
    auth: &mut AuthOptions,
    users: &mut Vec<PendingUser>,
) {
    let mut single_user: Option<String> = None;
    let mut single_pass = String::new();
    let mut users_entry: Option<&Entry> = None;
    let mut default_perms: Option<Permissions> = None;
    for e in &m.entries {
        match lower(e).as_str() {
            "user" | "username" => single_user = cx.string(e),
            "password" | "pass" => single_pass = cx.string(e).unwrap_or_default(),
            "token" => auth.token = cx.string(e),
            "timeout" => {
                auth.timeout = cx
                    .seconds(e, "authorization config")
                    .unwrap_or(auth.timeout)
            }
            "users" => users_entry = Some(e),
            "permissions" | "default_permissions" | "default_permission" => {
                default_perms = permissions(cx, &e.value)
            }
            _ if cx.unsupported(e, AUTHORIZATION) => {}
            _ => cx.unknown(e),
        }
    }
    let mut block_users = Vec::new();
    if let Some(e) = users_entry {
        block_users = user_list(cx, e, GLOBAL_ACCOUNT, default_perms.as_ref());
    }
    if auth.token.is_some() && !block_users.is_empty() {
        cx.err(&block.key_span, "Can not have a token and a users array");
    }
    if let Some(name) = single_user {
        if auth.token.is_some() {
            cx.err(&block.key_span, "Cannot have a user/pass and token");
        }
        if !block_users.is_empty() {
            cx.err(
                &block.key_span,
                "Can not have a single user/pass and a users array",
            );
        }
        block_users.push(PendingUser {
            user: User {
                name,
                password: single_pass,
                nkey: false,
                account: GLOBAL_ACCOUNT.to_string(),
                permissions: default_perms.clone(),
            },
            span: block.key_span.clone(),
        });
    }
    users.extend(block_users);
}

/// A `users: [...]` array. Users without their own permissions get `defaults`.
fn user_list(
    cx: &mut Ctx,
    e: &Entry,
    account: &str,
    defaults: Option<&Permissions>,
) -> Vec<PendingUser> {
    let items = match &e.value.value {
        Value::Array(items) => items,
        _ => {
            cx.type_err(&e.key_span, &e.value, "[]interface {}");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Map(m) = &item.value else {
            cx.err(
                &item.span,
                format!(
                    "Expected user entry to be a map/struct, got {}",
                    item.value.go_type()
                ),
            );
            continue;
        };
        let mut name = None;
        let mut password = None;
        let mut perms = None;
        let mut nkey = None;
        for ue in &m.entries {
            match lower(ue).as_str() {
                "user" | "username" => name = cx.string(ue),
                "password" | "pass" => password = cx.string(ue),
                "permissions" | "permission" | "authorization" => {
                    perms = permissions(cx, &ue.value)
                }
                "nkey" => nkey = cx.string(ue),
                _ if cx.unsupported(ue, USER) => {}
                _ => cx.unknown(ue),
            }
        }
        let permissions = perms.or_else(|| defaults.cloned());
        // An empty user name or password next to an NKEY is no name or password at all.
        let has_secret = password.as_deref().is_some_and(|p| !p.is_empty())
            || name.as_deref().is_some_and(|n| !n.is_empty());
        match (nkey, name) {
            (Some(key), _) if !is_public_user_nkey(&key) => {
                cx.err(&item.span, "Not a valid public nkey for a user")
            }
            (Some(_), _) if has_secret => {
                cx.err(&item.span, "Nkey users do not take usernames or passwords")
            }
            (Some(key), _) => out.push(PendingUser {
                user: User {
                    name: key,
                    password: String::new(),
                    nkey: true,
                    account: account.to_string(),
                    permissions,
                },
                span: e.key_span.clone(),
            }),
            (None, Some(name)) => out.push(PendingUser {
                user: User {
                    name,
                    password: password.unwrap_or_default(),
                    nkey: false,
                    account: account.to_string(),
                    permissions,
                },
                span: e.key_span.clone(),
            }),
            (None, None) => cx.err(&item.span, "User entry requires a user"),
        }
    }
    out
}

fn permissions(cx: &mut Ctx, node: &Node) -> Option<Permissions> {
    let Value::Map(m) = &node.value else {
        cx.err(
            &node.span,
            format!(
                "Expected permissions to be a map/struct, got {}",
                node.value.go_type()
            ),
        );
        return None;
    };
    let mut p = Permissions::default();
    for e in &m.entries {
        match lower(e).as_str() {
            "publish" | "pub" | "import" => p.publish = subject_permission(cx, e, false),
            "subscribe" | "sub" | "export" => p.subscribe = subject_permission(cx, e, true),
            "allow_responses" | "publish_allow_responses" => {
                p.allow_responses = allow_responses(cx, e)
            }
            _ if e.used_as_variable => {}
            _ => cx.err(
                &e.key_span,
                format!("Unknown field \"{}\" parsing permissions", e.key),
            ),
        }
    }
    Some(p)
}

fn subject_permission(cx: &mut Ctx, e: &Entry, subscribe: bool) -> Option<SubjectPermission> {
    match &e.value.value {
        Value::Map(m) => {
            let mut sp = SubjectPermission::default();
            for pe in &m.entries {
                match lower(pe).as_str() {
                    "allow" => sp.allow = subject_list(cx, &pe.value, subscribe),
                    "deny" => sp.deny = subject_list(cx, &pe.value, subscribe).unwrap_or_default(),
                    _ => cx.err(
                        &pe.key_span,
                        format!(
                            "Unknown field name \"{}\" parsing subject permissions, only 'allow' or 'deny' are permitted",
                            pe.key
                        ),
                    ),
                }
            }
            Some(sp)
        }
        _ => subject_list(cx, &e.value, subscribe).map(|allow| SubjectPermission {
            allow: Some(allow),
            deny: Vec::new(),
        }),
    }
}

fn subject_list(cx: &mut Ctx, node: &Node, subscribe: bool) -> Option<Vec<String>> {
    let check = |cx: &mut Ctx, n: &Node| -> Option<String> {
        let Value::Str(s) = &n.value else {
            cx.err(
                &n.span,
                format!("Expected subject to be a string, got {}", n.value.go_type()),
            );
            return None;
        };
        let valid = if subscribe {
            is_valid_sub_permission(s)
        } else {
            is_valid_subject(s)
        };
        if !valid {
            cx.err(&n.span, format!("subject \"{s}\" is not a valid subject"));
            return None;
        }
        Some(s.clone())
    };
    match &node.value {
        Value::Array(items) => Some(items.iter().filter_map(|n| check(cx, n)).collect()),
        Value::Str(_) => check(cx, node).map(|s| vec![s]),
        other => {
            cx.err(
                &node.span,
                format!(
                    "Expected subject permissions to be a subject, or array of subjects, got {}",
                    other.go_type()
                ),
            );
            None
        }
    }
}

fn allow_responses(cx: &mut Ctx, e: &Entry) -> Option<ResponsePermission> {
    match &e.value.value {
        Value::Bool(true) => Some(ResponsePermission::default()),
        Value::Bool(false) => None,
        Value::Map(m) => {
            let mut rp = ResponsePermission::default();
            for re in &m.entries {
                match lower(re).as_str() {
                    "max" | "max_msgs" | "max_messages" | "max_responses" => {
                        if let Some(v) = cx.int(re) {
                            rp.max = u32::try_from(v).unwrap_or(0);
                        }
                    }
                    "expires" | "expiration" | "ttl" => match &re.value.value {
                        Value::Str(s) => match parse_go_duration(s) {
                            Ok((false, d)) => rp.expires = d,
                            _ => cx.err(
                                &re.key_span,
                                format!("error parsing expires: invalid duration \"{s}\""),
                            ),
                        },
                        _ => cx.err(&re.key_span, "error parsing expires, not a duration string"),
                    },
                    _ => cx.err(
                        &re.key_span,
                        format!("Unknown field \"{}\" parsing permissions", re.key),
                    ),
                }
            }
            Some(rp)
        }
        _ => {
            cx.type_err(&e.key_span, &e.value, "bool");
            None
        }
    }
}

fn accounts(cx: &mut Ctx, e: &Entry, users: &mut Vec<PendingUser>) -> Vec<AccountConfig> {
    let Some(m) = cx.map(e) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ae in &m.entries {
        if ae.key == GLOBAL_ACCOUNT {
            cx.err(
                &ae.key_span,
                format!("\"{}\" is a Reserved Account", ae.key),
            );
            continue;
        }
        let Value::Map(am) = &ae.value.value else {
            if !ae.used_as_variable {
                cx.err(&ae.key_span, "Expected map entries for accounts");
            }
            continue;
        };
        let mut acc = AccountConfig {
            name: ae.key.clone(),
            ..AccountConfig::default()
        };
        let mut users_entry = None;
        let mut default_perms = None;
        for k in &am.entries {
            match lower(k).as_str() {
                "users" => users_entry = Some(k),
                "jetstream" => acc.jetstream = account_jetstream(cx, k),
                "default_permissions" => default_perms = permissions(cx, &k.value),
                "limits" => acc.limits = account_limits(cx, k),
                "exports" => acc.exports = exports(cx, k),
                "imports" => acc.imports = imports(cx, k),
                "mappings" | "maps" => acc.mappings = mappings::mappings(cx, k),
                _ if cx.unsupported(k, ACCOUNT) => {}
                _ => cx.unknown(k),
            }
        }
        if let Some(ue) = users_entry {
            users.extend(user_list(cx, ue, &acc.name, default_perms.as_ref()));
        }
        out.push(acc);
    }
    // As nats-server, the import/export graph is looked at only in a file without other
    // errors, and its errors point at the `accounts` block.
    if cx.errors.is_empty() {
        for problem in super::imports::check(&out) {
            cx.err(&e.key_span, problem);
        }
    }
    out
}

fn account_jetstream(cx: &mut Ctx, e: &Entry) -> Option<AccountJetStreamLimits> {
    match &e.value.value {
        Value::Bool(true) => Some(AccountJetStreamLimits::default()),
        Value::Bool(false) => None,
        Value::Str(s) => match s.to_ascii_lowercase().as_str() {
            "enabled" | "enable" => Some(AccountJetStreamLimits::default()),
            "disabled" | "disable" => None,
            _ => {
                cx.err(
                    &e.key_span,
                    format!("Expected 'enabled' or 'disabled' for string value, got '{s}'"),
                );
                None
            }
        },
        Value::Map(m) => {
            let mut l = AccountJetStreamLimits::default();
            for k in &m.entries {
                match lower(k).as_str() {
                    "max_memory" | "max_mem" | "mem" | "memory" => {
                        l.max_memory = cx.int(k).unwrap_or(l.max_memory)
                    }
                    "max_store" | "max_file" | "max_disk" | "store" | "disk" => {
                        l.max_store = cx.int(k).unwrap_or(l.max_store)
                    }
                    "max_streams" | "streams" => l.max_streams = cx.int(k).unwrap_or(l.max_streams),
                    "max_consumers" | "consumers" => {
                        l.max_consumers = cx.int(k).unwrap_or(l.max_consumers)
                    }
                    "max_bytes_required" | "max_stream_bytes" | "max_bytes" => {
                        l.max_bytes_required = cx.boolean(k).unwrap_or(l.max_bytes_required)
                    }
                    "mem_max_stream_bytes" | "memory_max_stream_bytes" => {
                        l.memory_max_stream_bytes = cx.int(k).unwrap_or(l.memory_max_stream_bytes)
                    }
                    "disk_max_stream_bytes" | "store_max_stream_bytes" => {
                        l.storage_max_stream_bytes = cx.int(k).unwrap_or(l.storage_max_stream_bytes)
                    }
                    "max_ack_pending" => l.max_ack_pending = cx.int(k).unwrap_or(l.max_ack_pending),
                    _ if cx.unsupported(k, ACCOUNT_JETSTREAM) => {}
                    _ => cx.unknown(k),
                }
            }
            Some(l)
        }
        _ => {
            cx.type_err(&e.key_span, &e.value, "map[string]interface {}");
            None
        }
    }
}

fn account_limits(cx: &mut Ctx, e: &Entry) -> AccountLimits {
    let mut l = AccountLimits::default();
    let Some(m) = cx.map(e) else { return l };
    for k in &m.entries {
        match lower(k).as_str() {
            "max_connections" | "max_conn" => {
                l.max_connections = cx.int(k).unwrap_or(l.max_connections)
            }
            "max_subscriptions" | "max_subs" => {
                l.max_subscriptions = cx.int(k).unwrap_or(l.max_subscriptions)
            }
            "max_payload" | "max_pay" => l.max_payload = cx.int(k).unwrap_or(l.max_payload),
            _ if cx.unsupported(k, ACCOUNT_LIMITS) => {}
            _ => cx.err(
                &k.key_span,
                format!("Unknown field \"{}\" parsing account limits", k.key),
            ),
        }
    }
    l
}

fn string_list(cx: &mut Ctx, e: &Entry) -> Vec<String> {
    match &e.value.value {
        Value::Str(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|n| match &n.value {
                Value::Str(s) => Some(s.clone()),
                other => {
                    cx.err(
                        &n.span,
                        format!(
                            "interface conversion: interface {{}} is {}, not string",
                            other.go_type()
                        ),
                    );
                    None
                }
            })
            .collect(),
        _ => {
            cx.type_err(&e.key_span, &e.value, "[]interface {}");
            Vec::new()
        }
    }
}

fn exports(cx: &mut Ctx, e: &Entry) -> Vec<Export> {
    let Value::Array(items) = &e.value.value else {
        cx.err(
            &e.key_span,
            format!(
                "Exports should be an array, got {}",
                e.value.value.go_type()
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Map(m) = &item.value else {
            cx.err(
                &item.span,
                format!(
                    "Export Items should be a map with type entry, got {}",
                    item.value.go_type()
                ),
            );
            continue;
        };
        let mut kind = None;
        let mut export = Export::new(ExportKind::Stream, "");
        let mut response_seen = false;
        let mut threshold_seen = false;
        for k in &m.entries {
            match lower(k).as_str() {
                key @ ("stream" | "service") => {
                    let this = if key == "stream" {
                        ExportKind::Stream
                    } else {
                        ExportKind::Service
                    };
                    if let Some(seen) = kind.filter(|s| *s != this) {
                        let seen = if seen == ExportKind::Stream {
                            "stream"
                        } else {
                            "service"
                        };
                        cx.err(
                            &k.key_span,
                            format!("Detected {key} {:?} but already saw a {seen}", value_text(k)),
                        );
                        continue;
                    }
                    if this == ExportKind::Stream && (response_seen || threshold_seen) {
                        cx.err(&k.key_span, "Detected response directive on non-service");
                        continue;
                    }
                    let Value::Str(subject) = &k.value.value else {
                        cx.err(
                            &k.key_span,
                            format!(
                                "Expected {key} name to be string, got {}",
                                k.value.value.go_type()
                            ),
                        );
                        continue;
                    };
                    kind = Some(this);
                    export.subject = subject.clone();
                }
                "response" | "response_type" => {
                    if response_seen {
                        cx.err(&k.key_span, "Duplicate response type definition");
                        continue;
                    }
                    response_seen = true;
                    let Value::Str(rt) = &k.value.value else {
                        cx.err(
                            &k.key_span,
                            format!(
                                "Expected response type to be string, got {}",
                                k.value.value.go_type()
                            ),
                        );
                        continue;
                    };
                    export.response_type = match rt.to_ascii_lowercase().as_str() {
                        "single" | "singleton" => ResponseType::Singleton,
                        "stream" => ResponseType::Stream,
                        "chunk" | "chunked" => ResponseType::Chunked,
                        _ => {
                            cx.err(&k.key_span, format!("Unknown response type: {rt:?}"));
                            continue;
                        }
                    };
                    if kind == Some(ExportKind::Stream) {
                        cx.err(&k.key_span, "Detected response directive on non-service");
                    }
                }
                "threshold" | "response_threshold" | "response_max_time" | "response_time" => {
                    if threshold_seen {
                        cx.err(&k.key_span, "Duplicate response threshold detected");
                        continue;
                    }
                    threshold_seen = true;
                    let Value::Str(text) = &k.value.value else {
                        cx.err(
                            &k.key_span,
                            format!(
                                "Expected response threshold to be a parseable time duration, got {}",
                                k.value.value.go_type()
                            ),
                        );
                        continue;
                    };
                    match parse_go_duration(text) {
                        Ok((_, d)) => export.response_threshold = Some(d),
                        Err(_) => {
                            cx.err(
                                &k.key_span,
                                format!(
                                    "Expected response threshold to be a parseable time duration, got {text:?}"
                                ),
                            );
                            continue;
                        }
                    }
                    if kind == Some(ExportKind::Stream) {
                        cx.err(&k.key_span, "Detected response directive on non-service");
                    }
                }
                "accounts" => export.accounts = string_list(cx, k),
                "account_token_position" => {
                    export.account_token_position = cx.usize(k).unwrap_or(0);
                }
                // Service latency tracking publishes measurements natsd does not make.
                "latency" => cx.err(
                    &k.key_span,
                    "option \"latency\" (service latency tracking) is not supported by natsd; refusing the configuration",
                ),
                "allow_trace" => cx.notices.push(format!(
                    "{}: option \"allow_trace\" (message tracing) is not supported by natsd and is ignored",
                    k.key_span
                )),
                _ => cx.unknown(k),
            }
        }
        match kind {
            Some(kind) => {
                export.kind = kind;
                out.push(export);
            }
            None => cx.err(&item.span, "Export Items should be a map with type entry"),
        }
    }
    out
}

/// A value as Go's `%q` of an `interface{}` shows it in nats-server's messages.
fn value_text(e: &Entry) -> String {
    match &e.value.value {
        Value::Str(s) => s.clone(),
        other => other.go_type().to_string(),
    }
}

fn imports(cx: &mut Ctx, e: &Entry) -> Vec<Import> {
    let Value::Array(items) = &e.value.value else {
        cx.err(
            &e.key_span,
            format!(
                "Imports should be an array, got {}",
                e.value.value.go_type()
            ),
        );
        return Vec::new();
    };
    let mut out: Vec<Import> = Vec::new();
    for item in items {
        let Value::Map(m) = &item.value else {
            cx.err(
                &item.span,
                format!(
                    "Import Items should be a map with type entry, got {}",
                    item.value.go_type()
                ),
            );
            continue;
        };
        let mut import: Option<Import> = None;
        let (mut prefix, mut to, mut share) = (None, None, false);
        for k in &m.entries {
            match lower(k).as_str() {
                key @ ("stream" | "service") => {
                    let kind = if key == "stream" {
                        ExportKind::Stream
                    } else {
                        ExportKind::Service
                    };
                    if import.as_ref().is_some_and(|i| i.kind != kind) {
                        let other = if kind == ExportKind::Stream {
                            "service"
                        } else {
                            "stream"
                        };
                        cx.err(
                            &k.key_span,
                            format!("Detected {key} but already saw a {other}"),
                        );
                        continue;
                    }
                    let Value::Map(src) = &k.value.value else {
                        let what = if kind == ExportKind::Stream {
                            "Stream"
                        } else {
                            "Service"
                        };
                        cx.err(
                            &k.key_span,
                            format!(
                                "{what} entry should be an account map, got {}",
                                k.value.value.go_type()
                            ),
                        );
                        continue;
                    };
                    let mut account = String::new();
                    let mut subject = String::new();
                    for s in &src.entries {
                        match lower(s).as_str() {
                            "account" => account = cx.string(s).unwrap_or_default(),
                            "subject" => subject = cx.string(s).unwrap_or_default(),
                            _ => cx.unknown(s),
                        }
                    }
                    if account.is_empty() || subject.is_empty() {
                        cx.err(&k.key_span, "Expect an account name and a subject");
                        continue;
                    }
                    import = Some(Import::new(kind, &account, &subject));
                }
                "prefix" => prefix = cx.string(k),
                "to" => to = cx.string(k),
                "share" => share = cx.boolean(k).unwrap_or(false),
                "allow_trace" => cx.notices.push(format!(
                    "{}: option \"allow_trace\" (message tracing) is not supported by natsd and is ignored",
                    k.key_span
                )),
                _ => cx.unknown(k),
            }
        }
        let Some(mut i) = import else {
            cx.err(&item.span, "Import Items should be a map with type entry");
            continue;
        };
        match i.kind {
            ExportKind::Stream => {
                if prefix.is_some() && to.is_some() {
                    cx.err(
                        &item.span,
                        "Stream import can not have a 'prefix' and a 'to' property",
                    );
                    continue;
                }
                i.prefix = prefix.filter(|p| !p.is_empty());
                i.local = to.filter(|t| !t.is_empty());
            }
            ExportKind::Service => {
                i.local = to.filter(|t| !t.is_empty());
                i.share = share;
                let local = i.local_subject();
                if let Some(dup) = out.iter().find(|o| {
                    o.kind == ExportKind::Service
                        && o.account == i.account
                        && o.local_subject() == local
                }) {
                    cx.err(
                        &item.span,
                        format!(
                            "Duplicate service import subject {local:?}, previously used in import for account {:?}, subject {:?}",
                            dup.account, dup.subject
                        ),
                    );
                    continue;
                }
            }
        }
        out.push(i);
    }
    out
}

fn jetstream(cx: &mut Ctx, e: &Entry) -> Option<JetStreamConfig> {
    match &e.value.value {
        Value::Bool(true) => Some(JetStreamConfig::default()),
        Value::Bool(false) => None,
        Value::Str(s) => match s.to_ascii_lowercase().as_str() {
            "enabled" | "enable" => Some(JetStreamConfig::default()),
            "disabled" | "disable" => None,
            _ => {
                cx.err(
                    &e.key_span,
                    format!("Expected 'enabled' or 'disabled' for string value, got '{s}'"),
                );
                None
            }
        },
        Value::Map(m) => {
            let mut js = JetStreamConfig::default();
            let mut enabled = true;
            for k in &m.entries {
                let key = lower(k);
                match key.as_str() {
                    name if keys::JS_ENABLED.contains(&name) => {
                        enabled = cx.boolean(k).unwrap_or(enabled)
                    }
                    "store_dir" | "store" | "storedir" => {
                        js.store_dir = cx.string(k).map(PathBuf::from)
                    }
                    name if keys::JS_MAX_MEMORY_STORE.contains(&name) => {
                        js.max_memory = cx.storage_size(k, "max_mem_store").unwrap_or(js.max_memory)
                    }
                    name if keys::JS_MAX_FILE_STORE.contains(&name) => {
                        js.max_store = cx.storage_size(k, "max_file_store").unwrap_or(js.max_store)
                    }
                    "strict" => js.strict = cx.boolean(k).unwrap_or(js.strict),
                    "domain" => {
                        js.domain = cx.string(k).filter(|d| !d.is_empty());
                        if let Some(d) = &js.domain {
                            let api = format!("$JS.{d}.API.>");
                            if !crate::subject::is_valid_subject(api.as_bytes()) {
                                cx.err(
                                    &k.key_span,
                                    format!(
                                        "invalid domain name: derived {api:?} is not a valid subject"
                                    ),
                                );
                            } else if d.contains(['.', '*', '>']) {
                                cx.err(
                                    &k.key_span,
                                    "invalid domain name: may not contain ., * or >".to_string(),
                                );
                            }
                        }
                    }
                    "sync_interval" | "sync" => match &k.value.value {
                        Value::Str(s) if s.eq_ignore_ascii_case("always") => {
                            js.sync_always = true;
                            js.sync_interval = None;
                        }
                        _ => js.sync_interval = cx.duration(k),
                    },
                    _ if cx.unsupported(k, JETSTREAM) => {}
                    _ => cx.unknown(k),
                }
            }
            enabled.then_some(js)
        }
        _ => {
            cx.type_err(&e.key_span, &e.value, "map[string]interface {}");
            None
        }
    }
}

fn tls(cx: &mut Ctx, block: &Entry, m: &Map) -> Option<TlsConfig> {
    let mut cert = None;
    let mut key = None;
    let mut ca = None;
    let mut verify = false;
    let mut timeout = DEFAULT_TLS_TIMEOUT;
    let mut verify_and_map = false;
    let mut handshake_first = HandshakeFirst::Off;
    for e in &m.entries {
        match lower(e).as_str() {
            "cert_file" => cert = cx.string(e).map(PathBuf::from),
            "key_file" => key = cx.string(e).map(PathBuf::from),
            "ca_file" => ca = cx.string(e).map(PathBuf::from),
            "verify" => verify = tls_boolean(cx, e).unwrap_or(false),
            "timeout" => timeout = cx.seconds(e, "tls config").unwrap_or(timeout),
            "verify_and_map" => {
                verify_and_map = tls_boolean(cx, e).unwrap_or(false);
                verify |= verify_and_map;
            }
            "handshake_first" | "first" | "immediate" => {
                handshake_first = handshake_first_value(cx, e).unwrap_or(handshake_first);
            }
            // Checking client certificates with OCSP is not built; turning it off is fine.
            "ocsp_peer" if matches!(e.value.value, Value::Bool(false)) => {}
            _ if cx.unsupported(e, TLS) => {}
            _ => cx.unknown(e),
        }
    }
    let Some(cert_file) = cert else {
        cx.err(&block.key_span, "missing 'cert_file' in TLS configuration");
        return None;
    };
    let Some(key_file) = key else {
        cx.err(&block.key_span, "missing 'key_file' in TLS configuration");
        return None;
    };
    // nats-server loads the pair while parsing; we at least report unreadable files at load time.
    for path in [&cert_file, &key_file] {
        if let Err(err) = std::fs::metadata(path) {
            let reason = if err.kind() == std::io::ErrorKind::NotFound {
                "no such file or directory".to_string()
            } else {
                err.to_string()
            };
            cx.err(
                &block.key_span,
                format!(
                    "error parsing X509 certificate/key pair: open {}: {reason}",
                    path.display()
                ),
            );
            return None;
        }
    }
    if let Some(ca_path) = &ca {
        if std::fs::metadata(ca_path).is_err() {
            cx.err(
                &block.key_span,
                format!(
                    "failed reading root ca file: open {}: no such file or directory",
                    ca_path.display()
                ),
            );
            return None;
        }
    }
    Some(TlsConfig {
        cert_file,
        key_file,
        ca_file: ca,
        verify,
        timeout,
        verify_and_map,
        handshake_first,
    })
}

/// A boolean in the `tls` block, refused with nats-server's words.
fn tls_boolean(cx: &mut Ctx, e: &Entry) -> Option<bool> {
    match e.value.value {
        Value::Bool(b) => Some(b),
        _ => {
            cx.err(
                &e.key_span,
                format!(
                    "error parsing tls config, expected '{}' to be a boolean",
                    lower(e)
                ),
            );
            None
        }
    }
}

/// `handshake_first`: a boolean, `auto`, or a duration to wait for a ClientHello before
/// falling back to INFO first (a zero duration means no fallback).
fn handshake_first_value(cx: &mut Ctx, e: &Entry) -> Option<HandshakeFirst> {
    let s = match &e.value.value {
        Value::Bool(true) => return Some(HandshakeFirst::Always),
        Value::Bool(false) => return Some(HandshakeFirst::Off),
        Value::Str(s) => s,
        other => {
            cx.err(
                &e.key_span,
                format!(
                    "field \"{}\" should be a boolean or a string, got {}",
                    e.key,
                    other.go_type()
                ),
            );
            return None;
        }
    };
    match s.to_ascii_lowercase().as_str() {
        "true" | "on" => return Some(HandshakeFirst::Always),
        "false" | "off" => return Some(HandshakeFirst::Off),
        "auto" | "auto_fallback" => {
            return Some(HandshakeFirst::Fallback(
                DEFAULT_TLS_HANDSHAKE_FIRST_FALLBACK,
            ))
        }
        _ => {}
    }
    match parse_go_duration(s) {
        Ok((false, d)) if d.is_zero() => Some(HandshakeFirst::Always),
        Ok((false, d)) => Some(HandshakeFirst::Fallback(d)),
        // A negative wait means no fallback, as a zero one does.
        Ok((true, _)) => Some(HandshakeFirst::Always),
        Err(_) => {
            cx.err(
                &e.key_span,
                format!("field \"{}\"'s value \"{s}\" is invalid", e.key),
            );
            None
        }
    }
}

/// The top-level `ocsp` option: a boolean or `{ mode, url, urls }`.
fn ocsp(cx: &mut Ctx, e: &Entry) -> Option<OcspConfig> {
    let m = match &e.value.value {
        Value::Bool(on) => {
            return Some(OcspConfig {
                mode: if *on { OcspMode::Auto } else { OcspMode::Never },
                urls: Vec::new(),
            })
        }
        Value::Map(m) => m,
        other => {
            cx.err(
                &e.key_span,
                format!(
                    "error parsing ocsp config: unsupported type {}",
                    other.go_type()
                ),
            );
            return None;
        }
    };
    let mut config = OcspConfig {
        mode: OcspMode::Auto,
        urls: Vec::new(),
    };
    for f in &m.entries {
        // nats-server matches these keys case-sensitively, and names only the Go type of what
        // it did not understand.
        match f.key.as_str() {
            "mode" => {
                let mode = cx.string(f)?;
                config.mode = match mode.to_ascii_lowercase().as_str() {
                    "always" => OcspMode::Always,
                    "must" => OcspMode::Must,
                    "never" => OcspMode::Never,
                    "auto" => OcspMode::Auto,
                    _ => {
                        cx.err(
                            &f.key_span,
                            "error parsing ocsp config: unsupported ocsp mode string",
                        );
                        continue;
                    }
                };
            }
            "url" => config.urls = vec![cx.string(f)?],
            // nats-server reads `urls` as a Go string slice, which a config file never holds,
            // so it refuses every value.
            "urls" => {
                cx.type_err(&e.key_span, &f.value, "[]string");
                return None;
            }
            _ => {
                cx.err(
                    &f.key_span,
                    "error parsing ocsp config: unsupported field string",
                );
                return None;
            }
        }
    }
    Some(config)
}

/// A parsed duration with its sign, printed as nats-server prints it (`-5s`).
fn signed_go_duration(negative: bool, d: Duration) -> String {
    let nanos = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    go_duration_nanos(if negative { -nanos } else { nanos })
}
