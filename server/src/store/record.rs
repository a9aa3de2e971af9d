//! Pure encode/decode of block headers and records (no I/O, so it can be fuzzed).
//!
//! Layout (all integers little-endian, see `docs/filestore-format.md`):
//!
//! ```text
//! block header (20 B): magic "NJSB" | version u16 | flags u16 | first_seq u64 | crc32 u32
//! record:              len u32 | seq u64 | ts u64 | subj_len u16 | hdr_len u32
//!                      | subject | headers | payload | crc32 u32
//! ```
//! `len` covers the whole record including the trailing checksum, which covers every
//! byte before it. Bit 63 of `seq` marks a deletion record; bit 31 of `hdr_len` says the
//! message carries a (possibly empty) header block, bit 30 marks a floor record.

/// Magic bytes at the start of every block file.
pub const BLOCK_MAGIC: [u8; 4] = *b"NJSB";
/// Current block format version.
pub const BLOCK_VERSION: u16 = 1;
/// Size of the block header.
pub const BLOCK_HEADER_LEN: usize = 20;
/// Fixed part of a record before the variable body.
pub const RECORD_HEADER_LEN: usize = 26;
/// Bytes of checksum after the body.
pub const CHECKSUM_LEN: usize = 4;
/// Smallest possible record: header plus checksum, empty body.
pub const MIN_RECORD_LEN: usize = RECORD_HEADER_LEN + CHECKSUM_LEN;
/// Upper bound on one record; anything larger in a `len` field is treated as garbage.
pub const MAX_RECORD_LEN: usize = 64 * 1024 * 1024;

const TOMBSTONE_BIT: u64 = 1 << 63;
const HAS_HEADERS_BIT: u32 = 1 << 31;
const FLOOR_BIT: u32 = 1 << 30;
const HDR_LEN_MASK: u32 = (1 << 30) - 1;

/// What a record means to recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A stored message.
    Msg,
    /// `seq` is deleted. With a body, this is the scrubbed (erased) message itself.
    Tombstone,
    /// Every sequence below `seq` is deleted (purge / compact / head eviction).
    Floor,
}

/// A decoded record borrowing from the block buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Meaning of the record.
    pub kind: RecordKind,
    /// Sequence (tombstone bit removed).
    pub seq: u64,
    /// Timestamp, ns since the Unix epoch.
    pub ts: u64,
    /// Message subject (empty for markers).
    pub subject: &'a [u8],
    /// Header block when the message had one.
    pub headers: Option<&'a [u8]>,
    /// Message payload.
    pub payload: &'a [u8],
    /// Total encoded length.
    pub len: usize,
}

/// Why bytes did not decode as a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
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
    /// The block header magic, version or checksum is wrong.
    #[error("bad block header")]
    BadBlockHeader,
}

/// Encoded length of a message record.
pub fn record_len(subject_len: usize, headers_len: usize, payload_len: usize) -> usize {
    RECORD_HEADER_LEN + subject_len + headers_len + payload_len + CHECKSUM_LEN
}

/// Appends a message record to `out`. Callers bound subject (< 64 KiB) and sizes beforehand.
pub fn encode_msg(
    out: &mut Vec<u8>,
    seq: u64,
    ts: u64,
    subject: &[u8],
    headers: Option<&[u8]>,
    payload: &[u8],
) {
    let hdr = headers.unwrap_or(&[]);
    let mut hdr_field = hdr.len() as u32 & HDR_LEN_MASK;
    if headers.is_some() {
        hdr_field |= HAS_HEADERS_BIT;
    }
    encode_raw(out, seq, ts, subject, hdr_field, &[hdr, payload]);
}

/// Appends a tombstone for `seq` to `out`.
pub fn encode_tombstone(out: &mut Vec<u8>, seq: u64, ts: u64) {
    encode_raw(out, seq | TOMBSTONE_BIT, ts, &[], 0, &[]);
}

/// Appends a floor marker ("everything below `seq` is gone") to `out`.
pub fn encode_floor(out: &mut Vec<u8>, seq: u64, ts: u64) {
    encode_raw(out, seq | TOMBSTONE_BIT, ts, &[], FLOOR_BIT, &[]);
}

/// Turns an encoded message record into a same-length tombstone whose body is overwritten
/// with `fill`, so erased content never survives on disk. Returns false if `rec` is not a
/// well-formed record.
pub fn scrub_in_place(rec: &mut [u8], mut fill: impl FnMut() -> u8) -> bool {
    if rec.len() < MIN_RECORD_LEN || decode(rec).is_err() {
        return false;
    }
    let seq = u64::from_le_bytes(le8(&rec[4..12])) | TOMBSTONE_BIT;
    rec[4..12].copy_from_slice(&seq.to_le_bytes());
    let body_end = rec.len() - CHECKSUM_LEN;
    for b in &mut rec[RECORD_HEADER_LEN..body_end] {
        *b = fill();
    }
    let crc = crc32fast::hash(&rec[..body_end]);
    rec[body_end..].copy_from_slice(&crc.to_le_bytes());
    true
}

