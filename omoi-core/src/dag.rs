//! Dependency graphs: cycle detection that names the cycle, topological order, ready set and
//! critical path. Every operation is O(V + E).
//!
//! A node *depends on* its dependencies; a dependency comes before its dependents in
//! topological order. References to nodes outside the graph are either rejected
//! ([`Dag::new`]) or accepted as already-existing external nodes ([`Dag::with_external`]), which
//! is how a store checks a batch of new tasks that may depend on tasks it already holds.
//!
//! ```
//! use omoi_core::dag::{Dag, DagError};
//!
//! let dag = Dag::new([("build", vec![]), ("test", vec!["build"]), ("ship", vec!["test", "build"])]).unwrap();
//! assert_eq!(dag.topological_order().unwrap(), ["build", "test", "ship"]);
//!
//! let err = Dag::new([("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"])]).unwrap().topological_order();
//! assert_eq!(err, Err(DagError::Cycle { path: vec!["a", "b", "c", "a"] }));
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Debug, Display};
use std::hash::Hash;

/// Why a graph was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagError<K: Debug> {
    /// The graph has a cycle. `path` starts and ends at the same node, each node depending on
    /// the next: `[a, b, a]` means a depends on b, which depends on a.
    #[error("dependency cycle: {}", display_path(path))]
    Cycle {
        /// The nodes of the cycle, first node repeated at the end.
        path: Vec<K>,
    },
    /// `node` depends on `missing`, which is not in the graph.
    #[error("{node:?} depends on unknown {missing:?}")]
    UnknownReference {
        /// The node holding the reference.
        node: K,
        /// The reference that resolves to nothing.
        missing: K,
    },
    /// The same node was given twice.
    #[error("node {0:?} appears more than once")]
    DuplicateNode(K),
}

fn display_path<K: Debug>(path: &[K]) -> String {
    path.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(" -> ")
}

/// A dependency graph over keys `K`, indexed for linear-time algorithms.
#[derive(Clone)]
pub struct Dag<K> {
    keys: Vec<K>,
    index: HashMap<K, usize>,
    /// `deps[v]`: the nodes `v` depends on (internal nodes only).
    deps: Vec<Vec<usize>>,
    /// `dependents[v]`: the nodes that depend on `v`.
    dependents: Vec<Vec<usize>>,
    /// `external[v]`: dependencies of `v` outside the graph (accepted by `with_external`).
    external: Vec<Vec<K>>,
}

impl<K: Debug> Debug for Dag<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (v, k) in self.keys.iter().enumerate() {
            let deps: Vec<&K> = self.deps[v].iter().map(|&d| &self.keys[d]).collect();
            m.entry(k, &deps);
        }
        m.finish()
    }
}

/// The longest chain of dependencies by summed node estimates.
#[derive(Debug, Clone, PartialEq)]
pub struct CriticalPath<K> {
    /// Nodes from the first to run to the last.
    pub path: Vec<K>,
    /// Sum of the estimates along `path`.
    pub total: f64,
}

impl<K: Clone + Eq + Hash + Debug> Dag<K> {
    /// Builds a graph from `(node, dependencies)` pairs. Every dependency must be a node.
    pub fn new<I, D>(nodes: I) -> Result<Self, DagError<K>>
    where
        I: IntoIterator<Item = (K, D)>,
        D: IntoIterator<Item = K>,
    {
        Self::with_external(nodes, |_| false)
    }

