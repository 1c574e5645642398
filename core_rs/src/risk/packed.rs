//! An allowed order's decision as its `orders.risk_packed` column (schema version 21): one
//! MessagePack array, read back by `pyorder.risk.decisions.unpack_order_risk`.
//!
//! `[score, model, decided_by, three_ds, [fired...], [[feature, value, contribution]...]]`:
//!
//! - `score`: 0-99, or nil when not scored;
//! - `model`: the model's version as 8 bytes (bin: its 16 hex digits), or nil;
//! - `decided_by`: an integer for the fixed outcomes ([`DECIDED_BY_CODES`]: 0 `default`,
//!   1 `score`, 2 `scoring_failed`), else its text (a rule id, `list:allow:buyer`);
//! - `three_ds`: a boolean;
//! - `fired`: the rule ids, as strings;
//! - a reason: the feature's index in the catalogue (`FEATURE_NAMES`, to which features are only
//!   ever appended), its value (an integer when it is one, a float, or nil when missing) and its
//!   contribution in millionths (an integer: the JSON columns' six decimals, exactly; nil if
//!   not finite, which a model's finite leaves never give, as the JSON wrote null).
//!
//! Most orders are allowed, so this column is most of what risk control adds to the bytes an
//! order is stored in: this form takes ~40 bytes where the JSON text of schema 19 took ~140, and
//! a PostgreSQL commit's time grows with its bytes (BENCHMARKS.md). MessagePack rather than a
//! format of our own: any MessagePack reader decodes it (`msgspec.msgpack` in Python).

use std::io;
use std::sync::Arc;

use rmp::encode;

use super::features::FEATURE_NAMES;
use super::policy::DecidedBy;

/// The `decided_by` texts written as their index; any other is written as text.
pub const DECIDED_BY_CODES: [&str; 3] = ["default", "score", "scoring_failed"];

/// What of a decision is packed; borrowed from an `OrderRisk`.
pub struct PackedRisk<'a> {
    pub score: Option<u8>,
    /// The model's version: 16 hex digits.
    pub model: Option<&'a str>,
    pub decided_by: &'a DecidedBy,
    pub three_ds: bool,
    pub fired: &'a [Arc<str>],
    pub reasons: &'a [(u16, f64, f64)],
}

impl PackedRisk<'_> {
    /// Append the packed decision to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.try_write(out)
            .expect("MessagePack written into a Vec cannot fail");
    }

    fn try_write(&self, out: &mut Vec<u8>) -> io::Result<()> {
        encode::write_array_len(out, 6)?;
        match self.score {
            Some(s) => encode::write_sint(out, i64::from(s)).map(drop)?,
            None => encode::write_nil(out)?,
        }
        match self.model {
            Some(m) => match hex8(m) {
                Some(bytes) => encode::write_bin(out, &bytes)?,
                None => encode::write_str(out, m)?,
            },
            None => encode::write_nil(out)?,
        }
        let code = match self.decided_by {
            DecidedBy::Default => Some(0),
            DecidedBy::Score => Some(1),
            DecidedBy::Failure => Some(2),
            DecidedBy::Rule(_) | DecidedBy::List { .. } => None,
        };
        match code {
            Some(c) => encode::write_sint(out, c).map(drop)?,
            None => encode::write_str(out, &self.decided_by.as_text())?,
        }
        encode::write_bool(out, self.three_ds)?;
        encode::write_array_len(out, len32(self.fired.len()))?;
        for f in self.fired {
            encode::write_str(out, f)?;
        }
        encode::write_array_len(out, len32(self.reasons.len()))?;
        for &(column, value, contribution) in self.reasons {
            debug_assert!(usize::from(column) < FEATURE_NAMES.len());
            encode::write_array_len(out, 3)?;
            encode::write_sint(out, i64::from(column))?;
            if !value.is_finite() {
                encode::write_nil(out)?;
            } else if value.fract() == 0.0 && value.abs() < 1e15 {
                // Counts and amounts, most values: as integers (1-9 bytes, not 9).
                encode::write_sint(out, value as i64)?;
            } else {
                encode::write_f64(out, value)?;
            }
            if contribution.is_finite() {
                encode::write_sint(out, (contribution * 1e6).round() as i64)?;
            } else {
                encode::write_nil(out)?;
            }
        }
        Ok(())
    }
}

