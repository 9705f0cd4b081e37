//! `palisade bench pipeline --webhook healthy|hang`: the same run with a playbook that posts
//! every malicious event's detection to a local webhook receiver, one that answers at once or
//! one that never answers, so the two throughputs show what a hanging receiver costs the
//! pipeline (the effects pool is meant to make it cost nothing).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::content::Content;

/// How the bench's webhook receiver behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WebhookMode {
    /// Answers 200 at once.
    Healthy,
    /// Takes the request and never answers.
    Hang,
}

impl WebhookMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookMode::Healthy => "healthy",
            WebhookMode::Hang => "hang",
        }
    }
}

/// Starts a receiver on a free loopback port in the current runtime; its URL.
pub async fn receiver(mode: WebhookMode) -> Result<String, String> {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || async move {
            if mode == WebhookMode::Hang {
                tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
            }
            axum::http::StatusCode::OK
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1 for the bench's webhook: {e}"))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("the bench's webhook listener: {e}"))?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{address}/hook"))
}

/// `content` with its playbooks replaced by one that posts every detection of the rules the
/// bench's malicious events match to `url`, and actions live (nothing else acts, so no block or
/// kill runs on the bench machine). Written under `dir` beside links to everything else in the
/// content directory, and loaded from there like any content.
pub fn content_posting_to(
    content: &Content,
    url: &str,
    dir: &Path,
) -> Result<Arc<Content>, String> {
    let at = |e: std::io::Error| {
        format!(
            "cannot prepare the webhook bench's content in `{}`: {e}",
            dir.display()
        )
    };
    std::fs::create_dir_all(dir.join("playbooks")).map_err(at)?;
    for entry in std::fs::read_dir(&content.dir).map_err(at)? {
        let entry = entry.map_err(at)?;
        let name = entry.file_name();
        if name == "playbooks" || name == crate::config::CONFIG_FILE {
            continue;
        }
        let link = dir.join(&name);
        if !link.exists() {
            let target = std::path::absolute(entry.path()).map_err(at)?;
            std::os::unix::fs::symlink(target, link).map_err(at)?;
        }
    }
    let mut config = content.config.clone();
    config.actions.dry_run = false;
    let text = yaml_serde::to_string(&config).map_err(|e| format!("the bench's config: {e}"))?;
    std::fs::write(dir.join(crate::config::CONFIG_FILE), text).map_err(at)?;
    std::fs::write(
        dir.join("playbooks/bench-webhook.yaml"),
        format!(
            "id: bench-webhook\ntitle: Tell a webhook\ntrigger: {{rules: [office-spawns-shell]}}\nsteps:\n  - id: tell\n    action: notify.webhook\n    with: {{url: \"{url}\", message: \"{{{{ detection.title }}}}\"}}\n    on_failure: continue\n"
        ),
    )
    .map_err(at)?;
    let loaded = crate::content::load(dir, None).map_err(|problems| {
        format!(
            "the webhook bench's content does not load:\n{}",
            problems.render()
        )
    })?;
    Ok(Arc::new(loaded))
}
