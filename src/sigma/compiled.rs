//! The compiled rule set: every rule's value tests folded into shared matchers, so the cost of an
//! event grows slowly with the number of rules.
//!
//! The direct evaluator (`eval.rs`) defines what a rule means; this module must give the same
//! answer on every event (a property test holds it to that). How it gets there:
//!
//! - **Atoms.** Every distinct (field, value test) of every rule is one atom, shared by all the
//!   rules that use it. Keyword (field-less) tests are atoms over all keyword fields.
//! - **Literal atoms** (`exact`/`contains`/`startswith`/`endswith` text tests) are found by one
//!   matcher per (field, cased) over every needle of every rule of the event kind
//!   (`compiled/matcher.rs`): an Aho-Corasick automaton, with whole values, path tails and
//!   needles sharing a pivot byte taken out of it into hash lookups. Occurrences are overlapping
//!   and carry offsets, so one pass answers all four kinds of text test: `startswith` wants one
//!   at 0, `endswith` one ending at the value's end, `exact` both. Uncased needles (stored
//!   lowercased by the parser) are searched in the value lowercased once, as the evaluator
//!   lowercases it.
//! - **Gated atoms** carry a text every match must contain as a `contains` needle, and run only
//!   when it was found: a glob its longest literal piece, a regular expression the longest
//!   literal its every match holds (`\s-c\s` waits for `-c`).
//! - **Lazy atoms** (regular expressions without such a literal, cidr, comparisons, exists,
//!   null, fieldref, and text tests a matcher cannot answer exactly) are evaluated only when a
//!   condition asks, at most once per event.
//! - **Deferred atoms.** A literal or gated atom of one or two bytes that wakes no rule (its
//!   rule waits for a rarer atom, `Image|endswith: \certutil.exe` before the command line's
//!   `-f`) stays out of the matchers: it is checked only when its rule runs, on the value
//!   lowercased once per event. Such a needle is in most values, and a matcher reports every
//!   occurrence of it; checked afterwards, it costs one short search for the few rules that
//!   run. (Deferring every non-waking needle measured slower: longer needles are rare in
//!   values, and the automaton finds them at no extra cost per byte.)
//! - **Candidates.** At build time each rule's condition is evaluated three-valued with every
//!   literal and gated atom false and every lazy atom unknown. If that is surely false, the rule
//!   can only match when one of its literal or gated atoms was hit, so it runs only then;
//!   otherwise (a rule that is all `not`, or all ungated regex) it runs on every event of its
//!   kinds.
//! - **Per kind.** Each event kind has its own atoms, automata and rules.
//!
//! Per event nothing is allocated in the common case: the marks are generation-stamped arrays
//! in a reusable [`Scratch`], numbers and addresses are formatted into a reused buffer, and each
//! field's value is lowercased at most once, into a reused per-field buffer.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::event::{Event, EventKind, Field, FieldType};

use super::ast::{Condition, GlobPart, Item, SearchBody, SigmaRule, TextMatch, ValueTest};
use super::eval;
use matcher::{Anchor, FieldMatcher, NeedleSet, Use};

/// Needles up to this many bytes that wake no rule are checked when their rule runs, not
/// scanned for: they are in most values.
const MAX_DEFERRED_NEEDLE: usize = 2;

/// Why a rule set could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The automaton for one field could not be built (too many or too long needles).
    #[error("cannot build the matcher for field `{field}`: {source}")]
    Automaton {
        field: Field,
        #[source]
        source: aho_corasick::BuildError,
    },
}

/// Every rule of a set, compiled for matching; built once, shared by every worker.
#[derive(Debug)]
pub struct CompiledSet {
    rule_count: usize,
    /// The most atoms and rules of any kind: what a [`Scratch`] must hold.
    most_atoms: usize,
    most_rules: usize,
    /// One slot per [`EventKind::ALL`] entry.
    kinds: Vec<KindSet>,
}

/// Per-event working memory, reused across events so matching allocates nothing.
///
/// One per worker thread; get it from [`CompiledSet::scratch`].
#[derive(Debug, Default)]
pub struct Scratch {
    marks: Marks,
    bufs: Buffers,
    candidates: Vec<u32>,
}

#[derive(Debug, Default)]
struct Marks {
    /// The current event's generation; a stamp equal to it means "set for this event".
    generation: u32,
    /// Per atom: hit by the automaton (literal atoms) or gate found (gated atoms).
    hit: Vec<u32>,
    /// Per atom: a lazily evaluated value is known for this event.
    known: Vec<u32>,
    value: Vec<bool>,
    /// Per rule of the kind: already a candidate for this event.
    candidate: Vec<u32>,
}

#[derive(Debug, Default)]
struct Buffers {
    /// A number or address field's value as text.
    text: String,
    /// The event's generation (the marks' stamp), for `lowered`.
    generation: u32,
    /// Per field (by its position in [`Field::ALL`]): its value lowercased, when stamped
    /// with this event's generation. The scan and every later test of the field share it.
    lowered: Vec<Lowered>,
}

#[derive(Debug, Default)]
struct Lowered {
    generation: u32,
    present: bool,
    text: String,
}

