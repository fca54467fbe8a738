//! The context a task starts with: the spec requirements and design it traces to, revision
//! feedback, and the most relevant memories within a token budget.

use omoi_core::memory::{Citation, rerank_score};
use omoi_core::{MemoryId, MemoryKind, Spec, SpecPhase, TaskDefinition, Ticket};
use omoi_spec::output::PhaseOutput;
use serde::Serialize;
use serde_json::Value;

/// Characters of the design overview put into a context at most.
const DESIGN_CHARS: usize = 2000;

/// A memory put into a context, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncludedMemory {
    /// The memory.
    pub id: MemoryId,
    /// Its kind.
    pub kind: MemoryKind,
    /// Its text.
    pub text: String,
    /// What it cites.
    pub citations: Vec<Citation>,
    /// Cosine similarity to the task.
    pub similarity: f64,
    /// Its re-rank score (similarity, recency, kind; lowered when stale).
    pub score: f64,
    /// Whether the code it cites changed since it was written.
    pub stale: bool,
}

/// What a task's context holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TaskContext {
    /// Ids of the spec requirements the task traces to (through its ticket) that were found.
    pub requirements: Vec<String>,
    /// Whether the spec's design overview was included.
    pub design: bool,
    /// Revision feedback included.
    pub feedback: Vec<String>,
    /// Memories included, in the order shown (error fixes first, then by score).
    pub memories: Vec<IncludedMemory>,
    /// Memories that ranked in the top k but did not fit the token budget.
    pub left_out: Vec<MemoryId>,
    /// Estimated tokens of the memories included.
    pub memory_tokens: usize,
    /// The text for the prompt (empty when there is nothing to add).
    pub text: String,
}

/// Tokens of `text`, estimated at four characters each.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// Revision feedback in a task's input: `revision_feedback` or `feedback`, a string or a list of
/// strings.
pub(crate) fn feedback(def: &TaskDefinition) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["revision_feedback", "feedback"] {
        match def.input.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => out.push(s.trim().to_owned()),
            Some(Value::Array(items)) => out.extend(
                items.iter().filter_map(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(String::from),
            ),
            _ => {}
        }
    }
    out
}

/// The spec section: the ticket's requirements (text and acceptance criteria) and the design
/// overview with its components. Returns the section and the requirement ids found.
pub(crate) fn spec_section(spec: &Spec, ticket: Option<&Ticket>) -> (String, Vec<String>, bool) {
    let output = |phase| spec.checkpoints.get(&phase).and_then(|c| PhaseOutput::parse(phase, &c.output).ok());
    let mut s = String::new();
    let mut found = Vec::new();
    if let (Some(PhaseOutput::Requirements(reqs)), Some(ticket)) = (output(SpecPhase::Requirements), ticket) {
        for r in reqs.requirements.iter().filter(|r| ticket.requirements.contains(&r.id)) {
            if found.is_empty() {
                s.push_str("\n## Requirements this task traces to\n");
            }
            s.push_str(&format!("- {} {}: {}\n", r.id, r.title, r.text));
            for c in &r.acceptance_criteria {
                s.push_str(&format!("  - {c}\n"));
            }
            found.push(r.id.clone());
        }
    }
    let mut design = false;
    if let Some(PhaseOutput::Design(d)) = output(SpecPhase::Design) {
        let mut text = d.architecture_overview.trim().to_owned();
        for c in &d.components {
            let path = if c.file_path.is_empty() { String::new() } else { format!(" ({})", c.file_path) };
            text.push_str(&format!("\n- {}{path}: {}", c.name, c.responsibility));
        }
        if !text.trim().is_empty() {
            s.push_str("\n## Design\n");
            s.push_str(&clip(&text, DESIGN_CHARS));
            s.push('\n');
            design = true;
        }
    }
    (s, found, design)
}

fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_owned();
    }
    let cut = s.char_indices().take_while(|(i, _)| *i < n).last().map_or(0, |(i, _)| i);
    format!("{}…", &s[..cut])
}

/// A candidate memory, scored.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub(crate) memory: IncludedMemory,
    pub(crate) age: chrono::TimeDelta,
}

/// Ranks `candidates` by [`rerank_score`], keeps `top_k`, then fills `budget` tokens in rank
/// order (a memory that does not fit is left out, a smaller later one may still fit). Returns
/// (included in display order: error fixes first, then by score; left out).
pub(crate) fn select(
    mut candidates: Vec<Candidate>,
    weights: &omoi_core::memory::RerankWeights,
    top_k: usize,
    budget: usize,
) -> (Vec<IncludedMemory>, Vec<MemoryId>, usize) {
    for c in &mut candidates {
        let m = &mut c.memory;
        m.score = rerank_score(weights, m.similarity, c.age, m.kind, m.stale);
    }
    candidates.sort_by(|a, b| b.memory.score.total_cmp(&a.memory.score).then_with(|| a.memory.id.cmp(&b.memory.id)));
    candidates.truncate(top_k);
    let (mut kept, mut left_out, mut used) = (Vec::new(), Vec::new(), 0);
    for c in candidates {
        let tokens = estimate_tokens(&render_memory(&c.memory));
        if used + tokens <= budget {
            used += tokens;
            kept.push(c.memory);
        } else {
            left_out.push(c.memory.id);
        }
    }
    // Stable: error fixes first, each group still by score.
    kept.sort_by_key(|m| m.kind != MemoryKind::ErrorFix);
    (kept, left_out, used)
}

