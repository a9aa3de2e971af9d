//! NATS header blocks (`NATS/1.0[ status]\r\nName: value\r\n...\r\n\r\n`): reading,
//! removing and appending headers, for the JetStream code that inspects or stamps messages
//! (streams, sources, republish, markers, counters, consumers). Names compare exactly, as
//! nats-server's lookups do.

/// The block of a message without headers of its own that gets some.
const EMPTY: &[u8] = b"NATS/1.0\r\n\r\n";

/// `(name, value)` pairs of a block, values trimmed; lines that are not UTF-8 or lack a
/// colon are skipped.
pub(crate) fn pairs(block: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    block
        .split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| std::str::from_utf8(line.strip_suffix(b"\r").unwrap_or(line)).ok())
        .filter_map(|line| {
            let (k, v) = line.split_once(':')?;
            Some((k, v.trim()))
        })
}

/// The value of header `name`, if the block has it.
pub(crate) fn get<'a>(block: &'a [u8], name: &str) -> Option<&'a str> {
    pairs(block).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// The block without the headers `drop` selects (by name); `None` when nothing is left
/// but the status line and it had no status.
pub(crate) fn remove(block: &[u8], drop: impl Fn(&str) -> bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(block.len());
    let mut lines = block.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or(b"NATS/1.0\r");
    out.extend_from_slice(first);
    out.push(b'\n');
    let mut kept = 0;
    for line in lines {
        let text = line.strip_suffix(b"\r").unwrap_or(line);
        if text.is_empty() {
            continue;
        }
        let name = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.split_once(':'))
            .map(|(k, _)| k);
        if name.is_some_and(&drop) {
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
        kept += 1;
    }
    out.extend_from_slice(b"\r\n");
    let bare = first.strip_suffix(b"\r").unwrap_or(first) == b"NATS/1.0";
    (kept > 0 || !bare).then_some(out)
}

/// `block` (or an empty one) with `name: value` lines appended.
pub(crate) fn append(block: Option<&[u8]>, extra: &[(&str, &str)]) -> Vec<u8> {
    let block = block.filter(|b| b.ends_with(b"\r\n\r\n")).unwrap_or(EMPTY);
    let mut out = Vec::with_capacity(block.len() + extra.len() * 32);
    out.extend_from_slice(&block[..block.len() - 2]);
    for (k, v) in extra {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `block` (or an empty one) with header `name` set to `value`: the first line of that name
/// keeps its place (and whether a space follows its colon), else the header is appended.
pub(crate) fn set(block: Option<&[u8]>, name: &str, value: &str) -> Vec<u8> {
    let Some(block) = block.filter(|b| b.ends_with(b"\r\n\r\n")) else {
        return append(None, &[(name, value)]);
    };
    let mut out = Vec::with_capacity(block.len() + value.len());
    let mut done = false;
    let mut lines = block.split_inclusive(|&b| b == b'\n');
    if let Some(first) = lines.next() {
        out.extend_from_slice(first);
    }
    for line in lines {
        let named = line
            .strip_prefix(name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b":"));
        match named {
            Some(rest) if !done => {
                out.extend_from_slice(name.as_bytes());
                out.push(b':');
                if rest.starts_with(b" ") {
                    out.push(b' ');
                }
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
                done = true;
            }
            _ => out.extend_from_slice(line),
        }
    }
    if done {
        out
    } else {
        append(Some(block), &[(name, value)])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn remove_and_append_round_trip() {
        let block = b"NATS/1.0\r\nA: 1\r\nNats-Expected-Stream: x\r\nB: 2\r\n\r\n";
        let kept = remove(block, |n| n.starts_with("Nats-Expected-")).unwrap();
        assert_eq!(kept, b"NATS/1.0\r\nA: 1\r\nB: 2\r\n\r\n");
        assert_eq!(
            remove(b"NATS/1.0\r\nNats-Expected-Stream: x\r\n\r\n", |_| true),
            None
        );
        let added = append(Some(&kept), &[("C", "3")]);
        assert_eq!(added, b"NATS/1.0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
        assert_eq!(append(None, &[("C", "3")]), b"NATS/1.0\r\nC: 3\r\n\r\n");
        assert_eq!(get(&added, "B"), Some("2"));
        assert_eq!(
            set(Some(&added), "B", "20"),
            b"NATS/1.0\r\nA: 1\r\nB: 20\r\nC: 3\r\n\r\n"
        );
        assert_eq!(
            set(Some(b"NATS/1.0\r\nBB:1\r\nB:2\r\n\r\n"), "B", "x"),
            b"NATS/1.0\r\nBB:1\r\nB:x\r\n\r\n"
        );
        assert_eq!(set(Some(&kept), "C", "3"), added);
        assert_eq!(set(None, "C", "3"), b"NATS/1.0\r\nC: 3\r\n\r\n");
    }
}
