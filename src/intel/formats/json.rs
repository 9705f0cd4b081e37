//! Typed access to the JSON feeds: a field of the wrong type is an error naming its place in
//! the document (`objects[3].confidence`) and its line and column, never a value quietly taken
//! as absent. `serde_json::Value` keeps no positions, so a place is found again in the text
//! only when an error or a skipped entry is reported.

use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use super::{ImportError, parse_time_field};

/// One step into a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A place in a JSON document, from its root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonPath(Vec<Step>);

impl JsonPath {
    pub fn key(&self, key: &str) -> JsonPath {
        let mut steps = self.0.clone();
        steps.push(Step::Key(key.to_string()));
        JsonPath(steps)
    }

    pub fn index(&self, index: usize) -> JsonPath {
        let mut steps = self.0.clone();
        steps.push(Step::Index(index));
        JsonPath(steps)
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("the document");
        }
        for (n, step) in self.0.iter().enumerate() {
            match step {
                Step::Key(key) if n == 0 => write!(f, "{}", key.escape_debug())?,
                Step::Key(key) => write!(f, ".{}", key.escape_debug())?,
                Step::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A JSON feed file: its name and text, to report places as `file:line:column`.
#[derive(Clone, Copy)]
pub struct Doc<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

impl<'a> Doc<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Doc<'a> {
        Doc { file, text }
    }

    /// An error at `at`, located in the text (line 1 column 1 if it cannot be found).
    pub fn error(&self, at: &JsonPath, message: impl fmt::Display) -> ImportError {
        let (line, column) = locate(self.text, at).unwrap_or((1, 1));
        ImportError::at(self.file, line, column, format!("{at}: {message}"))
    }

    /// Parses the text.
    pub fn parse(&self) -> Result<Value, ImportError> {
        serde_json::from_str(self.text).map_err(|e| ImportError::json(self.file, &e))
    }

    pub fn object<'v>(
        &self,
        value: &'v Value,
        at: &JsonPath,
    ) -> Result<&'v Map<String, Value>, ImportError> {
        value
            .as_object()
            .ok_or_else(|| self.error(at, format!("must be an object, not {}", describe(value))))
    }

    /// The field, when present and not null.
    fn field<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
        map.get(key).filter(|v| !v.is_null())
    }

    pub fn str<'v>(
        &self,
        map: &'v Map<String, Value>,
        at: &JsonPath,
        key: &str,
    ) -> Result<Option<&'v str>, ImportError> {
        match Self::field(map, key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.error(
                &at.key(key),
                format!("must be a string, not {}", describe(other)),
            )),
        }
    }

    pub fn array<'v>(
        &self,
        map: &'v Map<String, Value>,
        at: &JsonPath,
        key: &str,
    ) -> Result<&'v [Value], ImportError> {
        match Self::field(map, key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(self.error(
                &at.key(key),
                format!("must be a list, not {}", describe(other)),
            )),
        }
    }

    /// A list of strings.
    pub fn strings(
        &self,
        map: &Map<String, Value>,
        at: &JsonPath,
        key: &str,
    ) -> Result<Vec<String>, ImportError> {
        let place = at.key(key);
        self.array(map, at, key)?
            .iter()
            .enumerate()
            .map(|(n, item)| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(self.error(
                    &place.index(n),
                    format!("must be a string, not {}", describe(other)),
                )),
            })
            .collect()
    }

    pub fn bool(
        &self,
        map: &Map<String, Value>,
        at: &JsonPath,
        key: &str,
    ) -> Result<Option<bool>, ImportError> {
        match Self::field(map, key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.error(
                &at.key(key),
                format!("must be true or false, not {}", describe(other)),
            )),
        }
    }

    /// A yes/no as MISP and OTX spell it: a boolean, 0 or 1, or the strings "0", "1", "true",
    /// "false".
    pub fn flag(
        &self,
        map: &Map<String, Value>,
        at: &JsonPath,
        key: &str,
    ) -> Result<Option<bool>, ImportError> {
        let value = match Self::field(map, key) {
            None => return Ok(None),
            Some(value) => value,
        };
        let flag = match value {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_u64() {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            },
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "0" | "false" => Some(false),
                "1" | "true" => Some(true),
                _ => None,
            },
            _ => None,
        };
        flag.map(Some).ok_or_else(|| {
            self.error(
                &at.key(key),
                format!("must be true, false, 0 or 1, not {}", describe(value)),
            )
        })
    }

    /// A whole number from 0 to 100 (a confidence or score), as a number or a string of digits.
    pub fn score(
        &self,
        map: &Map<String, Value>,
        at: &JsonPath,
        key: &str,
    ) -> Result<Option<u8>, ImportError> {
        let value = match Self::field(map, key) {
            None => return Ok(None),
            Some(value) => value,
        };
        let score = match value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match score
            .and_then(|s| u8::try_from(s).ok())
            .filter(|s| *s <= 100)
        {
            Some(score) => Ok(Some(score)),
            None => Err(self.error(
                &at.key(key),
                format!(
                    "must be a whole number from 0 to 100, not {}",
                    describe(value)
                ),
            )),
        }
    }

    /// A timestamp in any spelling [`parse_time_field`] reads; one that does not parse is an
    /// error, never "no time" (a `valid_until` that does not parse would otherwise mean never
    /// expiring).
    pub fn time(
        &self,
        map: &Map<String, Value>,
        at: &JsonPath,
        key: &str,
    ) -> Result<Option<i64>, ImportError> {
        match Self::field(map, key) {
            None => Ok(None),
            Some(Value::String(s)) => {
                parse_time_field(s).map_err(|message| self.error(&at.key(key), message))
            }
            Some(Value::Number(n)) => match n.as_i64().and_then(|s| s.checked_mul(1000)) {
                Some(ms) if jiff::Timestamp::from_millisecond(ms).is_ok() => Ok(Some(ms)),
                _ => Err(self.error(&at.key(key), format!("{n} is not a time in epoch seconds"))),
            },
            Some(other) => Err(self.error(
                &at.key(key),
                format!("must be a timestamp, not {}", describe(other)),
            )),
        }
    }
}

