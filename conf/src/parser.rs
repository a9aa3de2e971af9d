//! The nats.conf lexer and parser: text → a tree of [`Node`]s, each with its [`Span`].
//!
//! The lexer follows the grammar of nats-server's configuration lexer (including its quirks: `#`
//! inside a bare value is not a comment, `2m` is the integer two million, a stray `}` at top level
//! is tolerated); the parser resolves `include` and `$VARIABLE` references while it builds the
//! tree, so variables see exactly the keys defined before them in enclosing maps, as nats-server's
//! do.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::size::size_multiplier;

/// Where a key or value starts. `col` follows nats-server's arithmetic so error positions match
/// its output byte for byte: 0-based on line 1, and counted from the preceding newline (so
/// effectively 1-based) on later lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// An ISO 8601 Zulu timestamp, kept as written.
    Date(String),
    Map(Map),
    Array(Vec<Node>),
}

impl Value {
    /// The Go type name nats-server would print in an `interface conversion` error.
    pub fn go_type(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Int(_) => "int64",
            Value::Float(_) => "float64",
            Value::Bool(_) => "bool",
            Value::Date(_) => "time.Time",
            Value::Map(_) => "map[string]interface {}",
            Value::Array(_) => "[]interface {}",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// As written; option names are matched case-insensitively by the loader.
    pub key: String,
    pub key_span: Span,
    pub value: Node,
    /// Referenced as `$key` somewhere: such entries are variables, not unknown options.
    pub used_as_variable: bool,
}

/// A map keeps file order; a repeated key replaces the earlier entry (the last one wins).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Map {
    pub entries: Vec<Entry>,
    /// The keys in `entries`, so an insert scans the entries only for a repeated key (an
    /// `accounts` block of 1,000 tenants was quadratic otherwise).
    keys: rustc_hash::FxHashSet<String>,
}

impl Map {
    fn insert(&mut self, entry: Entry) {
        if !self.keys.insert(entry.key.clone()) {
            self.entries.retain(|e| e.key != entry.key);
        }
        self.entries.push(entry);
    }
}

/// Limits runaway recursion through `include` cycles and self-referencing environment variables.
const MAX_NESTING: usize = 16;

/// Where a `$NAME` that no enclosing map defines is looked up: the process environment for the
/// server, the deployment's settings for `manage`.
pub type Env<'e> = &'e dyn Fn(&str) -> Option<String>;

/// Parse text; `dir` resolves relative includes (`None`: relative to the working directory).
pub fn parse_text(
    text: &str,
    file: &str,
    dir: Option<PathBuf>,
    depth: usize,
    env: Env<'_>,
) -> Result<Map, String> {
    if depth > MAX_NESTING {
        return Err("too many nested includes or variable expansions".to_string());
    }
    let mut p = Parser {
        lx: Lexer {
            src: text.as_bytes(),
            pos: 0,
            line: 1,
            line_start: 0,
        },
        file: Arc::from(file),
        dir,
        depth,
        scopes: vec![Map::default()],
        env,
    };
    p.top()?;
    Ok(p.scopes.pop().unwrap_or_default())
}

pub(crate) fn io_message(path: &Path, e: &std::io::Error) -> String {
    let reason = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    format!("open {}: {reason}", path.display())
}

// ---------------------------------------------------------------------------------------------
// Lexer: character-level scanning.

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: u32,
    /// Byte index of the newline that started the current line (0 on line 1), as nats counts.
    line_start: usize,
}

