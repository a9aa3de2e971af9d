//! The in-memory index both stores share: sequence → entry (dense runs of sequences with
//! short gaps, see `MAX_GAP`), subject → sorted live sequences, byte/message accounting and
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

/// Longest run of deleted sequences kept inside a segment. A longer gap (a purge, a key
/// that outlives millions of updates to others, a damaged record's sequence) separates two
/// segments, so the index's memory follows the live messages, not the span of sequences.
const MAX_GAP: u64 = 64;

/// A run of sequences `base..base + slots.len()`: its first and last slots are live and no
/// run of more than `MAX_GAP` empty slots lies inside it.
#[derive(Debug)]
struct Segment<T> {
    base: u64,
    slots: VecDeque<Option<Entry<T>>>,
    live: usize,
}

impl<T> Segment<T> {
    fn end(&self) -> u64 {
        self.base + self.slots.len() as u64
    }

    fn slot(&self, seq: u64) -> Option<&Entry<T>> {
        let at = seq.checked_sub(self.base)?;
        self.slots.get(usize::try_from(at).ok()?)?.as_ref()
    }

    /// Live messages at offsets `range` within the segment, in order.
    fn live_in(
        &self,
        range: std::ops::Range<usize>,
    ) -> impl DoubleEndedIterator<Item = (u64, &Entry<T>)> + '_ {
        let first = range.start;
        self.slots
            .range(range)
            .enumerate()
            .filter_map(move |(i, e)| e.as_ref().map(|e| (self.base + (first + i) as u64, e)))
    }

    /// The slot offset of `seq` clamped to the segment.
    fn offset(&self, seq: u64) -> usize {
        usize::try_from(seq.saturating_sub(self.base))
            .unwrap_or(usize::MAX)
            .min(self.slots.len())
    }
}

