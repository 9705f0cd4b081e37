//! `palisade diff`: the impact of a content change, measured on a real git repository made by
//! `palisade init`, with the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{RedisServer, assert_success, palisade, stderr, stdout};

/// The init rule's filter line, and the same line widened to OneNote.
const FILTER: &str = r#"parent_name: ["winword.exe", "excel.exe", "powerpnt.exe", "outlook.exe"],"#;
const WIDENED: &str =
    r#"parent_name: ["winword.exe", "excel.exe", "powerpnt.exe", "outlook.exe", "onenote.exe"],"#;
const RULE: &str = "rules/example_office_spawns_shell.rhai";

/// A recorded event the init rule does not match: a shell started by OneNote.
const ONENOTE_EVENT: &str = r#"{"type":"process_create","timestamp":"2026-01-05T10:00:00Z","id":"pr-1","host":"ws-9","pid":777,"name":"cmd.exe","parent_name":"ONENOTE.EXE","cmdline":"cmd /c whoami","user":"CORP\\bob"}"#;

fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs")
}

/// `palisade init` content with one recorded event file, committed in a new git repository.
fn committed_repository() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().expect("temp dir");
    let repo = root.path().join("detections");
    assert_success(&palisade(&["init", "detections"], root.path()));
    std::fs::create_dir_all(repo.join("events")).expect("mkdir");
    std::fs::write(
        repo.join("events/pr.jsonl"),
        format!("{ONENOTE_EVENT}\nnot json\n"),
    )
    .expect("write");
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &["commit", "-q", "-m", "content"],
    ] {
        let out = git(&repo, args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (root, repo)
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{from} not in {}", path.display());
    std::fs::write(path, text.replace(from, to)).expect("write");
}

fn json(output: &std::process::Output) -> Value {
    assert_success(output);
    serde_json::from_str(&stdout(output)).expect("one JSON document")
}

fn find<'a>(list: &'a Value, key: &str, id: &str) -> &'a Value {
    let found = list
        .as_array()
        .expect("an array")
        .iter()
        .find(|item| item[key] == id);
    assert!(found.is_some(), "no {key} `{id}` in {list:#}");
    found.expect("found")
}

#[test]
fn diff_on_a_widened_filter_lists_the_newly_matching_events_and_the_actions_they_trigger() {
    let (_root, repo) = committed_repository();
    edit(&repo.join(RULE), FILTER, WIDENED);

    let text = palisade(&["diff", "--base", "HEAD"], &repo);
    assert_success(&text);
    let shown = stdout(&text);
    assert!(
        shown.contains("rule example-office-spawns-shell: +1 -0 detection(s)"),
        "{shown}"
    );
    // The newly matching event, where it was recorded, and the steps it now triggers.
    assert!(shown.contains("pr-1 (events/pr.jsonl:1)"), "{shown}");
    assert!(
        shown.contains("gained process.kill 777 (step kill-shell, dry_run"),
        "{shown}"
    );
    assert!(
        shown.contains("gained notify.log error (step tell-oncall"),
        "{shown}"
    );
    // The malformed line is counted, not fatal.
    assert!(shown.contains("1 rejected (not_json: 1)"), "{shown}");

    let report = json(&palisade(
        &["diff", "--base", "HEAD", "--format", "json"],
        &repo,
    ));
    let rule = find(&report["rules"], "rule", "example-office-spawns-shell");
    assert_eq!(
        (rule["gained"].as_u64(), rule["lost"].as_u64()),
        (Some(1), Some(0))
    );
    let gained = &rule["examples"]["gained"][0]["event"];
    assert_eq!(gained["id"], "pr-1");
    assert_eq!(gained["origin"], "events/pr.jsonl:1");
    assert_eq!(gained["fields"]["parent_name"], "ONENOTE.EXE");
    let playbook = find(
        &report["playbooks"],
        "playbook",
        "example-contain-office-macro",
    );
    assert_eq!(playbook["gained"], 2);
    let steps: Vec<(&str, &str, &str)> = playbook["examples"]["gained"]
        .as_array()
        .expect("examples")
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap_or_default(),
                a["target"].as_str().unwrap_or_default(),
                a["event"]["id"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("process.kill", "777", "pr-1"),
            ("notify.log", "error", "pr-1")
        ]
    );
    // Nothing but the edit changed in the repository: no checkout, no file written into it.
    let status = git(&repo, &["status", "--porcelain"]);
    assert_eq!(
        String::from_utf8_lossy(&status.stdout).trim(),
        format!("M {RULE}")
    );

    // An unchanged tree reports no change, and the exit code says so only when asked.
    assert_success(&git(&repo, &["commit", "-q", "-a", "-m", "widen"]));
    let same = palisade(&["diff", "--base", "HEAD", "--fail-on-change"], &repo);
    assert_success(&same);
    assert!(stdout(&same).contains("no change"), "{}", stdout(&same));
    let changed = palisade(&["diff", "--base", "HEAD~1", "--fail-on-change"], &repo);
    assert_eq!(changed.status.code(), Some(1), "{}", stderr(&changed));
}

