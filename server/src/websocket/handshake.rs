//! The HTTP upgrade (RFC 6455 section 4.2): the request's checks in nats-server's order, with
//! its status codes, and the `101 Switching Protocols` answer.

use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::config::{parse_origin, split_origin_host};

/// The GUID every accept key is derived with (RFC 6455 section 1.3).
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Most headers a request may have.
const MAX_HEADERS: usize = 64;

/// What the upgrade checks need from the listener's configuration.
#[derive(Debug, Clone, Default)]
pub(crate) struct UpgradeRules {
    pub(crate) same_origin: bool,
    /// (scheme, lower-case host, port) of each allowed origin.
    pub(crate) allowed_origins: Vec<(String, String, String)>,
    pub(crate) compression: bool,
    /// `Name: value\r\n` lines added to every upgrade response.
    pub(crate) extra_headers: String,
    /// Whether the listener speaks TLS (for the same-origin check).
    pub(crate) tls: bool,
    pub(crate) jwt_cookie: Option<String>,
    pub(crate) user_cookie: Option<String>,
    pub(crate) pass_cookie: Option<String>,
    pub(crate) token_cookie: Option<String>,
}

impl UpgradeRules {
    pub(crate) fn from_config(ws: &crate::config::WebsocketConfig) -> UpgradeRules {
        let mut extra_headers = String::new();
        for (k, v) in &ws.headers {
            extra_headers.push_str(k);
            extra_headers.push_str(": ");
            extra_headers.push_str(v);
            extra_headers.push_str("\r\n");
        }
        UpgradeRules {
            same_origin: ws.same_origin,
            // Validated at start-up; an origin that does not parse allows nothing.
            allowed_origins: ws
                .allowed_origins
                .iter()
                .filter_map(|o| parse_origin(o).ok())
                .collect(),
            compression: ws.compression,
            extra_headers,
            tls: ws.tls.is_some(),
            jwt_cookie: ws.jwt_cookie.clone(),
            user_cookie: ws.user_cookie.clone(),
            pass_cookie: ws.pass_cookie.clone(),
            token_cookie: ws.token_cookie.clone(),
        }
    }
}

/// Why an upgrade was refused: the HTTP status and the reason that is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) reason: String,
}

impl Refusal {
    fn new(status: u16, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
        }
    }

    /// The error response as Go's `http.Error` writes it.
    pub(crate) fn response(&self) -> Vec<u8> {
        let text = status_text(self.status);
        let body = format!("{text}\n");
        let date = httpdate_now();
        format!(
            "HTTP/1.1 {} {text}\r\nContent-Type: text/plain; charset=utf-8\r\nSec-Websocket-Version: 13\r\nX-Content-Type-Options: nosniff\r\nDate: {date}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.status,
            body.len()
        )
        .into_bytes()
    }
}

fn status_text(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

/// The current time in HTTP's `Date` format.
fn httpdate_now() -> String {
    chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// What an accepted upgrade agreed on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// The `101` response to write.
    pub(crate) response: Vec<u8>,
    /// permessage-deflate was negotiated.
    pub(crate) compress: bool,
    /// The client asked not to mask its frames (`Nats-No-Masking: true`).
    pub(crate) no_masking: bool,
    /// A browser (its frames are kept small, as browsers handle those better).
    pub(crate) browser: bool,
    /// Safari: compressed messages are not fragmented.
    pub(crate) no_compressed_fragments: bool,
    /// The first `X-Forwarded-For` value, when it is an IP address.
    pub(crate) forwarded_for: Option<std::net::IpAddr>,
    /// Credentials carried in the configured cookies.
    pub(crate) cookie_jwt: Option<String>,
    pub(crate) cookie_user: Option<String>,
    pub(crate) cookie_pass: Option<String>,
    pub(crate) cookie_token: Option<String>,
}

/// A parsed request: the method and the headers (names as sent).
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) headers: Vec<(String, String)>,
}