/// A short, inert description of a JSON value for an error message.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => {
            let cut: String = s.chars().take(40).collect();
            format!("the string \"{}\"", cut.escape_debug())
        }
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// The line and column (1-based, in characters) where the value at `at` starts in `text`, a
/// document that already parsed. With duplicate keys the first is found.
pub fn locate(text: &str, at: &JsonPath) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    skip_space(bytes, &mut i);
    for step in &at.0 {
        match step {
            Step::Key(wanted) => {
                expect(bytes, &mut i, b'{')?;
                loop {
                    skip_space(bytes, &mut i);
                    let start = i;
                    skip_string(bytes, &mut i)?;
                    let key: String = serde_json::from_str(text.get(start..i)?).ok()?;
                    skip_space(bytes, &mut i);
                    expect(bytes, &mut i, b':')?;
                    skip_space(bytes, &mut i);
                    if &key == wanted {
                        break;
                    }
                    skip_value(bytes, &mut i)?;
                    skip_space(bytes, &mut i);
                    expect(bytes, &mut i, b',')?;
                }
            }
            Step::Index(wanted) => {
                expect(bytes, &mut i, b'[')?;
                for _ in 0..*wanted {
                    skip_space(bytes, &mut i);
                    skip_value(bytes, &mut i)?;
                    skip_space(bytes, &mut i);
                    expect(bytes, &mut i, b',')?;
                }
                skip_space(bytes, &mut i);
            }
        }
    }
    let before = text.get(..i)?;
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, last)| last)
        .chars()
        .count()
        + 1;
    Some((line, column))
}

fn skip_space(bytes: &[u8], i: &mut usize) {
    while bytes.get(*i).is_some_and(|b| b.is_ascii_whitespace()) {
        *i += 1;
    }
}

fn expect(bytes: &[u8], i: &mut usize, byte: u8) -> Option<()> {
    (bytes.get(*i) == Some(&byte)).then(|| *i += 1)
}

fn skip_string(bytes: &[u8], i: &mut usize) -> Option<()> {
    expect(bytes, i, b'"')?;
    loop {
        match bytes.get(*i)? {
            b'\\' => *i += 2,
            b'"' => {
                *i += 1;
                return Some(());
            }
            _ => *i += 1,
        }
    }
}

/// Skips one value; a container is skipped by counting brackets outside strings (no
/// recursion, so depth cannot exhaust the stack).
fn skip_value(bytes: &[u8], i: &mut usize) -> Option<()> {
    match bytes.get(*i)? {
        b'"' => skip_string(bytes, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match bytes.get(*i)? {
                    b'"' => {
                        skip_string(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            *i += 1;
                            return Some(());
                        }
                    }
                    _ => {}
                }
                *i += 1;
            }
        }
        _ => {
            while bytes
                .get(*i)
                .is_some_and(|b| !b",}]".contains(b) && !b.is_ascii_whitespace())
            {
                *i += 1;
            }
            Some(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_found_by_line_and_column() {
        let text = "{\n  \"type\": \"bundle\",\n  \"objects\": [\n    {\"a\": [1, {\"x\": 2}], \"b\": \"s\"},\n    {\"confidence\": \"high\"}\n  ]\n}";
        let at = JsonPath::default()
            .key("objects")
            .index(1)
            .key("confidence");
        assert_eq!(locate(text, &at), Some((5, 20)));
        assert_eq!(at.to_string(), "objects[1].confidence");
        let at = JsonPath::default().key("objects").index(0).key("b");
        assert_eq!(locate(text, &at), Some((4, 31)));
        assert_eq!(locate(text, &JsonPath::default().key("nope")), None);
    }
}
