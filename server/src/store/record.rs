//! Pure encode/decode of block headers and records (no I/O, so it can be fuzzed).
//!
//! Two block format versions exist (all fixed-width integers little-endian, see
//! `docs/filestore-format.md`). Version 2 is written; version 1 blocks still open and are
//! read (and appended to while they are the tail and empty) with the old record layout.
//!
//! ```text
//! v2 block header (28 B): magic "NJSB" | version u16=2 | flags u16 | first_seq u64
//!                         | base_ts u64 | crc32 u32
//! v2 record:              head varint (rest_len << 2 | kind) | seq_delta varint
//!                         | ts_delta varint (zigzag) | [subj_len varint | [hdr_len varint]
//!                         | subject | headers | payload] | crc32 u32
//! v1 block header (20 B): magic "NJSB" | version u16=1 | flags u16 | first_seq u64 | crc32 u32
//! v1 record:              len u32 | seq u64 | ts u64 | subj_len u16 | hdr_len u32
//!                         | subject | headers | payload | crc32 u32
//! ```
//! Deltas are taken against the block header's `first_seq` / `base_ts` with wrapping
//! arithmetic, so every value round-trips exactly however far it is from the base.

/// Magic bytes at the start of every block file.
pub(crate) const BLOCK_MAGIC: [u8; 4] = *b"NJSB";
/// Block format version written by this code.
pub(crate) const BLOCK_VERSION: u16 = 2;
/// The previous (fixed-width) block format version, still readable.
pub(crate) const BLOCK_VERSION_V1: u16 = 1;
/// Size of the current block header.
pub(crate) const BLOCK_HEADER_LEN: usize = 28;
/// Size of a version 1 block header.
pub(crate) const BLOCK_HEADER_LEN_V1: usize = 20;
/// Bytes of checksum after the body.
pub(crate) const CHECKSUM_LEN: usize = 4;
/// Upper bound on one record; anything larger in a length field is treated as garbage.
pub(crate) const MAX_RECORD_LEN: usize = 64 * 1024 * 1024;

/// Fixed part of a v1 record before the variable body.
const V1_RECORD_HEADER_LEN: usize = 26;
const V1_MIN_RECORD_LEN: usize = V1_RECORD_HEADER_LEN + CHECKSUM_LEN;
const V1_TOMBSTONE_BIT: u64 = 1 << 63;
const V1_HAS_HEADERS_BIT: u32 = 1 << 31;
const V1_FLOOR_BIT: u32 = 1 << 30;
const V1_HDR_LEN_MASK: u32 = (1 << 30) - 1;

/// v2 record kinds, the low two bits of the head varint.
const KIND_MSG: u64 = 0;
const KIND_MSG_WITH_HEADERS: u64 = 1;
const KIND_TOMBSTONE: u64 = 2;
const KIND_FLOOR: u64 = 3;
/// Smallest v2 record: one-byte head, seq and ts varints, checksum.
const V2_MIN_RECORD_LEN: usize = 3 + CHECKSUM_LEN;
const MAX_VARINT_LEN: usize = 10;

/// A message's subject, optional header block and payload.
type MsgBody<'a> = (&'a [u8], Option<&'a [u8]>, &'a [u8]);

/// What a record means to recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// A stored message.
    Msg,
    /// `seq` is deleted. With a body, this is the scrubbed (erased) message itself.
    Tombstone,
    /// Every sequence below `seq` is deleted (purge / compact / head eviction).
    Floor,
}

/// A decoded record borrowing from the block buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    /// Meaning of the record.
    pub kind: RecordKind,
    /// Sequence.
    pub seq: u64,
    /// Timestamp, ns since the Unix epoch.
    pub ts: u64,
    /// Message subject (empty for markers).
    pub subject: &'a [u8],
    /// Header block when the message had one.
    pub headers: Option<&'a [u8]>,
    /// Message payload; for a tombstone, whatever (scrubbed) body it carries.
    pub payload: &'a [u8],
    /// Total encoded length.
    pub len: usize,
}

