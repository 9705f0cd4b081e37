//! `notify.email`: a message to people through an SMTP server, over STARTTLS, implicit TLS or
//! (to this host only, unless the config explicitly allows more) plain SMTP.
//!
//! The server, the sender and the names of the environment variables holding the credentials
//! are configuration (`actions.email`); the recipients, the subject and the body are the step's
//! typed parameters. The subject and the recipients go into headers, so their parameter types
//! refuse any control character when the step is planned (see `ParamType::HeaderLine` and
//! `ParamType::Recipients`): no event value can add a header of its own. The body is text and
//! may hold event values; it goes out inert like every other message.

use std::net::IpAddr;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Action, ActionCall, ActionError, ActionFuture};
use crate::actions::ParamValue;

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// Plain SMTP upgraded with `STARTTLS` before anything is sent; a server that does not offer
    /// it is a failure, never a fallback to plain text (usually port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No encryption: only to a loopback address (a local relay), unless `allow_plain` is set.
    Plain,
}

/// `actions.email` in the config: the SMTP server `notify.email` sends through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct EmailConfig {
    /// `host:port` of the SMTP server (`smtp.example.com:587`). Without it, `notify.email`
    /// steps fail with a message saying so.
    pub server: Option<String>,
    /// `starttls` (default), `tls` or `plain`.
    pub security: Security,
    /// Allow `plain` to a server that is not a loopback address: the message, and any
    /// credentials, cross the network unencrypted.
    pub allow_plain: bool,
    /// The sender's address (`palisade@example.com`), required with `server`.
    pub from: Option<String>,
    /// The name of the environment variable holding the SMTP user name (the value is never
    /// written in a file). Set both this and `password_env`, or neither.
    pub username_env: Option<String>,
    /// The name of the environment variable holding the SMTP password.
    pub password_env: Option<String>,
    /// The longest one SMTP command may wait for the server; an attempt that times out is
    /// retried like any other transient failure. The whole act is also held to the effects
    /// pool's time limit for `notify` (`actions.effects.time_limits`).
    pub timeout: crate::duration::Span,
}

impl Default for EmailConfig {
    fn default() -> EmailConfig {
        EmailConfig {
            server: None,
            security: Security::Starttls,
            allow_plain: false,
            from: None,
            username_env: None,
            password_env: None,
            // Three attempts of 5 s with the waits between them fit in the pool's 20 s.
            timeout: const { crate::duration::Span::secs(5) },
        }
    }
}

/// [`EmailConfig`], checked: what the plugin is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub from: String,
    /// The names of the variables holding the user name and the password.
    pub credentials_env: Option<(String, String)>,
    pub timeout: Duration,
}

