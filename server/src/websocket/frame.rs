//! WebSocket frames (RFC 6455 section 5) and permessage-deflate (RFC 7692): a decoder that
//! turns a client's frames into the protocol bytes they carry, however the client split or
//! merged them, and an encoder that frames what the server writes.

use bytes::{Buf, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const RSV23: u8 = 0x30;
const MASK: u8 = 0x80;

const OP_CONTINUATION: u8 = 0;
const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
pub(crate) const OP_CLOSE: u8 = 8;
pub(crate) const OP_PING: u8 = 9;
pub(crate) const OP_PONG: u8 = 10;

const MAX_CONTROL_PAYLOAD: usize = 125;
/// Frame size for browsers, which handle small frames better.
pub(crate) const BROWSER_FRAME_SIZE: usize = 4096;
/// Writes up to this size are not worth compressing.
const COMPRESS_THRESHOLD: usize = 64;
/// The tail a sync flush ends with; left off the wire, put back before inflating.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

pub(crate) const CLOSE_NORMAL: u16 = 1000;
pub(crate) const CLOSE_GOING_AWAY: u16 = 1001;
pub(crate) const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_NO_STATUS: u16 = 1005;
const CLOSE_INVALID_PAYLOAD: u16 = 1007;
pub(crate) const CLOSE_POLICY_VIOLATION: u16 = 1008;
pub(crate) const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;
pub(crate) const CLOSE_INTERNAL_ERROR: u16 = 1011;

/// A control frame the server must answer or send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    Pong(Vec<u8>),
    /// A close frame's payload (empty: no status).
    Close(Vec<u8>),
}

/// What decoding found besides data.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Keep reading.
    More,
    /// The client closed (answer with `reply`, if any, then end).
    Closed { reply: Option<Vec<u8>> },
}

/// A frame error: the close frame to send (1002 with the reason, or 1009) and end.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FrameError {
    pub(crate) status: u16,
    pub(crate) reason: String,
}

fn protocol_error(reason: impl Into<String>) -> FrameError {
    FrameError {
        status: CLOSE_PROTOCOL_ERROR,
        reason: reason.into(),
    }
}

/// The payload of a close frame: the status and a body cut to fit a control frame.
pub(crate) fn close_payload(status: u16, body: &str) -> Vec<u8> {
    let mut body = body;
    let mut cut = String::new();
    if body.len() > MAX_CONTROL_PAYLOAD - 2 {
        let mut end = MAX_CONTROL_PAYLOAD - 5;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        cut = format!("{}...", &body[..end]);
        body = &cut;
    }
    let mut p = Vec::with_capacity(2 + body.len());
    p.extend_from_slice(&status.to_be_bytes());
    p.extend_from_slice(body.as_bytes());
    drop(cut);
    p
}

fn valid_close_status(code: u16) -> bool {
    !matches!(code, 1004 | 1005 | 1006 | 1015)
        && (1000..5000).contains(&code)
        && !(1016..=2999).contains(&code)
}

/// Reads client frames. Uncompressed data is handed on as it arrives (a frame may be cut
/// anywhere); a compressed message is collected and inflated once its last frame is in.
pub(crate) struct Decoder {
    masked: bool,
    compress: bool,
    /// Largest inflated message (the server's max_payload: nothing larger can be valid).
    max_inflated: usize,
    /// Largest compressed message collected.
    max_compressed: usize,
    /// Inside a frame's payload: bytes left, the mask and where in it we are.
    remaining: u64,
    in_payload: bool,
    mask: [u8; 4],
    mask_pos: usize,
    /// The message's last frame has been seen (or no message is open).
    final_seen: bool,
    /// The open message is compressed.
    compressed: bool,
    collected: Vec<u8>,
    inflater: Option<Decompress>,
}

impl Decoder {
    pub(crate) fn new(masked: bool, compress: bool, max_payload: usize) -> Decoder {
        Decoder {
            masked,
            compress,
            max_inflated: max_payload,
            max_compressed: max_payload.saturating_mul(8).min(64 * 1024 * 1024),
            remaining: 0,
            in_payload: false,
            mask: [0; 4],
            mask_pos: 0,
            final_seen: true,
            compressed: false,
            collected: Vec::new(),
            inflater: None,
        }
    }