/// What one event kind runs.
#[derive(Debug, Default)]
struct KindSet {
    atoms: Vec<Atom>,
    /// Per atom, how it is evaluated: a small array beside the large atoms, so a condition
    /// over many literal atoms reads only stamps and this, not whole atoms.
    hows: Box<[AtomHow]>,
    /// Per atom: the gated rules (indices into `rules`) that become candidates when it is hit.
    wakes: Vec<Box<[u32]>>,
    scans: Vec<FieldScan>,
    rules: Vec<CompiledRule>,
    /// Rules whose condition can hold with no literal atom hit: run on every event.
    always: Vec<u32>,
}

#[derive(Debug)]
struct CompiledRule {
    /// Index into the slice the set was built from.
    index: usize,
    expr: Expr,
}

/// A rule's condition over atoms. `And([])` is true and `Or([])` false, as in the evaluator.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Atom(u32),
    Not(Box<Expr>),
    And(Box<[Expr]>),
    Or(Box<[Expr]>),
}

/// Where an atom's test looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Place {
    Field(Field),
    /// Every keyword field ([`eval::keyword_fields`]); any one holding is enough.
    Keywords,
}

#[derive(Debug)]
struct Atom {
    place: Place,
    test: ValueTest,
    how: AtomHow,
    /// What the atom puts into its field's matcher: its own needle (literal atoms) or its gate
    /// (gated atoms), whether it is cased, and where it must sit.
    needle: Option<(String, bool, Anchor)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AtomHow {
    /// True exactly when an automaton hit it this event.
    Literal,
    /// False unless its gate needle was hit; then evaluated.
    Gated,
    /// Evaluated when a condition asks.
    Lazy,
    /// A short literal or gated atom no rule waits for: in no matcher; evaluated when a
    /// condition asks, its gate (if it has one) checked first.
    Deferred,
}

/// The matchers scanning one field.
#[derive(Debug)]
struct FieldScan {
    field: Field,
    /// Uncased needles, run over the value lowercased as the evaluator lowercases it.
    folded: Option<FieldMatcher>,
    /// Cased needles, run over the value as it is.
    cased: Option<FieldMatcher>,
}

fn anchor_of(how: TextMatch) -> Anchor {
    match how {
        TextMatch::Contains => Anchor::Anywhere,
        TextMatch::StartsWith => Anchor::Start,
        TextMatch::EndsWith => Anchor::End,
        TextMatch::Exact => Anchor::Whole,
    }
}

impl CompiledSet {
    /// Compiles `rules`; [`CompiledSet::matches`] answers with indices into this slice.
    pub fn new(rules: &[Arc<SigmaRule>]) -> Result<CompiledSet, CompileError> {
        let mut kinds = Vec::with_capacity(EventKind::ALL.len());
        for kind in EventKind::ALL {
            let mut builder = KindBuilder::default();
            for (index, rule) in rules.iter().enumerate() {
                if rule.kinds.contains(&kind) {
                    builder.add_rule(index, rule);
                }
            }
            kinds.push(builder.build()?);
        }
        Ok(CompiledSet {
            rule_count: rules.len(),
            most_atoms: kinds.iter().map(|k| k.atoms.len()).max().unwrap_or(0),
            most_rules: kinds.iter().map(|k| k.rules.len()).max().unwrap_or(0),
            kinds,
        })
    }

    /// How many rules the set was built from.
    pub fn len(&self) -> usize {
        self.rule_count
    }

    pub fn is_empty(&self) -> bool {
        self.rule_count == 0
    }

    /// Working memory sized for this set.
    pub fn scratch(&self) -> Scratch {
        let mut scratch = Scratch::default();
        scratch.fit(self);
        scratch
    }

    /// The rules matching `event`, as ascending indices into the slice the set was built from,
    /// written to `out` (cleared first). Allocates nothing once `scratch` and `out` have grown.
    pub fn matches(&self, event: &Event, scratch: &mut Scratch, out: &mut Vec<usize>) {
        out.clear();
        let Some(set) = self.kinds.get(event.kind.index()) else {
            return;
        };
        if set.rules.is_empty() {
            return;
        }
        scratch.fit(self);
        scratch.marks.next_event();
        scratch.bufs.next_event(scratch.marks.generation);
        scratch.candidates.clear();
        set.scan(event, scratch);
        let Scratch {
            marks,
            bufs,
            candidates,
        } = scratch;
        for &rule in candidates.iter().chain(set.always.iter()) {
            if let Some(compiled) = set.rules.get(rule as usize)
                && set.eval(&compiled.expr, event, marks, bufs)
            {
                out.push(compiled.index);
            }
        }
        out.sort_unstable();
    }

