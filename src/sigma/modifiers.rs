//! Value modifiers: one `field|mod1|mod2: value` entry's values turned into [`ValueTest`]s.
//!
//! The Sigma specification applies modifiers in the order written, each to the result of the
//! one before (`wide|base64offset|contains` encodes first, then shifts, then puts wildcards
//! around). This module does the same on a small intermediate form: a value is a pattern of
//! literal text, wildcards and (with `expand`) placeholders, or raw bytes after a UTF-16
//! encoding. Only at the end does a pattern become a test: a plain prefix, suffix or substring
//! test where it is one, a glob otherwise.
//!
//! Everything here is pure: the caller gives the values and the config's placeholders and gets
//! tests or a [`ModifierError`] that it turns into a positioned diagnostic.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::ast::{Compare, GlobPart, Regex, TextMatch, ValueTest};

/// Most values one written value may expand into (windash permutations times placeholder
/// values). A value with many dashes would otherwise grow as 5^n.
pub const MAX_EXPANSION: usize = 4096;

/// Largest compiled size of one `re` value.
pub const MAX_REGEX_BYTES: usize = 4 << 20;

/// A modifier as the rule names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    Contains,
    StartsWith,
    EndsWith,
    All,
    Re,
    ReI,
    ReM,
    ReS,
    Windash,
    Cidr,
    Base64,
    Base64Offset,
    Utf16Le,
    Utf16Be,
    Utf16,
    Expand,
    FieldRef,
    Exists,
    Cased,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Modifier {
    /// The modifier named `name`, or `None` when Sigma defines no such modifier (or palisade
    /// cannot run it: `neq` and the time modifiers are refused by name).
    pub fn parse(name: &str) -> Option<Modifier> {
        Some(match name {
            "contains" => Modifier::Contains,
            "startswith" => Modifier::StartsWith,
            "endswith" => Modifier::EndsWith,
            "all" => Modifier::All,
            "re" => Modifier::Re,
            "i" => Modifier::ReI,
            "m" => Modifier::ReM,
            "s" => Modifier::ReS,
            "windash" => Modifier::Windash,
            "cidr" => Modifier::Cidr,
            "base64" => Modifier::Base64,
            "base64offset" => Modifier::Base64Offset,
            "utf16le" | "wide" => Modifier::Utf16Le,
            "utf16be" => Modifier::Utf16Be,
            "utf16" => Modifier::Utf16,
            "expand" => Modifier::Expand,
            "fieldref" => Modifier::FieldRef,
            "exists" => Modifier::Exists,
            "cased" => Modifier::Cased,
            "gt" => Modifier::Gt,
            "gte" => Modifier::Gte,
            "lt" => Modifier::Lt,
            "lte" => Modifier::Lte,
            _ => return None,
        })
    }
}

/// Why an entry's values cannot be run exactly. Each has a stable code for diagnostics.
#[derive(Debug, Clone, PartialEq)]
pub enum ModifierError {
    UnknownModifier(String),
    /// Modifiers that cannot be combined (`re|base64`, `cidr|contains`, ...).
    Combination(String),
    BadRegex {
        pattern: String,
        reason: String,
    },
    BadCidr(String),
    UnknownPlaceholder(String),
    /// A value of the wrong type for the modifier (`exists: maybe`, `gt: abc`, a map, ...).
    BadValue(String),
    /// A wildcard where an encoding modifier needs plain text (`base64: 'a*b'`).
    WildcardInEncoded(String),
    /// `utf16le`/`utf16be`/`utf16`/`wide` not followed by `base64` or `base64offset`.
    EncodingWithoutBase64,
    TooManyVariants(usize),
}

