//! Sigma file loading from text: every document parsed (rules, filters, correlations), modifiers
//! applied, conditions parsed; what loads is compiled into the shared matchers and run on one
//! event, where the compiled set must agree with the direct evaluator.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use palisade::event::{Event, EventKind};
use palisade::sigma::{CompiledSet, SigmaConfig, eval, load_source};

fuzz_target!(|data: &[u8]| {
    // Sigma files are read as UTF-8 text; other bytes never reach the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = load_source(Path::new("rules/fuzz.yml"), text, &SigmaConfig::default());
    let rules: Vec<_> = loaded.rules.into_iter().map(Arc::new).collect();
    let Ok(set) = CompiledSet::new(&rules) else {
        return;
    };
    let mut event = Event::new("fuzz", EventKind::ProcessCreate, 0);
    event.image = Some("C:\\Windows\\System32\\cmd.exe".into());
    event.cmdline = Some("cmd.exe /c whoami -all".into());
    event.parent_image = Some("C:\\Windows\\explorer.exe".into());
    let compiled = set.matching(&event);
    let direct: Vec<usize> = rules
        .iter()
        .enumerate()
        .filter(|(_, rule)| rule.kinds.contains(&event.kind) && eval::matches(rule, &event))
        .map(|(index, _)| index)
        .collect();
    assert_eq!(compiled, direct, "the compiled set and the evaluator disagree");
});
