//! Step parameters with `{{ ... }}` references to the event, the detection and its entity.
//!
//! References are resolved to typed sources when the playbook loads, so a reference to a field
//! that does not exist is a validation error, and a reference whose type cannot fill the
//! parameter (an `address` filled from `event.name`) is caught before any event arrives.

use crate::detection::{Detection, Entity};
use crate::event::{Event, Field, FieldType};

/// What a reference reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Reference {
    /// A typed event field.
    Event(Field),
    /// A field the event model does not know, read from the event's unknown fields by path.
    EventExtra(Vec<String>),
    DetectionRule,
    DetectionTitle,
    DetectionSeverity,
    DetectionStage,
    DetectionStatus,
    DetectionScore,
    EntityPid,
    EntityName,
    EntityAddress,
    EntityUser,
}

/// A parameter's text that is not a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`{{{{` without a closing `}}}}` in `{0}`")]
    Unclosed(String),
    #[error("`}}}}` without an opening `{{{{` in `{0}`")]
    Unopened(String),
    /// `hint` offers the name meant; `known` says what may be referenced where the
    /// reference went wrong.
    #[error("unknown reference `{reference}`{hint}; {known}")]
    UnknownReference {
        reference: String,
        hint: String,
        known: &'static str,
    },
}

/// The `detection.*` names a reference may use.
const DETECTION_REFERENCES: [&str; 6] = ["rule", "title", "severity", "stage", "status", "score"];
/// The `entity.*` names a reference may use.
const ENTITY_REFERENCES: [&str; 4] = ["pid", "name", "address", "user"];

/// The correction for the first name of `rest`, among `known`.
fn hint(rest: &[&str], known: &[&str]) -> String {
    rest.first()
        .map(|name| crate::diagnostics::did_you_mean(name, known.iter().copied()))
        .unwrap_or_default()
}

impl Reference {
    fn parse(text: &str) -> Result<Reference, TemplateError> {
        let unknown = |hint, known| TemplateError::UnknownReference {
            reference: text.to_string(),
            hint,
            known,
        };
        let mut parts = text.split('.');
        let root = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        match (root, rest.as_slice()) {
            ("event", [name]) => Ok(Field::parse(name)
                .map(Reference::Event)
                .unwrap_or_else(|| Reference::EventExtra(vec![(*name).to_string()]))),
            ("event", path) if !path.is_empty() => Ok(Reference::EventExtra(
                path.iter().map(|p| (*p).to_string()).collect(),
            )),
            ("detection", ["rule"]) => Ok(Reference::DetectionRule),
            ("detection", ["title"]) => Ok(Reference::DetectionTitle),
            ("detection", ["severity"]) => Ok(Reference::DetectionSeverity),
            ("detection", ["stage"]) => Ok(Reference::DetectionStage),
            ("detection", ["status"]) => Ok(Reference::DetectionStatus),
            ("detection", ["score"]) => Ok(Reference::DetectionScore),
            ("detection", rest) => Err(unknown(
                hint(rest, &DETECTION_REFERENCES),
                "detection fields: rule, title, severity, stage, status, score",
            )),
            ("entity", ["pid"]) => Ok(Reference::EntityPid),
            ("entity", ["name"]) => Ok(Reference::EntityName),
            ("entity", ["address"]) => Ok(Reference::EntityAddress),
            ("entity", ["user"]) => Ok(Reference::EntityUser),
            ("entity", rest) => Err(unknown(
                hint(rest, &ENTITY_REFERENCES),
                "entity fields: pid, name, address, user",
            )),
            _ => Err(unknown(
                hint(&[root], &["event", "detection", "entity"]),
                "references start with `event.`, `detection.` or `entity.`",
            )),
        }
    }

    /// The type of value the reference yields, where it is known before any event arrives.
    pub fn field_type(&self) -> Option<FieldType> {
        match self {
            Reference::Event(field) => Some(field.field_type()),
            Reference::EventExtra(_) => None,
            Reference::EntityPid => Some(FieldType::Integer),
            Reference::EntityAddress => Some(FieldType::IpAddress),
            Reference::DetectionScore => None,
            _ => Some(FieldType::Text),
        }
    }