fn is_space(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn is_nl(c: u8) -> bool {
    c == b'\n' || c == b'\r'
}

/// Characters that end a bare value.
fn ends_bare(c: Option<u8>) -> bool {
    match c {
        None => true,
        Some(c) => is_space(c) || is_nl(c) || matches!(c, b',' | b';' | b']' | b'}'),
    }
}

fn is_size_suffix(c: u8) -> bool {
    matches!(
        c.to_ascii_lowercase(),
        b'k' | b'm' | b'g' | b't' | b'p' | b'e'
    )
}

enum Scalar {
    Str(String),
    /// A bare word starting with `$`.
    Variable(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Date(String),
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn peek_at(&self, off: usize) -> Option<u8> {
        self.src.get(self.pos + off).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
            self.line_start = self.pos - 1;
        }
        Some(c)
    }

    fn col(&self) -> u32 {
        u32::try_from(self.pos - self.line_start).unwrap_or(u32::MAX)
    }

    fn text(&self, from: usize) -> String {
        String::from_utf8_lossy(&self.src[from..self.pos]).into_owned()
    }

    fn err(&self, msg: impl std::fmt::Display) -> String {
        format!("Parse error on line {}: '{msg}'", self.line)
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.bump();
        }
    }

    /// At `#` or `//`?
    fn at_comment(&self) -> bool {
        self.peek() == Some(b'#') || (self.peek() == Some(b'/') && self.peek_at(1) == Some(b'/'))
    }

    fn skip_comment(&mut self) {
        while self.peek().is_some_and(|c| c != b'\n') {
            self.bump();
        }
    }

    /// Skip whitespace, newlines and comments.
    fn skip_blank(&mut self) {
        loop {
            match self.peek() {
                Some(c) if is_space(c) || is_nl(c) => {
                    self.bump();
                }
                Some(_) if self.at_comment() => self.skip_comment(),
                _ => return,
            }
        }
    }

    /// A key: quoted, or bare up to whitespace, `=` or `:`. Returns (key, line, col).
    fn key(&mut self) -> Result<(String, u32, u32), String> {
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => {
                self.bump();
                let (line, col) = (self.line, self.col());
                let start = self.pos;
                while self.peek().is_some_and(|c| c != q && !is_nl(c)) {
                    self.bump();
                }
                if self.peek() != Some(q) {
                    return Err(self.err("Unexpected EOF processing quoted key."));
                }
                let key = self.text(start);
                self.bump();
                Ok((key, line, col))
            }
            Some(b'=' | b':') => Err(self.err("Key cannot start with a key separator.")),
            _ => {
                let (line, col) = (self.line, self.col());
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| !is_space(c) && !is_nl(c) && c != b'=' && c != b':')
                {
                    self.bump();
                }
                Ok((self.text(start), line, col))
            }
        }
    }

    /// After a key: optional whitespace (newlines too), then an optional `=`/`:` after which the
    /// value must start on the same line.
    fn key_separator(&mut self) -> Result<(), String> {
        while self.peek().is_some_and(|c| is_space(c) || is_nl(c)) {
            self.bump();
        }
        if matches!(self.peek(), Some(b'=' | b':')) {
            self.bump();
            self.skip_spaces();
            if self.peek().is_some_and(is_nl) {
                // nats-server reports this after consuming the newline.
                self.bump();
                return Err(self.err("Expected value but found new line"));
            }
        }
        if self.peek().is_none() {
            return Err(self.err("Unexpected EOF."));
        }
        Ok(())
    }

    fn double_quoted(&mut self) -> Result<String, String> {
        let mut out = Vec::new();
        loop {
            match self.bump() {
                None => return Err(self.err("Unexpected EOF.")),
                Some(b'"') => return Ok(String::from_utf8_lossy(&out).into_owned()),
                Some(b'\\') => match self.bump() {
                    Some(b't') => out.push(b'\t'),
                    Some(b'n') => out.push(b'\n'),
                    Some(b'r') => out.push(b'\r'),
                    Some(b'"') => out.push(b'"'),
                    Some(b'\\') => out.push(b'\\'),
                    Some(b'x') => {
                        let hex = [self.bump(), self.bump()];
                        let byte = match hex {
                            [Some(a), Some(b)] => std::str::from_utf8(&[a, b])
                                .ok()
                                .and_then(|h| u8::from_str_radix(h, 16).ok()),
                            _ => None,
                        };
                        match byte {
                            Some(b) => out.push(b),
                            None => {
                                return Err(self.err("Expected two hexadecimal digits after '\\x'"))
                            }
                        }
                    }
                    other => {
                        let shown = other.map(char::from).unwrap_or(' ');
                        return Err(self.err(format!(
                            "Invalid escape character '{shown}'. Only the following escape characters are allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\."
                        )));
                    }
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn single_quoted(&mut self) -> Result<String, String> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c != b'\'') {
            self.bump();
        }
        if self.peek().is_none() {
            return Err(self.err("Unexpected EOF."));
        }
        let s = self.text(start);
        self.bump();
        Ok(s)
    }

    /// `(` newline ... newline `)`: the text between the parentheses, verbatim.
    fn block(&mut self) -> Result<String, String> {
        let start = self.pos;
        loop {
            match self.bump() {
                None => return Err(self.err("Unexpected EOF processing block.")),
                Some(b'\n')
                    if self.peek() == Some(b')')
                        && matches!(self.peek_at(1), None | Some(b'\n')) =>
                {
                    let s = self.text(start);
                    self.bump();
                    return Ok(s);
                }
                Some(_) => {}
            }
        }
    }

    fn bare_rest(&mut self, start: usize) -> Scalar {
        while !ends_bare(self.peek()) {
            self.bump();
        }
        let s = self.text(start);
        let lower = s.to_ascii_lowercase();
        match lower.as_str() {
            "true" | "yes" | "on" => Scalar::Bool(true),
            "false" | "no" | "off" => Scalar::Bool(false),
            _ => match s.strip_prefix('$') {
                Some(name) => Scalar::Variable(name.to_string()),
                None => Scalar::Str(s),
            },
        }
    }

    /// A value starting with a digit or `-`: integer (with size suffix), float, date, or (once
    /// a character rules those out) a bare string such as `127.0.0.1:4222`.
    fn number_like(&mut self, start: usize, negative: bool) -> Result<Scalar, String> {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        match self.peek() {
            Some(b'-') if !negative => {
                if self.pos - start != 4 {
                    return Err(self.err("All ISO8601 dates must be in full Zulu form."));
                }
                while !ends_bare(self.peek()) {
                    self.bump();
                }
                let s = self.text(start);
                if !is_zulu_date(&s) {
                    return Err(self.err("All ISO8601 dates must be in full Zulu form."));
                }
                Ok(Scalar::Date(s))
            }
            Some(b'.') => {
                self.bump();
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.bump();
                }
                if ends_bare(self.peek()) {
                    let s = self.text(start);
                    return match s.parse::<f64>() {
                        Ok(f) => Ok(Scalar::Float(f)),
                        Err(_) => Err(self.err(format!("Invalid float value: \"{s}\""))),
                    };
                }
                Ok(self.bare_rest(start))
            }
            Some(c) if is_size_suffix(c) => {
                let digits_end = self.pos;
                self.bump();
                while self
                    .peek()
                    .is_some_and(|c| matches!(c, b'b' | b'B' | b'i' | b'I'))
                {
                    self.bump();
                }
                if !ends_bare(self.peek()) {
                    return Ok(self.bare_rest(start));
                }
                let raw = self.text(start);
                let digits = String::from_utf8_lossy(&self.src[start..digits_end]).into_owned();
                let suffix =
                    String::from_utf8_lossy(&self.src[digits_end..self.pos]).to_ascii_lowercase();
                let multiplier = size_multiplier(&suffix)
                    .ok_or_else(|| self.err(format!("Invalid size suffix in '{raw}'")))?;
                let n: i64 = digits
                    .parse()
                    .map_err(|_| self.err(format!("integer '{raw}' is out of the range")))?;
                n.checked_mul(multiplier)
                    .map(Scalar::Int)
                    .ok_or_else(|| self.err(format!("integer '{raw}' is out of the range")))
            }
            c if ends_bare(c) => {
                let raw = self.text(start);
                raw.parse::<i64>()
                    .map(Scalar::Int)
                    .map_err(|_| self.err(format!("integer '{raw}' is out of the range")))
            }
            _ if negative => {
                Err(self.err(format!("Expected a digit but got '{}'.", self.text(start))))
            }
            _ => Ok(self.bare_rest(start)),
        }
    }

    fn scalar(&mut self) -> Result<Scalar, String> {
        let start = self.pos;
        match self.peek() {
            Some(b'\'') => {
                self.bump();
                self.single_quoted().map(Scalar::Str)
            }
            Some(b'"') => {
                self.bump();
                self.double_quoted().map(Scalar::Str)
            }
            Some(b'(') => {
                self.bump();
                self.block().map(Scalar::Str)
            }
            Some(b'-') => {
                self.bump();
                match self.peek() {
                    Some(c) if c.is_ascii_digit() => self.number_like(start, true),
                    other => Err(self.err(format!(
                        "Expected a digit but got '{}'.",
                        other.map(char::from).unwrap_or(' ')
                    ))),
                }
            }
            Some(b'.') => Err(self.err("Floats must start with a digit")),
            Some(c) if c.is_ascii_digit() => self.number_like(start, false),
            Some(c) if is_nl(c) => Err(self.err("Expected value but found new line")),
            None => Err(self.err("Unexpected EOF.")),
            Some(_) => Ok(self.bare_rest(start)),
        }
    }
}

