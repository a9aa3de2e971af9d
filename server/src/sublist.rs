//! The subscription trie (one per account) with a bounded match cache.
//!
//! `Sublist<T>` is `Send + Sync` with interior locking (an `RwLock` on the trie, the cache
//! behind its own lock), generic over the item stored for each subscription (the server
//! stores `Arc<Subscription>`; identity for removal is `PartialEq`).
//!
//! ```ignore
//! let list: Sublist<Arc<Sub>> = Sublist::new();
//! list.insert(b"foo.*", None, sub.clone())?;        // Err on an invalid subject
//! list.insert(b"foo.>", Some(b"workers"), sub2)?;
//! let r: Arc<SublistResult<Arc<Sub>>> = list.match_subject(b"foo.bar");
//! r.plain;                  // Vec<T>: every non-queue subscription that matches
//! r.queues;                 // Vec<QueueGroup<T>>: one entry per queue name, with its members
//! list.remove(b"foo.*", None, &sub);                // true when found
//! list.genid();             // bumps on every insert/remove; callers key their own L1 caches on it
//! list.count();             // number of subscriptions
//! list.stats();             // SublistStats for /subsz
//! list.collect_all();       // Vec<T> of every subscription (for /subsz, reload re-checks)
//! ```
//! A published subject with an empty token (`foo..bar`, `.foo`) matches nothing, even `>`.
//! Tokens of the published subject are literal: `foo.*` published matches `foo.*`, `foo.>`, `>`.
//!
//! # Structure
//! The trie is shaped like nats-server's subscription list: a level holds a map from literal token
//! to node plus one slot for `*` and one for `>`; a node holds the plain subscriptions and the
//! queue subscriptions (grouped by queue name) that end there, and the next level.
//!
//! # Invariants
//! - Lock order: trie, then cache. A cache miss computes its result and stores it while
//!   still holding the trie read lock, so no insert/remove can slip between the two and
//!   leave a stale entry; insert/remove patch the cache while holding the trie write lock.
//! - Every cached result equals what a fresh walk of the trie would return (as a multiset).
//!   Insert/remove patch only the entries whose subject the changed subscription matches.
//! - `genid` is bumped after the trie and the cache have both been updated. A caller that
//!   reads `genid()` *before* `match_subject` and tags its own cached copy with that value
//!   can never keep a stale result under the current generation.
//! - Nodes and levels left empty by a removal are pruned.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

use bytes::Bytes;
use rustc_hash::FxHasher;

use crate::subject::{self, Tokens, FULL_WILDCARD, SINGLE_WILDCARD};

/// Most published subjects kept in the match cache. Same bound as nats-server: large
/// enough for the hot subjects of one account, small enough that the scan done by a
/// wildcard insert/remove stays in the microseconds.
pub(crate) const CACHE_MAX: usize = 1024;

/// Entries dropped at once when the cache is full, so that eviction work is amortized over
/// many misses instead of paid on each one.
pub(crate) const CACHE_SWEEP: usize = 256;

/// Errors from [`Sublist`] operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SublistError {
    /// The subscription subject fails [`subject::is_valid_subject`].
    #[error("invalid subject")]
    InvalidSubject,
}

/// The subscriptions of one queue group that match a subject; one member gets each message.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueGroup<T> {
    /// The queue group name as given in SUB (not validated by the protocol). `Bytes` so
    /// that building a result shares the name instead of copying it.
    pub name: Bytes,
    /// Every matching subscription in the group (a subscription matching twice is listed twice).
    pub members: Vec<T>,
}

/// Every subscription that matches one published subject.
#[derive(Debug, Clone, PartialEq)]
pub struct SublistResult<T> {
    /// Non-queue subscriptions; each gets a copy. An item inserted under two matching
    /// subjects appears twice, as nats-server delivers twice.
    pub plain: Vec<T>,
    /// One entry per queue name that has a matching member.
    pub queues: Vec<QueueGroup<T>>,
}

