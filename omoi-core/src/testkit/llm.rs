//! `ScriptedLlm`: an [`LlmClient`] that plays queued responses and records every request.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Usage;
use crate::ports::llm::{CompletionRequest, CompletionResponse, ContentBlock, LlmClient, LlmError, StopReason};
use crate::state::SpecPhase;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// Answer with this response.
    Response(CompletionResponse),
    /// Fail with this error.
    Error(LlmError),
}

/// Routes a request to a named track (see [`ScriptedLlm::with_router`]).
pub type Router = Arc<dyn Fn(&CompletionRequest) -> String + Send + Sync>;

/// A recorded conversation: the responses a model gave, per track, in order. Stored as JSON
/// next to the code that replays it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    /// Responses by track name (`""` is the default track).
    pub tracks: BTreeMap<String, Vec<CompletionResponse>>,
}

/// Plays queued responses, including tool calls, in order; records every request; returns
/// [`LlmError::ScriptExhausted`] (naming the unanswered request) when its script runs out.
///
/// Answers are queued on tracks, so concurrent conversations each get their own script. A
/// request goes to the first track that has been scripted among, in order:
/// `phase:<phase>` (spec phases, see [`push_phase`](Self::push_phase)), `task:<local id>`,
/// `task:<title>` and `task:<task id>` (task agents, see [`push_task`](Self::push_task)), read
/// from the request's [`labels`](crate::ports::llm::labels) — never from prompt text — and
/// else the default track `""`. A retry of a phase or a task therefore takes the next answer of
/// its own track and can never consume another's. A request of a run that has been steered
/// (label [`STEERED`](crate::ports::llm::labels::STEERED)) goes to the `<track>@steered`
/// continuation of its track when one is scripted: a recording holds what the model did once
/// it was steered, wherever in the run the steer arrived. [`with_router`](Self::with_router)
/// replaces the rule.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use omoi_core::{CompletionRequest, LlmClient, LlmError, testkit::ScriptedLlm};
///
/// let llm = ScriptedLlm::new();
/// llm.push_text("hello");
/// llm.push_tool_call("read_file", serde_json::json!({"path": "README.md"}));
/// assert_eq!(llm.complete(&CompletionRequest::new("hi")).await.unwrap().text(), "hello");
/// assert_eq!(llm.complete(&CompletionRequest::new("next")).await.unwrap().tool_calls()[0].name, "read_file");
/// assert!(matches!(llm.complete(&CompletionRequest::new("more")).await, Err(LlmError::ScriptExhausted { served: 2, .. })));
/// assert_eq!(llm.requests().len(), 3);
/// # });
/// ```
pub struct ScriptedLlm {
    model: String,
    tracks: Mutex<BTreeMap<String, VecDeque<Scripted>>>,
    log: Mutex<Vec<(String, CompletionRequest)>>,
    router: Option<Router>,
    served: Mutex<usize>,
    cost_per_token: f64,
}

impl std::fmt::Debug for ScriptedLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedLlm")
            .field("model", &self.model)
            .field("remaining", &self.remaining())
            .field("requests", &self.log.lock().len())
            .finish()
    }
}

impl Default for ScriptedLlm {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptedLlm {
    /// An empty script on the default track.
    pub fn new() -> Self {
        Self {
            model: "scripted".into(),
            tracks: Mutex::new(BTreeMap::new()),
            log: Mutex::new(Vec::new()),
            router: None,
            served: Mutex::new(0),
            cost_per_token: 0.0,
        }
    }

    /// Routes each request to the track `router` names.
    pub fn with_router(mut self, router: impl Fn(&CompletionRequest) -> String + Send + Sync + 'static) -> Self {
        self.router = Some(Arc::new(router));
        self
    }

    /// Charges this many US dollars per token in the reported usage (default 0).
    pub fn with_cost_per_token(mut self, usd: f64) -> Self {
        self.cost_per_token = usd;
        self
    }

    /// A client replaying `recording`.
    pub fn from_recording(recording: Recording) -> Self {
        let llm = Self::new();
        for (track, responses) in recording.tracks {
            for r in responses {
                llm.push_to(&track, Scripted::Response(r));
            }
        }
        llm
    }

    /// Queues an answer on `track`.
    pub fn push_to(&self, track: &str, item: Scripted) {
        self.tracks.lock().entry(track.to_owned()).or_default().push_back(item);
    }

    /// The track of spec phase `phase`.
    pub fn phase_track(phase: SpecPhase) -> String {
        format!("phase:{phase}")
    }

    /// The track of the task agent whose local id (`TSK-001`), title or id is `key`.
    pub fn task_track(key: &str) -> String {
        format!("task:{key}")
    }

    /// The continuation of `track` once its run has been steered.
    pub fn steered_track(track: &str) -> String {
        format!("{track}@steered")
    }

    /// Queues `output` (serialized as the answer's JSON text) for spec phase `phase`.
    pub fn push_phase(&self, phase: SpecPhase, output: &impl Serialize) {
        let text = serde_json::to_string(output).unwrap_or_default();
        self.push_to(&Self::phase_track(phase), Scripted::Response(text_response(text)));
    }