impl Record<'_> {
    /// True when the record carries bytes beyond its fixed fields: for a tombstone this
    /// means it is an erased message rather than a plain deletion marker.
    pub(crate) fn has_body(&self) -> bool {
        !self.subject.is_empty()
            || !self.payload.is_empty()
            || self.headers.is_some_and(|h| !h.is_empty())
    }
}

/// Why bytes did not decode as a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The buffer ends before the record does (a torn write at the tail).
    #[error("record truncated: need {needed} bytes, have {have}")]
    Truncated {
        /// Bytes the record claims (or the fixed header, if even that is missing).
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// The length fields are inconsistent or absurd.
    #[error("invalid record length {0}")]
    BadLength(usize),
    /// The checksum does not match the content.
    #[error("checksum mismatch")]
    Checksum,
    /// The block header magic or checksum is wrong.
    #[error("bad block header")]
    BadBlockHeader,
    /// The block header is intact but names a format version this build cannot read.
    #[error("unsupported block format version {0}")]
    UnsupportedVersion(u16),
}

/// Everything needed to encode or decode the records of one block (from its header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockFormat {
    /// Format version.
    pub version: u16,
    /// The sequence the block was created for; v2 sequence deltas are relative to it.
    pub first_seq: u64,
    /// v2 timestamp deltas are relative to this (ns since the epoch; 0 for v1).
    pub base_ts: u64,
}

impl BlockFormat {
    /// The current format for a new block.
    pub(crate) fn new(first_seq: u64, base_ts: u64) -> Self {
        BlockFormat {
            version: BLOCK_VERSION,
            first_seq,
            base_ts,
        }
    }

    /// True when this block uses the format this code writes.
    pub(crate) fn is_current(&self) -> bool {
        self.version == BLOCK_VERSION
    }

    /// Length of this block's header.
    pub(crate) fn header_len(&self) -> usize {
        if self.version == BLOCK_VERSION_V1 {
            BLOCK_HEADER_LEN_V1
        } else {
            BLOCK_HEADER_LEN
        }
    }

    /// Smallest record this format can hold (anything shorter is garbage).
    pub(crate) fn min_record_len(&self) -> usize {
        if self.version == BLOCK_VERSION_V1 {
            V1_MIN_RECORD_LEN
        } else {
            V2_MIN_RECORD_LEN
        }
    }

    /// Encodes the block header.
    pub(crate) fn encode_header(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(BLOCK_HEADER_LEN);
        h.extend_from_slice(&BLOCK_MAGIC);
        h.extend_from_slice(&self.version.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&self.first_seq.to_le_bytes());
        if self.version != BLOCK_VERSION_V1 {
            h.extend_from_slice(&self.base_ts.to_le_bytes());
        }
        let crc = crc32fast::hash(&h);
        h.extend_from_slice(&crc.to_le_bytes());
        h
    }

    /// Appends a message record to `out`. Callers bound subject (< 64 KiB) and sizes beforehand.
    pub(crate) fn encode_msg(
        &self,
        out: &mut Vec<u8>,
        seq: u64,
        ts: u64,
        subject: &[u8],
        headers: Option<&[u8]>,
        payload: &[u8],
    ) {
        if self.version == BLOCK_VERSION_V1 {
            let hdr = headers.unwrap_or(&[]);
            let mut hdr_field = hdr.len() as u32 & V1_HDR_LEN_MASK;
            if headers.is_some() {
                hdr_field |= V1_HAS_HEADERS_BIT;
            }
            v1_encode_raw(out, seq, ts, subject, hdr_field, &[hdr, payload]);
        } else {
            let kind = if headers.is_some() {
                KIND_MSG_WITH_HEADERS
            } else {
                KIND_MSG
            };
            self.v2_encode(out, kind, seq, ts, Some((subject, headers, payload)));
        }
    }

    /// Appends a tombstone for `seq` to `out`.
    pub(crate) fn encode_tombstone(&self, out: &mut Vec<u8>, seq: u64, ts: u64) {
        if self.version == BLOCK_VERSION_V1 {
            v1_encode_raw(out, seq | V1_TOMBSTONE_BIT, ts, &[], 0, &[]);
        } else {
            self.v2_encode(out, KIND_TOMBSTONE, seq, ts, None);
        }
    }

