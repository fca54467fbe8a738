//! EXPLORE: completeness of the codebase picture and the feature framing.

use omoi_core::SpecPhase;

use super::{Evaluation, Scorer};
use crate::output::ExploreOutput;

/// The discovery categories OmoiOS asks for.
pub(crate) const DISCOVERY_CATEGORIES: &[&str] =
    &["Problem & Value", "Users & Journeys", "Scope & Boundaries", "Technical Context", "Trade-offs & Risks"];

fn normalize(s: &str) -> String {
    s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

fn count_score(n: usize, full: usize) -> f64 {
    match n {
        0 => 0.0,
        n if n >= full => 1.0,
        _ => 0.5,
    }
}

/// Weights: codebase_summary .12, project_type .08, tech_stack .10, structure .10, key_files .15,
/// conventions .10, discovery_questions .15, feature_summary .12, relevant_patterns .04,
/// related_to_feature .04.
pub(crate) fn evaluate(o: &ExploreOutput) -> Evaluation {
    let mut s = Scorer::default();
    let len = o.codebase_summary.trim().chars().count();
    let (score, issue) = match len {
        0 => (0.0, Some("codebase_summary is empty".to_owned())),
        1..=50 => (0.5, Some(format!("codebase_summary is too brief ({len} characters, needs more than 50)"))),
        _ => (1.0, None),
    };
    s.add("codebase_summary", 0.12, score, issue.into_iter().collect());
    s.check("project_type", 0.08, !o.project_type.trim().is_empty(), 0.0, "project_type is empty");
    let n = o.tech_stack.iter().filter(|t| !t.trim().is_empty()).count();
    s.add(
        "tech_stack",
        0.10,
        count_score(n, 2),
        if n < 2 { vec![format!("tech_stack lists {n}, needs 2+")] } else { vec![] },
    );
    let n = o.structure.len();
    s.add(
        "structure",
        0.10,
        count_score(n, 2),
        if n < 2 { vec![format!("structure maps {n} directories, needs 2+")] } else { vec![] },
    );

    let mut issues = Vec::new();
    let mut valid = 0;
    for (i, k) in o.key_files.iter().enumerate() {
        if k.path.trim().is_empty() || k.purpose.trim().is_empty() {
            issues.push(format!("key_files[{i}] ({}) needs both a path and a purpose", k.path));
        } else {
            valid += 1;
        }
    }
    if valid < 3 {
        issues.push(format!("key_files has {valid} complete entries, needs 3+"));
    }
    s.add("key_files", 0.15, (valid as f64 / 3.0).min(1.0), issues);

    let c = &o.conventions;
    let parts = [
        ("naming", !c.naming.trim().is_empty()),
        ("testing", !c.testing.trim().is_empty()),
        ("patterns", !c.patterns.is_empty()),
    ];
    let have = parts.iter().filter(|(_, ok)| *ok).count();
    let missing: Vec<String> =
        parts.iter().filter(|(_, ok)| !ok).map(|(n, _)| format!("conventions.{n} is empty")).collect();
    s.ratio("conventions", 0.10, have, 3, missing);

    let present: Vec<String> = o
        .discovery_questions
        .iter()
        .filter(|q| q.questions.iter().any(|x| !x.trim().is_empty()))
        .map(|q| normalize(&q.category))
        .collect();
    let missing: Vec<&str> =
        DISCOVERY_CATEGORIES.iter().copied().filter(|c| !present.contains(&normalize(c))).collect();
    let issues = if missing.is_empty() {
        Vec::new()
    } else {
        vec![format!("discovery_questions lacks questions for: {}", missing.join(", "))]
    };
    s.ratio(
        "discovery_questions",
        0.15,
        DISCOVERY_CATEGORIES.len() - missing.len(),
        DISCOVERY_CATEGORIES.len(),
        issues,
    );

    let f = &o.feature_summary;
    let parts = [
        ("name", !f.name.trim().is_empty()),
        ("problem_statement", !f.problem_statement.trim().is_empty()),
        ("scope_in", !f.scope_in.is_empty()),
        ("scope_out", !f.scope_out.is_empty()),
    ];
    let have = parts.iter().filter(|(_, ok)| *ok).count();
    let missing = parts.iter().filter(|(_, ok)| !ok).map(|(n, _)| format!("feature_summary.{n} is empty")).collect();
    s.ratio("feature_summary", 0.12, have, 4, missing);
    s.check(
        "relevant_patterns",
        0.04,
        !o.relevant_patterns.is_empty(),
        0.5,
        "relevant_patterns is empty (fine for greenfield work)",
    );
    s.check("related_to_feature", 0.04, !o.related_to_feature.is_empty(), 0.5, "related_to_feature is empty");
    s.finish(SpecPhase::Explore, Vec::new())
}