    /// Queues an answer (or an error) for the task agent named by `key`: its local id, its
    /// title or its id.
    pub fn push_task(&self, key: &str, item: Scripted) {
        self.push_to(&Self::task_track(key), item);
    }

    /// The track a request goes to (see the type's docs).
    fn track_for(&self, request: &CompletionRequest) -> String {
        if let Some(router) = &self.router {
            return router(request);
        }
        use crate::ports::llm::labels;
        let known = self.tracks.lock();
        let label = |k: &str| request.labels.get(k);
        let candidates = [
            label(labels::PHASE).map(|p| format!("phase:{p}")),
            label(labels::TASK_LOCAL_ID).map(|k| Self::task_track(k)),
            label(labels::TASK_TITLE).map(|k| Self::task_track(k)),
            label(labels::TASK).map(|k| Self::task_track(k)),
        ];
        let steered = label(labels::STEERED).is_some();
        candidates
            .into_iter()
            .flatten()
            .flat_map(|t| [steered.then(|| Self::steered_track(&t)), Some(t)])
            .flatten()
            .find(|t| known.contains_key(t))
            .unwrap_or_default()
    }

    /// Queues a text answer on the default track.
    pub fn push_text(&self, text: impl Into<String>) {
        self.push_to("", Scripted::Response(text_response(text)));
    }

    /// Queues a JSON answer (as text) on the default track.
    pub fn push_json(&self, value: &impl Serialize) {
        self.push_text(serde_json::to_string(value).unwrap_or_default());
    }

    /// Queues one tool call on the default track.
    pub fn push_tool_call(&self, name: &str, input: Value) {
        self.push_to("", Scripted::Response(tool_response(&[(name, input)])));
    }

    /// Queues an error on the default track.
    pub fn push_error(&self, error: LlmError) {
        self.push_to("", Scripted::Error(error));
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<CompletionRequest> {
        self.log.lock().iter().map(|(_, r)| r.clone()).collect()
    }

    /// Every request received on `track`, in order.
    pub fn requests_on(&self, track: &str) -> Vec<CompletionRequest> {
        self.log.lock().iter().filter(|(t, _)| t == track).map(|(_, r)| r.clone()).collect()
    }

    /// Answers still queued, over all tracks.
    pub fn remaining(&self) -> usize {
        self.tracks.lock().values().map(VecDeque::len).sum()
    }
}

/// A response with one text block and a token estimate of 1 token per 4 characters.
pub fn text_response(text: impl Into<String>) -> CompletionResponse {
    let text = text.into();
    let output_tokens = (text.len() as u64).div_ceil(4);
    CompletionResponse {
        content: vec![ContentBlock::Text { text }],
        stop_reason: StopReason::EndTurn,
        usage: Usage { input_tokens: 0, output_tokens, cost_usd: 0.0 },
        model: "scripted".into(),
    }
}

/// A response calling each `(tool, input)` in order.
pub fn tool_response(calls: &[(&str, Value)]) -> CompletionResponse {
    let content = calls
        .iter()
        .enumerate()
        .map(|(i, (name, input))| ContentBlock::ToolUse {
            id: format!("call_{i}_{name}"),
            name: (*name).to_owned(),
            input: input.clone(),
        })
        .collect::<Vec<_>>();
    let output_tokens = serde_json::to_string(&content).map(|s| s.len() as u64 / 4).unwrap_or(0);
    CompletionResponse {
        content,
        stop_reason: StopReason::ToolUse,
        usage: Usage { input_tokens: 0, output_tokens, cost_usd: 0.0 },
        model: "scripted".into(),
    }
}

fn request_chars(req: &CompletionRequest) -> usize {
    req.system.as_deref().map_or(0, str::len) + serde_json::to_string(&req.messages).map_or(0, |s| s.len())
}

#[async_trait]
impl LlmClient for ScriptedLlm {
    async fn complete(&self, request: &CompletionRequest) -> Result<CompletionResponse, LlmError> {
        let track = self.track_for(request);
        self.log.lock().push((track.clone(), request.clone()));
        let next = self.tracks.lock().get_mut(&track).and_then(VecDeque::pop_front);
        let mut served = self.served.lock();
        match next {
            Some(Scripted::Response(mut r)) => {
                *served += 1;
                r.usage.input_tokens = (request_chars(request) as u64).div_ceil(4);
                r.usage.cost_usd = r.usage.total_tokens() as f64 * self.cost_per_token;
                Ok(r)
            }
            Some(Scripted::Error(e)) => {
                *served += 1;
                Err(e)
            }
            None => {
                let last = request.messages.last().map(|m| m.text()).unwrap_or_default();
                let preview: String = last.chars().take(120).collect();
                Err(LlmError::ScriptExhausted {
                    served: *served,
                    detail: format!("no response queued on track {track:?} for a request ending with {preview:?}"),
                })
            }
        }
    }

