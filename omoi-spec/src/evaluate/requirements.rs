//! REQUIREMENTS: structure, normative language, EARS form, acceptance criteria, ids.

use std::collections::{BTreeMap, HashSet};

use omoi_core::SpecPhase;
use omoi_core::ears::EarsRequirement;

use super::{Evaluation, Scorer, is_requirement_id, plural};
use crate::output::RequirementsOutput;

/// Words that make a requirement untestable.
const VAGUE: &[&str] =
    &["etc", "and/or", "as appropriate", "user-friendly", "user friendly", "easy to", "as needed", "tbd"];

fn has_modal(text: &str) -> bool {
    text.split(|c: char| !c.is_alphanumeric())
        .any(|w| ["shall", "should", "may", "must"].contains(&w.to_ascii_lowercase().as_str()))
}

/// Weights: feature_name .05, structure .20, normative_language .20, ears_format .15,
/// acceptance_criteria .20, id_format .05, assumptions .05, out_of_scope .05, traceability .05.
pub(crate) fn evaluate(o: &RequirementsOutput) -> Evaluation {
    let mut s = Scorer::default();
    let mut blocking = Vec::new();
    if o.requirements.is_empty() {
        blocking.push("requirements is empty".to_owned());
    }
    s.check("feature_name", 0.05, !o.feature_name.trim().is_empty(), 0.5, "feature_name is empty");

    let known: HashSet<&str> = o.requirements.iter().map(|r| r.id.as_str()).collect();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &o.requirements {
        *seen.entry(r.id.as_str()).or_default() += 1;
    }
    for (id, n) in seen.iter().filter(|(_, n)| **n > 1) {
        blocking.push(format!("requirement id {id} appears {n} times; ids must be unique"));
    }

    let n = o.requirements.len();
    let (mut structure, mut normative, mut ears, mut criteria, mut ids) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut structure_ok, mut normative_ok, mut ears_points, mut criteria_ok, mut ids_ok) = (0, 0, 0.0, 0, 0);
    for r in &o.requirements {
        let id = &r.id;
        let mut missing: Vec<&str> = Vec::new();
        for (field, value) in [("id", &r.id), ("title", &r.title), ("text", &r.text)] {
            if value.trim().is_empty() {
                missing.push(field);
            }
        }
        let unknown: Vec<&String> = r.dependencies.iter().filter(|d| !known.contains(d.as_str())).collect();
        if missing.is_empty() && unknown.is_empty() {
            structure_ok += 1;
        }
        if !missing.is_empty() {
            structure.push(format!("{id} is missing {}", missing.join(", ")));
        }
        for d in unknown {
            structure.push(format!("{id} depends on unknown requirement {d}"));
        }

        let lower = r.text.to_ascii_lowercase();
        let vague: Vec<&str> = VAGUE.iter().copied().filter(|v| lower.contains(v)).collect();
        if !has_modal(&r.text) {
            normative.push(format!("{id} has no modal verb (SHALL, SHOULD, MAY or MUST)"));
        } else if !vague.is_empty() {
            normative.push(format!("{id} uses vague wording: {}", vague.join(", ")));
        } else {
            normative_ok += 1;
        }

        match EarsRequirement::parse(&r.text) {
            Ok(parsed) if parsed.has_precondition() => ears_points += 1.0,
            Ok(_) => {
                ears_points += 0.5;
                ears.push(format!("{id} is ubiquitous (no WHEN/WHILE/IF/WHERE trigger); half credit"));
            }
            Err(e) => ears.push(format!("{id} is not in EARS form: {e}")),
        }

        let ac = r.acceptance_criteria.iter().filter(|a| !a.trim().is_empty()).count();
        if ac >= 2 {
            criteria_ok += 1;
        } else {
            criteria.push(format!("{id} has {}, needs ≥2", plural(ac, "acceptance criterion", "acceptance criteria")));
        }
        if is_requirement_id(id) {
            ids_ok += 1;
        } else {
            ids.push(format!("{id:?} does not match REQ-<FEATURE>-<CATEGORY>-NNN (2–6 capitals per part, 3 digits)"));
        }
    }
    let ratio = |good: f64| if n == 0 { 0.0 } else { good / n as f64 };
    s.add("structure", 0.20, ratio(structure_ok as f64), structure);
    s.add("normative_language", 0.20, ratio(normative_ok as f64), normative);
    s.add("ears_format", 0.15, ratio(ears_points), ears);
    s.add("acceptance_criteria", 0.20, ratio(criteria_ok as f64), criteria);
    s.add("id_format", 0.05, ratio(ids_ok as f64), ids);
    s.check("assumptions", 0.05, !o.assumptions.is_empty(), 0.5, "no assumptions documented");
    s.check("out_of_scope", 0.05, !o.out_of_scope.is_empty(), 0.5, "out_of_scope is empty");
    let dangling: Vec<String> = o
        .traceability
        .iter()
        .filter(|t| !known.contains(t.requirement_id.as_str()))
        .map(|t| format!("traceability names unknown requirement {}", t.requirement_id))
        .collect();
    if o.traceability.is_empty() {
        s.add("traceability", 0.05, 0.5, vec!["no traceability links to user stories".to_owned()]);
    } else {
        s.ratio("traceability", 0.05, o.traceability.len() - dangling.len(), o.traceability.len(), dangling);
    }
    s.finish(SpecPhase::Requirements, blocking)
}