impl ModifierError {
    pub fn code(&self) -> &'static str {
        match self {
            ModifierError::UnknownModifier(_) => "sigma-unknown-modifier",
            ModifierError::Combination(_) => "sigma-modifier-combination",
            ModifierError::BadRegex { .. } => "sigma-bad-regex",
            ModifierError::BadCidr(_) => "sigma-bad-cidr",
            ModifierError::UnknownPlaceholder(_) => "sigma-unknown-placeholder",
            ModifierError::BadValue(_) => "sigma-bad-value",
            ModifierError::WildcardInEncoded(_) => "sigma-wildcard-in-encoded-value",
            ModifierError::EncodingWithoutBase64 => "sigma-encoding-without-base64",
            ModifierError::TooManyVariants(_) => "sigma-too-many-variants",
        }
    }

    pub fn message(&self) -> String {
        match self {
            ModifierError::UnknownModifier(name) => {
                format!("unknown modifier `{name}`; palisade runs the modifiers the Sigma specification defines, except `neq` and the time modifiers")
            }
            ModifierError::Combination(what) => format!("modifiers cannot be combined: {what}"),
            ModifierError::BadRegex { pattern, reason } => {
                format!("regular expression `{pattern}` does not compile: {reason}")
            }
            ModifierError::BadCidr(value) => {
                format!("`{value}` is not a network in CIDR notation (`10.0.0.0/8`, `fe80::/10`)")
            }
            ModifierError::UnknownPlaceholder(name) => format!(
                "placeholder `%{name}%` has no values; add them under `sigma.placeholders.{name}` in palisade.yaml"
            ),
            ModifierError::BadValue(what) => what.clone(),
            ModifierError::WildcardInEncoded(value) => format!(
                "`{value}` has a wildcard, which an encoding modifier would encode as a plain character; escape it (`\\*`) or drop it"
            ),
            ModifierError::EncodingWithoutBase64 => "a UTF-16 encoding modifier must be followed by `base64` or `base64offset` (the specification defines it only for them)".to_string(),
            ModifierError::TooManyVariants(n) => format!(
                "the value expands into {n} variants (windash permutations and placeholder values), more than the limit of {MAX_EXPANSION}"
            ),
        }
    }
}

/// One written value, as YAML gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Null,
    Bool(bool),
    /// A number, with the text YAML wrote it as (`445`, `0x17` is a string in YAML 1.2).
    Number(f64, String),
    Text(String),
}

impl RawValue {
    fn text(&self) -> Option<String> {
        match self {
            RawValue::Null => None,
            RawValue::Bool(b) => Some(b.to_string()),
            RawValue::Number(_, written) => Some(written.clone()),
            RawValue::Text(text) => Some(text.clone()),
        }
    }

    fn describe(&self) -> String {
        match self {
            RawValue::Null => "null".to_string(),
            RawValue::Bool(b) => b.to_string(),
            RawValue::Number(_, written) => written.clone(),
            RawValue::Text(text) => format!("`{text}`"),
        }
    }
}

/// The result for one entry: the tests (any one matching, or every one with `all`), and
/// whether `all` was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Tests {
    pub tests: Vec<ValueTest>,
    pub all: bool,
}

/// What `fieldref` refers to: the caller resolves the other field's name.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldRefTest {
    pub other: String,
    pub how: TextMatch,
    pub cased: bool,
}

/// One entry's outcome: plain tests, or field references the caller resolves.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Tests(Tests),
    FieldRefs { refs: Vec<FieldRefTest>, all: bool },
}

/// Parses the modifier names after the field (`contains`, `all`, ...).
pub fn parse_modifiers(names: &[&str]) -> Result<Vec<Modifier>, ModifierError> {
    names
        .iter()
        .map(|name| {
            Modifier::parse(name).ok_or_else(|| ModifierError::UnknownModifier(name.to_string()))
        })
        .collect()
}