    /// Consume whole frame headers and any payload bytes from `input`, appending the data
    /// they carry to `out` and control answers to `control`.
    pub(crate) fn decode(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
        control: &mut Vec<Control>,
    ) -> Result<Decoded, FrameError> {
        loop {
            if self.in_payload {
                if input.is_empty() && self.remaining > 0 {
                    return Ok(Decoded::More);
                }
                let n = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                let mut chunk = input.split_to(n);
                self.unmask(&mut chunk);
                self.remaining -= n as u64;
                if self.compressed {
                    if self.collected.len() + chunk.len() > self.max_compressed {
                        return Err(FrameError {
                            status: CLOSE_MESSAGE_TOO_BIG,
                            reason: "Maximum Message Payload Exceeded".to_string(),
                        });
                    }
                    self.collected.extend_from_slice(&chunk);
                } else {
                    out.extend_from_slice(&chunk);
                }
                if self.remaining == 0 {
                    self.in_payload = false;
                    if self.compressed && self.final_seen {
                        self.inflate(out)?;
                    }
                }
                continue;
            }
            let Some((header_len, b0, len, mask)) = self.peek_header(input)? else {
                return Ok(Decoded::More);
            };
            let opcode = b0 & 0x0f;
            let fin = b0 & FIN != 0;
            if opcode >= OP_CLOSE {
                // Control frames are handled whole.
                let total = header_len + len as usize;
                if input.len() < total {
                    return Ok(Decoded::More);
                }
                input.advance(header_len);
                let mut payload = input.split_to(len as usize);
                if let Some(key) = mask {
                    for (i, b) in payload.iter_mut().enumerate() {
                        *b ^= key[i & 3];
                    }
                }
                match opcode {
                    OP_PING => control.push(Control::Pong(payload.to_vec())),
                    OP_PONG => {}
                    _ => {
                        return Ok(Decoded::Closed {
                            reply: close_reply(&payload)?,
                        })
                    }
                }
                continue;
            }
            input.advance(header_len);
            if opcode == OP_CONTINUATION {
                self.final_seen = fin;
            } else {
                self.final_seen = fin;
                self.compressed = b0 & RSV1 != 0;
            }
            self.remaining = len;
            self.mask = mask.unwrap_or([0; 4]);
            self.mask_pos = 0;
            self.in_payload = true;
            if len == 0 {
                // An empty frame: finish it at once (it may end a compressed message).
                self.in_payload = false;
                if self.compressed && self.final_seen {
                    self.inflate(out)?;
                }
            }
        }
    }

