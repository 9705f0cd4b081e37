//! The one place a Rhai engine is built. Rule authors' scripts are code from a git repository,
//! so every limit Rhai has is set here, and the engine gets no module loading, no `eval`, and no
//! function that touches files, the network or processes (Rhai has none unless registered, and
//! this builder registers only pure helpers).
//!
//! The size limits bound what a *script builds*, not the event it is given: Rhai checks every
//! value against one limit, whether a host put it there or a script made it, so before each
//! event the limits are raised by the event's own size ([`fit_limits_to`]). An event is already
//! bounded where it is read (`MAX_EVENT_BYTES`), so a rule always sees every byte of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult, Position};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::helpers;

/// Budgets for one rule evaluation. The defaults leave a simple rule two orders of magnitude of
/// room while stopping a runaway script within milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RuleLimits {
    /// Rhai operations one call may take (an endless loop stops here).
    pub max_operations: u64,
    /// Wall-clock budget of one call, in milliseconds, for work that is slow per operation.
    pub time_budget_ms: u64,
    /// Nested function calls (recursion depth).
    pub max_call_depth: usize,
    /// Nesting of expressions, at the top level and inside functions.
    pub max_expr_depth: usize,
    /// Longest string a script may build, in bytes, beyond the size of the event's own text
    /// (event data never counts against it).
    pub max_string_size: usize,
    /// Most elements in one array, beyond the event's own.
    pub max_array_size: usize,
    /// Most properties in one object map, beyond the event's own.
    pub max_map_size: usize,
}

impl Default for RuleLimits {
    fn default() -> RuleLimits {
        RuleLimits {
            max_operations: 100_000,
            time_budget_ms: 50,
            max_call_depth: 16,
            max_expr_depth: 64,
            max_string_size: 64 * 1024,
            max_array_size: 10_000,
            max_map_size: 1_000,
        }
    }
}

/// Operations between clock reads: reading the clock on every operation would cost more than
/// the operation itself, and one operation may copy a string as long as the event (1 MiB), so
/// the interval is kept short enough that 64 such operations stay within a few milliseconds.
/// Helpers that do work proportional to their input read the clock themselves
/// ([`Deadline::check`]).
const CLOCK_CHECK_EVERY: u64 = 64;

/// The budget of the evaluation running: the time budget's clock, shared between the engine's
/// progress callback, the helpers and the caller that starts each evaluation, and which rule is
/// running, so `print` output is limited per rule.
#[derive(Debug, Clone)]
pub struct Deadline {
    origin: Instant,
    /// Nanoseconds after `origin` when the running evaluation must stop; 0 = no evaluation.
    at_nanos: Arc<AtomicU64>,
    budget: Duration,
    output: Arc<Mutex<RuleOutput>>,
}

