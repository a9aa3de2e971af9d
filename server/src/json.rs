//! JSON request bodies read the way nats-server reads them.
//!
//! nats-server decodes every JetStream request with Go's `encoding/json`, where a `null`
//! member leaves the field as it was: `{"max_msgs": null}` means "not set", exactly like
//! leaving the member out. Clients rely on it (nats.py's current generation sends `null` for
//! every unset number in a stream or consumer config). serde would instead refuse `null`
//! for a plain `u64`, so every request body goes through [`from_request`], which applies that
//! one rule to every member at every depth instead of marking fields one by one.
//!
//! The API requests proper (not pull requests, acks or resets, which nats-server reads
//! leniently) go through [`from_api_request`], which with `jetstream { strict: true }` (the
//! default, as on nats-server) also refuses a member the request type does not have, with
//! Go's `json: unknown field "x"`.
//!
//! The enum members (`retention`, `ack_policy`, ...) have their own decoders in Go, which see
//! the raw JSON, `null` included: for those a `null` is refused like any unknown name, so
//! [`drop_null_members`] keeps it and [`go_enum`] refuses it in Go's words.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Request members whose Go type decodes itself and so refuses `null`.
const SELF_DECODING_MEMBERS: &[&str] = &[
    "retention",
    "storage",
    "discard",
    "compression",
    "persist_mode",
    "deliver_policy",
    "ack_policy",
    "replay_policy",
    "priority_policy",
    "action",
];

/// How an enum member's names compare with the JSON string.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameCase {
    Exact,
    /// `discard` is the one member Go compares lower-cased (`"OLD"` is `old`).
    Folded,
}

/// Decodes an enum member the way its Go decoder does: one of `names`, or an error built by
/// `refusal` from the raw JSON text (a string with its quotes, a number, `null`).
pub(crate) fn go_enum<'de, D: Deserializer<'de>, T: Copy>(
    d: D,
    names: &[(&str, T)],
    case: NameCase,
    refusal: fn(&str) -> String,
) -> Result<T, D::Error> {
    let raw = Value::deserialize(d)?;
    if let Some(text) = raw.as_str() {
        let text = match case {
            NameCase::Exact => std::borrow::Cow::Borrowed(text),
            NameCase::Folded => std::borrow::Cow::Owned(text.to_lowercase()),
        };
        if let Some((_, value)) = names.iter().find(|(name, _)| *name == text) {
            return Ok(*value);
        }
    }
    Err(D::Error::custom(refusal(&raw.to_string())))
}

/// The refusal most of Go's enum decoders give: `can not unmarshal "\"bogus\""`.
pub(crate) fn cannot_unmarshal(raw: &str) -> String {
    format!("can not unmarshal {raw:?}")
}

/// Decodes a request body with Go's meaning of `null`: a `null` member is the same as an
/// absent one, and a body that is only `null` sets nothing at all.
pub(crate) fn from_request<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    // Most bodies hold no `null`: decode them directly, without the intermediate tree.
    if memchr::memmem::find(body, b"null").is_none() {
        return serde_json::from_slice(body);
    }
    let mut value: Value = serde_json::from_slice(body)?;
    if value.is_null() {
        value = Value::Object(serde_json::Map::new());
    }
    drop_null_members(&mut value);
    T::deserialize(value)
}

/// [`from_request`] for an API request: with `strict`, a member `T` does not know is an
/// error (`json: unknown field "<name>"`, as Go's decoder words it). Members `T` keeps as raw
/// JSON are not looked into.
pub(crate) fn from_api_request<T: DeserializeOwned>(
    body: &[u8],
    strict: bool,
) -> Result<T, String> {
    if !strict {
        return from_request(body).map_err(|e| e.to_string());
    }
    let mut value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if value.is_null() {
        value = Value::Object(serde_json::Map::new());
    }
    drop_null_members(&mut value);
    let mut unknown = None;
    let decoded: T = serde_ignored::deserialize(value, |path| {
        unknown.get_or_insert_with(|| path.to_string());
    })
    .map_err(|e| e.to_string())?;
    match unknown {
        Some(path) => {
            let field = path.rsplit('.').next().unwrap_or(&path);
            Err(format!("json: unknown field {field:?}"))
        }
        None => Ok(decoded),
    }
}

