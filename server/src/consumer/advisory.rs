//! JetStream advisories and metrics (`$JS.EVENT.ADVISORY.…`, `$JS.EVENT.METRIC.…`): one
//! envelope around each event's own fields, for consumers, streams and the API alike.
//! nats-server writes `type`, `id` and `timestamp` first, then the event's fields in order;
//! [`body`] does the same with the event's `Serialize` struct.
//!
//! It lives beside the consumers because they are the lowest JetStream layer that sends
//! events; `jetstream/` (streams, the API) uses it from here.

use serde::Serialize;

use natsd_conf::timestamp::rfc3339_ns;

/// An event's JSON body: `type` (`io.nats.jetstream.advisory.v1.<event>` or
/// `io.nats.jetstream.metric.v1.<event>`), a fresh `id`, the current `timestamp`, then the
/// fields of `event`.
pub(crate) fn body<T: Serialize>(kind: &str, event: &T) -> Vec<u8> {
    #[derive(Serialize)]
    struct Envelope<'a, T> {
        #[serde(rename = "type")]
        kind: &'a str,
        id: String,
        timestamp: String,
        #[serde(flatten)]
        event: &'a T,
    }
    let envelope = Envelope {
        kind,
        id: id(),
        timestamp: rfc3339_ns(crate::store::now_ns()),
        event,
    };
    serde_json::to_vec(&envelope).unwrap_or_default()
}

/// An event's `id`: random, as long as the nuid nats-server uses (22 characters).
fn id() -> String {
    (0..22).map(|_| fastrand::alphanumeric()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_comes_first_then_the_events_fields_in_order() {
        #[derive(Serialize)]
        struct Event<'a> {
            stream: &'a str,
            seq: u64,
            #[serde(skip_serializing_if = "str::is_empty")]
            reason: &'a str,
        }
        let kind = "io.nats.jetstream.advisory.v1.test";
        let text = String::from_utf8(body(
            kind,
            &Event {
                stream: "S\"1",
                seq: 7,
                reason: "",
            },
        ))
        .unwrap();
        let prefix = format!("{{\"type\":\"{kind}\",\"id\":\"");
        assert!(text.starts_with(&prefix), "{text}");
        assert!(
            text.ends_with(",\"stream\":\"S\\\"1\",\"seq\":7}"),
            "{text}"
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["id"].as_str().unwrap().len(), 22);
        let timestamp = value["timestamp"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "{timestamp}"
        );
        assert_ne!(
            body(kind, &()),
            body(kind, &()),
            "each event has its own id"
        );
    }
}