    /// A complete frame header at the front of `input`, checked: (its length, first byte,
    /// payload length, mask key).
    #[allow(
        clippy::type_complexity,
        reason = "a private tuple read once by the caller"
    )]
    fn peek_header(
        &self,
        input: &BytesMut,
    ) -> Result<Option<(usize, u8, u64, Option<[u8; 4]>)>, FrameError> {
        if input.len() < 2 {
            return Ok(None);
        }
        let b0 = input[0];
        let b1 = input[1];
        let opcode = b0 & 0x0f;
        let fin = b0 & FIN != 0;
        let rsv1 = b0 & RSV1 != 0;
        if b0 & RSV23 != 0 {
            return Err(protocol_error("RSV2 and RSV3 must be clear"));
        }
        if rsv1 && !self.compress {
            return Err(protocol_error(
                "compressed frame received without negotiated permessage-deflate",
            ));
        }
        let masked = b1 & MASK != 0;
        if self.masked && !masked {
            return Err(protocol_error("mask bit missing"));
        }
        let len7 = u64::from(b1 & 0x7f);
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if len7 > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(protocol_error(format!(
                        "control frame length bigger than maximum allowed of {MAX_CONTROL_PAYLOAD} bytes"
                    )));
                }
                if !fin {
                    return Err(protocol_error("control frame does not have final bit set"));
                }
                if rsv1 {
                    return Err(protocol_error("control frame must not be compressed"));
                }
            }
            OP_TEXT | OP_BINARY => {
                if !self.final_seen {
                    return Err(protocol_error(
                        "new message started before final frame for previous message was received",
                    ));
                }
            }
            OP_CONTINUATION => {
                if self.final_seen || rsv1 {
                    return Err(protocol_error("invalid continuation frame"));
                }
            }
            other => return Err(protocol_error(format!("unknown opcode {other}"))),
        }
        let mut pos = 2;
        let len = match len7 {
            126 => {
                if input.len() < pos + 2 {
                    return Ok(None);
                }
                let l = u64::from(u16::from_be_bytes([input[2], input[3]]));
                pos += 2;
                l
            }
            127 => {
                if input.len() < pos + 8 {
                    return Ok(None);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&input[2..10]);
                let l = u64::from_be_bytes(b);
                if l & (1 << 63) != 0 {
                    return Err(protocol_error("invalid 64-bit payload length"));
                }
                pos += 8;
                l
            }
            l => l,
        };
        let key = if masked {
            if input.len() < pos + 4 {
                return Ok(None);
            }
            let mut k = [0u8; 4];
            k.copy_from_slice(&input[pos..pos + 4]);
            pos += 4;
            Some(k)
        } else {
            None
        };
        Ok(Some((pos, b0, len, key)))
    }

    fn unmask(&mut self, chunk: &mut [u8]) {
        if !self.masked && self.mask == [0; 4] {
            return;
        }
        let mut p = self.mask_pos;
        for b in chunk.iter_mut() {
            *b ^= self.mask[p & 3];
            p += 1;
        }
        self.mask_pos = p & 3;
    }

    /// Inflate the collected message (no context is kept between messages).
    fn inflate(&mut self, out: &mut BytesMut) -> Result<(), FrameError> {
        self.collected.extend_from_slice(&SYNC_TAIL);
        let inflater = self.inflater.get_or_insert_with(|| Decompress::new(false));
        inflater.reset(false);
        let mut inflated = Vec::with_capacity(self.collected.len() * 4);
        let mut consumed = 0usize;
        loop {
            if inflated.len() == inflated.capacity() {
                inflated.reserve(inflated.capacity().max(4096));
            }
            let before_in = inflater.total_in();
            let before_out = inflater.total_out();
            let status = inflater
                .decompress_vec(
                    &self.collected[consumed..],
                    &mut inflated,
                    FlushDecompress::Sync,
                )
                .map_err(|e| protocol_error(format!("invalid compressed data: {e}")))?;
            let read = (inflater.total_in() - before_in) as usize;
            let wrote = inflater.total_out() - before_out;
            consumed += read;
            if inflated.len() > self.max_inflated {
                return Err(FrameError {
                    status: CLOSE_MESSAGE_TOO_BIG,
                    reason: "Maximum Message Payload Exceeded".to_string(),
                });
            }
            let room_left = inflated.len() < inflated.capacity();
            if status == Status::StreamEnd
                || (consumed >= self.collected.len() && room_left)
                || (read == 0 && wrote == 0 && room_left)
            {
                break;
            }
        }
        out.extend_from_slice(&inflated);
        self.collected.clear();
        self.compressed = false;
        Ok(())
    }
}

/// The answer to a client's close frame (echo its status; nothing for "no status").
fn close_reply(payload: &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(protocol_error("close frame payload cannot be 1 byte")),
        _ => {
            let status = u16::from_be_bytes([payload[0], payload[1]]);
            if !valid_close_status(status) {
                return Err(protocol_error(format!(
                    "invalid close status code {status}"
                )));
            }
            let body = &payload[2..];
            if std::str::from_utf8(body).is_err() {
                return Ok(Some(close_payload(
                    CLOSE_INVALID_PAYLOAD,
                    "invalid utf8 body in close frame",
                )));
            }
            if status == CLOSE_NO_STATUS {
                return Ok(None);
            }
            Ok(Some(payload.to_vec()))
        }
    }
}