impl<T> Default for SublistResult<T> {
    fn default() -> Self {
        Self {
            plain: Vec::new(),
            queues: Vec::new(),
        }
    }
}

impl<T> SublistResult<T> {
    /// Whether nobody is interested (used for no-responders).
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty()
    }

    /// How many deliveries one message makes: one per plain subscription, one per queue group.
    pub fn fanout(&self) -> usize {
        self.plain.len() + self.queues.len()
    }
}

impl<T: Clone + PartialEq> SublistResult<T> {
    fn add(&mut self, queue: Option<&[u8]>, item: T) {
        match queue {
            None => self.plain.push(item),
            Some(name) => match self.queues.iter_mut().find(|g| &*g.name == name) {
                Some(group) => group.members.push(item),
                None => self.queues.push(QueueGroup {
                    name: Bytes::copy_from_slice(name),
                    members: vec![item],
                }),
            },
        }
    }

    /// Removes one occurrence of `item`; returns whether it was there.
    fn remove(&mut self, queue: Option<&[u8]>, item: &T) -> bool {
        match queue {
            None => remove_one(&mut self.plain, item),
            Some(name) => {
                let Some(index) = self.queues.iter().position(|g| &*g.name == name) else {
                    return false;
                };
                let removed = remove_one(&mut self.queues[index].members, item);
                if self.queues[index].members.is_empty() {
                    self.queues.swap_remove(index);
                }
                removed
            }
        }
    }

    fn extend_from_node(&mut self, node: &Node<T>) {
        self.plain.extend_from_slice(&node.plain);
        for group in &node.queues {
            match self.queues.iter_mut().find(|g| g.name == group.name) {
                Some(existing) => existing.members.extend_from_slice(&group.members),
                None => self.queues.push(group.clone()),
            }
        }
    }
}

/// Removes one occurrence of `item` (order is irrelevant, so swap-remove).
fn remove_one<T: PartialEq>(items: &mut Vec<T>, item: &T) -> bool {
    match items.iter().position(|x| x == item) {
        Some(index) => {
            items.swap_remove(index);
            true
        }
        None => false,
    }
}

/// Counters for `/subsz`, with the field names of its JSON.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SublistStats {
    /// Subscriptions currently stored.
    pub num_subscriptions: u32,
    /// Published subjects currently in the match cache.
    pub num_cache: u32,
    /// Inserts since creation.
    pub num_inserts: u64,
    /// Successful removes since creation.
    pub num_removes: u64,
    /// Matches since creation.
    pub num_matches: u64,
    /// Share of matches answered from the cache (0 when there were none).
    pub cache_hit_rate: f64,
    /// Largest fanout among cached results.
    pub max_fanout: u32,
    /// Mean fanout over cached results.
    pub avg_fanout: f64,
}

/// Fx hashing with a per-process random seed: subjects are chosen by clients, so the seed
/// keeps a fixed set of colliding subjects from working against every server.
#[derive(Clone, Copy)]
struct SubjectHasher(usize);

impl SubjectHasher {
    fn new() -> Self {
        static SEED: OnceLock<usize> = OnceLock::new();
        Self(*SEED.get_or_init(|| fastrand::usize(..)))
    }
}

impl BuildHasher for SubjectHasher {
    type Hasher = FxHasher;

    fn build_hasher(&self) -> FxHasher {
        FxHasher::with_seed(self.0)
    }
}

type SubjectMap<V> = std::collections::HashMap<Box<[u8]>, V, SubjectHasher>;

fn subject_map<V>() -> SubjectMap<V> {
    SubjectMap::with_hasher(SubjectHasher::new())
}

/// One token position: where the next token of a subject can lead.
struct Level<T> {
    literal: SubjectMap<Node<T>>,
    single_wildcard: Option<Box<Node<T>>>,
    full_wildcard: Option<Box<Node<T>>>,
}