impl Deadline {
    /// Starts the budget for the evaluation about to run.
    pub fn start(&self) {
        let at = self.origin.elapsed() + self.budget;
        self.at_nanos.store(
            u64::try_from(at.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Starts the budget for `rule`'s evaluation: its `print` and `debug` lines are counted
    /// against its own allowance.
    pub fn start_rule(&self, rule: &Arc<str>) {
        if let Ok(mut output) = self.output.lock()
            && output.rule.as_ref() != Some(rule)
        {
            output.rule = Some(rule.clone());
        }
        self.start();
    }

    fn expired(&self) -> bool {
        let at = self.at_nanos.load(Ordering::Relaxed);
        at != 0 && u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX) > at
    }

    /// Stops a helper once the budget is spent. Helpers call it before their work and every
    /// `HELPER_CLOCK_BYTES` of it, since the engine counts a whole helper call as one
    /// operation however long its input is.
    pub fn check(&self) -> Result<(), Box<EvalAltResult>> {
        if self.expired() {
            Err(Box::new(EvalAltResult::ErrorTerminated(
                Dynamic::from(TIME_BUDGET_EXCEEDED),
                Position::NONE,
            )))
        } else {
            Ok(())
        }
    }

    fn emit(&self, kind: &str, text: &str, position: Option<Position>) {
        let Ok(mut output) = self.output.lock() else {
            return;
        };
        if let Some(captured) = &mut output.captured {
            captured.push(kind, text, position);
        }
        let rule = output.rule.clone();
        let rule = rule.as_deref().unwrap_or("(loading)");
        output.emit(rule, kind, text, position, Instant::now());
    }

    /// Starts keeping the `print` and `debug` lines of the evaluations that follow (besides
    /// logging them), for `palisade explain`; [`Deadline::take_captured`] hands them over.
    pub fn capture(&self) {
        if let Ok(mut output) = self.output.lock() {
            output.captured = Some(Captured::default());
        }
    }

    /// The lines kept since [`Deadline::capture`] (which goes on keeping), and how many more
    /// there were past [`CAPTURED_LINES`].
    pub fn take_captured(&self) -> (Vec<OutputLine>, u64) {
        let Ok(mut output) = self.output.lock() else {
            return (Vec::new(), 0);
        };
        match &mut output.captured {
            Some(captured) => (
                std::mem::take(&mut captured.lines),
                std::mem::take(&mut captured.more),
            ),
            None => (Vec::new(), 0),
        }
    }
}

/// Lines of one rule's output `palisade explain` keeps per event; a rule printing in a loop
/// is shown by its first lines and a count.
pub const CAPTURED_LINES: usize = 50;

/// One `print` or `debug` line a rule wrote, as `palisade explain` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutputLine {
    /// `print` or `debug`.
    pub kind: String,
    /// The text, made inert and cut at [`PRINT_LINE_MAX`] bytes.
    pub text: String,
    /// Where in the script `debug` was called (`line 3, position 9`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

#[derive(Debug, Default)]
struct Captured {
    lines: Vec<OutputLine>,
    more: u64,
}

impl Captured {
    fn push(&mut self, kind: &str, text: &str, position: Option<Position>) {
        if self.lines.len() >= CAPTURED_LINES {
            self.more += 1;
            return;
        }
        let (shown, cut) = cut_line(text);
        let mut text = crate::text::inert(shown).into_owned();
        if cut > 0 {
            text.push_str(&format!("... ({cut} more bytes)"));
        }
        self.lines.push(OutputLine {
            kind: kind.to_string(),
            text,
            at: position.filter(|p| !p.is_none()).map(|p| p.to_string()),
        });
    }
}

/// Bytes of work a helper does between clock reads (tens of microseconds).
pub const HELPER_CLOCK_BYTES: usize = 64 * 1024;

/// Lines of `print`/`debug` output one rule may write per [`PRINT_WINDOW`]; the rest are counted
/// and reported as one line when the window ends, so a rule printing in a loop cannot flood the
/// log.
pub const PRINT_LINES_PER_WINDOW: u32 = 20;
/// The window [`PRINT_LINES_PER_WINDOW`] applies to.
pub const PRINT_WINDOW: Duration = Duration::from_secs(10);
/// Longest line of rule output written; the rest is cut and its length noted.
pub const PRINT_LINE_MAX: usize = 1024;

/// Per-rule allowance of output lines.
#[derive(Debug, Default)]
struct RuleOutput {
    /// The rule being evaluated; `None` while a rule file's top level runs at load.
    rule: Option<Arc<str>>,
    windows: HashMap<Arc<str>, OutputWindow>,
    /// Lines kept for `palisade explain`; `None` everywhere else.
    captured: Option<Captured>,
}

#[derive(Debug)]
struct OutputWindow {
    started: Instant,
    written: u32,
    suppressed: u64,
}

impl RuleOutput {
    fn emit(
        &mut self,
        rule: &str,
        kind: &str,
        text: &str,
        position: Option<Position>,
        now: Instant,
    ) {
        // `debug` lines go to the log at debug level: when that level is off they are not
        // written, so they do not use up the rule's allowance either.
        if kind == "debug"
            && !tracing::enabled!(target: "palisade::rule_print", tracing::Level::DEBUG)
        {
            return;
        }
        let window = match self.windows.get_mut(rule) {
            Some(window) => window,
            None => self.windows.entry(Arc::from(rule)).or_insert(OutputWindow {
                started: now,
                written: 0,
                suppressed: 0,
            }),
        };
        if now.duration_since(window.started) >= PRINT_WINDOW {
            if window.suppressed > 0 {
                tracing::warn!(
                    target: "palisade::rule_print",
                    rule,
                    suppressed = window.suppressed,
                    "rule `{rule}`: {} more print/debug line(s) not written (limit {PRINT_LINES_PER_WINDOW} per {}s)",
                    window.suppressed,
                    PRINT_WINDOW.as_secs()
                );
            }
            *window = OutputWindow {
                started: now,
                written: 0,
                suppressed: 0,
            };
        }
        if window.written >= PRINT_LINES_PER_WINDOW {
            if window.suppressed == 0 {
                tracing::warn!(
                    target: "palisade::rule_print",
                    rule,
                    "rule `{rule}` reached its output limit ({PRINT_LINES_PER_WINDOW} print/debug lines per {}s); further lines are counted, not written",
                    PRINT_WINDOW.as_secs()
                );
            }
            window.suppressed += 1;
            return;
        }
        window.written += 1;
        // A rule may print event values: control characters are written as escapes, so a
        // printed field cannot forge a log line or drive a terminal.
        let (shown, cut) = cut_line(text);
        let shown = crate::text::inert(shown);
        let more = if cut > 0 {
            format!("... ({cut} more bytes)")
        } else {
            String::new()
        };
        if kind == "debug" {
            // Where the script called `debug`, so an author can find the line that wrote it.
            let position = position
                .filter(|p| !p.is_none())
                .map(|p| p.to_string())
                .unwrap_or_default();
            tracing::debug!(target: "palisade::rule_print", rule, kind, position, "{shown}{more}");
        } else {
            tracing::info!(target: "palisade::rule_print", rule, kind, "{shown}{more}");
        }
    }
}

/// The first [`PRINT_LINE_MAX`] bytes of `text` (on a character boundary) and how many were cut.
fn cut_line(text: &str) -> (&str, usize) {
    if text.len() <= PRINT_LINE_MAX {
        return (text, 0);
    }
    let mut end = PRINT_LINE_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], text.len() - end)
}

