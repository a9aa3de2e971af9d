//! Counter streams (`allow_msg_counter`, ADR-49): each subject holds a running total that
//! publishes change with a `Nats-Incr: <signed integer>` header and an empty payload. The
//! stream stores the new total as `{"val":"<total>"}` (arbitrary precision, as nats-server's
//! big integers) and the PubAck carries it as `"val"`. Pure functions over headers and
//! payloads; the stream's publish path calls them.
//!
//! A counter stream that sources other counter streams adds them up: a copy carries the
//! origin's total for its subject, the stream remembers per origin stream and origin subject
//! the last total it saw (`Nats-Counter-Sources: {"<origin>":{"<subject>":"<total>"}}`, kept
//! on every later update of the subject) and adds the difference, which it also stores as
//! the copy's `Nats-Incr`. Totals and the per-origin values live only in the stored
//! messages, so they survive a restart as the messages do.

use std::collections::BTreeMap;

use num_bigint::BigInt;

use super::headers;
use crate::js_errors::{ApiError, JsError};

/// Header that carries an increment.
pub(crate) const INCR: &str = "Nats-Incr";
/// Header that carries the totals seen from each source stream; kept on every update.
pub(crate) const SOURCES: &str = "Nats-Counter-Sources";

/// The increment of a publish: `Ok(None)` without the header, 10171 when it is not an
/// integer.
pub(crate) fn increment(value: Option<&str>) -> Result<Option<BigInt>, ApiError> {
    match value {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<BigInt>()
            .map(Some)
            .map_err(|_| JsError::MessageIncrInvalid.into()),
    }
}

/// The total in a counter message's payload (`{"val":"N"}`); 10172 when it is not one.
fn value_of(payload: &[u8]) -> Result<BigInt, ApiError> {
    #[derive(serde::Deserialize)]
    struct Value {
        // A payload without it reads as zero on nats-server.
        #[serde(default)]
        val: String,
    }
    let value: Value = serde_json::from_slice(payload)
        .map_err(|_| ApiError::from(JsError::MessageCounterBroken))?;
    // nats-server reads a value that is not a number as zero.
    Ok(value.val.parse().unwrap_or_default())
}

/// The last total seen per origin stream and origin subject.
type Sources = BTreeMap<String, BTreeMap<String, String>>;

/// What a counter stream stores for one update of a subject.
#[derive(Debug)]
pub(crate) struct Counted {
    pub(crate) payload: Vec<u8>,
    /// The new total, for the PubAck.
    pub(crate) val: String,
    /// The message's headers when they change (`Nats-Incr` of a copy, the per-origin totals).
    pub(crate) headers: Option<Vec<u8>>,
}

/// The update of `subject` by a message with increment `incr`, `headers` and `payload`,
/// given the subject's last stored message (`payload`, headers). A message that carries
/// `Nats-Stream-Source` (a copy from another counter stream) counts as the difference
/// between the origin's total in its payload and the last one seen from that origin subject.
pub(crate) fn update(
    last: Option<(&[u8], Option<&[u8]>)>,
    mut incr: BigInt,
    subject: &[u8],
    headers: Option<&[u8]>,
    payload: &[u8],
) -> Result<Counted, ApiError> {
    let mut start = BigInt::default();
    let mut sources = Sources::new();
    if let Some((last_payload, last_headers)) = last {
        start = value_of(last_payload)?;
        let kept = last_headers
            .and_then(|h| headers::get(h, SOURCES))
            .filter(|v| !v.is_empty());
        if let Some(kept) = kept {
            sources = serde_json::from_str(kept)
                .map_err(|_| ApiError::from(JsError::MessageCounterBroken))?;
        }
    }
    let mut out: Option<Vec<u8>> = None;
    let origin = headers
        .and_then(|h| headers::get(h, super::sourcing::STREAM_SOURCE))
        .filter(|v| !v.is_empty());
    if let Some(origin) = origin {
        // `<origin> <seq> <filter> <dest> <origin subject> [<identity>]`.
        let fields: Vec<&str> = origin.split(' ').collect();
        let stream = fields[0].to_string();
        let origin_subject = match fields.get(4) {
            Some(s) => (*s).to_string(),
            None => String::from_utf8_lossy(subject).into_owned(),
        };
        let total = value_of(payload)?;
        let seen = sources.entry(stream).or_default();
        let previous: BigInt = seen
            .insert(origin_subject, total.to_string())
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        incr = total - previous;
        out = Some(headers::set(headers, INCR, &incr.to_string()));
    }
    let total = start + incr;
    if !sources.is_empty() {
        let block = out.as_deref().or(headers);
        out = Some(headers::set(block, SOURCES, &sources_json(&sources)));
    }
    let (payload, val) = payload_and_val(&total);
    Ok(Counted {
        payload,
        val,
        headers: out,
    })
}

