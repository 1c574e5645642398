//! The trees of a model flattened into one array, and their evaluation on one row of features.
//!
//! Every tree's split nodes and leaves live in one array of 24-byte nodes, so that scoring walks
//! contiguous memory. A leaf is a node whose two children are itself (its value in `value`), and
//! a tree is walked for exactly its depth: a path that reaches a leaf early stays there.
//!
//! Why this shape: one walk is a chain of dependent loads (node, feature value, child), and a
//! branch per node on random rows mispredicts about half the time. Here the common decision (a
//! numerical split) is one comparison without a branch, and the trees are walked side by side,
//! so the processor overlaps their independent chains. Two things make that comparison enough:
//! the row is read once as LightGBM reads it (a value within kZeroThreshold of 0 is 0), and a
//! split where a missing value (NaN) goes left reads a copy of the row where NaN is -inf (`<=`
//! any threshold), while one where it goes right reads NaN itself (`<=` none). Only categorical
//! splits and those of missing type Zero take the full decision (`slow_goes_left`).
//!
//! Shallow trees (the shipped model's are 5 deep) are also laid out complete, in heap order
//! (`Complete`): a step computes its child's position instead of loading it, and every tree of
//! a forest takes the same number of steps, so all of them are walked level by level at once.
//!
//! Each leaf's value and the steps of its path (the feature of each split, the change of the
//! node's output) are recorded when the model is loaded (`Leaf`), so that the contributions of
//! a row (the reasons) are read off the leaves the walk reaches: nothing is recorded during it.
//!
//! The decisions are LightGBM's own (`Tree::NumericalDecision` and `Tree::CategoricalDecision` in
//! include/LightGBM/tree.h), and the leaves are added in the trees' order, so the core's raw
//! score equals the library's bit for bit.

use smallvec::SmallVec;

use super::text::TreeText;
use super::ModelError;

/// LightGBM's `kZeroThreshold` (a `double` set from the float literal `1e-35f`): a feature value
/// within it of zero is zero, both in the dense-matrix reader (which drops such values, leaving
/// the 0.0 its buffer was filled with) and in the `Zero` missing type.
const ZERO_THRESHOLD: f64 = 1e-35_f32 as f64;

// A node's flags, from LightGBM's `decision_type` (bit 0 categorical, bit 1 default left, bits
// 2-3 the missing type None = 0, Zero = 1, NaN = 2) and its threshold.
/// Categorical split: the value's integer part in the node's category set goes left; NaN and
/// negative values go right.
const CATEGORICAL: u8 = 1;
/// Zero and NaN go to the default side (missing type Zero).
const ZERO_MISSING: u8 = 2;
/// The default side is left.
const DEFAULT_LEFT: u8 = 4;
/// NaN goes left: the default side for missing types Zero and NaN; for missing type None, NaN
/// counts as 0, so where 0 goes.
const NAN_LEFT: u8 = 8;
/// Decided by `slow_goes_left`: categorical, or missing type Zero.
const SLOW: u8 = 16;

#[derive(Debug, Clone, Copy)]
struct Node {
    /// A split's threshold (`x <= threshold` goes left); for a categorical split, the index of
    /// its category set; for a leaf, its value.
    value: f64,
    /// Where the split reads its feature `f` in a row spread out by `spread`: `f` (the value
    /// as given: NaN is not `<=` any threshold, so it goes right) for a `SLOW` split or one
    /// where NaN goes right; else `f + n` (NaN read as -inf, `<=` any threshold: it goes
    /// left), so that one comparison decides.
    at: u32,
    /// Left, right; a leaf's are itself.
    children: [u32; 2],
    flags: u8,
}

/// Trees walked side by side: their walks are independent, so the processor overlaps them.
const LANES: usize = 16;

/// A row spread out for the walk (`Forest::spread`); inline up to 64 features.
type Spread = SmallVec<[f64; 2 * 64]>;
/// Per tree, the leaf a row reaches; inline up to 64 trees.
type Leaves<'a> = SmallVec<[&'a Leaf; 64]>;

/// What scoring reads of a leaf, in one place: its value and its path's steps (`path` and
/// `len` in `Forest::path_steps`; none when the model cannot explain itself).
#[derive(Debug, Clone, Copy, Default)]
struct Leaf {
    value: f64,
    path: u32,
    len: u32,
}

/// A step of a path: the split's feature and the change of the node's output it makes.
type Step = (u32, f64);