/// Applies `modifiers` to `values`. `keyword` is set for field-less (keyword) searches, whose
/// values are searched for anywhere in the event: they get `*` on both sides unless a modifier
/// says where they sit.
pub fn apply(
    modifiers: &[Modifier],
    values: &[RawValue],
    placeholders: &BTreeMap<String, Vec<String>>,
    keyword: bool,
) -> Result<Entry, ModifierError> {
    use Modifier as M;
    let all = modifiers.contains(&M::All);
    let has = |m: Modifier| modifiers.contains(&m);
    let others = |allowed: &[Modifier]| -> Vec<Modifier> {
        modifiers
            .iter()
            .copied()
            .filter(|m| *m != M::All && !allowed.contains(m))
            .collect()
    };
    let refuse_others = |what: &str, allowed: &[Modifier]| -> Result<(), ModifierError> {
        let extra = others(allowed);
        if extra.is_empty() {
            Ok(())
        } else {
            Err(ModifierError::Combination(format!(
                "`{what}` with {}",
                extra
                    .iter()
                    .map(|m| format!("`{}`", name_of(*m)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    if values.is_empty() {
        return Err(ModifierError::BadValue(
            "an empty list of values matches nothing; write at least one value".to_string(),
        ));
    }
    if [M::ReI, M::ReM, M::ReS].iter().any(|m| has(*m)) && !has(M::Re) {
        return Err(ModifierError::Combination(
            "`i`, `m` and `s` are sub-modifiers of `re`".to_string(),
        ));
    }
    if has(M::Re) {
        refuse_others("re", &[M::Re, M::ReI, M::ReM, M::ReS])?;
        let mut flags = String::new();
        for (m, flag) in [(M::ReI, 'i'), (M::ReM, 'm'), (M::ReS, 's')] {
            if has(m) {
                flags.push(flag);
            }
        }
        let tests = values
            .iter()
            .map(|value| regex_test(value, &flags))
            .collect::<Result<_, _>>()?;
        return Ok(Entry::Tests(Tests { tests, all }));
    }
    if has(M::Cidr) {
        refuse_others("cidr", &[M::Cidr])?;
        let tests = values.iter().map(cidr_test).collect::<Result<_, _>>()?;
        return Ok(Entry::Tests(Tests { tests, all }));
    }
    if has(M::Exists) {
        refuse_others("exists", &[M::Exists])?;
        let tests = values
            .iter()
            .map(|value| match value {
                RawValue::Bool(b) => Ok(ValueTest::Exists(*b)),
                RawValue::Text(t) if t == "true" || t == "false" => {
                    Ok(ValueTest::Exists(t == "true"))
                }
                other => Err(ModifierError::BadValue(format!(
                    "`exists` takes `true` or `false`, not {}",
                    other.describe()
                ))),
            })
            .collect::<Result<_, _>>()?;
        return Ok(Entry::Tests(Tests { tests, all }));
    }
    let compare = [
        (M::Gt, Compare::Gt),
        (M::Gte, Compare::Gte),
        (M::Lt, Compare::Lt),
        (M::Lte, Compare::Lte),
    ];
    if let Some((m, op)) = compare.iter().find(|(m, _)| has(*m)) {
        refuse_others(name_of(*m), &[*m])?;
        let tests = values
            .iter()
            .map(|value| match value {
                RawValue::Number(n, _) if n.is_finite() => {
                    Ok(ValueTest::Compare { op: *op, value: *n })
                }
                RawValue::Text(t) if t.trim().parse::<f64>().is_ok_and(f64::is_finite) => {
                    Ok(ValueTest::Compare {
                        op: *op,
                        value: t.trim().parse().unwrap_or_default(),
                    })
                }
                other => Err(ModifierError::BadValue(format!(
                    "`{}` compares numbers; {} is not one",
                    name_of(*m),
                    other.describe()
                ))),
            })
            .collect::<Result<_, _>>()?;
        return Ok(Entry::Tests(Tests { tests, all }));
    }
    if has(M::FieldRef) {
        refuse_others(
            "fieldref",
            &[
                M::FieldRef,
                M::Contains,
                M::StartsWith,
                M::EndsWith,
                M::Cased,
            ],
        )?;
        let how = position_of(modifiers)?.unwrap_or(TextMatch::Exact);
        let refs = values
            .iter()
            .map(|value| match value {
                RawValue::Text(name) if !name.is_empty() => Ok(FieldRefTest {
                    other: name.clone(),
                    how,
                    cased: has(M::Cased),
                }),
                other => Err(ModifierError::BadValue(format!(
                    "`fieldref` takes a field name, not {}",
                    other.describe()
                ))),
            })
            .collect::<Result<_, _>>()?;
        return Ok(Entry::FieldRefs { refs, all });
    }
    // The string pipeline.
    let cased = has(M::Cased);
    let mut tests = Vec::new();
    for value in values {
        let Some(text) = value.text() else {
            if modifiers.iter().any(|m| *m != M::All) {
                return Err(ModifierError::BadValue(
                    "`null` takes no modifiers (it tests that the field is absent)".to_string(),
                ));
            }
            tests.push(ValueTest::Null);
            continue;
        };
        let written = matches!(value, RawValue::Text(_));
        let mut current = vec![Val::Pattern(if written {
            parse_pattern(&text, has(M::Expand))
        } else {
            // Numbers and booleans have no wildcards.
            vec![Piece::Text(text.clone())]
        })];
        let mut placed = false;
        for modifier in modifiers {
            current = match modifier {
                M::Windash => map_patterns(current, windash)?,
                M::Utf16Le | M::Utf16Be | M::Utf16 => {
                    let encode = *modifier;
                    current
                        .into_iter()
                        .map(|v| {
                            let plain = plain_text(&v, &text)?;
                            Ok(Val::Bytes(utf16(&plain, encode)))
                        })
                        .collect::<Result<_, ModifierError>>()?
                }
                M::Base64 => current
                    .into_iter()
                    .map(|v| {
                        let bytes = bytes_of(v, &text)?;
                        Ok(Val::Pattern(vec![Piece::Text(BASE64.encode(bytes))]))
                    })
                    .collect::<Result<_, ModifierError>>()?,
                M::Base64Offset => {
                    let mut out = Vec::new();
                    for v in current {
                        let bytes = bytes_of(v, &text)?;
                        out.extend(
                            base64_offsets(&bytes)
                                .into_iter()
                                .map(|s| Val::Pattern(vec![Piece::Text(s)])),
                        );
                    }
                    out
                }
                M::Expand => map_patterns(current, |p| expand(p, placeholders))?,
                M::Contains | M::StartsWith | M::EndsWith => {
                    if placed {
                        return Err(ModifierError::Combination(
                            "only one of `contains`, `startswith`, `endswith`".to_string(),
                        ));
                    }
                    placed = true;
                    let m = *modifier;
                    current
                        .into_iter()
                        .map(|v| match v {
                            Val::Pattern(p) => Ok(Val::Pattern(surround(p, m))),
                            Val::Bytes(_) => Err(ModifierError::EncodingWithoutBase64),
                        })
                        .collect::<Result<_, ModifierError>>()?
                }
                M::All | M::Cased => current,
                other => {
                    return Err(ModifierError::Combination(format!(
                        "`{}` with text modifiers",
                        name_of(*other)
                    )));
                }
            };
            if current.len() > MAX_EXPANSION {
                return Err(ModifierError::TooManyVariants(current.len()));
            }
        }
        for v in current {
            let Val::Pattern(mut pattern) = v else {
                return Err(ModifierError::EncodingWithoutBase64);
            };
            if keyword && !placed {
                pattern = surround(surround(pattern, M::StartsWith), M::EndsWith);
            }
            tests.push(to_test(pattern, cased));
        }
        if tests.len() > MAX_EXPANSION {
            return Err(ModifierError::TooManyVariants(tests.len()));
        }
    }
    // Expansions (windash, base64offset, placeholders) of one value are alternatives: with
    // `all`, each written value must match in one of its forms. The model holds one flat list,
    // so `all` over expanded values is refused rather than run with a different meaning.
    if all && tests.len() != values.len() {
        return Err(ModifierError::Combination(
            "`all` with a modifier that turns one value into several (windash, base64offset, expand)"
                .to_string(),
        ));
    }
    Ok(Entry::Tests(Tests { tests, all }))
}

fn name_of(m: Modifier) -> &'static str {
    use Modifier as M;
    match m {
        M::Contains => "contains",
        M::StartsWith => "startswith",
        M::EndsWith => "endswith",
        M::All => "all",
        M::Re => "re",
        M::ReI => "i",
        M::ReM => "m",
        M::ReS => "s",
        M::Windash => "windash",
        M::Cidr => "cidr",
        M::Base64 => "base64",
        M::Base64Offset => "base64offset",
        M::Utf16Le => "utf16le",
        M::Utf16Be => "utf16be",
        M::Utf16 => "utf16",
        M::Expand => "expand",
        M::FieldRef => "fieldref",
        M::Exists => "exists",
        M::Cased => "cased",
        M::Gt => "gt",
        M::Gte => "gte",
        M::Lt => "lt",
        M::Lte => "lte",
    }
}

fn position_of(modifiers: &[Modifier]) -> Result<Option<TextMatch>, ModifierError> {
    let found: Vec<TextMatch> = modifiers
        .iter()
        .filter_map(|m| match m {
            Modifier::Contains => Some(TextMatch::Contains),
            Modifier::StartsWith => Some(TextMatch::StartsWith),
            Modifier::EndsWith => Some(TextMatch::EndsWith),
            _ => None,
        })
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(ModifierError::Combination(
            "only one of `contains`, `startswith`, `endswith`".to_string(),
        )),
    }
}

fn regex_test(value: &RawValue, flags: &str) -> Result<ValueTest, ModifierError> {
    let RawValue::Text(pattern) = value else {
        return Err(ModifierError::BadValue(format!(
            "`re` takes a regular expression as text, not {}",
            value.describe()
        )));
    };
    let source = if flags.is_empty() {
        pattern.clone()
    } else {
        format!("(?{flags}){pattern}")
    };
    // A compiled-size limit bounds what one hostile pattern can cost (`\w{1,1000}` is tens of
    // MiB); SigmaHQ's largest (`\w{1,64}`, Unicode classes) needs more than 1 MiB. The lazy
    // DFA's cache gets the same bound: at the default, `-k\s\w{1,64}` overflows it, and every
    // search falls back to a backtracker 15x slower.
    let compiled = regex::RegexBuilder::new(&source)
        .size_limit(MAX_REGEX_BYTES)
        .dfa_size_limit(MAX_REGEX_BYTES)
        .build()
        .map_err(|err| ModifierError::BadRegex {
            pattern: pattern.clone(),
            reason: err
                .to_string()
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string(),
        })?;
    Ok(ValueTest::Regex(Regex { source, compiled }))
}

fn cidr_test(value: &RawValue) -> Result<ValueTest, ModifierError> {
    let Some(text) = value.text() else {
        return Err(ModifierError::BadCidr("null".to_string()));
    };
    let bad = || ModifierError::BadCidr(text.clone());
    let (address, prefix) = match text.trim().split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text.trim(), None),
    };
    let network: IpAddr = address.parse().map_err(|_| bad())?;
    let max = if network.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        // Digits only: `parse::<u8>` would also take a sign (`+8`), which CIDR never has.
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?
        }
        Some(_) => return Err(bad()),
        None => max,
    };
    Ok(ValueTest::Cidr { network, prefix })
}

/// A piece of a value while modifiers apply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    AnyRun,
    AnyOne,
    Placeholder(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Val {
    Pattern(Vec<Piece>),
    Bytes(Vec<u8>),
}

fn push_char(pieces: &mut Vec<Piece>, c: char) {
    if let Some(Piece::Text(text)) = pieces.last_mut() {
        text.push(c);
    } else {
        pieces.push(Piece::Text(c.to_string()));
    }
}

/// Parses a written value: `*` and `?` are wildcards; a backslash before `*`, `?` or another
/// backslash escapes it, any other backslash is a plain backslash (the specification's escaping
/// section: `\\` and `\` before a non-wildcard are both one backslash, `\\*` is a backslash
/// then a wildcard). With `expand`, `%name%` is a placeholder and `\%` a plain percent sign.
fn parse_pattern(text: &str, placeholders: bool) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&next @ ('*' | '?' | '\\')) => {
                    chars.next();
                    push_char(&mut pieces, next);
                }
                Some('%') if placeholders => {
                    chars.next();
                    push_char(&mut pieces, '%');
                }
                _ => push_char(&mut pieces, '\\'),
            },
            '*' => {
                if pieces.last() != Some(&Piece::AnyRun) {
                    pieces.push(Piece::AnyRun);
                }
            }
            '?' => pieces.push(Piece::AnyOne),
            '%' if placeholders => {
                let rest: String = chars.clone().collect();
                match rest.find('%') {
                    Some(end) if end > 0 => {
                        let name = rest[..end].to_string();
                        for _ in 0..=end {
                            chars.next();
                        }
                        pieces.push(Piece::Placeholder(name));
                    }
                    _ => push_char(&mut pieces, '%'),
                }
            }
            other => push_char(&mut pieces, other),
        }
    }
    pieces
}