/// Frames what the server writes: unmasked binary frames, compressed when agreed and worth it.
pub(crate) struct Encoder {
    compress: bool,
    /// Most payload bytes per frame (browsers); 0 = one frame per write.
    frame_size: usize,
    /// Do not split a compressed message into several frames (Safari).
    no_compressed_fragments: bool,
    deflater: Option<Compress>,
    scratch: Vec<u8>,
}

impl Encoder {
    pub(crate) fn new(compress: bool, browser: bool, no_compressed_fragments: bool) -> Encoder {
        Encoder {
            compress,
            frame_size: if browser { BROWSER_FRAME_SIZE } else { 0 },
            no_compressed_fragments,
            deflater: None,
            scratch: Vec::new(),
        }
    }

    /// Append `data` to `out` as one message (or, for browsers, several small ones).
    pub(crate) fn encode(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if data.is_empty() {
            return;
        }
        if self.compress && data.len() > COMPRESS_THRESHOLD && self.deflate(data) {
            let mut payload = std::mem::take(&mut self.scratch);
            let limit = if self.no_compressed_fragments {
                0
            } else {
                self.frame_size
            };
            if limit == 0 || payload.len() <= limit {
                write_header(out, FIN | RSV1 | OP_BINARY, payload.len());
                out.extend_from_slice(&payload);
            } else {
                // One message in several frames; only the first carries RSV1.
                let mut first = true;
                let mut rest = &payload[..];
                while !rest.is_empty() {
                    let n = rest.len().min(limit);
                    let last = n == rest.len();
                    let mut b0 = if first {
                        OP_BINARY | RSV1
                    } else {
                        OP_CONTINUATION
                    };
                    if last {
                        b0 |= FIN;
                    }
                    write_header(out, b0, n);
                    out.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    first = false;
                }
            }
            payload.clear();
            self.scratch = payload;
            return;
        }
        if self.frame_size == 0 {
            write_header(out, FIN | OP_BINARY, data.len());
            out.extend_from_slice(data);
        } else {
            for chunk in data.chunks(self.frame_size) {
                write_header(out, FIN | OP_BINARY, chunk.len());
                out.extend_from_slice(chunk);
            }
        }
    }

    /// Compress `data` into `scratch` without the sync-flush tail; false on a compressor error.
    fn deflate(&mut self, data: &[u8]) -> bool {
        let deflater = self
            .deflater
            .get_or_insert_with(|| Compress::new(Compression::fast(), false));
        deflater.reset();
        self.scratch.clear();
        self.scratch.reserve(data.len() / 2 + 64);
        let mut consumed = 0usize;
        loop {
            if self.scratch.capacity() - self.scratch.len() < 16 {
                self.scratch.reserve(self.scratch.capacity().max(1024));
            }
            let before_in = deflater.total_in();
            if deflater
                .compress_vec(&data[consumed..], &mut self.scratch, FlushCompress::Sync)
                .is_err()
            {
                return false;
            }
            consumed += (deflater.total_in() - before_in) as usize;
            // Done once all input is in and the flush did not run out of room.
            if consumed >= data.len() && self.scratch.len() < self.scratch.capacity() {
                break;
            }
        }
        if !self.scratch.ends_with(&SYNC_TAIL) {
            return false;
        }
        let len = self.scratch.len() - SYNC_TAIL.len();
        self.scratch.truncate(len);
        true
    }
}

/// A control frame (unmasked, never compressed).
pub(crate) fn control_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    write_header(out, FIN | opcode, payload.len());
    out.extend_from_slice(payload);
}

