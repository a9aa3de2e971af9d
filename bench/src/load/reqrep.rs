//! Sequential request/reply: one responder echoing payloads, one requester
//! timing each round trip.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::proto::{ClientConn, Credentials, Frame, FrameReader, ProtoError, DEFAULT_READ_BUFFER};

/// A responder answering every request on `subject` with the same payload.
pub struct Responder {
    writer: TcpStream,
    thread: JoinHandle<Result<u64, String>>,
}

impl Responder {
    /// Connects, subscribes and starts answering.
    pub fn start(addr: SocketAddr, creds: &Credentials, subject: &str) -> Result<Self, ProtoError> {
        let mut conn = ClientConn::connect(addr, creds, DEFAULT_READ_BUFFER)?;
        conn.subscribe(subject, None, 1)?;
        let reply_writer = conn.writer.try_clone()?;
        let thread = std::thread::Builder::new()
            .name("bench-responder".into())
            .spawn(move || answer(conn.reader, reply_writer))?;
        Ok(Self {
            writer: conn.writer,
            thread,
        })
    }

    /// Stops the responder after it has answered everything queued; returns
    /// the number of requests answered.
    pub fn stop(mut self) -> Result<u64, String> {
        self.writer
            .write_all(b"PING\r\n")
            .map_err(|e| e.to_string())?;
        self.thread
            .join()
            .map_err(|_| "responder thread panicked".to_string())?
    }
}

fn answer(mut reader: FrameReader<TcpStream>, mut writer: TcpStream) -> Result<u64, String> {
    let mut answered = 0u64;
    let mut out = Vec::with_capacity(64 * 1024);
    loop {
        let mut finished = false;
        while let Some(frame) = reader.next_frame().map_err(|e| e.to_string())? {
            match frame {
                Frame::Msg(msg) => {
                    if let Some(reply) = msg.reply {
                        out.extend_from_slice(b"PUB ");
                        out.extend_from_slice(reply);
                        out.extend_from_slice(format!(" {}\r\n", msg.payload.len()).as_bytes());
                        out.extend_from_slice(msg.payload);
                        out.extend_from_slice(b"\r\n");
                        answered += 1;
                    }
                }
                Frame::Ping => out.extend_from_slice(b"PONG\r\n"),
                Frame::Pong => {
                    finished = true;
                    break;
                }
                Frame::Err(text) => return Err(String::from_utf8_lossy(text).into_owned()),
                Frame::Ok | Frame::Info(_) => {}
            }
        }
        // One write per read batch: a single request is answered at once,
        // a burst is answered with one syscall.
        if !out.is_empty() {
            writer.write_all(&out).map_err(|e| e.to_string())?;
            out.clear();
        }
        if finished {
            return Ok(answered);
        }
        match reader.fill() {
            Ok(0) => return Err("connection closed by server".into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Sends `warmup + count` requests one after the other and returns the
/// round-trip times of the last `count`, in nanoseconds, sorted ascending.
pub fn timed_requests(
    addr: SocketAddr,
    creds: &Credentials,
    subject: &str,
    payload_len: usize,
    warmup: u64,
    count: u64,
) -> Result<Vec<u64>, ProtoError> {
    let mut conn = ClientConn::connect(addr, creds, DEFAULT_READ_BUFFER)?;
    let inbox = format!("_INBOX.bench.{}", std::process::id());
    conn.subscribe(&inbox, None, 1)?;
    let mut request = format!("PUB {subject} {inbox} {payload_len}\r\n").into_bytes();
    request.resize(request.len() + payload_len, b'r');
    request.extend_from_slice(b"\r\n");

    let mut samples = Vec::with_capacity(count as usize);
    for i in 0..warmup + count {
        let sent = Instant::now();
        conn.writer.write_all(&request)?;
        loop {
            let got_reply = conn.reader.read_frame(|frame| match frame {
                Frame::Msg(_) => Ok(true),
                Frame::Err(text) => Err(ProtoError::Refused(
                    String::from_utf8_lossy(text).into_owned(),
                )),
                Frame::Ping | Frame::Pong | Frame::Ok | Frame::Info(_) => Ok(false),
            })??;
            if got_reply {
                break;
            }
        }
        if i >= warmup {
            samples.push(sent.elapsed().as_nanos() as u64);
        }
    }
    samples.sort_unstable();
    Ok(samples)
}
