//! Reciprocal rank fusion: combine several ranked lists into one.
//!
//! Each list contributes `weight / (k + rank)` for every item it holds (rank starts at 1). An
//! item missing from a list contributes according to [`MissingRank`]: nothing (the textbook
//! rule) or, as OmoiOS does, the score of a rank just past the end of that list.
//!
//! ```
//! use omoi_core::rrf::{fuse, MissingRank, RankedList, RrfParams};
//!
//! let vector = RankedList::new(0.6, vec!["a", "b", "c"]);
//! let keyword = RankedList::new(0.4, vec!["c", "a"]);
//! let fused = fuse(&[vector, keyword], &RrfParams::default());
//! assert_eq!(fused[0].item, "a");
//! ```

use std::collections::HashMap;
use std::hash::Hash;

use serde::{Deserialize, Serialize};

/// How an item absent from one list is scored for that list.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "rule", content = "offset")]
pub enum MissingRank {
    /// The list contributes nothing for the item.
    Ignore,
    /// The list contributes as if the item were at rank `len + offset` (OmoiOS: offset 10).
    PastEnd(u32),
}

/// Fusion parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct RrfParams {
    /// The smoothing constant `k` (OmoiOS and the RRF paper: 60).
    pub k: f64,
    /// How items missing from a list are scored.
    pub missing: MissingRank,
}

impl Default for RrfParams {
    fn default() -> Self {
        Self { k: 60.0, missing: MissingRank::PastEnd(10) }
    }
}

/// One ranked input list with its weight; best item first.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedList<T> {
    /// The list's weight (OmoiOS: 0.6 semantic, 0.4 keyword).
    pub weight: f64,
    /// Items, best first. A repeated item keeps its best rank.
    pub items: Vec<T>,
}

impl<T> RankedList<T> {
    /// A weighted list, best first.
    pub fn new(weight: f64, items: Vec<T>) -> Self {
        Self { weight, items }
    }
}

/// One fused result.
#[derive(Debug, Clone, PartialEq)]
pub struct Fused<T> {
    /// The item.
    pub item: T,
    /// Its fused score (higher is better).
    pub score: f64,
    /// Its 1-based rank in each input list (`None` where absent), in input order.
    pub ranks: Vec<Option<usize>>,
}

/// Fuses `lists` into one ranking, best first. Ties are broken by the item's best single rank,
/// then by first appearance, so the result is deterministic.
pub fn fuse<T: Clone + Eq + Hash>(lists: &[RankedList<T>], params: &RrfParams) -> Vec<Fused<T>> {
    let mut order: Vec<T> = Vec::new();
    let mut ranks: HashMap<T, Vec<Option<usize>>> = HashMap::new();
    for (li, list) in lists.iter().enumerate() {
        for (pos, item) in list.items.iter().enumerate() {
            let entry = ranks.entry(item.clone()).or_insert_with(|| {
                order.push(item.clone());
                vec![None; lists.len()]
            });
            if entry[li].is_none() {
                entry[li] = Some(pos + 1);
            }
        }
    }
    let mut out: Vec<(usize, Fused<T>)> = order
        .into_iter()
        .enumerate()
        .map(|(first_seen, item)| {
            let r = ranks.remove(&item).unwrap_or_default();
            let score = lists
                .iter()
                .zip(&r)
                .map(|(list, rank)| match (rank, params.missing) {
                    (Some(rank), _) => list.weight / (params.k + *rank as f64),
                    (None, MissingRank::Ignore) => 0.0,
                    (None, MissingRank::PastEnd(offset)) => {
                        list.weight / (params.k + (list.items.len() + offset as usize) as f64)
                    }
                })
                .sum();
            (first_seen, Fused { item, score, ranks: r })
        })
        .collect();
    out.sort_by(|(fa, a), (fb, b)| {
        let best = |f: &Fused<T>| f.ranks.iter().flatten().min().copied().unwrap_or(usize::MAX);
        b.score.total_cmp(&a.score).then_with(|| best(a).cmp(&best(b))).then_with(|| fa.cmp(fb))
    });
    out.into_iter().map(|(_, f)| f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omoios_formula_with_k_60_and_weights_06_04() {
        let fused =
            fuse(&[RankedList::new(0.6, vec!["x", "y"]), RankedList::new(0.4, vec!["y"])], &RrfParams::default());
        let x = fused.iter().find(|f| f.item == "x").unwrap();
        let y = fused.iter().find(|f| f.item == "y").unwrap();
        // x: 0.6/(60+1) + 0.4/(60 + 1 + 10); y: 0.6/62 + 0.4/61
        assert!((x.score - (0.6 / 61.0 + 0.4 / 71.0)).abs() < 1e-12);
        assert!((y.score - (0.6 / 62.0 + 0.4 / 61.0)).abs() < 1e-12);
        assert_eq!(x.ranks, vec![Some(1), None]);
        assert_eq!(fused[0].item, "y", "present in both lists beats top of one");
    }

    #[test]
    fn missing_items_can_be_ignored_instead() {
        let params = RrfParams { k: 60.0, missing: MissingRank::Ignore };
        let fused = fuse(&[RankedList::new(1.0, vec![1]), RankedList::new(1.0, vec![2])], &params);
        assert_eq!(fused.len(), 2);
        assert!((fused[0].score - 1.0 / 61.0).abs() < 1e-12);
        assert_eq!(fused[0].score, fused[1].score);
        assert_eq!(fused[0].item, 1, "ties fall back to first appearance");
    }

    #[test]
    fn k_controls_how_much_top_ranks_dominate() {
        // `a` tops one list only; `m` is second and third in both.
        let lists = [RankedList::new(1.0, vec!["a", "m"]), RankedList::new(1.0, vec!["z", "y", "m"])];
        let sharp = fuse(&lists, &RrfParams { k: 0.0, missing: MissingRank::Ignore });
        let flat = fuse(&lists, &RrfParams { k: 1000.0, missing: MissingRank::Ignore });
        assert_eq!(sharp[0].item, "a", "small k: a single first place wins");
        assert_eq!(flat[0].item, "m", "large k: agreement between lists wins");
        assert!((sharp.iter().find(|f| f.item == "m").unwrap().score - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
    }

    #[test]
    fn duplicate_entries_keep_their_best_rank() {
        let fused = fuse(&[RankedList::new(1.0, vec!["a", "a", "b"])], &RrfParams::default());
        assert_eq!(fused[0].ranks, vec![Some(1)]);
        assert_eq!(fused.len(), 2);
    }
}
