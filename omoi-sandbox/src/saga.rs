//! Sandbox creation as a saga: each completed step registers its compensation; a failing step
//! runs the registered compensations in reverse order and reports the step that failed.

use std::future::Future;
use std::pin::Pin;

use omoi_core::SandboxError;

type Compensation = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// The compensations registered so far.
pub(crate) struct Saga {
    provider: &'static str,
    undo: Vec<(&'static str, Compensation)>,
}

impl Saga {
    pub(crate) fn new(provider: &'static str) -> Self {
        Self { provider, undo: Vec::new() }
    }

    /// Runs `step`; on failure unwinds everything registered so far and returns
    /// [`SandboxError::CreateFailed`] naming the step (an error that is already a
    /// `CreateFailed` is passed through after the unwind).
    pub(crate) async fn step<T>(
        &mut self,
        name: &'static str,
        step: impl Future<Output = Result<T, SandboxError>>,
    ) -> Result<T, SandboxError> {
        match step.await {
            Ok(value) => Ok(value),
            Err(e) => {
                tracing::warn!(provider = self.provider, step = name, error = %e, "sandbox creation step failed; unwinding");
                let leftovers = self.unwind().await;
                let message = if leftovers.is_empty() {
                    e.to_string()
                } else {
                    format!("{e} (and compensation failed: {})", leftovers.join("; "))
                };
                Err(match e {
                    SandboxError::CreateFailed { .. } if leftovers.is_empty() => e,
                    _ => SandboxError::CreateFailed { step: name, message },
                })
            }
        }
    }

    /// Registers how to undo a completed step.
    pub(crate) fn compensate(
        &mut self,
        name: &'static str,
        undo: impl Future<Output = Result<(), String>> + Send + 'static,
    ) {
        self.undo.push((name, Box::pin(undo)));
    }

    /// Runs every compensation, newest first; returns the failures.
    pub(crate) async fn unwind(&mut self) -> Vec<String> {
        let mut failures = Vec::new();
        while let Some((name, undo)) = self.undo.pop() {
            match undo.await {
                Ok(()) => tracing::debug!(provider = self.provider, compensation = name, "compensated"),
                Err(e) => {
                    tracing::error!(provider = self.provider, compensation = name, error = %e, "compensation failed");
                    failures.push(format!("{name}: {e}"));
                }
            }
        }
        failures
    }

    /// Creation succeeded: forget the compensations.
    pub(crate) fn commit(mut self) {
        self.undo.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn a_failed_step_undoes_the_completed_ones_newest_first() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut saga = Saga::new("test");
        for name in ["first", "second"] {
            saga.step(name, async { Ok(()) }).await.unwrap();
            let log = Arc::clone(&log);
            saga.compensate(name, async move {
                log.lock().unwrap().push(name);
                Ok(())
            });
        }
        let err =
            saga.step("third", async { Err::<(), _>(SandboxError::InvalidRequest("boom".into())) }).await.unwrap_err();
        match err {
            SandboxError::CreateFailed { step, message } => {
                assert_eq!((step, message.contains("boom")), ("third", true))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(*log.lock().unwrap(), ["second", "first"]);
        // A second failure has nothing left to undo.
        assert!(saga.unwind().await.is_empty());
    }

    #[tokio::test]
    async fn failed_compensations_are_reported() {
        let mut saga = Saga::new("test");
        saga.compensate("remove", async { Err("still there".to_owned()) });
        let err = saga.step("start", async { Err::<(), _>(SandboxError::InvalidRequest("x".into())) }).await;
        match err {
            Err(SandboxError::CreateFailed { step: "start", message }) => {
                assert!(message.contains("remove: still there"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}
