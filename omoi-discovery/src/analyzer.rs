//! The discovery analyzer: deterministic patterns over a time window (counts by kind, hotspots
//! by file and component, a kind recurring at least 3 times becomes a pattern with a severity),
//! recommendations as data an integrator can act on, and an optional LLM summary through
//! structured output. [`Analyzer::analyze`] returns the analysis and appends a
//! `discovery.analyzed` event carrying the recommendations.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use omoi_core::{
    Clock, CompletionRequest, Discovery, DiscoveryFilter, DiscoveryKind, DiscoveryStore, Event, EventStore, LlmClient,
    Message, SpecId, StoreError, TaskId, complete_as,
};
use serde::{Deserialize, Serialize};
use tracing::warn;

omoi_core::string_enum! {
    /// How much a pattern matters.
    pub enum Severity: "severity" {
        /// Worth a look.
        Low => "low",
        /// Recurring.
        Medium => "medium",
        /// Recurring often, or a security or diagnostic kind.
        High => "high",
        /// Runaway.
        Critical => "critical",
    }
}

/// Files or components with several discoveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Hotspot {
    /// A file path, or a component (the file's directory).
    pub name: String,
    /// Discoveries naming it.
    pub count: u32,
    /// Their unfinished-or-not branch tasks.
    pub tasks: Vec<TaskId>,
}

/// A kind recurring in the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Pattern {
    /// The kind.
    pub kind: DiscoveryKind,
    /// How many times.
    pub count: u32,
    /// How much it matters.
    pub severity: Severity,
    /// Files its discoveries name.
    pub files: Vec<String>,
}

/// Something an integrator can do about the patterns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Recommendation {
    /// Raise the priority of the tasks working on a hotspot.
    RaisePriority {
        /// The hotspot.
        hotspot: String,
        /// Its tasks.
        tasks: Vec<TaskId>,
    },
    /// Look for the root cause of a recurring kind before more branches pile up.
    InvestigateRootCause {
        /// The kind.
        kind: DiscoveryKind,
        /// How often it recurred.
        count: u32,
        /// How much it matters.
        severity: Severity,
    },
    /// Diagnostics keep firing: pause the spec's workers and have a human review it.
    PauseAndReview {
        /// Diagnostic discoveries in the window.
        diagnostics: u32,
    },
    /// Many branches were refused: the limits are being hit.
    ReviewLimits {
        /// Refused discoveries in the window.
        refused: u32,
    },
}

/// The model's optional summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LlmSummary {
    /// Two or three sentences on what the discoveries say about the work.
    pub summary: String,
    /// 0 (on fire) to 1 (healthy).
    pub health_score: f64,
    /// What is likely to block next.
    pub likely_blockers: Vec<String>,
}

/// What the analyzer found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Analysis {
    /// The spec analysed.
    pub spec_id: SpecId,
    /// Start of the window.
    pub since: DateTime<Utc>,
    /// Discoveries in the window.
    pub total: u32,
    /// Counts per kind.
    pub by_kind: BTreeMap<String, u32>,
    /// Files named by at least two discoveries, most first.
    pub file_hotspots: Vec<Hotspot>,
    /// Directories named by at least two discoveries, most first.
    pub component_hotspots: Vec<Hotspot>,
    /// Kinds recurring at least `min_recurrence` times.
    pub patterns: Vec<Pattern>,
    /// What to do.
    pub recommendations: Vec<Recommendation>,
    /// The model's summary, when a model was given and answered.
    pub summary: Option<LlmSummary>,
}

/// Analyses a spec's discoveries. Build with [`Analyzer::new`].
#[derive(Clone)]
pub struct Analyzer {
    store: Arc<dyn DiscoveryStore>,
    events: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    llm: Option<Arc<dyn LlmClient>>,
    window: Duration,
    min_recurrence: u32,
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer").field("window", &self.window).field("min_recurrence", &self.min_recurrence).finish()
    }
}

fn hotspots(items: BTreeMap<String, (u32, Vec<TaskId>)>) -> Vec<Hotspot> {
    let mut v: Vec<Hotspot> = items
        .into_iter()
        .filter(|(_, (n, _))| *n >= 2)
        .map(|(name, (count, tasks))| Hotspot { name, count, tasks })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    v
}

fn severity(kind: DiscoveryKind, count: u32, min: u32) -> Severity {
    let base = if count >= min * 3 {
        Severity::Critical
    } else if count >= min * 2 {
        Severity::High
    } else {
        Severity::Medium
    };
    let serious = kind.is_diagnostic() || kind == DiscoveryKind::SecurityIssue;
    match (serious, base) {
        (true, Severity::Medium) => Severity::High,
        (true, Severity::High) => Severity::Critical,
        (_, s) => s,
    }
}

