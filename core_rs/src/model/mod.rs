//! The risk model: a LightGBM binary classifier scored inside the core, from the library's own
//! text dump (`Booster.model_to_string()`), with no LightGBM at run time.
//!
//! A model gives each row of features (`f64`, NaN = missing, in the model's feature order):
//! * a raw score, the sum of one leaf value per tree (log-odds);
//! * a probability `p = 1 / (1 + exp(-sigmoid * raw))`, LightGBM's own `binary` transform;
//! * a **score** `floor(100 * p)`, capped at 99: an integer 0-99, where score `s` means
//!   `s% <= p < (s+1)%` (and 99 holds `p >= 0.99`). Thresholds such as "block at 75" are
//!   comparisons of this score, the scale of Stripe Radar's.
//!
//! The decisions, including missing values (None / Zero / NaN missing types, default direction)
//! and categorical splits, are LightGBM's, and the sums run in the same order, so the
//! probabilities equal the library's `predict` (tests/risk/test_model.py checks 10,000 rows).
//!
//! What the core does not score it refuses when loading, rather than scoring wrong: multiclass
//! and other objectives than `binary`, linear trees, averaged (random forest) output.

mod forest;
mod text;

use sha2::{Digest, Sha256};

use forest::Forest;
use text::{malformed, number};

/// Why a model text cannot be loaded, or a row not scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The text is not a well-formed LightGBM text model.
    #[error("malformed LightGBM model: {message}")]
    Malformed { message: String },
    /// A well-formed model that uses something the core does not score.
    #[error("unsupported LightGBM model: {message}")]
    Unsupported { message: String },
    /// A row with another number of features than the model's.
    #[error("a row of {got} features for a model of {expected}")]
    RowLength { expected: usize, got: usize },
}

/// The 0-99 score of a probability: `floor(100 * p)`, capped at 99 (see the module's docs).
pub fn score_of(probability: f64) -> u8 {
    // `as` saturates: a (never produced) NaN gives 0, anything at or above 1 gives 99.
    ((probability * 100.0).floor() as u8).min(99)
}

/// A model's version (`RiskModel::version`), its 16 hex digits held inline: a decision copies
/// it with no reference to count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelVersion([u8; 16]);

