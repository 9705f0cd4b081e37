//! Text from outside made inert before a person reads it.
//!
//! Event values come from sensors, and sensors can be lied to: a host name holding a newline
//! prints a second, forged line in the console or the log; an escape sequence clears the line and
//! paints "all clear" over it; a right-to-left override reverses what follows. Every place that
//! shows such text to people (the console, the log, notifications) passes it through [`inert`],
//! which writes each character that could act on a terminal or a line-based reader as a visible
//! escape instead:
//!
//! - C0 controls (U+0000..U+001F) and DEL: `\n`, `\r`, `\t`, else `\u001b` and so on;
//! - C1 controls (U+0080..U+009F), which some terminals treat like ESC sequences;
//! - the line and paragraph separators U+2028 and U+2029;
//! - the bidirectional controls (U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069),
//!   which reorder what is displayed without changing what is stored.
//!
//! The escapes are the JSON ones, so an escaped value inside a JSON string is still valid JSON
//! with the same meaning. A backslash is left as it is: Windows paths and command lines are full
//! of them, and without the characters above no backslash can make a line break or a colour.
//!
//! This module depends on nothing else in the crate; anything may use it.

use std::borrow::Cow;
use std::fmt;

/// Whether `c` can act on a terminal or split a line rather than just be shown.
pub fn is_active(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{2028}' | '\u{2029}'
        | '\u{061c}' | '\u{200e}' | '\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

fn escape_char(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        c => write!(out, "\\u{:04x}", u32::from(c)),
    }
}

/// `text` with every active character written as a visible escape; borrowed when there is none
/// (the common case costs a scan, not a copy).
pub fn inert(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_active) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let _ = write_inert(&mut out, text, |_| false);
    Cow::Owned(out)
}

/// `text` with every active character escaped except newline and tab: for a message whose author
/// may write several lines (the sinks that are line-based escape those too).
pub fn inert_keeping_lines(text: &str) -> Cow<'_, str> {
    let keep = |c: char| c == '\n' || c == '\t';
    if !text.chars().any(|c| is_active(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let _ = write_inert(&mut out, text, keep);
    Cow::Owned(out)
}

/// Writes `text` to `out` with active characters escaped, except those `keep` lets through.
fn write_inert(out: &mut impl fmt::Write, text: &str, keep: impl Fn(char) -> bool) -> fmt::Result {
    let mut rest = text;
    while let Some((at, c)) = rest
        .char_indices()
        .find(|(_, c)| is_active(*c) && !keep(*c))
    {
        out.write_str(&rest[..at])?;
        escape_char(out, c)?;
        rest = &rest[at + c.len_utf8()..];
    }
    out.write_str(rest)
}

/// Shows a value inert in `format!` and tracing fields without building a string first.
#[derive(Debug, Clone, Copy)]
pub struct Inert<'a>(pub &'a str);

impl fmt::Display for Inert<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_inert(f, self.0, |_| false)
    }
}

/// A writer for log lines: each write is one formatted line (the log formatter writes a whole
/// event at once), and everything in it but its final newline is made inert, so no value logged
/// anywhere, by any module, can start a line of its own. ESC is let through: the formatter
/// escapes ESC in every logged value itself and uses it only for its own colours.
pub struct LogLines<W>(pub W);

impl<W: std::io::Write> std::io::Write for LogLines<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (text.as_ref(), ""),
        };
        if !body.chars().any(|c| is_active(c) && c != '\u{1b}') {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = String::with_capacity(buf.len() + 16);
        let _ = write_inert(&mut line, body, |c| c == '\u{1b}');
        line.push_str(end);
        self.0.write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let text = r#"C:\Windows\System32\cmd.exe /c "echo ünïcode 日本""#;
        assert!(matches!(inert(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn every_active_character_becomes_a_visible_escape() {
        assert_eq!(
            inert("ws-1\n2025-11-03T14:30:10Z CRITICAL forged"),
            "ws-1\\n2025-11-03T14:30:10Z CRITICAL forged"
        );
        assert_eq!(
            inert("ws-1\u{1b}[2K\r\u{1b}[32mall clear"),
            "ws-1\\u001b[2K\\r\\u001b[32mall clear"
        );
        assert_eq!(
            inert("a\u{0}\u{7}\t\u{7f}\u{85}\u{9b}b"),
            "a\\u0000\\u0007\\t\\u007f\\u0085\\u009bb"
        );
        assert_eq!(
            inert("x\u{2028}y\u{2029}z\u{202e}gpj.exe\u{2066}"),
            "x\\u2028y\\u2029z\\u202egpj.exe\\u2066"
        );
        assert_eq!(Inert("a\nb").to_string(), "a\\nb");
    }

    #[test]
    fn an_escaped_value_is_still_the_same_json_string() {
        let value = "ws-1\n\u{1b}[2K\u{202e}\u{85}x";
        let quoted = format!("\"{}\"", inert(value));
        let back: String = serde_json::from_str(&quoted).unwrap_or_default();
        assert_eq!(back, value);
    }

    #[test]
    fn a_log_line_keeps_only_its_final_newline_and_the_formatters_colours() {
        use std::io::Write;
        let mut out = LogLines(Vec::new());
        let _ = out.write_all(b"\x1b[33m WARN\x1b[0m all is well\nINFO all clear\r\n");
        assert_eq!(
            String::from_utf8_lossy(&out.0),
            "\x1b[33m WARN\x1b[0m all is well\\nINFO all clear\\r\n"
        );
    }
}