/// The deterministic part of the analysis over `discoveries` (no summary).
pub fn analyze_discoveries(
    spec_id: SpecId,
    since: DateTime<Utc>,
    discoveries: &[Discovery],
    min_recurrence: u32,
) -> Analysis {
    let min = min_recurrence.max(1);
    let mut by_kind: BTreeMap<DiscoveryKind, Vec<&Discovery>> = BTreeMap::new();
    let mut files: BTreeMap<String, (u32, Vec<TaskId>)> = BTreeMap::new();
    let mut components: BTreeMap<String, (u32, Vec<TaskId>)> = BTreeMap::new();
    for d in discoveries {
        by_kind.entry(d.kind).or_default().push(d);
        let mut dirs: Vec<String> = Vec::new();
        for f in &d.evidence.files {
            let e = files.entry(f.clone()).or_default();
            e.0 += 1;
            e.1.extend(d.spawned.iter().copied());
            let dir = f.rsplit_once('/').map_or(".", |(dir, _)| dir).to_owned();
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        for dir in dirs {
            let e = components.entry(dir).or_default();
            e.0 += 1;
            e.1.extend(d.spawned.iter().copied());
        }
    }
    let patterns: Vec<Pattern> = by_kind
        .iter()
        .filter(|(_, ds)| ds.len() as u32 >= min)
        .map(|(kind, ds)| {
            let mut fs: Vec<String> = ds.iter().flat_map(|d| d.evidence.files.iter().cloned()).collect();
            fs.sort();
            fs.dedup();
            Pattern { kind: *kind, count: ds.len() as u32, severity: severity(*kind, ds.len() as u32, min), files: fs }
        })
        .collect();
    let file_hotspots = hotspots(files);
    let component_hotspots = hotspots(components);
    let mut recommendations: Vec<Recommendation> = file_hotspots
        .iter()
        .filter(|h| !h.tasks.is_empty())
        .map(|h| Recommendation::RaisePriority { hotspot: h.name.clone(), tasks: h.tasks.clone() })
        .collect();
    recommendations.extend(patterns.iter().map(|p| Recommendation::InvestigateRootCause {
        kind: p.kind,
        count: p.count,
        severity: p.severity,
    }));
    let diagnostics = discoveries.iter().filter(|d| d.kind.is_diagnostic()).count() as u32;
    if diagnostics >= min {
        recommendations.push(Recommendation::PauseAndReview { diagnostics });
    }
    let refused = discoveries.iter().filter(|d| d.status == omoi_core::DiscoveryStatus::Refused).count() as u32;
    if refused >= min {
        recommendations.push(Recommendation::ReviewLimits { refused });
    }
    Analysis {
        spec_id,
        since,
        total: discoveries.len() as u32,
        by_kind: by_kind.iter().map(|(k, v)| (k.to_string(), v.len() as u32)).collect(),
        file_hotspots,
        component_hotspots,
        patterns,
        recommendations,
        summary: None,
    }
}

impl Analyzer {
    /// An analyzer over the last 24 hours (OmoiOS's window), a kind recurring 3 times being a
    /// pattern, without a model.
    pub fn new(store: Arc<dyn DiscoveryStore>, events: Arc<dyn EventStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, events, clock, llm: None, window: Duration::from_secs(24 * 3600), min_recurrence: 3 }
    }

    /// Asks `llm` for a summary too (structured output).
    pub fn with_llm(mut self, llm: Arc<dyn LlmClient>) -> Self {
        self.llm = Some(llm);
        self
    }

    /// The time window.
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Occurrences of a kind that make a pattern (at least 1).
    pub fn with_min_recurrence(mut self, n: u32) -> Self {
        self.min_recurrence = n.max(1);
        self
    }

    /// Analyses `spec`'s discoveries of the window and appends `discovery.analyzed`. A model
    /// failure leaves `summary` empty (logged), never the analysis.
    pub async fn analyze(&self, spec: SpecId) -> Result<Analysis, StoreError> {
        let now = self.clock.now();
        let since = chrono::Duration::from_std(self.window)
            .ok()
            .and_then(|w| now.checked_sub_signed(w))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let filter = DiscoveryFilter { spec_id: Some(spec), since: Some(since), ..DiscoveryFilter::default() };
        let discoveries = self.store.list_discoveries(&filter).await?;
        let mut analysis = analyze_discoveries(spec, since, &discoveries, self.min_recurrence);
        if let (Some(llm), true) = (&self.llm, !discoveries.is_empty()) {
            analysis.summary = self.summarize(llm.as_ref(), &analysis, &discoveries).await;
        }
        let recommendations = serde_json::to_value(&analysis.recommendations)
            .map_err(|e| StoreError::InvalidInput(format!("recommendations: {e}")))?;
        self.events
            .append_events(vec![Event::DiscoveryAnalyzed {
                spec_id: spec,
                discoveries: analysis.total,
                recommendations,
            }])
            .await?;
        Ok(analysis)
    }

    async fn summarize(&self, llm: &dyn LlmClient, a: &Analysis, ds: &[Discovery]) -> Option<LlmSummary> {
        let lines: Vec<String> =
            ds.iter().rev().take(50).map(|d| format!("- [{}] {} ({})", d.kind, d.title, d.status)).collect();
        let prompt = format!(
            "These discoveries were reported while agents worked on one spec. Patterns found: {}.\n{}\n\nSummarize \
             what they say about the work, score its health from 0 to 1, and name likely blockers.",
            serde_json::to_string(&a.patterns).unwrap_or_default(),
            lines.join("\n")
        );
        let request = CompletionRequest {
            system: Some("You analyse software-delivery discoveries. Answer with the requested JSON only.".into()),
            messages: vec![Message::user(prompt)],
            tools: Vec::new(),
            output: None,
            max_tokens: 1024,
            temperature: None,
            labels: Default::default(),
        };
        match complete_as::<LlmSummary>(llm, request, "discovery_summary").await {
            Ok((s, _)) if (0.0..=1.0).contains(&s.health_score) => Some(s),
            Ok((s, _)) => {
                warn!(score = s.health_score, "discovery summary ignored: health_score outside 0..=1");
                None
            }
            Err((e, _)) => {
                warn!(error = %e, "discovery summary failed; the analysis has none");
                None
            }
        }
    }
}
