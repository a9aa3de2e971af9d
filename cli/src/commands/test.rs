//! `manage test <tenant> [user]`: connect with the stored credentials (a password, or for an
//! NKEY user the server's nonce signed with the seed) and check each permission on one
//! concrete subject both ways. The tenant's admin user (full access in
//! the same account) is the observer that publishes to or receives from the tested user.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::cli::TenantUserArgs;
use crate::client::{Client, ClientError, TlsSettings};
use crate::cluster::Cluster;
use crate::commands::ExitStatus;
use crate::names::SubjectPattern;
use crate::printer::{style, Printer};
use crate::render::env_file;
use crate::tenant::{repo, Permissions};
use crate::Context;

/// How long each step may take; the server is local.
const STEP_TIMEOUT: Duration = Duration::from_secs(3);

struct Check {
    name: String,
    ok: bool,
    detail: String,
    rtt: Option<Duration>,
}

struct Session {
    user: Client,
    observer: Client,
    nonce: String,
    next_sid: u32,
}

impl Session {
    fn sid(&mut self) -> String {
        self.next_sid += 1;
        self.next_sid.to_string()
    }

    /// An allowed publish must reach a subscriber.
    fn publish_allowed(&mut self, subject: &str) -> Check {
        let name = format!("publish {subject}");
        let sid = self.sid();
        if let Err(e) = self.observer.subscribe(subject, &sid) {
            return fail(name, format!("observer could not subscribe: {e}"));
        }
        let start = Instant::now();
        let payload = format!("manage test {}", self.nonce);
        if let Err(e) = self.user.publish(subject, payload.as_bytes()) {
            return fail(name, format!("refused: {e}"));
        }
        match self.observer.next_message(&sid, STEP_TIMEOUT) {
            Ok(_) => pass(name, "received".into(), Some(start.elapsed())),
            Err(e) => fail(name, format!("not received: {e}")),
        }
    }

    /// An allowed subscription must receive what is published.
    fn subscribe_allowed(&mut self, subject: &str) -> Check {
        let name = format!("subscribe {subject}");
        let sid = self.sid();
        if let Err(e) = self.user.subscribe(subject, &sid) {
            return fail(name, format!("refused: {e}"));
        }
        let start = Instant::now();
        if let Err(e) = self.observer.publish(subject, self.nonce.as_bytes()) {
            return fail(name, format!("observer could not publish: {e}"));
        }
        match self.user.next_message(&sid, STEP_TIMEOUT) {
            Ok(_) => pass(name, "received".into(), Some(start.elapsed())),
            Err(e) => fail(name, format!("not received: {e}")),
        }
    }

    fn publish_denied(&mut self, subject: &str) -> Check {
        let name = format!("publish {subject}");
        let start = Instant::now();
        match self.user.publish(subject, b"denied") {
            Err(ClientError::Denied(_)) => pass(
                name,
                "refused (permissions violation)".into(),
                Some(start.elapsed()),
            ),
            Ok(()) => fail(name, "accepted, but it should be refused".into()),
            Err(e) => fail(name, e.to_string()),
        }
    }

    fn subscribe_denied(&mut self, subject: &str) -> Check {
        let name = format!("subscribe {subject}");
        let sid = self.sid();
        let start = Instant::now();
        match self.user.subscribe(subject, &sid) {
            Err(ClientError::Denied(_)) => pass(
                name,
                "refused (permissions violation)".into(),
                Some(start.elapsed()),
            ),
            Ok(()) => fail(name, "accepted, but it should be refused".into()),
            Err(e) => fail(name, e.to_string()),
        }
    }
}

fn pass(name: String, detail: String, rtt: Option<Duration>) -> Check {
    Check {
        name,
        ok: true,
        detail,
        rtt,
    }
}

fn fail(name: String, detail: String) -> Check {
    Check {
        name,
        ok: false,
        detail,
        rtt: None,
    }
}

