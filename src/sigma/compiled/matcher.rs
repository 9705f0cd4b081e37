//! Finding every needle of one (field, cased) pair in a value: the occurrences the compiled set
//! needs, by the cheapest structure that finds them exactly.
//!
//! An Aho-Corasick automaton finds every occurrence of every needle, but walks the whole value
//! byte by byte whatever the needles are. Three kinds of needle need less, and are taken out of
//! the automaton (an automaton left with no needle is not built):
//!
//! - **Whole values**: a needle only ever tested with `exact` (`OriginalFileName: cmd.exe`,
//!   `IntegrityLevel: System`) can only sit at (0, len): one hash lookup of the value.
//! - **Path tails**: a needle only tested with `endswith` or `exact` that starts with a path
//!   separator and holds no other (`Image|endswith: \powershell.exe`) can only end at the
//!   value's end, so it must start at the value's last separator: one lookup of that tail.
//! - **Pivot bytes**: when every remaining needle holds one punctuation byte (`=` in
//!   `Hashes|contains: IMPHASH=…`), an occurrence puts the needle's first such byte on one of the
//!   value's; the needles are grouped by (where that byte is in the needle, length), and each
//!   occurrence of the byte in the value costs one lookup per group. Used only when the groups
//!   are few; the hex of a `Hashes` value is the automaton's slowest input and holds four `=`.
//!
//! Each structure reports an occurrence as (needle, start, end), exactly as the automaton would
//! have for the positions the needle's tests can use, so the caller's anchor checks are the same.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use rustc_hash::FxHashMap;

use super::CompileError;
use crate::event::Field;

#[derive(Debug, Clone, Copy)]
pub(super) struct Use {
    pub(super) atom: u32,
    pub(super) anchor: Anchor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Anchor {
    Anywhere,
    Start,
    End,
    Whole,
}

impl Anchor {
    pub(super) fn holds(self, start: usize, end: usize, len: usize) -> bool {
        match self {
            Anchor::Anywhere => true,
            Anchor::Start => start == 0,
            Anchor::End => end == len,
            Anchor::Whole => start == 0 && end == len,
        }
    }
}

/// Path separators a tail needle may start with.
const SEPARATORS: [u8; 2] = [b'\\', b'/'];
/// At most this many (position, length) groups for a pivot byte; each costs a lookup per
/// occurrence of the byte in a value.
const MAX_PIVOT_GROUPS: usize = 8;
/// Fewer needles than this and the automaton stays: its prefilter skips most of a value when
/// the needles are few.
const MIN_PIVOT_NEEDLES: usize = 16;

/// Needles of one matcher while they are being collected.
#[derive(Default)]
pub(super) struct NeedleSet {
    ids: FxHashMap<String, usize>,
    needles: Vec<String>,
    uses: Vec<Vec<Use>>,
}

/// Every needle of one (field, cased) pair, split over the structures that find it.
#[derive(Debug)]
pub(super) struct FieldMatcher {
    /// Per needle id: the atoms that needle serves and where it must sit.
    uses: Vec<Box<[Use]>>,
    whole: FxHashMap<Box<str>, u32>,
    tails: Vec<TailIndex>,
    pivot: Option<PivotIndex>,
    automaton: Option<Automaton>,
}

/// Needles that are one separator and a last path segment, by that tail.
#[derive(Debug)]
struct TailIndex {
    separator: u8,
    needles: FxHashMap<Box<str>, u32>,
}

#[derive(Debug)]
struct PivotIndex {
    byte: u8,
    groups: Vec<PivotGroup>,
}

/// The needles whose first pivot byte is `before` bytes in and that are `len` bytes long.
#[derive(Debug)]
struct PivotGroup {
    before: usize,
    len: usize,
    needles: FxHashMap<Box<str>, u32>,
}

#[derive(Debug)]
struct Automaton {
    matcher: AhoCorasick,
    /// Per automaton pattern: the needle id.
    ids: Box<[u32]>,
}

impl NeedleSet {
    pub(super) fn add(&mut self, needle: &str, hit: Use) {
        let id = match self.ids.get(needle) {
            Some(&id) => id,
            None => {
                let id = self.needles.len();
                self.ids.insert(needle.to_owned(), id);
                self.needles.push(needle.to_owned());
                self.uses.push(Vec::new());
                id
            }
        };
        if let Some(uses) = self.uses.get_mut(id) {
            uses.push(hit);
        }
    }

