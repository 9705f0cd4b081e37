//! Action plugins: the code that acts. Each implements [`Action`] for one action name and gets
//! typed parameters; it never sees raw event text and never runs a shell. The safety policy
//! (audit, protected targets, cooldowns, rate limits, timeouts, dry-run) is the executor's, not
//! the plugins': a plugin only does its one thing. The contract is in `docs/actions.md`.

pub mod email;
mod file;
pub mod firewall;
mod notify;
mod process;

pub use file::{FileScanSettings, handle as yara_handle};
pub use process::{ProcessInfo, process_info};

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use super::ParamValue;

/// What a plugin is asked to do.
#[derive(Debug, Clone)]
pub struct ActionCall {
    pub action: &'static str,
    pub params: BTreeMap<&'static str, ParamValue>,
    /// When the event that led here happened (milliseconds since the epoch): a process started
    /// after it cannot be the one the event named.
    pub event_time_ms: i64,
    /// The rule and playbook, for messages.
    pub rule: String,
    pub playbook: String,
    pub event_id: String,
}

impl ActionCall {
    pub fn text(&self, name: &str) -> Option<String> {
        self.params.get(name).map(ToString::to_string)
    }
}

/// A failed act. `message` goes to the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    pub message: String,
}

impl ActionError {
    pub fn new(message: impl Into<String>) -> ActionError {
        ActionError {
            message: message.into(),
        }
    }
}

pub type ActionFuture<'a> = Pin<Box<dyn Future<Output = Result<String, ActionError>> + Send + 'a>>;

/// One action's implementation. `execute` returns what was done, for the audit trail.
pub trait Action: Send + Sync {
    fn name(&self) -> &'static str;
    fn execute<'a>(&'a self, call: &'a ActionCall) -> ActionFuture<'a>;
}

/// What plugins need from the engine's configuration.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    pub redis_url: String,
    /// Where blocks are recorded (for re-assertion at start-up and `palisade unblock`).
    pub blocks: Option<sqlx::SqlitePool>,
    pub firewall: firewall::Backend,
    /// What `notify.webhook` calls are held to (`actions.webhook`).
    pub webhook: crate::outbound::Limits,
    /// The SMTP server `notify.email` sends through (`actions.email`), if one is configured.
    pub email: Option<email::EmailSettings>,
    /// What `file.scan` reads with (`actions.file_scan` and the content's YARA rules).
    pub file_scan: FileScanSettings,
}

/// The explicit registry: every plugin palisade has, by action name. Actions without a plugin
/// here are refused by the executor with that reason.
pub struct Registry {
    plugins: BTreeMap<&'static str, Box<dyn Action>>,
}

/// A plugin that could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Webhook(#[from] crate::outbound::ClientError),
    #[error(transparent)]
    Redis(#[from] crate::bus::InvalidRedisUrl),
    #[error(transparent)]
    Email(#[from] email::EmailBuildError),
}

impl Registry {
    pub fn new(settings: &PluginSettings) -> Result<Registry, RegistryError> {
        let mut plugins: BTreeMap<&'static str, Box<dyn Action>> = BTreeMap::new();
        let all: Vec<Box<dyn Action>> = vec![
            Box::new(firewall::Block {
                blocks: settings.blocks.clone(),
                backend: settings.firewall,
            }),
            Box::new(firewall::Unblock {
                blocks: settings.blocks.clone(),
                backend: settings.firewall,
            }),
            Box::new(process::Kill),
            Box::new(notify::Log),
            Box::new(notify::Webhook::new(settings.webhook)?),
            Box::new(notify::RedisPublish::new(&settings.redis_url)?),
            Box::new(notify::Syslog),
            Box::new(email::Email::new(settings.email.as_ref())?),
            Box::new(file::Scan::new(&settings.file_scan)),
        ];
        for plugin in all {
            plugins.insert(plugin.name(), plugin);
        }
        Ok(Registry { plugins })
    }

    pub fn get(&self, action: &str) -> Option<&dyn Action> {
        self.plugins.get(action).map(|p| p.as_ref())
    }
}