/// A problem with `actions.email`: the key (under `actions.email`) and what is wrong.
pub type EmailConfigError = (&'static str, String);

impl EmailConfig {
    /// The checked settings, `None` when no server is configured, or every problem with its key.
    /// Pure: the environment is read when the plugin is built, not here, so `palisade validate`
    /// passes on a machine that does not hold the secrets.
    pub fn settings(&self) -> Result<Option<EmailSettings>, Vec<EmailConfigError>> {
        let mut problems = Vec::new();
        let Some(server) = &self.server else {
            if self.from.is_some() || self.username_env.is_some() || self.password_env.is_some() {
                problems.push((
                    "server",
                    "`actions.email` sets a sender or credentials but no `server`".to_string(),
                ));
                return Err(problems);
            }
            return Ok(None);
        };
        let address = match crate::actions::ParamType::HostPort.parse(server) {
            Ok(ParamValue::HostPort { host, port }) => Some((host, port)),
            _ => {
                problems.push((
                    "server",
                    format!(
                        "`actions.email.server` is `{}`, not host:port",
                        inert(server)
                    ),
                ));
                None
            }
        };
        if let Some((host, _)) = &address
            && self.security == Security::Plain
            && !self.allow_plain
            && !is_loopback_literal(host)
        {
            problems.push((
                "security",
                format!(
                    "`actions.email.security` is `plain` but the server `{}` is not a loopback \
                     address: messages and credentials would cross the network unencrypted \
                     (use `starttls` or `tls`, or set `allow_plain: true`)",
                    inert(host)
                ),
            ));
        }
        let from = match &self.from {
            None => {
                problems.push((
                    "from",
                    "`actions.email.from` is required with `server`".to_string(),
                ));
                None
            }
            Some(from) => match crate::actions::ParamType::Recipients.parse(from) {
                Ok(ParamValue::Recipients(mut one)) if one.len() == 1 => one.pop(),
                _ => {
                    problems.push((
                        "from",
                        format!(
                            "`actions.email.from` is `{}`, not one e-mail address",
                            inert(from)
                        ),
                    ));
                    None
                }
            },
        };
        let credentials_env = match (&self.username_env, &self.password_env) {
            (None, None) => None,
            (Some(user), Some(password)) => {
                for (key, name) in [("username_env", user), ("password_env", password)] {
                    if !is_variable_name(name) {
                        problems.push((
                            key,
                            // The value is not repeated: it may be the secret itself.
                            format!(
                                "`actions.email.{key}` is not the name of an environment \
                                 variable (letters, digits and `_`): it names the variable \
                                 that holds the secret, never the secret itself"
                            ),
                        ));
                    }
                }
                Some((user.clone(), password.clone()))
            }
            (Some(_), None) | (None, Some(_)) => {
                problems.push((
                    if self.username_env.is_none() {
                        "username_env"
                    } else {
                        "password_env"
                    },
                    "`actions.email` needs both `username_env` and `password_env`, or neither"
                        .to_string(),
                ));
                None
            }
        };
        match (address, from) {
            (Some((host, port)), Some(from)) if problems.is_empty() => Ok(Some(EmailSettings {
                host,
                port,
                security: self.security,
                from,
                credentials_env,
                timeout: self.timeout.duration(),
            })),
            _ => Err(problems),
        }
    }
}

fn inert(text: &str) -> String {
    crate::text::inert(text).into_owned()
}

/// Only an address literal counts: a name is resolved when the message is sent, and could then
/// be anything.
fn is_loopback_literal(host: &str) -> bool {
    host.parse::<IpAddr>()
        .is_ok_and(|ip| crate::event::canonical_ip(ip).is_loopback())
}

fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A plugin that could not be built: a credential variable is not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailBuildError {
    #[error(
        "`actions.email.{key}` names the environment variable `{variable}`, which is not set \
         (or not valid UTF-8)"
    )]
    MissingVariable { key: &'static str, variable: String },
    #[error("`actions.email`: {0}")]
    Transport(String),
}

/// Attempts per message, and the wait before each retry (as for webhooks).
const EMAIL_ATTEMPTS: u32 = 3;
const EMAIL_FIRST_WAIT: Duration = Duration::from_millis(500);

pub(super) struct Email {
    /// `None` when `actions.email.server` is not set: every step then fails saying so.
    sender: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
}

impl Email {
    pub(super) fn new(settings: Option<&EmailSettings>) -> Result<Email, EmailBuildError> {
        let Some(settings) = settings else {
            return Ok(Email { sender: None });
        };
        let tls = || {
            TlsParameters::builder(settings.host.clone())
                .build_rustls()
                .map_err(|e| EmailBuildError::Transport(e.to_string()))
        };
        let tls = match settings.security {
            Security::Starttls => Tls::Required(tls()?),
            Security::Tls => Tls::Wrapper(tls()?),
            Security::Plain => Tls::None,
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.clone())
                .port(settings.port)
                .tls(tls)
                .timeout(Some(settings.timeout))
                .hello_name(hello_name());
        if let Some((user, password)) = &settings.credentials_env {
            let read = |key: &'static str, variable: &str| {
                std::env::var(variable).map_err(|_| EmailBuildError::MissingVariable {
                    key,
                    variable: variable.to_string(),
                })
            };
            builder = builder.credentials(Credentials::new(
                read("username_env", user)?,
                read("password_env", password)?,
            ));
        }
        let from: lettre::Address = settings
            .from
            .parse()
            .map_err(|e| EmailBuildError::Transport(format!("`from`: {e}")))?;
        Ok(Email {
            sender: Some((builder.build(), Mailbox::new(None, from))),
        })
    }
}