fn map_patterns(
    values: Vec<Val>,
    f: impl Fn(Vec<Piece>) -> Result<Vec<Vec<Piece>>, ModifierError>,
) -> Result<Vec<Val>, ModifierError> {
    let mut out = Vec::new();
    for value in values {
        match value {
            Val::Pattern(p) => out.extend(f(p)?.into_iter().map(Val::Pattern)),
            Val::Bytes(_) => return Err(ModifierError::EncodingWithoutBase64),
        }
        if out.len() > MAX_EXPANSION {
            return Err(ModifierError::TooManyVariants(out.len()));
        }
    }
    Ok(out)
}

/// The dash characters `windash` makes interchangeable: hyphen-minus, slash, en dash, em dash,
/// horizontal bar.
pub const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];

/// Every permutation of the dash characters in the value's text: each occurrence of any of the
/// five becomes each of the five, independently.
fn windash(pattern: Vec<Piece>) -> Result<Vec<Vec<Piece>>, ModifierError> {
    let mut variants: Vec<Vec<Piece>> = vec![Vec::new()];
    for piece in pattern {
        let Piece::Text(text) = piece else {
            for v in &mut variants {
                v.push(piece.clone());
            }
            continue;
        };
        for c in text.chars() {
            if DASHES.contains(&c) {
                let mut next = Vec::with_capacity(variants.len() * DASHES.len());
                for v in &variants {
                    for dash in DASHES {
                        let mut v = v.clone();
                        push_char(&mut v, dash);
                        next.push(v);
                    }
                }
                if next.len() > MAX_EXPANSION {
                    return Err(ModifierError::TooManyVariants(next.len()));
                }
                variants = next;
            } else {
                for v in &mut variants {
                    push_char(v, c);
                }
            }
        }
    }
    Ok(variants)
}

