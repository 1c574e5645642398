//! The trees of a model flattened into arrays, and their evaluation on one row of features.
//!
//! Every tree's split nodes live in one array and every leaf value in another, so that scoring
//! walks contiguous memory with no pointer chasing through boxes. A child is an `i32` as in
//! LightGBM: `>= 0` is a split node's index, `< 0` is the leaf `!child` (indices global over
//! all trees). The decisions are LightGBM's own (`Tree::NumericalDecision` and
//! `Tree::CategoricalDecision` in include/LightGBM/tree.h), so the core's raw score equals the
//! library's bit for bit.

use super::text::TreeText;
use super::ModelError;

/// LightGBM's `kZeroThreshold` (a `double` set from the float literal `1e-35f`): a feature value
/// within it of zero is zero, both in the dense-matrix reader (which drops such values, leaving
/// the 0.0 its buffer was filled with) and in the `Zero` missing type.
const ZERO_THRESHOLD: f64 = 1e-35_f32 as f64;

/// What a split node does with its feature value (the bits of LightGBM's `decision_type`:
/// 1 categorical, 2 default left, bits 2-3 the missing type None = 0, Zero = 1, NaN = 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `x <= threshold` goes left; NaN counts as 0 (missing type None).
    Numerical,
    /// Zero and NaN go to the default side; other values compare (missing type Zero).
    ZeroMissing { default_left: bool },
    /// NaN goes to the default side; other values compare (missing type NaN).
    NanMissing { default_left: bool },
    /// The value's integer part in the node's category set goes left; NaN and negative values
    /// go right.
    Categorical,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    /// The numerical threshold; for a categorical node, the index of its category set.
    threshold: f64,
    feature: u32,
    kind: Kind,
    /// Left, right.
    children: [i32; 2],
}

/// A validated, flattened sum of trees: the raw score is the sum of one leaf per tree.
#[derive(Debug, Clone)]
pub(crate) struct Forest {
    nodes: Vec<Node>,
    leaves: Vec<f64>,
    /// Each tree's root: a node, or a leaf for a tree of one leaf.
    roots: Vec<i32>,
    /// Each category set's range in `category_bits`.
    category_sets: Vec<(u32, u32)>,
    /// Bitsets of categories: bit `c % 32` of word `c / 32` set when category `c` goes left.
    category_bits: Vec<u32>,
}

impl Forest {
    /// Check and flatten the trees of a model over `num_features` features.
    pub(crate) fn build(trees: &[TreeText], num_features: usize) -> Result<Self, ModelError> {
        let mut forest = Forest {
            nodes: Vec::new(),
            leaves: Vec::new(),
            roots: Vec::with_capacity(trees.len()),
            category_sets: Vec::new(),
            category_bits: Vec::new(),
        };
        for tree in trees {
            forest.add(tree, num_features)?;
        }
        Ok(forest)
    }