    /// For `palisade explain`: every rule of the event's kind, as an index into the slice the
    /// set was built from, with what its literal gate said on `event`: `Some(true)` one of its
    /// literals was found (its condition ran), `Some(false)` none was (it could not match, and
    /// did not run), `None` it has no gate (it runs on every event of its kinds). The same scan
    /// [`CompiledSet::matches`] runs; allocates.
    pub fn gates(&self, event: &Event) -> Vec<(usize, Option<bool>)> {
        let Some(set) = self.kinds.get(event.kind.index()) else {
            return Vec::new();
        };
        let mut scratch = self.scratch();
        scratch.marks.next_event();
        scratch.bufs.next_event(scratch.marks.generation);
        set.scan(event, &mut scratch);
        set.rules
            .iter()
            .enumerate()
            .map(|(position, rule)| {
                let position = u32::try_from(position).unwrap_or(u32::MAX);
                let gate = if set.always.contains(&position) {
                    None
                } else {
                    Some(scratch.candidates.contains(&position))
                };
                (rule.index, gate)
            })
            .collect()
    }

    /// The matching rules' indices; allocates (for tests and one-off use).
    pub fn matching(&self, event: &Event) -> Vec<usize> {
        let mut scratch = self.scratch();
        let mut out = Vec::new();
        self.matches(event, &mut scratch, &mut out);
        out
    }

    /// Approximate heap bytes held by the set: automata, atoms, needles, conditions and
    /// indexes. Compiled regular expressions count by their source length only (the regex
    /// crate does not report its programs' size).
    pub fn heap_bytes(&self) -> usize {
        self.kinds.iter().map(KindSet::heap_bytes).sum::<usize>()
            + self.kinds.capacity() * std::mem::size_of::<KindSet>()
    }

    /// Figures for reports: atoms by how they are evaluated, needles, rules that run on every
    /// event.
    pub fn stats(&self) -> CompiledStats {
        let mut stats = CompiledStats::default();
        for set in &self.kinds {
            for atom in &set.atoms {
                match atom.how {
                    AtomHow::Literal => stats.literal_atoms += 1,
                    AtomHow::Gated => stats.gated_atoms += 1,
                    AtomHow::Lazy => stats.lazy_atoms += 1,
                    AtomHow::Deferred => stats.deferred_atoms += 1,
                }
            }
            for scan in &set.scans {
                for matcher in [&scan.folded, &scan.cased].into_iter().flatten() {
                    stats.automata += 1;
                    stats.needles += matcher.needles();
                    stats.indexed_needles += matcher.indexed();
                }
            }
            stats.always_checked += set.always.len();
            stats.gated_rules += set.rules.len() - set.always.len();
        }
        stats
    }
}

/// Counts describing a compiled set (summed over event kinds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompiledStats {
    pub literal_atoms: usize,
    pub gated_atoms: usize,
    pub lazy_atoms: usize,
    /// Short literal and gated atoms that wake no rule, checked only when their rule runs.
    pub deferred_atoms: usize,
    pub automata: usize,
    pub needles: usize,
    /// Needles found by a hash lookup (whole values, path tails, pivot bytes) rather than by
    /// an automaton.
    pub indexed_needles: usize,
    /// Rules that run only when one of their literal atoms was hit.
    pub gated_rules: usize,
    /// Rules that run on every event of their kinds.
    pub always_checked: usize,
}

impl Scratch {
    /// Grows the stamp arrays to the largest kind of `set` (a scratch from another set works too).
    fn fit(&mut self, set: &CompiledSet) {
        let (atoms, rules) = (set.most_atoms, set.most_rules);
        let marks = &mut self.marks;
        if marks.hit.len() < atoms {
            marks.hit.resize(atoms, 0);
            marks.known.resize(atoms, 0);
            marks.value.resize(atoms, false);
        }
        if marks.candidate.len() < rules {
            marks.candidate.resize(rules, 0);
        }
    }
}

impl Buffers {
    /// Starts a new event with the marks' generation; after a wrap of the generation every
    /// stamp is cleared, as the marks' are.
    fn next_event(&mut self, generation: u32) {
        if generation == 1 || self.lowered.len() < Field::ALL.len() {
            self.lowered.resize_with(Field::ALL.len(), Lowered::default);
            for slot in &mut self.lowered {
                slot.generation = 0;
            }
        }
        self.generation = generation;
    }

    /// A field's value as the tests of one casing compare it: as it is (`cased`) or
    /// lowercased as the evaluator lowercases it, computed once per event and field.
    fn value<'a>(&'a mut self, field: Field, event: &'a Event, cased: bool) -> Option<&'a str> {
        let Buffers {
            text,
            generation,
            lowered,
            ..
        } = self;
        if cased {
            return field_text(field, event, text);
        }
        let slot = lowered.get_mut(field as usize)?;
        if slot.generation != *generation {
            slot.generation = *generation;
            slot.present = match field_text(field, event, text) {
                Some(value) => {
                    lower_into(value, &mut slot.text);
                    true
                }
                None => false,
            };
        }
        slot.present.then_some(slot.text.as_str())
    }
}

impl Marks {
    /// Starts a new event: every stamp from the previous one becomes stale.
    fn next_event(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // After 2^32 events the stamps would be ambiguous: clear them once.
            self.hit.fill(0);
            self.known.fill(0);
            self.candidate.fill(0);
            self.generation = 1;
        }
    }
}

