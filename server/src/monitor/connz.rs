//! `/connz`: open and closed client connections, sorted and paged like nats-server.
//!
//! The registry lock is held only to clone the list of connections; each connection is then
//! read under its own short locks (metadata, subscriptions, outbound counters), one at a time.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{go_duration, go_uptime, rfc3339, MonitorError, Params};
use crate::client::ClientShared;
use crate::config::GLOBAL_ACCOUNT;
use crate::server::{ClosedClient, Server};
use crate::subscription::ClosedSub;

/// nats-server's default page size.
pub(crate) const DEFAULT_LIMIT: usize = 1024;

/// `sort=`: `cid` and `start` (the same order), `uptime` and `reason` ascend; the rest descend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum SortOpt {
    #[default]
    Cid,
    Start,
    Subs,
    Pending,
    MsgsTo,
    MsgsFrom,
    BytesTo,
    BytesFrom,
    Last,
    Idle,
    Uptime,
    Stop,
    Reason,
    Rtt,
}

impl SortOpt {
    pub(crate) fn parse(s: &str) -> Result<SortOpt, MonitorError> {
        Ok(match s {
            "cid" => SortOpt::Cid,
            "start" => SortOpt::Start,
            "subs" => SortOpt::Subs,
            "pending" => SortOpt::Pending,
            "msgs_to" => SortOpt::MsgsTo,
            "msgs_from" => SortOpt::MsgsFrom,
            "bytes_to" => SortOpt::BytesTo,
            "bytes_from" => SortOpt::BytesFrom,
            "last" => SortOpt::Last,
            "idle" => SortOpt::Idle,
            "uptime" => SortOpt::Uptime,
            "stop" => SortOpt::Stop,
            "reason" => SortOpt::Reason,
            "rtt" => SortOpt::Rtt,
            other => return Err(MonitorError::BadSort(other.to_string())),
        })
    }
}

/// `state=`: open (default), closed, or all (`any` too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum StateOpt {
    #[default]
    Open,
    Closed,
    All,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ConnzOptions {
    pub sort: SortOpt,
    /// `auth=true`: show `authorized_user`, `account` and `name_tag`.
    pub auth: bool,
    pub subs: bool,
    pub subs_detail: bool,
    pub offset: usize,
    /// 0 means the default (1024).
    pub limit: usize,
    pub cid: u64,
    pub state: StateOpt,
    pub user: Option<String>,
    pub account: Option<String>,
}