/// The per-origin totals as nats-server writes them: keys sorted, and `<`, `>`, `&` escaped
/// as Go's JSON encoder does (they can only occur inside strings).
fn sources_json(sources: &Sources) -> String {
    let plain = serde_json::to_string(sources).unwrap_or_default();
    let mut out = String::with_capacity(plain.len());
    for c in plain.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The payload stored for a total, and the `val` of its PubAck.
fn payload_and_val(total: &BigInt) -> (Vec<u8>, String) {
    let val = total.to_string();
    (format!("{{\"val\":\"{val}\"}}").into_bytes(), val)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn increments_add_up_with_big_integers() {
        let start = BigInt::default();
        let big = increment(Some("99999999999999999999999999"))
            .unwrap()
            .unwrap();
        let (p, val) = payload_and_val(&(start + big + increment(Some("-9")).unwrap().unwrap()));
        assert_eq!(val, "99999999999999999999999990");
        assert_eq!(value_of(&p).unwrap().to_string(), val);
        assert_eq!(increment(None).unwrap(), None);
        assert_eq!(increment(Some("1.5")).unwrap_err().err_code, 10171);
        assert_eq!(value_of(b"hello").unwrap_err().err_code, 10172);
        assert_eq!(value_of(b"{}").unwrap().to_string(), "0");
    }

    fn copy(seq: u64, subject: &str, total: &str) -> (Vec<u8>, Vec<u8>) {
        let source = format!("A {seq} a.* s.$1 {subject} ident");
        let h = headers::append(None, &[(INCR, "999"), ("Nats-Stream-Source", &source)]);
        (h, format!("{{\"val\":\"{total}\"}}").into_bytes())
    }

    #[test]
    fn copies_add_the_difference_and_remember_each_origin() {
        let one = |v: &str| v.parse::<BigInt>().unwrap();
        // The first copy of a.x: the origin's total is the difference.
        let (h, p) = copy(1, "a.x", "5");
        let first = update(None, one("999"), b"s.x", Some(&h), &p).unwrap();
        assert_eq!(first.val, "5");
        let fh = first.headers.unwrap();
        assert_eq!(headers::get(&fh, INCR), Some("5"));
        assert_eq!(headers::get(&fh, SOURCES), Some(r#"{"A":{"a.x":"5"}}"#));
        // An own increment keeps what was seen from the origins.
        let own = headers::append(None, &[(INCR, "100")]);
        let mine = update(
            Some((&first.payload, Some(&fh))),
            one("100"),
            b"s.x",
            Some(&own),
            b"",
        )
        .unwrap();
        assert_eq!(mine.val, "105");
        let mh = mine.headers.unwrap();
        assert_eq!(
            mh,
            b"NATS/1.0\r\nNats-Incr: 100\r\nNats-Counter-Sources: {\"A\":{\"a.x\":\"5\"}}\r\n\r\n"
        );
        // The origin went down to 3 and another origin subject maps onto the same subject.
        let (h, p) = copy(2, "a.x", "3");
        let down = update(
            Some((&mine.payload, Some(&mh))),
            one("1"),
            b"s.x",
            Some(&h),
            &p,
        )
        .unwrap();
        assert_eq!(down.val, "103");
        let dh = down.headers.unwrap();
        assert_eq!(headers::get(&dh, INCR), Some("-2"));
        let (h, p) = copy(3, "a<&>", "7");
        let other = update(
            Some((&down.payload, Some(&dh))),
            one("7"),
            b"s.x",
            Some(&h),
            &p,
        )
        .unwrap();
        assert_eq!(other.val, "110");
        assert_eq!(
            headers::get(&other.headers.unwrap(), SOURCES),
            Some(r#"{"A":{"a.x":"3","a\u003c\u0026\u003e":"7"}}"#)
        );
        // Broken per-origin totals, or a copy that is no counter, are refused.
        let broken = headers::append(None, &[(SOURCES, "[1]")]);
        let err = update(Some((b"{}", Some(&broken))), one("1"), b"s.x", None, b"").unwrap_err();
        assert_eq!(err.err_code, 10172);
        let (h, _) = copy(4, "a.x", "1");
        let err = update(None, one("1"), b"s.x", Some(&h), b"nope").unwrap_err();
        assert_eq!(err.err_code, 10172);
    }
}
