//! The STIX 2.1 patterning language: a tokenizer and a recursive-descent parser with the
//! specification's precedence, then the reading of a parsed pattern as indicators.
//!
//! Precedence, loosest first: `FOLLOWEDBY`, observation `OR`, observation `AND`, qualifiers
//! (`WITHIN`, `REPEATS`, `START ... STOP`), then inside `[...]` comparison `OR` over comparison
//! `AND`. Strings are single-quoted; the only escapes are `\'` and `\\`.
//!
//! A pattern becomes indicators only when every event it matches is matched by one of them and
//! every indicator matches only events the pattern matches: nothing is ever widened. Anything
//! else is refused with a reason that names the construct, so an import can count refusals per
//! reason.

use std::collections::{BTreeMap, BTreeSet};

use crate::intel::indicator::{IndicatorKind, canonical_network};

/// The longest pattern read; a longer one is refused before it is tokenized.
pub(super) const MAX_PATTERN_BYTES: usize = 64 * 1024;
/// The deepest nesting of parentheses and brackets.
pub(super) const MAX_DEPTH: usize = 32;
/// The most indicators one pattern may stand for (an `IN` list of every address on earth is
/// not a pattern a feed publishes).
pub(super) const MAX_VALUES: usize = 10_000;

/// Why a pattern gave no indicators. `reason` is the same for every pattern refused the same
/// way (an import counts by it); `detail` says where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refused {
    pub reason: &'static str,
    pub detail: String,
}

fn refuse<T>(reason: &'static str, detail: impl Into<String>) -> Result<T, Refused> {
    Err(Refused {
        reason,
        detail: detail.into(),
    })
}

const SYNTAX: &str = "pattern is not valid STIX patterning";

/// Whether a domain indicator covers the names under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Scope {
    /// This value only.
    Exact,
    /// The domain and every name under it.
    WithSubdomains,
    /// The names under the domain but not the domain itself; only kept when the same pattern
    /// also names the domain, which together is [`Scope::WithSubdomains`].
    SubdomainsOnly,
}

/// One indicator a pattern stands for; the value is raw (the importer canonicalizes it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Atom {
    pub kind: IndicatorKind,
    pub value: String,
    pub scope: Scope,
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, PartialEq)]
enum Token {
    BracketOpen,
    BracketClose,
    ParenOpen,
    ParenClose,
    Comma,
    Colon,
    Dot,
    Star,
    Compare(Op),
    /// Identifiers and keywords (`ipv4-addr`, `value`, `OR`, `ISSUBSET`).
    Word(String),
    Str(String),
    Number(String),
    /// `t'...'`, `h'...'`, `b'...'`: the prefix and the text.
    Typed(char, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Like,
    Matches,
    IsSubset,
    IsSuperset,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "IN",
            Op::Like => "LIKE",
            Op::Matches => "MATCHES",
            Op::IsSubset => "ISSUBSET",
            Op::IsSuperset => "ISSUPERSET",
        }
    }
}

fn tokens(pattern: &str) -> Result<Vec<Token>, Refused> {
    let mut out = Vec::new();
    let mut chars = pattern.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let token = match c {
            c if c.is_whitespace() => continue,
            '[' => Token::BracketOpen,
            ']' => Token::BracketClose,
            '(' => Token::ParenOpen,
            ')' => Token::ParenClose,
            ',' => Token::Comma,
            ':' => Token::Colon,
            '.' => Token::Dot,
            '*' => Token::Star,
            '=' => {
                if chars.peek().is_some_and(|(_, c)| *c == '=') {
                    chars.next();
                }
                Token::Compare(Op::Eq)
            }
            '!' => match chars.next() {
                Some((_, '=')) => Token::Compare(Op::Ne),
                _ => return refuse(SYNTAX, format!("`!` without `=` at byte {at}")),
            },
            '<' => match chars.peek().map(|(_, c)| *c) {
                Some('=') => {
                    chars.next();
                    Token::Compare(Op::Le)
                }
                Some('>') => {
                    chars.next();
                    Token::Compare(Op::Ne)
                }
                _ => Token::Compare(Op::Lt),
            },
            '>' => {
                if chars.peek().is_some_and(|(_, c)| *c == '=') {
                    chars.next();
                    Token::Compare(Op::Ge)
                } else {
                    Token::Compare(Op::Gt)
                }
            }
            '\'' => Token::Str(string(&mut chars, at)?),
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let mut number = String::from(c);
                while let Some(&(_, next)) = chars.peek() {
                    if !(next.is_ascii_digit() || next == '.') {
                        break;
                    }
                    number.push(next);
                    chars.next();
                }
                if !number.chars().any(|c| c.is_ascii_digit()) {
                    return refuse(SYNTAX, format!("`{c}` is not a number at byte {at}"));
                }
                Token::Number(number)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                if matches!(c, 't' | 'h' | 'b') && chars.peek().is_some_and(|(_, c)| *c == '\'') {
                    chars.next();
                    Token::Typed(c, string(&mut chars, at)?)
                } else {
                    let mut word = String::from(c);
                    while let Some(&(_, next)) = chars.peek() {
                        if !(next.is_ascii_alphanumeric() || next == '_' || next == '-') {
                            break;
                        }
                        word.push(next);
                        chars.next();
                    }
                    Token::Word(word)
                }
            }
            other => {
                return refuse(
                    SYNTAX,
                    format!("unexpected `{}` at byte {at}", other.escape_debug()),
                );
            }
        };
        out.push(token);
    }
    Ok(out)
}