fn is_zulu_date(s: &str) -> bool {
    let b = s.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:ddZ";
    b.len() == shape.len()
        && b.iter().zip(shape).all(|(c, p)| {
            if *p == b'd' {
                c.is_ascii_digit()
            } else {
                c == p
            }
        })
}

// ---------------------------------------------------------------------------------------------
// Parser: structure, includes, variables.

struct Parser<'a, 'e> {
    lx: Lexer<'a>,
    file: Arc<str>,
    dir: Option<PathBuf>,
    depth: usize,
    /// Maps under construction, outermost first: the scopes variables are looked up in.
    scopes: Vec<Map>,
    env: Env<'e>,
}

impl Parser<'_, '_> {
    fn span(&self, line: u32, col: u32) -> Span {
        Span {
            file: self.file.clone(),
            line,
            col,
        }
    }

    fn top(&mut self) -> Result<(), String> {
        loop {
            self.lx.skip_blank();
            match self.lx.peek() {
                None => return Ok(()),
                // A file wrapped in braces, or a stray closing brace: nats-server tolerates both.
                Some(b'{' | b'}') => {
                    self.lx.bump();
                    continue;
                }
                Some(_) => {}
            }
            self.key_value()?;
            self.lx.skip_spaces();
            match self.lx.peek() {
                None => return Ok(()),
                Some(c) if is_nl(c) || matches!(c, b',' | b';' | b'}') => {
                    self.lx.bump();
                }
                Some(_) if self.lx.at_comment() => self.lx.skip_comment(),
                Some(c) => {
                    return Err(self.lx.err(format!(
                        "Expected a top-level value to end with a new line, comment or EOF, but got '{}' instead.",
                        char::from(c)
                    )))
                }
            }
        }
    }

