//! Conformance scenarios for [`InterventionStore`] (with its [`EventStore`]).

use std::sync::Arc;
use std::time::Duration;

use crate::error::StoreError;
use crate::event::{Cursor, Event};
use crate::ids::{AgentId, InterventionId, TaskId};
use crate::intervention::{
    Intervention, InterventionSource, MAX_INTERVENTION_MESSAGE_BYTES, NewIntervention, Severity,
};
use crate::ports::clock::Clock;
use crate::ports::event_store::EventStore;
use crate::ports::intervention_store::InterventionStore;
use crate::testkit::ManualClock;

/// What the intervention-store scenarios run against.
#[derive(Clone)]
pub struct Harness {
    /// The store under test.
    pub interventions: Arc<dyn InterventionStore>,
    /// Its event log.
    pub events: Arc<dyn EventStore>,
    /// The clock the store was built with.
    pub clock: Arc<ManualClock>,
}

impl Harness {
    /// Wraps an adapter implementing both ports.
    pub fn new<S: InterventionStore + EventStore + 'static>(store: Arc<S>, clock: Arc<ManualClock>) -> Self {
        Self { interventions: store.clone(), events: store, clock }
    }

    async fn record(&self, agent: AgentId, task: Option<TaskId>, severity: Severity, message: &str) -> Intervention {
        let new = NewIntervention::new(agent, task, severity, InterventionSource::Guardian, message);
        self.interventions.record_intervention(new).await.expect("record_intervention")
    }

    async fn pending_ids(&self, agent: AgentId, task: TaskId) -> Vec<InterventionId> {
        self.interventions
            .pending_interventions(agent, task)
            .await
            .expect("pending")
            .into_iter()
            .map(|i| i.id)
            .collect()
    }

    async fn intervention_events(&self) -> Vec<Event> {
        let all = self.events.read_events(Cursor::START, 10_000).await.expect("read_events");
        all.into_iter()
            .map(|e| e.event)
            .filter(|e| matches!(e, Event::InterventionRecorded { .. } | Event::InterventionAcknowledged { .. }))
            .collect()
    }
}

/// A recorded intervention round-trips every field, is pending for its agent's run of its task,
/// and its event is in the log.
pub async fn recorded_intervention_is_pending_and_its_event_is_logged(h: Harness) {
    let (agent, task) = (AgentId::new(), TaskId::new());
    let new = NewIntervention::new(agent, Some(task), Severity::Correction, InterventionSource::StuckDetector, "stop")
        .because("same failing command 3 times");
    let got = h.interventions.record_intervention(new.clone()).await.unwrap();
    assert_eq!(got, Intervention::recorded(new.clone(), h.clock.now()));
    assert_eq!(h.interventions.pending_interventions(agent, task).await.unwrap(), vec![got.clone()]);
    assert_eq!(
        h.intervention_events().await,
        vec![Event::InterventionRecorded {
            intervention_id: new.id,
            agent_id: agent,
            task_id: Some(task),
            severity: Severity::Correction,
            source: InterventionSource::StuckDetector,
        }]
    );
}

/// An acknowledgement is recorded once: the first caller gets the intervention, later ones get
/// `None`, it leaves the pending list, and one event is logged. Unknown ids are `NotFound`.
pub async fn acknowledgement_is_recorded_once_and_ends_pending(h: Harness) {
    let (agent, task) = (AgentId::new(), TaskId::new());
    let i = h.record(agent, Some(task), Severity::Guidance, "read the failing test first").await;
    h.clock.advance(Duration::from_secs(7));
    let acked = h.interventions.acknowledge_intervention(i.id).await.unwrap().expect("first acknowledgement");
    assert_eq!(acked.acknowledged_at, Some(h.clock.now()));
    assert_eq!((acked.id, acked.created_at), (i.id, i.created_at));
    assert_eq!(h.interventions.acknowledge_intervention(i.id).await.unwrap(), None, "already acknowledged");
    assert!(h.pending_ids(agent, task).await.is_empty());
    let listed = h.interventions.list_interventions(Some(agent), 10).await.unwrap();
    assert_eq!(listed, vec![acked]);
    let acks = h.intervention_events().await.into_iter().filter(|e| e.name() == "intervention.acknowledged").count();
    assert_eq!(acks, 1);
    let err = h.interventions.acknowledge_intervention(InterventionId::new()).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { kind: "intervention", .. }), "{err}");
}

