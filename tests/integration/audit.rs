//! The audit trail end to end: `palisade init` creates the key, `palisade run` writes keyed rows
//! and the anchor, and `palisade audit verify` reports what an attacker with write access to the
//! database file did to it.

use std::os::unix::fs::PermissionsExt;

use crate::support::{assert_success, palisade, stderr, stdout};

/// Runs `sql` on the state database file, as someone with the sqlite3 shell would.
fn attack(database: &std::path::Path, sql: &str) {
    crate::support::with_state(database, async |state| {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(state.pool())
            .await
            .expect("attack");
    });
}

#[test]
fn deleting_every_row_of_audit_and_audit_head_is_reported_by_audit_verify() {
    let parent = tempfile::tempdir().expect("temp dir");
    let dir = parent.path().join("detections");
    let out = palisade(&["init", dir.to_str().expect("utf-8")], parent.path());
    assert_success(&out);
    // The key exists before the first row, readable by its owner only.
    let key = dir.join("data/palisade.db.audit-key");
    let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(dir.join("data/palisade.db.audit-anchor").is_file());

    let run = palisade(&["run", "--events", "tests/fixtures/example.jsonl"], &dir);
    assert_success(&run);
    // The anchor also goes to the log, for a log shipper to take off the host.
    let anchor =
        std::fs::read_to_string(dir.join("data/palisade.db.audit-anchor")).expect("anchor");
    let anchor: serde_json::Value = serde_json::from_str(&anchor).expect("anchor JSON");
    assert!(
        stderr(&run).contains("audit anchor")
            && stderr(&run).contains(anchor["head"].as_str().expect("head")),
        "{}",
        stderr(&run)
    );
    let out = palisade(&["audit", "verify"], &dir);
    assert_success(&out);
    assert!(stdout(&out).starts_with("intact: "), "{}", stdout(&out));

    let database = dir.join("data/palisade.db");
    let rows = {
        let tail = stdout(&palisade(&["audit", "tail", "-n", "1"], &dir));
        tail.split_whitespace()
            .next()
            .and_then(|n| n.parse::<i64>().ok())
            .expect("a row number")
    };
    attack(&database, "DELETE FROM audit; DELETE FROM audit_head;");
    let out = palisade(&["audit", "verify"], &dir);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!(
            "BROKEN: all rows deleted (the anchor says the trail ends at {rows})"
        )),
        "{}",
        stdout(&out)
    );

    // A key others can read is refused, and a missing one is named.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = palisade(&["audit", "verify"], &dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    std::fs::remove_file(&key).expect("rm");
    let out = palisade(&["audit", "verify"], &dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("audit key") && stderr(&out).contains("is missing"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_audit_anchor_over_the_key_is_refused_by_validate_with_its_line() {
    let dir = crate::support::scratch_content();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        "state:\n  path: data/p.db\naudit:\n  key: data/audit\n  anchor: data/audit\n",
    )
    .expect("config");
    let out = palisade(&["validate"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("palisade.yaml:5:") && text.contains("three different files"),
        "{text}"
    );
}