#[test]
fn diff_reports_a_lost_detection_when_a_rule_is_narrowed() {
    let (root, repo) = committed_repository();
    // The base is a directory this time: a copy of the content before the change.
    let base = root.path().join("before");
    crate::support::copy_tree(&repo.join("rules"), &base.join("rules"));
    crate::support::copy_tree(&repo.join("playbooks"), &base.join("playbooks"));
    std::fs::copy(repo.join("palisade.yaml"), base.join("palisade.yaml")).expect("copy");
    edit(
        &repo.join(RULE),
        FILTER,
        r#"parent_name: ["excel.exe", "powerpnt.exe", "outlook.exe"],"#,
    );

    let report = json(&palisade(
        &[
            "diff",
            "--base-dir",
            base.to_str().expect("utf-8"),
            "-C",
            "detections",
            "--format",
            "json",
        ],
        root.path(),
    ));
    let rule = find(&report["rules"], "rule", "example-office-spawns-shell");
    assert_eq!(rule["gained"], 0);
    // Word starting PowerShell: the recorded fixture, the rule's test case and the playbook's.
    assert_eq!(rule["lost"], 3, "{rule:#}");
    assert_eq!(rule["head"], 0);
    let lost: Vec<&str> = rule["examples"]["lost"]
        .as_array()
        .expect("examples")
        .iter()
        .map(|e| e["event"]["origin"].as_str().unwrap_or_default())
        .collect();
    assert!(
        lost.contains(&"detections/tests/fixtures/example.jsonl:2"),
        "{lost:?}"
    );
    assert!(
        lost.iter().any(|o| o.contains("word starts powershell")),
        "{lost:?}"
    );
    let playbook = find(
        &report["playbooks"],
        "playbook",
        "example-contain-office-macro",
    );
    assert_eq!(
        (playbook["lost"].as_u64(), playbook["gained"].as_u64()),
        (Some(6), Some(0))
    );
    assert_eq!(report["totals"]["detections"]["lost"], 3);
}