impl KindSet {
    /// Runs every automaton over its field's value and collects candidate rules.
    fn scan(&self, event: &Event, scratch: &mut Scratch) {
        let Scratch {
            marks,
            bufs,
            candidates,
        } = scratch;
        for scan in &self.scans {
            if let Some(matcher) = &scan.cased
                && let Some(value) = bufs.value(scan.field, event, true)
            {
                self.run(matcher, value, marks, candidates);
            }
            if let Some(matcher) = &scan.folded
                && let Some(value) = bufs.value(scan.field, event, false)
            {
                self.run(matcher, value, marks, candidates);
            }
        }
    }

    fn run(
        &self,
        matcher: &FieldMatcher,
        haystack: &str,
        marks: &mut Marks,
        candidates: &mut Vec<u32>,
    ) {
        let len = haystack.len();
        matcher.find(haystack, |uses, start, end| {
            for hit in uses {
                let atom = hit.atom as usize;
                if !hit.anchor.holds(start, end, len)
                    || marks.hit.get(atom) == Some(&marks.generation)
                {
                    continue;
                }
                if let Some(stamp) = marks.hit.get_mut(atom) {
                    *stamp = marks.generation;
                }
                for &rule in self.wakes.get(atom).map(|w| &w[..]).unwrap_or(&[]) {
                    if let Some(stamp) = marks.candidate.get_mut(rule as usize)
                        && *stamp != marks.generation
                    {
                        *stamp = marks.generation;
                        candidates.push(rule);
                    }
                }
            }
        });
    }

    fn eval(&self, expr: &Expr, event: &Event, marks: &mut Marks, bufs: &mut Buffers) -> bool {
        match expr {
            Expr::Atom(atom) => self.atom(*atom as usize, event, marks, bufs),
            Expr::Not(inner) => !self.eval(inner, event, marks, bufs),
            Expr::And(all) => all.iter().all(|e| self.eval(e, event, marks, bufs)),
            Expr::Or(any) => any.iter().any(|e| self.eval(e, event, marks, bufs)),
        }
    }

    fn atom(&self, index: usize, event: &Event, marks: &mut Marks, bufs: &mut Buffers) -> bool {
        let hit = marks.hit.get(index) == Some(&marks.generation);
        match self.hows.get(index) {
            Some(AtomHow::Literal) | None => return hit,
            Some(AtomHow::Gated) if !hit => return false,
            Some(AtomHow::Gated | AtomHow::Lazy | AtomHow::Deferred) => {}
        }
        let Some(atom) = self.atoms.get(index) else {
            return false;
        };
        if marks.known.get(index) == Some(&marks.generation) {
            return marks.value.get(index).copied().unwrap_or(false);
        }
        let value = match atom.place {
            Place::Field(field) => atom_holds(atom, field, event, bufs),
            Place::Keywords => {
                eval::keyword_fields().any(|field| atom_holds(atom, field, event, bufs))
            }
        };
        if let (Some(known), Some(slot)) = (marks.known.get_mut(index), marks.value.get_mut(index))
        {
            *known = marks.generation;
            *slot = value;
        }
        value
    }

    fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let atoms = self.atoms.capacity() * size_of::<Atom>()
            + self.hows.len() * size_of::<AtomHow>()
            + self
                .atoms
                .iter()
                .map(|a| test_heap_bytes(&a.test))
                .sum::<usize>();
        let wakes = self.wakes.capacity() * size_of::<Box<[u32]>>()
            + self.wakes.iter().map(|w| w.len() * 4).sum::<usize>();
        let scans = self.scans.capacity() * size_of::<FieldScan>()
            + self
                .scans
                .iter()
                .flat_map(|s| [&s.folded, &s.cased])
                .flatten()
                .map(FieldMatcher::heap_bytes)
                .sum::<usize>();
        let rules = self.rules.capacity() * size_of::<CompiledRule>()
            + self
                .rules
                .iter()
                .map(|r| expr_heap_bytes(&r.expr))
                .sum::<usize>()
            + self.always.capacity() * 4;
        atoms + wakes + scans + rules
    }
}

fn test_heap_bytes(test: &ValueTest) -> usize {
    match test {
        ValueTest::Text { needle, .. } => needle.capacity(),
        ValueTest::Glob { pattern, .. } => {
            pattern.capacity() * std::mem::size_of::<GlobPart>()
                + pattern
                    .iter()
                    .map(|p| match p {
                        GlobPart::Literal(text) => text.capacity(),
                        GlobPart::AnyRun | GlobPart::AnyOne => 0,
                    })
                    .sum::<usize>()
        }
        ValueTest::Regex(regex) => regex.source.capacity(),
        ValueTest::Cidr { .. }
        | ValueTest::Compare { .. }
        | ValueTest::Exists(_)
        | ValueTest::Null
        | ValueTest::FieldRef { .. } => 0,
    }
}

fn expr_heap_bytes(expr: &Expr) -> usize {
    match expr {
        Expr::Atom(_) => 0,
        Expr::Not(inner) => std::mem::size_of::<Expr>() + expr_heap_bytes(inner),
        Expr::And(all) | Expr::Or(all) => {
            all.len() * std::mem::size_of::<Expr>() + all.iter().map(expr_heap_bytes).sum::<usize>()
        }
    }
}