/// The rest of a quoted string whose opening quote was at byte `start`.
fn string(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    start: usize,
) -> Result<String, Refused> {
    let mut text = String::new();
    loop {
        match chars.next() {
            None => {
                return refuse(
                    SYNTAX,
                    format!("the string opened at byte {start} is never closed"),
                );
            }
            Some((_, '\'')) => return Ok(text),
            Some((at, '\\')) => match chars.next() {
                Some((_, c @ ('\'' | '\\'))) => text.push(c),
                // The specification defines only these two escapes; anything else is an error
                // rather than a guess at what the author meant.
                _ => return refuse(SYNTAX, format!("invalid escape at byte {at}")),
            },
            Some((_, c)) => text.push(c),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Syntax tree

#[derive(Debug, Clone, PartialEq)]
enum Observation {
    Single(Comparison),
    Or(Vec<Observation>),
    And(Vec<Observation>),
    FollowedBy(Vec<Observation>),
    Qualified(Box<Observation>, Qualifier),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Qualifier {
    Within,
    Repeats,
    StartStop,
}

#[derive(Debug, Clone, PartialEq)]
enum Comparison {
    Test {
        path: ObjectPath,
        negated: bool,
        op: Op,
        value: Literal,
    },
    Exists(ObjectPath),
    Or(Vec<Comparison>),
    And(Vec<Comparison>),
}

#[derive(Debug, Clone, PartialEq)]
struct ObjectPath {
    object: String,
    /// The property path as written without quotes: `value`, `hashes.SHA-256`,
    /// `extensions.x.sections[*].name`.
    property: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    /// Numbers, booleans, timestamps, hex and binary: no indicator is any of these.
    Other,
    Set(Vec<Literal>),
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w == word)
    }

    fn expect(&mut self, wanted: Token, what: &str) -> Result<(), Refused> {
        match self.next() {
            Some(token) if token == wanted => Ok(()),
            found => refuse(
                SYNTAX,
                format!("expected {what}, found {}", describe(&found)),
            ),
        }
    }

    fn deeper(&mut self) -> Result<(), Refused> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return refuse(
                "pattern nests deeper than palisade reads",
                format!("more than {MAX_DEPTH} levels of brackets"),
            );
        }
        Ok(())
    }

    /// `a FOLLOWEDBY b ...`
    fn observations(&mut self) -> Result<Observation, Refused> {
        let mut parts = vec![self.observation_or()?];
        while self.is_word("FOLLOWEDBY") {
            self.at += 1;
            parts.push(self.observation_or()?);
        }
        Ok(one_or(parts, Observation::FollowedBy))
    }

    fn observation_or(&mut self) -> Result<Observation, Refused> {
        let mut parts = vec![self.observation_and()?];
        while self.is_word("OR") {
            self.at += 1;
            parts.push(self.observation_and()?);
        }
        Ok(one_or(parts, Observation::Or))
    }

    fn observation_and(&mut self) -> Result<Observation, Refused> {
        let mut parts = vec![self.qualified()?];
        while self.is_word("AND") {
            self.at += 1;
            parts.push(self.qualified()?);
        }
        Ok(one_or(parts, Observation::And))
    }

    fn qualified(&mut self) -> Result<Observation, Refused> {
        let mut observation = self.observation()?;
        loop {
            let qualifier = if self.is_word("WITHIN") {
                self.at += 1;
                self.number("a number of seconds after WITHIN")?;
                self.keyword("SECONDS")?;
                Qualifier::Within
            } else if self.is_word("REPEATS") {
                self.at += 1;
                self.number("a count after REPEATS")?;
                self.keyword("TIMES")?;
                Qualifier::Repeats
            } else if self.is_word("START") {
                self.at += 1;
                self.timestamp("a t'...' timestamp after START")?;
                self.keyword("STOP")?;
                self.timestamp("a t'...' timestamp after STOP")?;
                Qualifier::StartStop
            } else {
                return Ok(observation);
            };
            observation = Observation::Qualified(Box::new(observation), qualifier);
        }
    }

    fn number(&mut self, what: &str) -> Result<(), Refused> {
        match self.next() {
            Some(Token::Number(_)) => Ok(()),
            found => refuse(
                SYNTAX,
                format!("expected {what}, found {}", describe(&found)),
            ),
        }
    }

    fn timestamp(&mut self, what: &str) -> Result<(), Refused> {
        match self.next() {
            Some(Token::Typed('t', _)) => Ok(()),
            found => refuse(
                SYNTAX,
                format!("expected {what}, found {}", describe(&found)),
            ),
        }
    }

    fn keyword(&mut self, word: &str) -> Result<(), Refused> {
        self.expect(Token::Word(word.to_string()), &format!("`{word}`"))
    }

    fn observation(&mut self) -> Result<Observation, Refused> {
        self.deeper()?;
        let observation = match self.next() {
            Some(Token::BracketOpen) => {
                let comparison = self.comparison_or()?;
                self.expect(Token::BracketClose, "`]`")?;
                Observation::Single(comparison)
            }
            Some(Token::ParenOpen) => {
                let inner = self.observations()?;
                self.expect(Token::ParenClose, "`)`")?;
                inner
            }
            found => {
                return refuse(
                    SYNTAX,
                    format!("expected `[` or `(`, found {}", describe(&found)),
                );
            }
        };
        self.depth -= 1;
        Ok(observation)
    }

    fn comparison_or(&mut self) -> Result<Comparison, Refused> {
        let mut parts = vec![self.comparison_and()?];
        while self.is_word("OR") {
            self.at += 1;
            parts.push(self.comparison_and()?);
        }
        Ok(one_or(parts, Comparison::Or))
    }

    fn comparison_and(&mut self) -> Result<Comparison, Refused> {
        let mut parts = vec![self.test()?];
        while self.is_word("AND") {
            self.at += 1;
            parts.push(self.test()?);
        }
        Ok(one_or(parts, Comparison::And))
    }

    fn test(&mut self) -> Result<Comparison, Refused> {
        if self.peek() == Some(&Token::ParenOpen) {
            self.at += 1;
            self.deeper()?;
            let inner = self.comparison_or()?;
            self.expect(Token::ParenClose, "`)`")?;
            self.depth -= 1;
            return Ok(inner);
        }
        if self.is_word("EXISTS") {
            self.at += 1;
            return Ok(Comparison::Exists(self.path()?));
        }
        let path = self.path()?;
        let negated = self.is_word("NOT");
        if negated {
            self.at += 1;
        }
        let op = match self.next() {
            Some(Token::Compare(op)) => op,
            Some(Token::Word(word)) => match word.as_str() {
                "IN" => Op::In,
                "LIKE" => Op::Like,
                "MATCHES" => Op::Matches,
                "ISSUBSET" => Op::IsSubset,
                "ISSUPERSET" => Op::IsSuperset,
                _ => return refuse(SYNTAX, format!("`{word}` is not a comparison operator")),
            },
            found => {
                return refuse(
                    SYNTAX,
                    format!("expected a comparison operator, found {}", describe(&found)),
                );
            }
        };
        let value = if op == Op::In {
            self.set()?
        } else {
            self.literal()?
        };
        Ok(Comparison::Test {
            path,
            negated,
            op,
            value,
        })
    }

    fn literal(&mut self) -> Result<Literal, Refused> {
        match self.next() {
            Some(Token::Str(text)) => Ok(Literal::Str(text)),
            Some(Token::Number(_) | Token::Typed(..)) => Ok(Literal::Other),
            Some(Token::Word(word)) if word == "true" || word == "false" => Ok(Literal::Other),
            found => refuse(
                SYNTAX,
                format!("expected a value, found {}", describe(&found)),
            ),
        }
    }

    fn set(&mut self) -> Result<Literal, Refused> {
        self.expect(Token::ParenOpen, "`(` after IN")?;
        let mut values = Vec::new();
        loop {
            values.push(self.literal()?);
            if values.len() > MAX_VALUES {
                return refuse(
                    "pattern stands for more values than palisade reads from one pattern",
                    format!("an IN list of more than {MAX_VALUES} values"),
                );
            }
            match self.next() {
                Some(Token::Comma) => continue,
                Some(Token::ParenClose) => return Ok(Literal::Set(values)),
                found => {
                    return refuse(
                        SYNTAX,
                        format!(
                            "expected `,` or `)` in an IN list, found {}",
                            describe(&found)
                        ),
                    );
                }
            }
        }
    }

    /// `type:property(.property | .'quoted' | [n] | [*])*`
    fn path(&mut self) -> Result<ObjectPath, Refused> {
        let object = match self.next() {
            Some(Token::Word(word)) => word,
            found => {
                return refuse(
                    SYNTAX,
                    format!("expected an object path, found {}", describe(&found)),
                );
            }
        };
        self.expect(Token::Colon, &format!("`:` after `{object}`"))?;
        let mut property = match self.next() {
            Some(Token::Word(word) | Token::Str(word)) => word,
            found => {
                return refuse(
                    SYNTAX,
                    format!("expected a property name, found {}", describe(&found)),
                );
            }
        };
        loop {
            match self.peek() {
                Some(Token::Dot) => {
                    self.at += 1;
                    match self.next() {
                        Some(Token::Word(word) | Token::Str(word)) => {
                            property.push('.');
                            property.push_str(&word);
                        }
                        found => {
                            return refuse(
                                SYNTAX,
                                format!(
                                    "expected a property after `.`, found {}",
                                    describe(&found)
                                ),
                            );
                        }
                    }
                }
                Some(Token::BracketOpen) => {
                    self.at += 1;
                    match self.next() {
                        Some(Token::Number(n)) => property.push_str(&format!("[{n}]")),
                        Some(Token::Star) => property.push_str("[*]"),
                        found => {
                            return refuse(
                                SYNTAX,
                                format!("expected an index or `*`, found {}", describe(&found)),
                            );
                        }
                    }
                    self.expect(Token::BracketClose, "`]` after a list index")?;
                }
                _ => return Ok(ObjectPath { object, property }),
            }
        }
    }
}

