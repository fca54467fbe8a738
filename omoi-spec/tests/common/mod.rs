//! Shared test setup: fixtures, a phase-routed `ScriptedLlm`, the in-memory store, and a
//! driver that advances the `ManualClock` through retry backoffs.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use omoi_core::config::SpecConfig;
use omoi_core::testkit::{ManualClock, Scripted, ScriptedLlm, text_response};
use omoi_core::{Event, EventStore, SpecPhase, SpecStore, StoredEvent, TaskStore};
use omoi_spec::{SpecRunner, StructuredExecutor};
use omoi_store::InMemoryStore;
use serde_json::Value;

/// A canned phase output by phase name, or a test-only fixture (`requirements_flawed`).
pub fn fixture(name: &str) -> Value {
    if let Some(v) = name.parse::<SpecPhase>().ok().and_then(omoi_spec::testkit::canned_output) {
        return v;
    }
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The phase a request is for (its `omoi.phase` label).
pub fn phase_of(request: &omoi_core::CompletionRequest) -> String {
    request.labels.get(omoi_core::ports::llm::labels::PHASE).cloned().unwrap_or_default()
}

/// A `ScriptedLlm` answering each phase from its own track (routed by the request's
/// `omoi.phase` label, never by prompt text).
pub fn routed_llm() -> Arc<ScriptedLlm> {
    Arc::new(ScriptedLlm::new())
}

pub fn push(llm: &ScriptedLlm, phase: SpecPhase, text: impl Into<String>) {
    llm.push_to(&ScriptedLlm::phase_track(phase), Scripted::Response(text_response(text)));
}

pub fn push_json(llm: &ScriptedLlm, phase: SpecPhase, value: &Value) {
    llm.push_phase(phase, value);
}

/// Queues a passing answer for every model phase.
pub fn push_happy_path(llm: &ScriptedLlm) {
    omoi_spec::testkit::script_spec(llm);
}

/// Every store port the runner and the tests use, on one adapter.
pub trait Stores: SpecStore + EventStore + TaskStore {}
impl<T: SpecStore + EventStore + TaskStore> Stores for T {}

pub struct Harness {
    pub clock: Arc<ManualClock>,
    pub store: Arc<dyn Stores>,
    pub llm: Arc<ScriptedLlm>,
    pub runner: Arc<SpecRunner>,
}

impl Harness {
    pub fn new(config: SpecConfig) -> Self {
        let clock = ManualClock::new();
        let store = Arc::new(InMemoryStore::with_clock(clock.clone()));
        Self::with(clock, store, routed_llm(), config)
    }

    pub fn with(clock: Arc<ManualClock>, store: Arc<dyn Stores>, llm: Arc<ScriptedLlm>, config: SpecConfig) -> Self {
        let runner = Arc::new(SpecRunner::new(
            store.clone() as Arc<dyn SpecStore>,
            store.clone() as Arc<dyn EventStore>,
            clock.clone(),
            Arc::new(StructuredExecutor::new(llm.clone())),
            config,
        ));
        Self { clock, store, llm, runner }
    }

    /// Runs `f(runner)` to completion, advancing the clock one second at a time whenever the
    /// runner sleeps. Returns the result and the clock time that passed.
    pub async fn drive<T, F, Fut>(&self, f: F) -> (T, Duration)
    where
        F: FnOnce(Arc<SpecRunner>) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let start = omoi_core::Clock::now(&*self.clock);
        let handle = tokio::spawn(f(self.runner.clone()));
        while !handle.is_finished() {
            if self.clock.sleepers() > 0 {
                self.clock.advance(Duration::from_secs(1));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let out = handle.await.unwrap();
        let elapsed = (omoi_core::Clock::now(&*self.clock) - start).to_std().unwrap();
        (out, elapsed)
    }

    pub async fn events(&self) -> Vec<StoredEvent> {
        self.store.read_events(omoi_core::Cursor::START, 10_000).await.unwrap()
    }

    /// Event names, with `:phase:attempt` for phase attempt events.
    pub async fn event_trail(&self) -> Vec<String> {
        self.events()
            .await
            .into_iter()
            .map(|e| match &e.event {
                Event::SpecPhaseStarted { phase, attempt, .. }
                | Event::SpecPhaseEvaluated { phase, attempt, .. }
                | Event::SpecPhaseRetry { phase, attempt, .. } => format!("{}:{phase}:{attempt}", e.event.name()),
                Event::SpecPhaseCompleted { phase, .. } | Event::SpecPhaseFailed { phase, .. } => {
                    format!("{}:{phase}", e.event.name())
                }
                Event::SpecStateChanged { to, .. } => format!("{}:{to}", e.event.name()),
                other => other.name().to_owned(),
            })
            .collect()
    }
}
