//! Subject transforms: `src` → `dest` rewrites of literal subjects, as streams use them
//! (`subject_transform`, `republish`, a source's or mirror's `subject_transforms`).
//!
//! A destination is a subject whose tokens are literals, the trailing `>` (when the source
//! ends in `>`), `$N` (the N-th `*` of the source) or a mapping function in double braces:
//! `{{wildcard(N)}}`, `{{partition(buckets[, N...])}}`, `{{splitFromLeft(N, pos)}}`,
//! `{{splitFromRight(N, pos)}}`, `{{sliceFromLeft(N, size)}}`, `{{sliceFromRight(N, size)}}`,
//! `{{split(N, delimiter)}}`, `{{left(N, len)}}`, `{{right(N, len)}}` and `{{random(n)}}`.
//! Function names take either case on the first letter of each word (`SplitFromLeft`,
//! `splitfromleft`), as nats-server's patterns do.
//!
//! Parsing validates once; [`SubjectTransform::apply`] then only walks tokens. The error
//! texts are nats-server's, since clients see them inside API errors
//! (`stream transform: invalid mapping destination: ...`).

use std::fmt;

/// Whether `token` is a wildcard reference (`$1`, `$2`, ...).
pub(crate) fn is_reference(token: &str) -> bool {
    token.len() > 1 && token.starts_with('$') && token[1..].bytes().all(|b| b.is_ascii_digit())
}

/// The subject a service import subscribes to: its local subject with wildcard references
/// (`a.$1.$2`) as wildcards (`a.*.*`).
pub(crate) fn references_as_wildcards(subject: &str) -> String {
    subject
        .split('.')
        .map(|t| if is_reference(t) { "*" } else { t })
        .collect::<Vec<_>>()
        .join(".")
}

/// Why a transform is refused; `Display` gives nats-server's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TransformError {
    /// Source or destination is not a valid subject, or their `>` do not correspond.
    BadSubject,
    /// A destination problem, with the offending token when there is one.
    Destination {
        /// The kind of problem.
        kind: DestinationError,
        /// The token (empty when the whole destination is at fault).
        token: String,
    },
}

/// The kinds of destination errors nats-server distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DestinationError {
    /// An empty token, a token after `>`, or whitespace.
    InvalidTransform,
    /// `{{...}}` naming no known function.
    UnknownFunction,
    /// A wildcard index the source does not have.
    IndexOutOfRange,
    /// Too few arguments.
    NotEnoughArgs,
    /// An argument that is not what the function takes.
    InvalidArg,
    /// Too many arguments.
    TooManyArgs,
}

