//! `config_digest`: what nats-server shows in `/varz`, prints after `-t` and logs on a reload,
//! computed the same way so the two servers agree on the digest of the same file.
//!
//! nats-server hashes the *parsed* configuration, not the file's bytes: the tree after includes
//! are merged and variables (including environment variables) are substituted, encoded as JSON
//! by Go's `encoding/json` (map keys sorted bytewise, HTML-sensitive characters escaped, a
//! trailing newline), then SHA-256, written `sha256:<hex>`. So comments, whitespace and the
//! order of keys do not change it, and the same file gives another digest under another
//! environment. The tests pin the output against `nats-server -t`.

use sha2::{Digest, Sha256};

use crate::parser::{Map, Node, Value};

/// `sha256:<hex>` of the parsed tree, as nats-server's `configDigest` computes it.
pub fn digest(root: &Map) -> String {
    let mut json = String::with_capacity(1024);
    write_map(&mut json, root);
    json.push('\n');
    format!("sha256:{}", hex::encode(Sha256::digest(json.as_bytes())))
}

fn write_map(out: &mut String, map: &Map) {
    // The map keeps the last of repeated keys already; Go's encoder sorts keys bytewise.
    let mut entries: Vec<_> = map.entries.iter().collect();
    entries.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
    out.push('{');
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, &entry.key);
        out.push(':');
        write_node(out, &entry.value);
    }
    out.push('}');
}

fn write_node(out: &mut String, node: &Node) {
    match &node.value {
        Value::Str(s) | Value::Date(s) => write_string(out, s),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&go_float(*f)),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Map(m) => write_map(out, m),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_node(out, item);
            }
            out.push(']');
        }
    }
}

/// A string as Go's `encoding/json` writes it with HTML escaping on (the encoder's default).
fn write_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let b = c as u32 as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[b >> 4]));
                out.push(char::from(HEX[b & 0xf]));
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float64 as Go's `encoding/json` writes it: the shortest decimal that reads back the same,
/// in exponent form below 1e-6 and from 1e21 on (`1e+21`, `1e-7`).
fn go_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let text = format!("{f:e}");
        match text.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => text,
        }
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_go_writes_them() {
        for (f, want) in [
            (0.5, "0.5"),
            (1.0, "1"),
            (1.5e-7, "1.5e-7"),
            (1e21, "1e+21"),
            (123456.789, "123456.789"),
            (-2.25, "-2.25"),
            (0.000001, "0.000001"),
        ] {
            assert_eq!(go_float(f), want);
        }
    }

    #[test]
    fn strings_as_go_writes_them() {
        let mut out = String::new();
        write_string(&mut out, "a<b>&\"\\\n\t\u{1}\u{8}é\u{2028}");
        assert_eq!(
            out,
            "\"a\\u003cb\\u003e\\u0026\\\"\\\\\\n\\t\\u0001\\bé\\u2028\""
        );
    }
}
