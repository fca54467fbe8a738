//! Compact, line-based summaries of phase outputs for later phases' prompts: the facts a later
//! phase needs (ids, names, texts), not whole JSON dumps.

use std::fmt::Write;

use super::PhaseOutput;

fn list(items: &[String]) -> String {
    items.join("; ")
}

impl PhaseOutput {
    /// The output as a few lines of text, most important first (so trimming the tail loses
    /// the least).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        // `write!` to a String cannot fail.
        match self {
            PhaseOutput::Explore(o) => {
                let _ = writeln!(s, "Codebase: {}", o.codebase_summary);
                let _ = writeln!(s, "Tech stack: {}", list(&o.tech_stack));
                let f = &o.feature_summary;
                let _ = writeln!(s, "Feature: {} — {}", f.name, f.problem_statement);
                let _ = writeln!(s, "In scope: {}", list(&f.scope_in));
                let _ = writeln!(s, "Out of scope: {}", list(&f.scope_out));
                for k in &o.key_files {
                    let _ = writeln!(s, "File {}: {}", k.path, k.purpose);
                }
                if !o.conventions.naming.is_empty() || !o.conventions.testing.is_empty() {
                    let _ =
                        writeln!(s, "Conventions: naming {}; testing {}", o.conventions.naming, o.conventions.testing);
                }
                for q in &o.discovery_questions {
                    let _ = writeln!(s, "Open ({}): {}", q.category, list(&q.questions));
                }
            }
            PhaseOutput::Prd(o) => {
                let _ = writeln!(s, "Overview: {} — {}", o.overview.feature_name, o.overview.solution_summary);
                let _ = writeln!(s, "Goals: {}", list(&o.goals.primary));
                for us in &o.user_stories {
                    let _ = writeln!(
                        s,
                        "{} ({}): as a {}, I want {} so that {}",
                        us.id, us.priority, us.role, us.want, us.benefit
                    );
                }
                let _ = writeln!(s, "Out of scope: {}", list(&o.scope.out_of_scope));
                let _ = writeln!(s, "Constraints: {}", list(&o.constraints.technical));
            }
            PhaseOutput::Requirements(o) => {
                for r in &o.requirements {
                    let _ = writeln!(s, "{} ({}, {}): {}", r.id, r.priority, r.title, r.text);
                }
                let _ = writeln!(s, "Out of scope: {}", list(&o.out_of_scope));
            }
            PhaseOutput::Design(o) => {
                let _ = writeln!(s, "Architecture: {}", o.architecture_overview);
                for c in &o.components {
                    let _ = writeln!(s, "Component {} ({}): {}", c.name, c.file_path, c.responsibility);
                    if !c.interfaces.is_empty() {
                        let _ = writeln!(s, "  interfaces: {}", list(&c.interfaces));
                    }
                }
                for m in &o.data_models {
                    let _ = writeln!(s, "Model {} ({} fields)", m.name, m.fields.len());
                }
                for e in &o.api_endpoints {
                    let _ = writeln!(s, "Endpoint {} {}: {}", e.method, e.path, e.description);
                }
                let _ = writeln!(s, "Unit tests: {}", list(&o.testing_strategy.unit_tests));
            }
            PhaseOutput::Tasks(o) => {
                for t in &o.tickets {
                    let _ =
                        writeln!(s, "{} ({}): {} — requirements {}", t.id, t.priority, t.title, list(&t.requirements));
                }
                for t in &o.tasks {
                    let _ = writeln!(
                        s,
                        "{} [{}] {} ({}h) depends on [{}] addresses [{}]",
                        t.id,
                        t.parent_ticket,
                        t.title,
                        t.estimated_hours,
                        list(&t.dependencies.depends_on),
                        list(&t.requirements_addressed)
                    );
                }
            }
            PhaseOutput::Sync(o) => {
                let _ = writeln!(s, "Ready for execution: {}", o.ready_for_execution);
                let _ = writeln!(s, "Critical path: {}", list(&o.dependency_analysis.critical_path));
                for b in &o.blockers {
                    let _ = writeln!(s, "Blocker: {b}");
                }
            }
        }
        s
    }
}