    /// Appends a floor marker ("everything below `seq` is gone") to `out`.
    pub(crate) fn encode_floor(&self, out: &mut Vec<u8>, seq: u64, ts: u64) {
        if self.version == BLOCK_VERSION_V1 {
            v1_encode_raw(out, seq | V1_TOMBSTONE_BIT, ts, &[], V1_FLOOR_BIT, &[]);
        } else {
            self.v2_encode(out, KIND_FLOOR, seq, ts, None);
        }
    }

    fn v2_encode(
        &self,
        out: &mut Vec<u8>,
        kind: u64,
        seq: u64,
        ts: u64,
        body: Option<MsgBody<'_>>,
    ) {
        let seq_delta = seq.wrapping_sub(self.first_seq);
        let ts_delta = zigzag(ts.wrapping_sub(self.base_ts) as i64);
        let mut rest = varint_len(seq_delta) + varint_len(ts_delta) + CHECKSUM_LEN;
        if let Some((subject, headers, payload)) = body {
            rest += varint_len(subject.len() as u64) + subject.len() + payload.len();
            if let Some(h) = headers {
                rest += varint_len(h.len() as u64) + h.len();
            }
        }
        let start = out.len();
        let head = ((rest as u64) << 2) | kind;
        out.reserve(varint_len(head) + rest);
        put_varint(out, head);
        put_varint(out, seq_delta);
        put_varint(out, ts_delta);
        if let Some((subject, headers, payload)) = body {
            put_varint(out, subject.len() as u64);
            if let Some(h) = headers {
                put_varint(out, h.len() as u64);
            }
            out.extend_from_slice(subject);
            if let Some(h) = headers {
                out.extend_from_slice(h);
            }
            out.extend_from_slice(payload);
        }
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// Reads only the record's total length; `None` when the length field itself is
    /// incomplete or unreadable.
    pub(crate) fn peek_len(&self, buf: &[u8]) -> Option<usize> {
        if self.version == BLOCK_VERSION_V1 {
            return (buf.len() >= 4).then(|| u32::from_le_bytes(le4(buf)) as usize);
        }
        let (head, n) = get_varint(buf).ok()?;
        usize::try_from(head >> 2).ok()?.checked_add(n)
    }

    /// Decodes the record at the start of `buf`.
    pub(crate) fn decode<'a>(&self, buf: &'a [u8]) -> Result<Record<'a>, DecodeError> {
        if self.version == BLOCK_VERSION_V1 {
            v1_decode(buf)
        } else {
            self.v2_decode(buf)
        }
    }

    fn v2_decode<'a>(&self, buf: &'a [u8]) -> Result<Record<'a>, DecodeError> {
        let (head, head_len) = match get_varint(buf) {
            Ok(v) => v,
            Err(VarintError::Truncated) => {
                return Err(DecodeError::Truncated {
                    needed: buf.len() + 1,
                    have: buf.len(),
                })
            }
            Err(VarintError::Overlong) => return Err(DecodeError::BadLength(usize::MAX)),
        };
        let rest = usize::try_from(head >> 2).unwrap_or(usize::MAX);
        let len = rest.saturating_add(head_len);
        if rest < V2_MIN_RECORD_LEN - 1 || len > MAX_RECORD_LEN {
            return Err(DecodeError::BadLength(len));
        }
        if buf.len() < len {
            return Err(DecodeError::Truncated {
                needed: len,
                have: buf.len(),
            });
        }
        let body_end = len - CHECKSUM_LEN;
        let crc = u32::from_le_bytes(le4(&buf[body_end..]));
        if crc32fast::hash(&buf[..body_end]) != crc {
            return Err(DecodeError::Checksum);
        }
        let body = &buf[..body_end];
        let bad = || DecodeError::BadLength(len);
        let mut pos = head_len;
        let next = |pos: &mut usize| -> Result<u64, DecodeError> {
            let (v, n) = get_varint(&body[*pos..]).map_err(|_| bad())?;
            *pos += n;
            Ok(v)
        };
        let seq = self.first_seq.wrapping_add(next(&mut pos)?);
        let ts = self.base_ts.wrapping_add(unzigzag(next(&mut pos)?) as u64);
        let kind = head & 3;
        let mut rec = Record {
            kind: RecordKind::Msg,
            seq,
            ts,
            subject: &[],
            headers: None,
            payload: &[],
            len,
        };
        match kind {
            KIND_MSG | KIND_MSG_WITH_HEADERS => {
                let subj_len = usize::try_from(next(&mut pos)?).map_err(|_| bad())?;
                let hdr_len = if kind == KIND_MSG_WITH_HEADERS {
                    Some(usize::try_from(next(&mut pos)?).map_err(|_| bad())?)
                } else {
                    None
                };
                let fixed = subj_len.saturating_add(hdr_len.unwrap_or(0));
                if fixed > body.len() - pos {
                    return Err(bad());
                }
                rec.subject = &body[pos..pos + subj_len];
                pos += subj_len;
                if let Some(h) = hdr_len {
                    rec.headers = Some(&body[pos..pos + h]);
                    pos += h;
                }
                rec.payload = &body[pos..];
            }
            KIND_TOMBSTONE => {
                rec.kind = RecordKind::Tombstone;
                rec.payload = &body[pos..];
            }
            _ => {
                rec.kind = RecordKind::Floor;
                rec.payload = &body[pos..];
            }
        }
        Ok(rec)
    }

    /// Turns an encoded message record into a same-length tombstone whose body is
    /// overwritten with `fill`, so erased content never survives on disk. Returns false if
    /// `rec` is not a well-formed record.
    pub(crate) fn scrub_in_place(&self, rec: &mut [u8], mut fill: impl FnMut() -> u8) -> bool {
        let Ok(decoded) = self.decode(rec) else {
            return false;
        };
        if decoded.len != rec.len() {
            return false;
        }
        let body_end = rec.len() - CHECKSUM_LEN;
        let body_start = if self.version == BLOCK_VERSION_V1 {
            let seq = u64::from_le_bytes(le8(&rec[4..12])) | V1_TOMBSTONE_BIT;
            rec[4..12].copy_from_slice(&seq.to_le_bytes());
            V1_RECORD_HEADER_LEN
        } else {
            // The kind sits in the two low bits of the head varint's first byte, so
            // changing it never changes the varint's length.
            rec[0] = (rec[0] & !3) | KIND_TOMBSTONE as u8;
            let mut pos = 0;
            for _ in 0..3 {
                match get_varint(&rec[pos..]) {
                    Ok((_, n)) => pos += n,
                    Err(_) => return false,
                }
            }
            pos
        };
        for b in &mut rec[body_start..body_end] {
            *b = fill();
        }
        let crc = crc32fast::hash(&rec[..body_end]);
        rec[body_end..].copy_from_slice(&crc.to_le_bytes());
        true
    }
}

