//! The operator console: server-rendered pages served by the engine for the people in charge
//! of it (docs/console.md). Its config is checked before anything listens ([`Plan::from_config`]);
//! [`serve`] starts it beside the engine's other HTTP endpoints.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod html;
pub mod password;
mod web;

pub use web::serve;

use password::PasswordHash;

/// `console:` in `palisade.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Off unless asked for: the console lets people act on the engine.
    pub enabled: bool,
    /// Address and port to serve on; loopback by default. Any other address is refused at start
    /// unless `allow_plain_http_on` names the same address.
    pub listen: String,
    /// The console serves plain HTTP. To listen on a non-loopback address anyway (a private
    /// network, a proxy on another host), repeat that address here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_plain_http_on: Option<String>,
    /// Who may log in.
    pub operators: Vec<OperatorConfig>,
    /// How long a login lasts, in minutes, whatever the activity.
    pub session_minutes: u64,
}

impl Default for ConsoleConfig {
    fn default() -> ConsoleConfig {
        ConsoleConfig {
            enabled: false,
            listen: "127.0.0.1:9465".into(),
            allow_plain_http_on: None,
            operators: Vec::new(),
            session_minutes: 480,
        }
    }
}

/// One person allowed to log in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Shown in the audit trail as `operator:<name>`.
    pub name: String,
    pub role: Role,
    /// A hash written by `palisade console hash-password`, never the password itself.
    pub password_hash: String,
}

/// What an operator may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads every screen; changes nothing.
    Viewer,
    /// Also approves and rejects queued steps and switches the engine to manual mode.
    Responder,
    /// Also switches the engine back to automatic mode.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Admin => "admin",
        }
    }
}

/// Why the console refuses to start; the engine does not start either.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    #[error("`console.listen` is `{0}`, not an address and port")]
    Listen(String),
    #[error("`console.allow_plain_http_on` is `{0}`, not an address and port")]
    AllowPlain(String),
    #[error(
        "`console.listen` is `{0}`, which is not a loopback address, and the console serves plain HTTP: \
listen on loopback (behind a TLS proxy), or name this address in `console.allow_plain_http_on`"
    )]
    NotLoopback(SocketAddr),
    #[error("`console.operators[{index}]` (`{name}`): `password_hash` is {problem}")]
    Credential {
        index: usize,
        name: String,
        problem: password::HashError,
    },
    #[error("`console.operators[{index}]`: the name `{name}` {problem}")]
    Name {
        index: usize,
        name: String,
        problem: &'static str,
    },
    #[error("`console.enabled` is true but `console.operators` is empty: nobody could log in")]
    NoOperators,
    #[error("`console.session_minutes` must be at least 1")]
    NoSession,
}

/// An operator as the console checks them.
#[derive(Debug, Clone)]
pub struct Operator {
    pub name: String,
    pub role: Role,
    pub(crate) credential: PasswordHash,
}

/// The console's config, checked: the address it binds is the one checked against loopback.
#[derive(Debug, Clone)]
pub struct Plan {
    pub listen: SocketAddr,
    pub operators: BTreeMap<String, Operator>,
    pub session: std::time::Duration,
}

impl Plan {
    /// Checks `config` without side effects; `None` when the console is off.
    pub fn from_config(config: &ConsoleConfig) -> Result<Option<Plan>, ConsoleError> {
        if !config.enabled {
            return Ok(None);
        }
        let listen: SocketAddr = config
            .listen
            .trim()
            .parse()
            .map_err(|_| ConsoleError::Listen(config.listen.clone()))?;
        if !listen.ip().is_loopback() {
            let allowed = match &config.allow_plain_http_on {
                None => None,
                Some(text) => Some(
                    text.trim()
                        .parse::<SocketAddr>()
                        .map_err(|_| ConsoleError::AllowPlain(text.clone()))?,
                ),
            };
            // Compared as parsed addresses, the form that is bound.
            if allowed != Some(listen) {
                return Err(ConsoleError::NotLoopback(listen));
            }
        }
        if config.session_minutes == 0 {
            return Err(ConsoleError::NoSession);
        }
        if config.operators.is_empty() {
            return Err(ConsoleError::NoOperators);
        }
        let mut operators = BTreeMap::new();
        for (index, op) in config.operators.iter().enumerate() {
            let name = op.name.clone();
            let valid = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
            if !valid {
                return Err(ConsoleError::Name {
                    index,
                    name,
                    problem: "must be 1 to 64 letters, digits, `.`, `_`, `-` or `@`",
                });
            }
            let credential = PasswordHash::parse(&op.password_hash).map_err(|problem| {
                ConsoleError::Credential {
                    index,
                    name: name.clone(),
                    problem,
                }
            })?;
            let operator = Operator {
                name: name.clone(),
                role: op.role,
                credential,
            };
            if operators.insert(name.clone(), operator).is_some() {
                return Err(ConsoleError::Name {
                    index,
                    name,
                    problem: "is configured twice",
                });
            }
        }
        Ok(Some(Plan {
            listen,
            operators,
            session: std::time::Duration::from_secs(config.session_minutes.saturating_mul(60)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str, allow: Option<&str>) -> ConsoleConfig {
        ConsoleConfig {
            enabled: true,
            listen: listen.into(),
            allow_plain_http_on: allow.map(String::from),
            operators: vec![OperatorConfig {
                name: "ana".into(),
                role: Role::Admin,
                password_hash: password::hash("pw", 1).unwrap_or_default(),
            }],
            ..ConsoleConfig::default()
        }
    }

    #[test]
    fn non_loopback_without_opt_in_is_refused() {
        assert!(matches!(
            Plan::from_config(&config("0.0.0.0:9465", None)),
            Err(ConsoleError::NotLoopback(_))
        ));
        // The opt-in names another address: still refused.
        assert!(matches!(
            Plan::from_config(&config("0.0.0.0:9465", Some("10.0.0.1:9465"))),
            Err(ConsoleError::NotLoopback(_))
        ));
        // Same address written differently (spaces) is the same address once parsed.
        assert!(Plan::from_config(&config("0.0.0.0:9465", Some(" 0.0.0.0:9465"))).is_ok());
        assert!(Plan::from_config(&config("[::1]:0", None)).is_ok());
    }

    #[test]
    fn a_plain_password_in_the_config_is_refused() {
        let mut c = config("127.0.0.1:0", None);
        c.operators[0].password_hash = "hunter2".into();
        assert!(matches!(
            Plan::from_config(&c),
            Err(ConsoleError::Credential { .. })
        ));
    }
}
