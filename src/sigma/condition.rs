//! The condition language: `selection and not 1 of filter_*`, parsed against the rule's search
//! identifiers into a [`Condition`] with every `1 of`/`all of` already expanded.
//!
//! Precedence, least to most binding, as the specification orders it: `or`, `and`, `not`,
//! `x of`, parentheses. `them` covers every identifier not starting with `_`; a pattern covers
//! every identifier it matches, `*` standing for any run of characters. A pattern or `them`
//! that covers nothing is an error: the rule's author meant something that is not there.

use super::ast::Condition;

/// A problem in a condition, at a character offset into the condition's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    /// 0-based character offset into the condition text.
    pub offset: usize,
    pub code: &'static str,
    pub message: String,
}

impl ConditionError {
    fn new(offset: usize, code: &'static str, message: impl Into<String>) -> ConditionError {
        ConditionError {
            offset,
            code,
            message: message.into(),
        }
    }
}

/// Deepest nesting of parentheses and `not` a condition may have; the parser recurses once per
/// level, so a hostile condition of thousands of `(` must not reach the stack's end.
pub const MAX_CONDITION_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Open,
    Close,
    Pipe,
}

/// Splits the text into tokens with their character offsets.
fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ConditionError> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push((i, Token::Open));
                i += 1;
            }
            ')' => {
                tokens.push((i, Token::Close));
                i += 1;
            }
            '|' => {
                // What follows is a v1 aggregation (`count() by x > 5`), refused as a whole.
                tokens.push((i, Token::Pipe));
                break;
            }
            c if c.is_alphanumeric() || matches!(c, '_' | '*' | '-' | '.') => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '*' | '-' | '.'))
                {
                    i += 1;
                }
                tokens.push((start, Token::Word(chars[start..i].iter().collect())));
            }
            other => {
                return Err(ConditionError::new(
                    i,
                    "sigma-bad-condition",
                    format!("unexpected character `{other}` in the condition"),
                ));
            }
        }
    }
    Ok(tokens)
}

/// Parses `text` against the search identifiers `names` (in rule order; `Condition::Search`
/// holds an index into it).
pub fn parse(text: &str, names: &[&str]) -> Result<Condition, ConditionError> {
    let tokens = tokenize(text)?;
    let end = text.chars().count();
    let mut parser = Parser {
        tokens,
        at: 0,
        names,
        end,
        depth: 0,
    };
    if parser.tokens.is_empty() {
        return Err(ConditionError::new(
            0,
            "sigma-bad-condition",
            "the condition is empty",
        ));
    }
    let condition = parser.or()?;
    if let Some((offset, token)) = parser.tokens.get(parser.at) {
        let (code, message) = match token {
            Token::Pipe => (
                "sigma-aggregation",
                "aggregations after `|` (`| count() by ...`) are Sigma v1 syntax the specification deprecated; write a correlation rule".to_string(),
            ),
            Token::Close => ("sigma-bad-condition", "`)` without a matching `(`".to_string()),
            Token::Word(word) => (
                "sigma-bad-condition",
                format!("expected `and`, `or` or the end of the condition, found `{word}`"),
            ),
            Token::Open => (
                "sigma-bad-condition",
                "expected `and`, `or` or the end of the condition, found `(`".to_string(),
            ),
        };
        return Err(ConditionError::new(*offset, code, message));
    }
    Ok(condition)
}

