//! Reading LightGBM's text model format (`Booster.model_to_string()`, `save_model`) into its
//! header and its trees, as written: no checks of meaning here (see `forest` for those), only of
//! syntax.
//!
//! The format is lines of `key=value`: a header up to the first `Tree=N` line, then one block of
//! `key=value` lines per tree (arrays are space-separated), then `end of trees` and sections we
//! do not read (feature importances, parameters). LightGBM writes it in
//! `GBDT::SaveModelToString` (src/boosting/gbdt_model_text.cpp) and `Tree::ToString`
//! (src/io/tree.cpp).

use std::collections::HashMap;
use std::str::FromStr;

use super::ModelError;

/// The header's lines, by key (a key without `=` maps to "").
pub(crate) struct Header(HashMap<String, String>);

impl Header {
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub(crate) fn required(&self, key: &str) -> Result<&str, ModelError> {
        self.get(key)
            .ok_or_else(|| malformed(format!("the header has no `{key}` line")))
    }
}

/// One tree's block, as written (see `Tree::ToString`).
#[derive(Debug, Default)]
pub(crate) struct TreeText {
    /// The `N` of its `Tree=N` line.
    pub(crate) index: usize,
    pub(crate) num_leaves: usize,
    pub(crate) num_cat: usize,
    pub(crate) split_feature: Vec<i64>,
    pub(crate) threshold: Vec<f64>,
    pub(crate) decision_type: Vec<i64>,
    pub(crate) left_child: Vec<i64>,
    pub(crate) right_child: Vec<i64>,
    pub(crate) leaf_value: Vec<f64>,
    /// Each split node's output as if it were a leaf (shrinkage applied, like the leaves);
    /// empty when the text has none (then the model cannot explain its scores).
    pub(crate) internal_value: Vec<f64>,
    pub(crate) cat_boundaries: Vec<i64>,
    pub(crate) cat_threshold: Vec<u32>,
    /// `is_linear=1`: the leaves are linear models over features, not constants.
    pub(crate) is_linear: bool,
}

pub(crate) fn malformed(message: String) -> ModelError {
    ModelError::Malformed { message }
}

/// Split the text into its header and its trees.
pub(crate) fn parse(text: &str) -> Result<(Header, Vec<TreeText>), ModelError> {
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
    match lines.next() {
        Some("tree") => {}
        _ => {
            return Err(malformed(
                "not a LightGBM text model: the first line is not `tree`".into(),
            ))
        }
    }
    let mut header = HashMap::new();
    let mut trees = Vec::new();
    let mut block: Option<HashMap<&str, &str>> = None;
    let mut index = 0;
    let mut ended = false;
    for line in lines {
        if line == "end of trees" {
            ended = true;
            break;
        }
        if let Some(n) = line.strip_prefix("Tree=") {
            if let Some(b) = block.take() {
                trees.push(tree(index, &b)?);
            }
            index = number(n, "Tree")?;
            block = Some(HashMap::new());
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        match block.as_mut() {
            Some(b) => {
                b.insert(key, value);
            }
            None => {
                header.insert(key.to_owned(), value.to_owned());
            }
        }
    }
    if let Some(b) = block.take() {
        trees.push(tree(index, &b)?);
    }
    if !ended {
        return Err(malformed(
            "no `end of trees` line: the text is cut short".into(),
        ));
    }
    Ok((Header(header), trees))
}

fn tree(index: usize, b: &HashMap<&str, &str>) -> Result<TreeText, ModelError> {
    let field = |key: &str| -> Result<&str, ModelError> {
        b.get(key)
            .copied()
            .ok_or_else(|| malformed(format!("tree {index} has no `{key}` line")))
    };
    let array = |key: &str| -> Result<&str, ModelError> { Ok(b.get(key).copied().unwrap_or("")) };
    let num_leaves = number(field("num_leaves")?, "num_leaves")?;
    // LightGBM writes the split arrays only for a tree with splits.
    let splits = |key: &str| -> Result<&str, ModelError> {
        if num_leaves > 1 {
            field(key)
        } else {
            array(key)
        }
    };
    let num_cat = match b.get("num_cat") {
        Some(v) => number(v, "num_cat")?,
        None => 0,
    };
    Ok(TreeText {
        index,
        num_leaves,
        num_cat,
        split_feature: numbers(splits("split_feature")?, index, "split_feature")?,
        threshold: numbers(splits("threshold")?, index, "threshold")?,
        decision_type: numbers(splits("decision_type")?, index, "decision_type")?,
        left_child: numbers(splits("left_child")?, index, "left_child")?,
        right_child: numbers(splits("right_child")?, index, "right_child")?,
        leaf_value: numbers(field("leaf_value")?, index, "leaf_value")?,
        internal_value: numbers(array("internal_value")?, index, "internal_value")?,
        cat_boundaries: if num_cat > 0 {
            numbers(field("cat_boundaries")?, index, "cat_boundaries")?
        } else {
            Vec::new()
        },
        cat_threshold: if num_cat > 0 {
            numbers(field("cat_threshold")?, index, "cat_threshold")?
        } else {
            Vec::new()
        },
        is_linear: array("is_linear")?.trim() == "1",
    })
}

pub(crate) fn number<T: FromStr>(value: &str, key: &str) -> Result<T, ModelError> {
    value
        .trim()
        .parse()
        .map_err(|_| malformed(format!("`{key}={value}` is not a valid number")))
}

fn numbers<T: FromStr>(value: &str, tree: usize, key: &str) -> Result<Vec<T>, ModelError> {
    value
        .split_ascii_whitespace()
        .map(|v| {
            v.parse().map_err(|_| {
                malformed(format!(
                    "tree {tree}: `{key}` holds `{v}`, not a valid number"
                ))
            })
        })
        .collect()
}
