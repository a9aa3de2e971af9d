//! The `mappings` / `maps` block (top level or in an account): each entry maps a source
//! subject to a destination string, one weighted destination map, or a list of them.
//! Each mapping is checked by the same code that applies it.

use super::{lower, Ctx};
use crate::config::options::{MapDest, SubjectMapping};
use crate::config::parser::{Entry, Node, Span, Value};
use crate::mapping::Mapping;

/// The block's mappings in file order; invalid ones are reported and left out.
pub(super) fn mappings(cx: &mut Ctx, e: &Entry) -> Vec<SubjectMapping> {
    let Some(m) = cx.map(e) else {
        return Vec::new();
    };
    let mut out: Vec<SubjectMapping> = Vec::new();
    for me in &m.entries {
        let src = me.key.as_str();
        if !crate::subject::is_valid_subject(src.as_bytes()) {
            cx.err(
                &e.key_span,
                format!("Subject {src:?} is not a valid subject"),
            );
            continue;
        }
        let (dests, single) = match &me.value.value {
            Value::Str(dest) => (
                vec![MapDest {
                    subject: dest.clone(),
                    weight: 100,
                    cluster: String::new(),
                }],
                Some(dest.as_str()),
            ),
            Value::Array(items) => {
                let dests: Vec<MapDest> = items
                    .iter()
                    .filter_map(|n| map_dest(cx, n, &n.span))
                    .collect();
                (dests, None)
            }
            _ => match map_dest(cx, &me.value, &me.key_span) {
                Some(d) => (vec![d], None),
                None => continue,
            },
        };
        let mapping = SubjectMapping {
            src: src.to_string(),
            dests,
        };
        if let Err(problem) = Mapping::new(&mapping) {
            let msg = match single {
                Some(dest) => format!("Error adding mapping for {src:?} to {dest:?} : {problem}"),
                None => format!("Error adding mapping for {src:?} : {problem}"),
            };
            cx.err(&me.key_span, msg);
            continue;
        }
        // A repeated source replaces the earlier one in its place.
        match out.iter_mut().find(|o| o.src == mapping.src) {
            Some(existing) => *existing = mapping,
            None => out.push(mapping),
        }
    }
    out
}

/// One `{destination, weight, cluster}` map; `at` is where its problems are reported.
fn map_dest(cx: &mut Ctx, node: &Node, at: &Span) -> Option<MapDest> {
    let Value::Map(m) = &node.value else {
        cx.err(at, "Expected an entry for the mapping destination");
        return None;
    };
    let mut dest = MapDest::default();
    let mut weighted = false;
    for e in &m.entries {
        match lower(e).as_str() {
            "dest" | "destination" => dest.subject = cx.string(e)?,
            "weight" => {
                let weight = match &e.value.value {
                    Value::Str(s) => {
                        let s = s.strip_suffix('%').unwrap_or(s);
                        match s.parse::<i64>() {
                            Ok(w) => w,
                            Err(_) => {
                                cx.err(
                                    &e.key_span,
                                    format!("Invalid weight {s:?} for mapping destination"),
                                );
                                return None;
                            }
                        }
                    }
                    Value::Int(w) => *w,
                    _ => {
                        cx.err(
                            &e.key_span,
                            format!("Unknown entry type for weight of {}", super::value_text(e)),
                        );
                        return None;
                    }
                };
                match u8::try_from(weight).ok().filter(|w| *w <= 100) {
                    Some(w) => dest.weight = w,
                    None => {
                        cx.err(
                            &e.key_span,
                            format!("Invalid weight {weight} for mapping destination"),
                        );
                        return None;
                    }
                }
                weighted = true;
            }
            "cluster" => dest.cluster = cx.string(e)?,
            _ => {
                cx.err(
                    &e.key_span,
                    format!("Unknown field {:?} for mapping destination", e.key),
                );
                return None;
            }
        }
    }
    if !weighted {
        cx.err(
            at,
            format!("Missing weight for mapping destination {:?}", dest.subject),
        );
        return None;
    }
    Some(dest)
}
