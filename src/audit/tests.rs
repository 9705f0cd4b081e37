//! The trail against an attacker who can write the SQLite file (but not read the key): every
//! attack is SQL run on the real database file through a connection of its own, as someone with
//! the `sqlite3` shell would.

use std::path::{Path, PathBuf};

use super::*;

struct Trail {
    _dir: tempfile::TempDir,
    database: PathBuf,
    files: AuditFiles,
    state: StateStore,
}

impl Trail {
    async fn new() -> Trail {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("state.db");
        let state = StateStore::open(&database).await.unwrap();
        Trail {
            files: AuditFiles::beside(&database),
            _dir: dir,
            database,
            state,
        }
    }

    /// A writer, as the engine opens one at start.
    async fn log(&self) -> AuditLog {
        AuditLog::open(&self.state, &self.files).await.unwrap()
    }

    /// `count` rows appended in batches of three, as the executor writes them.
    async fn with_rows(count: usize) -> Trail {
        let trail = Trail::new().await;
        let log = trail.log().await;
        let entries: Vec<AuditEntry> = (0..count)
            .map(|i| entry("intent", &format!("s{i}")))
            .collect();
        for batch in entries.chunks(3) {
            log.append(batch).await.unwrap();
        }
        trail
    }

    async fn verify(&self) -> Report {
        AuditReader::new(&self.state)
            .verify(&self.files)
            .await
            .unwrap()
    }

    /// Runs `sql` on the database file through a connection of its own.
    async fn attack(&self, sql: &str) {
        attack(&self.database, sql).await;
    }
}

async fn attack(database: &Path, sql: &str) {
    let attacker = StateStore::open(database).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(attacker.pool())
        .await
        .unwrap();
    attacker.close().await;
}

fn entry(kind: &str, step: &str) -> AuditEntry {
    AuditEntry {
        kind: kind.into(),
        actor: "engine:test".into(),
        step: Some(step.into()),
        status: Some("executed".into()),
        details: serde_json::json!({"params": {"pid": "42"}, "score": 0.9}),
        ..AuditEntry::default()
    }
}