impl fmt::Display for TransformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransformError::BadSubject => f.write_str("invalid subject"),
            TransformError::Destination { kind, token } => {
                let what = match kind {
                    DestinationError::InvalidTransform => "invalid transform",
                    DestinationError::UnknownFunction => "unknown function",
                    DestinationError::IndexOutOfRange => "wildcard index out of range",
                    DestinationError::NotEnoughArgs => {
                        "not enough arguments passed to the function"
                    }
                    DestinationError::InvalidArg => {
                        "function argument is invalid or in the wrong format"
                    }
                    DestinationError::TooManyArgs => "too many arguments passed to the function",
                };
                write!(f, "invalid mapping destination: {what}")?;
                if !token.is_empty() {
                    write!(f, " in {token}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for TransformError {}

fn dest_err(kind: DestinationError, token: &str) -> TransformError {
    TransformError::Destination {
        kind,
        token: token.to_string(),
    }
}

/// What one destination token produces. Indexes point into the source subject's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// The trailing `>`: the rest of the source subject.
    Rest,
    Wildcard(usize),
    Partition {
        buckets: u32,
        from: Vec<usize>,
    },
    SplitFromLeft(usize, i64),
    SplitFromRight(usize, i64),
    SliceFromLeft(usize, i64),
    SliceFromRight(usize, i64),
    Split(usize, String),
    Left(usize, i64),
    Right(usize, i64),
    Random(u32),
}

/// A validated transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubjectTransform {
    src: String,
    dest: String,
    src_tokens: usize,
    pieces: Vec<Piece>,
    identity: bool,
}

/// The functions, each as the words of its name (the first letter of each word may take
/// either case, the rest is lower case).
const FUNCTIONS: [(&[&str], Func); 10] = [
    (&["wildcard"], Func::Wildcard),
    (&["partition"], Func::Partition),
    (&["split", "from", "left"], Func::SplitFromLeft),
    (&["split", "from", "right"], Func::SplitFromRight),
    (&["slice", "from", "left"], Func::SliceFromLeft),
    (&["slice", "from", "right"], Func::SliceFromRight),
    (&["right"], Func::Right),
    (&["left"], Func::Left),
    (&["split"], Func::Split),
    (&["random"], Func::Random),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Wildcard,
    Partition,
    SplitFromLeft,
    SplitFromRight,
    SliceFromLeft,
    SliceFromRight,
    Right,
    Left,
    Split,
    Random,
}

fn name_is(name: &str, words: &[&str]) -> bool {
    let mut rest = name;
    for word in words {
        let Some(first) = rest.chars().next() else {
            return false;
        };
        if rest.len() < word.len()
            || !first.eq_ignore_ascii_case(&word.chars().next().unwrap_or(' '))
        {
            return false;
        }
        if rest[1..word.len()] != word[1..] {
            return false;
        }
        rest = &rest[word.len()..];
    }
    rest.is_empty()
}

/// A `{{ name(args) }}` token split into its function and raw argument text.
fn function_call(token: &str) -> Option<Result<(Func, &str), TransformError>> {
    if token.len() <= 4 || !token.starts_with("{{") || !token.ends_with("}}") {
        return None;
    }
    let inner = token[2..token.len() - 2].trim_matches(is_space);
    let unknown = || Some(Err(dest_err(DestinationError::UnknownFunction, token)));
    let Some(open) = inner.find('(') else {
        return unknown();
    };
    let Some(args) = inner[open + 1..].strip_suffix(')') else {
        return unknown();
    };
    let name = inner[..open].trim_end_matches(is_space);
    match FUNCTIONS.iter().find(|(words, _)| name_is(name, words)) {
        Some((_, func)) => Some(Ok((*func, args))),
        None => unknown(),
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Arguments split at commas (whitespace after a comma dropped).
fn split_args(args: &str) -> Vec<&str> {
    args.split(',')
        .enumerate()
        .map(|(i, a)| {
            if i == 0 {
                a
            } else {
                a.trim_start_matches(is_space)
            }
        })
        .collect()
}

fn int_arg(arg: &str, token: &str) -> Result<i64, TransformError> {
    arg.trim_matches(' ')
        .parse::<i64>()
        .map_err(|_| dest_err(DestinationError::InvalidArg, token))
}

/// A parsed destination token before its wildcard indexes are resolved.
enum Raw {
    Literal,
    Wildcard(i64),
    Partition(u32, Vec<i64>),
    IndexInt(Func, i64, i64),
    Split(i64, String),
    Random(u32),
}

fn parse_token(token: &str) -> Result<Raw, TransformError> {
    if token.len() > 1 && token.starts_with('$') {
        // `$foo` is a literal; only `$<number>` refers to a wildcard.
        return Ok(token[1..]
            .parse::<i64>()
            .map_or(Raw::Literal, Raw::Wildcard));
    }
    let (func, args) = match function_call(token) {
        None => return Ok(Raw::Literal),
        Some(call) => call?,
    };
    let args = split_args(args);
    let count = |min: usize, max: usize| {
        if args.len() < min || (min == 1 && args[0].is_empty()) {
            Err(dest_err(DestinationError::NotEnoughArgs, token))
        } else if args.len() > max {
            Err(dest_err(DestinationError::TooManyArgs, token))
        } else {
            Ok(())
        }
    };
    let bounded = |v: i64| {
        u32::try_from(v)
            .ok()
            .filter(|v| i32::try_from(*v).is_ok())
            .ok_or_else(|| dest_err(DestinationError::InvalidArg, token))
    };
    match func {
        Func::Wildcard => {
            count(1, 1)?;
            Ok(Raw::Wildcard(int_arg(args[0], token)?))
        }
        Func::Partition => {
            let buckets = bounded(int_arg(args[0], token)?)?;
            let from = args[1..]
                .iter()
                .map(|a| int_arg(a, token))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Raw::Partition(buckets, from))
        }
        Func::Split => {
            count(2, 2)?;
            let at = int_arg(args[0], token)?;
            if args[1].contains(' ') || args[1].contains('.') {
                return Err(dest_err(DestinationError::InvalidArg, token));
            }
            Ok(Raw::Split(at, args[1].to_string()))
        }
        Func::Random => {
            if args.len() != 1 {
                return Err(dest_err(DestinationError::NotEnoughArgs, token));
            }
            Ok(Raw::Random(bounded(int_arg(args[0], token)?)?))
        }
        other => {
            count(2, 2)?;
            let at = int_arg(args[0], token)?;
            let n = int_arg(args[1], token)?;
            if i32::try_from(n).is_err() {
                return Err(dest_err(DestinationError::InvalidArg, token));
            }
            Ok(Raw::IndexInt(other, at, n))
        }
    }
}

/// Validity of a subject for a transform: no empty token, nothing after `>`. Returns the
/// tokens, the number of `*` and whether it ends in `>`.
fn subject_info(subject: &str) -> Option<(Vec<&str>, usize, bool)> {
    if subject.is_empty() {
        return None;
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    let mut stars = 0;
    let mut full = false;
    for t in &tokens {
        if t.is_empty() || full {
            return None;
        }
        match *t {
            ">" => full = true,
            "*" => stars += 1,
            _ => {}
        }
    }
    Some((tokens, stars, full))
}

impl SubjectTransform {
    /// Parses `src` → `dest`. An empty `dest` means no transform (`Ok(None)`); an empty
    /// `src` means `>`.
    pub(crate) fn new(src: &str, dest: &str) -> Result<Option<SubjectTransform>, TransformError> {
        if dest.is_empty() {
            return Ok(None);
        }
        let src = if src.is_empty() { ">" } else { src };
        let (Some((src_tokens, stars, src_full)), Some((dest_tokens, dest_stars, dest_full))) =
            (subject_info(src), subject_info(dest))
        else {
            return Err(TransformError::BadSubject);
        };
        if dest_stars > 0 || src_full != dest_full {
            return Err(TransformError::BadSubject);
        }
        // Source token position of the n-th `*` (1-based n).
        let star_at: Vec<usize> = src_tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == "*")
            .map(|(i, _)| i)
            .collect();
        let has_wildcards = stars > 0 || src_full;
        let index = |n: i64, shown: String| -> Result<usize, TransformError> {
            if n > stars as i64 {
                return Err(dest_err(DestinationError::IndexOutOfRange, &shown));
            }
            // As in nats-server, index 0 (or below) refers to the first source token.
            Ok(usize::try_from(n - 1)
                .ok()
                .and_then(|i| star_at.get(i).copied())
                .unwrap_or(0))
        };
        let mut pieces = Vec::with_capacity(dest_tokens.len());
        for token in &dest_tokens {
            let raw = parse_token(token)?;
            if !has_wildcards {
                match raw {
                    Raw::Literal | Raw::Random(_) | Raw::Partition(..) => {}
                    _ => return Err(dest_err(DestinationError::IndexOutOfRange, token)),
                }
            }
            let at = |n: i64| index(n, format!("{token}: [{n}]"));
            pieces.push(match raw {
                Raw::Literal if *token == ">" => Piece::Rest,
                Raw::Literal => Piece::Literal((*token).to_string()),
                Raw::Wildcard(n) => Piece::Wildcard(at(n)?),
                Raw::Partition(buckets, from) => Piece::Partition {
                    buckets,
                    from: if has_wildcards {
                        from.into_iter().map(at).collect::<Result<_, _>>()?
                    } else {
                        Vec::new()
                    },
                },
                Raw::IndexInt(func, n, v) => {
                    let i = at(n)?;
                    match func {
                        Func::SplitFromLeft => Piece::SplitFromLeft(i, v),
                        Func::SplitFromRight => Piece::SplitFromRight(i, v),
                        Func::SliceFromLeft => Piece::SliceFromLeft(i, v),
                        Func::SliceFromRight => Piece::SliceFromRight(i, v),
                        Func::Left => Piece::Left(i, v),
                        _ => Piece::Right(i, v),
                    }
                }
                Raw::Split(n, delim) => Piece::Split(at(n)?, delim),
                Raw::Random(n) => Piece::Random(n),
            });
        }
        Ok(Some(SubjectTransform {
            src: src.to_string(),
            dest: dest.to_string(),
            src_tokens: src_tokens.len(),
            pieces,
            identity: src == ">" && dest == ">",
        }))
    }

    /// nats-server's check of a configured mapping: the destination's tokens are
    /// well-formed (mapping functions known, no whitespace) and the transform parses.
    pub(crate) fn validate(src: &str, dest: &str) -> Result<(), TransformError> {
        if dest.is_empty() {
            return Ok(());
        }
        let mut after_full = false;
        for token in dest.split('.') {
            if token.is_empty() || after_full {
                return Err(dest_err(DestinationError::InvalidTransform, token));
            }
            if let Some(call) = function_call(token) {
                // `left` and `right` are not in nats-server's list of known functions here.
                match call {
                    Ok((Func::Left | Func::Right, _)) | Err(_) => {
                        return Err(dest_err(DestinationError::UnknownFunction, token))
                    }
                    Ok(_) => continue,
                }
            }
            if token == ">" {
                after_full = true;
            } else if token.contains(is_space) {
                return Err(dest_err(DestinationError::InvalidTransform, ""));
            }
        }
        Self::new(src, dest).map(|_| ())
    }

    /// The destination as written.
    pub(crate) fn dest(&self) -> &str {
        &self.dest
    }

    /// Transforms `subject` when it matches the source; `None` when it does not (or is
    /// not a valid literal subject).
    pub(crate) fn apply(&self, subject: &str) -> Option<String> {
        if self.identity {
            return Some(subject.to_string());
        }
        if !crate::subject::is_valid_literal_subject(subject.as_bytes())
            || !(self.src == ">"
                || crate::subject::matches(self.src.as_bytes(), subject.as_bytes()))
        {
            return None;
        }
        let tokens: Vec<&str> = subject.split('.').collect();
        Some(self.render(&tokens))
    }

    fn render(&self, tokens: &[&str]) -> String {
        let mut out = String::with_capacity(self.dest.len() + 16);
        let tok = |i: usize| tokens.get(i).copied().unwrap_or("");
        let last = self.pieces.len().saturating_sub(1);
        for (n, piece) in self.pieces.iter().enumerate() {
            match piece {
                Piece::Rest => {
                    let from = self.src_tokens.saturating_sub(1);
                    out.push_str(&tokens[from.min(tokens.len())..].join("."));
                    return out;
                }
                Piece::Literal(s) => out.push_str(s),
                Piece::Wildcard(i) => out.push_str(tok(*i)),
                Piece::Partition { buckets, from } => {
                    let key = if from.is_empty() {
                        tokens.join(".")
                    } else {
                        from.iter().map(|&i| tok(i)).collect::<String>()
                    };
                    let bucket = if *buckets == 0 {
                        0
                    } else {
                        fnv1a32(key.as_bytes()) % buckets
                    };
                    out.push_str(itoa::Buffer::new().format(bucket));
                }
                Piece::SplitFromLeft(i, pos) => {
                    let t = tok(*i);
                    match usize::try_from(*pos).ok().filter(|&p| p > 0 && p < t.len()) {
                        Some(p) if t.is_char_boundary(p) => {
                            out.push_str(&t[..p]);
                            out.push('.');
                            out.push_str(&t[p..]);
                        }
                        _ => out.push_str(t),
                    }
                }
                Piece::SplitFromRight(i, pos) => {
                    let t = tok(*i);
                    match usize::try_from(*pos).ok().filter(|&p| p > 0 && p < t.len()) {
                        Some(p) if t.is_char_boundary(t.len() - p) => {
                            out.push_str(&t[..t.len() - p]);
                            out.push('.');
                            out.push_str(&t[t.len() - p..]);
                        }
                        _ => out.push_str(t),
                    }
                }
                Piece::SliceFromLeft(i, size) => {
                    let t = tok(*i);
                    match usize::try_from(*size)
                        .ok()
                        .filter(|&s| s > 0 && s < t.len())
                    {
                        Some(s) if t.is_ascii() => {
                            let parts: Vec<&str> = t
                                .as_bytes()
                                .chunks(s)
                                .map(|c| std::str::from_utf8(c).unwrap_or(""))
                                .collect();
                            out.push_str(&parts.join("."));
                        }
                        _ => out.push_str(t),
                    }
                }
                Piece::SliceFromRight(i, size) => {
                    let t = tok(*i);
                    match usize::try_from(*size)
                        .ok()
                        .filter(|&s| s > 0 && s < t.len())
                    {
                        Some(s) if t.is_ascii() => {
                            let head = t.len() % s;
                            let mut parts: Vec<&str> = Vec::new();
                            if head > 0 {
                                parts.push(&t[..head]);
                            }
                            parts.extend(
                                t.as_bytes()[head..]
                                    .chunks(s)
                                    .map(|c| std::str::from_utf8(c).unwrap_or("")),
                            );
                            out.push_str(&parts.join("."));
                        }
                        _ => out.push_str(t),
                    }
                }
                Piece::Split(i, delim) => {
                    let parts: Vec<&str> = if delim.is_empty() {
                        vec![tok(*i)]
                    } else {
                        tok(*i)
                            .split(delim.as_str())
                            .filter(|p| !p.is_empty())
                            .collect()
                    };
                    out.push_str(&parts.join("."));
                }
                Piece::Left(i, len) => {
                    let t = tok(*i);
                    match usize::try_from(*len).ok().filter(|&l| l > 0 && l < t.len()) {
                        Some(l) if t.is_char_boundary(l) => out.push_str(&t[..l]),
                        _ => out.push_str(t),
                    }
                }
                Piece::Right(i, len) => {
                    let t = tok(*i);
                    match usize::try_from(*len).ok().filter(|&l| l > 0 && l < t.len()) {
                        Some(l) if t.is_char_boundary(t.len() - l) => {
                            out.push_str(&t[t.len() - l..]);
                        }
                        _ => out.push_str(t),
                    }
                }
                Piece::Random(n) => {
                    let v = if *n == 0 { 0 } else { fastrand::u32(..) % n };
                    out.push_str(itoa::Buffer::new().format(v));
                }
            }
            if n < last {
                out.push('.');
            }
        }
        out
    }
}

/// 32-bit FNV-1a, the hash nats-server partitions with (so partitions agree with it).
fn fnv1a32(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tr(src: &str, dest: &str) -> SubjectTransform {
        SubjectTransform::new(src, dest).unwrap().unwrap()
    }

    #[test]
    fn prefixes_and_wildcards() {
        assert_eq!(
            tr(">", "transformed.>").apply("test").unwrap(),
            "transformed.test"
        );
        assert_eq!(tr("foo.>", "bar.>").apply("foo.a.b").unwrap(), "bar.a.b");
        assert_eq!(tr("foo.>", "bar.>").apply("baz.a"), None);
        assert_eq!(tr("a.*.*", "b.$2.$1").apply("a.x.y").unwrap(), "b.y.x");
        assert_eq!(
            tr("a.*.*", "b.{{wildcard(2)}}.{{ Wildcard(1) }}")
                .apply("a.x.y")
                .unwrap(),
            "b.y.x"
        );
        assert_eq!(tr("a.*", "lit").apply("a.q").unwrap(), "lit");
        assert_eq!(tr(">", ">").apply("any.thing").unwrap(), "any.thing");
        assert_eq!(tr("a.*", "$x.$1").apply("a.q").unwrap(), "$x.q");
        assert_eq!(SubjectTransform::new("a", "").unwrap(), None);
    }

    #[test]
    fn string_functions() {
        let t = tr("*", "{{splitFromLeft(1,3)}}");
        assert_eq!(t.apply("abcdef").unwrap(), "abc.def");
        assert_eq!(
            tr("*", "{{SplitFromRight(1,2)}}").apply("abcdef").unwrap(),
            "abcd.ef"
        );
        assert_eq!(
            tr("*", "{{sliceFromLeft(1,2)}}").apply("abcde").unwrap(),
            "ab.cd.e"
        );
        assert_eq!(
            tr("*", "{{sliceFromRight(1,2)}}").apply("abcde").unwrap(),
            "a.bc.de"
        );
        assert_eq!(tr("*", "{{split(1,-)}}").apply("-a--b-").unwrap(), "a.b");
        assert_eq!(tr("*", "{{left(1,2)}}").apply("abcde").unwrap(), "ab");
        assert_eq!(tr("*", "{{right(1,2)}}").apply("abcde").unwrap(), "de");
        assert_eq!(tr("*", "{{left(1,9)}}").apply("abc").unwrap(), "abc");
    }

    #[test]
    fn partitions_agree_with_fnv1a() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        let t = tr("*.*", "p.{{partition(10,1,2)}}");
        let expected = fnv1a32(b"ab") % 10;
        assert_eq!(t.apply("a.b").unwrap(), format!("p.{expected}"));
        let whole = tr("x", "{{partition(5)}}");
        assert_eq!(whole.apply("x").unwrap(), (fnv1a32(b"x") % 5).to_string());
    }

    #[test]
    fn errors_use_nats_server_wording() {
        let e = SubjectTransform::new("a.*", "b.$2").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid mapping destination: wildcard index out of range in $2: [2]"
        );
        assert_eq!(
            SubjectTransform::new("a.>", "b").unwrap_err(),
            TransformError::BadSubject
        );
        assert_eq!(
            SubjectTransform::new("a", "b.*").unwrap_err(),
            TransformError::BadSubject
        );
        let e = SubjectTransform::validate("a.*", "{{nope(1)}}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid mapping destination: unknown function in {{nope(1)}}"
        );
        let e = SubjectTransform::validate("a.*", "{{wildcard()}}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid mapping destination: not enough arguments passed to the function in {{wildcard()}}"
        );
        let e = SubjectTransform::validate("a.*", "b..c").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid mapping destination: invalid transform"
        );
        assert!(SubjectTransform::validate("a.*", "{{left(1,2)}}").is_err());
        assert!(SubjectTransform::new("a", "{{wildcard(1)}}").is_err());
        assert!(SubjectTransform::new("a", "p.{{partition(3)}}").is_ok());
    }

    #[test]
    fn only_matching_literal_subjects_transform() {
        let t = tr("orders.*", "o.$1");
        assert_eq!(t.apply("orders.*"), None);
        assert_eq!(t.apply("orders"), None);
        assert_eq!(t.apply("orders.1").unwrap(), "o.1");
    }
}