/// A field's value as text without allocating: text fields are borrowed from the event, numbers
/// and addresses are written into `buf`. The same text [`Field::text`] gives.
fn field_text<'a>(field: Field, event: &'a Event, buf: &'a mut String) -> Option<&'a str> {
    match field.field_type() {
        FieldType::Integer => {
            if let Some(number) = field.number(event) {
                buf.clear();
                let _ = write!(buf, "{number}");
                return Some(buf.as_str());
            }
        }
        FieldType::IpAddress => {
            if let Some(address) = field.address(event) {
                buf.clear();
                let _ = write!(buf, "{address}");
                return Some(buf.as_str());
            }
        }
        FieldType::Text => {}
    }
    match field.text(event)? {
        Cow::Borrowed(text) => Some(text),
        Cow::Owned(text) => {
            *buf = text;
            Some(buf.as_str())
        }
    }
}

/// The evaluator's folding ([`eval::fold`]) of `value` into `buf`.
fn lower_into(value: &str, buf: &mut String) {
    buf.clear();
    if value.is_ascii() {
        buf.push_str(value);
        buf.make_ascii_lowercase();
    } else if value.contains('Σ') {
        // The one letter whose lowercase depends on its neighbours: leave it to the standard
        // library, as the evaluator does.
        buf.push_str(&value.to_lowercase());
    } else {
        buf.extend(value.chars().flat_map(char::to_lowercase));
    }
}

/// A deferred atom's test, its gate checked first (a regular expression runs only on a value
/// holding its literal); any other atom's test as it is.
fn atom_holds(atom: &Atom, field: Field, event: &Event, bufs: &mut Buffers) -> bool {
    if atom.how == AtomHow::Deferred
        && !matches!(atom.test, ValueTest::Text { .. })
        && let Some((gate, cased, _)) = &atom.needle
        && bufs
            .value(field, event, *cased)
            .is_none_or(|value| memchr::memmem::find(value.as_bytes(), gate.as_bytes()).is_none())
    {
        return false;
    }
    test_holds(&atom.test, field, event, bufs)
}

/// One test on one field, as [`eval::test_matches`] decides it, without allocating for text.
fn test_holds(test: &ValueTest, field: Field, event: &Event, bufs: &mut Buffers) -> bool {
    match test {
        ValueTest::Text { how, needle, cased } => bufs
            .value(field, event, *cased)
            .is_some_and(|value| text_holds(value, needle, *how)),
        ValueTest::Glob { pattern, cased } => bufs
            .value(field, event, *cased)
            .is_some_and(|value| eval::glob_matches(value, pattern)),
        ValueTest::Regex(regex) => bufs
            .value(field, event, true)
            .is_some_and(|value| regex.compiled.is_match(value)),
        ValueTest::Cidr { .. }
        | ValueTest::Compare { .. }
        | ValueTest::Exists(_)
        | ValueTest::Null
        | ValueTest::FieldRef { .. } => eval::test_matches(test, field, event),
    }
}

/// [`eval::text_matches`], with a substring search that does not build a searcher per call.
fn text_holds(value: &str, needle: &str, how: TextMatch) -> bool {
    match how {
        TextMatch::Contains => memchr::memmem::find(value.as_bytes(), needle.as_bytes()).is_some(),
        TextMatch::Exact | TextMatch::StartsWith | TextMatch::EndsWith => {
            eval::text_matches(value, needle, how)
        }
    }
}

/// Collects one kind's rules, then builds its matchers.
#[derive(Default)]
struct KindBuilder {
    atoms: Vec<Atom>,
    /// Atom identity (place and test, written out) → atom index.
    atom_ids: FxHashMap<String, u32>,
    rules: Vec<CompiledRule>,
}

impl KindBuilder {
    fn add_rule(&mut self, index: usize, rule: &SigmaRule) {
        let expr = self.condition(&rule.condition, rule);
        self.rules.push(CompiledRule { index, expr });
    }

    fn condition(&mut self, condition: &Condition, rule: &SigmaRule) -> Expr {
        match condition {
            Condition::Search(index) => match rule.searches.get(*index) {
                Some(search) => self.search(&search.body),
                None => Expr::Or(Box::new([])),
            },
            Condition::Not(inner) => Expr::Not(Box::new(self.condition(inner, rule))),
            Condition::And(all) => Expr::And(all.iter().map(|c| self.condition(c, rule)).collect()),
            Condition::Or(any) => Expr::Or(any.iter().map(|c| self.condition(c, rule)).collect()),
        }
    }

    fn search(&mut self, body: &SearchBody) -> Expr {
        match body {
            SearchBody::AllOf(items) => Expr::And(items.iter().map(|i| self.item(i)).collect()),
            SearchBody::AnyOf(maps) => Expr::Or(
                maps.iter()
                    .map(|items| Expr::And(items.iter().map(|i| self.item(i)).collect()))
                    .collect(),
            ),
            SearchBody::Keywords { tests, all } => {
                let atoms = tests
                    .iter()
                    .map(|t| Expr::Atom(self.atom(Place::Keywords, t)))
                    .collect();
                if *all {
                    Expr::And(atoms)
                } else {
                    Expr::Or(atoms)
                }
            }
        }
    }