    /// Builds the matcher; `None` when there is no needle. Needles are matched byte for byte:
    /// the caller lowercases the values of an uncased matcher first.
    pub(super) fn build(self, field: Field) -> Result<Option<FieldMatcher>, CompileError> {
        if self.needles.is_empty() {
            return Ok(None);
        }
        let mut whole = FxHashMap::default();
        let mut tails: Vec<TailIndex> = Vec::new();
        let mut rest: Vec<(u32, &str)> = Vec::new();
        for (id, (needle, uses)) in self.needles.iter().zip(&self.uses).enumerate() {
            let id = u32::try_from(id).unwrap_or(u32::MAX);
            let only = |anchors: &[Anchor]| uses.iter().all(|u| anchors.contains(&u.anchor));
            if only(&[Anchor::Whole]) {
                whole.insert(Box::from(needle.as_str()), id);
            } else if let Some(separator) = tail_separator(needle)
                && only(&[Anchor::End, Anchor::Whole])
            {
                let at = match tails.iter().position(|t| t.separator == separator) {
                    Some(at) => at,
                    None => {
                        tails.push(TailIndex {
                            separator,
                            needles: FxHashMap::default(),
                        });
                        tails.len() - 1
                    }
                };
                if let Some(tail) = tails.get_mut(at) {
                    tail.needles.insert(Box::from(needle.as_str()), id);
                }
            } else {
                rest.push((id, needle));
            }
        }
        let (pivot, automaton) = match PivotIndex::new(&rest) {
            Some(pivot) => (Some(pivot), None),
            None => (None, Automaton::new(&rest, field)?),
        };
        Ok(Some(FieldMatcher {
            uses: self.uses.into_iter().map(Vec::into_boxed_slice).collect(),
            whole,
            tails,
            pivot,
            automaton,
        }))
    }
}

/// The separator a tail needle starts with, when it holds no other.
fn tail_separator(needle: &str) -> Option<u8> {
    let (&first, rest) = needle.as_bytes().split_first()?;
    (SEPARATORS.contains(&first) && !rest.contains(&first) && !rest.is_empty()).then_some(first)
}

impl PivotIndex {
    /// The punctuation byte every needle holds with the fewest groups, if that is few enough.
    fn new(needles: &[(u32, &str)]) -> Option<PivotIndex> {
        if needles.len() < MIN_PIVOT_NEEDLES {
            return None;
        }
        let shape = |byte: u8| -> Option<Vec<(usize, usize)>> {
            let mut shapes = Vec::new();
            for (_, needle) in needles {
                let before = needle.bytes().position(|b| b == byte)?;
                let shape = (before, needle.len());
                if !shapes.contains(&shape) {
                    if shapes.len() == MAX_PIVOT_GROUPS {
                        return None;
                    }
                    shapes.push(shape);
                }
            }
            Some(shapes)
        };
        let (byte, shapes) = (0u8..128)
            .filter(|b| b.is_ascii_punctuation())
            .filter_map(|b| shape(b).map(|s| (b, s)))
            .min_by_key(|(_, shapes)| shapes.len())?;
        let mut groups: Vec<PivotGroup> = shapes
            .into_iter()
            .map(|(before, len)| PivotGroup {
                before,
                len,
                needles: FxHashMap::default(),
            })
            .collect();
        for &(id, needle) in needles {
            let before = needle.bytes().position(|b| b == byte)?;
            let group = groups
                .iter_mut()
                .find(|g| g.before == before && g.len == needle.len())?;
            group.needles.insert(Box::from(needle), id);
        }
        Some(PivotIndex { byte, groups })
    }

