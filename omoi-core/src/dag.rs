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

use std::collections::HashSet;
use std::collections::hash_map::Entry;
use std::fmt::{self, Debug, Display};
use std::hash::Hash;

use foldhash::HashMap;

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
///
/// Keys are interned once into dense `u32` indices; edges live in flat compressed-sparse-row
/// arrays (one offsets array and one target array per direction), so building and every
/// algorithm allocate a fixed number of vectors, never one per node.
#[derive(Clone)]
pub struct Dag<K> {
    keys: Vec<K>,
    index: HashMap<K, u32>,
    /// The nodes each node depends on (internal nodes only), in the order given, repeats dropped.
    deps: Csr<u32>,
    /// The nodes that depend on each node, in insertion order.
    dependents: Csr<u32>,
    /// Dependencies outside the graph (accepted by `with_external`), in the order given.
    external: Csr<K>,
}

/// Adjacency lists of every node in two flat arrays: node `v`'s list is
/// `items[start[v]..start[v + 1]]`.
#[derive(Clone)]
struct Csr<T> {
    start: Vec<usize>,
    items: Vec<T>,
}

impl<T> Csr<T> {
    fn with_capacity(nodes: usize, items: usize) -> Self {
        let mut start = Vec::with_capacity(nodes + 1);
        start.push(0);
        Self { start, items: Vec::with_capacity(items) }
    }

    /// Closes the list of the node being filled; the next pushes go to the next node.
    fn end_node(&mut self) {
        self.start.push(self.items.len());
    }

    /// The items pushed since the last [`Csr::end_node`].
    fn open(&self) -> &[T] {
        &self.items[self.start[self.start.len() - 1]..]
    }

    fn of(&self, v: u32) -> &[T] {
        let v = v as usize;
        &self.items[self.start[v]..self.start[v + 1]]
    }
}

/// The dense index of the `len`-th node.
fn node_index(len: usize) -> u32 {
    u32::try_from(len).expect("a Dag holds at most u32::MAX nodes")
}

/// Above this many external dependencies on one node, repeats are found with a hash set
/// instead of a scan.
const EXTERNAL_SCAN_LIMIT: usize = 32;

impl<K: Debug> Debug for Dag<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (v, k) in (0..).zip(&self.keys) {
            let deps: Vec<&K> = self.deps.of(v).iter().map(|&d| &self.keys[d as usize]).collect();
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
    ///
    /// # Panics
    ///
    /// With more than `u32::MAX` nodes.
    pub fn new<I, D>(nodes: I) -> Result<Self, DagError<K>>
    where
        I: IntoIterator<Item = (K, D)>,
        D: IntoIterator<Item = K>,
    {
        Self::with_external(nodes, |_| false)
    }

