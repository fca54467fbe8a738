//! `AgentRun`: the loop of model turns and tool calls in a sandbox.
//!
//! Before every model call every [`CallGate`] (budgets) is consulted; between turns the task's
//! mailbox (in-process messages and, when durable, the interventions stored for this agent and
//! task) is read, each intervention acknowledged and its steering injected; every step is
//! recorded as an `agent.step` event; tools outside the [`ToolPolicy`] are refused with an error
//! result the model sees; a tool call identical to the one that just failed is refused the same
//! way (the repetition guard) instead of being run again; the run ends when the model calls
//! `finish`, a budget is exhausted, a monitor stops it, the model stops calling tools, too many
//! tool calls fail in a row, or the caller cancels.

use std::collections::BTreeMap;
use std::time::Duration;

use omoi_core::{
    AgentId, CompletionRequest, ContentBlock, DiscoveryId, Event, EventStore, ExecutionMode, LlmClient, LlmError,
    Message, Role, Sandbox, SandboxError, StoreError, TaskId, ToolCall, Usage,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use super::budget::{BudgetExceeded, CallGate};
use super::discovery::DiscoveryReporter;
use super::guard::RepeatGuard;
use super::mailbox::{Mailboxes, Severity};
use super::policy::{ToolName, ToolPolicy};
use super::tools::{self, FinishArgs, ReportedDiscovery, ToolOutcome, ToolRunner};
use super::verdict::{CommandRun, RunLog, check_validation_finish};

/// Why a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StopCause {
    /// The model called `finish`.
    Finished,
    /// A budget was exhausted before a model call.
    BudgetExceeded(BudgetExceeded),
    /// A monitor sent an emergency stop.
    Stopped {
        /// Who stopped it.
        by: String,
        /// Why.
        message: String,
    },
    /// The model ended its turn twice without calling a tool.
    ModelStopped,
    /// This many tool calls failed in a row.
    TooManyErrors(u32),
    /// The caller cancelled the run (shutdown, lost lease).
    Cancelled,
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentOutcome {
    /// Why it ended.
    pub stop: StopCause,
    /// The `finish` arguments, when it finished.
    pub finish: Option<FinishArgs>,
    /// Discoveries reported during the run, with what the model was told about each.
    pub discoveries: Vec<(ReportedDiscovery, String)>,
    /// Every `run_command` run, as the tool recorded it.
    pub runs: Vec<CommandRun>,
    /// Model usage.
    pub usage: Usage,
    /// Model calls made.
    pub turns: u32,
}

/// A failure that ends a run abnormally (the model, the sandbox or the event log failed).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The model call failed (after the client's own retries).
    #[error("model call failed: {0}")]
    Llm(#[from] LlmError),
    /// The sandbox failed.
    #[error("sandbox failed: {0}")]
    Sandbox(#[from] SandboxError),
    /// Recording the trajectory failed.
    #[error("event log failed: {0}")]
    Store(#[from] StoreError),
}

impl AgentError {
    /// Whether retrying the whole run later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            AgentError::Llm(e) => e.is_retryable(),
            AgentError::Sandbox(e) => e.is_retryable(),
            AgentError::Store(e) => e.is_retryable(),
        }
    }
}

/// Checks a `finish` call before the run accepts it; an `Err` goes back to the model.
pub type FinishCheck<'a> = &'a (dyn Fn(&FinishArgs) -> Result<(), String> + Send + Sync);

/// One agent run. Build it with struct syntax; every field is public.
pub struct AgentRun<'a> {
    /// The model.
    pub llm: &'a dyn LlmClient,
    /// Where tools run.
    pub sandbox: &'a dyn Sandbox,
    /// Where the trajectory is recorded.
    pub events: &'a dyn EventStore,
    /// Consulted before, and told after, every model call.
    pub gates: Vec<&'a dyn CallGate>,
    /// Which tools may be used.
    pub policy: ToolPolicy,
    /// Steering messages, read between turns.
    pub mailboxes: Option<&'a Mailboxes>,
    /// The task being worked on (for events and the mailbox).
    pub task_id: TaskId,
    /// Labels put on every model request besides `omoi.task` (see
    /// [`omoi_core::ports::llm::labels`]).
    pub labels: BTreeMap<String, String>,
    /// The agent doing it.
    pub agent_id: AgentId,
    /// System prompt.
    pub system: String,
    /// The first user message.
    pub prompt: String,
    /// JSON schema of `finish.output` (a spec phase's typed output), if any.
    pub finish_output: Option<Value>,
    /// Validates `finish` before accepting it.
    pub finish_check: Option<FinishCheck<'a>>,
    /// Longest a command may run.
    pub command_timeout: Duration,
    /// Bytes kept per command output stream.
    pub output_limit: usize,
    /// Failed tool calls in a row before giving up.
    pub max_consecutive_errors: u32,
    /// Completion token limit per model call.
    pub max_tokens: u32,
    /// Ends the run between steps when cancelled.
    pub cancel: Option<CancellationToken>,
    /// Where `report_discovery` goes (branching); without one a report is only an event.
    pub discoveries: Option<&'a dyn DiscoveryReporter>,
}

