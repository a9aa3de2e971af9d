//! Accounts: isolated subject spaces. Every subscription lives in exactly one account's
//! sublist, so a publish can only ever reach subscribers of the publisher's account.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::{AccountJetStreamLimits, AccountLimits};
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
}

/// The reloadable part of an account's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountSettings {
    pub limits: AccountLimits,
    pub jetstream: Option<AccountJetStreamLimits>,
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
        Arc::new(Account {
            name: name.to_string(),
            sublist: Sublist::new(),
            num_connections: AtomicUsize::new(0),
            limits: Mutex::new(settings),
            stats: AccountStats::default(),
        })
    }

    pub fn settings(&self) -> AccountSettings {
        self.limits.lock().clone()
    }

    pub fn set_settings(&self, settings: AccountSettings) {
        *self.limits.lock() = settings;
    }

    pub fn connections(&self) -> usize {
        self.num_connections.load(Ordering::Relaxed)
    }
}
