//! The parser and LightGBM's decision semantics on hand-written models (the comparison with
//! LightGBM itself is tests/risk/test_model.py).

use super::*;

/// A model text of `features` features with the given tree blocks (without their `Tree=` line).
fn model_text(header: &str, trees: &[&str]) -> String {
    let mut text = format!("tree\nversion=v4\n{header}\ntree_sizes=\n\n");
    for (i, tree) in trees.iter().enumerate() {
        text.push_str(&format!("Tree={i}\n{tree}\nis_linear=0\nshrinkage=1\n\n\n"));
    }
    text.push_str("end of trees\n\nfeature_importances:\n\nparameters:\n[boosting: gbdt]\nend of parameters\n\npandas_categorical:null\n");
    text
}

const BINARY_2: &str = "num_class=1\nnum_tree_per_iteration=1\nlabel_index=0\nmax_feature_idx=1\n\
                        objective=binary sigmoid:1\nfeature_names=a b\nfeature_infos=none none";

/// One split on feature 0 with this threshold and decision type: leaf 0 (left) = -1, leaf 1
/// (right) = +1, so the raw score tells the side.
fn one_split(threshold: &str, decision_type: u8) -> RiskModel {
    let tree = format!(
        "num_leaves=2\nnum_cat=0\nsplit_feature=0\nsplit_gain=1\nthreshold={threshold}\n\
         decision_type={decision_type}\nleft_child=-1\nright_child=-2\nleaf_value=-1 1"
    );
    RiskModel::from_text(&model_text(BINARY_2, &[&tree])).unwrap()
}

fn side(model: &RiskModel, x: f64) -> &'static str {
    match model.raw_score(&[x, 0.0]).unwrap() {
        -1.0 => "left",
        1.0 => "right",
        other => panic!("raw score {other}"),
    }
}

#[test]
fn numerical_split_compares_with_less_or_equal() {
    let m = one_split("0.5", 0);
    assert_eq!(side(&m, 0.5), "left");
    assert_eq!(side(&m, 0.500_000_000_000_1), "right");
    assert_eq!(side(&m, -3.0), "left");
    assert_eq!(side(&m, f64::INFINITY), "right");
}

#[test]
fn missing_type_none_reads_nan_as_zero() {
    assert_eq!(side(&one_split("0.5", 0), f64::NAN), "left");
    assert_eq!(side(&one_split("-0.5", 0), f64::NAN), "right");
    // The default-left bit means nothing without a missing type.
    assert_eq!(side(&one_split("-0.5", 2), f64::NAN), "right");
}

#[test]
fn missing_type_nan_sends_nan_to_the_default_side() {
    // decision_type 8: missing NaN, default right; 10: default left.
    assert_eq!(side(&one_split("0.5", 8), f64::NAN), "right");
    assert_eq!(side(&one_split("-0.5", 10), f64::NAN), "left");
    // Zero is an ordinary value here.
    assert_eq!(side(&one_split("0.5", 8), 0.0), "left");
    assert_eq!(side(&one_split("-0.5", 10), 0.0), "right");
}

#[test]
fn missing_type_zero_sends_zero_and_nan_to_the_default_side() {
    // decision_type 4: missing Zero, default right; 6: default left.
    let right = one_split("0.5", 4);
    assert_eq!(side(&right, 0.0), "right");
    assert_eq!(side(&right, -0.0), "right");
    assert_eq!(side(&right, f64::NAN), "right");
    assert_eq!(side(&right, 1e-36), "right"); // within kZeroThreshold: zero
    assert_eq!(side(&right, 0.25), "left");
    let left = one_split("-0.5", 6);
    assert_eq!(side(&left, 0.0), "left");
    assert_eq!(side(&left, f64::NAN), "left");
    assert_eq!(side(&left, 0.25), "right");
}

