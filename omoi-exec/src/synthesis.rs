//! Synthesis: merging the results of a task's predecessors into its context.
//!
//! A task with several dependencies starts from what they produced. How their results are
//! merged is a [`SynthesisStrategy`], each with exact semantics:
//!
//! - **combine**: every source kept whole, keyed by source — nothing merged, nothing lost.
//! - **union**: the keys of every object result merged into one object; a key whose sources
//!   disagree is reported as a [`Conflict`] and kept with every source's value
//!   (`{"$conflict": {source: value, …}}`), never silently resolved.
//! - **intersection**: only keys present in every source; disagreements are reported and kept
//!   as in union.
//!
//! A conflict is always visible to the agent and to the caller.
//!
//! ```
//! use serde_json::json;
//! use omoi_exec::synthesis::{synthesize, Source, SynthesisStrategy};
//!
//! let sources = [
//!     Source::new("TSK-001", json!({"api": "/v1/slug", "lang": "python"})),
//!     Source::new("TSK-002", json!({"api": "/v2/slug", "tests": 4})),
//! ];
//! let out = synthesize(SynthesisStrategy::Union, &sources);
//! assert_eq!(out.merged["lang"], "python");
//! assert_eq!(out.merged["api"]["$conflict"]["TSK-002"], "/v2/slug");
//! assert_eq!(out.conflicts[0].key, "api");
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How predecessor results are merged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SynthesisStrategy {
    /// Every source kept, keyed by source.
    #[default]
    Combine,
    /// Keys merged; conflicts reported and kept.
    Union,
    /// Keys present in every source; conflicts reported and kept.
    Intersection,
}

/// One predecessor's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Its name in the merged output (a local id such as `TSK-001`, or a task id).
    pub name: String,
    /// Its result.
    pub result: Value,
}

impl Source {
    /// A named result.
    pub fn new(name: impl Into<String>, result: Value) -> Self {
        Self { name: name.into(), result }
    }
}

/// A key whose sources disagree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// The key.
    pub key: String,
    /// Each source's value, by source name.
    pub values: BTreeMap<String, Value>,
}

/// The merged context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Synthesis {
    /// The strategy used.
    pub strategy: SynthesisStrategy,
    /// The merged value (always an object).
    pub merged: Value,
    /// Keys the sources disagree on.
    pub conflicts: Vec<Conflict>,
    /// Sources whose result is not an object; union and intersection keep them under
    /// `"$sources"` rather than dropping them.
    pub non_objects: Vec<String>,
}

/// The key under which a conflicting value is kept.
pub const CONFLICT_KEY: &str = "$conflict";

/// Merges `sources` by `strategy`. Deterministic: keys are ordered, sources keep their order.
pub fn synthesize(strategy: SynthesisStrategy, sources: &[Source]) -> Synthesis {
    let mut non_objects = Vec::new();
    let objects: Vec<(&str, &Map<String, Value>)> = sources
        .iter()
        .filter_map(|s| match &s.result {
            Value::Object(m) => Some((s.name.as_str(), m)),
            _ => {
                non_objects.push(s.name.clone());
                None
            }
        })
        .collect();
    if strategy == SynthesisStrategy::Combine {
        let merged: Map<String, Value> = sources.iter().map(|s| (s.name.clone(), s.result.clone())).collect();
        return Synthesis { strategy, merged: Value::Object(merged), conflicts: Vec::new(), non_objects: Vec::new() };
    }
    // Every key with each source's value, in source order.
    let mut by_key: BTreeMap<&str, Vec<(&str, &Value)>> = BTreeMap::new();
    for (name, obj) in &objects {
        for (k, v) in obj.iter() {
            by_key.entry(k.as_str()).or_default().push((name, v));
        }
    }
    let mut merged = Map::new();
    let mut conflicts = Vec::new();
    for (key, values) in by_key {
        if strategy == SynthesisStrategy::Intersection && values.len() < objects.len() {
            continue;
        }
        let first = values[0].1;
        if values.iter().all(|(_, v)| *v == first) {
            merged.insert(key.to_owned(), first.clone());
        } else {
            let per_source: BTreeMap<String, Value> =
                values.iter().map(|(n, v)| ((*n).to_owned(), (*v).clone())).collect();
            let mut wrapper = Map::new();
            wrapper.insert(CONFLICT_KEY.to_owned(), Value::Object(per_source.clone().into_iter().collect()));
            merged.insert(key.to_owned(), Value::Object(wrapper));
            conflicts.push(Conflict { key: key.to_owned(), values: per_source });
        }
    }
    if !non_objects.is_empty() {
        let kept: Map<String, Value> = sources
            .iter()
            .filter(|s| non_objects.contains(&s.name))
            .map(|s| (s.name.clone(), s.result.clone()))
            .collect();
        merged.insert("$sources".to_owned(), Value::Object(kept));
    }
    Synthesis { strategy, merged: Value::Object(merged), conflicts, non_objects }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sources() -> Vec<Source> {
        vec![
            Source::new("a", json!({"shared": 1, "same": "x", "only_a": true})),
            Source::new("b", json!({"shared": 2, "same": "x", "only_b": [1]})),
            Source::new("c", json!({"shared": 1, "same": "x"})),
        ]
    }

    #[test]
    fn combine_keeps_every_source_whole_keyed_by_source() {
        let out = synthesize(SynthesisStrategy::Combine, &sources());
        assert_eq!(out.merged["a"]["only_a"], true);
        assert_eq!(out.merged["b"]["shared"], 2);
        assert_eq!(out.merged.as_object().unwrap().len(), 3);
        assert!(out.conflicts.is_empty());
    }

    #[test]
    fn union_merges_keys_and_reports_conflicts_without_dropping_values() {
        let out = synthesize(SynthesisStrategy::Union, &sources());
        let m = out.merged.as_object().unwrap();
        assert_eq!(m["same"], "x");
        assert_eq!(m["only_a"], true);
        assert_eq!(m["only_b"], json!([1]));
        assert_eq!(out.conflicts.len(), 1);
        let c = &out.conflicts[0];
        assert_eq!(c.key, "shared");
        assert_eq!(c.values["a"], 1);
        assert_eq!(c.values["b"], 2);
        assert_eq!(c.values["c"], 1);
        assert_eq!(m["shared"][CONFLICT_KEY]["b"], 2, "every value kept in the merged context");
    }

    #[test]
    fn intersection_keeps_only_keys_present_in_every_source() {
        let out = synthesize(SynthesisStrategy::Intersection, &sources());
        let m = out.merged.as_object().unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["same", "shared"]);
        assert_eq!(m["same"], "x");
        assert_eq!(out.conflicts.len(), 1, "shared differs");
        assert!(!m.contains_key("only_a") && !m.contains_key("only_b"));
    }

    #[test]
    fn non_object_results_are_kept_not_dropped() {
        let s = vec![Source::new("a", json!({"k": 1})), Source::new("b", json!("plain text"))];
        let out = synthesize(SynthesisStrategy::Union, &s);
        assert_eq!(out.non_objects, vec!["b".to_owned()]);
        assert_eq!(out.merged["$sources"]["b"], "plain text");
        assert_eq!(out.merged["k"], 1);
    }
}