    fn model(&self) -> &str {
        &self.model
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tracks_keep_concurrent_conversations_apart() {
        let llm = ScriptedLlm::new().with_router(|r| r.system.clone().unwrap_or_default());
        llm.push_to("a", Scripted::Response(text_response("for a")));
        llm.push_to("b", Scripted::Response(text_response("for b")));
        let mut rb = CompletionRequest::new("x");
        rb.system = Some("b".into());
        let mut ra = CompletionRequest::new("x");
        ra.system = Some("a".into());
        assert_eq!(llm.complete(&rb).await.unwrap().text(), "for b");
        assert_eq!(llm.complete(&ra).await.unwrap().text(), "for a");
        assert_eq!(llm.requests_on("a").len(), 1);
        let err = llm.complete(&ra).await.unwrap_err();
        assert!(err.to_string().contains("track \"a\""), "{err}");
    }

    #[tokio::test]
    async fn phases_and_tasks_route_by_label_and_a_retry_never_takes_another_tracks_answer() {
        use crate::ports::llm::labels;
        let llm = ScriptedLlm::new();
        llm.push_phase(SpecPhase::Prd, &serde_json::json!({"prd": 1}));
        llm.push_phase(SpecPhase::Requirements, &serde_json::json!({"req": 1}));
        llm.push_task("TSK-002", Scripted::Response(text_response("tsk-2")));
        llm.push_task("write docs", Scripted::Response(text_response("docs")));
        llm.push_text("default");
        let phase = |p: &str| CompletionRequest::new("same prompt").with_label(labels::PHASE, p);
        assert_eq!(llm.complete(&phase("prd")).await.unwrap().text(), r#"{"prd":1}"#);
        // A retry of prd finds its own track empty: it fails, it does not eat requirements'.
        let retry = llm.complete(&phase("prd")).await.unwrap_err();
        assert!(retry.to_string().contains("phase:prd"), "{retry}");
        assert_eq!(llm.complete(&phase("requirements")).await.unwrap().text(), r#"{"req":1}"#);
        let task = CompletionRequest::new("same prompt")
            .with_label(labels::TASK, "0190")
            .with_label(labels::TASK_LOCAL_ID, "TSK-002")
            .with_label(labels::TASK_TITLE, "implement it");
        assert_eq!(llm.complete(&task).await.unwrap().text(), "tsk-2");
        let titled = CompletionRequest::new("x").with_label(labels::TASK_TITLE, "write docs");
        assert_eq!(llm.complete(&titled).await.unwrap().text(), "docs");
        // Unscripted labels fall back to the default track.
        let other = CompletionRequest::new("x").with_label(labels::PHASE, "design");
        assert_eq!(llm.complete(&other).await.unwrap().text(), "default");
        assert_eq!(llm.requests_on("phase:prd").len(), 2);
    }

    #[tokio::test]
    async fn a_steered_run_continues_on_its_tracks_steered_continuation_when_one_is_scripted() {
        use crate::ports::llm::labels;
        let llm = ScriptedLlm::new();
        let track = ScriptedLlm::task_track("loop");
        for _ in 0..3 {
            llm.push_task("loop", Scripted::Response(text_response("again")));
        }
        llm.push_to(&ScriptedLlm::steered_track(&track), Scripted::Response(text_response("changed course")));
        llm.push_task("other", Scripted::Response(text_response("other")));
        let req = |title: &str| CompletionRequest::new("x").with_label(labels::TASK_TITLE, title);
        assert_eq!(llm.complete(&req("loop")).await.unwrap().text(), "again");
        let steered = |title: &str| req(title).with_label(labels::STEERED, "1");
        assert_eq!(llm.complete(&steered("loop")).await.unwrap().text(), "changed course");
        // Without a steered continuation, a steered run stays on its track.
        assert_eq!(llm.complete(&steered("other")).await.unwrap().text(), "other");
        assert_eq!(llm.remaining(), 2, "the loop's unplayed answers are left");
    }

    #[tokio::test]
    async fn usage_estimates_tokens_and_cost() {
        let llm = ScriptedLlm::new().with_cost_per_token(0.001);
        llm.push_text("12345678");
        let r = llm.complete(&CompletionRequest::new("a".repeat(400))).await.unwrap();
        assert_eq!(r.usage.output_tokens, 2);
        assert!(r.usage.input_tokens >= 100);
        assert!((r.usage.cost_usd - r.usage.total_tokens() as f64 * 0.001).abs() < 1e-12);
    }

    #[tokio::test]
    async fn recordings_round_trip_through_json() {
        let mut rec = Recording::default();
        rec.tracks
            .insert(String::new(), vec![text_response("one"), tool_response(&[("finish", serde_json::json!({}))])]);
        let json = serde_json::to_string(&rec).unwrap();
        let llm = ScriptedLlm::from_recording(serde_json::from_str(&json).unwrap());
        assert_eq!(llm.remaining(), 2);
        assert_eq!(llm.complete(&CompletionRequest::new("q")).await.unwrap().text(), "one");
    }
}