    /// Like [`Dag::new`], but a dependency that is not a node is accepted when `is_external`
    /// says it exists elsewhere (it cannot be part of a cycle through the new nodes).
    pub fn with_external<I, D>(nodes: I, is_external: impl Fn(&K) -> bool) -> Result<Self, DagError<K>>
    where
        I: IntoIterator<Item = (K, D)>,
        D: IntoIterator<Item = K>,
    {
        let mut keys = Vec::new();
        let mut raw_deps = Vec::new();
        let mut index = HashMap::new();
        for (key, deps) in nodes {
            if index.insert(key.clone(), keys.len()).is_some() {
                return Err(DagError::DuplicateNode(key));
            }
            keys.push(key);
            raw_deps.push(deps.into_iter().collect::<Vec<K>>());
        }
        let n = keys.len();
        let mut deps = vec![Vec::new(); n];
        let mut dependents = vec![Vec::new(); n];
        let mut external = vec![Vec::new(); n];
        for (v, ds) in raw_deps.into_iter().enumerate() {
            let mut seen = HashSet::new();
            for d in ds {
                if !seen.insert(d.clone()) {
                    continue; // a repeated edge adds nothing
                }
                match index.get(&d) {
                    Some(&u) => {
                        deps[v].push(u);
                        dependents[u].push(v);
                    }
                    None if is_external(&d) => external[v].push(d),
                    None => return Err(DagError::UnknownReference { node: keys[v].clone(), missing: d }),
                }
            }
        }
        Ok(Self { keys, index, deps, dependents, external })
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The nodes in insertion order.
    pub fn nodes(&self) -> &[K] {
        &self.keys
    }

    /// Whether `key` is a node.
    pub fn contains(&self, key: &K) -> bool {
        self.index.contains_key(key)
    }

    /// The dependencies of `key` inside the graph.
    pub fn dependencies(&self, key: &K) -> Vec<&K> {
        self.index.get(key).map(|&v| self.deps[v].iter().map(|&u| &self.keys[u]).collect()).unwrap_or_default()
    }

    /// The dependencies of `key` outside the graph (only with [`Dag::with_external`]).
    pub fn external_dependencies(&self, key: &K) -> &[K] {
        self.index.get(key).map(|&v| self.external[v].as_slice()).unwrap_or(&[])
    }

    /// The nodes that depend directly on `key`.
    pub fn dependents(&self, key: &K) -> Vec<&K> {
        self.index.get(key).map(|&v| self.dependents[v].iter().map(|&u| &self.keys[u]).collect()).unwrap_or_default()
    }

    /// A cycle, if there is one, as a path from a node back to itself along dependency edges.
    /// Iterative depth-first search with three colours: O(V + E).
    pub fn find_cycle(&self) -> Option<Vec<K>> {
        const WHITE: u8 = 0;
        const GREY: u8 = 1;
        const BLACK: u8 = 2;
        let n = self.keys.len();
        let mut colour = vec![WHITE; n];
        // Stack of (node, next dependency index to visit); the grey nodes on it form the DFS path.
        let mut stack: Vec<(usize, usize)> = Vec::new();
        for root in 0..n {
            if colour[root] != WHITE {
                continue;
            }
            colour[root] = GREY;
            stack.push((root, 0));
            while let Some(&mut (v, ref mut next)) = stack.last_mut() {
                if let Some(&u) = self.deps[v].get(*next) {
                    *next += 1;
                    match colour[u] {
                        WHITE => {
                            colour[u] = GREY;
                            stack.push((u, 0));
                        }
                        GREY => {
                            // u is on the current path: the cycle is u … v → u.
                            let start = stack.iter().position(|&(w, _)| w == u).unwrap_or(0);
                            let mut path: Vec<K> = stack[start..].iter().map(|&(w, _)| self.keys[w].clone()).collect();
                            path.push(self.keys[u].clone());
                            return Some(path);
                        }
                        _ => {}
                    }
                } else {
                    colour[v] = BLACK;
                    stack.pop();
                }
            }
        }
        None
    }

    /// Nodes ordered so that every node comes after its dependencies (Kahn's algorithm; ties
    /// keep insertion order), or the cycle that makes this impossible.
    pub fn topological_order(&self) -> Result<Vec<K>, DagError<K>> {
        self.topo_indices().map(|order| order.into_iter().map(|v| self.keys[v].clone()).collect())
    }

    fn topo_indices(&self) -> Result<Vec<usize>, DagError<K>> {
        let n = self.keys.len();
        let mut unmet: Vec<usize> = self.deps.iter().map(Vec::len).collect();
        // A min-heap would give the smallest-index-first order; a FIFO over insertion order is
        // linear and deterministic, which is what callers need.
        let mut queue: std::collections::VecDeque<usize> = (0..n).filter(|&v| unmet[v] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(v) = queue.pop_front() {
            order.push(v);
            for &w in &self.dependents[v] {
                unmet[w] -= 1;
                if unmet[w] == 0 {
                    queue.push_back(w);
                }
            }
        }
        if order.len() == n {
            Ok(order)
        } else {
            let path = self.find_cycle().unwrap_or_default();
            Err(DagError::Cycle { path })
        }
    }

    /// The nodes not in `completed` whose in-graph dependencies are all in `completed`
    /// (external dependencies are checked by `external_done`). Insertion order.
    pub fn ready(&self, completed: &HashSet<K>, external_done: impl Fn(&K) -> bool) -> Vec<K> {
        (0..self.keys.len())
            .filter(|&v| !completed.contains(&self.keys[v]))
            .filter(|&v| self.deps[v].iter().all(|&u| completed.contains(&self.keys[u])))
            .filter(|&v| self.external[v].iter().all(&external_done))
            .map(|v| self.keys[v].clone())
            .collect()
    }

    /// The chain of dependencies with the largest summed estimate. `estimate` must be
    /// non-negative; ties go to the node inserted first.
    pub fn critical_path(&self, estimate: impl Fn(&K) -> f64) -> Result<CriticalPath<K>, DagError<K>> {
        let order = self.topo_indices()?;
        let n = self.keys.len();
        let mut best = vec![0.0f64; n];
        let mut via: Vec<Option<usize>> = vec![None; n];
        for &v in &order {
            let mut max_dep: Option<usize> = None;
            for &u in &self.deps[v] {
                if max_dep.is_none_or(|m| best[u] > best[m] || (best[u] == best[m] && u < m)) {
                    max_dep = Some(u);
                }
            }
            best[v] = estimate(&self.keys[v]).max(0.0) + max_dep.map_or(0.0, |m| best[m]);
            via[v] = max_dep;
        }
        let Some(end) = (0..n).fold(None, |acc: Option<usize>, v| match acc {
            Some(a) if best[a] >= best[v] => Some(a),
            _ => Some(v),
        }) else {
            return Ok(CriticalPath { path: Vec::new(), total: 0.0 });
        };
        let mut path = vec![self.keys[end].clone()];
        let mut cur = end;
        while let Some(prev) = via[cur] {
            path.push(self.keys[prev].clone());
            cur = prev;
        }
        path.reverse();
        Ok(CriticalPath { path, total: best[end] })
    }
}

impl<K: Display + Debug> DagError<K> {
    /// The cycle as `a -> b -> a` using `Display`, for messages meant for people and models.
    pub fn describe(&self) -> String {
        match self {
            DagError::Cycle { path } => {
                format!("cycle {}", path.iter().map(ToString::to_string).collect::<Vec<_>>().join(" -> "))
            }
            DagError::UnknownReference { node, missing } => format!("{node} depends on unknown {missing}"),
            DagError::DuplicateNode(k) => format!("duplicate node {k}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn graph(edges: &[(u32, &[u32])]) -> Dag<u32> {
        Dag::new(edges.iter().map(|(k, ds)| (*k, ds.to_vec()))).unwrap()
    }

    #[test]
    fn cycle_error_names_the_path() {
        let dag = graph(&[(1, &[]), (2, &[3]), (3, &[4]), (4, &[2])]);
        let path = dag.find_cycle().unwrap();
        assert_eq!(path, vec![2, 3, 4, 2]);
        let err = dag.topological_order().unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: 2 -> 3 -> 4 -> 2");
    }

    #[test]
    fn self_dependency_is_a_cycle_of_one() {
        let dag = graph(&[(7, &[7])]);
        assert_eq!(dag.find_cycle(), Some(vec![7, 7]));
    }

    #[test]
    fn unknown_reference_and_duplicates_are_rejected() {
        assert_eq!(Dag::new([(1, vec![9])]).unwrap_err(), DagError::UnknownReference { node: 1, missing: 9 });
        assert_eq!(Dag::new([(1, vec![]), (1, vec![])]).unwrap_err(), DagError::DuplicateNode(1));
        let dag = Dag::with_external([(1, vec![9])], |k| *k == 9).unwrap();
        assert_eq!(dag.external_dependencies(&1), &[9]);
        assert_eq!(dag.ready(&HashSet::new(), |_| false), Vec::<u32>::new());
        assert_eq!(dag.ready(&HashSet::new(), |_| true), vec![1]);
    }

    #[test]
    fn critical_path_follows_the_heaviest_chain() {
        // 1 -> 2 -> 4 (1+5+1 = 7) beats 1 -> 3 -> 4 (1+2+1 = 4)
        let dag = graph(&[(1, &[]), (2, &[1]), (3, &[1]), (4, &[2, 3])]);
        let est = |k: &u32| match k {
            2 => 5.0,
            3 => 2.0,
            _ => 1.0,
        };
        let cp = dag.critical_path(est).unwrap();
        assert_eq!(cp.path, vec![1, 2, 4]);
        assert_eq!(cp.total, 7.0);
    }

    // ---- property tests against naive implementations ----

    /// Random graphs on up to 9 nodes; each node depends on a random subset of nodes.
    fn arb_graph() -> impl Strategy<Value = Vec<(u32, Vec<u32>)>> {
        (1usize..9).prop_flat_map(|n| {
            proptest::collection::vec(proptest::collection::vec(0..n as u32, 0..4), n)
                .prop_map(|deps| deps.into_iter().enumerate().map(|(i, d)| (i as u32, d)).collect())
        })
    }

    /// Random acyclic graphs: node i depends only on nodes < i, then shuffled labels.
    fn arb_dag() -> impl Strategy<Value = Vec<(u32, Vec<u32>)>> {
        (1usize..9).prop_flat_map(|n| {
            proptest::collection::vec(proptest::collection::vec(any::<prop::sample::Index>(), 0..4), n).prop_map(
                move |deps| {
                    deps.into_iter()
                        .enumerate()
                        .map(|(i, ds)| {
                            let d = if i == 0 { vec![] } else { ds.iter().map(|x| x.index(i) as u32).collect() };
                            (i as u32, d)
                        })
                        .rev()
                        .collect()
                },
            )
        })
    }

    fn naive_has_cycle(g: &[(u32, Vec<u32>)]) -> bool {
        let adj: HashMap<u32, Vec<u32>> = g.iter().cloned().collect();
        // A node lies on a cycle iff it can reach itself.
        g.iter().any(|(start, _)| {
            let mut seen = HashSet::new();
            let mut stack = adj[start].clone();
            while let Some(v) = stack.pop() {
                if v == *start {
                    return true;
                }
                if seen.insert(v) {
                    stack.extend(adj[&v].iter().copied());
                }
            }
            false
        })
    }

    fn naive_longest(g: &HashMap<u32, Vec<u32>>, v: u32, est: &impl Fn(&u32) -> f64) -> f64 {
        est(&v) + g[&v].iter().map(|&d| naive_longest(g, d, est)).fold(0.0, f64::max)
    }

    proptest! {
        #[test]
        fn find_cycle_agrees_with_naive_reachability(g in arb_graph()) {
            let dag = Dag::new(g.clone()).unwrap();
            let found = dag.find_cycle();
            prop_assert_eq!(found.is_some(), naive_has_cycle(&g));
            if let Some(path) = found {
                prop_assert!(path.len() >= 2);
                prop_assert_eq!(path.first(), path.last());
                for w in path.windows(2) {
                    prop_assert!(dag.dependencies(&w[0]).contains(&&w[1]), "{:?} is not an edge", w);
                }
            }
        }

        #[test]
        fn topological_order_respects_every_edge(g in arb_graph()) {
            let dag = Dag::new(g.clone()).unwrap();
            match dag.topological_order() {
                Ok(order) => {
                    prop_assert!(!naive_has_cycle(&g));
                    prop_assert_eq!(order.len(), g.len());
                    let pos: HashMap<u32, usize> = order.iter().enumerate().map(|(i, k)| (*k, i)).collect();
                    for (node, deps) in &g {
                        for d in deps {
                            prop_assert!(pos[d] < pos[node]);
                        }
                    }
                }
                Err(DagError::Cycle { path }) => {
                    prop_assert!(naive_has_cycle(&g));
                    prop_assert!(!path.is_empty());
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }

        #[test]
        fn ready_set_matches_naive_filter(g in arb_dag(), done_mask in any::<u16>()) {
            let dag = Dag::new(g.clone()).unwrap();
            let completed: HashSet<u32> = g.iter().map(|(k, _)| *k).filter(|k| done_mask & (1 << k) != 0).collect();
            let mut got = dag.ready(&completed, |_| true);
            let mut want: Vec<u32> = g
                .iter()
                .filter(|(k, deps)| !completed.contains(k) && deps.iter().all(|d| completed.contains(d)))
                .map(|(k, _)| *k)
                .collect();
            got.sort();
            want.sort();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn critical_path_matches_brute_force(g in arb_dag(), weights in proptest::collection::vec(0u8..10, 9)) {
            let dag = Dag::new(g.clone()).unwrap();
            let est = |k: &u32| f64::from(weights[*k as usize]);
            let cp = dag.critical_path(est).unwrap();
            let adj: HashMap<u32, Vec<u32>> = g.iter().cloned().collect();
            let want = g.iter().map(|(k, _)| naive_longest(&adj, *k, &est)).fold(0.0, f64::max);
            prop_assert_eq!(cp.total, want);
            // The path is a real chain and its weights add up to the total.
            let sum: f64 = cp.path.iter().map(est).sum();
            prop_assert_eq!(sum, cp.total);
            for w in cp.path.windows(2) {
                prop_assert!(dag.dependencies(&w[1]).contains(&&w[0]));
            }
        }
    }
}