impl<T> Level<T> {
    fn new() -> Self {
        Self {
            literal: subject_map(),
            single_wildcard: None,
            full_wildcard: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.single_wildcard.is_none() && self.full_wildcard.is_none()
    }
}

/// The subscriptions whose subject ends at this token, and the level after it.
struct Node<T> {
    next: Option<Box<Level<T>>>,
    plain: Vec<T>,
    queues: Vec<QueueGroup<T>>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self {
            next: None,
            plain: Vec::new(),
            queues: Vec::new(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.next.is_none() && self.plain.is_empty() && self.queues.is_empty()
    }
}

/// What a level lookup descends into, for one subscription token.
enum Slot {
    Single,
    Full,
    Literal,
}

fn slot_of(token: &[u8]) -> Slot {
    if token == SINGLE_WILDCARD {
        Slot::Single
    } else if token == FULL_WILDCARD {
        Slot::Full
    } else {
        Slot::Literal
    }
}

struct Trie<T> {
    root: Level<T>,
}

impl<T: Clone + PartialEq> Trie<T> {
    fn insert(level: &mut Level<T>, tokens: &[&[u8]], queue: Option<&[u8]>, item: T) {
        let Some((&token, rest)) = tokens.split_first() else {
            return;
        };
        let node = match slot_of(token) {
            Slot::Single => level.single_wildcard.get_or_insert_with(Box::default),
            Slot::Full => level.full_wildcard.get_or_insert_with(Box::default),
            Slot::Literal => {
                // Look up first: allocating the owned key is only needed for a new token.
                if let Some(node) = level.literal.get_mut(token) {
                    return Self::insert_into_node(node, rest, queue, item);
                }
                level.literal.entry(token.into()).or_default()
            }
        };
        Self::insert_into_node(node, rest, queue, item);
    }

    fn insert_into_node(node: &mut Node<T>, rest: &[&[u8]], queue: Option<&[u8]>, item: T) {
        if rest.is_empty() {
            match queue {
                None => node.plain.push(item),
                Some(name) => match node.queues.iter_mut().find(|g| &*g.name == name) {
                    Some(group) => group.members.push(item),
                    None => node.queues.push(QueueGroup {
                        name: Bytes::copy_from_slice(name),
                        members: vec![item],
                    }),
                },
            }
        } else {
            let next = node.next.get_or_insert_with(|| Box::new(Level::new()));
            Self::insert(next, rest, queue, item);
        }
    }

    /// Removes one occurrence; prunes nodes left empty on the way back up.
    fn remove(level: &mut Level<T>, tokens: &[&[u8]], queue: Option<&[u8]>, item: &T) -> bool {
        let Some((&token, rest)) = tokens.split_first() else {
            return false;
        };
        match slot_of(token) {
            Slot::Single => Self::remove_in_slot(&mut level.single_wildcard, rest, queue, item),
            Slot::Full => Self::remove_in_slot(&mut level.full_wildcard, rest, queue, item),
            Slot::Literal => {
                let Some(node) = level.literal.get_mut(token) else {
                    return false;
                };
                let removed = Self::remove_from_node(node, rest, queue, item);
                if removed && node.is_empty() {
                    level.literal.remove(token);
                }
                removed
            }
        }
    }

    fn remove_in_slot(
        slot: &mut Option<Box<Node<T>>>,
        rest: &[&[u8]],
        queue: Option<&[u8]>,
        item: &T,
    ) -> bool {
        let Some(node) = slot else {
            return false;
        };
        let removed = Self::remove_from_node(node, rest, queue, item);
        if removed && node.is_empty() {
            *slot = None;
        }
        removed
    }

    fn remove_from_node(
        node: &mut Node<T>,
        rest: &[&[u8]],
        queue: Option<&[u8]>,
        item: &T,
    ) -> bool {
        if rest.is_empty() {
            return match queue {
                None => remove_one(&mut node.plain, item),
                Some(name) => {
                    let Some(index) = node.queues.iter().position(|g| &*g.name == name) else {
                        return false;
                    };
                    let removed = remove_one(&mut node.queues[index].members, item);
                    if node.queues[index].members.is_empty() {
                        node.queues.swap_remove(index);
                    }
                    removed
                }
            };
        }
        let Some(next) = node.next.as_mut() else {
            return false;
        };
        let removed = Self::remove(next, rest, queue, item);
        if removed && next.is_empty() {
            node.next = None;
        }
        removed
    }

