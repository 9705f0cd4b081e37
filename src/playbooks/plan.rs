//! Turning a detection into steps: for each matching playbook, each step's condition is
//! evaluated, its parameters rendered and parsed into typed values, and its status decided.
//! Nothing is executed here; the executor that acts on planned steps sits after this.

use rhai::{Dynamic, Engine, Map};
use std::collections::BTreeMap;

use crate::actions::policy::{Target, Verdict, check};
use crate::actions::{ActionRecord, ActionStatus, ParamValue, Policy, Risk};
use crate::detection::{Detection, Entity};
use crate::event::Event;
use crate::rules::{DataSize, RuleLimits, build_engine, describe, event_to_dynamic, fit_limits_to};

use super::{HighRiskApproval, OnFailure, Playbook, PlaybookMode, condition_scope};

/// The planned steps for one detection, and whether a step asked the engine to degrade to
/// manual mode.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PlanOutcome {
    pub actions: Vec<ActionRecord>,
    /// One reason per failed step whose `on_failure` is `degrade`.
    pub degrade: Vec<String>,
}

/// The reason of a step skipped because its `when` gave false.
pub const WHEN_FALSE: &str = "`when` is false";
/// How the reason of a step whose `when` failed (or gave something other than a bool) begins.
pub const WHEN_FAILED: &str = "`when` ";

/// A worker's planner: it owns the sandboxed engine that evaluates `when` conditions.
pub struct Planner {
    engine: Engine,
    deadline: crate::rules::Deadline,
    /// The configured limits, raised by each event's own size before its conditions run.
    limits: RuleLimits,
    /// The executor's target policy: planning asks it too, so what replay and `palisade test`
    /// report is what the executor would do.
    policy: Policy,
}

impl Planner {
    pub fn new(limits: &RuleLimits, intel: &crate::intel::IntelHandle, policy: Policy) -> Planner {
        let (engine, deadline) = build_engine(limits, intel);
        Planner {
            engine,
            deadline,
            limits: limits.clone(),
            policy,
        }
    }

    /// Plans every step of `playbook` for `detection`. With `dry_run`, steps that would act at
    /// once are recorded as `dry_run`; high-risk steps are still queued for approval.
    pub fn plan(
        &mut self,
        playbook: &Playbook,
        event: &Event,
        detection: &Detection,
        dry_run: bool,
        out: &mut PlanOutcome,
    ) {
        let mut values: Option<(Dynamic, Dynamic)> = None;
        {
            let mut halted: Option<String> = None;
            for step in &playbook.steps {
                let mut record = ActionRecord {
                    event_id: event.id.clone(),
                    playbook: playbook.id.clone(),
                    step: step.id.clone(),
                    action: step.action.name,
                    target: String::new(),
                    status: ActionStatus::Skipped,
                    reason: None,
                    risk: step.risk,
                    rule: detection.rule.clone(),
                    params: BTreeMap::new(),
                    on_failure: step.on_failure,
                    notification_limit: playbook.notification_limit,
                };
                if let Some(reason) = &halted {
                    record.reason = Some(reason.clone());
                    out.actions.push(record);
                    continue;
                }
                let decision = self.decide(
                    step,
                    playbook,
                    event,
                    detection,
                    dry_run,
                    &mut values,
                    &mut record,
                );
                record.status = decision.0;
                record.reason = decision.1;
                if matches!(record.status, ActionStatus::Refused | ActionStatus::Failed) {
                    match step.on_failure {
                        OnFailure::Continue => {}
                        OnFailure::Abort => {
                            halted = Some(format!(
                                "step `{}` did not succeed and its on_failure is abort",
                                step.id
                            ));
                        }
                        OnFailure::Degrade => {
                            let reason = format!(
                                "step `{}` of playbook `{}` did not succeed and its on_failure is degrade",
                                step.id, playbook.id
                            );
                            halted = Some(reason.clone());
                            out.degrade.push(reason);
                        }
                    }
                }
                out.actions.push(record);
            }
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; the arguments are the planning context"
    )]
    fn decide(
        &mut self,
        step: &super::Step,
        playbook: &Playbook,
        event: &Event,
        detection: &Detection,
        dry_run: bool,
        values: &mut Option<(Dynamic, Dynamic)>,
        record: &mut ActionRecord,
    ) -> (ActionStatus, Option<String>) {
        // Parameters are rendered first, so even a skipped step shows what it would have acted on.
        let mut refused: Option<String> = None;
        for (param, template) in &step.params {
            match template.render(event, detection) {
                Ok(text) => match param.kind.parse(&text) {
                    Ok(value) => {
                        if param.name == step.action.target {
                            record.target = value.to_string();
                        }
                        record.params.insert(param.name, value);
                    }
                    Err(message) => {
                        refused.get_or_insert(format!("parameter `{}`: {message}", param.name));
                    }
                },
                Err(missing) => {
                    refused.get_or_insert(format!(
                        "parameter `{}`: `{}` has no value for this detection",
                        param.name, missing.0
                    ));
                }
            }
        }
        if let Some(condition) = &step.when {
            let (event_value, detection_value) = match values {
                Some(built) => built,
                None => {
                    let built = (
                        event_to_dynamic(event, &detection.intel),
                        detection_to_dynamic(detection),
                    );
                    // The event's own data never counts against the script size limits.
                    let size = DataSize::of(&built.0).plus(DataSize::of(&built.1));
                    fit_limits_to(&mut self.engine, &self.limits, size);
                    values.insert(built)
                }
            };
            let mut scope = condition_scope(event_value.clone(), detection_value.clone());
            self.deadline.start();
            match self
                .engine
                .eval_ast_with_scope::<Dynamic>(&mut scope, condition)
            {
                Ok(value) => match value.as_bool() {
                    Ok(true) => {}
                    Ok(false) => return (ActionStatus::Skipped, Some(WHEN_FALSE.into())),
                    Err(got) => {
                        return (
                            ActionStatus::Failed,
                            Some(format!(
                                "{WHEN_FAILED}must give true or false, it gave {got}"
                            )),
                        );
                    }
                },
                Err(err) => {
                    return (
                        ActionStatus::Failed,
                        Some(format!("{WHEN_FAILED}failed: {}", describe(&err))),
                    );
                }
            }
        }
        if let Some(reason) = refused {
            return (ActionStatus::Refused, Some(reason));
        }
        // The name the step says the process has, else the one the rule gave its entity; never
        // the live process table, which on replay is not the host the event came from.
        let process_name = match (record.params.get("name"), &detection.entity) {
            (Some(ParamValue::Text(name)), _) => Some(name.as_str()),
            (_, Some(Entity::Process { name, .. })) => name.as_deref(),
            _ => None,
        };
        let warnings: Vec<Option<&str>> = detection
            .intel
            .iter()
            .map(|hit| hit.warning.as_deref())
            .collect();
        let target = Target {
            action: step.action.name,
            params: &record.params,
            process_names: process_name.as_slice(),
            evidence: &warnings,
            approved: false,
        };
        let needs_approval = match check(&self.policy, &target) {
            Verdict::Allowed => None,
            Verdict::NeedsApproval(reason) => Some(reason),
            Verdict::Refused(refusal) => {
                return (ActionStatus::Refused, Some(refusal.to_string()));
            }
        };
        if playbook.mode == PlaybookMode::Shadow {
            return (
                ActionStatus::DryRun,
                Some("playbook is in shadow mode".into()),
            );
        }
        // A block wider than the configured limit waits for a person even where the playbook
        // lets its other high-risk steps act alone.
        if let Some(reason) = needs_approval {
            return (ActionStatus::Queued, Some(reason));
        }
        // Before dry-run: in dry-run a high-risk step still waits for approval, so a team can
        // rehearse the approval flow; the executor records the approved step as `dry_run`.
        if step.risk == Risk::High && playbook.high_risk_approval == HighRiskApproval::Required {
            return (
                ActionStatus::Queued,
                Some("high-risk step waits for approval".into()),
            );
        }
        if dry_run {
            return (ActionStatus::DryRun, Some("actions are in dry-run".into()));
        }
        (ActionStatus::Planned, None)
    }
}

