//! The one place a Rhai engine is built. Rule authors' scripts are code from a git repository,
//! so every limit Rhai has is set here, and the engine gets no module loading, no `eval`, and no
//! function that touches files, the network or processes (Rhai has none unless registered, and
//! this builder registers only pure helpers).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine};
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
    /// Longest string a script may build, in bytes.
    pub max_string_size: usize,
    /// Most elements in one array.
    pub max_array_size: usize,
    /// Most properties in one object map.
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
/// the operation itself.
const CLOCK_CHECK_EVERY: u64 = 1024;

/// The time budget's clock, shared between the engine's progress callback and the caller that
/// starts each evaluation.
#[derive(Debug, Clone)]
pub struct Deadline {
    origin: Instant,
    /// Nanoseconds after `origin` when the running evaluation must stop; 0 = no evaluation.
    at_nanos: Arc<AtomicU64>,
    budget: Duration,
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

    fn expired(&self) -> bool {
        let at = self.at_nanos.load(Ordering::Relaxed);
        at != 0 && u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX) > at
    }
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
    // Output from a rule goes to the engine's log, never to stdout where replay writes JSON.
    engine.on_print(|text| tracing::info!(target: "palisade::rule_print", "{text}"));
    engine.on_debug(|text, source, position| {
        tracing::debug!(target: "palisade::rule_print", ?source, %position, "{text}");
    });
    let deadline = Deadline {
        origin: Instant::now(),
        at_nanos: Arc::new(AtomicU64::new(0)),
        budget: Duration::from_millis(limits.time_budget_ms),
    };
    let clock = deadline.clone();
    engine.on_progress(move |operations| {
        if operations % CLOCK_CHECK_EVERY == 0 && clock.expired() {
            Some(Dynamic::from(TIME_BUDGET_EXCEEDED))
        } else {
            None
        }
    });
    helpers::register(&mut engine);
    // The tracker's query functions exist in every engine, so rules using them load and
    // validate anywhere; engines of a running pipeline register its real tracker over these.
    crate::tracker::TrackerHandle::default().register(&mut engine);
    // `intel_lookup(value)`: every hit for any address, range, domain, URL or hash, from the
    // snapshot current at the call.
    let snapshot = intel.clone();
    engine.register_fn("intel_lookup", move |value: &str| {
        super::convert::hits_to_dynamic(&snapshot.current().lookup(value))
    });
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
        let err = run(&RuleLimits::default(), script).unwrap_err();
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
        fails_with(r#""x".pad(100000, "y")"#, "size limit");
        fails_with("let a = []; a.pad(20000, 0); a", "size limit");
        fails_with(
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