const DETAIL_CHARS: usize = 2000;

fn clip(s: &str) -> String {
    if s.len() <= DETAIL_CHARS {
        return s.to_owned();
    }
    let cut = s.char_indices().take_while(|(i, _)| *i < DETAIL_CHARS).last().map_or(0, |(i, _)| i);
    format!("{}… [{} bytes]", &s[..cut], s.len())
}

/// `v` with every string longer than the detail limit clipped, so steps stay small but keep
/// their structure (a tool's `path` stays readable even when its `content` is huge).
fn clip_value(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(clip(s)),
        Value::Array(a) => Value::Array(a.iter().map(clip_value).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), clip_value(v))).collect()),
        other => other.clone(),
    }
}

struct Recorder<'a> {
    events: &'a dyn EventStore,
    task_id: TaskId,
    agent_id: AgentId,
    step: u32,
    /// Refuses a blind retry of the call that just failed.
    guard: RepeatGuard,
}

impl Recorder<'_> {
    async fn step(&mut self, action: &str, detail: Value) -> Result<(), StoreError> {
        self.step += 1;
        debug!(step = self.step, action, "agent step");
        let e = Event::AgentStep {
            task_id: self.task_id,
            agent_id: self.agent_id,
            step: self.step,
            action: action.to_owned(),
            detail,
        };
        self.events.append_events(vec![e]).await.map(|_| ())
    }
}