/// The deepest trees laid out complete (`Complete`): 2^10 leaf slots per tree.
const COMPLETE_MAX_DEPTH: u32 = 10;

/// A split of a complete tree: `Node` without its children, which are implicit.
#[derive(Debug, Clone, Copy)]
struct Split {
    value: f64,
    at: u32,
    flags: u8,
}

/// The trees laid out as complete binary trees of one depth `depth`, in heap order (the
/// children of split `i` are `2i + 1` and `2i + 2`): a step of the walk computes its child
/// instead of loading it, and every tree takes exactly `depth` steps. A leaf above the last
/// level is pushed down through splits that lead to copies of it whatever they decide.
#[derive(Debug, Clone)]
struct Complete {
    depth: u32,
    /// Per tree, its `2^depth - 1` splits.
    splits: Vec<Split>,
    /// Per tree, its `2^depth` leaf slots: each a copy of the leaf's `Forest::leaves` entry.
    leaves: Vec<Leaf>,
}

/// A validated, flattened sum of trees: the raw score is the sum of one leaf per tree.
#[derive(Debug, Clone)]
pub(crate) struct Forest {
    num_features: usize,
    nodes: Vec<Node>,
    /// Each tree's root and depth (the most splits on a path to a leaf).
    trees: Vec<(u32, u32)>,
    /// Each category set's range in `category_bits`.
    category_sets: Vec<(u32, u32)>,
    /// Bitsets of categories: bit `c % 32` of word `c / 32` set when category `c` goes left.
    category_bits: Vec<u32>,
    /// Each node's output as if it were a leaf (a leaf's own value), for `contributions`;
    /// empty when some tree of the text had no `internal_value` line.
    internal: Vec<f64>,
    /// Per node (used for leaves), its `Leaf`.
    leaves: Vec<Leaf>,
    /// The steps of every leaf's path from its root, root first: (the split's feature, the
    /// change of the node's output the step makes, `internal[child] - internal[split]`).
    path_steps: Vec<Step>,
    /// The trees' root outputs summed in the trees' order (the contributions' bias).
    bias: f64,
    /// The trees laid out complete, when they are shallow enough (else walked by `walk`).
    complete: Option<Complete>,
}

impl Forest {
    /// Check and flatten the trees of a model over `num_features` features.
    pub(crate) fn build(trees: &[TreeText], num_features: usize) -> Result<Self, ModelError> {
        let mut forest = Forest {
            num_features,
            nodes: Vec::new(),
            trees: Vec::with_capacity(trees.len()),
            category_sets: Vec::new(),
            category_bits: Vec::new(),
            internal: Vec::new(),
            leaves: Vec::new(),
            path_steps: Vec::new(),
            bias: 0.0,
            complete: None,
        };
        let explainable = trees
            .iter()
            .all(|t| t.internal_value.len() + 1 == t.num_leaves.max(1));
        for tree in trees {
            forest.add(tree, num_features)?;
            if explainable {
                forest.internal.extend_from_slice(&tree.internal_value);
                forest.internal.extend_from_slice(&tree.leaf_value);
            }
        }
        forest.leaves = forest
            .nodes
            .iter()
            .map(|n| Leaf {
                value: n.value,
                ..Leaf::default()
            })
            .collect();
        if forest.explainable() {
            forest.index_paths();
        }
        forest.complete = forest.lay_out_complete();
        Ok(forest)
    }

    /// The trees laid out complete (`Complete`), when they are at most `COMPLETE_MAX_DEPTH`
    /// deep and the layout takes at most 8 times the nodes' slots (a few deep trees among
    /// shallow ones would not pay).
    fn lay_out_complete(&self) -> Option<Complete> {
        let depth = self.trees.iter().map(|&(_, d)| d).max()?;
        let slots = self.trees.len().checked_mul(1 << depth)?;
        // Depth 0 (every tree a single leaf): nothing to walk.
        if depth == 0 || depth > COMPLETE_MAX_DEPTH || slots > (8 * self.nodes.len()).max(4096) {
            return None;
        }
        let inner = (1usize << depth) - 1;
        let mut c = Complete {
            depth,
            splits: Vec::with_capacity(self.trees.len() * inner),
            leaves: Vec::with_capacity(slots),
        };
        for &(root, _) in &self.trees {
            let base = c.splits.len();
            c.splits.resize(
                base + inner,
                Split {
                    value: 0.0,
                    at: 0,
                    flags: 0,
                },
            );
            let leaf_base = c.leaves.len();
            c.leaves.resize(leaf_base + inner + 1, Leaf::default());
            // (original node, heap position); a leaf is carried down to every slot below it.
            let mut stack = vec![(root, 0usize)];
            while let Some((n, i)) = stack.pop() {
                let node = self.nodes[n as usize];
                if i >= inner {
                    c.leaves[leaf_base + i - inner] = self.leaves[n as usize];
                    continue;
                }
                let [left, right] = node.children;
                if left != n {
                    c.splits[base + i] = Split {
                        value: node.value,
                        at: node.at,
                        flags: node.flags,
                    };
                }
                stack.push((left, 2 * i + 1));
                stack.push((right, 2 * i + 2));
            }
        }
        Some(c)
    }

