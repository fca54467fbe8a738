//! Small value types shared by several entities: priority, execution mode, work phase, usage.

use std::ops::{Add, AddAssign};

use serde::{Deserialize, Serialize};

use crate::string_enum;

string_enum! {
    /// Task and ticket priority. Declaration order is urgency order, so `Critical < Low` in `Ord`;
    /// use [`Priority::rank`] for "higher is more urgent".
    pub enum Priority: "priority" {
        /// Must run first.
        Critical => "critical",
        /// Ahead of normal work.
        High => "high",
        /// Normal work (the default).
        Medium => "medium",
        /// When nothing else is waiting.
        Low => "low",
    }
}

impl Priority {
    /// 3 for critical down to 0 for low: higher is more urgent. Stores order claims by it.
    pub const fn rank(self) -> u8 {
        match self {
            Priority::Critical => 3,
            Priority::High => 2,
            Priority::Medium => 1,
            Priority::Low => 0,
        }
    }

    /// The inverse of [`Priority::rank`]; ranks above 3 saturate at critical.
    pub const fn from_rank(rank: u8) -> Priority {
        match rank {
            0 => Priority::Low,
            1 => Priority::Medium,
            2 => Priority::High,
            _ => Priority::Critical,
        }
    }

    /// One level more urgent (critical stays critical): discovery boosts and queue aging use it.
    pub const fn boosted(self) -> Priority {
        Priority::from_rank(self.rank() + 1)
    }

    /// OmoiOS's scoring weight P: 1.0, 0.75, 0.5, 0.25.
    pub fn weight(self) -> f64 {
        f64::from(self.rank() + 1) * 0.25
    }
}

// `string_enum!` cannot derive `Default`.
#[allow(clippy::derivable_impls)]
impl Default for Priority {
    fn default() -> Self {
        Priority::Medium
    }
}

string_enum! {
    /// How an agent may act while executing a task. Enforced as a tool policy by the executor.
    pub enum ExecutionMode: "execution mode" {
        /// Read-only research: read, list, search, read-only commands.
        Exploration => "exploration",
        /// Read, write and run commands.
        Implementation => "implementation",
        /// Read and run tests; no writes.
        Validation => "validation",
    }
}

// `string_enum!` cannot derive `Default`.
#[allow(clippy::derivable_impls)]
impl Default for ExecutionMode {
    fn default() -> Self {
        ExecutionMode::Implementation
    }
}

string_enum! {
    /// The software-delivery phase a task belongs to. Discovery may branch work into any phase.
    pub enum WorkPhase: "work phase" {
        /// Investigation and analysis.
        Analysis => "analysis",
        /// Requirements work.
        Requirements => "requirements",
        /// Design work.
        Design => "design",
        /// Building the change.
        Implementation => "implementation",
        /// Verifying the change.
        Testing => "testing",
        /// Merging and integrating branches.
        Integration => "integration",
        /// Shipping.
        Deployment => "deployment",
    }
}

// `string_enum!` cannot derive `Default`.
#[allow(clippy::derivable_impls)]
impl Default for WorkPhase {
    fn default() -> Self {
        WorkPhase::Implementation
    }
}

/// Tokens and money spent by model calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Cost in US dollars, from the client's price table.
    pub cost_usd: f64,
}

impl Usage {
    /// Input plus output tokens.
    pub const fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

impl Add for Usage {
    type Output = Usage;

    fn add(self, o: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens + o.input_tokens,
            output_tokens: self.output_tokens + o.output_tokens,
            cost_usd: self.cost_usd + o.cost_usd,
        }
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        *self = *self + o;
    }
}

impl std::iter::Sum for Usage {
    fn sum<I: Iterator<Item = Usage>>(iter: I) -> Usage {
        iter.fold(Usage::default(), Add::add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_boost_climbs_one_level_and_saturates() {
        assert_eq!(Priority::Low.boosted(), Priority::Medium);
        assert_eq!(Priority::Medium.boosted(), Priority::High);
        assert_eq!(Priority::High.boosted(), Priority::Critical);
        assert_eq!(Priority::Critical.boosted(), Priority::Critical);
        assert_eq!(Priority::Critical.weight(), 1.0);
        assert_eq!(Priority::Low.weight(), 0.25);
    }

    #[test]
    fn priority_parsing_is_exact_and_lowercase() {
        assert_eq!("high".parse::<Priority>().unwrap(), Priority::High);
        // OmoiOS silently scored "HIGH"-vs-"high" differently; we refuse the unknown spelling.
        assert!("HIGH".parse::<Priority>().is_err());
    }

    #[test]
    fn usage_adds_up() {
        let a = Usage { input_tokens: 10, output_tokens: 5, cost_usd: 0.5 };
        let total: Usage = [a, a].into_iter().sum();
        assert_eq!(total.total_tokens(), 30);
        assert_eq!(total.cost_usd, 1.0);
    }
}