impl ConnzOptions {
    /// Decode the query parameters in nats-server's order (so the first bad one is reported).
    pub(crate) fn from_params(p: &Params) -> Result<ConnzOptions, MonitorError> {
        let sort = p.get("sort").map(SortOpt::parse);
        let auth = p.bool("auth")?;
        let subs_detail = p
            .get("subs")
            .is_some_and(|s| s.eq_ignore_ascii_case("detail"));
        let subs = !subs_detail && p.bool("subs")?;
        let offset = p.int("offset")?;
        let limit = p.int("limit")?;
        let cid = p.uint("cid")?;
        let state = match p.get("state").map(str::to_ascii_lowercase).as_deref() {
            None | Some("open") => StateOpt::Open,
            Some("closed") => StateOpt::Closed,
            Some("any") | Some("all") => StateOpt::All,
            Some(_) => {
                return Err(MonitorError::BadState(
                    p.get("state").unwrap_or_default().to_string(),
                ))
            }
        };
        Ok(ConnzOptions {
            sort: sort.transpose()?.unwrap_or_default(),
            auth,
            subs,
            subs_detail,
            offset: usize::try_from(offset).unwrap_or(0),
            limit: usize::try_from(limit).unwrap_or(0),
            cid,
            state,
            user: p.get("user").map(str::to_string),
            account: p.get("acc").map(str::to_string),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Connz {
    pub server_id: String,
    pub now: String,
    pub num_connections: usize,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    /// `null` (not `[]`) when the `acc` filter names no account, as nats-server answers.
    pub connections: Option<Vec<ConnInfo>>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct SubDetail {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account_tag: String,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qgroup: Option<String>,
    pub sid: String,
    pub msgs: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub cid: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConnInfo {
    pub cid: u64,
    pub kind: &'static str,
    #[serde(rename = "type")]
    pub conn_type: &'static str,
    pub ip: String,
    pub port: u16,
    pub start: String,
    pub last_activity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub rtt: String,
    pub uptime: String,
    pub idle: String,
    pub pending_bytes: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    /// Times a publisher waited for this connection to drain.
    #[serde(skip_serializing_if = "is_zero")]
    pub stalls: u64,
    pub subscriptions: usize,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub lang: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tls_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tls_cipher_suite: String,
    /// The client's certificates; with `auth=true`, for open connections.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls_peer_certs: Vec<crate::tls::PeerCertInfo>,
    /// The TLS handshake came before INFO (`handshake_first`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_first: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub authorized_user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions_list: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions_list_detail: Option<Vec<SubDetail>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub jwt: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub issuer_key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name_tag: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip)]
    keys: SortKeys,
}

/// Raw values behind the formatted fields, for sorting.
#[derive(Debug, Clone)]
struct SortKeys {
    start: SystemTime,
    last: SystemTime,
    stop: Option<SystemTime>,
    rtt: Duration,
    user: String,
}

/// One connection's figures, copied out under its locks (the snapshot `/connz` works on).
struct Snapshot {
    cid: u64,
    addr: std::net::SocketAddr,
    start: SystemTime,
    last: SystemTime,
    stop: Option<SystemTime>,
    reason: Option<&'static str>,
    rtt: Duration,
    pending: usize,
    in_msgs: u64,
    in_bytes: u64,
    out_msgs: u64,
    out_bytes: u64,
    stalls: u64,
    meta: crate::client::ConnMeta,
    subs: Vec<ClosedSub>,
}

impl Snapshot {
    fn open(c: &ClientShared, with_subs: bool) -> (Snapshot, usize) {
        let meta = crate::client::ConnMeta {
            account: c.account().map(|a| a.name.clone()).unwrap_or_default(),
            ..c.meta.lock().clone()
        };
        let (subs, num_subs) = {
            let subs = c.subs.lock();
            let n = subs.len();
            let list = if with_subs {
                subs.values().map(ClosedSub::of).collect()
            } else {
                Vec::new()
            };
            (list, n)
        };
        let (out_msgs, out_bytes, pending) = c.out.out_stats();
        (
            Snapshot {
                cid: c.out.cid,
                addr: c.out.addr,
                start: c.out.start,
                last: c.out.last_activity(),
                stop: None,
                reason: None,
                rtt: c.rtt(),
                pending,
                in_msgs: c.in_msgs.load(Relaxed),
                in_bytes: c.in_bytes.load(Relaxed),
                out_msgs,
                out_bytes,
                stalls: c.out.stalls.load(Relaxed),
                meta,
                subs,
            },
            num_subs,
        )
    }

    fn closed(c: &ClosedClient) -> (Snapshot, usize) {
        (
            Snapshot {
                cid: c.cid,
                addr: c.addr,
                start: c.start,
                last: c.last_activity,
                stop: Some(c.stop),
                reason: Some(c.reason.as_str()),
                rtt: c.rtt,
                pending: c.pending_bytes,
                in_msgs: c.traffic.in_msgs,
                in_bytes: c.traffic.in_bytes,
                out_msgs: c.traffic.out_msgs,
                out_bytes: c.traffic.out_bytes,
                stalls: c.stalls,
                meta: c.meta.clone(),
                subs: c.subs.clone(),
            },
            c.subs.len(),
        )
    }

    fn into_info(
        mut self,
        num_subs: usize,
        now: SystemTime,
        opts: &ConnzOptions,
        server: &Server,
        auth: &crate::auth::Authenticator,
    ) -> ConnInfo {
        // A closed connection's clock stopped when it closed.
        let until = self.stop.unwrap_or(now);
        sort_subs(&mut self.subs);
        let (subscriptions_list, subscriptions_list_detail) = if self.subs.is_empty() {
            (None, None)
        } else if opts.subs_detail {
            let cid = self.cid;
            let detail = self
                .subs
                .iter()
                .map(|s| SubDetail {
                    account: String::new(),
                    account_tag: String::new(),
                    subject: s.subject.clone(),
                    qgroup: s.queue.clone(),
                    sid: s.sid.clone(),
                    msgs: s.msgs,
                    max: s.max,
                    cid,
                })
                .collect();
            (None, Some(detail))
        } else if opts.subs {
            (
                Some(self.subs.iter().map(|s| s.subject.clone()).collect()),
                None,
            )
        } else {
            (None, None)
        };
        let user = self.meta.user.clone().unwrap_or_default();
        let account = self.meta.account.clone();
        // What nats-server keeps of a closed connection's JWT is shown with or without
        // `auth=true`, its `name_tag` then being the user JWT's name; an open connection's
        // only with `auth=true`.
        let shown = match (&self.meta.jwt_shown, opts.auth || self.stop.is_some()) {
            (Some(shown), true) => shown.as_ref().clone(),
            _ => crate::auth::JwtShown::default(),
        };
        let closed_tag = if self.stop.is_some() {
            shown.name.clone()
        } else {
            String::new()
        };
        let (authorized_user, account_field, name_tag) = if opts.auth {
            let shown = if account == GLOBAL_ACCOUNT {
                String::new()
            } else {
                account.clone()
            };
            // A closed connection outside `$G` shows its account's tag while the account
            // exists; an open one always does.
            let tag = if self.stop.is_none()
                || (!shown.is_empty() && server.account(&account).is_some())
            {
                auth.name_tag(&account)
            } else {
                closed_tag
            };
            (user.clone(), shown, tag)
        } else {
            (String::new(), String::new(), closed_tag)
        };
        ConnInfo {
            cid: self.cid,
            kind: "Client",
            conn_type: if self.meta.websocket {
                "websocket"
            } else {
                "nats"
            },
            ip: self.addr.ip().to_string(),
            port: self.addr.port(),
            start: rfc3339(self.start),
            last_activity: rfc3339(self.last),
            stop: self.stop.map(rfc3339),
            reason: self.reason,
            rtt: go_duration(self.rtt),
            uptime: go_uptime(until.duration_since(self.start).unwrap_or_default()),
            idle: go_uptime(until.duration_since(self.last).unwrap_or_default()),
            pending_bytes: self.pending,
            in_msgs: self.in_msgs,
            out_msgs: self.out_msgs,
            in_bytes: self.in_bytes,
            out_bytes: self.out_bytes,
            stalls: self.stalls,
            subscriptions: num_subs,
            name: self.meta.name,
            lang: self.meta.lang,
            version: self.meta.version,
            tls_version: self.meta.tls_version,
            tls_cipher_suite: self.meta.tls_cipher,
            tls_peer_certs: if opts.auth && self.stop.is_none() {
                std::mem::take(&mut self.meta.tls_peer_certs)
            } else {
                Vec::new()
            },
            tls_first: self.meta.tls_first,
            authorized_user,
            account: account_field,
            subscriptions_list,
            subscriptions_list_detail,
            jwt: shown.jwt,
            issuer_key: shown.issuer_key,
            name_tag,
            tags: shown.tags,
            keys: SortKeys {
                start: self.start,
                last: self.last,
                stop: self.stop,
                rtt: self.rtt,
                user,
            },
        }
    }
}

/// Numeric sids in numeric order, the rest after them by text.
pub(crate) fn sort_subs(subs: &mut [ClosedSub]) {
    subs.sort_by(|a, b| {
        let key = |s: &ClosedSub| (s.sid.parse::<u64>().unwrap_or(u64::MAX), s.sid.clone());
        key(a).cmp(&key(b))
    });
}

/// Build `/connz` for `opts`.
pub(crate) fn connz(server: &Server, opts: &ConnzOptions) -> Result<Connz, MonitorError> {
    if opts.sort == SortOpt::Stop && opts.state != StateOpt::Closed {
        return Err(MonitorError::SortNeedsClosed("stop"));
    }
    if opts.sort == SortOpt::Reason && opts.state != StateOpt::Closed {
        return Err(MonitorError::SortNeedsClosed("reason"));
    }
    let now = SystemTime::now();
    let mut limit = if opts.limit == 0 {
        DEFAULT_LIMIT
    } else {
        opts.limit
    };
    if opts.cid > 0 {
        limit = 1;
    }
    let mut out = Connz {
        server_id: server.id.clone(),
        now: rfc3339(now),
        num_connections: 0,
        total: 0,
        offset: opts.offset,
        limit,
        connections: Some(Vec::new()),
    };
    if let Some(acc) = &opts.account {
        if server.account(acc).is_none() {
            out.server_id = String::new();
            out.connections = None;
            return Ok(out);
        }
    }
    let in_account = |name: &str| opts.account.as_deref().is_none_or(|a| a == name);
    let want_subs = opts.subs || opts.subs_detail;

    let open = if opts.state == StateOpt::Closed {
        Vec::new()
    } else {
        server
            .clients()
            .into_iter()
            .filter(|c| match &opts.account {
                None => true,
                Some(a) => c.account().is_some_and(|acc| &acc.name == a),
            })
            .collect()
    };
    let closed: Vec<ClosedClient> = if opts.state == StateOpt::Open {
        Vec::new()
    } else {
        server
            .closed_clients()
            .into_iter()
            .filter(|c| in_account(&c.meta.account))
            .collect()
    };
    out.total = open.len() + closed.len();

    let mut snapshots: Vec<(Snapshot, usize)> = Vec::new();
    if opts.cid > 0 {
        if let Some(c) = closed.iter().find(|c| c.cid == opts.cid) {
            snapshots.push(Snapshot::closed(c));
        } else if let Some(c) = open.iter().find(|c| c.out.cid == opts.cid) {
            snapshots.push(Snapshot::open(c, want_subs));
        }
    } else {
        snapshots.extend(open.iter().map(|c| Snapshot::open(c, want_subs)));
        snapshots.extend(closed.iter().map(Snapshot::closed));
    }
    let auth = server.authenticator();
    let mut infos: Vec<ConnInfo> = snapshots
        .into_iter()
        .map(|(s, n)| s.into_info(n, now, opts, server, &auth))
        .filter(|ci| opts.user.as_deref().is_none_or(|u| ci.keys.user == u))
        .collect();
    sort(&mut infos, opts.sort, now);
    let start = opts.offset.min(infos.len());
    let end = opts.offset.saturating_add(limit).min(infos.len());
    let page: Vec<ConnInfo> = infos.drain(start..end).collect();
    out.num_connections = page.len();
    out.connections = Some(page);
    Ok(out)
}

fn sort(infos: &mut [ConnInfo], by: SortOpt, now: SystemTime) {
    infos.sort_by_key(|c| c.cid);
    let up = |c: &ConnInfo| {
        c.keys
            .stop
            .unwrap_or(now)
            .duration_since(c.keys.start)
            .unwrap_or_default()
    };
    // nats-server's "idle" order compares last activity minus start, largest first.
    let active = |c: &ConnInfo| c.keys.last.duration_since(c.keys.start).unwrap_or_default();
    match by {
        SortOpt::Cid | SortOpt::Start => {}
        SortOpt::Subs => infos.sort_by_key(|c| std::cmp::Reverse(c.subscriptions)),
        SortOpt::Pending => infos.sort_by_key(|c| std::cmp::Reverse(c.pending_bytes)),
        SortOpt::MsgsTo => infos.sort_by_key(|c| std::cmp::Reverse(c.out_msgs)),
        SortOpt::MsgsFrom => infos.sort_by_key(|c| std::cmp::Reverse(c.in_msgs)),
        SortOpt::BytesTo => infos.sort_by_key(|c| std::cmp::Reverse(c.out_bytes)),
        SortOpt::BytesFrom => infos.sort_by_key(|c| std::cmp::Reverse(c.in_bytes)),
        SortOpt::Last => infos.sort_by_key(|c| std::cmp::Reverse(c.keys.last)),
        SortOpt::Idle => infos.sort_by_key(|c| std::cmp::Reverse(active(c))),
        SortOpt::Uptime => infos.sort_by_key(up),
        SortOpt::Stop => infos.sort_by_key(|c| std::cmp::Reverse(c.keys.stop)),
        SortOpt::Reason => infos.sort_by(|a, b| a.reason.cmp(&b.reason)),
        SortOpt::Rtt => infos.sort_by_key(|c| std::cmp::Reverse(c.keys.rtt)),
    }
}