/// How much string, array and object map data a value holds, counted as Rhai counts it for its
/// size limits (strings by bytes, arrays and maps by elements, nested ones included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataSize {
    pub strings: usize,
    pub arrays: usize,
    pub maps: usize,
}

impl DataSize {
    pub fn of(value: &Dynamic) -> DataSize {
        let mut size = DataSize::default();
        size.add(value);
        size
    }

    fn add(&mut self, value: &Dynamic) {
        if let Ok(text) = value.as_immutable_string_ref() {
            self.strings += text.len();
        } else if let Ok(array) = value.as_array_ref() {
            for item in array.iter() {
                self.arrays += 1;
                self.add(item);
            }
        } else if let Ok(blob) = value.as_blob_ref() {
            self.arrays += 1 + blob.len();
        } else if let Ok(map) = value.as_map_ref() {
            for item in map.values() {
                self.maps += 1;
                self.add(item);
            }
        }
    }

    pub fn plus(self, other: DataSize) -> DataSize {
        DataSize {
            strings: self.strings.saturating_add(other.strings),
            arrays: self.arrays.saturating_add(other.arrays),
            maps: self.maps.saturating_add(other.maps),
        }
    }
}

/// Sets `engine`'s size limits for evaluating on values of `size` (the event, and whatever else
/// the host passes in): the configured limits bound what the script builds *on top of* the data
/// it was given, so no event field is ever too long for a rule to read, compare or pass to a
/// helper. Called before each event, so one large event does not raise the limits for the next.
pub fn fit_limits_to(engine: &mut Engine, limits: &RuleLimits, size: DataSize) {
    engine
        .set_max_string_size(limits.max_string_size.saturating_add(size.strings))
        .set_max_array_size(limits.max_array_size.saturating_add(size.arrays))
        .set_max_map_size(limits.max_map_size.saturating_add(size.maps));
}

/// The value a script is stopped with when its time budget runs out; `describe` recognises it.
const TIME_BUDGET_EXCEEDED: &str = "time budget exceeded";

/// Builds a sandboxed engine with every limit set, and the deadline that drives its time budget.
pub fn build_engine(limits: &RuleLimits, intel: &crate::intel::IntelHandle) -> (Engine, Deadline) {
    let mut engine = Engine::new();
    engine
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_depth)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_max_variables(256)
        .set_max_functions(64)
        // No `import`: a rule is one self-contained file.
        .set_max_modules(0)
        .set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new())
        // Undefined variables are errors at compile time, not silent `()` at run time.
        .set_strict_variables(true);
    engine.disable_symbol("eval");
    let deadline = Deadline {
        origin: Instant::now(),
        at_nanos: Arc::new(AtomicU64::new(0)),
        budget: Duration::from_millis(limits.time_budget_ms),
        output: Arc::new(Mutex::new(RuleOutput::default())),
    };
    // Output from a rule goes to the engine's log, never to stdout where replay writes JSON, and
    // at most `PRINT_LINES_PER_WINDOW` lines per rule: `print` at the default level, `debug` at
    // debug level (`PALISADE_LOG=debug`) with the rule and the script position.
    let output = deadline.clone();
    engine.on_print(move |text| output.emit("print", text, None));
    let output = deadline.clone();
    engine.on_debug(move |text, _source, position| {
        output.emit("debug", text, Some(position));
    });
    let clock = deadline.clone();
    engine.on_progress(move |operations| {
        if operations % CLOCK_CHECK_EVERY == 0 && clock.expired() {
            Some(Dynamic::from(TIME_BUDGET_EXCEEDED))
        } else {
            None
        }
    });
    helpers::register(&mut engine, &deadline);
    // The tracker's query functions exist in every engine, so rules using them load and
    // validate anywhere; engines of a running pipeline register its real tracker over these.
    crate::tracker::TrackerHandle::default().register(&mut engine);
    // `intel_lookup(value)`: every hit for any address, range, domain, URL or hash, from the
    // snapshot current at the call.
    let snapshot = intel.clone();
    let clock = deadline.clone();
    engine.register_fn(
        "intel_lookup",
        move |value: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            // Parsing the value is linear in its length, which the event size bounds.
            clock.check()?;
            Ok(super::convert::hits_to_dynamic(
                &snapshot.current().lookup(value),
            ))
        },
    );
    engine.register_fn("intel_lookup", |_: ()| Dynamic::from_array(Vec::new()));
    (engine, deadline)
}

