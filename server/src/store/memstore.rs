//! The memory store: the shared index holding the messages themselves.

use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use bytes::Bytes;

use super::index::Index;
use super::{
    mem_msg_size, now_ns, ConsumerStore, MemConsumerStore, MessageStore, PurgeRequest, StorageType,
    StoreError, StoreLimits, StoreState, StoredMsg, SubjectState,
};

#[derive(Debug, Clone)]
struct MemMsg {
    headers: Option<Bytes>,
    payload: Bytes,
}

#[derive(Debug)]
struct Inner {
    index: Index<MemMsg>,
    limits: StoreLimits,
    closed: bool,
}

/// A [`MessageStore`] that keeps everything in memory.
#[derive(Debug)]
pub(crate) struct MemStore {
    inner: Mutex<Inner>,
    consumers: Arc<MemConsumerStore>,
}

impl MemStore {
    /// An empty store with these limits.
    pub(crate) fn new(limits: StoreLimits) -> Self {
        MemStore {
            inner: Mutex::new(Inner {
                index: Index::new(),
                limits,
                closed: false,
            }),
            consumers: Arc::new(MemConsumerStore::default()),
        }
    }

    fn open(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        let g = self.inner.lock();
        if g.closed {
            return Err(StoreError::Closed);
        }
        Ok(g)
    }
}

fn to_msg(index: &Index<MemMsg>, seq: u64) -> Result<StoredMsg, StoreError> {
    let e = index.get(seq).ok_or(StoreError::NotFound)?;
    Ok(StoredMsg {
        subject: index.subject_name(e.subj),
        seq,
        ts: e.ts,
        headers: e.data.headers.clone(),
        payload: e.data.payload.clone(),
    })
}

impl MessageStore for MemStore {
    fn store_msg(
        &self,
        subject: &[u8],
        headers: Option<&[u8]>,
        payload: &[u8],
        timestamp_ns: u64,
    ) -> Result<(u64, u64), StoreError> {
        let mut g = self.open()?;
        let size = mem_msg_size(subject.len(), headers.map(<[u8]>::len), payload.len());
        let content = (headers.map_or(0, <[u8]>::len) + payload.len()) as u64;
        g.index.admit(&g.limits, subject, content, size)?;
        let size = u32::try_from(size).map_err(|_| StoreError::MsgTooLarge)?;
        let ts = if timestamp_ns == 0 {
            now_ns()
        } else {
            timestamp_ns
        };
        let seq = g.index.last_seq() + 1;
        let msg = MemMsg {
            headers: headers.map(Bytes::copy_from_slice),
            payload: Bytes::copy_from_slice(payload),
        };
        g.index.insert(seq, ts, subject, size, msg);
        if super::never_expires(headers) {
            g.index.pin(seq);
        }
        let Inner { index, limits, .. } = &mut *g;
        let mut removed = Vec::new();
        let now = limits.max_age.map(|_| now_ns());
        index.enforce(limits, Some(subject), now, &mut removed);
        Ok((seq, ts))
    }

    fn load_msg(&self, seq: u64) -> Result<StoredMsg, StoreError> {
        to_msg(&self.inner.lock().index, seq)
    }

    fn load_last_msg(&self, filter: &[u8]) -> Result<StoredMsg, StoreError> {
        let g = self.inner.lock();
        let seq = g.index.last_match(filter).ok_or(StoreError::NotFound)?;
        to_msg(&g.index, seq)
    }

    fn load_next_msg(&self, filter: &[u8], start_seq: u64) -> Result<StoredMsg, StoreError> {
        let g = self.inner.lock();
        let seq = g
            .index
            .next_match(filter, start_seq)
            .ok_or(StoreError::NotFound)?;
        to_msg(&g.index, seq)
    }

    fn num_pending(&self, filter: &[u8], start_seq: u64) -> u64 {
        self.inner.lock().index.num_pending(filter, start_seq)
    }

    fn remove_msg(&self, seq: u64) -> Result<bool, StoreError> {
        Ok(self.open()?.index.remove(seq).is_some())
    }

    fn erase_msg(&self, seq: u64) -> Result<bool, StoreError> {
        self.remove_msg(seq)
    }

