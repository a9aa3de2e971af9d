//! `/subsz` (alias `/subscriptionsz`): sublist statistics summed over accounts, and optionally
//! the subscriptions themselves.

use std::time::SystemTime;

use serde::Serialize;

use super::connz::SubDetail;
use super::{rfc3339, MonitorError, Params};
use crate::account::Account;
use crate::server::Server;
use crate::sublist::SublistStats;
use crate::subscription::ClosedSub;

/// nats-server's default page size.
pub(crate) const DEFAULT_LIMIT: usize = 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SubszOptions {
    pub subs: bool,
    pub offset: usize,
    /// 0 means the default (1024).
    pub limit: usize,
    /// Only subscriptions a publish to this subject would reach.
    pub test: Option<String>,
    pub account: Option<String>,
}

impl SubszOptions {
    pub(crate) fn from_params(p: &Params) -> Result<SubszOptions, MonitorError> {
        Ok(SubszOptions {
            subs: p.bool("subs")?,
            offset: usize::try_from(p.int("offset")?).unwrap_or(0),
            limit: usize::try_from(p.int("limit")?).unwrap_or(0),
            test: p.get("test").map(str::to_string),
            account: p.get("acc").map(str::to_string),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Subsz {
    pub server_id: String,
    pub now: String,
    #[serde(flatten)]
    pub stats: SublistStats,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions_list: Option<Vec<SubDetail>>,
}

/// Sublist statistics over several accounts: counts add up, the cache hit rate and the mean
/// fanout are weighted by what they were computed from.
pub(crate) fn sum_stats<'a>(stats: impl IntoIterator<Item = &'a SublistStats>) -> SublistStats {
    let mut total = SublistStats::default();
    let mut hits = 0.0;
    let mut fanout_sum = 0.0;
    for s in stats {
        total.num_subscriptions += s.num_subscriptions;
        total.num_cache += s.num_cache;
        total.num_inserts += s.num_inserts;
        total.num_removes += s.num_removes;
        total.num_matches += s.num_matches;
        total.max_fanout = total.max_fanout.max(s.max_fanout);
        hits += s.cache_hit_rate * s.num_matches as f64;
        fanout_sum += s.avg_fanout * f64::from(s.num_cache);
    }
    if total.num_matches > 0 {
        total.cache_hit_rate = hits / total.num_matches as f64;
    }
    if total.num_cache > 0 {
        total.avg_fanout = fanout_sum / f64::from(total.num_cache);
    }
    total
}

pub(crate) fn subsz(server: &Server, opts: &SubszOptions) -> Result<Subsz, MonitorError> {
    if let Some(test) = &opts.test {
        if !crate::subject::is_valid_literal_subject(test.as_bytes()) {
            return Err(MonitorError::BadTestSubject(test.clone()));
        }
    }
    let limit = if opts.limit == 0 {
        DEFAULT_LIMIT
    } else {
        opts.limit
    };
    let accounts: Vec<std::sync::Arc<Account>> = server
        .accounts()
        .into_iter()
        .filter(|a| opts.account.as_deref().is_none_or(|n| n == a.name))
        .collect();
    let stats: Vec<SublistStats> = accounts.iter().map(|a| a.sublist.stats()).collect();
    let mut out = Subsz {
        server_id: server.id.clone(),
        now: rfc3339(SystemTime::now()),
        stats: sum_stats(&stats),
        total: 0,
        offset: opts.offset,
        limit,
        subscriptions_list: None,
    };
    if !opts.subs {
        return Ok(out);
    }
    let mut list: Vec<(String, u64, ClosedSub)> = Vec::new();
    for account in &accounts {
        for sub in account.sublist.collect_all() {
            if let Some(test) = &opts.test {
                if !crate::subject::matches(&sub.subject, test.as_bytes()) {
                    continue;
                }
            }
            list.push((
                account.name.clone(),
                sub.client_id().unwrap_or(0),
                ClosedSub::of(&sub),
            ));
        }
    }
    list.sort_by(|a, b| {
        let sid = |s: &ClosedSub| (s.sid.parse::<u64>().unwrap_or(u64::MAX), s.sid.clone());
        (&a.0, a.1, sid(&a.2)).cmp(&(&b.0, b.1, sid(&b.2)))
    });
    out.total = list.len();
    let start = opts.offset.min(list.len());
    let end = opts.offset.saturating_add(limit).min(list.len());
    let auth = server.authenticator();
    out.subscriptions_list = Some(
        list.drain(start..end)
            .map(|(account, cid, s)| SubDetail {
                account_tag: auth.name_tag(&account),
                account,
                subject: s.subject,
                qgroup: s.queue,
                sid: s.sid,
                msgs: s.msgs,
                max: s.max,
                cid,
            })
            .collect(),
    );
    Ok(out)
}