/// A short, author-facing description of a failed evaluation, naming the limit when one fired.
pub fn describe(error: &rhai::EvalAltResult) -> String {
    use rhai::EvalAltResult as E;
    match error {
        E::ErrorTooManyOperations(..) => {
            "stopped by the operations limit (`max_operations`)".into()
        }
        E::ErrorStackOverflow(..) => "stopped by the call depth limit (`max_call_depth`)".into(),
        E::ErrorDataTooLarge(what, ..) => format!("stopped by a size limit: {what}"),
        E::ErrorTerminated(..) => "stopped by the time budget (`time_budget_ms`)".into(),
        E::ErrorTooManyModules(..) | E::ErrorModuleNotFound(..) => {
            "modules are not available to rules".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(limits: &RuleLimits, script: &str) -> Result<Dynamic, String> {
        let (engine, deadline) = build_engine(limits, &crate::intel::IntelHandle::default());
        deadline.start();
        let ast = engine.compile(script).map_err(|e| e.to_string())?;
        engine.eval_ast::<Dynamic>(&ast).map_err(|e| describe(&e))
    }

    fn fails_with(script: &str, expected: &str) {
        fails_within(&RuleLimits::default(), script, expected);
    }

    fn fails_within(limits: &RuleLimits, script: &str, expected: &str) {
        let err = run(limits, script).unwrap_err();
        assert!(
            err.contains(expected),
            "`{script}` failed with `{err}`, expected `{expected}`"
        );
    }

    #[test]
    fn endless_loop_hits_the_operations_limit() {
        fails_with("loop { }", "operations limit");
    }

    #[test]
    fn slow_operations_hit_the_time_budget() {
        // Each operation builds a long string, so the clock fires before the operation count.
        let limits = RuleLimits {
            max_operations: u64::MAX,
            time_budget_ms: 20,
            ..RuleLimits::default()
        };
        let started = Instant::now();
        let err = run(&limits, r#"let s = ""; loop { s = "x".pad(60000, "y"); }"#).unwrap_err();
        assert!(err.contains("time budget"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    fn timed(limits: &RuleLimits, script: &str) -> (Result<Dynamic, String>, Duration) {
        let started = Instant::now();
        let result = run(limits, script);
        (result, started.elapsed())
    }

    // Defect 6: a helper call counted as one operation and the clock was read every 1024
    // operations, so 1,000 `icontains` calls on a 60 KB string ran for seconds on a 50 ms budget.
    #[test]
    fn icontains_in_a_loop_is_stopped_by_the_time_budget() {
        let (result, took) = timed(
            &RuleLimits::default(),
            r#"let text = "a"; text.pad(60000, "a"); let part = "a"; part.pad(100, "a"); part += "b";
               let found = 0;
               for i in 0..1000 { if icontains(text, part) { found += 1; } }
               found"#,
        );
        let err = result.unwrap_err();
        assert!(err.contains("time budget"), "{err}");
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }

    // Defect 6, within one call: a pattern that matches almost everywhere makes one comparison
    // quadratic (60,000 x 30,000 bytes), so the helper reads the clock as it goes.
    #[test]
    fn one_long_helper_call_is_stopped_by_the_time_budget() {
        for call in ["icontains(text, part)", "contains_any(text, [\"x\", part])"] {
            let (result, took) = timed(
                &RuleLimits::default(),
                &format!(
                    r#"let text = "a"; text.pad(60000, "a"); let part = "a"; part.pad(30000, "a"); part += "b"; {call}"#
                ),
            );
            let err = result.unwrap_err();
            assert!(err.contains("time budget"), "{call}: {err}");
            assert!(took < Duration::from_secs(1), "{call} took {took:?}");
        }
    }

    // Defect 6, Rhai's own string functions: each is one operation too, and the clock is now
    // read every 64 of them, so a loop of long copies stops near the budget.
    #[test]
    fn long_string_copies_in_a_loop_stop_near_the_budget() {
        let limits = RuleLimits {
            max_operations: u64::MAX,
            ..RuleLimits::default()
        };
        let (result, took) = timed(
            &limits,
            r#"let text = "a"; text.pad(60000, "a"); let n = 0; loop { n += text.to_upper().len(); }"#,
        );
        let err = result.unwrap_err();
        assert!(err.contains("time budget"), "{err}");
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }

    // Defect 6, output: what a rule prints past its allowance is counted, and the count is
    // written when the window ends.
    #[test]
    fn output_past_the_allowance_is_counted_and_reported_when_the_window_ends() {
        let start = Instant::now();
        let mut output = RuleOutput::default();
        let long = "z".repeat(5000);
        let log = super::super::tests::captured_log(|| {
            for _ in 0..25 {
                output.emit("loud", "print", &long, None, start);
            }
            output.emit(
                "loud",
                "print",
                "after the window",
                None,
                start + PRINT_WINDOW,
            );
        });
        let lines: Vec<&str> = log.lines().collect();
        let printed = lines.iter().filter(|l| l.contains("zzzz")).count();
        assert_eq!(printed, PRINT_LINES_PER_WINDOW as usize);
        assert!(
            lines
                .iter()
                .all(|l| l.len() < PRINT_LINE_MAX + 300 && !l.contains(&long)),
            "lines are cut"
        );
        let summary = lines
            .iter()
            .position(|l| l.contains("5 more print/debug line(s) not written"))
            .expect("the count is written");
        let after = lines
            .iter()
            .position(|l| l.contains("after the window"))
            .expect("a new window writes again");
        assert!(summary < after);
        assert_eq!(lines.len(), PRINT_LINES_PER_WINDOW as usize + 3, "{log}");
    }

    // Defect 8's sibling in rule output: a printed event value cannot forge a log line.
    #[test]
    fn printed_control_characters_are_escaped() {
        let mut output = RuleOutput::default();
        let log = super::super::tests::captured_log(|| {
            output.emit(
                "r",
                "print",
                "ws-1\n2025-11-03T14:30:10Z CRITICAL forged\u{1b}[2K",
                None,
                Instant::now(),
            );
        });
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(
            log.contains("ws-1\\n2025-11-03T14:30:10Z CRITICAL forged\\u001b[2K"),
            "{log}"
        );
    }

    #[test]
    fn recursion_hits_the_call_depth_limit() {
        fails_with("fn f(n) { f(n + 1) } f(0)", "call depth");
    }

    #[test]
    fn deep_expressions_are_refused_at_compile_time() {
        let script = format!("{}1{}", "(".repeat(200), ")".repeat(200));
        fails_with(&script, "maximum complexity");
    }

    #[test]
    fn big_strings_arrays_and_maps_hit_size_limits() {
        // Rhai re-measures the map on every insert, which a debug build on a busy machine may
        // not finish within 50 ms; the time budget has its own tests.
        let limits = RuleLimits {
            time_budget_ms: 10_000,
            ..RuleLimits::default()
        };
        fails_within(&limits, r#""x".pad(100000, "y")"#, "size limit");
        fails_within(&limits, "let a = []; a.pad(20000, 0); a", "size limit");
        fails_within(
            &limits,
            "let m = #{}; for i in 0..2000 { m[`k${i}`] = i; } m.len()",
            "size limit",
        );
    }

    #[test]
    fn no_modules_and_no_eval() {
        fails_with(r#"import "std" as s; 1"#, "");
        let err = run(&RuleLimits::default(), r#"import "anything" as s; 1"#).unwrap_err();
        assert!(err.to_lowercase().contains("module"), "{err}");
        let err = run(&RuleLimits::default(), r#"eval("1 + 1")"#).unwrap_err();
        assert!(err.contains("eval"), "{err}");
    }

    #[test]
    fn no_file_or_network_functions_exist() {
        for call in [
            r#"open_file("/etc/passwd")"#,
            r#"read_file("/etc/passwd")"#,
            r#"http_get("http://x")"#,
            r#"system("id")"#,
        ] {
            let err = run(&RuleLimits::default(), call).unwrap_err();
            assert!(err.contains("Function not found"), "{call}: {err}");
        }
    }

    #[test]
    fn undefined_variables_fail_at_compile_time() {
        let (engine, _) = build_engine(
            &RuleLimits::default(),
            &crate::intel::IntelHandle::default(),
        );
        assert!(engine.compile("fn detect(event) { evnt.name }").is_err());
    }
}