/// One memory as the prompt shows it.
pub(crate) fn render_memory(m: &IncludedMemory) -> String {
    let mut s = format!("- [{}] {}", m.kind, m.text.trim());
    if !m.citations.is_empty() {
        let cites: Vec<String> =
            m.citations.iter().map(|c| format!("{}:{}-{}", c.path, c.start_line, c.end_line)).collect();
        s.push_str(&format!(" (cites {})", cites.join(", ")));
    }
    if m.stale {
        s.push_str(" [STALE: the cited code changed since; verify before relying on it]");
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use omoi_core::memory::RerankWeights;

    fn candidate(kind: MemoryKind, similarity: f64, hours: i64, stale: bool, text: &str) -> Candidate {
        Candidate {
            memory: IncludedMemory {
                id: MemoryId::new(),
                kind,
                text: text.into(),
                citations: Vec::new(),
                similarity,
                score: 0.0,
                stale,
            },
            age: chrono::TimeDelta::hours(hours),
        }
    }

    #[test]
    fn the_most_relevant_are_kept_within_the_budget_with_error_fixes_first() {
        let learning = candidate(MemoryKind::Learning, 0.9, 0, false, "use the slug helper");
        let fix = candidate(MemoryKind::ErrorFix, 0.7, 0, false, "pytest needs PYTHONPATH=src");
        let old = candidate(MemoryKind::Decision, 0.4, 24 * 60, false, "chose tabs");
        let stale = candidate(MemoryKind::Learning, 0.9, 0, true, "the router lives in app.py");
        let huge = candidate(MemoryKind::Warning, 0.95, 0, false, &"x".repeat(400));
        let ids = |v: &[IncludedMemory]| v.iter().map(|m| m.id).collect::<Vec<_>>();
        let all = vec![learning.clone(), fix.clone(), old.clone(), stale.clone(), huge.clone()];

        let (kept, left, used) = select(all.clone(), &RerankWeights::default(), 4, 60);
        // Rank: learning (0.89), fix (0.82), huge (0.795), stale (0.445); old is past top 4.
        assert_eq!(ids(&kept), vec![fix.memory.id, learning.memory.id, stale.memory.id]);
        assert_eq!(left, vec![huge.memory.id], "too big for the budget");
        assert!(used <= 60);
        assert!(kept.iter().all(|m| m.score > 0.0));
        assert!(kept[2].score < kept[1].score / 1.9, "stale memories are ranked down");

        let (kept, left, _) = select(all, &RerankWeights::default(), 2, 10_000);
        assert_eq!(ids(&kept), vec![fix.memory.id, learning.memory.id]);
        assert!(left.is_empty());
    }

    #[test]
    fn the_spec_section_holds_the_traced_requirements_and_the_design() {
        use omoi_core::{NewSpec, PhaseCheckpoint, Priority, TicketId, TicketStatus};
        let now = chrono::Utc::now();
        let mut spec = Spec::drafted(NewSpec::new("slugify", "add slugify"), now);
        for (phase, json) in [
            (SpecPhase::Requirements, include_str!("../../../omoi-spec/src/testkit/requirements.json")),
            (SpecPhase::Design, include_str!("../../../omoi-spec/src/testkit/design.json")),
        ] {
            let checkpoint = PhaseCheckpoint {
                phase,
                output: serde_json::from_str(json).unwrap(),
                score: 1.0,
                attempts: 1,
                usage: Default::default(),
                passed_at: now,
                findings: Vec::new(),
            };
            spec.checkpoints.insert(phase, checkpoint);
        }
        let ticket = Ticket {
            id: TicketId::new(),
            spec_id: Some(spec.id),
            local_id: None,
            title: "core".into(),
            description: String::new(),
            priority: Priority::High,
            requirements: vec!["REQ-SLUG-CORE-001".into(), "REQ-UNKNOWN-X-009".into()],
            status: TicketStatus::Backlog,
            blocked: false,
            created_at: now,
        };
        let (text, found, design) = spec_section(&spec, Some(&ticket));
        assert_eq!(found, vec!["REQ-SLUG-CORE-001"]);
        assert!(design);
        assert!(
            text.contains("## Requirements this task traces to\n- REQ-SLUG-CORE-001 Lower-case hyphenated slug: WHEN")
        );
        assert!(text.contains("  - slugify('Hello, World!') == 'hello-world'"), "{text}");
        assert!(!text.contains("REQ-SLUG-CORE-002"), "only the traced requirements");
        assert!(text.contains("## Design\n"));
        let (_, found, _) = spec_section(&spec, None);
        assert!(found.is_empty());
    }

    #[test]
    fn feedback_is_read_from_the_task_input() {
        let def = TaskDefinition {
            input: serde_json::json!({"revision_feedback": ["handle empty strings", " "], "feedback": "add tests"}),
            ..TaskDefinition::default()
        };
        assert_eq!(feedback(&def), vec!["handle empty strings", "add tests"]);
        assert!(feedback(&TaskDefinition::default()).is_empty());
    }
}