    /// Adds to `out` every subscription matching the published `tokens` below `level`.
    fn collect_matches(level: &Level<T>, tokens: &[&[u8]], out: &mut SublistResult<T>) {
        let Some((&token, rest)) = tokens.split_first() else {
            return;
        };
        if let Some(full) = &level.full_wildcard {
            out.extend_from_node(full);
        }
        if let Some(single) = &level.single_wildcard {
            Self::collect_from_node(single, rest, out);
        }
        // A published `*` or `>` is literal, and the literal map never holds those tokens.
        if let Some(node) = level.literal.get(token) {
            Self::collect_from_node(node, rest, out);
        }
    }

    fn collect_from_node(node: &Node<T>, rest: &[&[u8]], out: &mut SublistResult<T>) {
        if rest.is_empty() {
            out.extend_from_node(node);
        } else if let Some(next) = &node.next {
            Self::collect_matches(next, rest, out);
        }
    }

    fn collect_all(level: &Level<T>, out: &mut Vec<T>) {
        let nodes = level
            .literal
            .values()
            .chain(level.single_wildcard.as_deref())
            .chain(level.full_wildcard.as_deref());
        for node in nodes {
            out.extend_from_slice(&node.plain);
            for group in &node.queues {
                out.extend_from_slice(&group.members);
            }
            if let Some(next) = &node.next {
                Self::collect_all(next, out);
            }
        }
    }
}

/// Published subject → its current result.
struct MatchCache<T> {
    entries: SubjectMap<Arc<SublistResult<T>>>,
}

impl<T: Clone + PartialEq> MatchCache<T> {
    fn store(&mut self, literal: &[u8], result: Arc<SublistResult<T>>) {
        if self.entries.len() >= CACHE_MAX {
            // The map's iteration order follows the hash, so this drops an arbitrary sample.
            let mut seen = 0;
            self.entries.retain(|_, _| {
                seen += 1;
                seen > CACHE_SWEEP
            });
        }
        self.entries.insert(literal.into(), result);
    }

    /// Applies `change` to every cached result whose subject `pattern` matches.
    fn patch(&mut self, pattern: &[u8], mut change: impl FnMut(&mut SublistResult<T>)) {
        if subject::is_literal(pattern) {
            // A literal subscription can only match the identical published subject.
            if let Some(result) = self.entries.get_mut(pattern) {
                change(Arc::make_mut(result));
            }
            return;
        }
        for (key, result) in self.entries.iter_mut() {
            if subject::matches(pattern, key) {
                change(Arc::make_mut(result));
            }
        }
    }
}

/// The subscription index of one account: a token trie plus a cache of match results.
pub struct Sublist<T> {
    trie: RwLock<Trie<T>>,
    cache: RwLock<MatchCache<T>>,
    genid: AtomicU64,
    count: AtomicUsize,
    inserts: AtomicU64,
    removes: AtomicU64,
    matches: AtomicU64,
    /// Misses rather than hits are counted so that a cache hit touches one shared counter.
    cache_misses: AtomicU64,
}

impl<T: Clone + PartialEq + Send + Sync> Default for Sublist<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + PartialEq + Send + Sync> Sublist<T> {
    /// An empty sublist.
    pub fn new() -> Self {
        Self {
            trie: RwLock::new(Trie { root: Level::new() }),
            cache: RwLock::new(MatchCache {
                entries: subject_map(),
            }),
            genid: AtomicU64::new(0),
            count: AtomicUsize::new(0),
            inserts: AtomicU64::new(0),
            removes: AtomicU64::new(0),
            matches: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
        }
    }

