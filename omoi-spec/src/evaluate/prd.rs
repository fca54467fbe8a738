//! PRD: overview, goals, users, user stories, scope.

use omoi_core::SpecPhase;

use super::{Evaluation, Scorer, is_user_story_id};
use crate::output::PrdOutput;

fn filled(s: &str) -> bool {
    !s.trim().is_empty()
}

/// Weights: overview .15, goals .15, users .10, user_stories_structure .20, user_stories_id .05,
/// user_stories_acceptance .10, scope .10, assumptions .03, constraints .05, risks .05,
/// open_questions .02.
pub(crate) fn evaluate(o: &PrdOutput) -> Evaluation {
    let mut s = Scorer::default();
    let ov = &o.overview;
    let parts = [
        ("overview.feature_name is empty", filled(&ov.feature_name)),
        ("overview.one_liner is empty", filled(&ov.one_liner)),
        ("overview.problem_statement needs 30+ characters", ov.problem_statement.trim().chars().count() >= 30),
        ("overview.solution_summary needs 30+ characters", ov.solution_summary.trim().chars().count() >= 30),
    ];
    let have = parts.iter().filter(|(_, ok)| *ok).count();
    s.ratio("overview", 0.15, have, 4, parts.iter().filter(|(_, ok)| !ok).map(|(m, _)| (*m).to_owned()).collect());

    let mut issues = Vec::new();
    let primary = o.goals.primary.iter().any(|g| filled(g));
    if !primary {
        issues.push("goals.primary is empty".to_owned());
    }
    let metrics = o.goals.success_metrics.iter().filter(|m| filled(&m.metric) && filled(&m.target)).count();
    if metrics == 0 {
        issues.push("goals.success_metrics has no metric with a target".to_owned());
    }
    for m in o.goals.success_metrics.iter().filter(|m| !filled(&m.measurement)) {
        issues.push(format!("success metric {:?} has no measurement method", m.metric));
    }
    let score = (f64::from(u8::from(primary)) + f64::from(u8::from(metrics > 0))) / 2.0;
    s.add("goals", 0.15, score, issues);

    let valid = o.users.primary.iter().filter(|u| filled(&u.role) && filled(&u.description)).count();
    let issues = if o.users.primary.is_empty() {
        vec!["users.primary is empty".to_owned()]
    } else if valid < o.users.primary.len() {
        vec![format!(
            "{} of {} primary users lack a role or description",
            o.users.primary.len() - valid,
            o.users.primary.len()
        )]
    } else {
        Vec::new()
    };
    let score = if o.users.primary.is_empty() { 0.0 } else { valid as f64 / o.users.primary.len() as f64 };
    s.add("users", 0.10, score, issues);

    let n = o.user_stories.len();
    let (mut structure, mut ids, mut acceptance) = (Vec::new(), Vec::new(), Vec::new());
    for us in &o.user_stories {
        let missing: Vec<&str> = [("id", &us.id), ("role", &us.role), ("want", &us.want), ("benefit", &us.benefit)]
            .into_iter()
            .filter(|(_, v)| !filled(v))
            .map(|(k, _)| k)
            .collect();
        if !missing.is_empty() {
            structure.push(format!("user story {} is missing {}", us.id, missing.join(", ")));
        }
        if !is_user_story_id(&us.id) {
            ids.push(format!("user story id {:?} should be US-NNN", us.id));
        }
        if !us.acceptance_criteria.iter().any(|a| filled(a)) {
            acceptance.push(format!("user story {} has no acceptance criteria", us.id));
        }
    }
    if n == 0 {
        s.add("user_stories_structure", 0.20, 0.0, vec!["user_stories is empty".to_owned()]);
        s.add("user_stories_id", 0.05, 0.0, vec!["user_stories is empty".to_owned()]);
        s.add("user_stories_acceptance", 0.10, 0.0, vec!["user_stories is empty".to_owned()]);
    } else {
        s.ratio("user_stories_structure", 0.20, n - structure.len(), n, structure);
        s.ratio("user_stories_id", 0.05, n - ids.len(), n, ids);
        s.ratio("user_stories_acceptance", 0.10, n - acceptance.len(), n, acceptance);
    }

    let parts = [
        ("scope.in_scope is empty", !o.scope.in_scope.is_empty()),
        ("scope.out_of_scope is empty", !o.scope.out_of_scope.is_empty()),
    ];
    let have = parts.iter().filter(|(_, ok)| *ok).count();
    s.ratio("scope", 0.10, have, 2, parts.iter().filter(|(_, ok)| !ok).map(|(m, _)| (*m).to_owned()).collect());
    s.check("assumptions", 0.03, !o.assumptions.is_empty(), 0.5, "no assumptions documented");
    s.check("constraints", 0.05, !o.constraints.technical.is_empty(), 0.5, "constraints.technical is empty");
    if o.risks.is_empty() {
        s.add("risks", 0.05, 0.3, vec!["no risks documented".to_owned()]);
    } else {
        let issues: Vec<String> = o
            .risks
            .iter()
            .filter(|r| !filled(&r.risk) || !filled(&r.mitigation))
            .map(|r| format!("risk {:?} needs a description and a mitigation", r.risk))
            .collect();
        s.ratio("risks", 0.05, o.risks.len() - issues.len(), o.risks.len(), issues);
    }
    s.check("open_questions", 0.02, !o.open_questions.is_empty(), 0.5, "no open questions listed");
    s.finish(SpecPhase::Prd, Vec::new())
}
