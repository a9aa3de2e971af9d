//! Account subject mappings: a client's publish to a subject matching a mapping's source is
//! routed as if published to one of its destinations, picked at random by weight. Mappings
//! come from the top-level `mappings` block (the global account), an account's `mappings`
//! block, or an account JWT's `mappings` claim; the destinations are
//! [`SubjectTransform`]s.
//!
//! The first mapping (in the order given) whose source matches wins. When the weights add up
//! to less than 100, the rest of the messages keep their subject, unless the source is itself
//! one of the destinations: then the rest are dropped.

use rustc_hash::FxHashMap;

use crate::subject_transform::SubjectTransform;

/// A subject mapping: a publish to a subject matching `src` goes to one of the destinations
/// instead, chosen by weight.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectMapping {
    pub src: String,
    pub dests: Vec<MapDest>,
}

/// One destination of a [`SubjectMapping`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapDest {
    pub subject: String,
    /// Percent, 0-100.
    pub weight: u8,
    /// Applies only in this cluster (empty: everywhere).
    pub cluster: String,
}

/// Where a mapping sends a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mapped {
    /// To this subject.
    To(String),
    /// Nowhere: the weights left this message without a destination.
    Dropped,
}

/// One destination with the running total of the weights up to it.
#[derive(Debug)]
struct Dest {
    transform: SubjectTransform,
    upto: u8,
}

/// A validated mapping.
#[derive(Debug)]
pub(crate) struct Mapping {
    src: String,
    wildcard: bool,
    dests: Vec<Dest>,
    /// Destinations scoped to a cluster: a single node is in no cluster, so only the
    /// unscoped ones apply; these are kept to be shown.
    clustered: Vec<(String, Vec<Dest>)>,
}

/// `*` tokens as `$1`, `$2`...: a destination that keeps the subject as published.
fn same_subject(src: &str) -> String {
    let mut n = 0;
    src.split('.')
        .map(|t| {
            if t == "*" {
                n += 1;
                format!("${n}")
            } else {
                t.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

impl Mapping {
    /// Validates a mapping; the error is nats-server's wording (without the `Error adding
    /// mapping for ...` prefix the configuration adds).
    pub(crate) fn new(m: &SubjectMapping) -> Result<Mapping, String> {
        if !crate::subject::is_valid_subject(m.src.as_bytes()) {
            return Err("invalid subject".to_string());
        }
        let wildcard = m.src.split('.').any(|t| t == "*" || t == ">");
        let mut seen: Vec<&str> = Vec::new();
        let mut totals: FxHashMap<&str, u32> = FxHashMap::default();
        let mut dests = Vec::new();
        let mut clustered: FxHashMap<String, Vec<Dest>> = FxHashMap::default();
        for d in &m.dests {
            if seen.contains(&d.subject.as_str()) {
                return Err(format!("duplicate entry for {:?}", d.subject));
            }
            seen.push(&d.subject);
            if d.weight > 100 {
                return Err("individual weights need to be <= 100".to_string());
            }
            let total = totals.entry(&d.cluster).or_default();
            *total += u32::from(d.weight);
            if *total > 100 {
                return Err("total weight needs to be <= 100".to_string());
            }
            SubjectTransform::validate(&m.src, &d.subject).map_err(|e| e.to_string())?;
            let transform = SubjectTransform::new(&m.src, &d.subject)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "invalid subject".to_string())?;
            let dest = Dest {
                transform,
                upto: d.weight,
            };
            if d.cluster.is_empty() {
                dests.push(dest);
            } else {
                clustered.entry(d.cluster.clone()).or_default().push(dest);
            }
        }
        let has_src = seen.contains(&m.src.as_str());
        let finish = |mut dests: Vec<Dest>| -> Result<Vec<Dest>, String> {
            let total: u32 = dests.iter().map(|d| u32::from(d.upto)).sum();
            if total != 100 && !has_src {
                let keep = SubjectTransform::new(&m.src, &same_subject(&m.src))
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| "invalid subject".to_string())?;
                let rest = if dests.is_empty() {
                    100
                } else {
                    100 - u8::try_from(total).unwrap_or(100)
                };
                dests.push(Dest {
                    transform: keep,
                    upto: rest,
                });
            }
            dests.sort_by_key(|d| d.upto);
            let mut sum = 0u8;
            for d in &mut dests {
                sum = sum.saturating_add(d.upto);
                d.upto = sum;
            }
            Ok(dests)
        };
        let dests = finish(dests)?;
        let mut clustered = clustered
            .into_iter()
            .map(|(k, v)| finish(v).map(|v| (k, v)))
            .collect::<Result<Vec<_>, _>>()?;
        clustered.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Mapping {
            src: m.src.clone(),
            wildcard,
            dests,
            clustered,
        })
    }

    fn matches(&self, subject: &str) -> bool {
        if self.wildcard {
            crate::subject::matches(self.src.as_bytes(), subject.as_bytes())
        } else {
            self.src == subject
        }
    }

    fn select(&self, subject: &str) -> Mapped {
        let pick = if self.dests.len() == 1 && self.dests[0].upto == 100 {
            self.dests.first()
        } else {
            let w = fastrand::u8(..100);
            self.dests.iter().find(|d| w < d.upto)
        };
        match pick {
            Some(d) => d
                .transform
                .apply(subject)
                .map_or_else(|| Mapped::To(subject.to_string()), Mapped::To),
            None => Mapped::Dropped,
        }
    }
}

/// A destination as `/accountz` shows it: the weight is the running total in ascending
/// order, and the kept-subject share of the weights is listed too.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct DestInfo {
    pub subject: String,
    pub weight: u8,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster: String,
}

