//! YARA through the real binary: rule files compiled by the real `yara-x` engine, files the
//! tests write (the EICAR test string among them), the SQLite state file, and `replay` with the
//! shipped intel rules. Built with `--features yara`; without it, the refusal is tested.

use std::path::Path;

use crate::support::{palisade, scratch_content, stdout};

/// A rule for the EICAR anti-virus test file, with meta that becomes the indicator's threat.
#[cfg(feature = "yara")]
const EICAR_RULE: &str = r#"rule eicar_test_file : test {
  meta:
    family = "EICAR"
    confidence = 100
  strings:
    $eicar = "EICAR-STANDARD-ANTIVIRUS-TEST-FILE"
  condition:
    $eicar
}
"#;

/// The 68-byte EICAR test file, assembled here so this source never holds it in one piece
/// (a scanner reading the repository must not flag the test suite).
#[cfg(feature = "yara")]
fn eicar() -> String {
    [
        r"X5O!P%@AP[4\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-ANTIVIRUS-",
        "TEST-FILE!$H+H*",
    ]
    .concat()
}

#[cfg(feature = "yara")]
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

/// Runs the binary, killing it after a minute: a scan that blocks on a FIFO must fail the test
/// (a killed run has no exit code), not hang it.
#[cfg(feature = "yara")]
fn palisade_bounded(args: &[&str], dir: &Path) -> std::process::Output {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the palisade binary runs");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            // Killed: no exit code, so the caller's check of the code fails with the output.
            eprintln!(
                "`palisade {}` did not finish within a minute",
                args.join(" ")
            );
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[cfg(feature = "yara")]
#[test]
fn intel_scan_stores_the_hash_of_a_matching_file_and_replay_detects_it() {
    let dir = scratch_content();
    write(&dir.path().join("yara/eicar.yar"), EICAR_RULE);
    let sample = eicar();
    write(&dir.path().join("samples/eicar.com"), &sample);
    write(
        &dir.path().join("samples/sub/notes.txt"),
        "nothing to see here\n",
    );
    let listed = sha256_hex(sample.as_bytes());
    let clean = sha256_hex(b"nothing to see here\n");

    let out = palisade_bounded(&["intel", "scan", "samples"], dir.path());
    let text = stdout(&out);
    // A match is a finding: exit 1, like `validate` with problems.
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "samples/eicar.com: eicar_test_file (sha256 {listed})"
        )),
        "{text}"
    );
    assert!(text.contains("eicar_test_file.family: EICAR"), "{text}");
    assert!(
        text.contains("scanned 2 file(s) with 1 rule(s): 1 matched, 0 skipped; stored 3 indicator(s) as source `yara`"),
        "{text}"
    );

    // The stored indicator carries the rule and its meta as the threat.
    let lookup = palisade(&["intel", "lookup", &listed], dir.path());
    let found = stdout(&lookup);
    assert_eq!(lookup.status.code(), Some(0), "{found}");
    assert!(found.contains("from yara"), "{found}");
    assert!(
        found.contains("threat eicar_test_file (family=EICAR, confidence=100)"),
        "{found}"
    );

    // Events carrying the hash (in upper case, as some sensors send it) are detected by the
    // shipped intel rule; the clean file's hash is not.
    write(
        &dir.path().join("events.jsonl"),
        &format!(
            "{{\"type\":\"process_create\",\"timestamp\":1,\"id\":\"e1\",\"pid\":4321,\"name\":\"eicar.com\",\"process_hash\":\"{}\"}}\n\
             {{\"type\":\"process_create\",\"timestamp\":2,\"id\":\"e2\",\"pid\":4322,\"name\":\"notes.exe\",\"process_hash\":\"{clean}\"}}\n",
            listed.to_uppercase()
        ),
    );
    let replay = palisade(&["replay", "--events", "events.jsonl"], dir.path());
    let lines = crate::support::json_lines(&stdout(&replay));
    let detected: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["kind"] == "detection" && l["rule"] == "intel-listed-process-hash")
        .collect();
    assert_eq!(detected.len(), 1, "{}", stdout(&replay));
    assert_eq!(detected[0]["event_id"], "e1", "{}", detected[0]);
}

#[cfg(feature = "yara")]
#[test]
fn a_yara_syntax_error_is_reported_at_its_position() {
    let dir = scratch_content();
    write(&dir.path().join("yara/a_good.yar"), EICAR_RULE);
    // Line 4, column 23: the second `and` has nothing before it.
    write(
        &dir.path().join("yara/broken.yar"),
        "rule fine { condition: true }\n\nrule broken {\n  condition: true and and false\n}\n",
    );
    let out = palisade(&["validate", "."], dir.path());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("yara/broken.yar:4:23: error[yara-invalid]: YARA syntax error"),
        "{text}"
    );
    // The good file is not blamed.
    assert!(!text.contains("a_good.yar"), "{text}");
}

