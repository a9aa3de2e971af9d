//! The `websocket` block, read with nats-server's keys, aliases and wording.

use std::time::Duration;

use super::{lower, split_host_port, tls, Ctx};
use crate::config::options::WebsocketConfig;
use crate::config::parser::{Entry, Value};
use natsd_conf::duration::parse_go_duration;

/// The block's options; `None` when it has no port (nats-server then ignores the rest).
pub(super) fn websocket(cx: &mut Ctx, block: &Entry) -> Option<WebsocketConfig> {
    let m = cx.map(block)?;
    let mut ws = WebsocketConfig::default();
    for e in &m.entries {
        match lower(e).as_str() {
            "listen" => match &e.value.value {
                Value::Str(s) => match split_host_port(s) {
                    Some((host, port)) => {
                        ws.host = host;
                        ws.port = port;
                    }
                    None => cx.err(
                        &e.key_span,
                        format!("could not parse address string \"{s}\""),
                    ),
                },
                Value::Int(_) => ws.port = cx.i32(e).unwrap_or(ws.port),
                _ => cx.type_err(&e.key_span, &e.value, "string"),
            },
            "port" => ws.port = cx.i32(e).unwrap_or(ws.port),
            "host" | "net" => ws.host = cx.string(e).unwrap_or_default(),
            "advertise" => ws.advertise = cx.string(e),
            "no_tls" => ws.no_tls = cx.boolean(e).unwrap_or(false),
            "tls" => {
                if let Some(m) = cx.map(e) {
                    ws.tls = tls(cx, e, m);
                }
            }
            "same_origin" => ws.same_origin = cx.boolean(e).unwrap_or(false),
            "allowed_origins" | "allowed_origin" | "allow_origins" | "allow_origin" | "origins"
            | "origin" => ws.allowed_origins = super::string_list(cx, e),
            "handshake_timeout" => ws.handshake_timeout = handshake_timeout(cx, e),
            "compress" | "compression" => ws.compression = cx.boolean(e).unwrap_or(false),
            "authorization" | "authentication" => {
                if let Some(m) = cx.map(e) {
                    for a in &m.entries {
                        match lower(a).as_str() {
                            "user" | "username" => ws.username = cx.string(a),
                            "pass" | "password" => ws.password = cx.string(a),
                            "token" => ws.token = cx.string(a),
                            "timeout" => {
                                ws.auth_timeout = match a.value.value {
                                    Value::Int(i) => {
                                        Some(Duration::from_secs(u64::try_from(i).unwrap_or(0)))
                                    }
                                    Value::Float(f) => Duration::try_from_secs_f64(f).ok(),
                                    _ => Some(Duration::from_secs(1)),
                                }
                            }
                            _ => cx.unknown(a),
                        }
                    }
                }
            }
            "jwt_cookie" => ws.jwt_cookie = cx.string(e),
            "user_cookie" => ws.user_cookie = cx.string(e),
            "pass_cookie" => ws.pass_cookie = cx.string(e),
            "token_cookie" => ws.token_cookie = cx.string(e),
            "no_auth_user" => ws.no_auth_user = cx.string(e),
            "headers" => {
                if let Value::Map(m) = &e.value.value {
                    ws.headers = m
                        .entries
                        .iter()
                        .filter_map(|h| match &h.value.value {
                            Value::Str(v) => Some((h.key.clone(), v.clone())),
                            other => {
                                cx.err(
                                    &h.key_span,
                                    format!(
                                        "error parsing header key {}: unsupported type {}",
                                        h.key,
                                        other.go_type()
                                    ),
                                );
                                None
                            }
                        })
                        .collect();
                } else {
                    cx.err(
                        &e.key_span,
                        format!(
                            "error parsing headers: unsupported type {}",
                            e.value.value.go_type()
                        ),
                    );
                }
            }
            "ping_interval" => ws.ping_interval = cx.duration(e),
            _ => cx.unknown(e),
        }
    }
    if ws.port == 0 {
        return None;
    }
    if ws.host.is_empty() {
        ws.host = "0.0.0.0".to_string();
    }
    Some(ws)
}

/// Seconds as an integer, or a Go duration string.
fn handshake_timeout(cx: &mut Ctx, e: &Entry) -> Duration {
    match &e.value.value {
        Value::Int(i) => Duration::from_secs(u64::try_from(*i).unwrap_or(0)),
        Value::Str(s) => match parse_go_duration(s) {
            Ok((false, d)) => d,
            Ok((true, _)) => Duration::ZERO,
            Err(err) => {
                cx.err(&e.key_span, err);
                Duration::ZERO
            }
        },
        other => {
            cx.err(
                &e.key_span,
                format!(
                    "error parsing handshake timeout: unsupported type {}",
                    other.go_type()
                ),
            );
            Duration::ZERO
        }
    }
}