    fn resolve(&self, event: &Event, detection: &Detection) -> Option<String> {
        let entity = detection.entity.as_ref();
        match self {
            Reference::Event(field) => field.text(event).map(|t| t.into_owned()),
            Reference::EventExtra(path) => {
                let mut value = event.extra.get(path.first()?)?;
                for key in &path[1..] {
                    value = value.get(key)?;
                }
                match value {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                }
            }
            Reference::DetectionRule => Some(detection.rule.to_string()),
            Reference::DetectionTitle => Some(detection.title.clone()),
            Reference::DetectionSeverity => Some(detection.severity.as_str().to_string()),
            Reference::DetectionStage => Some(detection.stage.as_str().to_string()),
            Reference::DetectionStatus => Some(detection.status.as_str().to_string()),
            Reference::DetectionScore => detection.score.map(|s| format!("{s:.3}")),
            Reference::EntityPid => match entity {
                Some(Entity::Process { pid, .. }) => Some(pid.to_string()),
                _ => None,
            },
            Reference::EntityName => match entity {
                Some(Entity::Process { name, .. }) => name.clone(),
                _ => None,
            },
            Reference::EntityAddress => match entity {
                Some(Entity::Address { ip }) => Some(ip.to_string()),
                _ => None,
            },
            Reference::EntityUser => match entity {
                Some(Entity::User { name }) => Some(name.clone()),
                _ => None,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Reference { text: String, reference: Reference },
}

/// A parsed parameter value.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// A template that could not render because a referenced value is absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingValue(pub String);

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| TemplateError::Unclosed(text.to_string()))?;
            let inner = after[..close].trim();
            let reference = Reference::parse(inner)?;
            parts.push(Part::Reference {
                text: inner.to_string(),
                reference,
            });
            rest = &after[close + 2..];
        }
        if rest.contains("}}") {
            return Err(TemplateError::Unopened(text.to_string()));
        }
        if !rest.is_empty() || parts.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Each reference with its text as written inside the braces.
    pub fn references(&self) -> impl Iterator<Item = (&str, &Reference)> {
        self.parts.iter().filter_map(|part| match part {
            Part::Reference { text, reference } => Some((text.as_str(), reference)),
            Part::Literal(_) => None,
        })
    }

    /// The literal text, when the template has no references.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Literal(text)] => Some(text),
            _ => None,
        }
    }

    /// The reference, when the template is exactly one reference and nothing else.
    pub fn as_single_reference(&self) -> Option<(&str, &Reference)> {
        match self.parts.as_slice() {
            [Part::Reference { text, reference }] => Some((text, reference)),
            _ => None,
        }
    }

    pub fn render(&self, event: &Event, detection: &Detection) -> Result<String, MissingValue> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Reference { text, reference } => match reference.resolve(event, detection) {
                    Some(value) => out.push_str(&value),
                    None => return Err(MissingValue(text.clone())),
                },
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::{Severity, Stage};
    use crate::event::EventKind;
    use std::sync::Arc;

    fn fixtures() -> (Event, Detection) {
        let mut event = Event::new("e1", EventKind::NetworkConnection, 0);
        event.remote_ip = Some("185.12.33.4".parse().unwrap());
        event.pid = Some(1234);
        event
            .extra
            .insert("sensor".into(), serde_json::json!({"version": "2.1"}));
        let detection = Detection {
            event_id: "e1".into(),
            rule: Arc::from("c2"),
            stage: Stage::Rule,
            severity: Severity::High,
            status: crate::detection::RuleStatus::Stable,
            title: "C2".into(),
            tags: Arc::from(vec![]),
            entity: Some(Entity::Address {
                ip: "185.12.33.4".parse().unwrap(),
            }),
            score: None,
            intel: Vec::new(),
            attribution: None,
        };
        (event, detection)
    }

    #[test]
    fn renders_references_and_literals() {
        let (event, detection) = fixtures();
        let t = Template::parse(
            "block {{ event.remote_ip }} for {{detection.rule}} v{{ event.sensor.version }}",
        )
        .unwrap();
        assert_eq!(
            t.render(&event, &detection).unwrap(),
            "block 185.12.33.4 for c2 v2.1"
        );
        assert_eq!(
            Template::parse("{{ entity.address }}")
                .unwrap()
                .render(&event, &detection)
                .unwrap(),
            "185.12.33.4"
        );
        let missing = Template::parse("{{ event.query_name }}")
            .unwrap()
            .render(&event, &detection);
        assert_eq!(missing, Err(MissingValue("event.query_name".into())));
    }

    #[test]
    fn classifies_templates() {
        assert_eq!(Template::parse("1h").unwrap().as_literal(), Some("1h"));
        assert_eq!(Template::parse("").unwrap().as_literal(), Some(""));
        let single = Template::parse("{{ event.remote_ip }}").unwrap();
        assert_eq!(
            single.as_single_reference().map(|(_, r)| r.field_type()),
            Some(Some(FieldType::IpAddress))
        );
        assert!(
            Template::parse("x {{ event.pid }}")
                .unwrap()
                .as_single_reference()
                .is_none()
        );
    }

    #[test]
    fn bad_templates_are_explained() {
        assert_eq!(
            Template::parse("a }} b").unwrap_err().to_string(),
            "`}}` without an opening `{{` in `a }} b`"
        );
        assert!(
            Template::parse("{{ event.pid")
                .unwrap_err()
                .to_string()
                .contains("closing")
        );
        assert!(
            Template::parse("{{ detection.nope }}")
                .unwrap_err()
                .to_string()
                .contains("detection fields")
        );
        assert!(
            Template::parse("{{ host }}")
                .unwrap_err()
                .to_string()
                .contains("references start with")
        );
    }
}