/// Placeholders replaced by each of their configured values (each parsed as a written value,
/// so a configured value may hold wildcards); several placeholders give every combination.
fn expand(
    pattern: Vec<Piece>,
    placeholders: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<Vec<Piece>>, ModifierError> {
    let mut variants: Vec<Vec<Piece>> = vec![Vec::new()];
    for piece in pattern {
        match piece {
            Piece::Placeholder(name) => {
                let values = placeholders
                    .get(&name)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| ModifierError::UnknownPlaceholder(name.clone()))?;
                let mut next = Vec::new();
                for v in &variants {
                    for value in values {
                        let mut v = v.clone();
                        for p in parse_pattern(value, false) {
                            match p {
                                Piece::Text(t) => t.chars().for_each(|c| push_char(&mut v, c)),
                                Piece::AnyRun if v.last() == Some(&Piece::AnyRun) => {}
                                other => v.push(other),
                            }
                        }
                        next.push(v);
                    }
                }
                if next.len() > MAX_EXPANSION {
                    return Err(ModifierError::TooManyVariants(next.len()));
                }
                variants = next;
            }
            Piece::Text(t) => {
                for v in &mut variants {
                    t.chars().for_each(|c| push_char(v, c));
                }
            }
            other => {
                for v in &mut variants {
                    if !(other == Piece::AnyRun && v.last() == Some(&Piece::AnyRun)) {
                        v.push(other.clone());
                    }
                }
            }
        }
    }
    Ok(variants)
}