    /// One `key value` (or `include path`) into the innermost scope.
    fn key_value(&mut self) -> Result<(), String> {
        let (key, line, col) = self.lx.key()?;
        if key.eq_ignore_ascii_case("include") && self.lx.peek().is_some_and(is_space) {
            self.lx.skip_spaces();
            let target = match self.lx.peek() {
                Some(b'"' | b'\'') => match self.lx.scalar()? {
                    Scalar::Str(s) => s,
                    _ => return Err(self.lx.err("Expected a file name after include")),
                },
                _ => {
                    let start = self.lx.pos;
                    while !ends_bare(self.lx.peek()) {
                        self.lx.bump();
                    }
                    self.lx.text(start)
                }
            };
            if target.is_empty() {
                return Err(self.lx.err("Expected a file name after include"));
            }
            return self.include(&target);
        }
        self.lx.key_separator()?;
        let value = self.value()?;
        let entry = Entry {
            key,
            key_span: self.span(line, col),
            value,
            used_as_variable: false,
        };
        if let Some(scope) = self.scopes.last_mut() {
            scope.insert(entry);
        }
        Ok(())
    }

    fn include(&mut self, target: &str) -> Result<(), String> {
        let path = match &self.dir {
            Some(dir) if Path::new(target).is_relative() => dir.join(target),
            _ => PathBuf::from(target),
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "error parsing include file '{target}', {}",
                io_message(&path, &e)
            )
        })?;
        let included = parse_text(
            &text,
            &path.display().to_string(),
            path.parent().map(Path::to_path_buf),
            self.depth + 1,
            self.env,
        )
        .map_err(|e| format!("error parsing include file '{target}', {e}"))?;
        if let Some(scope) = self.scopes.last_mut() {
            for entry in included.entries {
                scope.insert(entry);
            }
        }
        Ok(())
    }

    fn value(&mut self) -> Result<Node, String> {
        let span = self.span(self.lx.line, self.lx.col());
        let line = self.lx.line;
        let value = match self.lx.peek() {
            Some(b'[') => {
                self.lx.bump();
                Value::Array(self.array()?)
            }
            Some(b'{') => {
                self.lx.bump();
                Value::Map(self.map()?)
            }
            _ => match self.lx.scalar()? {
                Scalar::Str(s) => Value::Str(s),
                Scalar::Int(i) => Value::Int(i),
                Scalar::Float(f) => Value::Float(f),
                Scalar::Bool(b) => Value::Bool(b),
                Scalar::Date(d) => Value::Date(d),
                // bcrypt hashes with the `$2a$` prefix are literals, exactly as nats-server does
                // (and only that prefix: unquoted `$2b$` is a variable reference there too).
                Scalar::Variable(name) if name.starts_with("2a$") => Value::Str(format!("${name}")),
                Scalar::Variable(name) => return self.lookup(&name, line, span),
            },
        };
        Ok(Node { value, span })
    }

    fn lookup(&mut self, name: &str, line: u32, span: Span) -> Result<Node, String> {
        for scope in self.scopes.iter_mut().rev() {
            if let Some(entry) = scope.entries.iter_mut().find(|e| e.key == name) {
                entry.used_as_variable = true;
                return Ok(Node {
                    value: entry.value.value.clone(),
                    span,
                });
            }
        }
        if let Some(env) = (self.env)(name) {
            // The environment value is read as a config value, so `PORT=4222` is an integer.
            let parsed = parse_text(
                &format!("pk={env}"),
                &self.file,
                self.dir.clone(),
                self.depth + 1,
                self.env,
            )?;
            if let Some(entry) = parsed.entries.into_iter().find(|e| e.key == "pk") {
                return Ok(Node {
                    value: entry.value.value,
                    span,
                });
            }
        }
        Err(format!(
            "variable reference for '{name}' on line {line} can not be found"
        ))
    }

    fn array(&mut self) -> Result<Vec<Node>, String> {
        let mut items = Vec::new();
        loop {
            self.lx.skip_blank();
            match self.lx.peek() {
                None => return Err(self.lx.err("Unexpected EOF processing array.")),
                Some(b']') => {
                    self.lx.bump();
                    return Ok(items);
                }
                Some(b',') => return Err(self.lx.err("Unexpected array value terminator ','.")),
                Some(_) => {}
            }
            items.push(self.value()?);
            self.lx.skip_spaces();
            match self.lx.peek() {
                Some(b']') => {
                    self.lx.bump();
                    return Ok(items);
                }
                Some(c) if c == b',' || is_nl(c) => {
                    self.lx.bump();
                }
                Some(_) if self.lx.at_comment() => self.lx.skip_comment(),
                None => return Err(self.lx.err("Unexpected EOF processing array.")),
                Some(c) => {
                    return Err(self.lx.err(format!(
                        "Expected an array value terminator ',' or an array terminator ']', but got '{}' instead.",
                        char::from(c)
                    )))
                }
            }
        }
    }

    fn map(&mut self) -> Result<Map, String> {
        self.scopes.push(Map::default());
        let result = self.map_body();
        let map = self.scopes.pop().unwrap_or_default();
        result.map(|()| map)
    }

    fn map_body(&mut self) -> Result<(), String> {
        loop {
            self.lx.skip_blank();
            match self.lx.peek() {
                None => return Err(self.lx.err("Unexpected EOF processing map.")),
                Some(b'}') => {
                    self.lx.bump();
                    return Ok(());
                }
                Some(_) => {}
            }
            self.key_value()?;
            self.lx.skip_spaces();
            match self.lx.peek() {
                Some(b'}') => {
                    self.lx.bump();
                    return Ok(());
                }
                Some(c) if matches!(c, b',' | b';') || is_nl(c) => {
                    self.lx.bump();
                }
                Some(_) if self.lx.at_comment() => self.lx.skip_comment(),
                None => return Err(self.lx.err("Unexpected EOF processing map.")),
                Some(c) => {
                    return Err(self.lx.err(format!(
                        "Expected a map value terminator \",\" or a map terminator \"}}\", but got '{}' instead.",
                        char::from(c)
                    )))
                }
            }
        }
    }
}
