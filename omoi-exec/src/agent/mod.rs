//! The agent: a loop of model turns and tool calls in a sandbox, with a tool policy per
//! execution mode, budgets checked before every model call, steering read between turns, and
//! every step recorded as an `agent.step` event.

mod budget;
mod discovery;
mod executor;
mod guard;
mod mailbox;
mod policy;
mod prompt;
mod result;
mod run;
mod tools;
mod verdict;

pub use budget::{Budget, BudgetExceeded, BudgetLimits, CallGate};
pub use discovery::{DiscoveryReporter, Reply, to_new_discovery};
pub use executor::AgentExecutor;
pub use mailbox::{Mailboxes, Severity, Steering};
pub use omoi_core::ReportedDiscovery;
pub use policy::{READONLY_GIT, READONLY_PROGRAMS, ToolName, ToolPolicy, readonly_argv_allowed};
pub use result::{AgentResult, DiscoveryNote, RevisionNote, mergeable_branches};
pub use run::{AgentError, AgentOutcome, AgentRun, FinishCheck, StopCause};
pub use tools::FinishArgs;
pub use verdict::{CommandRun, ValidationVerdict, claimed_pass};