/// The value's text when it has no wildcards (encoding modifiers need plain text).
fn plain_text(value: &Val, written: &str) -> Result<String, ModifierError> {
    match value {
        Val::Pattern(pieces) => {
            let mut out = String::new();
            for piece in pieces {
                match piece {
                    Piece::Text(t) => out.push_str(t),
                    _ => return Err(ModifierError::WildcardInEncoded(written.to_string())),
                }
            }
            Ok(out)
        }
        Val::Bytes(_) => Err(ModifierError::Combination(
            "two encoding modifiers in a row".to_string(),
        )),
    }
}

fn bytes_of(value: Val, written: &str) -> Result<Vec<u8>, ModifierError> {
    match value {
        Val::Bytes(bytes) => Ok(bytes),
        pattern => Ok(plain_text(&pattern, written)?.into_bytes()),
    }
}

fn utf16(text: &str, how: Modifier) -> Vec<u8> {
    let mut out = Vec::new();
    if how == Modifier::Utf16 {
        // Byte order mark, then little-endian, as Windows writes UTF-16.
        out.extend([0xFF, 0xFE]);
    }
    for unit in text.encode_utf16() {
        let bytes = if how == Modifier::Utf16Be {
            unit.to_be_bytes()
        } else {
            unit.to_le_bytes()
        };
        out.extend(bytes);
    }
    out
}