    /// Adds a subscription on `subject` (in queue group `queue` if given). The same item may
    /// be inserted more than once; each insert is one subscription.
    pub fn insert(
        &self,
        subject: &[u8],
        queue: Option<&[u8]>,
        item: T,
    ) -> Result<(), SublistError> {
        if !subject::is_valid_subject(subject) {
            return Err(SublistError::InvalidSubject);
        }
        let tokens: Tokens<'_> = subject::tokenize(subject);
        let mut trie = self.trie.write();
        Trie::insert(&mut trie.root, &tokens, queue, item.clone());
        self.cache
            .write()
            .patch(subject, |result| result.add(queue, item.clone()));
        self.count.fetch_add(1, Ordering::Relaxed);
        self.inserts.fetch_add(1, Ordering::Relaxed);
        self.genid.fetch_add(1, Ordering::Release);
        drop(trie);
        Ok(())
    }

    /// Removes one subscription equal to `item` on exactly `subject` and `queue`; returns
    /// whether one was found.
    pub fn remove(&self, subject: &[u8], queue: Option<&[u8]>, item: &T) -> bool {
        if !subject::is_valid_subject(subject) {
            return false;
        }
        let tokens: Tokens<'_> = subject::tokenize(subject);
        let mut trie = self.trie.write();
        if !Trie::remove(&mut trie.root, &tokens, queue, item) {
            return false;
        }
        self.cache.write().patch(subject, |result| {
            result.remove(queue, item);
        });
        self.count.fetch_sub(1, Ordering::Relaxed);
        self.removes.fetch_add(1, Ordering::Relaxed);
        self.genid.fetch_add(1, Ordering::Release);
        drop(trie);
        true
    }

    /// Every subscription matching the published subject `literal` (whose tokens are all
    /// taken literally). A subject with an empty token matches nothing.
    pub fn match_subject(&self, literal: &[u8]) -> Arc<SublistResult<T>> {
        self.matches.fetch_add(1, Ordering::Relaxed);
        if let Some(hit) = self.cache.read().entries.get(literal) {
            return Arc::clone(hit);
        }
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
        let tokens: Tokens<'_> = subject::tokenize(literal);
        if tokens.iter().any(|t| t.is_empty()) {
            // Not cached: junk subjects must not evict useful entries.
            return Arc::new(SublistResult::default());
        }
        let mut result = SublistResult::default();
        let trie = self.trie.read();
        Trie::collect_matches(&trie.root, &tokens, &mut result);
        let result = Arc::new(result);
        self.cache.write().store(literal, Arc::clone(&result));
        drop(trie);
        result
    }

    /// The generation: changes after every insert and successful remove. Read it *before*
    /// calling [`Sublist::match_subject`] when tagging a result cached elsewhere.
    pub fn genid(&self) -> u64 {
        self.genid.load(Ordering::Acquire)
    }

    /// Number of subscriptions stored.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Every stored subscription (queue members included), in no particular order.
    pub fn collect_all(&self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.count());
        Trie::collect_all(&self.trie.read().root, &mut out);
        out
    }