/// Pending interventions are those for this agent and this task or no task, oldest first.
pub async fn pending_is_scoped_to_the_agent_and_its_task_oldest_first(h: Harness) {
    let (agent, other_agent) = (AgentId::new(), AgentId::new());
    let (task, other_task) = (TaskId::new(), TaskId::new());
    let any = h.record(agent, None, Severity::Guidance, "any run").await;
    h.clock.advance(Duration::from_secs(1));
    let mine = h.record(agent, Some(task), Severity::Correction, "this run").await;
    h.clock.advance(Duration::from_secs(1));
    let elsewhere = h.record(agent, Some(other_task), Severity::Guidance, "other run").await;
    h.record(other_agent, Some(task), Severity::Emergency, "other agent").await;
    assert_eq!(h.pending_ids(agent, task).await, vec![any.id, mine.id]);
    assert_eq!(h.pending_ids(agent, other_task).await, vec![any.id, elsewhere.id]);
    h.interventions.acknowledge_intervention(any.id).await.unwrap().unwrap();
    assert_eq!(h.pending_ids(agent, task).await, vec![mine.id]);
    assert!(h.pending_ids(AgentId::new(), task).await.is_empty());
}

/// Empty or oversized messages and duplicate ids are refused; nothing is recorded for them.
pub async fn invalid_or_duplicate_interventions_are_refused_recording_nothing(h: Harness) {
    let (agent, task) = (AgentId::new(), TaskId::new());
    let ok = NewIntervention::new(agent, Some(task), Severity::Guidance, InterventionSource::Operator, "hint");
    h.interventions.record_intervention(ok.clone()).await.unwrap();
    let err = h.interventions.record_intervention(ok.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { kind: "intervention", .. }), "{err}");
    for bad in [
        NewIntervention { id: InterventionId::new(), message: " ".into(), ..ok.clone() },
        NewIntervention {
            id: InterventionId::new(),
            message: "x".repeat(MAX_INTERVENTION_MESSAGE_BYTES + 1),
            ..ok.clone()
        },
    ] {
        let err = h.interventions.record_intervention(bad).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
    }
    assert_eq!(h.pending_ids(agent, task).await, vec![ok.id]);
    assert_eq!(h.intervention_events().await.len(), 1, "only the first one was recorded");
}

/// Listing is newest first, per agent or for all, up to the limit.
pub async fn list_is_newest_first_per_agent_up_to_the_limit(h: Harness) {
    let (a, b) = (AgentId::new(), AgentId::new());
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(h.record(a, None, Severity::Guidance, &format!("a{n}")).await.id);
        h.clock.advance(Duration::from_secs(1));
    }
    let bi = h.record(b, None, Severity::Guidance, "b").await.id;
    let got: Vec<_> = h.interventions.list_interventions(Some(a), 3).await.unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(got, vec![ids[3], ids[2], ids[1]]);
    let all: Vec<_> = h.interventions.list_interventions(None, 2).await.unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(all, vec![bi, ids[3]]);
}

/// Eight concurrent acknowledgers of one intervention: exactly one applies it.
pub async fn concurrent_acknowledgers_apply_an_intervention_once(h: Harness) {
    let i = h.record(AgentId::new(), None, Severity::Emergency, "stop").await;
    let mut joins = Vec::new();
    for _ in 0..8 {
        let store = h.interventions.clone();
        joins.push(tokio::spawn(async move {
            loop {
                match store.acknowledge_intervention(i.id).await {
                    Ok(got) => return got.is_some(),
                    Err(e) if e.is_retryable() => continue,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    let mut firsts = 0;
    for j in joins {
        firsts += usize::from(j.await.unwrap());
    }
    assert_eq!(firsts, 1, "exactly one acknowledger applies it");
}

/// Runs the whole [`InterventionStore`](crate::InterventionStore) suite against an adapter. The
/// factory yields `Arc<S>` with `S: InterventionStore + EventStore`.
#[macro_export]
macro_rules! intervention_store_suite {
    ($factory:expr) => {
        $crate::__omoi_suite!(
            intervention_store,
            $factory,
            [
                recorded_intervention_is_pending_and_its_event_is_logged,
                acknowledgement_is_recorded_once_and_ends_pending,
                pending_is_scoped_to_the_agent_and_its_task_oldest_first,
                invalid_or_duplicate_interventions_are_refused_recording_nothing,
                list_is_newest_first_per_agent_up_to_the_limit,
                concurrent_acknowledgers_apply_an_intervention_once,
            ]
        );
    };
}
