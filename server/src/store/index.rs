//! The in-memory index both stores share: sequence → entry (dense, by offset from the
//! first live sequence), subject → sorted live sequences, byte/message accounting and
//! the limit rules. The entry's `data` is the message itself (memory store) or its
//! location on disk (file store).

use std::collections::VecDeque;

use bytes::Bytes;
use rustc_hash::FxHashMap;

use super::{filter_matches, is_literal, Discard, StoreError, StoreLimits, SubjectState};

/// One live message.
#[derive(Debug, Clone)]
pub(crate) struct Entry<T> {
    pub(crate) ts: u64,
    pub(crate) subj: u32,
    pub(crate) size: u32,
    pub(crate) data: T,
}

#[derive(Debug)]
struct SubjectSlot {
    name: Bytes,
    seqs: VecDeque<u64>,
}

/// A message removed from the index, with whether it was the stream's first message
/// at the time (head removals are persisted as a floor, not as tombstones).
#[derive(Debug)]
pub(crate) struct Removed<T> {
    pub(crate) seq: u64,
    pub(crate) entry: Entry<T>,
    pub(crate) head: bool,
}

#[derive(Debug)]
pub(crate) struct Index<T> {
    base: u64,
    entries: VecDeque<Option<Entry<T>>>,
    last_seq: u64,
    last_ts: u64,
    msgs: u64,
    bytes: u64,
    subj_ids: FxHashMap<Bytes, u32>,
    subjects: Vec<Option<SubjectSlot>>,
    free_ids: Vec<u32>,
    /// Messages `max_age` never removes (`Nats-TTL: never`).
    pinned: rustc_hash::FxHashSet<u64>,
}

