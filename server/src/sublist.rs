//! The subscription trie (one per account) with a bounded match cache.
//!
//! CONTRACT (implemented by the subject/sublist work):
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
