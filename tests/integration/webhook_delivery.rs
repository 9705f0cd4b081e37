//! Webhook delivery through the running engine against receivers that redirect: what the audit
//! trail records is what arrived.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;

use crate::support::{assert_success, palisade, scratch_content, stdout};

/// Every request a receiver got, as `METHOD path body`.
type Seen = Arc<Mutex<Vec<String>>>;

async fn record(State(seen): State<Seen>, method: Method, uri: Uri, body: String) -> StatusCode {
    seen.lock()
        .expect("lock")
        .push(format!("{method} {} {body}", uri.path()));
    StatusCode::OK
}

/// A receiver that records what reaches it; `/moved/STATUS?to=URL` answers STATUS with that
/// `Location` instead.
fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/moved/{status}",
            axum::routing::any(
                |axum::extract::Path(status): axum::extract::Path<u16>,
                 axum::extract::Query(query): axum::extract::Query<
                    std::collections::HashMap<String, String>,
                >| async move {
                    (
                        StatusCode::from_u16(status).expect("status"),
                        [("location", query.get("to").cloned().unwrap_or_default())],
                    )
                        .into_response()
                },
            ),
        )
        .fallback(record)
        .with_state(seen.clone());
    let address = crate::support::serve_http(app);
    (format!("http://{address}"), seen)
}

/// Content that acts, with a rule on a marker command line and a playbook whose only step
/// posts to `url`.
fn content(url: &str) -> tempfile::TempDir {
    let dir = scratch_content();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        "actions:\n  dry_run: false\n  cooldown: \"off\"\n",
    )
    .expect("config");
    std::fs::write(
        dir.path().join("rules/marker.rhai"),
        r#"let rule = #{ id: "marker", title: "Marker", severity: "high", events: ["process_create"],
                        filter: #{ "cmdline|contains": ["palisade-webhook-marker"] } };"#,
    )
    .expect("rule");
    std::fs::write(
        dir.path().join("playbooks/tell.yaml"),
        format!("id: tell\ntitle: Tell\ntrigger: {{rules: [marker]}}\nsteps:\n  - id: tell\n    action: notify.webhook\n    with: {{url: \"{url}\", message: \"seen\"}}\n    on_failure: continue\n"),
    )
    .expect("playbook");
    std::fs::write(
        dir.path().join("events.jsonl"),
        format!(
            "{{\"type\":\"process_create\",\"timestamp\":\"{}\",\"id\":\"e1\",\"host\":\"h\",\"pid\":4242,\"name\":\"x\",\"cmdline\":\"palisade-webhook-marker\"}}\n",
            jiff::Timestamp::now()
        ),
    )
    .expect("events");
    dir
}

fn run_and_audit(dir: &std::path::Path) -> String {
    assert_success(&palisade(&["run", "--events", "events.jsonl"], dir));
    stdout(&palisade(&["audit", "tail", "-n", "20"], dir))
}

#[test]
fn a_webhook_301_is_recorded_as_not_delivered_not_as_delivered_http_200() {
    let (base, seen) = receiver();
    let dir = content(&format!("{base}/moved/301?to=/elsewhere"));
    let trail = run_and_audit(dir.path());
    assert!(
        trail.contains("step=tell")
            && trail.contains("status=failed")
            && trail.contains("redirected (HTTP 301) to")
            && trail.contains("/elsewhere, which was not followed"),
        "{trail}"
    );
    assert!(!trail.contains("delivered (HTTP 200"), "{trail}");
    assert!(
        seen.lock().expect("lock").is_empty(),
        "nothing was delivered"
    );
}

#[test]
fn a_webhook_redirected_to_another_host_never_reaches_it_and_the_outcome_names_it() {
    let (base, _) = receiver();
    let (other, other_seen) = receiver();
    let dir = content(&format!("{base}/moved/307?to={other}/hook"));
    let trail = run_and_audit(dir.path());
    assert!(
        trail.contains("status=failed")
            && trail.contains(&format!(
                "to {other}/hook, which was not followed: it is another host"
            )),
        "{trail}"
    );
    assert!(other_seen.lock().expect("lock").is_empty());
}

#[test]
fn a_same_host_307_delivers_the_message_where_it_points() {
    let (base, seen) = receiver();
    let dir = content(&format!("{base}/moved/307?to=/hook"));
    let trail = run_and_audit(dir.path());
    assert!(
        trail.contains("status=executed") && trail.contains("delivered (HTTP 200, attempt 1)"),
        "{trail}"
    );
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with("POST /hook {") && seen[0].contains("\"message\":\"seen\""),
        "{seen:?}"
    );
}