    fn find(&self, haystack: &str, mut found: impl FnMut(u32, usize, usize)) {
        for at in memchr::memchr_iter(self.byte, haystack.as_bytes()) {
            for group in &self.groups {
                let Some(start) = at.checked_sub(group.before) else {
                    continue;
                };
                let end = start + group.len;
                if let Some(piece) = haystack.get(start..end)
                    && let Some(&id) = group.needles.get(piece)
                {
                    found(id, start, end);
                }
            }
        }
    }
}

impl Automaton {
    fn new(needles: &[(u32, &str)], field: Field) -> Result<Option<Automaton>, CompileError> {
        if needles.is_empty() {
            return Ok(None);
        }
        let patterns: Vec<&str> = needles.iter().map(|(_, n)| *n).collect();
        // Standard semantics: overlapping search reports every occurrence of every needle. The
        // contiguous NFA: over SigmaHQ's process_creation rules it matched as fast as the DFA
        // in 5 MiB instead of 73 MiB, and builds 3x faster.
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .build(&patterns)
            .or_else(|_| {
                // Should the contiguous form exceed its limits, the default choice still builds.
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(&patterns)
            })
            .map_err(|source| CompileError::Automaton { field, source })?;
        Ok(Some(Automaton {
            matcher,
            ids: needles.iter().map(|(id, _)| *id).collect(),
        }))
    }
}

impl FieldMatcher {
    /// Calls `found` with the uses of every needle occurrence in `haystack` that one of them
    /// can need, with its start and end. The same needle may be reported more than once.
    pub(super) fn find(&self, haystack: &str, mut found: impl FnMut(&[Use], usize, usize)) {
        let len = haystack.len();
        let mut report = |id: u32, start: usize, end: usize| {
            if let Some(uses) = self.uses.get(id as usize) {
                found(uses, start, end);
            }
        };
        if let Some(&id) = self.whole.get(haystack) {
            report(id, 0, len);
        }
        for tail in &self.tails {
            if let Some(at) = memchr::memrchr(tail.separator, haystack.as_bytes())
                && let Some(piece) = haystack.get(at..)
                && let Some(&id) = tail.needles.get(piece)
            {
                report(id, at, len);
            }
        }
        if let Some(pivot) = &self.pivot {
            pivot.find(haystack, &mut report);
        }
        if let Some(automaton) = &self.automaton {
            for hit in automaton.matcher.find_overlapping_iter(haystack) {
                if let Some(&id) = automaton.ids.get(hit.pattern().as_usize()) {
                    report(id, hit.start(), hit.end());
                }
            }
        }
    }

    /// How many distinct needles the matcher holds.
    pub(super) fn needles(&self) -> usize {
        self.uses.len()
    }

    /// How many needles are found without the automaton (whole values, path tails, pivots).
    pub(super) fn indexed(&self) -> usize {
        self.whole.len()
            + self.tails.iter().map(|t| t.needles.len()).sum::<usize>()
            + self.pivot.as_ref().map_or(0, |p| {
                p.groups.iter().map(|g| g.needles.len()).sum::<usize>()
            })
    }

    /// Approximate heap bytes.
    pub(super) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let map = |m: &FxHashMap<Box<str>, u32>| {
            m.capacity() * (size_of::<Box<str>>() + size_of::<u32>() + 1)
                + m.keys().map(|k| k.len()).sum::<usize>()
        };
        self.uses.capacity() * size_of::<Box<[Use]>>()
            + self
                .uses
                .iter()
                .map(|u| u.len() * size_of::<Use>())
                .sum::<usize>()
            + map(&self.whole)
            + self.tails.iter().map(|t| map(&t.needles)).sum::<usize>()
            + self.pivot.as_ref().map_or(0, |p| {
                p.groups.iter().map(|g| map(&g.needles)).sum::<usize>()
            })
            + self
                .automaton
                .as_ref()
                .map_or(0, |a| a.matcher.memory_usage() + a.ids.len() * 4)
    }
}
