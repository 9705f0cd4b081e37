//! JSON lines from a file or standard input, one event per line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use crate::event::MAX_EVENT_BYTES;

/// One line as read. `bytes` holds at most [`MAX_EVENT_BYTES`] + 1 bytes: a longer line is cut
/// there (and then rejected as oversize) so one huge line cannot exhaust memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number.
    pub number: u64,
    pub bytes: Vec<u8>,
    /// The line's real length, when it was longer than what `bytes` holds.
    pub full_len: usize,
}

/// Reads lines with a bounded buffer. Blank lines are skipped.
pub struct JsonlReader {
    input: Box<dyn BufRead + Send>,
    number: u64,
}

impl JsonlReader {
    /// Opens `path`, or standard input for `-`.
    pub fn open(path: &Path) -> io::Result<JsonlReader> {
        let input: Box<dyn Read + Send> = if path == Path::new("-") {
            Box::new(io::stdin())
        } else {
            Box::new(File::open(path)?)
        };
        Ok(JsonlReader::new(input))
    }

    pub fn new(input: impl Read + Send + 'static) -> JsonlReader {
        JsonlReader {
            input: Box::new(BufReader::with_capacity(256 * 1024, input)),
            number: 0,
        }
    }

    /// The next non-blank line, or `None` at the end of input.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            let mut bytes = Vec::new();
            let mut full_len = 0usize;
            let mut saw_any = false;
            loop {
                let buffer = self.input.fill_buf()?;
                if buffer.is_empty() {
                    break;
                }
                saw_any = true;
                let (chunk, found_newline) = match buffer.iter().position(|b| *b == b'\n') {
                    Some(at) => (&buffer[..at], true),
                    None => (buffer, false),
                };
                let room = (MAX_EVENT_BYTES + 1).saturating_sub(bytes.len());
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
                full_len += chunk.len();
                let consumed = chunk.len() + usize::from(found_newline);
                self.input.consume(consumed);
                if found_newline {
                    break;
                }
            }
            if !saw_any {
                return Ok(None);
            }
            self.number += 1;
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
                full_len -= 1;
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(Line {
                number: self.number,
                bytes,
                full_len,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_lines_skips_blanks_and_bounds_long_lines() {
        let mut text = b"{\"a\":1}\r\n\n   \n{\"b\":2}\n".to_vec();
        text.extend(vec![b'x'; MAX_EVENT_BYTES * 2]);
        text.extend(b"\n{\"c\":3}");
        let mut reader = JsonlReader::new(io::Cursor::new(text));
        let first = reader.next_line().unwrap().unwrap();
        assert_eq!(
            (first.number, first.bytes.as_slice()),
            (1, b"{\"a\":1}".as_slice())
        );
        assert_eq!(reader.next_line().unwrap().unwrap().number, 4);
        let long = reader.next_line().unwrap().unwrap();
        assert_eq!(long.bytes.len(), MAX_EVENT_BYTES + 1);
        assert_eq!(long.full_len, MAX_EVENT_BYTES * 2);
        let last = reader.next_line().unwrap().unwrap();
        assert_eq!(
            (last.number, last.bytes.as_slice()),
            (6, b"{\"c\":3}".as_slice())
        );
        assert!(reader.next_line().unwrap().is_none());
    }
}