impl ModelVersion {
    pub fn as_str(&self) -> &str {
        // Made only from ASCII hex digits.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A loaded binary classifier (immutable; share it between threads freely).
#[derive(Debug, Clone)]
pub struct RiskModel {
    forest: Forest,
    sigmoid: f64,
    feature_names: Vec<String>,
    version: ModelVersion,
}

impl RiskModel {
    /// Parse and check a LightGBM text model (the whole text of `model_to_string()`).
    pub fn from_text(text: &str) -> Result<Self, ModelError> {
        let (header, trees) = text::parse(text)?;
        let unsupported = |message: String| ModelError::Unsupported { message };
        let format = header.required("version")?;
        if !matches!(format, "v3" | "v4") {
            return Err(unsupported(format!(
                "format version {format} (v3 and v4 are read)"
            )));
        }
        let classes: i64 = number(header.required("num_class")?, "num_class")?;
        let per_iteration: i64 = match header.get("num_tree_per_iteration") {
            Some(v) => number(v, "num_tree_per_iteration")?,
            None => classes,
        };
        if classes != 1 || per_iteration != 1 {
            return Err(unsupported(format!(
                "{classes} classes and {per_iteration} trees per iteration: only a binary \
                 classifier (one class, one tree per iteration) is scored"
            )));
        }
        if header.get("average_output").is_some() {
            return Err(unsupported(
                "averaged output (boosting=rf): only summed trees are scored".into(),
            ));
        }
        let sigmoid = binary_sigmoid(header.required("objective")?)?;
        let max_feature: i64 = number(header.required("max_feature_idx")?, "max_feature_idx")?;
        let num_features = usize::try_from(max_feature + 1)
            .map_err(|_| malformed(format!("max_feature_idx is {max_feature}")))?;
        let feature_names: Vec<String> = header
            .required("feature_names")?
            .split(' ')
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        if feature_names.len() != num_features {
            return Err(malformed(format!(
                "{} feature names for {num_features} features",
                feature_names.len()
            )));
        }
        if trees.is_empty() {
            return Err(malformed("the model has no trees".into()));
        }
        let forest = Forest::build(&trees, num_features)?;
        let digest = Sha256::digest(text.as_bytes());
        let mut version = [0u8; 16];
        for (i, b) in digest[..8].iter().enumerate() {
            let hex = b"0123456789abcdef";
            version[2 * i] = hex[usize::from(b >> 4)];
            version[2 * i + 1] = hex[usize::from(b & 15)];
        }
        let version = ModelVersion(version);
        Ok(RiskModel {
            forest,
            sigmoid,
            feature_names,
            version,
        })
    }

    /// The model's version: the first 16 hex digits of the SHA-256 of its text.
    pub fn version(&self) -> &str {
        self.version.as_str()
    }

    /// The version as a value to copy (`ModelVersion`).
    pub fn version_id(&self) -> ModelVersion {
        self.version
    }

    /// The features a row holds, in order.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    pub fn num_features(&self) -> usize {
        self.feature_names.len()
    }

    pub fn num_trees(&self) -> usize {
        self.forest.num_trees()
    }

    /// The raw score (log-odds) of one row of `num_features()` values.
    pub fn raw_score(&self, row: &[f64]) -> Result<f64, ModelError> {
        if row.len() != self.num_features() {
            return Err(ModelError::RowLength {
                expected: self.num_features(),
                got: row.len(),
            });
        }
        Ok(self.forest.raw_score(row))
    }

    /// The probability of the positive class (fraud) for one row, in [0, 1].
    pub fn probability(&self, row: &[f64]) -> Result<f64, ModelError> {
        let raw = self.raw_score(row)?;
        // LightGBM's `BinaryLogloss::ConvertOutput`, operation for operation.
        Ok(1.0 / (1.0 + (-self.sigmoid * raw).exp()))
    }

    /// Why one row scores what it does: the raw score's bias (the trees' root outputs) and each
    /// feature's contribution to it (log-odds; positive pushes towards fraud). They add up to
    /// [`raw_score`](Self::raw_score) up to rounding.
    pub fn contributions(&self, row: &[f64]) -> Result<(f64, Vec<f64>), ModelError> {
        if row.len() != self.num_features() {
            return Err(ModelError::RowLength {
                expected: self.num_features(),
                got: row.len(),
            });
        }
        if !self.forest.explainable() {
            return Err(ModelError::Unsupported {
                message:
                    "the model text has no `internal_value` lines: it cannot explain its scores"
                        .into(),
            });
        }
        let mut out = vec![0.0; self.num_features()];
        let (_, bias) = self.forest.raw_and_contributions(row, &mut out);
        Ok((bias, out))
    }

    /// The probability of one row and each feature's contribution to its raw score, added
    /// into `out`, in one walk of the trees (the order path's call: a score and its reasons).
    /// The probability is `probability`'s, to the bit. Falls back to the probability alone
    /// (`out` untouched) for a model that cannot explain itself.
    pub fn probability_and_contributions(
        &self,
        row: &[f64],
        out: &mut [f64],
    ) -> Result<f64, ModelError> {
        if row.len() != self.num_features() || out.len() != self.num_features() {
            return Err(ModelError::RowLength {
                expected: self.num_features(),
                got: row.len().min(out.len()),
            });
        }
        if !self.forest.explainable() {
            return self.probability(row);
        }
        let (raw, _) = self.forest.raw_and_contributions(row, out);
        Ok(1.0 / (1.0 + (-self.sigmoid * raw).exp()))
    }

    /// The 0-99 score of one row ([`score_of`] its probability).
    pub fn score(&self, row: &[f64]) -> Result<u8, ModelError> {
        self.probability(row).map(score_of)
    }
}

/// The sigmoid parameter of a `binary sigmoid:K` objective line; any other objective is refused.
fn binary_sigmoid(objective: &str) -> Result<f64, ModelError> {
    let mut words = objective.split_ascii_whitespace();
    if words.next() != Some("binary") {
        return Err(ModelError::Unsupported {
            message: format!("objective `{objective}`: only `binary` is scored"),
        });
    }
    let mut sigmoid = None;
    for word in words {
        match word.split_once(':') {
            Some(("sigmoid", k)) => sigmoid = Some(number::<f64>(k, "sigmoid")?),
            _ => {
                return Err(ModelError::Unsupported {
                    message: format!("objective `{objective}`: unknown option `{word}`"),
                })
            }
        }
    }
    match sigmoid {
        Some(k) if k.is_finite() && k > 0.0 => Ok(k),
        _ => Err(malformed(format!(
            "objective `{objective}` has no positive `sigmoid:K`"
        ))),
    }
}

#[cfg(test)]
mod tests;
