//! MITRE ATT&CK® Enterprise, as plain data: the techniques and tactics a rule's `attack.*` tags
//! may name, shipped in `data/attack/` (with MITRE's terms of use) and built into the binary so
//! `palisade coverage` and `palisade validate --strict` work offline and give the same answer
//! everywhere. `scripts/attack-extract` makes the file from MITRE's STIX data.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// The shipped extract. Its `attack_version` names the ATT&CK release.
const ENTERPRISE: &str = include_str!("../data/attack/enterprise-attack.json");

/// One ATT&CK tactic (a column of the matrix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tactic {
    /// `TA0002`.
    pub id: String,
    /// `execution`, as techniques name their tactics.
    pub shortname: String,
    /// `Execution`.
    pub name: String,
}

/// One technique or sub-technique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Technique {
    /// `T1059` or `T1059.001`.
    pub id: String,
    pub name: String,
    /// Tactic short names, in matrix order.
    pub tactics: Vec<String>,
    pub deprecated: bool,
    /// Revoked techniques were merged into another; a tag naming one is stale.
    pub revoked: bool,
    /// The technique that replaced a revoked one, when the data says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

/// The technique list of one ATT&CK release.
#[derive(Debug, Clone)]
pub struct Catalogue {
    /// The ATT&CK release, e.g. `18.1`.
    pub version: String,
    /// Where the data was extracted from (repository and commit).
    pub source: String,
    /// In matrix order.
    pub tactics: Vec<Tactic>,
    /// In id order.
    pub techniques: Vec<Technique>,
    by_id: HashMap<String, usize>,
}

#[derive(Deserialize)]
struct File {
    attack_version: String,
    source: String,
    tactics: Vec<Tactic>,
    techniques: Vec<Technique>,
}

/// The shipped data does not parse (only a broken build could ship such a file).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the shipped ATT&CK data (data/attack/enterprise-attack.json) is unreadable: {0}")]
pub struct AttackDataError(String);

impl Catalogue {
    /// Reads an extract written by `scripts/attack-extract`.
    pub fn from_json(text: &str) -> Result<Catalogue, AttackDataError> {
        let file: File = serde_json::from_str(text).map_err(|e| AttackDataError(e.to_string()))?;
        let by_id = file
            .techniques
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        Ok(Catalogue {
            version: file.attack_version,
            source: file.source,
            tactics: file.tactics,
            techniques: file.techniques,
            by_id,
        })
    }

    /// ATT&CK Enterprise as shipped, parsed once.
    pub fn enterprise() -> Result<&'static Catalogue, AttackDataError> {
        static PARSED: LazyLock<Result<Catalogue, AttackDataError>> =
            LazyLock::new(|| Catalogue::from_json(ENTERPRISE));
        PARSED.as_ref().map_err(Clone::clone)
    }

    /// The technique with this id (`T1059.001`, any case).
    pub fn technique(&self, id: &str) -> Option<&Technique> {
        self.by_id
            .get(&id.to_ascii_uppercase())
            .and_then(|&i| self.techniques.get(i))
    }

    /// The tactic a tag names: `command_and_control` (Sigma's spelling), `command-and-control`
    /// or its id `ta0011`.
    pub fn tactic(&self, name: &str) -> Option<&Tactic> {
        let name = name.to_ascii_lowercase().replace('_', "-");
        self.tactics
            .iter()
            .find(|t| t.shortname == name || t.id.eq_ignore_ascii_case(&name))
    }
}

/// What an `attack.*` tag names, by its form alone (whether it exists is [`Catalogue`]'s
/// question).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttackTag {
    /// `attack.t1059.001` → `T1059.001`.
    Technique(String),
    /// `attack.g0007` (a group) or `attack.s0002` (software): not in the technique list, so
    /// not checked.
    GroupOrSoftware(String),
    /// Anything else after `attack.`: a tactic name, or a typo.
    Name(String),
}

/// The ATT&CK meaning of a tag, or `None` when it is not an `attack.` tag at all. The prefix is
/// matched case-insensitively, as Sigma tooling does.
pub fn parse_tag(tag: &str) -> Option<AttackTag> {
    let prefix = tag.get(..7)?;
    if !prefix.eq_ignore_ascii_case("attack.") {
        return None;
    }
    let rest = tag.get(7..)?;
    let lower = rest.to_ascii_lowercase();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(number) = lower.strip_prefix('t') {
        let (main, sub) = match number.split_once('.') {
            Some((main, sub)) => (main, Some(sub)),
            None => (number, None),
        };
        if digits(main, 4) && sub.is_none_or(|s| digits(s, 3)) {
            return Some(AttackTag::Technique(lower.to_ascii_uppercase()));
        }
    }
    if let Some(number) = lower.strip_prefix('g').or_else(|| lower.strip_prefix('s'))
        && digits(number, 4)
    {
        return Some(AttackTag::GroupOrSoftware(lower.to_ascii_uppercase()));
    }
    Some(AttackTag::Name(lower))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalogue_reads_and_knows_current_revoked_and_sub_techniques() {
        let catalogue = Catalogue::enterprise().expect("the shipped data reads");
        assert_eq!(catalogue.version, "18.1");
        assert!(
            catalogue.techniques.len() > 600,
            "{}",
            catalogue.techniques.len()
        );
        assert_eq!(catalogue.tactics.len(), 14);
        let powershell = catalogue.technique("t1059.001").map(|t| t.name.as_str());
        assert_eq!(powershell, Some("PowerShell"));
        // T1086 (PowerShell) was folded into T1059.001.
        let old = catalogue.technique("T1086");
        assert!(old.is_some_and(|t| t.revoked), "{old:?}");
        assert_eq!(old.and_then(|t| t.revoked_by.as_deref()), Some("T1059.001"));
        assert!(catalogue.technique("T9999.999").is_none());
        assert_eq!(
            catalogue
                .tactic("command_and_control")
                .map(|t| t.id.as_str()),
            Some("TA0011")
        );
    }

    #[test]
    fn tags_are_read_by_form() {
        assert_eq!(
            parse_tag("attack.t1059.001"),
            Some(AttackTag::Technique("T1059.001".into()))
        );
        assert_eq!(
            parse_tag("ATTACK.T1105"),
            Some(AttackTag::Technique("T1105".into()))
        );
        assert_eq!(
            parse_tag("attack.g0007"),
            Some(AttackTag::GroupOrSoftware("G0007".into()))
        );
        assert_eq!(
            parse_tag("attack.t10590"),
            Some(AttackTag::Name("t10590".into()))
        );
        assert_eq!(
            parse_tag("attack.execution"),
            Some(AttackTag::Name("execution".into()))
        );
        assert_eq!(parse_tag("intel"), None);
        assert_eq!(parse_tag("cve.2021-44228"), None);
    }
}