#[test]
fn diff_never_writes_state_or_acts() {
    let redis = RedisServer::start();
    let root = tempfile::tempdir().expect("temp dir");
    // A process the head's playbook would kill at once if anything acted.
    let mut victim = Command::new("sleep")
        .arg("120")
        .spawn()
        .expect("sleep runs");
    let pid = victim.id();
    let content = |dir: &Path, name: &str| {
        std::fs::create_dir_all(dir.join("rules")).expect("mkdir");
        std::fs::create_dir_all(dir.join("playbooks")).expect("mkdir");
        std::fs::write(
            dir.join("palisade.yaml"),
            format!(
                "state: {{path: data/palisade.db}}\nactions: {{dry_run: false}}\nredis: {{url: \"{}\"}}\n",
                redis.url()
            ),
        )
        .expect("write");
        std::fs::write(
            dir.join("rules/sleeper.rhai"),
            format!(
                "let rule = #{{ id: \"sleeper\", title: \"a sleeper\", severity: \"high\",\n  events: [\"process_create\"], filter: #{{ name: [\"{name}\"] }} }};\nfn detect(event) {{ #{{ entity: \"process\" }} }}\n"
            ),
        )
        .expect("write");
        std::fs::write(
            dir.join("playbooks/stop.yaml"),
            "id: stop-sleeper\ntitle: Kill the sleeper and say so\nmode: enforce\nhigh_risk_approval: not_required\ntrigger: {rules: [sleeper]}\nsteps:\n  - id: kill\n    action: process.kill\n    with: {pid: \"{{ entity.pid }}\", name: \"{{ entity.name }}\", grace: 1s}\n  - id: tell\n    action: notify.redis\n    with: {channel: diff-probe, message: \"killed {{ entity.pid }}\"}\n",
        )
        .expect("write");
    };
    let base = root.path().join("base");
    let head = root.path().join("head");
    content(&base, "nothing-matches.exe");
    content(&head, "sleep");
    // The head's state database exists already (an engine ran here): it must stay as it is.
    std::fs::write(root.path().join("feed.txt"), "198.51.100.7\n").expect("write");
    assert_success(&palisade(
        &[
            "intel",
            "import",
            "../feed.txt",
            "--format",
            "plain",
            "--kind",
            "ip",
        ],
        &head,
    ));
    let snapshot = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| {
                        (
                            e.file_name().to_string_lossy().into_owned(),
                            std::fs::read(e.path()).expect("read"),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    };
    let state_before = snapshot(&head.join("data"));
    assert!(!state_before.is_empty());
    std::fs::write(
        root.path().join("events.jsonl"),
        format!(
            "{{\"type\":\"process_create\",\"timestamp\":\"2026-01-05T10:00:00Z\",\"id\":\"s-1\",\"host\":\"h1\",\"pid\":{pid},\"name\":\"sleep\"}}\n"
        ),
    )
    .expect("write");
    let connections = || -> u64 {
        let info: String =
            redis::from_redis_value(redis.query(&["INFO", "stats"]).expect("INFO answers"))
                .expect("text");
        info.lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("a connection count")
    };
    let connections_before = connections();

    let report = json(&palisade(
        &[
            "diff",
            "--base-dir",
            "../base",
            "--events",
            "../events.jsonl",
            "--format",
            "json",
        ],
        &head,
    ));

    // The report says what the head would do: kill the sleeper at once and publish.
    let playbook = find(&report["playbooks"], "playbook", "stop-sleeper");
    let kill = &playbook["examples"]["gained"][0];
    assert_eq!(kill["action"], "process.kill");
    assert_eq!(kill["target"], pid.to_string());
    assert_eq!(kill["status"], "planned");
    assert_eq!(playbook["examples"]["gained"][1]["action"], "notify.redis");
    // Nothing of it happened.
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    assert!(
        victim.try_wait().expect("wait").is_none(),
        "the process was killed"
    );
    // Only this check's own connection reached Redis: nothing was published or read.
    assert_eq!(connections(), connections_before + 1);
    assert_eq!(snapshot(&head.join("data")), state_before);
    assert!(!base.join("data").exists(), "the base's state was created");
    let _ = victim.kill();
    let _ = victim.wait();
}

#[test]
fn diff_refuses_an_unknown_revision_with_gits_message() {
    let (_root, repo) = committed_repository();
    let out = palisade(&["diff", "--base", "no-such-branch"], &repo);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let said = stderr(&out);
    assert!(
        said.contains("cannot read the content at `no-such-branch`"),
        "{said}"
    );
    // git's own words for it.
    assert!(
        said.contains("Not a valid object name no-such-branch"),
        "{said}"
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));

    // A revision that is not a commit, and one that looks like an option.
    let blob = git(&repo, &["rev-parse", &format!("HEAD:{RULE}")]);
    let blob = String::from_utf8_lossy(&blob.stdout).trim().to_string();
    let out = palisade(&["diff", "--base", &blob], &repo);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("names a blob, not a commit"),
        "{}",
        stderr(&out)
    );
    let out = palisade(&["diff", "--base=--output=/tmp/x"], &repo);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("looks like an option"),
        "{}",
        stderr(&out)
    );

    // Content that does not validate at the base names that side and shows validate's problem.
    edit(
        &repo.join(RULE),
        "severity: \"high\"",
        "severity: \"urgent\"",
    );
    assert_success(&git(&repo, &["commit", "-q", "-a", "-m", "broken"]));
    edit(
        &repo.join(RULE),
        "severity: \"urgent\"",
        "severity: \"high\"",
    );
    let out = palisade(&["diff", "--base", "HEAD"], &repo);
    assert_eq!(out.status.code(), Some(2));
    let said = stderr(&out);
    assert!(
        said.contains("the content of the base `HEAD` does not validate"),
        "{said}"
    );
    assert!(said.contains(&format!("HEAD:{RULE}:")), "{said}");
    assert!(
        !said.contains("palisade-diff-"),
        "a scratch path leaked: {said}"
    );
}

