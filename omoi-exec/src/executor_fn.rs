//! Plain async closures as [`TaskExecutor`]s.

use std::future::Future;

use async_trait::async_trait;
use omoi_core::Task;

use crate::worker::{ExecContext, ExecError, TaskExecutor, TaskOutput};

/// A [`TaskExecutor`] made from an async closure; build it with [`executor_fn`].
#[derive(Clone)]
pub struct FnExecutor<F> {
    f: F,
}

impl<F> std::fmt::Debug for FnExecutor<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnExecutor")
    }
}

/// Wraps `f` as a [`TaskExecutor`]. The closure gets the task and its context by value, so it
/// can move them into its `async` block, and may return anything that converts into a
/// [`TaskOutput`]: a [`serde_json::Value`] (the task's result), `()` or a full `TaskOutput`.
///
/// ```
/// use omoi_exec::{ExecError, executor_fn};
/// use serde_json::json;
///
/// let exec = executor_fn(|task, _ctx| async move {
///     if task.def.title.is_empty() {
///         return Err(ExecError::permanent("a task needs a title"));
///     }
///     Ok(json!({ "echo": task.def.title }))
/// });
/// # let _ = exec;
/// ```
pub fn executor_fn<F, Fut, O>(f: F) -> FnExecutor<F>
where
    F: Fn(Task, ExecContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, ExecError>> + Send + 'static,
    O: Into<TaskOutput>,
{
    FnExecutor { f }
}

#[async_trait]
impl<F, Fut, O> TaskExecutor for FnExecutor<F>
where
    F: Fn(Task, ExecContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, ExecError>> + Send + 'static,
    O: Into<TaskOutput>,
{
    async fn execute(&self, task: &Task, ctx: &ExecContext) -> Result<TaskOutput, ExecError> {
        (self.f)(task.clone(), ctx.clone()).await.map(Into::into)
    }
}

impl From<serde_json::Value> for TaskOutput {
    fn from(result: serde_json::Value) -> Self {
        Self { result, ..Self::default() }
    }
}

impl From<()> for TaskOutput {
    fn from((): ()) -> Self {
        Self::default()
    }
}