/// Parse a complete request head; `Ok(None)` means more bytes are needed, `Ok(Some(n))`
/// gives the request and the length of its head.
pub(crate) fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(n)) => {
            let request = Request {
                method: req.method.unwrap_or_default().to_string(),
                headers: req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect(),
            };
            Ok(Some((request, n)))
        }
        Err(httparse::Error::TooManyHeaders) => Err(Refusal::new(431, "too many headers")),
        Err(e) => Err(Refusal::new(400, format!("malformed request: {e}"))),
    }
}

impl Request {
    /// Every value of header `name` (case-insensitive).
    fn values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn first(&self, name: &str) -> Option<&str> {
        self.values(name).next()
    }

    /// Whether a comma-separated token of header `name` equals `token` (case-insensitive).
    fn contains_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim_matches([' ', '\t']).eq_ignore_ascii_case(token))
    }

    /// Whether a `Sec-WebSocket-Extensions` offer names permessage-deflate.
    fn offers_deflate(&self) -> bool {
        self.values("Sec-WebSocket-Extensions")
            .flat_map(|v| v.split(','))
            .flat_map(|ext| ext.split(';'))
            .any(|p| {
                p.trim_matches([' ', '\t'])
                    .eq_ignore_ascii_case("permessage-deflate")
            })
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.values("Cookie")
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim_matches('"').to_string())
    }
}

/// Check an upgrade request as nats-server does, in its order, and build the answer.
pub(crate) fn check(req: &Request, rules: &UpgradeRules) -> Result<Accepted, Refusal> {
    if req.method != "GET" {
        return Err(Refusal::new(405, "request method must be GET"));
    }
    let Some(host) = req.first("Host").filter(|h| !h.is_empty()) else {
        return Err(Refusal::new(400, "'Host' missing in request"));
    };
    if !req.contains_token("Upgrade", "websocket") {
        return Err(Refusal::new(400, "invalid value for header 'Upgrade'"));
    }
    if !req.contains_token("Connection", "Upgrade") {
        return Err(Refusal::new(400, "invalid value for header 'Connection'"));
    }
    let Some(key) = req.first("Sec-WebSocket-Key").filter(|k| !k.is_empty()) else {
        return Err(Refusal::new(400, "key missing"));
    };
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(Refusal::new(400, "invalid websocket key")),
    }
    if !req.contains_token("Sec-WebSocket-Version", "13") {
        return Err(Refusal::new(400, "invalid version"));
    }
    if let Err(why) = check_origin(req, host, rules) {
        return Err(Refusal::new(403, format!("origin not allowed: {why}")));
    }
    let compress = rules.compression && req.offers_deflate();
    let no_masking = req.first("Nats-No-Masking") == Some("true");

    let mut response = Vec::with_capacity(256);
    response.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    response.extend_from_slice(accept_key(key).as_bytes());
    response.extend_from_slice(b"\r\n");
    if compress {
        response.extend_from_slice(
            b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n",
        );
    }
    if no_masking {
        response.extend_from_slice(b"Nats-No-Masking: true\r\n");
    }
    response.extend_from_slice(rules.extra_headers.as_bytes());
    response.extend_from_slice(b"\r\n");

    let user_agent = req.first("User-Agent").unwrap_or_default();
    let browser = user_agent.starts_with("Mozilla/");
    let cookie = |name: &Option<String>| name.as_deref().and_then(|n| req.cookie(n));
    Ok(Accepted {
        response,
        compress,
        no_masking,
        browser,
        no_compressed_fragments: browser
            && compress
            && user_agent.contains("Version/")
            && user_agent.contains("Safari/"),
        forwarded_for: req
            .first("X-Forwarded-For")
            .and_then(|ip| ip.trim().parse().ok()),
        cookie_jwt: cookie(&rules.jwt_cookie),
        cookie_user: cookie(&rules.user_cookie),
        cookie_pass: cookie(&rules.pass_cookie),
        cookie_token: cookie(&rules.token_cookie),
    })
}

