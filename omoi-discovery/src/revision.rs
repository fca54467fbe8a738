//! The validation revision loop, as a blocking discovery: a failed validation reports a `bug`
//! discovery whose branch is the revision (an implementation task given the failing output as
//! feedback) followed by a new validation of the revised work. The failed validation's
//! dependents wait for that new validation. Bounded by `max_validation_iterations` (and by the
//! discovery limits); past it the validation fails with the history of every failed run.

use omoi_core::{
    DiscoveryFilter, DiscoveryKind, DiscoveryReport, Evidence, ExecutionMode, NewDiscovery, NewTask, RecordOutcome,
    Refusal, Task, WorkPhase,
};
use serde_json::{Value, json};

use crate::service::{DiscoveryError, DiscoveryService, Reported};

/// Key of a validation task's input holding its iteration (1 for a planned validation).
pub const ITERATION_KEY: &str = "validation_iteration";

/// The iteration of a validation task: 1 unless it is a re-validation.
pub fn iteration(task: &Task) -> u32 {
    task.def.input.get(ITERATION_KEY).and_then(Value::as_u64).map_or(1, |n| n.clamp(1, u64::from(u32::MAX)) as u32)
}

/// A validation whose recorded runs failed.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedValidation {
    /// The validation task (running).
    pub validation: Task,
    /// The failing commands, as run.
    pub commands: Vec<String>,
    /// Their output (the tail is kept as evidence).
    pub output: String,
    /// Files the failure points at, if known.
    pub files: Vec<String>,
}

/// What [`DiscoveryService::revise`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Revision {
    /// A revision and a new validation were branched.
    Branched {
        /// The report (its outcome names the two tasks).
        reported: Reported,
        /// The iteration of the new validation.
        next_iteration: u32,
    },
    /// No more revisions: the validation fails with this history.
    Exhausted {
        /// Why (the iteration limit, or the discovery limit that refused it).
        reason: String,
        /// One line per failed run, oldest first.
        history: Vec<String>,
    },
}

fn first_line(s: &str, max: usize) -> String {
    let line = s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    line.chars().take(max).collect()
}

impl DiscoveryService {
    /// Branches the revision of a failed validation (see the module docs), or says the loop is
    /// exhausted after `max_iterations` validations.
    pub async fn revise(&self, failed: FailedValidation, max_iterations: u32) -> Result<Revision, DiscoveryError> {
        let v = &failed.validation;
        let n = iteration(v);
        // A retried attempt of a validation that already branched its revision reuses it.
        let mine =
            DiscoveryFilter { source_task: Some(v.id), kinds: vec![DiscoveryKind::Bug], ..DiscoveryFilter::default() };
        if let Some(d) = self.store().list_discoveries(&mine).await?.into_iter().find(|d| !d.spawned.is_empty()) {
            let mut local_ids = Vec::with_capacity(d.spawned.len());
            for t in &d.spawned {
                local_ids.push(self.tasks().get_task(*t).await?.links.local_id.unwrap_or_default());
            }
            let outcome = RecordOutcome::Branched {
                discovery: d.id,
                tasks: d.spawned,
                local_ids,
                held: Vec::new(),
                requeued: d.requeue_source,
            };
            return Ok(Revision::Branched {
                reported: Reported { outcome, similarity: None, semantic_skipped: None },
                next_iteration: n + 1,
            });
        }
        let mut history = self.history(v).await?;
        history.push(format!(
            "iteration {n}: `{}` failed: {}",
            failed.commands.join("; "),
            first_line(&failed.output, 200)
        ));
        if n >= max_iterations {
            return Ok(Revision::Exhausted {
                reason: format!("validation failed {n} time(s); max_validation_iterations is {max_iterations}"),
                history,
            });
        }
        let base_title = v.def.title.split(" (re-validation").next().unwrap_or(&v.def.title).to_owned();
        let d = NewDiscovery::new(
            v.id,
            DiscoveryKind::Bug,
            format!("{base_title} failed (iteration {n}, task {})", v.id),
            format!(
                "The validation \"{base_title}\" ran `{}` and it failed. The implementation it checked must be \
                 revised.",
                failed.commands.join("; ")
            ),
            format!("`{}` passes", failed.commands.join("; ")),
        )
        .blocking(true)
        .boosted(true)
        .evidence(Evidence {
            files: failed.files.clone(),
            command: Some(failed.commands.join("; ")),
            output: Some(failed.output.clone()),
        });
        let mut revision = NewTask::new(format!("Revise after {base_title} (iteration {n})"))
            .description(format!(
                "{}\n\nFix the implementation (not the tests, unless a test is wrong) so that the validation \
                 passes. The failing run:\n\n```\n{}\n```",
                v.def.description,
                d.evidence.output.clone().unwrap_or_default()
            ))
            .mode(ExecutionMode::Implementation)
            .phase(WorkPhase::Implementation)
            .depends_on(v.dependencies.iter().copied())
            .input(json!({ "revision_of": v.id, "feedback": d.evidence.output }));
        revision.def.acceptance_criteria = vec![d.done_definition.clone()];
        let mut input = match &v.def.input {
            Value::Object(o) => Value::Object(o.clone()),
            _ => json!({}),
        };
        input[ITERATION_KEY] = json!(n + 1);
        if let Value::Object(o) = &mut input {
            o.remove("triggered_by");
        }
        let mut revalidation = NewTask::new(format!("{base_title} (re-validation {})", n + 1))
            .description(v.def.description.clone())
            .mode(ExecutionMode::Validation)
            .phase(v.def.phase)
            .depends_on([revision.id])
            .input(input);
        revalidation.def.acceptance_criteria = v.def.acceptance_criteria.clone();
        revalidation.def.capabilities = v.def.capabilities.clone();
        revision.def.capabilities = v.def.capabilities.clone();
        // Never a duplicate of another iteration's revision: no semantic dedup here.
        let report = DiscoveryReport {
            discovery: d,
            branch: vec![revision, revalidation],
            limits: self.limits(),
            duplicate_of: None,
        };
        let outcome = self.store().record_discovery(report).await?;
        match outcome {
            RecordOutcome::Refused { refusal: Refusal { reason, detail }, .. } => {
                Ok(Revision::Exhausted { reason: format!("revision refused: {reason}: {detail}"), history })
            }
            outcome => Ok(Revision::Branched {
                reported: Reported { outcome, similarity: None, semantic_skipped: None },
                next_iteration: n + 1,
            }),
        }
    }

    /// One line per earlier failed validation of the chain `v` ends, oldest first.
    async fn history(&self, v: &Task) -> Result<Vec<String>, DiscoveryError> {
        let mut lines = Vec::new();
        let mut task = v.id;
        let mut n = iteration(v);
        while let Some(d) = self.store().discovery_of_task(task).await? {
            n = n.saturating_sub(1);
            lines.push(format!(
                "iteration {n}: `{}` failed: {}",
                d.evidence.command.clone().unwrap_or_default(),
                first_line(d.evidence.output.as_deref().unwrap_or_default(), 200)
            ));
            task = d.source_task;
        }
        lines.reverse();
        Ok(lines)
    }
}