    fn item(&mut self, item: &Item) -> Expr {
        let atoms = item
            .tests
            .iter()
            .map(|t| Expr::Atom(self.atom(Place::Field(item.field), t)))
            .collect();
        if item.all {
            Expr::And(atoms)
        } else {
            Expr::Or(atoms)
        }
    }

    fn atom(&mut self, place: Place, test: &ValueTest) -> u32 {
        let key = format!("{place:?}\u{0}{test:?}");
        if let Some(&id) = self.atom_ids.get(&key) {
            return id;
        }
        let id = u32::try_from(self.atoms.len()).unwrap_or(u32::MAX);
        self.atom_ids.insert(key, id);
        let (how, needle) = atom_how(test);
        self.atoms.push(Atom {
            place,
            test: test.clone(),
            how,
            needle,
        });
        id
    }

    fn build(self) -> Result<KindSet, CompileError> {
        let KindBuilder {
            mut atoms, rules, ..
        } = self;

        // Which rules wait for a hit, and which run on every event.
        let mut wakes: Vec<Vec<u32>> = vec![Vec::new(); atoms.len()];
        let mut always = Vec::new();
        // Atoms a matcher must find: those that wake a rule, and those read by rules that run
        // on every event (a hit mark is cheaper for them than a check on every event).
        let mut scanned = vec![false; atoms.len()];
        for (at, rule) in rules.iter().enumerate() {
            let at = u32::try_from(at).unwrap_or(u32::MAX);
            if without_hits(&rule.expr, &atoms) == Tri::False {
                // Wake the rule only on the atoms of one clause its condition implies (the
                // cheapest guess at the rarest), not on every atom it names: `Image|endswith:
                // powershell.exe` and a rare command line need only the command line's hit.
                let mut used = match required_clause(&rule.expr, &atoms) {
                    Some((clause, _)) => clause,
                    None => {
                        let mut used = Vec::new();
                        hit_atoms(&rule.expr, &atoms, &mut used);
                        used
                    }
                };
                used.sort_unstable();
                used.dedup();
                for atom in used {
                    if let Some(list) = wakes.get_mut(atom as usize) {
                        list.push(at);
                    }
                }
            } else {
                always.push(at);
                let mut used = Vec::new();
                hit_atoms(&rule.expr, &atoms, &mut used);
                for atom in used {
                    if let Some(flag) = scanned.get_mut(atom as usize) {
                        *flag = true;
                    }
                }
            }
        }
        // One- and two-byte needles no rule waits for: checked when their rule runs instead.
        for ((atom, wakes), scanned) in atoms.iter_mut().zip(&wakes).zip(&scanned) {
            if matches!(atom.how, AtomHow::Literal | AtomHow::Gated)
                && wakes.is_empty()
                && !scanned
                && atom
                    .needle
                    .as_ref()
                    .is_some_and(|(n, _, _)| n.len() <= MAX_DEFERRED_NEEDLE)
            {
                atom.how = AtomHow::Deferred;
            }
        }

        // Needles per (field, cased).
        let mut needles: Vec<(Field, NeedleSet, NeedleSet)> = Vec::new();
        let mut slot = |field: Field| -> usize {
            match needles.iter().position(|(f, _, _)| *f == field) {
                Some(at) => at,
                None => {
                    needles.push((field, NeedleSet::default(), NeedleSet::default()));
                    needles.len() - 1
                }
            }
        };
        let mut placements: Vec<(usize, bool, String, Use)> = Vec::new();
        for (id, atom) in atoms.iter().enumerate() {
            if atom.how == AtomHow::Deferred {
                continue;
            }
            let Some((needle, cased, anchor)) = atom.needle.clone() else {
                continue;
            };
            let hit = Use {
                atom: u32::try_from(id).unwrap_or(u32::MAX),
                anchor,
            };
            match atom.place {
                Place::Field(field) => placements.push((slot(field), cased, needle, hit)),
                Place::Keywords => {
                    for field in eval::keyword_fields() {
                        placements.push((slot(field), cased, needle.clone(), hit));
                    }
                }
            }
        }
        for (at, cased, needle, hit) in placements {
            if let Some((_, folded, exact)) = needles.get_mut(at) {
                if cased {
                    exact.add(&needle, hit);
                } else {
                    folded.add(&needle, hit);
                }
            }
        }
        let mut scans = Vec::with_capacity(needles.len());
        for (field, folded, cased) in needles {
            scans.push(FieldScan {
                field,
                folded: folded.build(field)?,
                cased: cased.build(field)?,
            });
        }
        Ok(KindSet {
            hows: atoms.iter().map(|a| a.how).collect(),
            atoms,
            wakes: wakes.into_iter().map(Vec::into_boxed_slice).collect(),
            scans,
            rules,
            always,
        })
    }
}