impl AgentRun<'_> {
    /// The labels of every model request: the run's own, `omoi.task`, and `omoi.steered` once
    /// the run has applied `steered` steering messages.
    fn request_labels(&self, steered: usize) -> BTreeMap<String, String> {
        use omoi_core::ports::llm::labels;
        let mut out = self.labels.clone();
        out.insert(labels::TASK.to_owned(), self.task_id.to_string());
        if steered > 0 {
            out.insert(labels::STEERED.to_owned(), steered.to_string());
        }
        out
    }

    /// Runs the loop to its end.
    pub async fn run(self) -> Result<AgentOutcome, AgentError> {
        let span = info_span!("agent_run", task = %self.task_id, agent = %self.agent_id, mode = %self.policy.mode());
        let log = RunLog::default();
        let mut out = self.run_inner(&log).instrument(span).await?;
        out.runs = log.snapshot();
        Ok(out)
    }

    async fn run_inner(self, log: &RunLog) -> Result<AgentOutcome, AgentError> {
        let specs: Vec<_> = self.policy.tools().map(|t| tools::spec(t, self.finish_output.as_ref())).collect();
        let runner = ToolRunner {
            sandbox: self.sandbox,
            command_timeout: self.command_timeout,
            output_limit: self.output_limit,
            read_only: self.policy.read_only(),
            runs: log,
        };
        let mut rec = Recorder {
            events: self.events,
            task_id: self.task_id,
            agent_id: self.agent_id,
            step: 0,
            guard: RepeatGuard::default(),
        };
        let mut messages = vec![Message::user(self.prompt.clone())];
        let mut out = AgentOutcome {
            stop: StopCause::Finished,
            finish: None,
            discoveries: Vec::new(),
            runs: Vec::new(),
            usage: Usage::default(),
            turns: 0,
        };
        let mut idle_turns = 0;
        let mut failures_in_a_row = 0;
        let mut steered = 0;
        loop {
            if self.cancel.as_ref().is_some_and(CancellationToken::is_cancelled) {
                rec.step("cancelled", json!({})).await?;
                out.stop = StopCause::Cancelled;
                return Ok(out);
            }
            if let Some(stop) = self.read_mailbox(&mut messages, &mut rec, &mut steered).await? {
                out.stop = stop;
                return Ok(out);
            }
            if let Some(exceeded) = self.gates.iter().find_map(|g| g.before_call().err()) {
                rec.step("budget_exceeded", json!({ "reason": exceeded.to_string() })).await?;
                warn!(%exceeded, "budget exhausted; the model is not called");
                out.stop = StopCause::BudgetExceeded(exceeded);
                return Ok(out);
            }
            let request = CompletionRequest {
                system: Some(self.system.clone()),
                messages: messages.clone(),
                tools: specs.clone(),
                output: None,
                max_tokens: self.max_tokens,
                temperature: None,
                labels: self.request_labels(steered),
            };
            // A cancellation also interrupts a model call in flight (a hung provider must not
            // keep a cancelled task, and its sandbox, alive).
            let cancelled = async {
                match &self.cancel {
                    Some(c) => c.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            let response = tokio::select! {
                r = self.llm.complete(&request) => match r {
                    Ok(r) => r,
                    Err(e) => {
                        // Recorded so monitors see repeated failures (e.g. context-window overflows).
                        rec.step("model_error", json!({ "error": clip(&e.to_string()) })).await?;
                        return Err(e.into());
                    }
                },
                () = cancelled => {
                    rec.step("cancelled", json!({})).await?;
                    out.stop = StopCause::Cancelled;
                    return Ok(out);
                }
            };
            for g in &self.gates {
                g.after_call(&response.usage);
            }
            out.usage += response.usage;
            out.turns += 1;
            let calls = response.tool_calls();
            rec.step(
                "model",
                json!({
                    "text": clip(&response.text()),
                    "tool_calls": calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
                    "usage": response.usage,
                }),
            )
            .await?;
            messages.push(response.to_message());
            if calls.is_empty() {
                idle_turns += 1;
                if idle_turns >= 2 {
                    out.stop = StopCause::ModelStopped;
                    return Ok(out);
                }
                messages.push(Message::user("Continue with the task using the tools. When it is done, call `finish`."));
                continue;
            }
            idle_turns = 0;
            let mut results = Vec::with_capacity(calls.len());
            for call in &calls {
                let (text, is_error) = self.handle(call, &runner, &mut rec, &mut out).await?;
                failures_in_a_row = if is_error { failures_in_a_row + 1 } else { 0 };
                results.push(ContentBlock::ToolResult { tool_use_id: call.id.clone(), content: text, is_error });
            }
            messages.push(Message { role: Role::User, content: results });
            if out.finish.is_some() {
                out.stop = StopCause::Finished;
                return Ok(out);
            }
            if failures_in_a_row >= self.max_consecutive_errors.max(1) {
                rec.step("gave_up", json!({ "failed_calls_in_a_row": failures_in_a_row })).await?;
                out.stop = StopCause::TooManyErrors(failures_in_a_row);
                return Ok(out);
            }
        }
    }

    /// Runs one tool call (or refuses it); returns the result text and whether it failed.
    async fn handle(
        &self,
        call: &ToolCall,
        runner: &ToolRunner<'_>,
        rec: &mut Recorder<'_>,
        out: &mut AgentOutcome,
    ) -> Result<(String, bool), AgentError> {
        rec.step("tool_call", json!({ "name": call.name, "input": clip_value(&call.input) })).await?;
        if let Some(refusal) = self.policy.refusal(&call.name) {
            rec.step("refused", json!({ "name": call.name, "reason": refusal })).await?;
            return Ok((refusal, true));
        }
        if let Some(refusal) = rec.guard.refusal(call) {
            rec.step("refused", json!({ "name": call.name, "reason": "repeat_of_failed_call" })).await?;
            warn!(tool = %call.name, "refused a blind retry of the call that just failed");
            return Ok((refusal, true));
        }
        let tool: ToolName = call.name.parse().expect("the policy only allows known tools");
        let outcome = async { runner.run(tool, call).await }.instrument(info_span!("tool", name = %call.name)).await?;
        let (text, is_error) = match outcome {
            ToolOutcome::Output { text, is_error } => (text, is_error),
            ToolOutcome::Discovery(d) => {
                let (text, is_error) = match self.discoveries {
                    Some(reporter) => match reporter.report(self.task_id, &d).await {
                        Ok(text) => (text, false),
                        Err(why) => (format!("discovery not recorded: {why}"), true),
                    },
                    None => {
                        let id = DiscoveryId::new();
                        self.events
                            .append_events(vec![Event::DiscoveryRecorded {
                                discovery_id: id,
                                source_task: self.task_id,
                                kind: d.kind,
                            }])
                            .await?;
                        (format!("discovery {id} recorded ({}: {}); nothing branched", d.kind, d.title), false)
                    }
                };
                out.discoveries.push((d, text.clone()));
                (text, is_error)
            }
            ToolOutcome::Finish(f) => match self.check_finish(&f, runner) {
                Ok(()) => {
                    out.finish = Some(f);
                    ("finished".to_owned(), false)
                }
                Err(why) => (format!("finish rejected: {why}. Fix the output and call `finish` again."), true),
            },
        };
        rec.step("tool_result", json!({ "name": call.name, "is_error": is_error, "output": clip(&text) })).await?;
        rec.guard.record(call, is_error, &text);
        Ok((text, is_error))
    }

    /// The caller's check, and in validation mode the recorded runs' (a pass they contradict is
    /// refused).
    fn check_finish(&self, f: &FinishArgs, runner: &ToolRunner<'_>) -> Result<(), String> {
        if self.policy.mode() == ExecutionMode::Validation {
            check_validation_finish(f, &runner.runs.snapshot())?;
        }
        self.finish_check.map_or(Ok(()), |check| check(f))
    }

    /// Injects queued steering into the conversation, counting it in `steered`; an emergency
    /// ends the run.
    async fn read_mailbox(
        &self,
        messages: &mut [Message],
        rec: &mut Recorder<'_>,
        steered: &mut usize,
    ) -> Result<Option<StopCause>, AgentError> {
        let Some(boxes) = self.mailboxes else { return Ok(None) };
        for s in boxes.take(self.task_id, self.agent_id).await? {
            let detail =
                json!({ "severity": s.severity, "from": s.from, "message": s.message, "intervention": s.intervention });
            rec.step("steering", detail).await?;
            *steered += 1;
            if s.severity == Severity::Emergency {
                return Ok(Some(StopCause::Stopped { by: s.from, message: s.message }));
            }
            let text = format!("[{} from {}] {}", s.severity.as_str().to_uppercase(), s.from, s.message);
            // The conversation always ends with a user message here; steering joins it.
            if let Some(last) = messages.last_mut().filter(|m| m.role == Role::User) {
                last.content.push(ContentBlock::Text { text });
            }
        }
        Ok(None)
    }
}