fn one_or<T>(mut parts: Vec<T>, many: impl FnOnce(Vec<T>) -> T) -> T {
    if parts.len() == 1
        && let Some(only) = parts.pop()
    {
        return only;
    }
    many(parts)
}

fn describe(token: &Option<Token>) -> String {
    match token {
        None => "the end of the pattern".to_string(),
        Some(Token::Word(w)) => format!("`{}`", cut(w)),
        Some(Token::Str(s)) => format!("'{}'", cut(s)),
        Some(Token::Number(n)) => format!("`{}`", cut(n)),
        Some(Token::Typed(p, s)) => format!("{p}'{}'", cut(s)),
        Some(Token::Compare(op)) => format!("`{}`", op.as_str()),
        Some(other) => format!("`{}`", punctuation(other)),
    }
}

fn punctuation(token: &Token) -> &'static str {
    match token {
        Token::BracketOpen => "[",
        Token::BracketClose => "]",
        Token::ParenOpen => "(",
        Token::ParenClose => ")",
        Token::Comma => ",",
        Token::Colon => ":",
        Token::Dot => ".",
        Token::Star => "*",
        _ => "?",
    }
}

fn cut(text: &str) -> String {
    let short: String = text.chars().take(40).collect();
    short.escape_debug().to_string()
}