    /// Records each leaf's path (`Leaf::path`, `path_steps`) and the bias, so that a row's
    /// contributions are read off the leaves it reaches rather than recorded during the walk.
    fn index_paths(&mut self) {
        let mut path: Vec<Step> = Vec::new();
        for &(root, _) in &self.trees {
            self.bias += self.internal[root as usize];
            // Depth first: each node with the path's length above it and the step into it.
            let mut stack: Vec<(u32, usize, Option<Step>)> = vec![(root, 0, None)];
            while let Some((n, len, step)) = stack.pop() {
                path.truncate(len);
                path.extend(step);
                let node = self.nodes[n as usize];
                if node.children == [n, n] {
                    let start = self.path_steps.len() as u32;
                    self.path_steps.extend_from_slice(&path);
                    let leaf = &mut self.leaves[n as usize];
                    (leaf.path, leaf.len) = (start, path.len() as u32);
                    continue;
                }
                let feature = node.at % self.num_features as u32;
                for child in node.children.into_iter().rev() {
                    let delta = self.internal[child as usize] - self.internal[n as usize];
                    stack.push((child, path.len(), Some((feature, delta))));
                }
            }
        }
    }

    pub(crate) fn num_trees(&self) -> usize {
        self.trees.len()
    }

    fn add(&mut self, tree: &TreeText, num_features: usize) -> Result<(), ModelError> {
        let t = tree.index;
        let bad = |what: String| ModelError::Malformed {
            message: format!("tree {t}: {what}"),
        };
        if tree.is_linear {
            return Err(ModelError::Unsupported {
                message: format!("tree {t} is a linear tree (linear_tree=true); only constant leaves are supported"),
            });
        }
        let leaves = tree.num_leaves;
        if leaves == 0 {
            return Err(bad("num_leaves is 0".into()));
        }
        let splits = leaves - 1;
        // Node indices are u32, global over the trees.
        if self.nodes.len() + splits + leaves > u32::MAX as usize {
            return Err(ModelError::Unsupported {
                message: "more than 2^32 nodes".into(),
            });
        }
        for (name, len) in [
            ("split_feature", tree.split_feature.len()),
            ("threshold", tree.threshold.len()),
            ("decision_type", tree.decision_type.len()),
            ("left_child", tree.left_child.len()),
            ("right_child", tree.right_child.len()),
        ] {
            if len != splits {
                return Err(bad(format!(
                    "`{name}` has {len} values for {splits} split nodes"
                )));
            }
        }
        if tree.leaf_value.len() != leaves {
            return Err(bad(format!(
                "`leaf_value` has {} values for {leaves} leaves",
                tree.leaf_value.len()
            )));
        }
        if let Some(v) = tree.leaf_value.iter().find(|v| !v.is_finite()) {
            return Err(bad(format!("a leaf value is {v}")));
        }
        let sets = self.add_category_sets(tree)?;

        // The tree's splits, then its leaves (LightGBM's `~leaf` children).
        let base = self.nodes.len();
        let child = |c: i64| -> Result<u32, ModelError> {
            let local = if c >= 0 {
                usize::try_from(c).ok().filter(|&c| c < splits)
            } else {
                usize::try_from(!c)
                    .ok()
                    .filter(|&c| c < leaves)
                    .map(|c| splits + c)
            };
            // In range of u32 by the check above.
            local
                .map(|l| (base + l) as u32)
                .ok_or_else(|| bad(format!("child {c} is out of range")))
        };
        for i in 0..splits {
            let feature = usize::try_from(tree.split_feature[i])
                .ok()
                .filter(|&f| f < num_features)
                .ok_or_else(|| {
                    bad(format!(
                        "split feature {} is not one of the {num_features} features",
                        tree.split_feature[i]
                    ))
                })?;
            let decision = tree.decision_type[i];
            let threshold = tree.threshold[i];
            let default_left = decision & 2 != 0;
            let zero_left = 0.0 <= threshold;
            let (flags, value) = if decision & 1 != 0 {
                let k = threshold;
                if !(k >= 0.0 && k.fract() == 0.0 && (k as usize) < tree.num_cat) {
                    return Err(bad(format!("categorical split {i} names category set {k}")));
                }
                (CATEGORICAL | SLOW, (sets + k as usize) as f64)
            } else {
                if threshold.is_nan() {
                    return Err(bad(format!("split {i} has threshold NaN")));
                }
                let (zero_missing, nan_left) = match (decision >> 2) & 3 {
                    0 => (false, zero_left),
                    1 => (true, default_left),
                    2 => (false, default_left),
                    _ => return Err(bad(format!("decision_type {decision} has missing type 3"))),
                };
                let flags = [
                    (zero_missing, ZERO_MISSING),
                    (default_left, DEFAULT_LEFT),
                    (nan_left, NAN_LEFT),
                    (zero_missing, SLOW),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .fold(0, |f, (_, bit)| f | bit);
                (flags, threshold)
            };
            let at = if flags & SLOW == 0 && flags & NAN_LEFT != 0 {
                feature + num_features
            } else {
                feature
            };
            // The spread row has 2 * num_features values: past u32 only for absurd models.
            let at = u32::try_from(at).map_err(|_| ModelError::Unsupported {
                message: format!("{num_features} features"),
            })?;
            self.nodes.push(Node {
                value,
                at,
                children: [child(tree.left_child[i])?, child(tree.right_child[i])?],
                flags,
            });
        }
        for (i, &value) in tree.leaf_value.iter().enumerate() {
            let me = (base + splits + i) as u32;
            self.nodes.push(Node {
                value,
                at: 0,
                children: [me, me],
                flags: 0,
            });
        }
        let depth = self.check_shape(t, base, splits, leaves)?;
        self.trees.push((base as u32, depth));
        Ok(())
    }

    /// The tree at `base` must be a tree: every split and leaf reached exactly once (no leaf is
    /// dead, no path loops). Returns its depth.
    fn check_shape(
        &self,
        t: usize,
        base: usize,
        splits: usize,
        leaves: usize,
    ) -> Result<u32, ModelError> {
        let mut seen = vec![false; splits + leaves];
        let mut depth = 0;
        let mut stack = vec![(base, 0)];
        while let Some((n, d)) = stack.pop() {
            if std::mem::replace(&mut seen[n - base], true) {
                return Err(ModelError::Malformed {
                    message: format!("tree {t}: its children do not form a tree"),
                });
            }
            if n - base < splits {
                for c in self.nodes[n].children {
                    stack.push((c as usize, d + 1));
                }
            } else {
                depth = depth.max(d);
            }
        }
        if seen.contains(&false) {
            return Err(ModelError::Malformed {
                message: format!("tree {t}: some nodes or leaves are unreachable"),
            });
        }
        Ok(depth)
    }

    /// Append the tree's category sets; returns the global index of its first one.
    fn add_category_sets(&mut self, tree: &TreeText) -> Result<usize, ModelError> {
        let t = tree.index;
        let first = self.category_sets.len();
        if tree.num_cat == 0 {
            return Ok(first);
        }
        let b = &tree.cat_boundaries;
        let ok = b.len() == tree.num_cat + 1
            && b[0] == 0
            && b.windows(2).all(|w| w[0] <= w[1])
            && usize::try_from(b[tree.num_cat]).ok() == Some(tree.cat_threshold.len());
        if !ok {
            return Err(ModelError::Malformed {
                message: format!(
                    "tree {t}: `cat_boundaries` does not cut `cat_threshold` into {} sets",
                    tree.num_cat
                ),
            });
        }
        let base = self.category_bits.len() as u32;
        self.category_bits.extend_from_slice(&tree.cat_threshold);
        for w in b.windows(2) {
            self.category_sets
                .push((base + w[0] as u32, (w[1] - w[0]) as u32));
        }
        Ok(first)
    }

    /// The raw score (log-odds for a binary model) of one row: the sum of its leaf in each tree,
    /// added in the trees' order as LightGBM does. `row` holds at least the model's features.
    pub(crate) fn raw_score(&self, row: &[f64]) -> f64 {
        let leaves = self.leaves(row);
        leaves.iter().fold(0.0, |sum, leaf| sum + leaf.value)
    }

    /// The leaf `row` reaches in each tree, in the trees' order.
    fn leaves(&self, row: &[f64]) -> Leaves<'_> {
        let xs = self.spread(row);
        match &self.complete {
            Some(c) => self.walk_complete(c, &xs),
            None => {
                let mut leaves = Leaves::with_capacity(self.trees.len());
                for group in self.trees.chunks(LANES) {
                    let at = self.walk(group, &xs);
                    leaves.extend(at[..group.len()].iter().map(|&n| &self.leaves[n]));
                }
                leaves
            }
        }
    }