/// How an atom is evaluated, with the needle it puts into its field's matcher: its own when the
/// matcher answers the test exactly (literal), a piece every match must contain when the test
/// needs more than the matcher (gated: globs, regular expressions), none otherwise (lazy).
fn atom_how(test: &ValueTest) -> (AtomHow, Option<(String, bool, Anchor)>) {
    match test {
        ValueTest::Text { how, needle, cased } if matcher_exact(needle, *cased) => (
            AtomHow::Literal,
            Some((needle.clone(), *cased, anchor_of(*how))),
        ),
        ValueTest::Glob { pattern, cased } => match glob_gate(pattern, *cased) {
            Some(gate) => (
                AtomHow::Gated,
                Some((gate.to_owned(), *cased, Anchor::Anywhere)),
            ),
            None => (AtomHow::Lazy, None),
        },
        ValueTest::Regex(regex) => match regex_gate(&regex.source) {
            Some((gate, cased)) if matcher_exact(&gate, cased) => {
                (AtomHow::Gated, Some((gate, cased, Anchor::Anywhere)))
            }
            _ => (AtomHow::Lazy, None),
        },
        _ => (AtomHow::Lazy, None),
    }
}

/// Whether a matcher answers a text test exactly. The uncased matcher runs over lowercased
/// values, which hold no ASCII capitals; an uncased needle with one could only match there by
/// ASCII folding, which the evaluator does not do. An empty needle has no occurrence for a
/// matcher to report.
fn matcher_exact(needle: &str, cased: bool) -> bool {
    !needle.is_empty() && (cased || !needle.bytes().any(|b| b.is_ascii_uppercase()))
}

/// The longest literal piece of a glob, when a matcher can search it exactly.
fn glob_gate(pattern: &[GlobPart], cased: bool) -> Option<&str> {
    pattern
        .iter()
        .filter_map(|part| match part {
            GlobPart::Literal(text) => Some(text.as_str()),
            GlobPart::AnyRun | GlobPart::AnyOne => None,
        })
        .filter(|text| matcher_exact(text, cased))
        .max_by_key(|text| text.len())
}

/// The longest text every match of a regular expression contains: a run of literals in its
/// top-level sequence, or inside a group or a repetition that must occur at least once.
/// Alternatives give none (each could do without the other's text). Under `(?i)` a letter is a
/// class of its cases; a run through such classes is a gate for the lowercased value (uncased),
/// as long as every member of each class lowercases to the same one character (`(?i)s` also
/// matches `ſ`, which lowercases to itself, so it ends a run).
fn regex_gate(source: &str) -> Option<(String, bool)> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(source)
        .ok()?;
    required_text(&hir).map(|gate| (gate.text, gate.cased))
}

/// A text every match holds, byte for byte (`cased`) or in the lowercased value.
#[derive(Debug, Default)]
struct Gate {
    text: String,
    cased: bool,
}

impl Gate {
    /// The longer of two gates; a cased one wins a tie (it is the more selective).
    fn longer(a: Option<Gate>, b: Option<Gate>) -> Option<Gate> {
        let (a, b) = match (a, b) {
            (Some(a), Some(b)) => (a, b),
            (a, b) => return a.or(b).filter(|g| !g.text.is_empty()),
        };
        let (la, lb) = (a.text.chars().count(), b.text.chars().count());
        Some(if lb > la || (lb == la && b.cased && !a.cased) {
            b
        } else {
            a
        })
        .filter(|g| !g.text.is_empty())
    }
}

fn required_text(hir: &regex_syntax::hir::Hir) -> Option<Gate> {
    use regex_syntax::hir::HirKind;
    match hir.kind() {
        HirKind::Capture(capture) => required_text(&capture.sub),
        HirKind::Repetition(repetition) if repetition.min >= 1 => required_text(&repetition.sub),
        HirKind::Literal(_) | HirKind::Class(_) | HirKind::Concat(_) => {
            let parts = match hir.kind() {
                HirKind::Concat(parts) => parts.as_slice(),
                _ => std::slice::from_ref(hir),
            };
            let mut best: Option<Gate> = None;
            // The run of literals, and the run of literals and case classes, lowercased.
            let mut cased = String::new();
            let mut folded = String::new();
            let flush = |run: &mut String, is_cased: bool, best: &mut Option<Gate>| {
                let gate = Gate {
                    text: std::mem::take(run),
                    cased: is_cased,
                };
                *best = Gate::longer(best.take(), Some(gate));
            };
            for part in parts {
                match part.kind() {
                    HirKind::Literal(literal) => {
                        let Ok(text) = std::str::from_utf8(&literal.0) else {
                            flush(&mut cased, true, &mut best);
                            flush(&mut folded, false, &mut best);
                            continue;
                        };
                        cased.push_str(text);
                        for c in text.chars() {
                            match lowered(c) {
                                Some(lower) => folded.push(lower),
                                None => flush(&mut folded, false, &mut best),
                            }
                        }
                    }
                    HirKind::Class(class) => {
                        flush(&mut cased, true, &mut best);
                        match case_class(class) {
                            Some(lower) => folded.push(lower),
                            None => flush(&mut folded, false, &mut best),
                        }
                    }
                    _ => {
                        flush(&mut cased, true, &mut best);
                        flush(&mut folded, false, &mut best);
                        best = Gate::longer(best, required_text(part));
                    }
                }
            }
            flush(&mut cased, true, &mut best);
            flush(&mut folded, false, &mut best);
            best
        }
        _ => None,
    }
}