fn parse(pattern: &str) -> Result<Observation, Refused> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return refuse(
            "pattern is longer than palisade reads",
            format!("{} bytes, more than {MAX_PATTERN_BYTES}", pattern.len()),
        );
    }
    let mut parser = Parser {
        tokens: tokens(pattern)?,
        at: 0,
        depth: 0,
    };
    let observation = parser.observations()?;
    if parser.at < parser.tokens.len() {
        let found = parser.peek().cloned();
        return refuse(
            SYNTAX,
            format!("unexpected {} after the pattern", describe(&found)),
        );
    }
    Ok(observation)
}

// ---------------------------------------------------------------------------------------------
// Reading a pattern as indicators

/// The indicators `pattern` stands for, or why it stands for none.
pub(super) fn indicators(pattern: &str) -> Result<Vec<Atom>, Refused> {
    let observation = parse(pattern)?;
    let mut atoms = BTreeSet::new();
    read_observation(&observation, &mut atoms)?;
    // One scope per value: `[domain-name:value = 'x' OR domain-name:value LIKE '%.x']` is the
    // domain with its subdomains. A subdomains-only part without the domain itself cannot be
    // stored without widening it to the domain, so the whole pattern is refused.
    let mut scopes: BTreeMap<(IndicatorKind, String), (bool, bool)> = BTreeMap::new();
    for atom in atoms {
        let (itself, under) = scopes.entry((atom.kind, atom.value)).or_default();
        match atom.scope {
            Scope::Exact => *itself = true,
            Scope::WithSubdomains => (*itself, *under) = (true, true),
            Scope::SubdomainsOnly => *under = true,
        }
    }
    let mut out = Vec::with_capacity(scopes.len());
    for ((kind, value), (itself, under)) in scopes {
        let scope = match (itself, under) {
            (true, true) => Scope::WithSubdomains,
            (false, true) => {
                return refuse(
                    "pattern matches a domain's subdomains but not the domain, which no domain indicator expresses",
                    format!("names under `{}` without the domain itself", cut(&value)),
                );
            }
            _ => Scope::Exact,
        };
        out.push(Atom { kind, value, scope });
    }
    Ok(out)
}