    /// The leaves of `Self::leaves` in the complete layout: every tree a step at a time, level
    /// by level (the trees' walks are independent, so the processor overlaps them).
    fn walk_complete<'a>(&self, c: &'a Complete, xs: &[f64]) -> Leaves<'a> {
        let inner = (1usize << c.depth) - 1;
        let mut at: SmallVec<[u32; 64]> = SmallVec::from_elem(0, self.trees.len());
        for _ in 0..c.depth {
            for (splits, i) in c.splits.chunks_exact(inner).zip(at.iter_mut()) {
                let s = &splits[*i as usize];
                let left = self.goes_left(s.value, s.flags, xs[s.at as usize]);
                *i = 2 * *i + 2 - u32::from(left);
            }
        }
        c.leaves
            .chunks_exact(inner + 1)
            .zip(&at)
            .map(|(slots, &i)| &slots[i as usize - inner])
            .collect()
    }

    /// The model's features of `row` twice: as LightGBM reads them (a value within
    /// kZeroThreshold of 0 is 0, as its dense-matrix reader makes it), and the same with NaN
    /// read as -inf (see `Node::at`).
    fn spread(&self, row: &[f64]) -> Spread {
        let n = self.num_features;
        let mut xs = Spread::from_elem(0.0, 2 * n);
        let (read, nan_low) = xs.split_at_mut(n);
        // One pass without branches (the compiler makes it vector operations).
        for ((r, low), &x) in read.iter_mut().zip(nan_low.iter_mut()).zip(&row[..n]) {
            let x = if x.abs() <= ZERO_THRESHOLD { 0.0 } else { x };
            *r = x;
            *low = if x.is_nan() { f64::NEG_INFINITY } else { x };
        }
        xs
    }

    /// The leaf the row spread out in `xs` reaches in each tree of `group` (at most `LANES`
    /// trees), walked side by side, and the group's depth.
    #[inline(always)]
    fn walk(&self, group: &[(u32, u32)], xs: &[f64]) -> [usize; LANES] {
        let mut at = [0usize; LANES];
        let mut depth = 0;
        for (lane, &(root, d)) in group.iter().enumerate() {
            at[lane] = root as usize;
            depth = depth.max(d);
        }
        for _ in 0..depth {
            for n in at.iter_mut().take(group.len()) {
                let node = &self.nodes[*n];
                let left = self.goes_left(node.value, node.flags, xs[node.at as usize]);
                *n = node.children[usize::from(!left)] as usize;
            }
        }
        at
    }

    /// Whether per-feature contributions can be computed (the text had every tree's
    /// `internal_value`).
    pub(crate) fn explainable(&self) -> bool {
        !self.trees.is_empty() && self.internal.len() == self.nodes.len()
    }

    /// The raw score of `row` (as `raw_score`, to the bit: the leaves are added in the same
    /// order) and each feature's contribution to it, added into `out` (one slot per feature),
    /// with the bias: along each tree's path, the change of the node's output that a split
    /// causes goes to the split's feature (Saabas' attribution). So `bias + out.sum()` is the
    /// raw score, up to rounding. Needs `explainable()`. Returns (raw, bias).
    ///
    /// The steps of each leaf's path were recorded when the model was loaded (`index_paths`),
    /// next to its value: the walk finds the leaves, and their steps are added tree by tree.
    pub(crate) fn raw_and_contributions(&self, row: &[f64], out: &mut [f64]) -> (f64, f64) {
        let mut raw = 0.0;
        for leaf in self.leaves(row) {
            raw += leaf.value;
            let (start, end) = (leaf.path as usize, (leaf.path + leaf.len) as usize);
            for &(feature, delta) in &self.path_steps[start..end] {
                out[feature as usize] += delta;
            }
        }
        (raw, self.bias)
    }

    /// Whether `x`, the value at `node.at` of a spread row, goes left at `node` (a leaf's
    /// answer is meaningless, and harmless).
    #[inline(always)]
    fn goes_left(&self, value: f64, flags: u8, x: f64) -> bool {
        if flags & SLOW != 0 {
            return self.slow_goes_left(value, flags, x);
        }
        // NaN that goes left was read as -inf (`Node::at`).
        x <= value
    }

    /// LightGBM's decision in full, for the nodes the fast path does not decide (categorical
    /// splits, about one in twelve of the shipped model's: inline, not a call).
    #[inline]
    fn slow_goes_left(&self, value: f64, flags: u8, x: f64) -> bool {
        let flag = |bit: u8| flags & bit != 0;
        if flag(CATEGORICAL) {
            return self.category_goes_left(value, x);
        }
        if x.is_nan() {
            return flag(NAN_LEFT);
        }
        // The dense-matrix reader makes a value within kZeroThreshold of 0 exactly 0.
        let x = if x.abs() <= ZERO_THRESHOLD { 0.0 } else { x };
        if flag(ZERO_MISSING) && x == 0.0 {
            return flag(DEFAULT_LEFT);
        }
        x <= value
    }

    fn category_goes_left(&self, set: f64, x: f64) -> bool {
        // `static_cast<int>` truncates toward zero; NaN and values past i32's range give
        // INT_MIN on x86, so they go right with the negative ones. `as` saturates instead, and
        // a category of i32::MAX lies past every set: right as well.
        if x.is_nan() || (x as i32) < 0 {
            return false;
        }
        let c = x as i32 as u32;
        let (start, len) = self.category_sets[set as usize];
        let word = (c / 32) as usize;
        word < len as usize && self.category_bits[start as usize + word] & (1 << (c % 32)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RiskModel;

    /// The contributions as the walk itself takes them: each step recorded as it is walked
    /// (with the full decision at every split), then added group by group, level by level.
    fn walked(forest: &Forest, row: &[f64], out: &mut [f64]) -> f64 {
        let mut sum = 0.0;
        for group in forest.trees.chunks(LANES) {
            let mut at: Vec<usize> = group.iter().map(|&(root, _)| root as usize).collect();
            let depth = group.iter().map(|&(_, d)| d).max().unwrap_or(0);
            let mut steps = Vec::new();
            for _ in 0..depth {
                for n in at.iter_mut() {
                    let node = &forest.nodes[*n];
                    let feature = node.at as usize % forest.num_features;
                    let left = forest.slow_goes_left(node.value, node.flags, row[feature]);
                    let next = node.children[usize::from(!left)] as usize;
                    if next != *n {
                        steps.push((feature, *n, next));
                    }
                    *n = next;
                }
            }
            for &n in &at {
                sum += forest.nodes[n].value;
            }
            for (feature, from, to) in steps {
                out[feature] += forest.internal[to] - forest.internal[from];
            }
        }
        sum
    }

    #[test]
    fn scores_and_contributions_equal_those_of_a_full_walk() {
        let text = include_str!("../../../pyorder/risk/models/default/model.txt");
        let model = RiskModel::from_text(text).unwrap();
        let forest = &model.forest;
        let n = model.num_features();
        let mut x: u64 = 7;
        for _ in 0..2_000 {
            let row: Vec<f64> = (0..n)
                .map(|_| {
                    // SplitMix64: missing values, zeros, small counts and amounts.
                    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    let mut z = x;
                    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                    z ^= z >> 31;
                    match z % 8 {
                        0 => f64::NAN,
                        1 => 0.0,
                        2 => (z >> 8) as f64 % 300_000.0,
                        _ => (z >> 8) as f64 % 40.0,
                    }
                })
                .collect();
            let (mut fast, mut slow) = (vec![0.0; n], vec![0.0; n]);
            let (raw, bias) = forest.raw_and_contributions(&row, &mut fast);
            assert_eq!(raw.to_bits(), walked(forest, &row, &mut slow).to_bits());
            assert_eq!(raw.to_bits(), forest.raw_score(&row).to_bits());
            let roots: f64 = forest
                .trees
                .iter()
                .map(|&(r, _)| forest.internal[r as usize])
                .sum();
            assert_eq!(bias.to_bits(), roots.to_bits());
            // Summed in another order: equal up to rounding.
            for (a, b) in fast.iter().zip(&slow) {
                assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{row:?}");
            }
        }
    }
}