/// Removes every `null` object member, at any depth, except those Go hands to a decoder of
/// their own (array elements are left alone: Go zeroes those, and no request carries one).
fn drop_null_members(value: &mut Value) {
    match value {
        Value::Object(members) => {
            members
                .retain(|name, v| !v.is_null() || SELF_DECODING_MEMBERS.contains(&name.as_str()));
            members.values_mut().for_each(drop_null_members);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null_members),
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq, Default)]
    struct Inner {
        #[serde(default)]
        n: u64,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    struct Outer {
        #[serde(default = "seven")]
        n: i64,
        #[serde(default)]
        s: String,
        #[serde(default)]
        inner: Inner,
        #[serde(default)]
        list: Vec<Inner>,
    }

    fn seven() -> i64 {
        7
    }

    #[test]
    fn null_members_are_unset_at_every_depth() {
        let v: Outer =
            from_request(br#"{"n":null,"s":null,"inner":{"n":null},"list":[{"n":null}]}"#).unwrap();
        assert_eq!(
            v,
            Outer {
                n: 7,
                s: String::new(),
                inner: Inner { n: 0 },
                list: vec![Inner { n: 0 }],
            }
        );
    }

    #[test]
    fn a_null_body_sets_nothing() {
        let v: Outer = from_request(b" null ").unwrap();
        assert_eq!(v.n, 7);
    }

    #[test]
    fn null_inside_a_string_is_just_text() {
        let v: Outer = from_request(br#"{"s":"null"}"#).unwrap();
        assert_eq!(v.s, "null");
    }

    #[test]
    fn strict_requests_refuse_unknown_members_at_any_depth() {
        let ok: Outer = from_api_request(br#"{"n":1,"inner":{"n":2}}"#, true).unwrap();
        assert_eq!((ok.n, ok.inner.n), (1, 2));
        let top = from_api_request::<Outer>(br#"{"n":1,"x":2}"#, true).unwrap_err();
        assert_eq!(top, r#"json: unknown field "x""#);
        let deep = from_api_request::<Outer>(br#"{"inner":{"y":null,"z":1}}"#, true).unwrap_err();
        assert_eq!(deep, r#"json: unknown field "z""#);
        let lenient: Outer = from_api_request(br#"{"n":1,"x":2}"#, false).unwrap();
        assert_eq!(lenient.n, 1);
    }

    #[derive(Debug, Clone, Copy, PartialEq, Default)]
    enum Policy {
        #[default]
        Old,
        New,
    }

    impl<'de> Deserialize<'de> for Policy {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            go_enum(
                d,
                &[("old", Policy::Old), ("new", Policy::New)],
                NameCase::Folded,
                cannot_unmarshal,
            )
        }
    }

    #[derive(Debug, Deserialize)]
    struct WithPolicy {
        #[serde(default)]
        n: u64,
        #[serde(default)]
        discard: Policy,
    }

    #[test]
    fn self_decoding_members_refuse_null_and_unknown_names_in_gos_words() {
        let ok: WithPolicy = from_request(br#"{"n":null,"discard":"NEW"}"#).unwrap();
        assert_eq!((ok.n, ok.discard), (0, Policy::New));
        for (body, refusal) in [
            (&br#"{"discard":null}"#[..], r#"can not unmarshal "null""#),
            (
                br#"{"discard":"bogus"}"#,
                r#"can not unmarshal "\"bogus\"""#,
            ),
            (br#"{"discard":""}"#, r#"can not unmarshal "\"\"""#),
            (br#"{"discard":1}"#, r#"can not unmarshal "1""#),
        ] {
            let err = from_api_request::<WithPolicy>(body, true).unwrap_err();
            assert_eq!(err, refusal, "{}", String::from_utf8_lossy(body));
            let err = from_request::<WithPolicy>(body).unwrap_err().to_string();
            assert!(err.starts_with(refusal), "{err}");
        }
    }

    #[test]
    fn wrong_types_are_still_refused() {
        assert!(from_request::<Outer>(br#"{"n":"x","s":null}"#).is_err());
        assert!(from_request::<Outer>(br#"{"n":"x"}"#).is_err());
    }
}