impl<T> Index<T> {
    pub(crate) fn new() -> Self {
        Index {
            base: 1,
            entries: VecDeque::new(),
            last_seq: 0,
            last_ts: 0,
            msgs: 0,
            bytes: 0,
            subj_ids: FxHashMap::default(),
            subjects: Vec::new(),
            free_ids: Vec::new(),
            pinned: rustc_hash::FxHashSet::default(),
        }
    }

    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }
    pub(crate) fn msgs(&self) -> u64 {
        self.msgs
    }
    pub(crate) fn first_seq(&self) -> u64 {
        if self.msgs == 0 {
            self.last_seq + 1
        } else {
            self.base
        }
    }

    pub(crate) fn state(&self) -> super::StoreState {
        let first_seq = self.first_seq();
        let first_ts = self
            .entries
            .front()
            .and_then(|e| e.as_ref())
            .map_or(0, |e| e.ts);
        let num_deleted = if self.msgs == 0 {
            0
        } else {
            self.last_seq - first_seq + 1 - self.msgs
        };
        super::StoreState {
            msgs: self.msgs,
            bytes: self.bytes,
            first_seq,
            first_ts,
            last_seq: self.last_seq,
            last_ts: self.last_ts,
            num_deleted,
            num_subjects: self.subj_ids.len() as u64,
            consumer_count: 0,
        }
    }

    /// Raises `last_seq` without a live message (a floor, block header or deleted record
    /// said so); `ts` is that sequence's timestamp when known.
    pub(crate) fn bump_last_seq(&mut self, seq: u64, ts: Option<u64>) {
        if seq >= self.last_seq {
            if let Some(ts) = ts {
                self.last_ts = ts;
            }
        }
        if seq > self.last_seq {
            self.last_seq = seq;
            if self.msgs == 0 {
                self.base = seq + 1;
            }
        }
    }

    pub(crate) fn subject_name(&self, id: u32) -> Bytes {
        self.subjects
            .get(id as usize)
            .and_then(|s| s.as_ref())
            .map_or_else(Bytes::new, |s| s.name.clone())
    }

    pub(crate) fn subject_count(&self, subject: &[u8]) -> u64 {
        self.subj_ids
            .get(subject)
            .and_then(|&id| self.subjects[id as usize].as_ref())
            .map_or(0, |s| s.seqs.len() as u64)
    }

    /// Inserts a message; `seq` must be above `last_seq` (callers guarantee it).
    pub(crate) fn insert(&mut self, seq: u64, ts: u64, subject: &[u8], size: u32, data: T) {
        debug_assert!(seq > self.last_seq);
        if self.entries.is_empty() {
            self.base = seq;
        } else {
            let gap = seq - (self.base + self.entries.len() as u64);
            for _ in 0..gap {
                self.entries.push_back(None);
            }
        }
        let subj = match self.subj_ids.get(subject) {
            Some(&id) => id,
            None => {
                let name = Bytes::copy_from_slice(subject);
                let slot = SubjectSlot {
                    name: name.clone(),
                    seqs: VecDeque::new(),
                };
                let id = match self.free_ids.pop() {
                    Some(id) => {
                        self.subjects[id as usize] = Some(slot);
                        id
                    }
                    None => {
                        self.subjects.push(Some(slot));
                        (self.subjects.len() - 1) as u32
                    }
                };
                self.subj_ids.insert(name, id);
                id
            }
        };
        if let Some(slot) = self.subjects[subj as usize].as_mut() {
            slot.seqs.push_back(seq);
        }
        self.entries.push_back(Some(Entry {
            ts,
            subj,
            size,
            data,
        }));
        self.msgs += 1;
        self.bytes += u64::from(size);
        self.last_seq = seq;
        self.last_ts = ts;
    }

    /// Exempts live message `seq` from `max_age` (its headers say `Nats-TTL: never`).
    pub(crate) fn pin(&mut self, seq: u64) {
        if self.get(seq).is_some() {
            self.pinned.insert(seq);
        }
    }

    pub(crate) fn get(&self, seq: u64) -> Option<&Entry<T>> {
        if seq < self.base {
            return None;
        }
        self.entries
            .get((seq - self.base) as usize)
            .and_then(|e| e.as_ref())
    }

    pub(crate) fn get_mut(&mut self, seq: u64) -> Option<&mut Entry<T>> {
        if seq < self.base {
            return None;
        }
        self.entries
            .get_mut((seq - self.base) as usize)
            .and_then(|e| e.as_mut())
    }

    pub(crate) fn remove(&mut self, seq: u64) -> Option<Removed<T>> {
        if seq < self.base {
            return None;
        }
        let head = seq == self.base;
        let entry = self.entries.get_mut((seq - self.base) as usize)?.take()?;
        if !self.pinned.is_empty() {
            self.pinned.remove(&seq);
        }
        self.msgs -= 1;
        self.bytes -= u64::from(entry.size);
        let id = entry.subj as usize;
        let now_empty = match self.subjects.get_mut(id).and_then(|s| s.as_mut()) {
            Some(slot) => {
                if slot.seqs.front() == Some(&seq) {
                    slot.seqs.pop_front();
                } else if let Ok(i) = slot.seqs.binary_search(&seq) {
                    slot.seqs.remove(i);
                }
                slot.seqs.is_empty()
            }
            None => false,
        };
        if now_empty {
            if let Some(slot) = self.subjects[id].take() {
                self.subj_ids.remove(&slot.name);
                self.free_ids.push(entry.subj);
            }
        }
        while matches!(self.entries.front(), Some(None)) {
            self.entries.pop_front();
            self.base += 1;
        }
        if self.entries.is_empty() {
            self.base = self.last_seq + 1;
        }
        Some(Removed { seq, entry, head })
    }

    /// Removes everything below `seq`; afterwards `first_seq >= seq`.
    pub(crate) fn remove_below(&mut self, seq: u64, out: &mut Vec<Removed<T>>) {
        while self.msgs > 0 && self.base < seq {
            let s = self.base;
            if let Some(r) = self.remove(s) {
                out.push(r);
            }
        }
        if seq > self.last_seq + 1 {
            self.last_seq = seq - 1;
            self.base = seq;
        }
    }

    /// Live sequences matching `filter` in ascending order.
    pub(crate) fn matching_seqs(&self, filter: &[u8]) -> Vec<u64> {
        if filter.is_empty() || filter == b">" {
            return self.live_seqs();
        }
        let mut seqs: Vec<u64> = Vec::new();
        for slot in self.subjects.iter().flatten() {
            if filter_matches(filter, &slot.name) {
                seqs.extend(slot.seqs.iter());
            }
        }
        seqs.sort_unstable();
        seqs
    }

    fn live_seqs(&self) -> Vec<u64> {
        (0..self.entries.len())
            .filter(|&i| self.entries[i].is_some())
            .map(|i| self.base + i as u64)
            .collect()
    }

    /// Interior deleted sequences.
    pub(crate) fn deleted_seqs(&self) -> Vec<u64> {
        let mut out = Vec::new();
        if self.msgs == 0 {
            return out;
        }
        for (i, e) in self.entries.iter().enumerate() {
            if e.is_none() {
                out.push(self.base + i as u64);
            }
        }
        // Trailing deletions after the last live message still count (last_seq is fixed).
        out
    }

    /// First live sequence `>= start` whose subject matches `filter`.
    pub(crate) fn next_match(&self, filter: &[u8], start: u64) -> Option<u64> {
        let start = start.max(self.base);
        if filter.is_empty() || filter == b">" {
            let from = (start - self.base) as usize;
            return (from..self.entries.len())
                .find(|&i| self.entries[i].is_some())
                .map(|i| self.base + i as u64);
        }
        if is_literal(filter) {
            let slot = self.slot_for(filter)?;
            let i = slot.seqs.partition_point(|&s| s < start);
            return slot.seqs.get(i).copied();
        }
        // Few subjects: binary-search each matching one; many: scan entries once.
        if self.subj_ids.len() <= 1024 {
            return self
                .subjects
                .iter()
                .flatten()
                .filter(|slot| filter_matches(filter, &slot.name))
                .filter_map(|slot| {
                    let i = slot.seqs.partition_point(|&s| s < start);
                    slot.seqs.get(i).copied()
                })
                .min();
        }
        let mut verdicts: FxHashMap<u32, bool> = FxHashMap::default();
        let from = (start - self.base) as usize;
        for i in from..self.entries.len() {
            if let Some(e) = &self.entries[i] {
                let ok = *verdicts.entry(e.subj).or_insert_with(|| {
                    self.subjects[e.subj as usize]
                        .as_ref()
                        .is_some_and(|s| filter_matches(filter, &s.name))
                });
                if ok {
                    return Some(self.base + i as u64);
                }
            }
        }
        None
    }

    /// Newest live sequence whose subject matches `filter`.
    pub(crate) fn last_match(&self, filter: &[u8]) -> Option<u64> {
        if self.msgs == 0 {
            return None;
        }
        if filter.is_empty() || filter == b">" {
            return (0..self.entries.len())
                .rev()
                .find(|&i| self.entries[i].is_some())
                .map(|i| self.base + i as u64);
        }
        if is_literal(filter) {
            return self.slot_for(filter)?.seqs.back().copied();
        }
        self.subjects
            .iter()
            .flatten()
            .filter(|slot| filter_matches(filter, &slot.name))
            .filter_map(|slot| slot.seqs.back().copied())
            .max()
    }

    pub(crate) fn num_pending(&self, filter: &[u8], start: u64) -> u64 {
        if filter.is_empty() || filter == b">" {
            if start <= self.base {
                return self.msgs;
            }
            let from = (start - self.base) as usize;
            return (from..self.entries.len())
                .filter(|&i| self.entries[i].is_some())
                .count() as u64;
        }
        self.subjects
            .iter()
            .flatten()
            .filter(|slot| filter_matches(filter, &slot.name))
            .map(|slot| (slot.seqs.len() - slot.seqs.partition_point(|&s| s < start)) as u64)
            .sum()
    }

    fn slot_for(&self, subject: &[u8]) -> Option<&SubjectSlot> {
        let id = *self.subj_ids.get(subject)?;
        self.subjects[id as usize].as_ref()
    }

    pub(crate) fn subjects_state(&self, filter: &[u8]) -> Vec<SubjectState> {
        let mut out: Vec<SubjectState> = self
            .subjects
            .iter()
            .flatten()
            .filter(|slot| filter_matches(filter, &slot.name))
            .map(|slot| SubjectState {
                subject: slot.name.clone(),
                msgs: slot.seqs.len() as u64,
                first_seq: slot.seqs.front().copied().unwrap_or(0),
                last_seq: slot.seqs.back().copied().unwrap_or(0),
            })
            .collect();
        out.sort_by(|a, b| a.subject.cmp(&b.subject));
        out
    }

    /// Checks a new message against limits that refuse rather than evict.
    pub(crate) fn admit(
        &self,
        limits: &StoreLimits,
        subject: &[u8],
        content_len: u64,
        size: u64,
    ) -> Result<(), StoreError> {
        if limits.max_msg_size.is_some_and(|max| content_len > max) {
            return Err(StoreError::MsgTooLarge);
        }
        if limits.discard != Discard::New {
            return Ok(());
        }
        if limits.max_msgs.is_some_and(|max| self.msgs >= max) {
            return Err(StoreError::MaxMsgs);
        }
        if limits.max_bytes.is_some_and(|max| self.bytes + size > max) {
            return Err(StoreError::MaxBytes);
        }
        if limits.discard_new_per_subject
            && limits
                .max_msgs_per_subject
                .is_some_and(|max| self.subject_count(subject) >= max)
        {
            return Err(StoreError::MaxMsgsPerSubject);
        }
        Ok(())
    }

    /// Evicts what the limits exclude. `subject`: only check that subject's per-subject
    /// limit (after a store); `None` checks them all (after a config change or at open).
    /// `now_ns`: also expire by `max_age`.
    pub(crate) fn enforce(
        &mut self,
        limits: &StoreLimits,
        subject: Option<&[u8]>,
        now_ns: Option<u64>,
        out: &mut Vec<Removed<T>>,
    ) {
        if let Some(max) = limits
            .max_msgs_per_subject
            .filter(|_| !(limits.discard == Discard::New && limits.discard_new_per_subject))
        {
            let mut victims = Vec::new();
            let mut collect = |slot: &SubjectSlot| {
                let excess = (slot.seqs.len() as u64).saturating_sub(max);
                victims.extend(slot.seqs.iter().take(excess as usize).copied());
            };
            match subject {
                Some(s) => {
                    if let Some(slot) = self.slot_for(s) {
                        collect(slot);
                    }
                }
                None => self.subjects.iter().flatten().for_each(collect),
            }
            for seq in victims {
                if let Some(r) = self.remove(seq) {
                    out.push(r);
                }
            }
        }
        // With Discard::New admission keeps the stream under the limits; eviction here
        // only happens after a config change lowered them (nats-server does the same).
        if let Some(max) = limits.max_msgs {
            while self.msgs > max {
                self.pop_first(out);
            }
        }
        if let Some(max) = limits.max_bytes {
            while self.bytes > max && self.msgs > 0 {
                self.pop_first(out);
            }
        }
        if let (Some(age), Some(now)) = (limits.max_age, now_ns) {
            let cutoff = now.saturating_sub(age.as_nanos() as u64);
            if self.pinned.is_empty() {
                while let Some(Some(e)) = self.entries.front() {
                    if e.ts > cutoff {
                        break;
                    }
                    self.pop_first(out);
                }
            } else {
                // Pinned messages stay; the aged ones around them go (as nats-server, up to
                // the first message younger than the cutoff).
                let mut seq = self.base;
                while seq <= self.last_seq {
                    match self.get(seq) {
                        Some(e) if e.ts > cutoff => break,
                        Some(_) if self.pinned.contains(&seq) => {}
                        Some(_) => {
                            if let Some(r) = self.remove(seq) {
                                out.push(r);
                            }
                        }
                        None => {}
                    }
                    seq = seq.max(self.base - 1) + 1;
                }
            }
        }
    }

    fn pop_first(&mut self, out: &mut Vec<Removed<T>>) {
        let first = self.base;
        if let Some(r) = self.remove(first) {
            out.push(r);
        }
    }
}
