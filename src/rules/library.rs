//! What every rule shares: the named lists (`lists/*.yaml`) and the helper functions of
//! `lib/*.rhai`.
//!
//! A helper file holds only `fn` definitions. It is compiled once when the content loads, in the
//! same sandbox as rules, and its functions are added to each rule's compiled script, so a
//! helper runs under the calling rule's limits and sees nothing but its arguments (a Rhai
//! function cannot read variables from outside it). Rules stay stateless: a helper file has no
//! top level to keep state in.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{AST, Dynamic, Engine, EvalAltResult};

use crate::diagnostics::{Diagnostic, Diagnostics};

use super::lists::Lists;
use super::references::outline;
use super::sandbox::{Deadline, RuleLimits, build_engine};
use super::text_position;

/// Function names a helper may not define: the engine calls `detect` itself, and the others are
/// the host's own functions, which a helper of the same name would silently replace.
const RESERVED: [&str; 3] = ["detect", "in_list", "intel_lookup"];

/// Lists and helpers, loaded with the content and shared by every rule.
#[derive(Debug, Clone, Default)]
pub struct Library {
    pub lists: Arc<Lists>,
    /// Every helper file's functions, merged; `None` without `lib/`.
    helpers: Option<Arc<AST>>,
    /// The helper files, in load order, and the functions each defines.
    pub helper_files: Vec<(PathBuf, Vec<String>)>,
}

impl Library {
    pub fn new(lists: Lists, helpers: Vec<(PathBuf, AST)>) -> Library {
        let mut merged: Option<AST> = None;
        let mut helper_files = Vec::new();
        for (path, ast) in helpers {
            let names = ast.iter_functions().map(|f| f.name.to_string()).collect();
            helper_files.push((path, names));
            merged = Some(match merged {
                Some(all) => all.merge(&ast),
                None => ast,
            });
        }
        Library {
            lists: Arc::new(lists),
            helpers: merged.map(Arc::new),
            helper_files,
        }
    }

    /// A rule's compiled functions with the helpers added; the rule's own function wins over a
    /// helper of the same name and arity.
    pub fn with_helpers(&self, rule: AST) -> AST {
        match &self.helpers {
            Some(helpers) => helpers.merge(&rule),
            None => rule,
        }
    }

    /// Registers `in_list(name, value)` on `engine`: whether `value` is on the named list. A
    /// value that is not text (an absent field, `()`) is on no list; an unknown list is an
    /// error, like any failed call.
    pub fn register(&self, engine: &mut Engine, deadline: &Deadline) {
        let lists = self.lists.clone();
        let clock = deadline.clone();
        engine.register_fn(
            "in_list",
            move |name: &str, value: &str| -> Result<bool, Box<EvalAltResult>> {
                clock.check()?;
                let list = lists
                    .resolve(name)
                    .map_err(|message| -> Box<EvalAltResult> { message.into() })?;
                Ok(list.contains_text(value))
            },
        );
        let lists = self.lists.clone();
        engine.register_fn(
            "in_list",
            move |name: &str, value: Dynamic| -> Result<bool, Box<EvalAltResult>> {
                let list = lists
                    .resolve(name)
                    .map_err(|message| -> Box<EvalAltResult> { message.into() })?;
                // Numbers (ports) are compared as their text.
                Ok(match value.as_int() {
                    Ok(n) => list.contains_text(&n.to_string()),
                    Err(_) => false,
                })
            },
        );
    }
}

/// Compiles and checks one `lib/*.rhai` file: only `fn` definitions, none named like a host
/// function, no `import`. Every problem is reported at its position.
pub fn load_helpers(path: &Path, source: &str, limits: &RuleLimits) -> Result<AST, Diagnostics> {
    let source = crate::diagnostics::strip_bom(source);
    let mut problems = Diagnostics::default();
    let (engine, _) = build_engine(limits, &crate::intel::IntelHandle::default());
    let ast = match engine.compile(source) {
        Ok(ast) => ast,
        Err(err) => {
            let position = err.position();
            problems.push(Diagnostic::at(
                path,
                source,
                crate::diagnostics::Position::new(
                    position.line().unwrap_or(1),
                    position.position().unwrap_or(1),
                ),
                "rhai-syntax",
                format!("syntax error: {}", err.err_type()),
            ));
            return Err(problems);
        }
    };
    let shape = outline(source);
    for offset in &shape.statements {
        problems.push(Diagnostic::at(
            path,
            source,
            text_position(source, *offset, ""),
            "lib-top-level",
            "a helper file may contain only `fn` definitions: helpers are shared by every rule and keep no state (put constants inside the function, or in a list under `lists/`)",
        ));
    }
    for offset in &shape.imports {
        problems.push(Diagnostic::at(
            path,
            source,
            text_position(source, *offset, ""),
            "lib-import",
            "`import` is not available to helpers: modules are refused in the rule sandbox",
        ));
    }
    for function in &shape.functions {
        if RESERVED.contains(&function.name.as_str()) {
            problems.push(Diagnostic::at(
                path,
                source,
                text_position(source, function.offset, ""),
                "lib-reserved-name",
                format!(
                    "a helper may not be called `{}`: that name belongs to {}",
                    function.name,
                    if function.name == "detect" {
                        "each rule"
                    } else {
                        "a built-in function"
                    }
                ),
            ));
        }
    }
    if problems.is_empty() {
        Ok(ast.clone_functions_only())
    } else {
        Err(problems)
    }
}