fn encode_raw(
    out: &mut Vec<u8>,
    seq: u64,
    ts: u64,
    subject: &[u8],
    hdr_field: u32,
    body: &[&[u8]],
) {
    let start = out.len();
    let body_len: usize = body.iter().map(|b| b.len()).sum();
    let len = RECORD_HEADER_LEN + subject.len() + body_len + CHECKSUM_LEN;
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

/// Reads only the length field; `None` when fewer than 4 bytes are available.
pub fn peek_len(buf: &[u8]) -> Option<usize> {
    (buf.len() >= 4).then(|| u32::from_le_bytes(le4(buf)) as usize)
}

/// Decodes the record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Result<Record<'_>, DecodeError> {
    if buf.len() < RECORD_HEADER_LEN {
        // A length that is already impossible is garbage, not a torn write.
        if let Some(len) = peek_len(buf) {
            if !(MIN_RECORD_LEN..=MAX_RECORD_LEN).contains(&len) {
                return Err(DecodeError::BadLength(len));
            }
        }
        return Err(DecodeError::Truncated {
            needed: RECORD_HEADER_LEN,
            have: buf.len(),
        });
    }
    let len = u32::from_le_bytes(le4(buf)) as usize;
    if !(MIN_RECORD_LEN..=MAX_RECORD_LEN).contains(&len) {
        return Err(DecodeError::BadLength(len));
    }
    let raw_seq = u64::from_le_bytes(le8(&buf[4..]));
    let ts = u64::from_le_bytes(le8(&buf[12..]));
    let subj_len = u16::from_le_bytes([buf[20], buf[21]]) as usize;
    let hdr_field = u32::from_le_bytes(le4(&buf[22..]));
    let hdr_len = (hdr_field & HDR_LEN_MASK) as usize;
    if RECORD_HEADER_LEN + subj_len + hdr_len + CHECKSUM_LEN > len {
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
    let subject = &buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + subj_len];
    let hdr_start = RECORD_HEADER_LEN + subj_len;
    let headers = &buf[hdr_start..hdr_start + hdr_len];
    let payload = &buf[hdr_start + hdr_len..body_end];
    let kind = if raw_seq & TOMBSTONE_BIT == 0 {
        RecordKind::Msg
    } else if hdr_field & FLOOR_BIT != 0 {
        RecordKind::Floor
    } else {
        RecordKind::Tombstone
    };
    Ok(Record {
        kind,
        seq: raw_seq & !TOMBSTONE_BIT,
        ts,
        subject,
        headers: (hdr_field & HAS_HEADERS_BIT != 0).then_some(headers),
        payload,
        len,
    })
}

/// Encodes a block header for a block whose first message will have `first_seq`.
pub fn encode_block_header(first_seq: u64) -> [u8; BLOCK_HEADER_LEN] {
    let mut h = [0u8; BLOCK_HEADER_LEN];
    h[..4].copy_from_slice(&BLOCK_MAGIC);
    h[4..6].copy_from_slice(&BLOCK_VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32fast::hash(&h[..16]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes a block header, returning the block's first sequence.
pub fn decode_block_header(buf: &[u8]) -> Result<u64, DecodeError> {
    if buf.len() < BLOCK_HEADER_LEN {
        return Err(DecodeError::Truncated {
            needed: BLOCK_HEADER_LEN,
            have: buf.len(),
        });
    }
    let crc = u32::from_le_bytes(le4(&buf[16..]));
    if buf[..4] != BLOCK_MAGIC
        || u16::from_le_bytes([buf[4], buf[5]]) != BLOCK_VERSION
        || crc32fast::hash(&buf[..16]) != crc
    {
        return Err(DecodeError::BadBlockHeader);
    }
    Ok(u64::from_le_bytes(le8(&buf[8..])))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn msg_round_trip_with_and_without_headers() {
        let mut buf = Vec::new();
        encode_msg(&mut buf, 7, 99, b"a.b", Some(b"NATS/1.0\r\n\r\n"), b"hello");
        encode_msg(&mut buf, 8, 100, b"c", None, b"");
        let r1 = decode(&buf).unwrap();
        assert_eq!(r1.kind, RecordKind::Msg);
        assert_eq!((r1.seq, r1.ts, r1.subject), (7, 99, &b"a.b"[..]));
        assert_eq!(r1.headers, Some(&b"NATS/1.0\r\n\r\n"[..]));
        assert_eq!(r1.payload, b"hello");
        assert_eq!(r1.len, record_len(3, 12, 5));
        let r2 = decode(&buf[r1.len..]).unwrap();
        assert_eq!((r2.seq, r2.headers, r2.payload), (8, None, &b""[..]));
    }

    #[test]
    fn markers_and_scrub() {
        let mut buf = Vec::new();
        encode_tombstone(&mut buf, 5, 1);
        let t = decode(&buf).unwrap();
        assert_eq!(
            (t.kind, t.seq, t.len),
            (RecordKind::Tombstone, 5, MIN_RECORD_LEN)
        );
        buf.clear();
        encode_floor(&mut buf, 9, 1);
        assert_eq!(decode(&buf).unwrap().kind, RecordKind::Floor);
        buf.clear();
        encode_msg(&mut buf, 3, 1, b"s", None, b"secret");
        assert!(scrub_in_place(&mut buf, || 0xAA));
        let s = decode(&buf).unwrap();
        assert_eq!((s.kind, s.seq), (RecordKind::Tombstone, 3));
        assert!(!buf.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn every_truncation_and_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode_msg(&mut buf, 1, 2, b"foo", Some(b"h"), b"payload");
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x01;
            assert!(decode(&b).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn block_header_round_trip() {
        let h = encode_block_header(42);
        assert_eq!(decode_block_header(&h), Ok(42));
        let mut bad = h;
        bad[9] ^= 1;
        assert_eq!(decode_block_header(&bad), Err(DecodeError::BadBlockHeader));
    }
}