fn read_observation(observation: &Observation, atoms: &mut BTreeSet<Atom>) -> Result<(), Refused> {
    match observation {
        Observation::Single(comparison) => read_comparison(comparison, atoms),
        // Each side of an OR matches on its own, so the union is exactly the pattern.
        Observation::Or(parts) => parts.iter().try_for_each(|p| read_observation(p, atoms)),
        Observation::And(_) => refuse(
            "AND between observations needs more than one event",
            "`[...] AND [...]` matches only when two observations are both seen",
        ),
        Observation::FollowedBy(_) => refuse(
            "FOLLOWEDBY orders several events, which no indicator matches alone",
            "`[...] FOLLOWEDBY [...]`",
        ),
        Observation::Qualified(_, Qualifier::Within) => refuse(
            "WITHIN bounds events in time, which no indicator matches alone",
            "a WITHIN qualifier",
        ),
        Observation::Qualified(_, Qualifier::Repeats) => refuse(
            "REPEATS counts events, which no indicator matches alone",
            "a REPEATS qualifier",
        ),
        Observation::Qualified(_, Qualifier::StartStop) => refuse(
            "START/STOP bounds when observations count, which an indicator does not check",
            "a START ... STOP qualifier",
        ),
    }
}

fn read_comparison(comparison: &Comparison, atoms: &mut BTreeSet<Atom>) -> Result<(), Refused> {
    match comparison {
        Comparison::Or(parts) => parts.iter().try_for_each(|p| read_comparison(p, atoms)),
        Comparison::And(parts) => read_same_file(parts, atoms),
        Comparison::Exists(path) => refuse(
            "EXISTS tests that a property is present, which is no indicator",
            format!("EXISTS {}:{}", path.object, path.property),
        ),
        Comparison::Test {
            path,
            negated,
            op,
            value,
        } => read_test(path, *negated, *op, value, atoms),
    }
    .and_then(|()| {
        if atoms.len() > MAX_VALUES {
            refuse(
                "pattern stands for more values than palisade reads from one pattern",
                format!("more than {MAX_VALUES} values"),
            )
        } else {
            Ok(())
        }
    })
}