#[derive(Debug)]
pub(crate) struct Index<T> {
    /// Ordered, disjoint, each holding at least one live message.
    segments: VecDeque<Segment<T>>,
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
            segments: VecDeque::new(),
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
        self.segments
            .front()
            .map_or(self.last_seq + 1, |seg| seg.base)
    }

    pub(crate) fn state(&self) -> super::StoreState {
        let first_seq = self.first_seq();
        let first_ts = self.first_live().map_or(0, |(_, e)| e.ts);
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
        let subj = self.subject_id(subject);
        if let Some(slot) = self.subjects[subj as usize].as_mut() {
            slot.seqs.push_back(seq);
        }
        let entry = Some(Entry {
            ts,
            subj,
            size,
            data,
        });
        match self.segments.back_mut() {
            Some(seg) if seq >= seg.end() && seq - seg.end() <= MAX_GAP => {
                for _ in seg.end()..seq {
                    seg.slots.push_back(None);
                }
                seg.slots.push_back(entry);
                seg.live += 1;
            }
            _ => self.segments.push_back(Segment {
                base: seq,
                slots: VecDeque::from([entry]),
                live: 1,
            }),
        }
        self.msgs += 1;
        self.bytes += u64::from(size);
        self.last_seq = seq;
        self.last_ts = ts;
    }

    fn subject_id(&mut self, subject: &[u8]) -> u32 {
        if let Some(&id) = self.subj_ids.get(subject) {
            return id;
        }
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

    /// Exempts live message `seq` from `max_age` (its headers say `Nats-TTL: never`).
    pub(crate) fn pin(&mut self, seq: u64) {
        if self.get(seq).is_some() {
            self.pinned.insert(seq);
        }
    }

    /// The segment that covers `seq`, if any. Streams without large gaps have one
    /// segment, and most lookups are for recent messages, so the last is tried first.
    fn segment_of(&self, seq: u64) -> Option<usize> {
        let last = self.segments.len().checked_sub(1)?;
        if seq >= self.segments[last].base {
            return (seq < self.segments[last].end()).then_some(last);
        }
        let at = self.segments.partition_point(|seg| seg.base <= seq);
        let i = at.checked_sub(1)?;
        (seq < self.segments[i].end()).then_some(i)
    }

    pub(crate) fn get(&self, seq: u64) -> Option<&Entry<T>> {
        self.segments[self.segment_of(seq)?].slot(seq)
    }

    pub(crate) fn get_mut(&mut self, seq: u64) -> Option<&mut Entry<T>> {
        let i = self.segment_of(seq)?;
        let seg = &mut self.segments[i];
        let at = usize::try_from(seq - seg.base).ok()?;
        seg.slots.get_mut(at)?.as_mut()
    }

    fn first_live(&self) -> Option<(u64, &Entry<T>)> {
        let seg = self.segments.front()?;
        Some((seg.base, seg.slots.front()?.as_ref()?))
    }

    /// Live messages from `start` on, in order.
    fn live_from(&self, start: u64) -> impl Iterator<Item = (u64, &Entry<T>)> + '_ {
        let first = self.segments.partition_point(|seg| seg.end() <= start);
        self.segments
            .range(first..)
            .flat_map(move |seg| seg.live_in(seg.offset(start)..seg.slots.len()))
    }

    /// Live messages below `before`, newest first.
    fn live_before(&self, before: u64) -> impl Iterator<Item = (u64, &Entry<T>)> + '_ {
        let end = self.segments.partition_point(|seg| seg.base < before);
        self.segments
            .range(..end)
            .rev()
            .flat_map(move |seg| seg.live_in(0..seg.offset(before)).rev())
    }

    /// The oldest message of the newest run whose timestamps are all at least `min_ts`.
    pub(crate) fn oldest_of_newest(&self, min_ts: u64) -> Option<(u64, &Entry<T>)> {
        self.live_before(u64::MAX)
            .take_while(|(_, e)| e.ts >= min_ts)
            .last()
    }

    pub(crate) fn remove(&mut self, seq: u64) -> Option<Removed<T>> {
        let i = self.segment_of(seq)?;
        let head = i == 0 && seq == self.segments[0].base;
        let seg = &mut self.segments[i];
        let at = usize::try_from(seq - seg.base).ok()?;
        let entry = seg.slots.get_mut(at)?.take()?;
        seg.live -= 1;
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
        self.close_gap(i, at);
        Some(Removed { seq, entry, head })
    }

    /// Restores segment `i`'s shape after slot `at` was emptied: trims its ends, drops it
    /// when empty, splits it where the emptied slot made a gap longer than `MAX_GAP`.
    fn close_gap(&mut self, i: usize, at: usize) {
        let seg = &mut self.segments[i];
        if seg.live == 0 {
            self.segments.remove(i);
            return;
        }
        if at == 0 {
            while matches!(seg.slots.front(), Some(None)) {
                seg.slots.pop_front();
                seg.base += 1;
            }
            return;
        }
        if at + 1 == seg.slots.len() {
            while matches!(seg.slots.back(), Some(None)) {
                seg.slots.pop_back();
            }
            return;
        }
        let limit = MAX_GAP as usize;
        let mut from = at;
        while from > 0 && seg.slots[from - 1].is_none() && at - from <= limit {
            from -= 1;
        }
        let mut to = at + 1;
        while seg.slots[to].is_none() && to - from <= limit {
            to += 1;
        }
        if to - from <= limit {
            return;
        }
        // Finish measuring the gap (it ends at a live slot on both sides), then move the
        // smaller side out, so a slot is moved O(log n) times over its life.
        while seg.slots[from - 1].is_none() {
            from -= 1;
        }
        while seg.slots[to].is_none() {
            to += 1;
        }
        let right_base = seg.base + to as u64;
        if from < seg.slots.len() - to {
            let left: VecDeque<_> = seg.slots.drain(..from).collect();
            seg.slots.drain(..to - from);
            let left_live = left.iter().filter(|e| e.is_some()).count();
            seg.live -= left_live;
            let left_base = seg.base;
            seg.base = right_base;
            self.segments.insert(
                i,
                Segment {
                    base: left_base,
                    slots: left,
                    live: left_live,
                },
            );
        } else {
            let right = seg.slots.split_off(to);
            seg.slots.truncate(from);
            let right_live = right.iter().filter(|e| e.is_some()).count();
            seg.live -= right_live;
            self.segments.insert(
                i + 1,
                Segment {
                    base: right_base,
                    slots: right,
                    live: right_live,
                },
            );
        }
    }

    /// Removes everything below `seq`; afterwards `first_seq >= seq`.
    pub(crate) fn remove_below(&mut self, seq: u64, out: &mut Vec<Removed<T>>) {
        while let Some(first) = self.segments.front().map(|seg| seg.base) {
            if first >= seq {
                break;
            }
            if let Some(r) = self.remove(first) {
                out.push(r);
            }
        }
        if seq > self.last_seq + 1 {
            self.last_seq = seq - 1;
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
        self.live_from(0).map(|(seq, _)| seq).collect()
    }

    /// Deleted sequences between the first live message and `last_seq` (the ones
    /// `num_deleted` counts, trailing deletions included).
    pub(crate) fn deleted_seqs(&self) -> Vec<u64> {
        let mut out = Vec::new();
        if self.msgs == 0 {
            return out;
        }
        let mut expect = self.first_seq();
        for (seq, _) in self.live_from(0) {
            out.extend(expect..seq);
            expect = seq + 1;
        }
        out.extend(expect..=self.last_seq);
        out
    }

    /// First live sequence `>= start` whose subject matches `filter`.
    pub(crate) fn next_match(&self, filter: &[u8], start: u64) -> Option<u64> {
        if filter.is_empty() || filter == b">" {
            return self.live_from(start).next().map(|(seq, _)| seq);
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
        self.live_from(start)
            .find(|(_, e)| {
                *verdicts.entry(e.subj).or_insert_with(|| {
                    self.subjects[e.subj as usize]
                        .as_ref()
                        .is_some_and(|s| filter_matches(filter, &s.name))
                })
            })
            .map(|(seq, _)| seq)
    }

    /// Newest live sequence whose subject matches `filter`.
    pub(crate) fn last_match(&self, filter: &[u8]) -> Option<u64> {
        if self.msgs == 0 {
            return None;
        }
        if filter.is_empty() || filter == b">" {
            return self.segments.back().map(|seg| seg.end() - 1);
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
            if start <= self.first_seq() {
                return self.msgs;
            }
            return self.live_from(start).count() as u64;
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
                while self.first_live().is_some_and(|(_, e)| e.ts <= cutoff) {
                    self.pop_first(out);
                }
            } else {
                // Pinned messages stay; the aged ones around them go (as nats-server, up to
                // the first message younger than the cutoff).
                let mut from = 0;
                loop {
                    let next = self.live_from(from).next().map(|(s, e)| (s, e.ts));
                    let Some((seq, ts)) = next else { break };
                    if ts > cutoff {
                        break;
                    }
                    if !self.pinned.contains(&seq) {
                        if let Some(r) = self.remove(seq) {
                            out.push(r);
                        }
                    }
                    from = seq + 1;
                }
            }
        }
    }

    fn pop_first(&mut self, out: &mut Vec<Removed<T>>) {
        let first = self.first_seq();
        if let Some(r) = self.remove(first) {
            out.push(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    impl<T> Index<T> {
        fn slots(&self) -> usize {
            self.segments.iter().map(|seg| seg.slots.len()).sum()
        }

        fn check_shape(&self) {
            let mut prev_end = 0;
            let mut live = 0;
            for seg in &self.segments {
                assert!(seg.base >= prev_end, "segments overlap or are out of order");
                assert!(seg.slots.front().is_some_and(|e| e.is_some()), "dead front");
                assert!(seg.slots.back().is_some_and(|e| e.is_some()), "dead back");
                let counted = seg.slots.iter().filter(|e| e.is_some()).count();
                assert_eq!(seg.live, counted, "live count");
                let mut run = 0;
                for e in &seg.slots {
                    run = if e.is_none() { run + 1 } else { 0 };
                    assert!(run <= MAX_GAP, "gap of {run} inside a segment");
                }
                prev_end = seg.end();
                live += counted;
            }
            assert_eq!(live as u64, self.msgs);
        }
    }

    fn put(index: &mut Index<()>, seq: u64) {
        index.insert(seq, seq, format!("s.{}", seq % 7).as_bytes(), 1, ());
    }

    #[test]
    fn a_far_sequence_costs_one_slot_not_the_gap() {
        let mut index = Index::new();
        put(&mut index, 1);
        put(&mut index, 1 << 50);
        assert_eq!(index.slots(), 2);
        assert_eq!(index.state().num_deleted, (1 << 50) - 2);
        assert_eq!(index.next_match(b">", 2), Some(1 << 50));
        assert!(index.get(1 << 49).is_none());
        index.check_shape();
    }

    #[test]
    fn memory_follows_live_messages_after_interior_removals() {
        let mut index = Index::new();
        for seq in 1..=100_000 {
            put(&mut index, seq);
        }
        // A key that outlives everything published after it: nothing but its neighbours.
        let mut order: Vec<u64> = (2..100_000).collect();
        fastrand::shuffle(&mut order);
        for seq in order {
            assert!(index.remove(seq).is_some());
        }
        index.check_shape();
        assert_eq!(index.msgs(), 2);
        assert_eq!(index.slots(), 2);
        assert_eq!(index.deleted_seqs().len(), 99_998);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert { gap: u64 },
        Remove { pick: usize },
        RemoveBelow { ahead: u64 },
        Bump { ahead: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => prop_oneof![0..3u64, 0..200u64, Just(1_000_000u64)].prop_map(|gap| Op::Insert { gap }),
            5 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
            1 => (0..300u64).prop_map(|ahead| Op::RemoveBelow { ahead }),
            1 => (0..300u64).prop_map(|ahead| Op::Bump { ahead }),
        ]
    }

    proptest! {
        /// The index answers as a sorted map of live sequences would, whatever the gaps.
        #[test]
        fn agrees_with_a_sorted_map(ops in proptest::collection::vec(op(), 1..400)) {
            let mut index: Index<()> = Index::new();
            let mut model: BTreeMap<u64, ()> = BTreeMap::new();
            let mut last = 0u64;
            for op in ops {
                match op {
                    Op::Insert { gap } => {
                        last += 1 + gap;
                        put(&mut index, last);
                        model.insert(last, ());
                    }
                    Op::Remove { pick } => {
                        if !model.is_empty() {
                            let seq = *model.keys().nth(pick % model.len()).unwrap_or(&0);
                            model.remove(&seq);
                            let removed = index.remove(seq).map(|r| r.seq);
                            prop_assert_eq!(removed, Some(seq));
                        }
                    }
                    Op::RemoveBelow { ahead } => {
                        let below = index.first_seq() + ahead;
                        let mut out = Vec::new();
                        index.remove_below(below, &mut out);
                        let expect: Vec<u64> = model.range(..below).map(|(s, _)| *s).collect();
                        prop_assert_eq!(out.iter().map(|r| r.seq).collect::<Vec<_>>(), expect);
                        model.retain(|s, _| *s >= below);
                        last = last.max(below.saturating_sub(1));
                    }
                    Op::Bump { ahead } => {
                        last += ahead;
                        index.bump_last_seq(last, None);
                    }
                }
                index.check_shape();
                prop_assert_eq!(index.msgs(), model.len() as u64);
                prop_assert_eq!(index.last_seq(), last);
                let first = model.keys().next().copied().unwrap_or(last + 1);
                prop_assert_eq!(index.first_seq(), first);
                prop_assert_eq!(index.live_seqs(), model.keys().copied().collect::<Vec<_>>());
                let probe = first + (last.saturating_sub(first)) / 2;
                prop_assert_eq!(index.next_match(b">", probe), model.range(probe..).next().map(|(s, _)| *s));
                prop_assert_eq!(index.num_pending(b"", probe), model.range(probe..).count() as u64);
                prop_assert_eq!(index.last_match(b">"), model.keys().next_back().copied());
                prop_assert_eq!(index.get(probe).is_some(), model.contains_key(&probe));
                if last.saturating_sub(first) < 20_000 {
                    let deleted = index.deleted_seqs();
                    prop_assert_eq!(deleted.len() as u64, index.state().num_deleted);
                    prop_assert!(deleted.iter().all(|s| !model.contains_key(s)));
                }
                if let Some((&s, _)) = model.iter().next() {
                    prop_assert_eq!(index.next_match(b"s.*", 0).map(|x| x >= s), Some(true));
                }
            }
        }
    }
}