/// The name given in `EHLO`: this host's name when it is a plain DNS name, else `localhost`
/// (what lettre would say without one).
fn hello_name() -> ClientId {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    if !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
    {
        ClientId::Domain(host.to_string())
    } else {
        ClientId::default()
    }
}

/// The message: the step's subject and recipients (checked when the step was planned), a plain
/// text body that is the step's message, inert, followed by where it came from.
fn message(call: &ActionCall, from: &Mailbox) -> Result<Message, ActionError> {
    let Some(ParamValue::Recipients(recipients)) = call.params.get("to") else {
        return Err(ActionError::new("no recipients"));
    };
    let Some(ParamValue::Text(subject)) = call.params.get("subject") else {
        return Err(ActionError::new("no subject"));
    };
    // Checked again where it is used: a header never holds a control character, whatever
    // path the value took (a stored approval, a summary).
    if subject.chars().any(crate::text::is_active) {
        return Err(ActionError::new(
            "the subject holds a control character, which could inject a mail header",
        ));
    }
    let body = call.text("message").unwrap_or_default();
    let body = crate::text::inert_keeping_lines(&body);
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(subject.as_str())
        .header(ContentType::TEXT_PLAIN);
    for recipient in recipients {
        let address: lettre::Address = recipient
            .parse()
            .map_err(|e| ActionError::new(format!("recipient `{recipient}`: {e}")))?;
        builder = builder.to(Mailbox::new(None, address));
    }
    let body = format!(
        "{body}\n\n-- \nrule: {}\nplaybook: {}\nevent: {}\nsent by palisade\n",
        crate::text::inert(&call.rule),
        crate::text::inert(&call.playbook),
        crate::text::inert(&call.event_id),
    );
    builder
        .body(body)
        .map_err(|e| ActionError::new(format!("cannot build the message: {e}")))
}