/// Upper bound on the encoded length of a message record in any supported format (the
/// exact v2 length depends on the block it lands in).
pub(crate) fn max_record_len(subject_len: usize, headers_len: usize, payload_len: usize) -> usize {
    let varints = 4 * MAX_VARINT_LEN + 5;
    (V1_RECORD_HEADER_LEN + CHECKSUM_LEN).max(varints + CHECKSUM_LEN)
        + subject_len
        + headers_len
        + payload_len
}

/// Decodes a block header (either version).
pub(crate) fn decode_block_header(buf: &[u8]) -> Result<BlockFormat, DecodeError> {
    if buf.len() < 6 {
        return Err(DecodeError::Truncated {
            needed: BLOCK_HEADER_LEN,
            have: buf.len(),
        });
    }
    if buf[..4] != BLOCK_MAGIC {
        return Err(DecodeError::BadBlockHeader);
    }
    let version = u16::from_le_bytes([buf[4], buf[5]]);
    let header_len = match version {
        BLOCK_VERSION_V1 => BLOCK_HEADER_LEN_V1,
        BLOCK_VERSION => BLOCK_HEADER_LEN,
        // A newer format only when the header's checksum says so; otherwise the version
        // field is damaged, and the block is handled as damaged, not refused.
        other if header_crc_ok(buf, BLOCK_HEADER_LEN) => {
            return Err(DecodeError::UnsupportedVersion(other))
        }
        _ => return Err(DecodeError::BadBlockHeader),
    };
    if buf.len() < header_len {
        return Err(DecodeError::Truncated {
            needed: header_len,
            have: buf.len(),
        });
    }
    let crc_at = header_len - CHECKSUM_LEN;
    if crc32fast::hash(&buf[..crc_at]) != u32::from_le_bytes(le4(&buf[crc_at..])) {
        return Err(DecodeError::BadBlockHeader);
    }
    let first_seq = u64::from_le_bytes(le8(&buf[8..]));
    let base_ts = if version == BLOCK_VERSION_V1 {
        0
    } else {
        u64::from_le_bytes(le8(&buf[16..]))
    };
    Ok(BlockFormat {
        version,
        first_seq,
        base_ts,
    })
}