#[cfg(feature = "yara")]
#[test]
fn scan_does_not_follow_symlinks_out_of_the_roots_or_read_fifos() {
    use std::os::unix::fs::symlink;
    let dir = scratch_content();
    write(&dir.path().join("yara/eicar.yar"), EICAR_RULE);
    let sample = eicar();
    // Outside the scanned root: a matching file and a folder holding another.
    write(&dir.path().join("outside/secret.com"), &sample);
    write(&dir.path().join("outside/folder/deep.com"), &sample);
    let root = dir.path().join("root");
    write(&root.join("inside.com"), &sample);
    symlink(
        dir.path().join("outside/secret.com"),
        root.join("link-out.com"),
    )
    .expect("link");
    symlink(dir.path().join("outside/folder"), root.join("folder-out")).expect("link");
    // A link to a file inside the root is the same file: scanned once.
    symlink(root.join("inside.com"), root.join("link-in.com")).expect("link");
    let made = std::process::Command::new("mkfifo")
        .arg(root.join("pipe.com"))
        .status()
        .expect("mkfifo");
    assert!(made.success());

    let out = palisade_bounded(&["intel", "scan", "root", "--no-store"], dir.path());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("root/inside.com: eicar_test_file"), "{text}");
    assert!(!text.contains("secret.com: "), "{text}");
    assert!(!text.contains("deep.com"), "{text}");
    assert!(
        text.contains("skipped root/link-out.com: a link out of the scan roots (not followed)"),
        "{text}"
    );
    assert!(
        text.contains("skipped root/folder-out: a link out of the scan roots (not followed)"),
        "{text}"
    );
    assert!(
        text.contains("skipped root/pipe.com: not a regular file (device, FIFO or socket)"),
        "{text}"
    );
    assert!(text.contains(": 1 matched, 3 skipped"), "{text}");
    // Nothing was stored with --no-store.
    let stats = stdout(&palisade(&["intel", "stats"], dir.path()));
    assert!(!stats.contains("yara"), "{stats}");
}

#[cfg(not(feature = "yara"))]
#[test]
fn yara_rules_without_the_feature_are_refused_not_ignored() {
    let dir = scratch_content();
    write(
        &dir.path().join("yara/eicar.yar"),
        "rule x { condition: true }\n",
    );
    let out = palisade(&["validate", "."], dir.path());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("error[yara-unsupported]"), "{text}");
    assert!(text.contains("built with the `yara` feature"), "{text}");
    let scan = palisade(&["intel", "scan", "yara"], dir.path());
    assert_eq!(scan.status.code(), Some(2));
    assert!(
        crate::support::stderr(&scan).contains("built with the `yara` feature"),
        "{}",
        crate::support::stderr(&scan)
    );
}

#[cfg(feature = "yara")]
#[test]
fn file_scan_outside_the_roots_is_refused_and_inside_reports_matches() {
    let dir = scratch_content();
    write(&dir.path().join("yara/eicar.yar"), EICAR_RULE);
    let root = dir.path().join("watched");
    let inside = root.join("inside.com");
    let clean = root.join("clean.txt");
    let outside = dir.path().join("elsewhere/secret.com");
    write(&inside, &eicar());
    write(&clean, "nothing to see here\n");
    write(&outside, &eicar());
    // A link inside the root to the file outside it: judged by where it points.
    let link = root.join("link.com");
    std::os::unix::fs::symlink(&outside, &link).expect("link");
    write(
        &dir.path().join("palisade.yaml"),
        &format!(
            "actions:\n  dry_run: false\n  cooldown: 1s\n  file_scan:\n    roots: [\"{}\"]\n    timeout: 5s\n",
            root.display()
        ),
    );
    write(
        &dir.path().join("rules/scan_me.rhai"),
        r#"let rule = #{ id: "scan-me", title: "Scan me", severity: "high", events: ["process_create"],
                        filter: #{ "cmdline|contains": ["scan-me"] } };"#,
    );
    write(
        &dir.path().join("playbooks/scan.yaml"),
        "id: scan\ntitle: Scan the image\ntrigger: {rules: [scan-me]}\nsteps:\n  - id: scan\n    action: file.scan\n    with: {path: \"{{ event.image }}\"}\n    on_failure: continue\n",
    );
    let now = jiff::Timestamp::now();
    let events: Vec<String> = [&inside, &clean, &outside, &link]
        .iter()
        .enumerate()
        .map(|(n, path)| {
            format!(
                r#"{{"type":"process_create","timestamp":"{now}","id":"e{n}","host":"test","pid":{},"name":"x","image":"{}","cmdline":"x scan-me"}}"#,
                1000 + n,
                path.display()
            )
        })
        .collect();
    write(
        &dir.path().join("events.jsonl"),
        &(events.join("\n") + "\n"),
    );
    let out = palisade(&["run", "--events", "events.jsonl"], dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        crate::support::stderr(&out)
    );
    let rows: Vec<serde_json::Value> = stdout(&palisade(&["audit", "export"], dir.path()))
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["step"] == "scan" && r["kind"] == "outcome")
        .collect();
    assert_eq!(rows.len(), 4, "{rows:#?}");
    let outcome_of = |path: &Path| -> String {
        let name = path.display().to_string();
        rows.iter()
            .find(|r| r.to_string().contains(&name))
            .map(|r| r.to_string())
            .unwrap_or_else(|| panic!("no outcome names {name}: {rows:#?}"))
    };
    let matched = outcome_of(&inside);
    assert!(matched.contains("matched eicar_test_file"), "{matched}");
    assert!(outcome_of(&clean).contains("no YARA rule matched"));
    for refused in [&outside, &link] {
        let text = outcome_of(refused);
        assert!(text.contains("is outside the scan roots"), "{text}");
        assert!(!text.contains("matched eicar_test_file"), "{text}");
    }
}