/// What `c` becomes in the lowercased value, when that is one character whatever surrounds it
/// (`Σ` becomes `σ` or `ς` by position; `İ` becomes two characters).
fn lowered(c: char) -> Option<char> {
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(one), None) if c != 'Σ' => Some(one),
        _ => None,
    }
}

/// The one character every member of a small class lowercases to: the class `(?i)` makes of a
/// letter.
fn case_class(class: &regex_syntax::hir::Class) -> Option<char> {
    let regex_syntax::hir::Class::Unicode(class) = class else {
        return None;
    };
    let mut members = class.iter().flat_map(|range| range.start()..=range.end());
    let first = lowered(members.next()?)?;
    let mut count = 1;
    for member in members {
        count += 1;
        if count > 4 || lowered(member) != Some(first) {
            return None;
        }
    }
    Some(first)
}

/// A three-valued truth: what a condition is when only some atoms are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tri {
    False,
    True,
    Unknown,
}

/// The condition's value with every literal and gated atom false and every lazy atom unknown.
/// `False` means the rule cannot match unless one of its literal or gated atoms is hit.
fn without_hits(expr: &Expr, atoms: &[Atom]) -> Tri {
    match expr {
        Expr::Atom(atom) => match atoms.get(*atom as usize).map(|a| a.how) {
            Some(AtomHow::Literal | AtomHow::Gated) => Tri::False,
            Some(AtomHow::Lazy | AtomHow::Deferred) | None => Tri::Unknown,
        },
        Expr::Not(inner) => match without_hits(inner, atoms) {
            Tri::False => Tri::True,
            Tri::True => Tri::False,
            Tri::Unknown => Tri::Unknown,
        },
        Expr::And(all) => {
            let mut result = Tri::True;
            for value in all.iter().map(|e| without_hits(e, atoms)) {
                match value {
                    Tri::False => return Tri::False,
                    Tri::Unknown => result = Tri::Unknown,
                    Tri::True => {}
                }
            }
            result
        }
        Expr::Or(any) => {
            let mut result = Tri::False;
            for value in any.iter().map(|e| without_hits(e, atoms)) {
                match value {
                    Tri::True => return Tri::True,
                    Tri::Unknown => result = Tri::Unknown,
                    Tri::False => {}
                }
            }
            result
        }
    }
}

/// A set of literal or gated atoms one of which is hit whenever the condition holds, with a
/// guess at how often that set is hit (lower is rarer), or `None` when the condition gives no
/// such set (it can hold through `not` or through lazy atoms alone).
///
/// An atom is its own clause; `or` needs a clause from every branch and joins them; `and` may
/// take any branch's, so it takes the rarest. Exact by construction: the rule is evaluated
/// whenever it could hold.
fn required_clause(expr: &Expr, atoms: &[Atom]) -> Option<(Vec<u32>, f64)> {
    match expr {
        Expr::Atom(id) => {
            let atom = atoms.get(*id as usize)?;
            matches!(atom.how, AtomHow::Literal | AtomHow::Gated)
                .then(|| (vec![*id], atom_frequency(atom)))
        }
        Expr::Not(_) => None,
        Expr::And(all) => all
            .iter()
            .filter_map(|e| required_clause(e, atoms))
            .min_by(|a, b| a.1.total_cmp(&b.1)),
        Expr::Or(any) => {
            let mut clause = Vec::new();
            let mut frequency = 0.0;
            for e in any.iter() {
                let (atoms_of, f) = required_clause(e, atoms)?;
                clause.extend(atoms_of);
                frequency += f;
            }
            Some((clause, frequency))
        }
    }
}

/// A guess at how often an atom is hit, from what any rule set says: a short needle occurs
/// more often than a long one, and fields that name a binary or its metadata repeat the same
/// few values across events (every PowerShell start has the same `Image`), where a command line
/// rarely repeats.
fn atom_frequency(atom: &Atom) -> f64 {
    let length = atom
        .needle
        .as_ref()
        .map_or(1, |(needle, _, _)| needle.chars().count());
    let repeats = match atom.place {
        Place::Field(
            Field::Image
            | Field::ParentImage
            | Field::OriginalFileName
            | Field::Name
            | Field::ParentName
            | Field::Company
            | Field::Product
            | Field::FileDescription
            | Field::FileVersion
            | Field::IntegrityLevel
            | Field::User
            | Field::ParentUser
            | Field::CurrentDirectory,
        ) => 8.0,
        Place::Keywords => 4.0,
        Place::Field(_) => 1.0,
    };
    let length = length.max(1) as f64;
    repeats / (length * length)
}

/// The literal and gated atoms a condition names.
fn hit_atoms(expr: &Expr, atoms: &[Atom], out: &mut Vec<u32>) {
    match expr {
        Expr::Atom(atom) => {
            if atoms
                .get(*atom as usize)
                .is_some_and(|a| matches!(a.how, AtomHow::Literal | AtomHow::Gated))
            {
                out.push(*atom);
            }
        }
        Expr::Not(inner) => hit_atoms(inner, atoms, out),
        Expr::And(all) | Expr::Or(all) => {
            for e in all.iter() {
                hit_atoms(e, atoms, out);
            }
        }
    }
}

mod matcher;
#[cfg(test)]
mod tests;