#[test]
fn a_value_within_the_zero_threshold_is_zero() {
    // LightGBM's dense reader turns |x| <= 1e-35 into 0.0 before any decision.
    let m = one_split("5e-37", 0);
    assert_eq!(side(&m, 1e-36), "left");
    assert_eq!(side(&m, 1e-30), "right");
    // LightGBM's bin bounds around zero are +-kZeroThreshold (1.0000000180025095e-35).
    let k = f64::from(1e-35_f32);
    let below = one_split("-1.0000000180025095e-35", 0);
    assert_eq!(side(&below, -k), "right"); // 0 <= -k is false, though -k <= -k
    assert_eq!(side(&below, -1e-34), "left");
    let above = one_split("1.0000000180025095e-35", 0);
    assert_eq!(side(&above, -k), "left");
    assert_eq!(side(&above, k), "left");
    assert_eq!(side(&above, 1e-34), "right");
}

#[test]
fn many_trees_of_mixed_depths_add_up_in_order() {
    // More trees than are walked side by side, of depths 0, 1 and 2: tree i's leaves are
    // i + 0.5 (left) and -(i + 0.25) (right), or i + 0.125 for a one-leaf tree.
    let mut trees = Vec::new();
    let mut expected = [0.0_f64; 2]; // for feature 0 = -1 (left) and = 1 (right)
    for i in 0..37 {
        let (l, r) = (i as f64 + 0.5, -(i as f64 + 0.25));
        trees.push(match i % 3 {
            0 => {
                let c = i as f64 + 0.125;
                expected[0] += c;
                expected[1] += c;
                format!("num_leaves=1\nnum_cat=0\nleaf_value={c}")
            }
            1 => {
                expected[0] += l;
                expected[1] += r;
                format!(
                    "num_leaves=2\nnum_cat=0\nsplit_feature=0\nthreshold=0\ndecision_type=0\n\
                     left_child=-1\nright_child=-2\nleaf_value={l} {r}"
                )
            }
            _ => {
                // Feature 1 (always 0) <= 5 first, then feature 0.
                expected[0] += l;
                expected[1] += r;
                format!(
                    "num_leaves=3\nnum_cat=0\nsplit_feature=1 0\nthreshold=5 0\n\
                     decision_type=0 0\nleft_child=1 -1\nright_child=-3 -2\n\
                     leaf_value={l} {r} 1000"
                )
            }
        });
    }
    let trees: Vec<&str> = trees.iter().map(String::as_str).collect();
    let m = RiskModel::from_text(&model_text(BINARY_2, &trees)).unwrap();
    assert_eq!(m.num_trees(), 37);
    assert_eq!(m.raw_score(&[-1.0, 0.0]).unwrap(), expected[0]);
    assert_eq!(m.raw_score(&[1.0, 0.0]).unwrap(), expected[1]);
}

#[test]
fn categorical_split_sends_the_set_left_and_the_rest_right() {
    // Set 0 of tree: categories 1 and 3 (bits 0b1010) and 33 (word 1, bit 1).
    let tree = "num_leaves=2\nnum_cat=1\nsplit_feature=0\nsplit_gain=1\nthreshold=0\n\
                decision_type=1\nleft_child=-1\nright_child=-2\nleaf_value=-1 1\n\
                cat_boundaries=0 2\ncat_threshold=10 2";
    let m = RiskModel::from_text(&model_text(BINARY_2, &[tree])).unwrap();
    for x in [1.0, 3.0, 1.7, 33.0] {
        assert_eq!(side(&m, x), "left", "{x}");
    }
    for x in [0.0, 2.0, 4.0, 32.0, 64.0, 1e12, -1.0, -3.0, f64::NAN] {
        assert_eq!(side(&m, x), "right", "{x}");
    }
    // Truncation toward zero: -0.5 is category 0, not negative.
    assert_eq!(side(&m, -0.5), "right");
}