/// 16 hex digits as their 8 bytes; None when `s` is not that.
fn hex8(s: &str) -> Option<[u8; 8]> {
    let s = s.as_bytes();
    if s.len() != 16 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 8];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("fewer than 2^32 items")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(p: &PackedRisk<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        p.write(&mut out);
        out
    }

    /// The bytes, marker by marker (MessagePack specification): what a reader in any language
    /// decodes.
    #[test]
    fn a_decision_packs_to_the_documented_array() {
        let fired: Vec<Arc<str>> = vec![Arc::from("r1")];
        let reasons = [
            (3u16, 7.0, 0.5),
            (5, f64::NAN, 0.25),
            (6, 2.5, -0.000_001_4),
        ];
        let p = PackedRisk {
            score: Some(12),
            model: Some("0c3390a79a400244"),
            decided_by: &DecidedBy::Default,
            three_ds: false,
            fired: &fired,
            reasons: &reasons,
        };
        let mut want = vec![
            0x96, 12, 0xc4, 8, 0x0c, 0x33, 0x90, 0xa7, 0x9a, 0x40, 0x02, 0x44,
        ];
        want.extend([0, 0xc2, 0x91, 0xa2, b'r', b'1', 0x93]);
        want.extend([0x93, 3, 7, 0xce, 0x00, 0x07, 0xa1, 0x20]); // 500,000 millionths
        want.extend([0x93, 5, 0xc0, 0xce, 0x00, 0x03, 0xd0, 0x90]); // nil, 250,000
        want.extend([0x93, 6, 0xcb]);
        want.extend(2.5f64.to_be_bytes());
        want.push(0xff); // -1 millionth
        assert_eq!(pack(&p), want);
    }

    #[test]
    fn unscored_rule_and_list_decisions_keep_their_text() {
        let list = DecidedBy::List {
            allow: true,
            kind: 0,
        };
        let p = PackedRisk {
            score: None,
            model: None,
            decided_by: &list,
            three_ds: true,
            fired: &[],
            reasons: &[],
        };
        let mut want = vec![0x96, 0xc0, 0xc0, 0xb0];
        want.extend(b"list:allow:buyer");
        want.extend([0xc3, 0x90, 0x90]);
        assert_eq!(pack(&p), want);
        let rule = DecidedBy::Rule(Arc::from("vip"));
        let p = PackedRisk {
            decided_by: &rule,
            model: Some("not-hex-version!"),
            ..p
        };
        let mut want = vec![0x96, 0xc0, 0xb0];
        want.extend(b"not-hex-version!");
        want.extend([0xa3, b'v', b'i', b'p', 0xc3, 0x90, 0x90]);
        assert_eq!(pack(&p), want);
    }

    /// A contribution that is not a number is nil, as the JSON's null (a model's finite leaves
    /// never give one).
    #[test]
    fn a_contribution_not_finite_is_nil() {
        let p = PackedRisk {
            score: Some(1),
            model: None,
            decided_by: &DecidedBy::Score,
            three_ds: false,
            fired: &[],
            reasons: &[(2, 1.0, f64::INFINITY)],
        };
        assert_eq!(
            pack(&p),
            [0x96, 1, 0xc0, 1, 0xc2, 0x90, 0x91, 0x93, 2, 1, 0xc0]
        );
    }

    #[test]
    fn codes_are_the_fixed_outcomes_texts() {
        for (code, decided) in [DecidedBy::Default, DecidedBy::Score, DecidedBy::Failure]
            .iter()
            .enumerate()
        {
            assert_eq!(DECIDED_BY_CODES[code], decided.as_text());
        }
    }
}
