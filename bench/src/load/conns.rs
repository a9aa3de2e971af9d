//! Opening many connections: idle ones held open, and authenticated
//! connect/disconnect storms.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::proto::{ClientConn, Credentials, ProtoError};

/// Read buffer for connections that only ever see INFO and PONG.
const SMALL_BUFFER: usize = 4096;

/// Opens `count` connections one after another, each completing CONNECT and
/// a PING/PONG, and returns them open.
pub fn open_idle(
    addr: SocketAddr,
    creds: &Credentials,
    count: usize,
) -> Result<Vec<ClientConn>, ProtoError> {
    (0..count)
        .map(|_| ClientConn::connect(addr, creds, SMALL_BUFFER))
        .collect()
}

/// Performs `count` sequential connect → CONNECT → PING/PONG → close cycles
/// and returns the elapsed time.
pub fn connect_storm(
    addr: SocketAddr,
    creds: &Credentials,
    count: usize,
) -> Result<Duration, ProtoError> {
    let started = Instant::now();
    for _ in 0..count {
        drop(ClientConn::connect(addr, creds, SMALL_BUFFER)?);
    }
    Ok(started.elapsed())
}