    pub(crate) fn num_trees(&self) -> usize {
        self.roots.len()
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
        // Children are i32 (as in LightGBM), global over the trees.
        if self.nodes.len() + splits > i32::MAX as usize
            || self.leaves.len() + leaves > i32::MAX as usize
        {
            return Err(ModelError::Unsupported {
                message: "more than 2^31 split nodes or leaves".into(),
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

        let node_base = self.nodes.len();
        let leaf_base = self.leaves.len();
        // In range by the check above.
        let child = |c: i64| -> Result<i32, ModelError> {
            let global = if c >= 0 {
                usize::try_from(c)
                    .ok()
                    .filter(|&c| c < splits)
                    .map(|c| (c + node_base) as i32)
            } else {
                usize::try_from(!c)
                    .ok()
                    .filter(|&c| c < leaves)
                    .map(|c| !((c + leaf_base) as i32))
            };
            global.ok_or_else(|| bad(format!("child {c} is out of range")))
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
            let default_left = decision & 2 != 0;
            let kind = if decision & 1 != 0 {
                Kind::Categorical
            } else {
                match (decision >> 2) & 3 {
                    0 => Kind::Numerical,
                    1 => Kind::ZeroMissing { default_left },
                    2 => Kind::NanMissing { default_left },
                    _ => return Err(bad(format!("decision_type {decision} has missing type 3"))),
                }
            };
            let threshold = if kind == Kind::Categorical {
                let k = tree.threshold[i];
                if !(k >= 0.0 && k.fract() == 0.0 && (k as usize) < tree.num_cat) {
                    return Err(bad(format!("categorical split {i} names category set {k}")));
                }
                (sets + k as usize) as f64
            } else if tree.threshold[i].is_nan() {
                return Err(bad(format!("split {i} has threshold NaN")));
            } else {
                tree.threshold[i]
            };
            self.nodes.push(Node {
                threshold,
                feature: feature as u32,
                kind,
                children: [child(tree.left_child[i])?, child(tree.right_child[i])?],
            });
        }
        self.leaves.extend_from_slice(&tree.leaf_value);
        let root = if splits == 0 {
            !(leaf_base as i32)
        } else {
            node_base as i32
        };
        self.check_shape(t, root, splits, leaves)?;
        self.roots.push(root);
        Ok(())
    }

    /// The tree from `root` must be a tree: every node and leaf reached exactly once (so
    /// scoring ends, and no leaf is dead).
    fn check_shape(
        &self,
        t: usize,
        root: i32,
        splits: usize,
        leaves: usize,
    ) -> Result<(), ModelError> {
        let (node_base, leaf_base) = (self.nodes.len() - splits, self.leaves.len() - leaves);
        let mut seen_nodes = vec![false; splits];
        let mut seen_leaves = vec![false; leaves];
        let mut stack = vec![root];
        while let Some(n) = stack.pop() {
            let seen = if n >= 0 {
                let i = n as usize - node_base;
                stack.extend_from_slice(&self.nodes[n as usize].children);
                &mut seen_nodes[i]
            } else {
                &mut seen_leaves[!n as usize - leaf_base]
            };
            if std::mem::replace(seen, true) {
                return Err(ModelError::Malformed {
                    message: format!("tree {t}: its children do not form a tree"),
                });
            }
        }
        if seen_nodes.contains(&false) || seen_leaves.contains(&false) {
            return Err(ModelError::Malformed {
                message: format!("tree {t}: some nodes or leaves are unreachable"),
            });
        }
        Ok(())
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
        let mut sum = 0.0;
        for &root in &self.roots {
            let mut n = root;
            while n >= 0 {
                let node = &self.nodes[n as usize];
                let left = self.goes_left(node, row[node.feature as usize]);
                n = node.children[usize::from(!left)];
            }
            sum += self.leaves[!n as usize];
        }
        sum
    }

    #[inline(always)]
    fn goes_left(&self, node: &Node, x: f64) -> bool {
        // The dense-matrix reader keeps only |x| > kZeroThreshold (and NaN): the rest is 0.0.
        let x = if x.abs() <= ZERO_THRESHOLD { 0.0 } else { x };
        match node.kind {
            Kind::Numerical => {
                if x.is_nan() {
                    0.0 <= node.threshold
                } else {
                    x <= node.threshold
                }
            }
            Kind::ZeroMissing { default_left } => {
                if x.is_nan() || x == 0.0 {
                    default_left
                } else {
                    x <= node.threshold
                }
            }
            Kind::NanMissing { default_left } => {
                if x.is_nan() {
                    default_left
                } else {
                    x <= node.threshold
                }
            }
            Kind::Categorical => {
                // `static_cast<int>` truncates toward zero; NaN and values past i32's range give
                // INT_MIN on x86, so they go right with the negative ones. `as` saturates
                // instead, and a category of i32::MAX lies past every set: right as well.
                if x.is_nan() || (x as i32) < 0 {
                    return false;
                }
                let c = x as i32 as u32;
                let (start, len) = self.category_sets[node.threshold as usize];
                let word = (c / 32) as usize;
                word < len as usize
                    && self.category_bits[start as usize + word] & (1 << (c % 32)) != 0
            }
        }
    }
}
