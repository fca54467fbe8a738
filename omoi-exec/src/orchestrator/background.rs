//! Services the orchestrator runs beside its workers (the monitoring loop of `omoi-monitor`, a
//! metrics exporter, …): started with the workers, stopped after them.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

/// A service run beside the workers until its token is cancelled. Any
/// `Fn(CancellationToken) -> impl Future<Output = ()>` is one:
///
/// ```
/// use omoi_exec::orchestrator::BackgroundService;
///
/// fn takes(_: impl BackgroundService) {}
/// takes(|stop: tokio_util::sync::CancellationToken| async move { stop.cancelled().await });
/// ```
pub trait BackgroundService: Send + Sync {
    /// Runs until `stop` is cancelled, then winds down and returns.
    fn run(&self, stop: CancellationToken) -> BoxFuture<'static, ()>;
}

impl<F, Fut> BackgroundService for F
where
    F: Fn(CancellationToken) -> Fut + Send + Sync,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn run(&self, stop: CancellationToken) -> BoxFuture<'static, ()> {
        Box::pin(self(stop))
    }
}

/// A named background service.
#[derive(Clone)]
pub(super) struct Background {
    pub(super) name: &'static str,
    pub(super) service: Arc<dyn BackgroundService>,
}
