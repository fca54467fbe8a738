//! DESIGN: architecture, components, data models, endpoints, testing, errors, security.

use omoi_core::SpecPhase;

use super::{Evaluation, Scorer};
use crate::output::DesignOutput;

fn filled(s: &str) -> bool {
    !s.trim().is_empty()
}

/// Weights: feature_name .05, architecture_overview .15, components .20, data_models .15,
/// api_endpoints .15, testing_strategy .10, error_handling .08, security_considerations .07,
/// integration_points .05. As in OmoiOS, a design without data models or endpoints gets 0.3
/// for each ("not always required, but encouraged").
pub(crate) fn evaluate(o: &DesignOutput) -> Evaluation {
    let mut s = Scorer::default();
    s.check("feature_name", 0.05, filled(&o.feature_name), 0.5, "feature_name is empty");
    let len = o.architecture_overview.trim().chars().count();
    match len {
        0 => s.add("architecture_overview", 0.15, 0.0, vec!["architecture_overview is empty".into()]),
        1..=100 => s.add(
            "architecture_overview",
            0.15,
            0.5,
            vec![format!("architecture_overview is brief ({len} characters, needs more than 100)")],
        ),
        _ => s.add("architecture_overview", 0.15, 1.0, vec![]),
    }
    let mut blocking = Vec::new();
    if o.components.is_empty() {
        s.add("components", 0.20, 0.0, vec!["no components defined".into()]);
        blocking.push("no components defined".to_owned());
    } else {
        let issues: Vec<String> = o
            .components
            .iter()
            .filter(|c| !filled(&c.name) || !filled(&c.responsibility))
            .map(|c| format!("component {:?} needs a name and a responsibility", c.name))
            .collect();
        s.ratio("components", 0.20, o.components.len() - issues.len(), o.components.len(), issues);
    }
    if o.data_models.is_empty() {
        s.add("data_models", 0.15, 0.3, vec!["no data models (fine if nothing is stored)".into()]);
    } else {
        let issues: Vec<String> = o
            .data_models
            .iter()
            .filter(|m| !filled(&m.name) || m.fields.is_empty())
            .map(|m| format!("data model {:?} needs a name and fields", m.name))
            .collect();
        s.ratio("data_models", 0.15, o.data_models.len() - issues.len(), o.data_models.len(), issues);
    }
    if o.api_endpoints.is_empty() {
        s.add("api_endpoints", 0.15, 0.3, vec!["no API endpoints (fine for a library)".into()]);
    } else {
        let issues: Vec<String> = o
            .api_endpoints
            .iter()
            .filter(|e| !filled(&e.method) || !filled(&e.path) || !filled(&e.description))
            .map(|e| format!("endpoint {} {} needs a method, path and description", e.method, e.path))
            .collect();
        s.ratio("api_endpoints", 0.15, o.api_endpoints.len() - issues.len(), o.api_endpoints.len(), issues);
    }
    let t = &o.testing_strategy;
    let parts = [
        ("testing_strategy.unit_tests is empty", !t.unit_tests.is_empty()),
        ("testing_strategy.integration_tests is empty", !t.integration_tests.is_empty()),
    ];
    let have = parts.iter().filter(|(_, ok)| *ok).count();
    s.ratio(
        "testing_strategy",
        0.10,
        have,
        2,
        parts.iter().filter(|(_, ok)| !ok).map(|(m, _)| (*m).to_owned()).collect(),
    );
    s.check("error_handling", 0.08, !o.error_handling.is_empty(), 0.3, "no error handling strategy");
    match o.security_considerations.len() {
        0 => s.add("security_considerations", 0.07, 0.3, vec!["no security considerations".into()]),
        1 => s.add("security_considerations", 0.07, 0.7, vec!["only 1 security consideration, needs 2+".into()]),
        _ => s.add("security_considerations", 0.07, 1.0, vec![]),
    }
    s.check("integration_points", 0.05, !o.integration_points.is_empty(), 0.5, "no integration points");
    s.finish(SpecPhase::Design, blocking)
}
