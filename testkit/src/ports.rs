//! Free ports on 127.0.0.1. Tests never bind the default ports (4222, 6222, 8222, ...).

use std::net::TcpListener;

/// A port that was free a moment ago. Racy by nature: [`crate::TestServer`] retries a start
/// whose port was taken meanwhile.
pub fn free_port() -> u16 {
    try_free_port().expect("bind 127.0.0.1:0")
}

/// [`free_port`] for a program that reports errors instead of panicking (the benchmark).
pub fn try_free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A port `p` such that `p..p+count` are all free on 127.0.0.1 (node i of a local cluster
/// takes base+i). Taken below the kernel's ephemeral range: a cluster test kills a node and
/// starts it again on the same ports, and a port of that range, once free, can be taken
/// meanwhile by any outgoing connection or by another test's port 0.
pub fn free_port_range(count: u16) -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.saturating_sub(count));
    for _ in 0..200 {
        let base = if high > low {
            fastrand::u16(low..high)
        } else {
            free_port()
        };
        if base > u16::MAX - count {
            continue;
        }
        if (0..count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no {count} consecutive free ports");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_free_and_below_the_ephemeral_ports() {
        let base = free_port_range(3);
        for port in base..base + 3 {
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