fn header_crc_ok(buf: &[u8], header_len: usize) -> bool {
    let crc_at = header_len - CHECKSUM_LEN;
    buf.len() >= header_len
        && crc32fast::hash(&buf[..crc_at]) == u32::from_le_bytes(le4(&buf[crc_at..]))
}

/// The format of a block whose header is damaged, from what is left of it: the version
/// when it is a known one (else the current), `first_seq` from the file name, and the
/// header's base timestamp as it reads (right unless that is the damaged field).
pub(crate) fn salvage_block_header(buf: &[u8], first_seq: u64) -> BlockFormat {
    let version = match buf.get(4..6).map(|v| u16::from_le_bytes([v[0], v[1]])) {
        Some(BLOCK_VERSION_V1) => BLOCK_VERSION_V1,
        _ => BLOCK_VERSION,
    };
    let base_ts = match buf.get(16..24) {
        Some(b) if version == BLOCK_VERSION => u64::from_le_bytes(le8(b)),
        _ => 0,
    };
    BlockFormat {
        version,
        first_seq,
        base_ts,
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

enum VarintError {
    Truncated,
    Overlong,
}

/// LEB128 varint: (value, bytes used). Encodings longer than 10 bytes or overflowing
/// 64 bits are rejected.
fn get_varint(buf: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut v = 0u64;
    for (i, &b) in buf.iter().enumerate().take(MAX_VARINT_LEN) {
        if i == MAX_VARINT_LEN - 1 && b > 1 {
            return Err(VarintError::Overlong);
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    if buf.len() >= MAX_VARINT_LEN {
        Err(VarintError::Overlong)
    } else {
        Err(VarintError::Truncated)
    }
}

fn v1_encode_raw(
    out: &mut Vec<u8>,
    seq: u64,
    ts: u64,
    subject: &[u8],
    hdr_field: u32,
    body: &[&[u8]],
) {
    let start = out.len();
    let body_len: usize = body.iter().map(|b| b.len()).sum();
    let len = V1_RECORD_HEADER_LEN + subject.len() + body_len + CHECKSUM_LEN;
    out.reserve(len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&(subject.len() as u16).to_le_bytes());
    out.extend_from_slice(&hdr_field.to_le_bytes());
    out.extend_from_slice(subject);
    for part in body {
        out.extend_from_slice(part);
    }
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

fn le8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

fn le4(b: &[u8]) -> [u8; 4] {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    a
}

fn v1_decode(buf: &[u8]) -> Result<Record<'_>, DecodeError> {
    if buf.len() < V1_RECORD_HEADER_LEN {
        // A length that is already impossible is garbage, not a torn write.
        if buf.len() >= 4 {
            let len = u32::from_le_bytes(le4(buf)) as usize;
            if !(V1_MIN_RECORD_LEN..=MAX_RECORD_LEN).contains(&len) {
                return Err(DecodeError::BadLength(len));
            }
        }
        return Err(DecodeError::Truncated {
            needed: V1_RECORD_HEADER_LEN,
            have: buf.len(),
        });
    }
    let len = u32::from_le_bytes(le4(buf)) as usize;
    if !(V1_MIN_RECORD_LEN..=MAX_RECORD_LEN).contains(&len) {
        return Err(DecodeError::BadLength(len));
    }
    let raw_seq = u64::from_le_bytes(le8(&buf[4..]));
    let ts = u64::from_le_bytes(le8(&buf[12..]));
    let subj_len = u16::from_le_bytes([buf[20], buf[21]]) as usize;
    let hdr_field = u32::from_le_bytes(le4(&buf[22..]));
    let hdr_len = (hdr_field & V1_HDR_LEN_MASK) as usize;
    if V1_RECORD_HEADER_LEN + subj_len + hdr_len + CHECKSUM_LEN > len {
        return Err(DecodeError::BadLength(len));
    }
    if buf.len() < len {
        return Err(DecodeError::Truncated {
            needed: len,
            have: buf.len(),
        });
    }
    let body_end = len - CHECKSUM_LEN;
    let crc = u32::from_le_bytes(le4(&buf[body_end..]));
    if crc32fast::hash(&buf[..body_end]) != crc {
        return Err(DecodeError::Checksum);
    }
    let subject = &buf[V1_RECORD_HEADER_LEN..V1_RECORD_HEADER_LEN + subj_len];
    let hdr_start = V1_RECORD_HEADER_LEN + subj_len;
    let headers = &buf[hdr_start..hdr_start + hdr_len];
    let payload = &buf[hdr_start + hdr_len..body_end];
    let kind = if raw_seq & V1_TOMBSTONE_BIT == 0 {
        RecordKind::Msg
    } else if hdr_field & V1_FLOOR_BIT != 0 {
        RecordKind::Floor
    } else {
        RecordKind::Tombstone
    };
    Ok(Record {
        kind,
        seq: raw_seq & !V1_TOMBSTONE_BIT,
        ts,
        subject,
        headers: (hdr_field & V1_HAS_HEADERS_BIT != 0).then_some(headers),
        payload,
        len,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BASE_TS: u64 = 1_700_000_000_000_000_000;

    fn formats() -> [BlockFormat; 2] {
        [
            BlockFormat::new(5, BASE_TS),
            BlockFormat {
                version: BLOCK_VERSION_V1,
                first_seq: 5,
                base_ts: 0,
            },
        ]
    }

    #[test]
    fn msg_round_trip_with_and_without_headers() {
        for f in formats() {
            let mut buf = Vec::new();
            f.encode_msg(
                &mut buf,
                7,
                BASE_TS + 99,
                b"a.b",
                Some(b"NATS/1.0\r\n\r\n"),
                b"hello",
            );
            let first = buf.len();
            f.encode_msg(&mut buf, 8, 100, b"c", None, b"");
            let r1 = f.decode(&buf).unwrap();
            assert_eq!(r1.kind, RecordKind::Msg);
            assert_eq!((r1.seq, r1.ts, r1.subject), (7, BASE_TS + 99, &b"a.b"[..]));
            assert_eq!(r1.headers, Some(&b"NATS/1.0\r\n\r\n"[..]));
            assert_eq!(r1.payload, b"hello");
            assert_eq!(r1.len, first);
            assert_eq!(f.peek_len(&buf), Some(first));
            let r2 = f.decode(&buf[r1.len..]).unwrap();
            assert_eq!(
                (r2.seq, r2.ts, r2.headers, r2.payload),
                (8, 100, None, &b""[..])
            );
            assert_eq!(r2.len, buf.len() - first);
        }
    }

    #[test]
    fn extreme_deltas_round_trip_exactly() {
        let f = BlockFormat::new(1_000, BASE_TS);
        for (seq, ts) in [
            (1_000, BASE_TS),
            (1, 0),
            (u64::MAX, u64::MAX),
            (1_001, BASE_TS + 3 * 3_600 * 1_000_000_000 + 7),
            (999, BASE_TS - 1),
        ] {
            let mut buf = Vec::new();
            f.encode_msg(&mut buf, seq, ts, b"s", None, b"p");
            f.encode_tombstone(&mut buf, seq, ts);
            let m = f.decode(&buf).unwrap();
            assert_eq!((m.seq, m.ts), (seq, ts));
            let t = f.decode(&buf[m.len..]).unwrap();
            assert_eq!((t.kind, t.seq, t.ts), (RecordKind::Tombstone, seq, ts));
        }
    }

    #[test]
    fn compact_overhead_for_typical_messages() {
        let f = BlockFormat::new(1, BASE_TS);
        let mut buf = Vec::new();
        // 10k records in, half a second after the block was created.
        f.encode_msg(
            &mut buf,
            10_001,
            BASE_TS + 500_000_000,
            &[b's'; 22],
            None,
            &[0; 128],
        );
        assert!(buf.len() - 150 <= 14, "overhead {}", buf.len() - 150);
    }

    #[test]
    fn markers_and_scrub() {
        for f in formats() {
            let mut buf = Vec::new();
            f.encode_tombstone(&mut buf, 5, 1);
            let t = f.decode(&buf).unwrap();
            assert_eq!(
                (t.kind, t.seq, t.has_body()),
                (RecordKind::Tombstone, 5, false)
            );
            buf.clear();
            f.encode_floor(&mut buf, 9, 1);
            let fl = f.decode(&buf).unwrap();
            assert_eq!((fl.kind, fl.seq, fl.ts), (RecordKind::Floor, 9, 1));
            buf.clear();
            f.encode_msg(&mut buf, 3, 1, b"s", Some(b"hdr"), b"secret");
            let len = buf.len();
            assert!(f.scrub_in_place(&mut buf, || 0xAA));
            let s = f.decode(&buf).unwrap();
            assert_eq!(
                (s.kind, s.seq, s.ts, s.len),
                (RecordKind::Tombstone, 3, 1, len)
            );
            assert!(s.has_body());
            assert!(!buf.windows(6).any(|w| w == b"secret"));
            assert!(!buf.windows(3).any(|w| w == b"hdr"));
        }
    }

    #[test]
    fn every_truncation_and_bit_flip_is_detected() {
        for f in formats() {
            let mut buf = Vec::new();
            f.encode_msg(&mut buf, 1, 2, b"foo", Some(b"h"), b"payload");
            for cut in 0..buf.len() {
                assert!(f.decode(&buf[..cut]).is_err(), "cut at {cut}");
            }
            for i in 0..buf.len() {
                for bit in 0..8 {
                    let mut b = buf.clone();
                    b[i] ^= 1 << bit;
                    assert!(f.decode(&b).is_err(), "flip {bit} at {i}");
                }
            }
        }
    }

    #[test]
    fn zero_fill_is_not_a_record() {
        let f = BlockFormat::new(1, BASE_TS);
        assert!(matches!(
            f.decode(&[0u8; 64]),
            Err(DecodeError::BadLength(_))
        ));
    }

    #[test]
    fn block_header_round_trip_both_versions() {
        for f in formats() {
            let h = f.encode_header();
            assert_eq!(h.len(), f.header_len());
            assert_eq!(decode_block_header(&h), Ok(f));
            let mut bad = h.clone();
            bad[9] ^= 1;
            assert_eq!(decode_block_header(&bad), Err(DecodeError::BadBlockHeader));
        }
        let mut future = BlockFormat::new(1, 2).encode_header();
        future[4] = 9;
        // A flipped version bit is damage (the checksum no longer matches)...
        assert_eq!(
            decode_block_header(&future),
            Err(DecodeError::BadBlockHeader)
        );
        // ...a newer server's header (checksum over the new version) is refused.
        let crc = crc32fast::hash(&future[..BLOCK_HEADER_LEN - CHECKSUM_LEN]);
        future[BLOCK_HEADER_LEN - CHECKSUM_LEN..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_block_header(&future),
            Err(DecodeError::UnsupportedVersion(9))
        );
    }
}