#[test]
fn trees_add_up_and_the_sigmoid_gives_the_probability() {
    let leaf = "num_leaves=1\nnum_cat=0\nsplit_feature=\nsplit_gain=\nthreshold=\ndecision_type=\n\
                left_child=\nright_child=\nleaf_value=0.25";
    // Feature 1 <= 2 goes to node 1 (feature 0 <= 0: leaf 0 = 0.5, else leaf 2 = 1.5);
    // else leaf 1 = -2.
    let deep = "num_leaves=3\nnum_cat=0\nsplit_feature=1 0\nsplit_gain=1 1\nthreshold=2 0\n\
                decision_type=0 0\nleft_child=1 -1\nright_child=-2 -3\nleaf_value=0.5 -2 1.5";
    let header = BINARY_2.replace("sigmoid:1", "sigmoid:2");
    let m = RiskModel::from_text(&model_text(&header, &[leaf, deep])).unwrap();
    assert_eq!(m.num_trees(), 2);
    assert_eq!(m.raw_score(&[0.0, 0.0]).unwrap(), 0.75);
    assert_eq!(m.raw_score(&[1.0, 0.0]).unwrap(), 1.75);
    assert_eq!(m.raw_score(&[1.0, 3.0]).unwrap(), -1.75);
    let p = m.probability(&[1.0, 3.0]).unwrap();
    assert_eq!(p, 1.0 / (1.0 + (3.5_f64).exp()));
    assert_eq!(m.score(&[1.0, 3.0]).unwrap(), 2); // p = 0.0293
    assert_eq!(m.score(&[1.0, 0.0]).unwrap(), 97); // p = 0.9707
}

#[test]
fn score_is_floor_of_a_hundred_p_capped_at_99() {
    assert_eq!(score_of(0.0), 0);
    assert_eq!(score_of(0.009_999), 0);
    assert_eq!(score_of(0.65), 65);
    assert_eq!(score_of(0.749_999), 74);
    assert_eq!(score_of(0.75), 75);
    assert_eq!(score_of(0.995), 99);
    assert_eq!(score_of(1.0), 99);
}