fn write_header(out: &mut Vec<u8>, b0: u8, len: usize) {
    out.push(b0);
    if len <= 125 {
        out.push(len as u8);
    } else if len < 65536 {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: masked with a fixed key.
    fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let key = [1u8, 2, 3, 4];
        let mut f = Vec::new();
        f.push(b0);
        let len = payload.len();
        if len <= 125 {
            f.push(MASK | len as u8);
        } else if len < 65536 {
            f.push(MASK | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(MASK | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
        f
    }

    fn decode_all(
        dec: &mut Decoder,
        bytes: &[u8],
        step: usize,
    ) -> (Vec<u8>, Vec<Control>, Decoded) {
        let mut input = BytesMut::new();
        let mut out = BytesMut::new();
        let mut control = Vec::new();
        let mut last = Decoded::More;
        for chunk in bytes.chunks(step) {
            input.extend_from_slice(chunk);
            last = dec
                .decode(&mut input, &mut out, &mut control)
                .expect("decodes");
        }
        (out.to_vec(), control, last)
    }

    #[test]
    fn data_survives_any_split_of_frames() {
        // A message in two frames, a ping between messages, a frame with a 64-bit length.
        let mut fixed = client_frame(OP_BINARY, b"PUB a 2\r\n");
        fixed.extend(client_frame(FIN | OP_CONTINUATION, b"hi\r\n"));
        fixed.extend(client_frame(FIN | OP_PING, b"p"));
        fixed.extend(client_frame(FIN | OP_BINARY, &vec![b'x'; 70_000]));
        for step in [1, 2, 3, 7, 4096, fixed.len()] {
            let mut dec = Decoder::new(true, false, 1 << 20);
            let (out, control, last) = decode_all(&mut dec, &fixed, step);
            assert_eq!(&out[..13], b"PUB a 2\r\nhi\r\n", "step {step}");
            assert_eq!(out.len(), 13 + 70_000, "step {step}");
            assert_eq!(control, vec![Control::Pong(b"p".to_vec())]);
            assert_eq!(last, Decoded::More);
        }
    }

    #[test]
    fn compressed_messages_round_trip_through_the_encoder() {
        let text = b"MSG orders.created 1 64\r\n".repeat(40);
        let mut enc = Encoder::new(true, false, false);
        let mut wire = Vec::new();
        enc.encode(&text, &mut wire);
        assert_eq!(wire[0] & RSV1, RSV1, "compressed");
        assert!(wire.len() < text.len() / 4, "compresses: {}", wire.len());
        // Mask it as a client would and decode it.
        let header = if wire[1] == 126 { 4 } else { 2 };
        let mut client = client_frame(wire[0], &wire[header..]);
        client.extend(client_frame(FIN | OP_BINARY, b"PING\r\n"));
        for step in [1, 5, client.len()] {
            let mut dec = Decoder::new(true, true, 1 << 20);
            let (out, _, _) = decode_all(&mut dec, &client, step);
            assert_eq!(&out[..text.len()], &text[..], "step {step}");
            assert_eq!(&out[text.len()..], b"PING\r\n");
        }
        // A browser gets the same message in frames of at most 4 KiB.
        let big: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut enc = Encoder::new(true, true, false);
        let mut wire = Vec::new();
        enc.encode(&big, &mut wire);
        assert_eq!(wire[0], OP_BINARY | RSV1, "first fragment, not final");
    }

    #[test]
    fn close_and_protocol_errors() {
        let mut dec = Decoder::new(true, false, 1024);
        let close = client_frame(FIN | OP_CLOSE, &close_payload(CLOSE_NORMAL, "bye"));
        let (_, _, last) = decode_all(&mut dec, &close, 1);
        assert_eq!(
            last,
            Decoded::Closed {
                reply: Some(close_payload(CLOSE_NORMAL, "bye"))
            }
        );

        let mut dec = Decoder::new(true, false, 1024);
        let mut input = BytesMut::from(&[FIN | OP_BINARY, 1, b'x'][..]);
        let err = dec
            .decode(&mut input, &mut BytesMut::new(), &mut Vec::new())
            .expect_err("unmasked");
        assert_eq!(err, protocol_error("mask bit missing"));

        let mut dec = Decoder::new(true, false, 1024);
        let mut input = BytesMut::from(&client_frame(FIN | RSV1 | OP_BINARY, b"x")[..]);
        let err = dec
            .decode(&mut input, &mut BytesMut::new(), &mut Vec::new())
            .expect_err("not negotiated");
        assert_eq!(err.status, CLOSE_PROTOCOL_ERROR);
    }

    #[test]
    fn close_bodies_are_cut_to_fit_a_control_frame() {
        let p = close_payload(CLOSE_GOING_AWAY, &"x".repeat(200));
        assert_eq!(p.len(), 125);
        assert!(p.ends_with(b"..."));
    }
}