/// `Sec-WebSocket-Accept` for a client's key.
pub(crate) fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The origin checks: no check configured or no `Origin` header passes.
fn check_origin(req: &Request, host: &str, rules: &UpgradeRules) -> Result<(), String> {
    if !rules.same_origin && rules.allowed_origins.is_empty() {
        return Ok(());
    }
    let origin = req
        .first("Origin")
        .filter(|o| !o.is_empty())
        .or_else(|| req.first("Sec-WebSocket-Origin").filter(|o| !o.is_empty()));
    let Some(origin) = origin else {
        return Ok(());
    };
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(format!("parse \"{origin}\": invalid URI for request"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (oh, op) = split_origin_host(authority, scheme.eq_ignore_ascii_case("https"))?;
    if rules.same_origin {
        let (rh, rp) = split_origin_host(host, rules.tls)?;
        let own_scheme = if rules.tls { "https" } else { "http" };
        if oh != rh || op != rp || !scheme.eq_ignore_ascii_case(own_scheme) {
            return Err("not same origin".to_string());
        }
    }
    if !rules.allowed_origins.is_empty()
        && !rules
            .allowed_origins
            .iter()
            .any(|(s, h, p)| *h == oh && s.as_str() == scheme && *p == op)
    {
        return Err("not in the allowed list".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(head: &str) -> Request {
        let raw = format!("{head}\r\n\r\n");
        parse_request(raw.as_bytes())
            .expect("parses")
            .expect("complete")
            .0
    }

    const GOOD: &str = "GET / HTTP/1.1\r\nHost: localhost:8080\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13";

    #[test]
    fn accept_key_is_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn checks_come_in_nats_server_order() {
        let rules = UpgradeRules::default();
        let status = |head: &str| {
            check(&request(head), &rules)
                .map(|_| 101)
                .unwrap_or_else(|r| r.status)
        };
        assert_eq!(status(GOOD), 101);
        assert_eq!(status(&GOOD.replace("GET", "POST")), 405);
        assert_eq!(
            status(&GOOD.replace("Upgrade: websocket", "Upgrade: h2c")),
            400
        );
        assert_eq!(
            status(&GOOD.replace("keep-alive, Upgrade", "keep-alive")),
            400
        );
        assert_eq!(
            status(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=")),
            400
        );
        assert_eq!(status(&GOOD.replace("Version: 13", "Version: 8")), 400);
    }

    #[test]
    fn origins_are_checked_by_scheme_host_and_port() {
        let rules = UpgradeRules {
            allowed_origins: vec![parse_origin("https://app.example.com").expect("origin")],
            ..UpgradeRules::default()
        };
        let with = |origin: &str| check(&request(&format!("{GOOD}\r\nOrigin: {origin}")), &rules);
        assert!(with("https://app.example.com").is_ok());
        assert!(with("https://APP.example.com:443").is_ok());
        let refused = with("http://app.example.com").expect_err("scheme differs");
        assert_eq!(refused.status, 403);
        assert_eq!(
            refused.reason,
            "origin not allowed: not in the allowed list"
        );
        assert!(check(&request(GOOD), &rules).is_ok(), "no Origin passes");

        let same = UpgradeRules {
            same_origin: true,
            ..UpgradeRules::default()
        };
        assert!(check(
            &request(&format!("{GOOD}\r\nOrigin: http://localhost:8080")),
            &same
        )
        .is_ok());
        let refused = check(
            &request(&format!("{GOOD}\r\nOrigin: http://other:8080")),
            &same,
        )
        .expect_err("other host");
        assert_eq!(refused.reason, "origin not allowed: not same origin");
    }

    #[test]
    fn deflate_is_agreed_only_when_configured_and_offered() {
        let offer = format!(
            "{GOOD}\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
        );
        let on = UpgradeRules {
            compression: true,
            ..UpgradeRules::default()
        };
        assert!(check(&request(&offer), &on).expect("ok").compress);
        assert!(!check(&request(GOOD), &on).expect("ok").compress);
        assert!(
            !check(&request(&offer), &UpgradeRules::default())
                .expect("ok")
                .compress
        );
    }
}