/// A literal subject outside every allow list, for the "refused" checks.
fn outside(allow: &[SubjectPattern], deny: &[SubjectPattern], nonce: &str) -> Option<String> {
    if let Some(denied) = deny.first() {
        return Some(denied.example(nonce));
    }
    let candidate = format!("manage-test.denied.{nonce}");
    (!allow.is_empty() && !allow.iter().any(|p| p.matches(&candidate))).then_some(candidate)
}

fn plan(permissions: &Permissions, nonce: &str) -> Vec<(bool, bool, String)> {
    // (is_publish, expect_allowed, subject)
    let mut steps = Vec::new();
    if permissions.replies_only() {
        // allow_responses alone: the server refuses every publish that is not a reply.
        steps.push((true, false, format!("manage-test.pub.{nonce}")));
    } else if permissions.publish.is_empty() && permissions.deny_publish.is_empty() {
        steps.push((true, true, format!("manage-test.pub.{nonce}")));
    }
    for p in &permissions.publish {
        let subject = p.example(nonce);
        if permissions.may_publish(&subject) {
            steps.push((true, true, subject));
        }
    }
    if let Some(subject) = outside(&permissions.publish, &permissions.deny_publish, nonce) {
        steps.push((true, false, subject));
    }
    if permissions.subscribe.is_empty() && permissions.deny_subscribe.is_empty() {
        steps.push((false, true, format!("manage-test.sub.{nonce}")));
    }
    for p in &permissions.subscribe {
        let subject = p.example(nonce);
        if permissions.may_subscribe(&subject) {
            steps.push((false, true, subject));
        }
    }
    if let Some(subject) = outside(&permissions.subscribe, &permissions.deny_subscribe, nonce) {
        steps.push((false, false, subject));
    }
    steps
}

/// Every check on one server: connect as the user and as the observer, then each permission.
fn checks_on(
    addr: &str,
    credentials: &env_file::Credentials,
    observer_credentials: &env_file::Credentials,
    tls: &TlsSettings,
    permissions: &Permissions,
    nonce: &str,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let start = Instant::now();
    let connected = Client::connect(addr, credentials.login(), STEP_TIMEOUT, tls);
    let connect_rtt = start.elapsed();
    // An NKEY user's login is the nonce signed with its seed: say so, it is what was checked.
    let connect_check = match credentials.secret {
        env_file::Secret::Password(_) => format!("connect as {}", credentials.user),
        env_file::Secret::Nkey(_) => format!("connect as {} (NKEY)", credentials.user),
    };
    match connected {
        Err(e) => checks.push(fail(connect_check, format!("{e} ({addr})"))),
        Ok(user_client) => {
            checks.push(pass(
                connect_check,
                format!("{}://{addr}", if user_client.tls { "tls" } else { "nats" }),
                Some(connect_rtt),
            ));
            match Client::connect(addr, observer_credentials.login(), STEP_TIMEOUT, tls) {
                Err(e) => checks.push(fail(
                    format!("connect observer {}", observer_credentials.user),
                    e.to_string(),
                )),
                Ok(observer) => {
                    let mut session = Session {
                        user: user_client,
                        observer,
                        nonce: nonce.to_owned(),
                        next_sid: 0,
                    };
                    for (publish, allowed, subject) in plan(permissions, nonce) {
                        checks.push(match (publish, allowed) {
                            (true, true) => session.publish_allowed(&subject),
                            (true, false) => session.publish_denied(&subject),
                            (false, true) => session.subscribe_allowed(&subject),
                            (false, false) => session.subscribe_denied(&subject),
                        });
                    }
                }
            }
        }
    }
    checks
}