    fn purge(&self, req: &PurgeRequest) -> Result<u64, StoreError> {
        let mut g = self.open()?;
        let mut removed = Vec::new();
        let victims = purge_victims(&g.index, req);
        match victims {
            PurgeVictims::Below(seq) => g.index.remove_below(seq, &mut removed),
            PurgeVictims::Seqs(seqs) => {
                removed.extend(seqs.into_iter().filter_map(|s| g.index.remove(s)))
            }
        }
        Ok(removed.len() as u64)
    }

    fn compact(&self, seq: u64) -> Result<u64, StoreError> {
        let mut g = self.open()?;
        let mut removed = Vec::new();
        g.index.remove_below(seq, &mut removed);
        Ok(removed.len() as u64)
    }

    fn skip_msgs(&self, through: u64) -> Result<(), StoreError> {
        let mut g = self.open()?;
        if through <= g.index.last_seq() {
            return Ok(());
        }
        if g.index.msgs() == 0 {
            g.index.remove_below(through + 1, &mut Vec::new());
        } else {
            g.index.bump_last_seq(through, None);
        }
        Ok(())
    }

    fn expire(&self, now: u64) -> Result<u64, StoreError> {
        let mut g = self.open()?;
        let Inner { index, limits, .. } = &mut *g;
        let mut removed = Vec::new();
        let age_only = StoreLimits {
            max_age: limits.max_age,
            ..StoreLimits::default()
        };
        index.enforce(&age_only, None, Some(now), &mut removed);
        Ok(removed.len() as u64)
    }

    fn state(&self) -> StoreState {
        self.inner.lock().index.state()
    }

    fn subjects_state(&self, filter: &[u8]) -> Vec<SubjectState> {
        self.inner.lock().index.subjects_state(filter)
    }

    fn deleted_seqs(&self) -> Vec<u64> {
        self.inner.lock().index.deleted_seqs()
    }

    fn stored_size(&self, subject: &[u8], headers: Option<&[u8]>, payload: &[u8]) -> u64 {
        mem_msg_size(subject.len(), headers.map(<[u8]>::len), payload.len())
    }

    fn update_config(&self, limits: &StoreLimits) -> Result<(), StoreError> {
        let mut g = self.open()?;
        g.limits = limits.clone();
        let Inner { index, limits, .. } = &mut *g;
        let mut removed = Vec::new();
        index.enforce(limits, None, Some(now_ns()), &mut removed);
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn stop(&self) -> Result<(), StoreError> {
        self.inner.lock().closed = true;
        Ok(())
    }

    fn delete(&self) -> Result<(), StoreError> {
        let mut g = self.inner.lock();
        g.closed = true;
        g.index = Index::new();
        Ok(())
    }

    fn storage_type(&self) -> StorageType {
        StorageType::Memory
    }

    fn consumer_store(&self) -> Arc<dyn ConsumerStore> {
        self.consumers.clone()
    }
}

/// What a purge request removes.
pub(crate) enum PurgeVictims {
    /// Everything below this sequence (cheap, persisted as one floor record).
    Below(u64),
    /// These sequences.
    Seqs(Vec<u64>),
}

pub(crate) fn purge_victims<T>(index: &Index<T>, req: &PurgeRequest) -> PurgeVictims {
    let filter = req
        .filter
        .as_deref()
        .filter(|f| !f.is_empty() && *f != b">");
    match filter {
        None => {
            let mut below = req.seq.unwrap_or(index.last_seq() + 1);
            if let Some(keep) = req.keep {
                if keep >= index.msgs() {
                    return PurgeVictims::Seqs(Vec::new());
                }
                let live = index.matching_seqs(b"");
                let keep_from = live[live.len() - keep as usize..].first().copied();
                below = below.min(keep_from.unwrap_or(below));
            }
            PurgeVictims::Below(below)
        }
        Some(f) => {
            let mut seqs = index.matching_seqs(f);
            if let Some(upto) = req.seq {
                seqs.retain(|&s| s < upto);
            }
            if let Some(keep) = req.keep {
                let n = seqs.len().saturating_sub(keep as usize);
                seqs.truncate(n);
            }
            PurgeVictims::Seqs(seqs)
        }
    }
}