    /// Counters and cache figures for `/subsz`.
    pub fn stats(&self) -> SublistStats {
        let (num_cache, max_fanout, total_fanout) = {
            let cache = self.cache.read();
            let mut max = 0usize;
            let mut total = 0usize;
            for result in cache.entries.values() {
                let fanout = result.fanout();
                max = max.max(fanout);
                total += fanout;
            }
            (cache.entries.len(), max, total)
        };
        let num_matches = self.matches.load(Ordering::Relaxed);
        let hits = num_matches.saturating_sub(self.cache_misses.load(Ordering::Relaxed));
        SublistStats {
            num_subscriptions: u32::try_from(self.count()).unwrap_or(u32::MAX),
            num_cache: u32::try_from(num_cache).unwrap_or(u32::MAX),
            num_inserts: self.inserts.load(Ordering::Relaxed),
            num_removes: self.removes.load(Ordering::Relaxed),
            num_matches,
            cache_hit_rate: if num_matches == 0 {
                0.0
            } else {
                hits as f64 / num_matches as f64
            },
            max_fanout: u32::try_from(max_fanout).unwrap_or(u32::MAX),
            avg_fanout: if num_cache == 0 {
                0.0
            } else {
                total_fanout as f64 / num_cache as f64
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sorted<T: Ord + Clone>(items: &[T]) -> Vec<T> {
        let mut v = items.to_vec();
        v.sort();
        v
    }

    /// A result as comparable sorted data: (plain, [(queue, members)]).
    type Normalized = (Vec<u32>, Vec<(Vec<u8>, Vec<u32>)>);

    fn normalize(r: &SublistResult<u32>) -> Normalized {
        let mut queues: Vec<(Vec<u8>, Vec<u32>)> = r
            .queues
            .iter()
            .map(|g| (g.name.to_vec(), sorted(&g.members)))
            .collect();
        queues.sort();
        (sorted(&r.plain), queues)
    }

    #[test]
    fn wildcard_matrix_from_protocol_reference() {
        let list = Sublist::new();
        for (subject, sid) in [
            (&b"foo.>"[..], 1u32),
            (b"foo.*", 2),
            (b"*", 3),
            (b">", 4),
            (b"*.bar", 5),
            (b"foo.*.baz", 6),
        ] {
            list.insert(subject, None, sid).unwrap();
        }
        let cases: [(&[u8], &[u32]); 8] = [
            (b"foo", &[3, 4]),
            (b"foo.bar", &[1, 2, 4, 5]),
            (b"foo.bar.baz", &[1, 4, 6]),
            (b"x.bar", &[4, 5]),
            (b"foo.*", &[1, 2, 4]),
            (b"foo..bar", &[]),
            (b".foo", &[]),
            (b"", &[]),
        ];
        // Twice: the second round is answered from the cache.
        for _ in 0..2 {
            for (published, expected) in cases {
                assert_eq!(
                    sorted(&list.match_subject(published).plain),
                    expected,
                    "{published:?}"
                );
            }
        }
        assert_eq!(list.count(), 6);
        let stats = list.stats();
        assert_eq!(stats.num_matches, 16);
        assert_eq!(stats.num_cache, 5, "empty-token subjects are not cached");
        assert!((stats.cache_hit_rate - 5.0 / 16.0).abs() < 1e-9);
    }

    #[test]
    fn invalid_subjects_are_refused() {
        let list = Sublist::new();
        for bad in [
            &b"foo..bar"[..],
            b".foo",
            b"foo.",
            b"foo.>.bar",
            b"",
            b"foo bar",
        ] {
            assert_eq!(
                list.insert(bad, None, 1u32),
                Err(SublistError::InvalidSubject)
            );
        }
        assert_eq!(list.count(), 0);
        assert_eq!(list.genid(), 0);
        list.insert(b"foo*", None, 1).unwrap();
        assert_eq!(list.match_subject(b"foo*").plain, vec![1]);
        assert!(list.match_subject(b"foobar").is_empty());
    }

    #[test]
    fn queue_groups_are_grouped_by_name_across_nodes() {
        let list = Sublist::new();
        list.insert(b"foo", Some(b"q"), 1u32).unwrap();
        list.insert(b"foo", Some(b"q"), 2).unwrap();
        list.insert(b"foo", None, 3).unwrap();
        list.insert(b"*", Some(b"q"), 4).unwrap();
        list.insert(b">", Some(b"other"), 5).unwrap();
        let r = list.match_subject(b"foo");
        assert_eq!(
            normalize(&r),
            (
                vec![3],
                vec![(b"other".to_vec(), vec![5]), (b"q".to_vec(), vec![1, 2, 4])]
            )
        );
        assert_eq!(r.fanout(), 3);
        assert!(list.remove(b"foo", Some(b"q"), &1));
        assert!(
            !list.remove(b"foo", None, &1),
            "queue and plain subscriptions are distinct"
        );
        assert!(!list.remove(b"foo", Some(b"other"), &2));
        assert_eq!(
            normalize(&list.match_subject(b"foo")),
            (
                vec![3],
                vec![(b"other".to_vec(), vec![5]), (b"q".to_vec(), vec![2, 4])]
            )
        );
        assert!(list.remove(b">", Some(b"other"), &5));
        assert_eq!(
            normalize(&list.match_subject(b"foo")),
            (vec![3], vec![(b"q".to_vec(), vec![2, 4])])
        );
    }

    #[test]
    fn duplicates_are_delivered_per_subscription() {
        let list = Sublist::new();
        list.insert(b"foo.>", None, 7u32).unwrap();
        list.insert(b">", None, 7).unwrap();
        list.insert(b">", None, 7).unwrap();
        assert_eq!(list.match_subject(b"foo.bar").plain, vec![7, 7, 7]);
        assert!(list.remove(b">", None, &7));
        assert_eq!(list.match_subject(b"foo.bar").plain, vec![7, 7]);
        assert_eq!(list.count(), 2);
        assert_eq!(sorted(&list.collect_all()), vec![7, 7]);
    }

    #[test]
    fn removal_prunes_and_bumps_genid() {
        let list = Sublist::new();
        list.insert(b"a.b.c", None, 1u32).unwrap();
        list.insert(b"a.*.c", Some(b"q"), 2).unwrap();
        let g = list.genid();
        assert!(
            !list.remove(b"a.b", None, &1),
            "no subscription on a prefix"
        );
        assert!(!list.remove(b"a.b.c", None, &9));
        assert!(!list.remove(b"a..c", None, &1));
        assert_eq!(
            list.genid(),
            g,
            "failed removes do not change the generation"
        );
        assert!(list.remove(b"a.b.c", None, &1));
        assert!(list.remove(b"a.*.c", Some(b"q"), &2));
        assert!(list.genid() > g);
        assert_eq!(list.count(), 0);
        assert!(list.trie.read().root.is_empty(), "empty nodes are pruned");
        assert!(list.match_subject(b"a.b.c").is_empty());
        let stats = list.stats();
        assert_eq!((stats.num_inserts, stats.num_removes), (2, 2));
    }

    #[test]
    fn cache_is_patched_not_flushed() {
        let list = Sublist::new();
        list.insert(b"orders.>", None, 1u32).unwrap();
        let orders = list.match_subject(b"orders.new");
        let _ = list.match_subject(b"payments.new");
        // A request/reply inbox coming and going touches only its own subject.
        list.insert(b"_INBOX.abc", None, 2).unwrap();
        assert!(list.remove(b"_INBOX.abc", None, &2));
        assert_eq!(list.stats().num_cache, 2);
        let misses_before = list.cache_misses.load(Ordering::Relaxed);
        assert!(
            Arc::ptr_eq(&orders, &list.match_subject(b"orders.new")),
            "entry kept as is"
        );
        // A wildcard insert patches the matching entry in place of dropping it.
        list.insert(b"*.new", None, 3).unwrap();
        assert_eq!(sorted(&list.match_subject(b"orders.new").plain), vec![1, 3]);
        assert_eq!(list.match_subject(b"payments.new").plain, vec![3]);
        assert_eq!(
            list.cache_misses.load(Ordering::Relaxed),
            misses_before,
            "all hits"
        );
        assert_eq!(
            orders.plain,
            vec![1],
            "results already handed out are snapshots"
        );
    }

    #[test]
    fn cache_is_bounded() {
        let list = Sublist::new();
        list.insert(b">", None, 1u32).unwrap();
        for i in 0..(CACHE_MAX * 3) {
            assert_eq!(
                list.match_subject(format!("s.{i}").as_bytes()).plain,
                vec![1]
            );
        }
        let stats = list.stats();
        assert!(stats.num_cache as usize <= CACHE_MAX);
        assert!(stats.num_cache as usize > CACHE_MAX - CACHE_SWEEP);
        assert_eq!((stats.max_fanout, stats.avg_fanout), (1, 1.0));
    }

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<S: Send + Sync>() {}
        assert_send_sync::<Sublist<Arc<String>>>();
    }

    #[test]
    fn concurrent_churn_and_matching() {
        const THREADS: u32 = 4;
        const ROUNDS: u32 = 300;
        let list = Arc::new(Sublist::new());
        list.insert(b"svc.>", None, u32::MAX).unwrap();
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let list = Arc::clone(&list);
                std::thread::spawn(move || {
                    for i in 0..ROUNDS {
                        let id = t * ROUNDS + i;
                        let inbox = format!("svc.inbox.{t}.{i}");
                        list.insert(inbox.as_bytes(), None, id).unwrap();
                        list.insert(b"svc.*.*.*", Some(b"workers"), id).unwrap();
                        let r = list.match_subject(inbox.as_bytes());
                        assert!(r.plain.contains(&id) && r.plain.contains(&u32::MAX));
                        assert!(r.queues[0].members.contains(&id));
                        assert!(list.remove(inbox.as_bytes(), None, &id));
                        assert!(list.remove(b"svc.*.*.*", Some(b"workers"), &id));
                        let r = list.match_subject(inbox.as_bytes());
                        assert!(!r.plain.contains(&id));
                        assert!(r.queues.iter().all(|g| !g.members.contains(&id)));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(list.count(), 1);
        assert_eq!(list.collect_all(), vec![u32::MAX]);
        assert_eq!(list.match_subject(b"svc.inbox.0.0").plain, vec![u32::MAX]);
        assert!(list.match_subject(b"svc.inbox.0.0").queues.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String, Option<&'static str>, u32),
        Remove(usize),
        Match(String),
    }

    fn pattern() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(prop::sample::select(vec!["a", "b", "*"]), 1..4),
            any::<bool>(),
        )
            .prop_map(|(mut toks, full)| {
                if full {
                    toks.push(">");
                }
                toks.join(".")
            })
    }

    fn published() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "*", ""]), 1..5)
            .prop_map(|toks| toks.join("."))
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (pattern(), prop::option::of(prop::sample::select(vec!["q1", "q2"])), 0u32..6)
                .prop_map(|(s, q, id)| Op::Insert(s, q, id)),
            2 => any::<usize>().prop_map(Op::Remove),
            4 => published().prop_map(Op::Match),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn agrees_with_naive_matcher_under_churn(ops in prop::collection::vec(op(), 1..120)) {
            let list = Sublist::new();
            let mut naive: Vec<(String, Option<&'static str>, u32)> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(s, q, id) => {
                        list.insert(s.as_bytes(), q.map(str::as_bytes), id).unwrap();
                        naive.push((s, q, id));
                    }
                    Op::Remove(i) if !naive.is_empty() => {
                        let (s, q, id) = naive.swap_remove(i % naive.len());
                        prop_assert!(list.remove(s.as_bytes(), q.map(str::as_bytes), &id));
                    }
                    Op::Remove(_) => prop_assert!(!list.remove(b"a", None, &0)),
                    Op::Match(p) => {
                        let mut expected = SublistResult::default();
                        for (s, q, id) in &naive {
                            if subject::matches(s.as_bytes(), p.as_bytes()) {
                                expected.add(q.map(str::as_bytes), *id);
                            }
                        }
                        let got = list.match_subject(p.as_bytes());
                        prop_assert_eq!(normalize(&got), normalize(&expected), "published {:?}", p);
                    }
                }
                prop_assert_eq!(list.count(), naive.len());
            }
            let mut all: Vec<u32> = naive.iter().map(|(_, _, id)| *id).collect();
            all.sort();
            prop_assert_eq!(sorted(&list.collect_all()), all);
        }
    }
}
