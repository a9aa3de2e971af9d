//! Load generators: raw-protocol publishers, subscribers, request/reply and
//! connection openers. Each speaks through [`crate::proto`] with no client library.

pub mod conns;
pub mod publisher;
pub mod reqrep;
pub mod subscriber;

/// Writes the message's sequence number into the first bytes of its payload
/// so receivers can check exactly-once delivery.
pub fn stamp_sequence(payload: &mut [u8], seq: u64) {
    let bytes = seq.to_le_bytes();
    let n = payload.len().min(bytes.len());
    payload[..n].copy_from_slice(&bytes[..n]);
}

/// Reads back the sequence number written by [`stamp_sequence`]; `None` if the
/// payload is too short to hold one.
pub fn read_sequence(payload: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_round_trips_and_short_payloads_are_skipped() {
        let mut payload = vec![b'x'; 16];
        stamp_sequence(&mut payload, 0x0102_0304_0506_0708);
        assert_eq!(read_sequence(&payload), Some(0x0102_0304_0506_0708));
        assert_eq!(&payload[8..], b"xxxxxxxx");
        let mut short = [0u8; 4];
        stamp_sequence(&mut short, 7);
        assert_eq!(read_sequence(&short), None);
    }
}