fn shown(report: &Report) -> Vec<String> {
    report.findings.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn normal_appends_verify_intact() {
    let trail = Trail::new().await;
    let log = trail.log().await;
    assert!(trail.verify().await.intact());
    log.append(&[entry("intent", "kill"), entry("outcome", "kill")])
        .await
        .unwrap();
    log.append(&[entry("intent", "notify")]).await.unwrap();
    // A second writer (an operator's command) between the engine's appends.
    trail
        .log()
        .await
        .append(&[entry("approval", "kill")])
        .await
        .unwrap();
    log.append(&[entry("outcome", "notify")]).await.unwrap();
    log.flush().await;
    let report = trail.verify().await;
    assert!(report.intact(), "{:?}", shown(&report));
    assert_eq!((report.rows, report.anchored), (5, Some(5)));
    assert_eq!(report.keyed_from, Some(1));
    let tail = AuditReader::new(&trail.state).tail(2).await.unwrap();
    assert_eq!(tail.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(tail[1].prev_hash, tail[0].hash);
    assert!(tail[1].hash.starts_with("hmac:"));
}

#[tokio::test]
async fn deleting_the_last_row_and_updating_audit_head_is_detected() {
    let trail = Trail::with_rows(6).await;
    trail
        .attack(
            "DELETE FROM audit WHERE seq = 6;
             UPDATE audit_head SET seq = 5, hash = (SELECT hash FROM audit WHERE seq = 5);",
        )
        .await;
    let report = trail.verify().await;
    assert_eq!(
        shown(&report),
        ["row 6 missing (the anchor says the trail ends at 6)"]
    );
    // Several rows: the range is named.
    trail
        .attack(
            "DELETE FROM audit WHERE seq > 2;
             UPDATE audit_head SET seq = 2, hash = (SELECT hash FROM audit WHERE seq = 2);",
        )
        .await;
    assert_eq!(
        shown(&trail.verify().await),
        ["rows 3-6 missing (the anchor says the trail ends at 6)"]
    );
}

#[tokio::test]
async fn deleting_every_row_of_audit_and_audit_head_is_detected() {
    let trail = Trail::with_rows(4).await;
    trail
        .attack("DELETE FROM audit; DELETE FROM audit_head;")
        .await;
    let report = trail.verify().await;
    assert_eq!(report.rows, 0);
    assert_eq!(
        shown(&report),
        ["all rows deleted (the anchor says the trail ends at 4)"]
    );
}

/// The attacker's script: rewrite row `seq`'s status and recompute every hash from there on,
/// the way the unkeyed chain was computed, head record included.
async fn edit_and_recompute(trail: &Trail, seq: i64, hash: impl Fn(&str, &AuditRecord) -> String) {
    trail
        .attack(&format!(
            "UPDATE audit SET status = 'refused' WHERE seq = {seq}"
        ))
        .await;
    let records = AuditReader::new(&trail.state).records(None).await.unwrap();
    let mut prev = records[usize::try_from(seq).unwrap() - 2].hash.clone();
    let mut sql = String::new();
    for record in records.iter().filter(|r| r.seq >= seq) {
        let new = hash(&prev, record);
        sql.push_str(&format!(
            "UPDATE audit SET prev_hash = '{prev}', hash = '{new}' WHERE seq = {};\n",
            record.seq
        ));
        prev = new;
    }
    sql.push_str(&format!("UPDATE audit_head SET hash = '{prev}';"));
    trail.attack(&sql).await;
}

#[tokio::test]
async fn editing_a_row_and_recomputing_the_chain_is_detected() {
    // Recomputed with the unkeyed SHA-256 the chain used to have.
    let trail = Trail::with_rows(8).await;
    edit_and_recompute(&trail, 3, |prev, r| {
        check::legacy_digest(prev, r.seq, &r.recorded_at, &r.entry)
    })
    .await;
    let report = trail.verify().await;
    assert!(!report.intact());
    assert_eq!(
        shown(&report)[0],
        "rows 3-8 changed: it is in the unkeyed form, but the keyed chain began at row 1"
    );
    // Recomputed as keyed rows, with a key of the attacker's own.
    let trail = Trail::with_rows(8).await;
    let guess = AuditKey::from_bytes([0x41; 32]);
    edit_and_recompute(&trail, 3, |prev, r| {
        let details = r.entry.details.to_string();
        let e = &r.entry;
        let fields: Vec<Option<&[u8]>> = [
            Some(r.recorded_at.as_str()),
            Some(e.kind.as_str()),
            Some(e.actor.as_str()),
            e.event_id.as_deref(),
            e.rule.as_deref(),
            e.playbook.as_deref(),
            e.step.as_deref(),
            e.action.as_deref(),
            e.target.as_deref(),
            e.status.as_deref(),
            e.reason.as_deref(),
            Some(details.as_str()),
        ]
        .into_iter()
        .map(|f| f.map(str::as_bytes))
        .collect();
        check::row_mac(&guess, r.seq, &fields, prev.as_bytes())
    })
    .await;
    assert_eq!(
        shown(&trail.verify().await),
        ["rows 3-8 changed: its content does not match its MAC"]
    );
}

#[tokio::test]
async fn prepending_a_duplicate_key_to_details_is_detected() {
    let trail = Trail::with_rows(4).await;
    trail
        .attack(r#"UPDATE audit SET details = '{"score":0.1,' || substr(details, 2) WHERE seq = 2"#)
        .await;
    // What a reader of the database now sees: the forged first key.
    let forged: f64 =
        sqlx::query_scalar("SELECT json_extract(details, '$.score') FROM audit WHERE seq = 2")
            .fetch_one(trail.state.pool())
            .await
            .unwrap();
    assert_eq!(forged, 0.1);
    assert_eq!(
        shown(&trail.verify().await),
        ["row 2 changed: its content does not match its MAC"]
    );
}

#[tokio::test]
async fn edits_deletes_and_reorders_of_middle_rows_are_caught_at_their_row() {
    let attacks = [
        "UPDATE audit SET recorded_at = '2020-01-01T00:00:00Z' WHERE seq = 5",
        "UPDATE audit SET kind = 'decision' WHERE seq = 5",
        "UPDATE audit SET actor = 'operator:root' WHERE seq = 5",
        "UPDATE audit SET event_id = 'e-1' WHERE seq = 5",
        "UPDATE audit SET rule = 'other' WHERE seq = 5",
        "UPDATE audit SET playbook = 'other' WHERE seq = 5",
        "UPDATE audit SET step = NULL WHERE seq = 5",
        "UPDATE audit SET action = 'notify.log' WHERE seq = 5",
        "UPDATE audit SET target = '10.0.0.1' WHERE seq = 5",
        "UPDATE audit SET status = 'refused' WHERE seq = 5",
        "UPDATE audit SET reason = 'nothing happened' WHERE seq = 5",
        r#"UPDATE audit SET details = '{}' WHERE seq = 5"#,
        "UPDATE audit SET details = CAST(details AS BLOB) WHERE seq = 5",
        "UPDATE audit SET prev_hash = (SELECT hash FROM audit WHERE seq = 3) WHERE seq = 5",
        "UPDATE audit SET hash = (SELECT hash FROM audit WHERE seq = 4) WHERE seq = 5",
        "DELETE FROM audit WHERE seq = 5",
        "UPDATE audit SET seq = -5 WHERE seq = 5; UPDATE audit SET seq = 5 WHERE seq = 6; UPDATE audit SET seq = 6 WHERE seq = -5",
        "UPDATE audit SET seq = 105 WHERE seq = 5",
    ];
    for attack in attacks {
        let trail = Trail::with_rows(9).await;
        trail.attack(attack).await;
        let report = trail.verify().await;
        let first = report.findings.first().map(ToString::to_string);
        assert!(
            first
                .as_deref()
                .is_some_and(|f| f.starts_with("row 5 ") || f.starts_with("rows 5-")),
            "{attack}: {:?}",
            shown(&report)
        );
    }
}

/// Rows as a build without the key wrote them: unkeyed hashes and the head record.
async fn legacy_rows(database: &Path, count: i64) {
    let mut prev = GENESIS.to_string();
    let mut sql = String::new();
    for seq in 1..=count {
        let e = entry("intent", &format!("old{seq}"));
        let at = "2025-01-01T00:00:00Z";
        let hash = check::legacy_digest(&prev, seq, at, &e);
        sql.push_str(&format!(
            "INSERT INTO audit (seq, recorded_at, kind, actor, step, status, details, prev_hash, hash) VALUES ({seq}, '{at}', 'intent', 'engine:test', 'old{seq}', 'executed', '{}', '{prev}', '{hash}');\n",
            e.details
        ));
        prev = hash;
    }
    sql.push_str(&format!(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, {count}, '{prev}');"
    ));
    attack(database, &sql).await;
}

#[tokio::test]
async fn rows_written_before_the_key_are_checked_as_before_and_sealed_by_the_first_keyed_row() {
    let trail = Trail::new().await;
    legacy_rows(&trail.database, 3).await;
    // Before the key: checked as they always were, duplicated details keys included, and
    // reported as proving nothing until a keyed row seals them.
    let report = trail.verify().await;
    assert_eq!(
        shown(&report),
        [
            "rows 1-3 are unkeyed and no keyed row seals them: anyone who can write the database could have rewritten them (the next row written with the key seals them as they are now)"
        ]
    );
    assert_eq!((report.legacy_rows, report.keyed_from), (3, None));
    trail
        .attack(r#"UPDATE audit SET details = '{"score":0.1,' || substr(details, 2) WHERE seq = 2"#)
        .await;
    assert!(shown(&trail.verify().await)[0].starts_with("row 2 changed: its details are not"));
    trail
        .attack(r#"UPDATE audit SET details = '{' || substr(details, 14) WHERE seq = 2"#)
        .await;
    assert_eq!(
        trail.verify().await.findings,
        [Finding::Unsealed { last: 3 }],
        "the original details are back"
    );
    // The first writer with a key creates it; its first row seals the three.
    trail
        .log()
        .await
        .append(&[entry("intent", "new")])
        .await
        .unwrap();
    let report = trail.verify().await;
    assert!(report.intact(), "{:?}", shown(&report));
    assert_eq!(
        (report.rows, report.legacy_rows, report.keyed_from),
        (4, 3, Some(4))
    );
    // Rewriting an unkeyed row and its successors no longer goes unnoticed: the keyed row's
    // MAC covers the link the rewrite has to change.
    edit_and_recompute(&trail, 2, |prev, r| {
        if r.seq < 4 {
            check::legacy_digest(prev, r.seq, &r.recorded_at, &r.entry)
        } else {
            r.hash.clone()
        }
    })
    .await;
    assert_eq!(
        shown(&trail.verify().await),
        ["row 4 changed: its content does not match its MAC"]
    );
}

#[tokio::test]
async fn a_missing_key_for_an_existing_trail_is_an_error() {
    let trail = Trail::with_rows(2).await;
    std::fs::remove_file(&trail.files.key).unwrap();
    let verify = AuditReader::new(&trail.state).verify(&trail.files).await;
    assert!(
        matches!(&verify, Err(AuditError::KeyMissing { evidence, .. }) if evidence.contains("anchor")),
        "{verify:?}"
    );
    // Nor does a writer quietly start a new key.
    assert!(matches!(
        AuditLog::open(&trail.state, &trail.files).await,
        Err(AuditError::KeyMissing { .. })
    ));
    std::fs::remove_file(&trail.files.anchor).unwrap();
    assert!(matches!(
        AuditReader::new(&trail.state).verify(&trail.files).await,
        Err(AuditError::KeyMissing { evidence, .. }) if evidence == "2 keyed row(s)"
    ));
}

#[tokio::test]
async fn a_removed_or_edited_anchor_is_reported() {
    let trail = Trail::with_rows(3).await;
    std::fs::remove_file(&trail.files.anchor).unwrap();
    assert!(shown(&trail.verify().await)[0].starts_with("the anchor file is missing"));
    // Written by hand to an earlier point of the trail, without the key.
    let head: String = sqlx::query_scalar("SELECT hash FROM audit WHERE seq = 2")
        .fetch_one(trail.state.pool())
        .await
        .unwrap();
    std::fs::write(
        &trail.files.anchor,
        format!(r#"{{"seq":2,"head":"{head}","keyed_from":1,"tag":"00"}}"#),
    )
    .unwrap();
    assert!(shown(&trail.verify().await)[0].starts_with("the anchor file was tampered with"));
    // The next writer records it in the trail before it writes a new anchor.
    std::fs::remove_file(&trail.files.anchor).unwrap();
    trail
        .log()
        .await
        .append(&[entry("intent", "after")])
        .await
        .unwrap();
    let report = trail.verify().await;
    assert_eq!(report.findings.len(), 1, "{:?}", shown(&report));
    assert!(
        shown(&report)[0].starts_with("row 4 records a break: the anchor file was missing"),
        "{:?}",
        shown(&report)
    );
}

#[tokio::test]
async fn a_cut_trail_rewritten_up_to_the_anchor_is_recorded_by_the_next_writer() {
    let trail = Trail::with_rows(4).await;
    // Rows 3-4 removed and two of the attacker's own put in their place (not keyed: they
    // have no key), so the numbering reaches the anchor again.
    trail
        .attack(
            "DELETE FROM audit WHERE seq > 2;
             INSERT INTO audit (seq, recorded_at, kind, actor, details, prev_hash, hash)
                 SELECT seq + 2, recorded_at, kind, actor, details, hash, 'x' || seq FROM audit;",
        )
        .await;
    trail
        .log()
        .await
        .append(&[entry("intent", "after")])
        .await
        .unwrap();
    let found = shown(&trail.verify().await);
    assert!(found[0].starts_with("rows 3-4 changed"), "{found:?}");
    assert!(
        found.iter().any(|f| f
            == "row 5 records a break: when this row was written row 4 was not the row the anchor recorded: the trail was cut back and rewritten"),
        "{found:?}"
    );
}

#[tokio::test]
async fn rows_cut_while_the_engine_was_stopped_are_recorded_by_the_next_writer() {
    let trail = Trail::with_rows(6).await;
    trail
        .attack(
            "DELETE FROM audit WHERE seq > 3;
             UPDATE audit_head SET seq = 3, hash = (SELECT hash FROM audit WHERE seq = 3);",
        )
        .await;
    // The engine starts again and appends: the anchor moves on, the evidence stays.
    trail
        .log()
        .await
        .append(&[entry("intent", "after")])
        .await
        .unwrap();
    let report = trail.verify().await;
    assert_eq!(
        shown(&report),
        [
            "row 4 records a break: when this row was written rows 4-6 were missing: the anchor said the trail ended at 6"
        ]
    );
    assert_eq!((report.rows, report.anchored), (5, Some(5)));
}

#[tokio::test]
async fn a_key_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let trail = Trail::with_rows(1).await;
    std::fs::set_permissions(&trail.files.key, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(matches!(
        AuditLog::open(&trail.state, &trail.files).await,
        Err(AuditError::KeyExposed { mode: 0o640, .. })
    ));
    assert!(matches!(
        AuditReader::new(&trail.state).verify(&trail.files).await,
        Err(AuditError::KeyExposed { .. })
    ));
}

/// `cargo test --lib audit::tests::append_timing -- --ignored --nocapture`: 100k entries in
/// batches of 100 and of 1, as the executor appends them.
#[tokio::test]
#[ignore = "a timing, not a check"]
async fn append_timing() {
    for batch in [100usize, 1] {
        let trail = Trail::new().await;
        let log = trail.log().await;
        let total = if batch == 1 { 10_000 } else { 100_000 };
        let entries: Vec<AuditEntry> = (0..batch)
            .map(|i| entry("decision", &format!("s{i}")))
            .collect();
        let started = std::time::Instant::now();
        for _ in 0..total / batch {
            log.append(&entries).await.unwrap();
        }
        log.flush().await;
        let elapsed = started.elapsed();
        println!(
            "{total} entries in batches of {batch}: {:.2?} ({:.0} entries/s)",
            elapsed,
            total as f64 / elapsed.as_secs_f64()
        );
        let started = std::time::Instant::now();
        assert!(trail.verify().await.intact());
        println!("verify {total} rows: {:.2?}", started.elapsed());
    }
}

/// The actor was `operator:unknown` whenever `USER` was unset; each fallback is used in turn,
/// and a value with a line break or control character is skipped, not recorded.
#[test]
fn operator_falls_back_to_logname_passwd_then_the_configured_name() {
    let env = |set: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            set.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_string())
        }
    };
    assert_eq!(
        operator_from(env(&[("USER", "alice"), ("LOGNAME", "bob")]), || None, None),
        "operator:alice"
    );
    assert_eq!(
        operator_from(env(&[("LOGNAME", "bob")]), || Some("carol".into()), None),
        "operator:bob"
    );
    assert_eq!(
        operator_from(env(&[("USER", "x\ny")]), || Some("carol".into()), None),
        "operator:carol"
    );
    assert_eq!(
        operator_from(env(&[]), || None, Some(" soc-team ")),
        "operator:soc-team"
    );
    assert_eq!(
        operator_from(env(&[]), || None, Some("")),
        "operator:unknown"
    );
    assert_eq!(operator_from(env(&[]), || None, None), "operator:unknown");
}