/// An account's mappings, in order.
#[derive(Debug, Default)]
pub(crate) struct Mappings {
    list: Vec<Mapping>,
}

impl Mappings {
    /// The valid ones of `configs`; the configuration was validated when it was loaded, and
    /// (as nats-server does) an account JWT's invalid mapping is left out.
    pub(crate) fn build(account: &str, configs: &[SubjectMapping]) -> Mappings {
        let mut list: Vec<Mapping> = Vec::with_capacity(configs.len());
        for c in configs {
            match Mapping::new(c) {
                Ok(m) => match list.iter_mut().find(|e| e.src == m.src) {
                    Some(existing) => *existing = m,
                    None => list.push(m),
                },
                Err(e) => {
                    tracing::warn!("Account {account}: mapping for {:?} left out: {e}", c.src)
                }
            }
        }
        Mappings { list }
    }

    /// Each mapping's source and destinations, for `/accountz`.
    pub(crate) fn describe(&self) -> Vec<(String, Vec<DestInfo>)> {
        self.list
            .iter()
            .map(|m| {
                let info = |cluster: &str, d: &Dest| DestInfo {
                    subject: d.transform.dest().to_string(),
                    weight: d.upto,
                    cluster: cluster.to_string(),
                };
                let mut dests: Vec<DestInfo> = m.dests.iter().map(|d| info("", d)).collect();
                for (cluster, scoped) in &m.clustered {
                    dests.extend(scoped.iter().map(|d| info(cluster, d)));
                }
                (m.src.clone(), dests)
            })
            .collect()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Where a publish to `subject` goes; `None` when no mapping matches.
    pub(crate) fn map(&self, subject: &[u8]) -> Option<Mapped> {
        let subject = std::str::from_utf8(subject).ok()?;
        self.list
            .iter()
            .find(|m| m.matches(subject))
            .map(|m| m.select(subject))
    }
}

/// A mapping to a single destination at full weight.
#[cfg(test)]
fn single(src: &str, dest: &str) -> SubjectMapping {
    SubjectMapping {
        src: src.to_string(),
        dests: vec![MapDest {
            subject: dest.to_string(),
            weight: 100,
            cluster: String::new(),
        }],
    }
}

/// An account JWT's `mappings` claim as mappings (a destination without a weight has 100).
pub(crate) fn from_claims(
    claims: &std::collections::BTreeMap<String, Vec<crate::jwt::MappingClaim>>,
) -> Vec<SubjectMapping> {
    claims
        .iter()
        .map(|(src, dests)| SubjectMapping {
            src: src.clone(),
            dests: dests
                .iter()
                .map(|d| MapDest {
                    subject: d.subject.clone(),
                    weight: if d.weight == 0 { 100 } else { d.weight },
                    cluster: d.cluster.clone(),
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn weighted(src: &str, dests: &[(&str, u8, &str)]) -> SubjectMapping {
        SubjectMapping {
            src: src.to_string(),
            dests: dests
                .iter()
                .map(|(s, w, c)| MapDest {
                    subject: s.to_string(),
                    weight: *w,
                    cluster: c.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn plain_and_wildcard() {
        let m = Mappings::build(
            "A",
            &[single("a", "b"), single("x.*.*", "y.$2.{{wildcard(1)}}")],
        );
        assert_eq!(m.map(b"a"), Some(Mapped::To("b".into())));
        assert_eq!(m.map(b"x.1.2"), Some(Mapped::To("y.2.1".into())));
        assert_eq!(m.map(b"c"), None);
        assert_eq!(m.map(b"x.1"), None);
    }

    #[test]
    fn weights_split_and_leave_the_rest() {
        let m = Mappings::build("A", &[weighted("w", &[("x", 30, ""), ("y", 30, "")])]);
        let mut counts = FxHashMap::default();
        for _ in 0..3000 {
            let Some(Mapped::To(s)) = m.map(b"w") else {
                panic!("unmapped")
            };
            *counts.entry(s).or_insert(0) += 1;
        }
        for s in ["x", "y", "w"] {
            let n = counts.get(s).copied().unwrap_or(0);
            assert!((600..1500).contains(&n), "{s}: {n}");
        }
        let lossy = Mappings::build("A", &[weighted("w", &[("w", 10, "")])]);
        let dropped = (0..1000)
            .filter(|_| lossy.map(b"w") == Some(Mapped::Dropped))
            .count();
        assert!(dropped > 700, "{dropped}");
    }

    #[test]
    fn clustered_entries_fall_back_to_the_rest() {
        let m = Mapping::new(&weighted("c", &[("d", 100, "east")])).unwrap();
        assert_eq!(m.select("c"), Mapped::To("c".into()));
    }

    #[test]
    fn errors() {
        let e = |m: SubjectMapping| Mapping::new(&m).unwrap_err();
        assert_eq!(e(single("a..b", "c")), "invalid subject");
        assert_eq!(
            e(weighted("a", &[("b", 60, ""), ("c", 60, "")])),
            "total weight needs to be <= 100"
        );
        assert_eq!(
            e(weighted("a", &[("b", 10, ""), ("b", 10, "")])),
            "duplicate entry for \"b\""
        );
        assert_eq!(
            e(single("a.*", "b.$2")),
            "invalid mapping destination: wildcard index out of range in $2: [2]"
        );
        assert!(Mapping::new(&weighted("a", &[("b", 60, "e"), ("c", 60, "")])).is_ok());
    }
}