#[test]
fn diff_markdown_and_json_carry_the_same_counts() {
    let (_root, repo) = committed_repository();
    edit(&repo.join(RULE), FILTER, WIDENED);
    // Narrow the names too, so the report has losses as well as gains.
    edit(
        &repo.join(RULE),
        r#"name: ["powershell.exe", "pwsh.exe", "cmd.exe", "wscript.exe", "mshta.exe"],"#,
        r#"name: ["pwsh.exe", "cmd.exe", "wscript.exe", "mshta.exe"],"#,
    );
    let report = json(&palisade(
        &["diff", "--base", "HEAD", "--format", "json"],
        &repo,
    ));
    let markdown = palisade(&["diff", "--base", "HEAD", "--format", "markdown"], &repo);
    assert_success(&markdown);
    let markdown = stdout(&markdown);

    // `| label | base | head | +gained | -lost |` rows, by label.
    let rows: Vec<(String, [u64; 4])> = markdown
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let numbers: Vec<u64> = cells
                .get(1..5)?
                .iter()
                .map(|c| c.trim_start_matches(['+', '-']).parse().ok())
                .collect::<Option<_>>()?;
            Some((
                cells[0].to_string(),
                [numbers[0], numbers[1], numbers[2], numbers[3]],
            ))
        })
        .collect();
    let counts = |v: &Value| {
        [
            v["base"].as_u64().unwrap_or(u64::MAX),
            v["head"].as_u64().unwrap_or(u64::MAX),
            v["gained"].as_u64().unwrap_or(u64::MAX),
            v["lost"].as_u64().unwrap_or(u64::MAX),
        ]
    };
    let row = |label: &str| {
        let found = rows.iter().find(|(l, _)| l == label).map(|(_, n)| *n);
        assert!(found.is_some(), "no row `{label}` in\n{markdown}");
        found.expect("found")
    };
    assert_eq!(row("detections"), counts(&report["totals"]["detections"]));
    assert_eq!(row("planned actions"), counts(&report["totals"]["actions"]));
    let rule = find(&report["rules"], "rule", "example-office-spawns-shell");
    assert_eq!(
        row("rule <code>example-office-spawns-shell</code>"),
        counts(rule)
    );
    let playbook = find(
        &report["playbooks"],
        "playbook",
        "example-contain-office-macro",
    );
    assert_eq!(
        row("playbook <code>example-contain-office-macro</code>"),
        counts(playbook)
    );
    // Both directions are there, and each changed rule has its examples folded away.
    assert!(rule["gained"].as_u64() > Some(0) && rule["lost"].as_u64() > Some(0));
    assert!(
        markdown.contains("<details><summary>rule <code>example-office-spawns-shell</code>"),
        "{markdown}"
    );
    assert_eq!(
        markdown.matches("<details>").count(),
        markdown.matches("</details>").count()
    );
}

