//! Budgets: turns, tokens, cost and wall time, checked before every model call.

use std::time::Duration;

use chrono::{DateTime, Utc};
use omoi_core::config::ExecConfig;
use omoi_core::{Clock, Usage};
use parking_lot::Mutex;
use std::sync::Arc;

/// Limits for one agent run. `None` means unlimited.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetLimits {
    /// Model calls.
    pub max_turns: Option<u32>,
    /// Input plus output tokens.
    pub max_tokens: Option<u64>,
    /// US dollars.
    pub max_cost_usd: Option<f64>,
    /// Wall time since the run started.
    pub max_wall_time: Option<Duration>,
}

impl From<&ExecConfig> for BudgetLimits {
    fn from(c: &ExecConfig) -> Self {
        Self {
            max_turns: Some(c.max_turns),
            max_tokens: c.max_tokens,
            max_cost_usd: Some(c.max_cost_usd),
            max_wall_time: Some(c.max_wall_time),
        }
    }
}

/// A limit that was reached.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetExceeded {
    /// All model calls allowed were made.
    #[error("turn budget exhausted: {used} of {limit} model calls made")]
    Turns {
        /// Calls made.
        used: u32,
        /// The limit.
        limit: u32,
    },
    /// The token budget is spent.
    #[error("token budget exhausted: {used} of {limit} tokens used")]
    Tokens {
        /// Tokens used.
        used: u64,
        /// The limit.
        limit: u64,
    },
    /// The cost budget is spent.
    #[error("cost budget exhausted: ${used:.4} of ${limit:.4} spent")]
    Cost {
        /// Dollars spent.
        used: f64,
        /// The limit.
        limit: f64,
    },
    /// The wall-time budget is spent.
    #[error("wall-time budget exhausted: {elapsed:?} of {limit:?}")]
    WallTime {
        /// Time since the start.
        elapsed: Duration,
        /// The limit.
        limit: Duration,
    },
}

/// Something consulted before and told after every model call: the agent loop's budget, or a
/// caller's (a spec's budget when the loop runs a spec phase).
pub trait CallGate: Send + Sync {
    /// Refuses the next call if a limit is reached.
    fn before_call(&self) -> Result<(), BudgetExceeded>;
    /// Records a finished call's usage.
    fn after_call(&self, usage: &Usage);
}

/// A running budget: limits, what was used, and when the run started.
#[derive(Clone)]
pub struct Budget {
    limits: BudgetLimits,
    clock: Arc<dyn Clock>,
    started: DateTime<Utc>,
    used: Arc<Mutex<(u32, Usage)>>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (turns, usage) = *self.used.lock();
        f.debug_struct("Budget").field("limits", &self.limits).field("turns", &turns).field("usage", &usage).finish()
    }
}

impl Budget {
    /// A budget starting now on `clock`.
    pub fn start(limits: BudgetLimits, clock: Arc<dyn Clock>) -> Self {
        let started = clock.now();
        Self { limits, clock, started, used: Arc::default() }
    }

    /// Model calls made and usage so far.
    pub fn used(&self) -> (u32, Usage) {
        *self.used.lock()
    }
}

impl CallGate for Budget {
    fn before_call(&self) -> Result<(), BudgetExceeded> {
        let (turns, usage) = *self.used.lock();
        let l = &self.limits;
        if let Some(limit) = l.max_turns.filter(|&m| turns >= m) {
            return Err(BudgetExceeded::Turns { used: turns, limit });
        }
        if let Some(limit) = l.max_tokens.filter(|&m| usage.total_tokens() >= m) {
            return Err(BudgetExceeded::Tokens { used: usage.total_tokens(), limit });
        }
        if let Some(limit) = l.max_cost_usd.filter(|&m| usage.cost_usd >= m) {
            return Err(BudgetExceeded::Cost { used: usage.cost_usd, limit });
        }
        let elapsed = (self.clock.now() - self.started).to_std().unwrap_or_default();
        if let Some(limit) = l.max_wall_time.filter(|&m| elapsed >= m) {
            return Err(BudgetExceeded::WallTime { elapsed, limit });
        }
        Ok(())
    }

    fn after_call(&self, usage: &Usage) {
        let mut used = self.used.lock();
        used.0 += 1;
        used.1 += *usage;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omoi_core::testkit::ManualClock;

    fn limits() -> BudgetLimits {
        BudgetLimits {
            max_turns: Some(2),
            max_tokens: Some(100),
            max_cost_usd: Some(1.0),
            max_wall_time: Some(Duration::from_secs(60)),
        }
    }

    #[test]
    fn each_limit_stops_the_next_call() {
        let clock = ManualClock::new();
        let b = Budget::start(limits(), clock.clone());
        assert!(b.before_call().is_ok());
        b.after_call(&Usage { input_tokens: 10, output_tokens: 10, cost_usd: 0.1 });
        b.after_call(&Usage::default());
        assert_eq!(b.before_call(), Err(BudgetExceeded::Turns { used: 2, limit: 2 }));

        let b = Budget::start(limits(), clock.clone());
        b.after_call(&Usage { input_tokens: 90, output_tokens: 10, cost_usd: 0.0 });
        assert!(matches!(b.before_call(), Err(BudgetExceeded::Tokens { used: 100, .. })));

        let b = Budget::start(limits(), clock.clone());
        b.after_call(&Usage { cost_usd: 1.5, ..Usage::default() });
        assert!(matches!(b.before_call(), Err(BudgetExceeded::Cost { .. })));

        let b = Budget::start(limits(), clock.clone());
        clock.advance(Duration::from_secs(61));
        assert!(matches!(b.before_call(), Err(BudgetExceeded::WallTime { .. })));
    }
}