struct Parser<'a> {
    tokens: Vec<(usize, Token)>,
    at: usize,
    names: &'a [&'a str],
    end: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek_word(&self) -> Option<&str> {
        match self.tokens.get(self.at) {
            Some((_, Token::Word(w))) => Some(w.as_str()),
            _ => None,
        }
    }

    fn offset(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(o, _)| *o)
    }

    fn or(&mut self) -> Result<Condition, ConditionError> {
        let mut parts = vec![self.and()?];
        while self.peek_word() == Some("or") {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Condition::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Condition, ConditionError> {
        let mut parts = vec![self.not()?];
        while self.peek_word() == Some("and") {
            self.at += 1;
            parts.push(self.not()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Condition::And(parts)
        })
    }

    fn enter(&mut self) -> Result<(), ConditionError> {
        self.depth += 1;
        if self.depth > MAX_CONDITION_DEPTH {
            return Err(ConditionError::new(
                self.offset(),
                "sigma-bad-condition",
                format!("the condition nests deeper than {MAX_CONDITION_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn not(&mut self) -> Result<Condition, ConditionError> {
        if self.peek_word() == Some("not") {
            self.at += 1;
            self.enter()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Condition::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Condition, ConditionError> {
        let offset = self.offset();
        let Some((_, token)) = self.tokens.get(self.at).cloned() else {
            return Err(ConditionError::new(
                offset,
                "sigma-bad-condition",
                "the condition ends where a search identifier, `not`, `(` or `1 of`/`all of` was expected",
            ));
        };
        self.at += 1;
        match token {
            Token::Open => {
                self.enter()?;
                let inner = self.or()?;
                self.depth -= 1;
                match self.tokens.get(self.at) {
                    Some((_, Token::Close)) => {
                        self.at += 1;
                        Ok(inner)
                    }
                    _ => Err(ConditionError::new(
                        self.offset(),
                        "sigma-bad-condition",
                        format!("`(` at column {} is not closed", offset + 1),
                    )),
                }
            }
            Token::Close => Err(ConditionError::new(
                offset,
                "sigma-bad-condition",
                "`)` where a search identifier was expected",
            )),
            Token::Pipe => Err(ConditionError::new(
                offset,
                "sigma-aggregation",
                "aggregations after `|` are Sigma v1 syntax the specification deprecated; write a correlation rule",
            )),
            Token::Word(word) => {
                if self.peek_word() == Some("of") {
                    self.at += 1;
                    return self.quantified(offset, &word);
                }
                if matches!(word.as_str(), "and" | "or" | "not" | "of" | "them") {
                    return Err(ConditionError::new(
                        offset,
                        "sigma-bad-condition",
                        format!("`{word}` where a search identifier was expected"),
                    ));
                }
                match self.names.iter().position(|name| *name == word) {
                    Some(index) => Ok(Condition::Search(index)),
                    None => Err(ConditionError::new(
                        offset,
                        "sigma-unknown-search",
                        format!(
                            "the condition names `{word}`, which is not a search identifier of this rule (it has {})",
                            self.names
                                .iter()
                                .map(|n| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )),
                }
            }
        }
    }

    /// `1 of X`, `all of X`, with X a pattern or `them`.
    fn quantified(&mut self, offset: usize, quantity: &str) -> Result<Condition, ConditionError> {
        let any = match quantity {
            "1" => true,
            "all" => false,
            other => {
                return Err(ConditionError::new(
                    offset,
                    "sigma-bad-condition",
                    format!("`{other} of`: the specification defines only `1 of` and `all of`"),
                ));
            }
        };
        let target_offset = self.offset();
        let Some((_, Token::Word(target))) = self.tokens.get(self.at).cloned() else {
            return Err(ConditionError::new(
                target_offset,
                "sigma-bad-condition",
                format!(
                    "`{quantity} of` must be followed by a search identifier pattern or `them`"
                ),
            ));
        };
        self.at += 1;
        let covered: Vec<usize> = if target == "them" {
            (0..self.names.len())
                .filter(|&i| !self.names[i].starts_with('_'))
                .collect()
        } else {
            let pattern: Vec<char> = target.chars().collect();
            (0..self.names.len())
                .filter(|&i| wildcard_matches(&pattern, &self.names[i].chars().collect::<Vec<_>>()))
                .collect()
        };
        if covered.is_empty() {
            return Err(ConditionError::new(
                target_offset,
                "sigma-no-search-matches",
                format!("`{quantity} of {target}` covers no search identifier of this rule"),
            ));
        }
        let parts: Vec<Condition> = covered.into_iter().map(Condition::Search).collect();
        Ok(if parts.len() == 1 {
            parts
                .into_iter()
                .next()
                .unwrap_or(Condition::Or(Vec::new()))
        } else if any {
            Condition::Or(parts)
        } else {
            Condition::And(parts)
        })
    }
}

/// `*` in `pattern` is any run of characters; everything else matches itself. Greedy with one
/// backtrack point, so it is linear-times-pattern even for `*a*a*a...` against long names.
fn wildcard_matches(pattern: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &[
        "selection",
        "selection_img",
        "filter_main",
        "filter_opt",
        "_hidden",
    ];

    fn p(text: &str) -> Result<Condition, ConditionError> {
        parse(text, NAMES)
    }

    #[test]
    fn precedence_or_below_and_below_not() {
        let parsed = p("selection or selection_img and not filter_main").expect("parses");
        assert_eq!(
            parsed,
            Condition::Or(vec![
                Condition::Search(0),
                Condition::And(vec![
                    Condition::Search(1),
                    Condition::Not(Box::new(Condition::Search(2)))
                ])
            ])
        );
    }

    #[test]
    fn parentheses_bind_tightest() {
        let parsed = p("(selection or selection_img) and filter_main").expect("parses");
        assert_eq!(
            parsed,
            Condition::And(vec![
                Condition::Or(vec![Condition::Search(0), Condition::Search(1)]),
                Condition::Search(2)
            ])
        );
    }

    #[test]
    fn one_of_and_all_of_patterns_expand() {
        assert_eq!(
            p("1 of selection* and not 1 of filter_*").expect("parses"),
            Condition::And(vec![
                Condition::Or(vec![Condition::Search(0), Condition::Search(1)]),
                Condition::Not(Box::new(Condition::Or(vec![
                    Condition::Search(2),
                    Condition::Search(3)
                ])))
            ])
        );
        assert_eq!(
            p("all of selection*").expect("parses"),
            Condition::And(vec![Condition::Search(0), Condition::Search(1)])
        );
    }

    #[test]
    fn them_excludes_underscore_identifiers() {
        assert_eq!(
            p("all of them").expect("parses"),
            Condition::And((0..4).map(Condition::Search).collect())
        );
        assert_eq!(
            p("1 of them").expect("parses"),
            Condition::Or((0..4).map(Condition::Search).collect())
        );
    }

    #[test]
    fn pattern_matching_nothing_is_refused() {
        let err = p("selection and not 1 of nothing*").expect_err("refused");
        assert_eq!(err.code, "sigma-no-search-matches");
        assert_eq!(err.offset, 23);
    }

    #[test]
    fn unknown_identifier_is_refused_at_its_offset() {
        let err = p("selection and filtr").expect_err("refused");
        assert_eq!(err.code, "sigma-unknown-search");
        assert_eq!(err.offset, 14);
    }

    #[test]
    fn malformed_conditions_are_refused() {
        for (text, offset) in [
            ("selection and", 13),
            ("(selection", 10),
            ("selection)", 9),
            ("selection filter_main", 10),
            ("2 of selection*", 0),
            ("", 0),
            ("selection & filter_main", 10),
        ] {
            let err = p(text).expect_err(text);
            assert_eq!(err.code, "sigma-bad-condition", "{text}");
            assert_eq!(err.offset, offset, "{text}");
        }
    }

    #[test]
    fn aggregation_is_refused_as_deprecated() {
        let err = p("selection | count() by host > 5").expect_err("refused");
        assert_eq!(err.code, "sigma-aggregation");
        assert_eq!(err.offset, 10);
    }

    #[test]
    fn hostile_nesting_is_refused_not_overflowing() {
        let text = format!("{}selection{}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(p(&text).expect_err("refused").code, "sigma-bad-condition");
        let text = format!("{}selection", "not ".repeat(100_000));
        assert_eq!(p(&text).expect_err("refused").code, "sigma-bad-condition");
    }
}