impl Action for Email {
    fn name(&self) -> &'static str {
        "notify.email"
    }

    fn execute<'a>(&'a self, call: &'a ActionCall) -> ActionFuture<'a> {
        Box::pin(async move {
            let Some((transport, from)) = &self.sender else {
                return Err(ActionError::new(
                    "no SMTP server is configured: set `actions.email.server` and `from`",
                ));
            };
            let message = message(call, from)?;
            let mut wait = EMAIL_FIRST_WAIT;
            let mut last = String::new();
            for attempt in 1..=EMAIL_ATTEMPTS {
                match transport.send(message.clone()).await {
                    Ok(response) => {
                        return Ok(format!(
                            "accepted by the SMTP server ({}, attempt {attempt})",
                            response.code()
                        ));
                    }
                    // A permanent refusal (5xx: a recipient or sender the server will not
                    // take) is the same on the next attempt.
                    Err(err) if err.is_permanent() => {
                        return Err(ActionError::new(format!(
                            "the SMTP server refused the message: {}",
                            crate::text::inert(&err.to_string())
                        )));
                    }
                    // A server that does not offer STARTTLS (a client-side refusal) or TLS
                    // parameters that do not work will be the same on the next attempt too.
                    Err(err) if err.is_tls() || err.is_client() => {
                        return Err(ActionError::new(format!(
                            "not sent: {}",
                            crate::text::inert(&err.to_string())
                        )));
                    }
                    Err(err) => last = crate::text::inert(&err.to_string()).into_owned(),
                }
                if attempt < EMAIL_ATTEMPTS {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
            Err(ActionError::new(format!(
                "gave up after {EMAIL_ATTEMPTS} attempts: {last}"
            )))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> EmailConfig {
        yaml_serde::from_str(yaml).unwrap()
    }

    #[test]
    fn no_server_means_no_email_settings() {
        assert_eq!(EmailConfig::default().settings(), Ok(None));
    }

    #[test]
    fn a_complete_config_is_checked_into_settings() {
        let settings = config(
            "server: smtp.example.com:587\nfrom: palisade@example.com\nusername_env: SMTP_USER\npassword_env: SMTP_PASSWORD\n",
        )
        .settings()
        .unwrap()
        .unwrap();
        assert_eq!(settings.host, "smtp.example.com");
        assert_eq!(settings.port, 587);
        assert_eq!(settings.security, Security::Starttls);
        assert_eq!(
            settings.credentials_env,
            Some(("SMTP_USER".into(), "SMTP_PASSWORD".into()))
        );
    }

    #[test]
    fn plain_smtp_to_another_host_is_refused_unless_allowed() {
        let problems =
            config("server: smtp.example.com:25\nsecurity: plain\nfrom: p@example.com\n")
                .settings()
                .unwrap_err();
        assert_eq!(problems[0].0, "security");
        assert!(
            problems[0].1.contains("not a loopback address"),
            "{problems:?}"
        );
        // A name that may resolve to loopback is not enough: only what is connected to counts.
        assert!(
            config("server: localhost:25\nsecurity: plain\nfrom: p@example.com\n")
                .settings()
                .is_err()
        );
        for allowed in [
            "server: 127.0.0.1:25\nsecurity: plain\nfrom: p@example.com\n",
            "server: '[::1]:25'\nsecurity: plain\nfrom: p@example.com\n",
            "server: smtp.example.com:25\nsecurity: plain\nallow_plain: true\nfrom: p@example.com\n",
        ] {
            assert!(config(allowed).settings().is_ok(), "{allowed}");
        }
    }

    #[test]
    fn a_secret_written_where_a_variable_name_belongs_is_refused_and_not_repeated() {
        let problems = config(
            "server: smtp.example.com:587\nfrom: p@example.com\nusername_env: SMTP_USER\npassword_env: 'hunter2!'\n",
        )
        .settings()
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "password_env");
        assert!(problems[0].1.contains("never the secret itself"));
        assert!(!problems[0].1.contains("hunter2"), "{problems:?}");
        let half =
            config("server: smtp.example.com:587\nfrom: p@example.com\nusername_env: SMTP_USER\n")
                .settings()
                .unwrap_err();
        assert_eq!(half[0].0, "password_env");
    }

    #[test]
    fn a_bad_sender_or_server_is_named() {
        let problems = config("server: 'smtp example:587'\nfrom: 'not an address'\n")
            .settings()
            .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.0).collect();
        assert_eq!(keys, ["server", "from"]);
        let problems = config("server: smtp.example.com:587\n")
            .settings()
            .unwrap_err();
        assert_eq!(problems[0].0, "from");
        let problems = config("from: p@example.com\n").settings().unwrap_err();
        assert_eq!(problems[0].0, "server");
    }

    #[test]
    fn a_missing_credential_variable_fails_the_build_naming_the_variable() {
        let settings = EmailSettings {
            host: "127.0.0.1".into(),
            port: 2525,
            security: Security::Plain,
            from: "p@example.com".into(),
            credentials_env: Some((
                "PALISADE_TEST_UNSET_SMTP_USER".into(),
                "PALISADE_TEST_UNSET_SMTP_PASSWORD".into(),
            )),
            timeout: Duration::from_secs(1),
        };
        let err = Email::new(Some(&settings)).err().unwrap();
        assert!(
            err.to_string().contains("`PALISADE_TEST_UNSET_SMTP_USER`"),
            "{err}"
        );
    }
}