#[test]
fn header_facts_are_read() {
    let m = one_split("0.5", 0);
    assert_eq!(m.feature_names(), ["a", "b"]);
    assert_eq!(m.num_features(), 2);
    assert_eq!(m.version().len(), 16);
    assert!(m.version().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(m.version(), one_split("0.25", 0).version());
    assert_eq!(m.version(), one_split("0.5", 0).version());
}

#[test]
fn a_row_of_the_wrong_length_is_refused() {
    let m = one_split("0.5", 0);
    assert_eq!(
        m.score(&[1.0]),
        Err(ModelError::RowLength {
            expected: 2,
            got: 1
        })
    );
}

fn refused(text: &str) -> ModelError {
    RiskModel::from_text(text).expect_err("refused")
}

const STUMP: &str = "num_leaves=2\nnum_cat=0\nsplit_feature=0\nsplit_gain=1\nthreshold=0\n\
                     decision_type=0\nleft_child=-1\nright_child=-2\nleaf_value=-1 1";

#[test]
fn unsupported_models_are_refused_by_name() {
    let multiclass = BINARY_2
        .replace("num_class=1", "num_class=3")
        .replace("num_tree_per_iteration=1", "num_tree_per_iteration=3")
        .replace("binary sigmoid:1", "multiclass num_class:3");
    let e = refused(&model_text(&multiclass, &[STUMP, STUMP, STUMP]));
    assert!(
        matches!(&e, ModelError::Unsupported { message } if message.contains("3 classes")),
        "{e}"
    );
    let regression = BINARY_2.replace("binary sigmoid:1", "regression");
    let e = refused(&model_text(&regression, &[STUMP]));
    assert!(e.to_string().contains("only `binary`"), "{e}");
    let rf = format!("{BINARY_2}\naverage_output");
    assert!(refused(&model_text(&rf, &[STUMP]))
        .to_string()
        .contains("boosting=rf"));
    let linear = model_text(BINARY_2, &[STUMP]).replace("is_linear=0", "is_linear=1");
    assert!(refused(&linear).to_string().contains("linear tree"));
    let v2 = model_text(BINARY_2, &[STUMP]).replace("version=v4", "version=v2");
    assert!(matches!(refused(&v2), ModelError::Unsupported { .. }));
}

#[test]
fn malformed_models_are_refused_with_the_reason() {
    let good = model_text(BINARY_2, &[STUMP]);
    RiskModel::from_text(&good).unwrap();
    let cases = [
        ("", "first line"),
        (&good[..good.find("end of trees").unwrap()], "cut short"),
        (&good.replace("max_feature_idx=1\n", ""), "max_feature_idx"),
        (
            &good.replace("feature_names=a b", "feature_names=a"),
            "1 feature names",
        ),
        (
            &good.replace("split_feature=0", "split_feature=2"),
            "split feature 2",
        ),
        (
            &good.replace("right_child=-2", "right_child=-3"),
            "child -3",
        ),
        (
            &good.replace("right_child=-2", "right_child=-1"),
            "do not form a tree",
        ),
        (
            &good.replace("right_child=-2", "right_child=0"),
            "do not form a tree",
        ),
        (
            &good.replace("leaf_value=-1 1", "leaf_value=-1"),
            "`leaf_value` has 1",
        ),
        (
            &good.replace("leaf_value=-1 1", "leaf_value=-1 nan"),
            "leaf value is NaN",
        ),
        (&good.replace("threshold=0", "threshold=x"), "`x`"),
        (
            &good.replace("decision_type=0", "decision_type=12"),
            "missing type 3",
        ),
        (
            &good.replace("decision_type=0", "decision_type=1"),
            "category set",
        ),
        (&good.replace("sigmoid:1", "sigmoid:0"), "sigmoid"),
        (&model_text(BINARY_2, &[]), "no trees"),
    ];
    for (text, reason) in cases {
        let e = refused(text);
        assert!(
            matches!(e, ModelError::Malformed { .. }) && e.to_string().contains(reason),
            "{reason}: {e}"
        );
    }
}

/// Two trees over two features: tree 0 splits on `a` then on `b` (depth 2), tree 1 is a leaf.
fn explained_model(with_internal: bool) -> RiskModel {
    let internal = if with_internal {
        "\ninternal_value=0.5 0.2"
    } else {
        ""
    };
    let tree0 = format!(
        "num_leaves=3\nnum_cat=0\nsplit_feature=0 1\nsplit_gain=1 1\nthreshold=1 2\n\
         decision_type=0 0\nleft_child=-1 -2\nright_child=1 -3\nleaf_value=1 -1 0.4{internal}"
    );
    let tree1 = format!(
        "num_leaves=1\nleaf_value=0.25{}",
        if with_internal {
            "\ninternal_value="
        } else {
            ""
        }
    );
    RiskModel::from_text(&model_text(BINARY_2, &[&tree0, &tree1])).unwrap()
}

#[test]
fn contributions_follow_the_path_and_add_up_to_the_raw_score() {
    let m = explained_model(true);
    // a <= 1: left to the leaf 1. Bias 0.5 + 0.25, a moved it by 1 - 0.5.
    assert_eq!(
        m.contributions(&[0.0, 9.0]).unwrap(),
        (0.75, vec![0.5, 0.0])
    );
    // a > 1, b > 2: root 0.5 -> node 0.2 (a: -0.3) -> leaf 0.4 (b: +0.2).
    let (bias, c) = m.contributions(&[5.0, 9.0]).unwrap();
    assert_eq!(bias, 0.75);
    assert!(
        (c[0] - -0.3).abs() < 1e-12 && (c[1] - 0.2).abs() < 1e-12,
        "{c:?}"
    );
    for row in [[0.0, 9.0], [5.0, 9.0], [5.0, 0.0], [f64::NAN, f64::NAN]] {
        let (bias, c) = m.contributions(&row).unwrap();
        let total = bias + c.iter().sum::<f64>();
        assert!(
            (total - m.raw_score(&row).unwrap()).abs() < 1e-12,
            "{row:?}"
        );
    }
}

#[test]
fn contributions_need_internal_values() {
    let m = explained_model(false);
    assert!(m.raw_score(&[0.0, 0.0]).is_ok());
    let err = m.contributions(&[0.0, 0.0]).unwrap_err();
    assert!(err.to_string().contains("internal_value"), "{err}");
    assert!(matches!(
        explained_model(true).contributions(&[0.0]),
        Err(ModelError::RowLength { .. })
    ));
}