/// `AND` inside one observation is kept only for hashes of the one file: a file whose SHA-256
/// is X and whose MD5 is Y is the file each hash names on its own, so each hash alone is an
/// indicator of it. Any other conjunction narrows the match to something no single indicator
/// holds (a hash *and* a file name), and storing one half would widen it.
fn read_same_file(parts: &[Comparison], atoms: &mut BTreeSet<Atom>) -> Result<(), Refused> {
    const NARROWS: &str =
        "AND narrows the match to more than one property, which no indicator expresses";
    let mut hashes: Vec<(IndicatorKind, String)> = Vec::new();
    for part in parts {
        let Comparison::Test {
            path,
            negated: false,
            op: Op::Eq,
            value: Literal::Str(value),
        } = part
        else {
            return refuse(
                NARROWS,
                "only `=` tests of one file's hashes may be joined by AND",
            );
        };
        let kind = kind_of(path);
        if path.object != "file"
            || !matches!(
                kind,
                Some(IndicatorKind::Md5 | IndicatorKind::Sha1 | IndicatorKind::Sha256)
            )
        {
            return refuse(
                NARROWS,
                format!(
                    "`{}:{}` is not a file hash",
                    path.object,
                    cut(&path.property)
                ),
            );
        }
        if let Some(kind) = kind {
            let value = value.trim().to_ascii_lowercase();
            if hashes.iter().any(|(k, v)| *k == kind && *v != value) {
                return refuse(
                    "AND of two different values for one property matches nothing",
                    format!("two different {} hashes", kind.as_str()),
                );
            }
            hashes.push((kind, value));
        }
    }
    for (kind, value) in hashes {
        atoms.insert(Atom {
            kind,
            value,
            scope: Scope::Exact,
        });
    }
    Ok(())
}

fn read_test(
    path: &ObjectPath,
    negated: bool,
    op: Op,
    value: &Literal,
    atoms: &mut BTreeSet<Atom>,
) -> Result<(), Refused> {
    if negated || op == Op::Ne {
        return refuse(
            "a negated comparison matches everything else, which is no indicator",
            format!("{}:{} NOT/!=", path.object, cut(&path.property)),
        );
    }
    if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge) {
        return refuse(
            "an ordering comparison matches a span of values, which is no indicator",
            format!("{}:{} {}", path.object, cut(&path.property), op.as_str()),
        );
    }
    let Some(kind) = kind_of(path) else {
        return refuse(
            "the object path is not one palisade keeps indicators for",
            format!("`{}:{}`", cut(&path.object), cut(&path.property)),
        );
    };
    let text = |value: &Literal| match value {
        Literal::Str(text) => Ok(text.clone()),
        _ => refuse(
            "a comparison with a value that is not a string is no indicator",
            format!("{}:{} {}", path.object, cut(&path.property), op.as_str()),
        ),
    };
    let mut push = |value: String, scope: Scope| {
        // Domains compare without case or a final dot, so `= 'Evil.Example'` and
        // `LIKE '%.evil.example'` meet.
        let value = if kind == IndicatorKind::Domain {
            value.trim().trim_end_matches('.').to_ascii_lowercase()
        } else {
            value
        };
        atoms.insert(Atom { kind, value, scope });
    };
    match op {
        Op::Eq => push(text(value)?, Scope::Exact),
        Op::In => {
            let Literal::Set(values) = value else {
                return refuse(SYNTAX, "IN without a list");
            };
            for value in values {
                push(text(value)?, Scope::Exact);
            }
        }
        // The observed address lies in the published range: the range is the indicator, and
        // the matcher already matches addresses inside stored ranges.
        Op::IsSubset if kind == IndicatorKind::Ip => push(text(value)?, Scope::Exact),
        // The observed value is a range containing the given one. An event carries single
        // addresses, and a single address contains only itself: a single address is an
        // indicator, a wider range matches no event.
        Op::IsSuperset if kind == IndicatorKind::Ip => {
            let value = text(value)?;
            match canonical_network(&value) {
                Ok((IndicatorKind::Cidr, _)) => {
                    return refuse(
                        "ISSUPERSET of a range matches no single address",
                        format!("ISSUPERSET '{}'", cut(&value)),
                    );
                }
                // A value that is no address is refused when the importer canonicalizes it.
                _ => push(value, Scope::Exact),
            }
        }
        Op::IsSubset | Op::IsSuperset => {
            return refuse(
                "ISSUBSET and ISSUPERSET apply to addresses only",
                format!("{}:{} {}", path.object, cut(&path.property), op.as_str()),
            );
        }
        Op::Like => {
            let (value, scope) = like(kind, &text(value)?)?;
            push(value, scope);
        }
        Op::Matches => {
            let (value, scope) = matches(kind, &text(value)?)?;
            push(value, scope);
        }
        Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Ne => {
            return refuse(
                "an ordering comparison matches a span of values, which is no indicator",
                format!("{}:{} {}", path.object, cut(&path.property), op.as_str()),
            );
        }
    }
    Ok(())
}