/// The job `palisade init` writes runs on pull requests with the permission to comment, and its
/// command works on a repository whose base branch is only known as `origin/<branch>`.
#[test]
fn the_init_ci_template_posts_the_diff_on_pull_requests() {
    let (_root, repo) = committed_repository();
    let text = std::fs::read_to_string(repo.join(".github/workflows/detections.yml")).expect("ci");
    let workflow: Value = yaml_serde::from_str(&text).expect("the workflow is YAML");
    let job = &workflow["jobs"]["impact"];
    assert_eq!(job["if"], "github.event_name == 'pull_request'");
    // The report is made in palisade's image; the comment, by a job with GitHub's command line.
    let comment = &workflow["jobs"]["impact-comment"];
    assert_eq!(comment["needs"], "impact");
    assert_eq!(comment["permissions"]["pull-requests"], "write");
    let run = |job: &Value, needle: &str| {
        let found = job["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter_map(|s| s["run"].as_str())
            .find(|r| r.contains(needle));
        assert!(found.is_some(), "no step runs `{needle}`");
        found.expect("found").to_string()
    };
    let diff = run(job, "palisade diff");
    assert!(run(comment, "gh pr comment").contains("--body-file impact.md"));

    // The base branch as CI sees it: a remote-tracking branch.
    let branch = git(&repo, &["branch", "--show-current"]);
    let branch = String::from_utf8_lossy(&branch.stdout).trim().to_string();
    assert_success(&git(
        &repo,
        &["remote", "add", "origin", repo.to_str().expect("utf-8")],
    ));
    assert_success(&git(&repo, &["fetch", "-q", "origin"]));
    edit(&repo.join(RULE), FILTER, WIDENED);
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_palisade"));
    let path = format!(
        "{}:{}",
        binary.parent().expect("a folder").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .args(["-c", &diff])
        .current_dir(&repo)
        .env("PATH", path)
        .env("BASE_REF", &branch)
        .output()
        .expect("sh runs");
    assert_success(&out);
    let markdown = std::fs::read_to_string(repo.join("impact.md")).expect("the report");
    assert!(
        markdown.contains(&format!("### palisade diff: <code>origin/{branch} (")),
        "{markdown}"
    );
    assert!(
        markdown.contains("| rule <code>example-office-spawns-shell</code> | 3 | 4 | +1 | -0 |"),
        "{markdown}"
    );
}

/// Only the content may make the sides differ: with the anomaly model and the tracker both
/// producing detections, identical rules give no change, even when the base's config names a
/// model file it does not have (both sides score with the working tree's model).
#[test]
fn diff_of_the_same_rules_is_no_change_with_the_model_and_the_tracker_on() {
    let root = tempfile::tempdir().expect("temp dir");
    let repo = crate::support::repo();
    for side in ["base", "head"] {
        let dir = root.path().join(side);
        for sub in ["rules", "playbooks", "models"] {
            crate::support::copy_tree(&repo.join(sub), &dir.join(sub));
        }
    }
    std::fs::write(
        root.path().join("head/palisade.yaml"),
        "anomaly: {model: models/anomaly.model}\n",
    )
    .expect("write");
    std::fs::write(
        root.path().join("base/palisade.yaml"),
        "anomaly: {model: models/not-there.model}\n",
    )
    .expect("write");
    let fixtures = repo.join("tests/fixtures");
    let report = json(&palisade(
        &[
            "diff",
            "--base-dir",
            "../base",
            "--events",
            fixtures.join("tracker").to_str().expect("utf-8"),
            "--events",
            fixtures
                .join("anomaly/heldout-attacks.jsonl")
                .to_str()
                .expect("utf-8"),
            "--format",
            "json",
        ],
        &root.path().join("head"),
    ));
    for detector in ["anomaly-model", "tracker-first-seen"] {
        let rule = find(&report["rules"], "rule", detector);
        assert!(rule["head"].as_u64() > Some(0), "{rule:#}");
        assert_eq!(rule["base"], rule["head"], "{rule:#}");
    }
    assert_eq!(
        report["totals"]["events_changed"], 0,
        "{:#}",
        report["totals"]
    );
    assert_eq!(report["totals"]["detections"]["gained"], 0);
    assert_eq!(report["totals"]["detections"]["lost"], 0);
}

/// Defect found while building it: with the content in a folder below the top of the
/// repository, git listed the folder inside that folder, so the base was empty.
#[test]
fn diff_reads_a_content_folder_below_the_top_of_the_repository() {
    let root = tempfile::tempdir().expect("temp dir");
    let top = root.path().join("repo");
    std::fs::create_dir_all(&top).expect("mkdir");
    assert_success(&palisade(&["init", "detections"], &top));
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &["commit", "-q", "-m", "c"],
    ] {
        assert_success(&git(&top, args));
    }
    let content = top.join("detections");
    edit(&content.join(RULE), FILTER, WIDENED);
    std::fs::create_dir_all(content.join("events")).expect("mkdir");
    std::fs::write(
        content.join("events/pr.jsonl"),
        format!("{ONENOTE_EVENT}\n"),
    )
    .expect("write");
    // From the top with -C, and from inside the folder.
    for (dir, args) in [
        (
            &top,
            &[
                "diff",
                "--base",
                "HEAD",
                "-C",
                "detections",
                "--format",
                "json",
            ][..],
        ),
        (&content, &["diff", "--base", "HEAD", "--format", "json"]),
    ] {
        let report = json(&palisade(args, dir));
        let rule = find(&report["rules"], "rule", "example-office-spawns-shell");
        assert_eq!(
            (rule["base"].as_u64(), rule["gained"].as_u64()),
            (Some(3), Some(1)),
            "{rule:#}"
        );
        assert_eq!(report["totals"]["detections"]["lost"], 0);
    }
}
