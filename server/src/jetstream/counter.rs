//! Counter streams (`allow_msg_counter`, ADR-49): each subject holds a running total that
//! publishes change with a `Nats-Incr: <signed integer>` header and an empty payload. The
//! stream stores the new total as `{"val":"<total>"}` (arbitrary precision, as nats-server's
//! big integers) and the PubAck carries it as `"val"`. Pure functions over headers and
//! payloads; the stream's publish path calls them.

use num_bigint::BigInt;

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

/// The total a subject holds, from its last stored message (`{"val":"N"}`); 10172 when that
/// message is not a counter.
pub(crate) fn total(last_payload: Option<&[u8]>) -> Result<BigInt, ApiError> {
    #[derive(serde::Deserialize)]
    struct Value {
        val: String,
    }
    let Some(payload) = last_payload else {
        return Ok(BigInt::default());
    };
    let value: Value = serde_json::from_slice(payload)
        .map_err(|_| ApiError::from(JsError::MessageCounterBroken))?;
    // nats-server reads a value that is not a number as zero.
    Ok(value.val.parse().unwrap_or_default())
}

/// The payload stored for a total, and the `val` of its PubAck.
pub(crate) fn payload(total: &BigInt) -> (Vec<u8>, String) {
    let val = total.to_string();
    (format!("{{\"val\":\"{val}\"}}").into_bytes(), val)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn increments_add_up_with_big_integers() {
        let start = total(None).unwrap();
        let big = increment(Some("99999999999999999999999999"))
            .unwrap()
            .unwrap();
        let (p, val) = payload(&(start + big + increment(Some("-9")).unwrap().unwrap()));
        assert_eq!(val, "99999999999999999999999990");
        assert_eq!(total(Some(&p)).unwrap().to_string(), val);
        assert_eq!(increment(None).unwrap(), None);
        assert_eq!(increment(Some("1.5")).unwrap_err().err_code, 10171);
        assert_eq!(total(Some(b"hello")).unwrap_err().err_code, 10172);
    }
}