const NOT_EXACT: &str = "LIKE or MATCHES pattern cannot be matched exactly; refused, not widened";

/// `LIKE` with SQL wildcards (`%` any run, `_` one character). Without wildcards it is
/// equality; `%.name` on a domain is the names under it. Anything else would have to be
/// widened or approximated, and is refused.
fn like(kind: IndicatorKind, pattern: &str) -> Result<(String, Scope), Refused> {
    let wild = |s: &str| s.contains(['%', '_']);
    if !wild(pattern) {
        return Ok((pattern.to_string(), Scope::Exact));
    }
    if kind == IndicatorKind::Domain
        && let Some(rest) = pattern.strip_prefix("%.")
        && !wild(rest)
        && !rest.is_empty()
    {
        return Ok((rest.to_string(), Scope::SubdomainsOnly));
    }
    refuse(NOT_EXACT, format!("LIKE '{}'", cut(pattern)))
}

/// `MATCHES` with a PCRE regular expression. Only the anchored forms that mean one value
/// (`^evil\.example$`) or, on domains, the names under one (`\.evil\.example$`) or the domain
/// with them (`(^|\.)evil\.example$`, `^(.*\.)?evil\.example$`) are read.
fn matches(kind: IndicatorKind, regex: &str) -> Result<(String, Scope), Refused> {
    let not_exact = || refuse(NOT_EXACT, format!("MATCHES '{}'", cut(regex)));
    let (body, scope) = if let Some(body) = regex.strip_prefix('^') {
        match body.strip_prefix("(.*\\.)?") {
            Some(rest) => (rest, Scope::WithSubdomains),
            None => (body, Scope::Exact),
        }
    } else if let Some(rest) = regex.strip_prefix("(^|\\.)") {
        (rest, Scope::WithSubdomains)
    } else if let Some(rest) = regex.strip_prefix("\\.") {
        (rest, Scope::SubdomainsOnly)
    } else {
        return not_exact();
    };
    if scope != Scope::Exact && kind != IndicatorKind::Domain {
        return not_exact();
    }
    let Some(body) = body.strip_suffix('$') else {
        return not_exact();
    };
    // The body must be a literal: letters, digits and a few safe characters as themselves,
    // any other punctuation escaped. An unescaped metacharacter means more than one value.
    let mut literal = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) if e.is_ascii_punctuation() => literal.push(e),
                _ => return not_exact(),
            },
            c if c.is_alphanumeric()
                || matches!(
                    c,
                    '-' | '_'
                        | '/'
                        | ':'
                        | '='
                        | '&'
                        | '%'
                        | '@'
                        | ','
                        | ';'
                        | '~'
                        | '!'
                        | '\''
                        | '"'
                        | '#'
                        | '<'
                        | '>'
                        | '`'
                ) =>
            {
                literal.push(c)
            }
            _ => return not_exact(),
        }
    }
    if literal.is_empty() {
        return not_exact();
    }
    Ok((literal, scope))
}

/// The indicator kind an object path holds, when it holds one.
fn kind_of(path: &ObjectPath) -> Option<IndicatorKind> {
    match (path.object.as_str(), path.property.as_str()) {
        ("ipv4-addr" | "ipv6-addr", "value") => Some(IndicatorKind::Ip),
        ("network-traffic", "dst_ref.value" | "src_ref.value") => Some(IndicatorKind::Ip),
        ("domain-name", "value") => Some(IndicatorKind::Domain),
        ("url", "value") => Some(IndicatorKind::Url),
        ("file", property) => {
            let key = property
                .strip_prefix("hashes.")?
                .to_ascii_uppercase()
                .replace(['-', '_'], "");
            match key.as_str() {
                "MD5" => Some(IndicatorKind::Md5),
                "SHA1" => Some(IndicatorKind::Sha1),
                "SHA256" => Some(IndicatorKind::Sha256),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