/// Run the checks; exit 1 when any fails.
pub fn test(args: &TenantUserArgs, ctx: &Context, printer: Printer) -> anyhow::Result<ExitStatus> {
    let tenant = repo::load(&ctx.paths, &args.tenant)?;
    let user_name = args.user_name();
    let user = tenant.existing_user(user_name.as_str())?;
    let read_credentials = |name: &str| -> anyhow::Result<env_file::Credentials> {
        crate::credentials::read(&ctx.paths, args.tenant.as_str(), name)
    };
    let credentials = read_credentials(user_name.as_str())?;
    let observer_name = if tenant.user(args.tenant.as_str()).is_some() {
        args.tenant.as_str()
    } else {
        user_name.as_str()
    };
    let observer_credentials = read_credentials(observer_name)?;
    let tls = TlsSettings {
        // Relative to the project directory, like every other path manage reads.
        ca_file: ctx.settings.tls_ca.as_ref().map(|p| ctx.paths.root.join(p)),
        server_name: ctx.settings.tls_server_name.clone(),
    };
    let nonce = format!(
        "t{}",
        crate::commands::generate_password()
            .get(..10)
            .unwrap_or("x")
    );
    // natsd, or every node of the cluster: a user must work wherever a client lands.
    let servers: Vec<(Option<String>, String)> = match Cluster::load(&ctx.paths)? {
        Some(cluster) => cluster
            .nodes
            .iter()
            .map(|n| (Some(n.name.clone()), n.client_addr()))
            .collect(),
        None => vec![(None, ctx.settings.client_addr())],
    };
    let addr = servers
        .iter()
        .map(|(_, a)| a.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let spinner = printer.spinner(format!("Testing {user_name} on {addr}…"));
    let mut per_server = Vec::new();
    for (node, server_addr) in &servers {
        let checks = checks_on(
            server_addr,
            &credentials,
            &observer_credentials,
            &tls,
            &user.permissions,
            &nonce,
        );
        per_server.push((node.clone(), server_addr.clone(), checks));
    }
    spinner.finish_and_clear();

    let all: Vec<&Check> = per_server.iter().flat_map(|(_, _, c)| c).collect();
    let all_ok = all.iter().all(|c| c.ok);
    let width = all.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut body = Vec::new();
    for (node, server_addr, checks) in &per_server {
        if let Some(node) = node {
            body.push(format!("  {node} ({server_addr})"));
        }
        for check in checks {
            let mark = if check.ok {
                style::ok().apply_to("✓")
            } else {
                style::error().apply_to("✗")
            };
            let rtt = check
                .rtt
                .map(|d| format!("{:>8.2} ms", d.as_secs_f64() * 1000.0))
                .unwrap_or_default();
            body.push(format!(
                "  {mark} {:<width$}  {:<34} {rtt}",
                check.name, check.detail
            ));
        }
    }
    body.push(String::new());
    let passed = all.iter().filter(|c| c.ok).count();
    let on = if per_server.len() > 1 {
        format!(" on {} nodes", per_server.len())
    } else {
        String::new()
    };
    body.push(format!("  {passed}/{} checks passed{on}", all.len()));
    printer.boxed(
        &format!("Testing {} in tenant {}", user_name, args.tenant),
        &body,
    );
    let check_json = |node: &Option<String>, c: &Check| {
        let mut doc = json!({
            "check": c.name, "ok": c.ok, "detail": c.detail,
            "rtt_ms": c.rtt.map(|d| d.as_secs_f64() * 1000.0),
        });
        if let Some(node) = node {
            doc["node"] = json!(node);
        }
        doc
    };
    let mut doc = json!({
        "ok": all_ok, "tenant": args.tenant.as_str(), "user": user_name.as_str(), "address": addr,
        "auth": user.auth.kind().as_str(),
        "checks": per_server.iter()
            .flat_map(|(node, _, checks)| checks.iter().map(move |c| check_json(node, c)))
            .collect::<Vec<_>>(),
    });
    if per_server.iter().any(|(node, _, _)| node.is_some()) {
        doc["nodes"] = json!(per_server
            .iter()
            .map(|(node, server_addr, checks)| json!({
                "name": node, "address": server_addr, "ok": checks.iter().all(|c| c.ok),
            }))
            .collect::<Vec<_>>());
    }
    printer.json(&doc);
    Ok(if all_ok {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}