/// The three forms `bytes` takes inside a longer base64 text, one per position of its first
/// byte within a 3-byte group. For shift `i` the value is encoded after `i` filler bytes, the
/// characters that depend on the filler are cut from the start (0, 2 or 3 of them), and the
/// characters that depend on what follows are cut from the end (none, 3 or 2, by
/// `(len + i) % 3`), leaving the part that is the same in every text containing the value.
pub fn base64_offsets(bytes: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END_CUT: [usize; 3] = [0, 3, 2];
    (0..3)
        .map(|shift| {
            let mut shifted = vec![b' '; shift];
            shifted.extend_from_slice(bytes);
            let encoded = BASE64.encode(&shifted);
            let end = encoded
                .len()
                .saturating_sub(END_CUT[(bytes.len() + shift) % 3]);
            encoded
                .get(START[shift]..end.max(START[shift]))
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// Puts `*` around the value as `contains`/`startswith`/`endswith` do, unless one is there.
fn surround(mut pattern: Vec<Piece>, how: Modifier) -> Vec<Piece> {
    if matches!(how, Modifier::Contains | Modifier::EndsWith)
        && pattern.first() != Some(&Piece::AnyRun)
    {
        pattern.insert(0, Piece::AnyRun);
    }
    if matches!(how, Modifier::Contains | Modifier::StartsWith)
        && pattern.last() != Some(&Piece::AnyRun)
    {
        pattern.push(Piece::AnyRun);
    }
    pattern
}

/// The final test: a plain comparison when the wildcards are only at the ends, a glob otherwise.
/// Needles are lowercased unless `cased`, as the evaluator compares lowercased values.
fn to_test(pattern: Vec<Piece>, cased: bool) -> ValueTest {
    let fold = |t: String| if cased { t } else { t.to_lowercase() };
    let text = |how: TextMatch, needle: String| ValueTest::Text {
        how,
        needle: fold(needle),
        cased,
    };
    match pattern.as_slice() {
        [] => text(TextMatch::Exact, String::new()),
        [Piece::AnyRun] => text(TextMatch::Contains, String::new()),
        [Piece::Text(t)] => text(TextMatch::Exact, t.clone()),
        [Piece::AnyRun, Piece::Text(t)] => text(TextMatch::EndsWith, t.clone()),
        [Piece::Text(t), Piece::AnyRun] => text(TextMatch::StartsWith, t.clone()),
        [Piece::AnyRun, Piece::Text(t), Piece::AnyRun] => text(TextMatch::Contains, t.clone()),
        _ => ValueTest::Glob {
            pattern: pattern
                .into_iter()
                .map(|p| match p {
                    Piece::Text(t) => GlobPart::Literal(fold(t)),
                    Piece::AnyRun => GlobPart::AnyRun,
                    Piece::AnyOne => GlobPart::AnyOne,
                    // Placeholders are gone after `expand`; without it `%` is never one.
                    Piece::Placeholder(name) => GlobPart::Literal(fold(format!("%{name}%"))),
                })
                .collect(),
            cased,
        },
    }
}
