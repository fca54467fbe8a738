//! Mailboxes: steering messages for running agents, read between turns.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use omoi_core::TaskId;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

omoi_core::string_enum! {
    /// How strongly a monitor steers.
    pub enum Severity: "steering severity" {
        /// A hint; the agent continues.
        Guidance => "guidance",
        /// The agent is off course and must change what it does.
        Correction => "correction",
        /// Stop now: the run ends after this message.
        Emergency => "emergency",
    }
}

/// A steering message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Steering {
    /// How strong.
    pub severity: Severity,
    /// What the agent should do.
    pub message: String,
    /// Who sent it (`guardian`, `user`, …).
    pub from: String,
}

impl Steering {
    /// A message of `severity` from `from`.
    pub fn new(severity: Severity, from: impl Into<String>, message: impl Into<String>) -> Self {
        Self { severity, message: message.into(), from: from.into() }
    }
}

/// Mailboxes of every running task, shared by the workers and whoever steers (monitors, people).
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Mailboxes {
    inner: Arc<Mutex<HashMap<TaskId, VecDeque<Steering>>>>,
}

impl Mailboxes {
    /// Empty mailboxes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a message for the agent running `task`.
    pub fn send(&self, task: TaskId, message: Steering) {
        self.inner.lock().entry(task).or_default().push_back(message);
    }

    /// Takes every queued message for `task`, oldest first.
    pub fn drain(&self, task: TaskId) -> Vec<Steering> {
        self.inner.lock().remove(&task).map(Vec::from).unwrap_or_default()
    }
}
