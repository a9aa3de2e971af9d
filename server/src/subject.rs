//! Subjects: validation, tokens, wildcard matching.
//!
//! CONTRACT (implemented by the subject/sublist work):
//! - `is_valid_subject(s)`: valid for SUB (non-empty tokens, `>` only last, `*`/`>` only as whole tokens).
//! - `is_valid_literal_subject(s)`: valid and without wildcards (pedantic PUB, JetStream).
//! - `matches(pattern, literal)`: does the wildcard `pattern` match the literal subject?
//! - `is_subset(narrow, wide)`: is every subject matched by `narrow` also matched by `wide`?
//! - `collide(a, b)`: can some literal subject match both patterns (stream overlap)?

pub fn is_valid_subject(_s: &[u8]) -> bool {
    todo!()
}

pub fn is_valid_literal_subject(_s: &[u8]) -> bool {
    todo!()
}

pub fn matches(_pattern: &[u8], _literal: &[u8]) -> bool {
    todo!()
}

pub fn is_subset(_narrow: &[u8], _wide: &[u8]) -> bool {
    todo!()
}

pub fn collide(_a: &[u8], _b: &[u8]) -> bool {
    todo!()
}
