//! The per-spec token and cost budget, checked before every model call and persisted after it.

use std::fmt;
use std::sync::Arc;

use omoi_core::config::SpecConfig;
use omoi_core::{CompletionRequest, SpecId, SpecStore, StoreError, Usage};
use parking_lot::Mutex;

/// Token and cost limits of one spec.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetLimits {
    /// Tokens (input + output) over the whole spec, if limited.
    pub max_tokens: Option<u64>,
    /// US dollars over the whole spec, if limited.
    pub max_cost_usd: Option<f64>,
}

impl BudgetLimits {
    /// No limit.
    pub const UNLIMITED: BudgetLimits = BudgetLimits { max_tokens: None, max_cost_usd: None };

    /// `max_tokens` and `max_cost_usd` of `config`.
    pub fn from_config(config: &SpecConfig) -> Self {
        Self { max_tokens: config.max_tokens, max_cost_usd: Some(config.max_cost_usd) }
    }
}

/// A model call would exceed the spec's budget; the call was not made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetExceeded {
    /// The token budget is used up, or the next request would exceed it.
    #[error("token budget exceeded: {spent} spent + ~{requested} for the next call > limit {limit}")]
    Tokens {
        /// Tokens spent so far.
        spent: u64,
        /// Estimated input tokens of the refused call.
        requested: u64,
        /// The limit.
        limit: u64,
    },
    /// The cost budget is used up.
    #[error("cost budget exceeded: ${spent_usd:.4} spent, limit ${limit_usd:.4}")]
    Cost {
        /// Dollars spent so far.
        spent_usd: f64,
        /// The limit.
        limit_usd: f64,
    },
}

/// The shared budget guard of one phase execution: call [`Budget::check`] (or
/// [`Budget::check_request`]) before every model call and [`Budget::record`] after it. Clones
/// share the same state, so an agentic executor making many calls in one attempt sees one
/// running total. Recorded usage is added to the spec in the store at once
/// ([`SpecStore::add_usage`]), so a resumed run continues from the amount already spent.
#[derive(Clone)]
pub struct Budget {
    inner: Arc<Inner>,
}

struct Inner {
    spec: SpecId,
    store: Option<Arc<dyn SpecStore>>,
    limits: BudgetLimits,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The spec's total (from the store), including what this guard recorded.
    spent: Usage,
    /// What this guard recorded.
    recorded: Usage,
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.inner.state.lock();
        f.debug_struct("Budget")
            .field("spec", &self.inner.spec)
            .field("limits", &self.inner.limits)
            .field("spent", &s.spent)
            .field("recorded", &s.recorded)
            .field("persisted", &self.inner.store.is_some())
            .finish()
    }
}

impl Budget {
    /// A guard for spec `spec` that has already spent `spent`, persisting usage to `store`.
    pub fn new(spec: SpecId, limits: BudgetLimits, spent: Usage, store: Arc<dyn SpecStore>) -> Self {
        Self::build(spec, limits, spent, Some(store))
    }

    /// A guard that keeps its total in memory only (tests, one-off calls).
    pub fn in_memory(limits: BudgetLimits, spent: Usage) -> Self {
        Self::build(SpecId::new(), limits, spent, None)
    }

    fn build(spec: SpecId, limits: BudgetLimits, spent: Usage, store: Option<Arc<dyn SpecStore>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                spec,
                store,
                limits,
                state: Mutex::new(State { spent, recorded: Usage::default() }),
            }),
        }
    }

    /// The limits.
    pub fn limits(&self) -> BudgetLimits {
        self.inner.limits
    }

    /// The spec's total spend so far.
    pub fn spent(&self) -> Usage {
        self.inner.state.lock().spent
    }

    /// What was recorded through this guard (and its clones).
    pub fn recorded(&self) -> Usage {
        self.inner.state.lock().recorded
    }

    /// Refuses if the budget is already used up.
    pub fn check(&self) -> Result<(), BudgetExceeded> {
        self.check_tokens(0)
    }

    /// Refuses if the budget is used up or `request`'s estimated input (4 characters per
    /// token) would take the spend past the token limit.
    pub fn check_request(&self, request: &CompletionRequest) -> Result<(), BudgetExceeded> {
        self.check_tokens(estimate_input_tokens(request))
    }

    fn check_tokens(&self, requested: u64) -> Result<(), BudgetExceeded> {
        let spent = self.spent();
        if let Some(limit) = self.inner.limits.max_tokens {
            let total = spent.total_tokens();
            if total >= limit || total.saturating_add(requested) > limit {
                return Err(BudgetExceeded::Tokens { spent: total, requested, limit });
            }
        }
        if let Some(limit_usd) = self.inner.limits.max_cost_usd
            && spent.cost_usd >= limit_usd
        {
            return Err(BudgetExceeded::Cost { spent_usd: spent.cost_usd, limit_usd });
        }
        Ok(())
    }

    /// Records the usage of a model call and persists it; returns the spec's new total.
    pub async fn record(&self, usage: Usage) -> Result<Usage, StoreError> {
        let total = match &self.inner.store {
            Some(store) => Some(store.add_usage(self.inner.spec, usage).await?),
            None => None,
        };
        let mut s = self.inner.state.lock();
        s.recorded += usage;
        s.spent = total.unwrap_or(s.spent + usage);
        Ok(s.spent)
    }
}

/// Input tokens of `request`, estimated at 4 characters per token (system prompt, messages,
/// tools and output schema).
pub fn estimate_input_tokens(request: &CompletionRequest) -> u64 {
    let chars = request.system.as_deref().map_or(0, str::len)
        + serde_json::to_string(&request.messages).map_or(0, |s| s.len())
        + serde_json::to_string(&request.tools).map_or(0, |s| s.len())
        + request.output.as_ref().and_then(|o| serde_json::to_string(&o.schema).ok()).map_or(0, |s| s.len());
    (chars as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_once_spent_or_when_the_next_call_would_overshoot() {
        let b = Budget::in_memory(BudgetLimits { max_tokens: Some(100), max_cost_usd: Some(1.0) }, Usage::default());
        b.check().unwrap();
        b.record(Usage { input_tokens: 60, output_tokens: 0, cost_usd: 0.5 }).await.unwrap();
        b.check().unwrap();
        let big = CompletionRequest::new("x".repeat(400));
        assert!(matches!(b.check_request(&big), Err(BudgetExceeded::Tokens { spent: 60, limit: 100, .. })));
        b.record(Usage { input_tokens: 0, output_tokens: 0, cost_usd: 0.5 }).await.unwrap();
        assert_eq!(b.check(), Err(BudgetExceeded::Cost { spent_usd: 1.0, limit_usd: 1.0 }));
        assert_eq!(b.recorded().input_tokens, 60);
        let clone = b.clone();
        clone.record(Usage { input_tokens: 40, output_tokens: 0, cost_usd: 0.0 }).await.unwrap();
        assert!(matches!(b.check(), Err(BudgetExceeded::Tokens { spent: 100, .. })));
    }
}
