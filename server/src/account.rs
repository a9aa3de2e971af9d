//! Accounts: isolated subject spaces. Every subscription lives in exactly one account's
//! sublist, so a publish can only ever reach subscribers of the publisher's account.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::config::{AccountJetStreamLimits, AccountLimits, SubjectMapping};
use crate::mapping::{Mapped, Mappings};
use crate::sublist::Sublist;
use crate::subscription::SubRef;

pub struct Account {
    pub name: String,
    pub sublist: Sublist<SubRef>,
    /// Live client connections bound to this account.
    pub num_connections: AtomicUsize,
    /// Limits from the config; replaced on reload.
    limits: Mutex<AccountSettings>,
    pub stats: AccountStats,
    /// Subject mappings for client publishes; `has_mappings` lets the publish path skip them
    /// with one relaxed load when there are none.
    mappings: ArcSwap<Mappings>,
    has_mappings: AtomicBool,
}

/// The reloadable part of an account's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountSettings {
    pub limits: AccountLimits,
    pub jetstream: Option<AccountJetStreamLimits>,
    pub mappings: Vec<SubjectMapping>,
}

/// Message counters of connections that have closed, folded in when they close; live
/// connections keep their own counters so the publish path never touches shared atomics.
#[derive(Default)]
pub struct AccountStats {
    pub closed_in_msgs: AtomicU64,
    pub closed_in_bytes: AtomicU64,
    pub closed_out_msgs: AtomicU64,
    pub closed_out_bytes: AtomicU64,
    pub total_connections: AtomicU64,
    /// Connections of this account cut off as slow consumers.
    pub slow_consumers: AtomicU64,
    /// CONNECTs refused for a wrong password of one of this account's users.
    pub auth_failures: AtomicU64,
}

impl Account {
    pub fn new(name: &str, settings: AccountSettings) -> Arc<Account> {
        let mappings = Mappings::build(name, &settings.mappings);
        Arc::new(Account {
            name: name.to_string(),
            sublist: Sublist::new(),
            num_connections: AtomicUsize::new(0),
            has_mappings: AtomicBool::new(!mappings.is_empty()),
            mappings: ArcSwap::from_pointee(mappings),
            limits: Mutex::new(settings),
            stats: AccountStats::default(),
        })
    }

    pub fn settings(&self) -> AccountSettings {
        self.limits.lock().clone()
    }

    pub fn set_settings(&self, settings: AccountSettings) {
        let mut current = self.limits.lock();
        if current.mappings != settings.mappings {
            let mappings = Mappings::build(&self.name, &settings.mappings);
            self.has_mappings
                .store(!mappings.is_empty(), Ordering::Relaxed);
            self.mappings.store(Arc::new(mappings));
        }
        *current = settings;
    }

    /// The mappings as `/accountz` shows them.
    pub(crate) fn mappings_info(&self) -> Vec<(String, Vec<crate::mapping::DestInfo>)> {
        self.mappings.load().describe()
    }

    /// Where a client's publish to `subject` goes under the account's mappings; `None` when
    /// none applies.
    #[inline]
    pub(crate) fn map_subject(&self, subject: &[u8]) -> Option<Mapped> {
        if !self.has_mappings.load(Ordering::Relaxed) {
            return None;
        }
        self.mappings.load().map(subject)
    }

    pub fn connections(&self) -> usize {
        self.num_connections.load(Ordering::Relaxed)
    }
}