    /// Like [`Dag::new`], but a dependency that is not a node is accepted when `is_external`
    /// says it exists elsewhere (it cannot be part of a cycle through the new nodes).
    ///
    /// # Panics
    ///
    /// With more than `u32::MAX` nodes.
    pub fn with_external<I, D>(nodes: I, is_external: impl Fn(&K) -> bool) -> Result<Self, DagError<K>>
    where
        I: IntoIterator<Item = (K, D)>,
        D: IntoIterator<Item = K>,
    {
        // Pass 1: intern every key (a dependency may name a node given later) and keep the
        // dependencies as given, flat.
        let nodes = nodes.into_iter();
        let hint = nodes.size_hint().0;
        let mut keys = Vec::with_capacity(hint);
        let mut index = HashMap::with_capacity_and_hasher(hint, Default::default());
        let mut raw: Csr<K> = Csr::with_capacity(hint, hint);
        for (key, deps) in nodes {
            match index.entry(key) {
                Entry::Occupied(e) => return Err(DagError::DuplicateNode(e.key().clone())),
                Entry::Vacant(e) => {
                    keys.push(e.key().clone());
                    e.insert(node_index(keys.len() - 1));
                }
            }
            raw.items.extend(deps);
            raw.end_node();
        }

        // Pass 2: resolve each dependency to an index, in node order, dropping repeats.
        let n = keys.len();
        let mut deps: Csr<u32> = Csr::with_capacity(n, raw.items.len());
        let mut external: Csr<K> = Csr::with_capacity(n, 0);
        // `taken_by[u]`: the last node that took `u` as a dependency, to drop repeated edges.
        let mut taken_by = vec![u32::MAX; n];
        let mut in_degree = vec![0usize; n];
        let mut raw_items = raw.items.into_iter();
        for (v, w) in raw.start.windows(2).enumerate() {
            let v32 = node_index(v);
            let mut external_seen: Option<HashSet<K>> = None;
            for d in raw_items.by_ref().take(w[1] - w[0]) {
                if let Some(&u) = index.get(&d) {
                    if taken_by[u as usize] != v32 {
                        taken_by[u as usize] = v32;
                        deps.items.push(u);
                        in_degree[u as usize] += 1;
                    }
                    continue;
                }
                let open = external.open();
                let repeated = if open.len() <= EXTERNAL_SCAN_LIMIT {
                    open.contains(&d)
                } else {
                    external_seen.get_or_insert_with(|| open.iter().cloned().collect()).contains(&d)
                };
                if repeated {
                    continue; // a repeated edge adds nothing
                }
                if !is_external(&d) {
                    return Err(DagError::UnknownReference { node: keys[v].clone(), missing: d });
                }
                if let Some(seen) = external_seen.as_mut() {
                    seen.insert(d.clone());
                }
                external.items.push(d);
            }
            deps.end_node();
            external.end_node();
        }

        // The reverse edges: counting sort of the edges by dependency, so each node's
        // dependents come out in insertion order.
        let mut dependents: Csr<u32> = Csr::with_capacity(n, deps.items.len());
        for &count in &in_degree {
            let last = dependents.start[dependents.start.len() - 1];
            dependents.start.push(last + count);
        }
        let mut cursor = dependents.start[..n].to_vec();
        dependents.items.resize(deps.items.len(), 0);
        for v in 0..node_index(n) {
            for &u in deps.of(v) {
                dependents.items[cursor[u as usize]] = v;
                cursor[u as usize] += 1;
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
        self.index.get(key).map(|&v| self.keys_of(self.deps.of(v))).unwrap_or_default()
    }

    /// The dependencies of `key` outside the graph (only with [`Dag::with_external`]).
    pub fn external_dependencies(&self, key: &K) -> &[K] {
        self.index.get(key).map(|&v| self.external.of(v)).unwrap_or(&[])
    }

    /// The nodes that depend directly on `key`.
    pub fn dependents(&self, key: &K) -> Vec<&K> {
        self.index.get(key).map(|&v| self.keys_of(self.dependents.of(v))).unwrap_or_default()
    }

    fn keys_of(&self, nodes: &[u32]) -> Vec<&K> {
        nodes.iter().map(|&u| &self.keys[u as usize]).collect()
    }

    /// A cycle, if there is one, as a path from a node back to itself along dependency edges.
    /// Iterative depth-first search with three colours: O(V + E).
    pub fn find_cycle(&self) -> Option<Vec<K>> {
        const WHITE: u8 = 0;
        const GREY: u8 = 1;
        const BLACK: u8 = 2;
        let n = self.keys.len();
        let mut colour = vec![WHITE; n];
        // Stack of (node, position in `deps.items` of its next dependency to visit); the grey
        // nodes on it form the DFS path.
        let mut stack: Vec<(u32, usize)> = Vec::new();
        for root in 0..node_index(n) {
            if colour[root as usize] != WHITE {
                continue;
            }
            colour[root as usize] = GREY;
            stack.push((root, self.deps.start[root as usize]));
            while let Some(&mut (v, ref mut next)) = stack.last_mut() {
                if *next < self.deps.start[v as usize + 1] {
                    let u = self.deps.items[*next];
                    *next += 1;
                    match colour[u as usize] {
                        WHITE => {
                            colour[u as usize] = GREY;
                            stack.push((u, self.deps.start[u as usize]));
                        }
                        GREY => {
                            // u is on the current path: the cycle is u … v → u.
                            let start = stack.iter().position(|&(w, _)| w == u).unwrap_or(0);
                            let mut path: Vec<K> =
                                stack[start..].iter().map(|&(w, _)| self.keys[w as usize].clone()).collect();
                            path.push(self.keys[u as usize].clone());
                            return Some(path);
                        }
                        _ => {}
                    }
                } else {
                    colour[v as usize] = BLACK;
                    stack.pop();
                }
            }
        }
        None
    }

    /// Nodes ordered so that every node comes after its dependencies (Kahn's algorithm; ties
    /// keep insertion order), or the cycle that makes this impossible.
    pub fn topological_order(&self) -> Result<Vec<K>, DagError<K>> {
        self.topo_indices().map(|order| order.into_iter().map(|v| self.keys[v as usize].clone()).collect())
    }

    fn topo_indices(&self) -> Result<Vec<u32>, DagError<K>> {
        let n = self.keys.len();
        let mut unmet: Vec<usize> = self.deps.start.windows(2).map(|w| w[1] - w[0]).collect();
        // `order` doubles as the FIFO queue: nodes before `head` are done, the rest wait.
        // FIFO over insertion order is linear and deterministic, which is what callers need.
        let mut order: Vec<u32> = Vec::with_capacity(n);
        order.extend((0..node_index(n)).filter(|&v| unmet[v as usize] == 0));
        let mut head = 0;
        while let Some(&v) = order.get(head) {
            head += 1;
            for &w in self.dependents.of(v) {
                unmet[w as usize] -= 1;
                if unmet[w as usize] == 0 {
                    order.push(w);
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
        // One hash probe per node (or per completed key, whichever is fewer), then array reads.
        let n = self.keys.len();
        let mut done = vec![false; n];
        if completed.len() < n {
            for &v in completed.iter().filter_map(|k| self.index.get(k)) {
                done[v as usize] = true;
            }
        } else {
            for (d, k) in done.iter_mut().zip(&self.keys) {
                *d = completed.contains(k);
            }
        }
        (0..node_index(n))
            .filter(|&v| !done[v as usize])
            .filter(|&v| self.deps.of(v).iter().all(|&u| done[u as usize]))
            .filter(|&v| self.external.of(v).iter().all(&external_done))
            .map(|v| self.keys[v as usize].clone())
            .collect()
    }

    /// The chain of dependencies with the largest summed estimate. `estimate` must be
    /// non-negative; ties go to the node inserted first.
    pub fn critical_path(&self, estimate: impl Fn(&K) -> f64) -> Result<CriticalPath<K>, DagError<K>> {
        let order = self.topo_indices()?;
        let n = self.keys.len();
        let mut best = vec![0.0f64; n];
        let mut via: Vec<Option<u32>> = vec![None; n];
        for &v in &order {
            let mut max_dep: Option<u32> = None;
            for &u in self.deps.of(v) {
                if max_dep.is_none_or(|m| {
                    best[u as usize] > best[m as usize] || (best[u as usize] == best[m as usize] && u < m)
                }) {
                    max_dep = Some(u);
                }
            }
            best[v as usize] = estimate(&self.keys[v as usize]).max(0.0) + max_dep.map_or(0.0, |m| best[m as usize]);
            via[v as usize] = max_dep;
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
            path.push(self.keys[prev as usize].clone());
            cur = prev as usize;
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

    /// Random graphs on up to 12 nodes whose dependencies repeat and may name ids `n..n + 3`,
    /// which are external.
    fn arb_graph_with_external() -> impl Strategy<Value = (u32, Vec<(u32, Vec<u32>)>)> {
        (1u32..12).prop_flat_map(|n| {
            proptest::collection::vec(proptest::collection::vec(0..n + 3, 0..6), n as usize)
                .prop_map(move |deps| (n, deps.into_iter().enumerate().map(|(i, d)| (i as u32, d)).rev().collect()))
        })
    }

    /// The simple adjacency-list graph the flat arrays replaced: per-node vectors, repeats
    /// dropped in the order given, dependents in insertion order, Kahn's algorithm over a FIFO.
    struct Reference {
        keys: Vec<u32>,
        deps: Vec<Vec<usize>>,
        dependents: Vec<Vec<usize>>,
        external: Vec<Vec<u32>>,
    }

    impl Reference {
        fn new(g: &[(u32, Vec<u32>)]) -> Self {
            let keys: Vec<u32> = g.iter().map(|(k, _)| *k).collect();
            let pos = |k: &u32| keys.iter().position(|x| x == k);
            let mut deps = vec![Vec::new(); g.len()];
            let mut dependents = vec![Vec::new(); g.len()];
            let mut external = vec![Vec::new(); g.len()];
            for (v, (_, ds)) in g.iter().enumerate() {
                for d in ds {
                    match pos(d) {
                        Some(u) if !deps[v].contains(&u) => {
                            deps[v].push(u);
                            dependents[u].push(v);
                        }
                        None if !external[v].contains(d) => external[v].push(*d),
                        _ => {}
                    }
                }
            }
            Self { keys, deps, dependents, external }
        }

        fn topological_order(&self) -> Option<Vec<u32>> {
            let mut unmet: Vec<usize> = self.deps.iter().map(Vec::len).collect();
            let mut queue: std::collections::VecDeque<usize> =
                (0..self.keys.len()).filter(|&v| unmet[v] == 0).collect();
            let mut order = Vec::new();
            while let Some(v) = queue.pop_front() {
                order.push(self.keys[v]);
                for &w in &self.dependents[v] {
                    unmet[w] -= 1;
                    if unmet[w] == 0 {
                        queue.push_back(w);
                    }
                }
            }
            (order.len() == self.keys.len()).then_some(order)
        }

        fn ready(&self, completed: &HashSet<u32>, external_done: impl Fn(&u32) -> bool) -> Vec<u32> {
            (0..self.keys.len())
                .filter(|&v| !completed.contains(&self.keys[v]))
                .filter(|&v| self.deps[v].iter().all(|&u| completed.contains(&self.keys[u])))
                .filter(|&v| self.external[v].iter().all(&external_done))
                .map(|v| self.keys[v])
                .collect()
        }
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
        fn flat_arrays_agree_with_the_reference((n, g) in arb_graph_with_external(), done_mask in any::<u16>(), ext_mask in any::<u8>()) {
            let dag = Dag::with_external(g.clone(), |k| *k >= n).unwrap();
            let reference = Reference::new(&g);
            prop_assert_eq!(dag.nodes(), reference.keys.as_slice());
            for (v, k) in reference.keys.iter().enumerate() {
                let deps: Vec<u32> = reference.deps[v].iter().map(|&u| reference.keys[u]).collect();
                let dependents: Vec<u32> = reference.dependents[v].iter().map(|&u| reference.keys[u]).collect();
                prop_assert_eq!(dag.dependencies(k).into_iter().copied().collect::<Vec<_>>(), deps);
                prop_assert_eq!(dag.dependents(k).into_iter().copied().collect::<Vec<_>>(), dependents);
                prop_assert_eq!(dag.external_dependencies(k), reference.external[v].as_slice());
            }
            prop_assert_eq!(dag.topological_order().ok(), reference.topological_order());
            prop_assert_eq!(dag.find_cycle().is_some(), reference.topological_order().is_none());
            // Both probing strategies of `ready`: fewer completed keys than nodes, and more.
            let completed: HashSet<u32> = (0..n + 3).filter(|k| done_mask & (1 << k) != 0).collect();
            let all: HashSet<u32> = (0..n + 3).collect();
            let external_done = |k: &u32| ext_mask & (1 << (k - n)) != 0;
            for set in [&completed, &all, &HashSet::new()] {
                prop_assert_eq!(dag.ready(set, external_done), reference.ready(set, external_done));
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
