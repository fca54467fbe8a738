//! `PriceTable`: USD per million tokens, per model, for `Usage::cost_usd`.

use std::collections::{BTreeMap, BTreeSet};

use parking_lot::Mutex;

/// The price of one model, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    /// Input (prompt) tokens.
    pub input_per_mtok: f64,
    /// Output (completion) tokens.
    pub output_per_mtok: f64,
}

impl ModelPrice {
    /// A price from USD per million input and output tokens.
    pub const fn new(input_per_mtok: f64, output_per_mtok: f64) -> Self {
        Self { input_per_mtok, output_per_mtok }
    }

    /// The cost of `input` and `output` tokens, in USD.
    pub fn cost(&self, input: u64, output: u64) -> f64 {
        (input as f64 * self.input_per_mtok + output as f64 * self.output_per_mtok) / 1_000_000.0
    }
}

/// Model prices keyed by model name or name prefix: a model is priced by the exact entry, else
/// by the longest entry that is a prefix of its name, so `claude-sonnet-4-5` prices
/// `claude-sonnet-4-5-20250929` and `gpt-4o-mini` wins over `gpt-4o` for `gpt-4o-mini-2024-07-18`.
///
/// [`PriceTable::default`] holds list prices of a few Anthropic and OpenAI models (as published
/// in 2025; override them with [`PriceTable::with`]). A model with no entry costs 0, and the
/// client logs a warning once per model.
///
/// ```
/// use omoi_exec::llm::{ModelPrice, PriceTable};
///
/// let prices = PriceTable::empty().with("llama3.1", ModelPrice::new(0.0, 0.0)).with("my-model", ModelPrice::new(2.0, 8.0));
/// assert_eq!(prices.cost("my-model-v2", 1_000_000, 500_000), Some(6.0));
/// assert_eq!(prices.cost("unknown", 10, 10), None);
/// assert!(PriceTable::default().price("claude-sonnet-4-5-20250929").is_some());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    entries: BTreeMap<String, ModelPrice>,
}

impl PriceTable {
    /// A table with no prices (every model costs 0).
    pub fn empty() -> Self {
        Self { entries: BTreeMap::new() }
    }

    /// This table with `model` (a name or name prefix) priced at `price`.
    pub fn with(mut self, model: impl Into<String>, price: ModelPrice) -> Self {
        self.insert(model, price);
        self
    }

    /// Sets the price of `model` (a name or name prefix).
    pub fn insert(&mut self, model: impl Into<String>, price: ModelPrice) {
        self.entries.insert(model.into(), price);
    }

    /// The price of `model`: the exact entry, else the longest entry prefixing its name.
    pub fn price(&self, model: &str) -> Option<ModelPrice> {
        if let Some(p) = self.entries.get(model) {
            return Some(*p);
        }
        self.entries.iter().filter(|(k, _)| model.starts_with(k.as_str())).max_by_key(|(k, _)| k.len()).map(|(_, p)| *p)
    }

    /// The cost in USD of `input` and `output` tokens of `model`, if it has a price.
    pub fn cost(&self, model: &str, input: u64, output: u64) -> Option<f64> {
        self.price(model).map(|p| p.cost(input, output))
    }
}

impl Default for PriceTable {
    /// List prices (USD per million input/output tokens) of common models.
    fn default() -> Self {
        const KNOWN: &[(&str, f64, f64)] = &[
            ("claude-opus-4-5", 5.0, 25.0),
            ("claude-opus-4", 15.0, 75.0),
            ("claude-sonnet-4", 3.0, 15.0),
            ("claude-3-7-sonnet", 3.0, 15.0),
            ("claude-haiku-4-5", 1.0, 5.0),
            ("claude-3-5-haiku", 0.8, 4.0),
            ("gpt-5", 1.25, 10.0),
            ("gpt-5-mini", 0.25, 2.0),
            ("gpt-5-nano", 0.05, 0.4),
            ("gpt-4.1", 2.0, 8.0),
            ("gpt-4.1-mini", 0.4, 1.6),
            ("gpt-4.1-nano", 0.1, 0.4),
            ("gpt-4o", 2.5, 10.0),
            ("gpt-4o-mini", 0.15, 0.6),
            ("o3", 2.0, 8.0),
            ("o4-mini", 1.1, 4.4),
        ];
        KNOWN.iter().fold(Self::empty(), |t, (m, i, o)| t.with(*m, ModelPrice::new(*i, *o)))
    }
}

/// A price table plus the set of unpriced models already warned about.
#[derive(Debug)]
pub(crate) struct CostMeter {
    prices: PriceTable,
    warned: Mutex<BTreeSet<String>>,
}

impl CostMeter {
    pub(crate) fn new(prices: PriceTable) -> Self {
        Self { prices, warned: Mutex::new(BTreeSet::new()) }
    }

    /// The cost of a call; 0 with a warning (once per model) when the model has no price.
    pub(crate) fn cost(&self, model: &str, input: u64, output: u64) -> f64 {
        match self.prices.cost(model, input, output) {
            Some(cost) => cost,
            None => {
                if self.warned.lock().insert(model.to_owned()) {
                    tracing::warn!(model, "no price for this model in the price table; its cost is counted as 0");
                }
                0.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_exact_match_first() {
        let t = PriceTable::default();
        assert_eq!(t.price("gpt-4o-mini-2024-07-18"), Some(ModelPrice::new(0.15, 0.6)));
        assert_eq!(t.price("gpt-4o-2024-08-06"), Some(ModelPrice::new(2.5, 10.0)));
        assert_eq!(t.price("claude-opus-4-5-20251101"), Some(ModelPrice::new(5.0, 25.0)));
        assert_eq!(t.price("claude-opus-4-1-20250805"), Some(ModelPrice::new(15.0, 75.0)));
        assert_eq!(t.price("llama3"), None);
    }

    #[test]
    fn cost_is_per_million_tokens() {
        let p = ModelPrice::new(3.0, 15.0);
        assert!((p.cost(1000, 200) - (0.003 + 0.003)).abs() < 1e-12);
    }

    #[test]
    fn unknown_model_costs_zero() {
        let m = CostMeter::new(PriceTable::empty());
        assert_eq!(m.cost("mystery", 100, 100), 0.0);
        assert_eq!(m.cost("mystery", 100, 100), 0.0);
        assert_eq!(m.warned.lock().len(), 1);
    }
}