/// The keys of the `detection` map `when` conditions see: a closed set, so validation refuses
/// any other name.
pub const DETECTION_FIELDS: [&str; 9] = [
    "rule", "title", "severity", "stage", "status", "tags", "score", "entity", "intel",
];

/// The keys `detection.entity` may have (which ones are set depends on the kind of entity).
pub const ENTITY_FIELDS: [&str; 4] = ["pid", "name", "address", "user"];

/// The `detection` map `when` conditions see.
pub fn detection_to_dynamic(detection: &Detection) -> Dynamic {
    let mut map = Map::new();
    map.insert("rule".into(), detection.rule.to_string().into());
    map.insert("title".into(), detection.title.clone().into());
    map.insert("severity".into(), detection.severity.as_str().into());
    map.insert("stage".into(), detection.stage.as_str().into());
    map.insert("status".into(), detection.status.as_str().into());
    map.insert(
        "tags".into(),
        Dynamic::from_array(
            detection
                .tags
                .iter()
                .map(|t| Dynamic::from(t.clone()))
                .collect(),
        ),
    );
    map.insert(
        "score".into(),
        detection.score.map_or(Dynamic::UNIT, Dynamic::from_float),
    );
    let entity = match &detection.entity {
        None => Dynamic::UNIT,
        Some(Entity::Process { pid, name }) => {
            let mut e = Map::new();
            e.insert("pid".into(), Dynamic::from_int(i64::from(*pid)));
            e.insert(
                "name".into(),
                name.clone().map_or(Dynamic::UNIT, Dynamic::from),
            );
            Dynamic::from_map(e)
        }
        Some(Entity::Address { ip }) => {
            let mut e = Map::new();
            e.insert("address".into(), ip.to_string().into());
            Dynamic::from_map(e)
        }
        Some(Entity::User { name }) => {
            let mut e = Map::new();
            e.insert("user".into(), name.clone().into());
            Dynamic::from_map(e)
        }
    };
    map.insert("entity".into(), entity);
    map.insert(
        "intel".into(),
        crate::rules::hits_to_dynamic(&detection.intel),
    );
    Dynamic::from_map(map)
}
