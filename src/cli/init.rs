//! `palisade init DIR`: a detection-as-code repository to start from.

use std::path::Path;

use super::{CannotRun, Status};
use crate::pipeline::{Outcome, Pipeline};
use crate::sinks::replay_lines;

/// (path in the new directory, content). The snapshot and the schemas are made, not stored.
const FILES: &[(&str, &str)] = &[
    ("palisade.yaml", include_str!("init/config.yaml")),
    (
        "rules/example_office_spawns_shell.rhai",
        include_str!("init/rule.rhai"),
    ),
    (
        "playbooks/example-contain-office-macro.yaml",
        include_str!("init/playbook.yaml"),
    ),
    (
        "tests/fixtures/example.jsonl",
        include_str!("init/events.jsonl"),
    ),
    (
        "lists/example_admin_hosts.yaml",
        include_str!("init/list.yaml"),
    ),
    ("exceptions/README.md", include_str!("init/exceptions.md")),
    ("README.md", include_str!("init/README.md")),
    (
        ".gitignore",
        "# The engine's state and rejected input, when run here.\ndata/\n",
    ),
];

/// Where the CI job goes.
const CI_FILE: &str = ".github/workflows/detections.yml";

/// The CI job, with the palisade image pinned to this palisade's version: content written for
/// one version is checked by that version until someone upgrades on purpose.
fn ci_workflow() -> String {
    include_str!("init/ci.yml").replace("@PALISADE_VERSION@", env!("CARGO_PKG_VERSION"))
}

/// The shipped warninglists (public DNS resolvers, CDNs, certificate revocation hosts, special
/// ranges, with their licence note): without them a new repository's engine would act on a
/// feed's indicator for 8.8.8.8 like on any other.
const WARNINGLISTS: &[(&str, &str)] = &[
    (
        "warninglists/README.md",
        include_str!("../../warninglists/README.md"),
    ),
    (
        "warninglists/akamai.json",
        include_str!("../../warninglists/akamai.json"),
    ),
    (
        "warninglists/cisco_top1000.json",
        include_str!("../../warninglists/cisco_top1000.json"),
    ),
    (
        "warninglists/cloudflare.json",
        include_str!("../../warninglists/cloudflare.json"),
    ),
    (
        "warninglists/crl-hostname.json",
        include_str!("../../warninglists/crl-hostname.json"),
    ),
    (
        "warninglists/crl-ip.json",
        include_str!("../../warninglists/crl-ip.json"),
    ),
    (
        "warninglists/empty-hashes.json",
        include_str!("../../warninglists/empty-hashes.json"),
    ),
    (
        "warninglists/fastly.json",
        include_str!("../../warninglists/fastly.json"),
    ),
    (
        "warninglists/ipv6-linklocal.json",
        include_str!("../../warninglists/ipv6-linklocal.json"),
    ),
    (
        "warninglists/multicast.json",
        include_str!("../../warninglists/multicast.json"),
    ),
    (
        "warninglists/public-dns-v4.json",
        include_str!("../../warninglists/public-dns-v4.json"),
    ),
    (
        "warninglists/public-dns-v6.json",
        include_str!("../../warninglists/public-dns-v6.json"),
    ),
    (
        "warninglists/rfc1918.json",
        include_str!("../../warninglists/rfc1918.json"),
    ),
    (
        "warninglists/rfc5735.json",
        include_str!("../../warninglists/rfc5735.json"),
    ),
    (
        "warninglists/rfc6598.json",
        include_str!("../../warninglists/rfc6598.json"),
    ),
];

fn write(dir: &Path, relative: &str, text: &str) -> Result<(), CannotRun> {
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| CannotRun(format!("cannot create `{}`: {e}", parent.display())))?;
    }
    std::fs::write(&path, text)
        .map_err(|e| CannotRun(format!("cannot write `{}`: {e}", path.display())))?;
    println!("  {relative}");
    Ok(())
}

pub fn run(dir: &Path) -> Result<Status, CannotRun> {
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        return Err(CannotRun(format!(
            "`{}` is not empty; `palisade init` only writes into a new or empty directory, so nothing of yours is overwritten",
            dir.display()
        )));
    }
    println!("wrote into {}:", dir.display());
    for (relative, text) in FILES.iter().chain(WARNINGLISTS) {
        write(dir, relative, text)?;
    }
    write(dir, CI_FILE, &ci_workflow())?;
    for (name, text) in crate::schema::all() {
        write(dir, &format!("schemas/{name}"), &text)?;
    }
    // The snapshot is what this palisade makes of the example events, so `palisade test`
    // passes from the start.
    let content = super::load_runnable_content(dir, None)?;
    let mut pipeline = Pipeline::new(content.clone(), false, crate::intel::IntelHandle::default())?;
    let mut snapshot = String::new();
    for line in include_str!("init/events.jsonl").lines() {
        let event = crate::event::normalize(line.as_bytes())
            .map_err(|e| CannotRun(format!("the example events: {}", e.message)))?;
        let mut outcome = Outcome::default();
        pipeline.process(&event, &mut outcome);
        for value in replay_lines(&outcome) {
            snapshot.push_str(&value.to_string());
            snapshot.push('\n');
        }
    }
    write(dir, "tests/fixtures/example.expected.jsonl", &snapshot)?;
    // The audit key exists before the first row: every row the engine writes here is keyed.
    let files = crate::audit::AuditFiles::from_config(
        &content.config.audit,
        &content.config.state.path,
        |p| content.resolve(p),
    );
    if crate::audit::create_key(&files)? {
        println!(
            "  {} (the audit key, mode 0600: back it up, keep it out of version control)",
            files.key.strip_prefix(dir).unwrap_or(&files.key).display()
        );
    }
    println!(
        "\nnext:\n  cd {}\n  palisade validate && palisade test\n  palisade run --events tests/fixtures/example.jsonl",
        dir.display()
    );
    Ok(Status::Ok)
}
