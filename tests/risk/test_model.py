"""The risk model scored by the Rust core equals LightGBM's own predictions (real LightGBM,
trained here on seeded synthetic data with missing values and a categorical feature), training
is deterministic, and what the core cannot score is refused by name."""

import json
import re
from pathlib import Path

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pytest

from pyorder.risk import train as training
from pyorder.risk.model import (
    MODEL_FILE,
    ModelDirectoryError,
    RiskModel,
    RiskModelError,
    load,
)

NAMES = [*(f"f{i}" for i in range(9)), "agent_class"]
"""Nine quantities and one class (split as categories: ``train.CATEGORICAL_FEATURES``)."""

Matrix = npt.NDArray[np.float64]


def synthetic(seed: int, rows: int) -> tuple[Matrix, npt.NDArray[np.float64]]:
    """Rows of counts and amounts with 15 % missing (but none in ``f4``), a 12-valued class, and
    labels drawn from a logistic function of them (prevalence about 5 %)."""
    rng = np.random.default_rng(seed)
    x = rng.gamma(1.0, 2.0, size=(rows, len(NAMES)))
    x[:, 3] = rng.poisson(0.4, rows)  # mostly zero
    x[:, 9] = rng.integers(0, 12, rows)
    missing = rng.random(x.shape) < 0.15
    missing[:, 4] = False
    x[missing] = np.nan
    z = (
        0.5 * np.nan_to_num(x[:, 0])
        - 0.8 * (x[:, 3] == 0)
        + 1.5 * np.isin(x[:, 9], (2, 5, 7))
        + 1.0 * np.isnan(x[:, 1])
        + 0.2 * np.nan_to_num(x[:, 2]) * np.nan_to_num(x[:, 4])
        - 4.5
    )
    y = (rng.random(rows) < 1 / (1 + np.exp(-z))).astype(np.float64)
    return x, y


def scoring_rows() -> Matrix:
    """10,000 fresh rows, with the edge values of every decision: zero, minus zero, a value
    within LightGBM's zero threshold, infinities, and for the class NaN, negative, fractional
    and unseen values."""
    x, _ = synthetic(seed=99, rows=10_000)
    edges = [0.0, -0.0, 1e-36, -1e-36, np.inf, -np.inf, np.nan]
    for j in range(9):
        x[j::50, j] = edges[j % len(edges)]
    x[1::40, 9] = -1.0
    x[2::40, 9] = 2.5
    x[3::40, 9] = 99.0
    x[4::40, 9] = np.nan
    return x


def expected_scores(p: Matrix) -> npt.NDArray[np.uint8]:
    return np.minimum(np.floor(p * 100), 99).astype(np.uint8)


def decision_types(text: str) -> set[int]:
    return {
        int(d)
        for line in re.findall(r"^decision_type=(.*)$", text, re.MULTILINE)
        for d in line.split()
    }


@pytest.fixture(scope="module")
def trained() -> training.TrainedModel:
    x, y = synthetic(seed=1, rows=20_000)
    return training.train(x, y, feature_names=NAMES, seed=3)


def test_the_core_scores_what_lightgbm_predicts_on_10000_rows(
    trained: training.TrainedModel,
) -> None:
    text = trained.text
    # The model exercises every kind of split the core decides.
    assert re.search(r"^num_cat=[1-9]", text, re.MULTILINE), "no categorical split"
    kinds = decision_types(text)
    assert any(d & 1 for d in kinds), kinds  # categorical
    assert any((d >> 2) & 3 == 2 and d & 2 for d in kinds), kinds  # NaN missing, default left
    assert any((d >> 2) & 3 == 2 and not d & 2 for d in kinds), kinds  # ... default right
    assert any((d >> 2) & 3 == 0 and not d & 1 for d in kinds), kinds  # no missing value
    core = RiskModel.from_text(text)
    rows = scoring_rows()
    theirs = lgb.Booster(model_str=text).predict(rows)
    ours = core.predict_proba(rows)
    assert ours.shape == (10_000,)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
    scores = core.scores(rows)
    assert scores.dtype == np.uint8
    np.testing.assert_array_equal(scores, expected_scores(np.asarray(theirs)))
    assert 0 < scores.mean() < 99  # not a degenerate model
    for i in (0, 1, 2, 3, 4, 777):
        assert core.score(rows[i]) == scores[i]
        assert core.score(rows[i].tolist()) == scores[i]
        assert core.probability(rows[i]) == ours[i]
    # A strided (column-major) matrix scores the same.
    np.testing.assert_array_equal(core.predict_proba(np.asfortranarray(rows)), ours)


def test_missing_type_zero_scores_as_lightgbm_does() -> None:
    x, y = synthetic(seed=2, rows=10_000)
    model = training.train(
        x, y, feature_names=NAMES, num_trees=40, params={"zero_as_missing": True}
    )
    assert any((d >> 2) & 3 == 1 for d in decision_types(model.text)), "no zero-missing split"
    rows = scoring_rows()
    theirs = lgb.Booster(model_str=model.text).predict(rows)
    ours = RiskModel.from_text(model.text).predict_proba(rows)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)


def test_the_same_seed_gives_the_same_model() -> None:
    x, y = synthetic(seed=4, rows=5_000)
    first = training.train(x, y, seed=11, num_trees=20)
    again = training.train(x, y, seed=11, num_trees=20)
    other = training.train(x, y, seed=12, num_trees=20)
    assert first.text == again.text
    assert first.manifest.version == again.manifest.version
    assert other.text != first.text
    assert RiskModel.from_text(first.text).version == first.manifest.version


def test_the_command_writes_a_model_directory_that_loads(tmp_path: Path) -> None:
    x, y = synthetic(seed=5, rows=4_000)
    np.save(tmp_path / "f.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "model"
    training.main(
        [
            *("--features", str(tmp_path / "f.npy"), "--labels", str(tmp_path / "y.npy")),
            *("--out", str(out), "--seed", "7", "--trees", "15", "--names", ",".join(NAMES)),
        ]
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training_rows"] == 4_000
    assert manifest["positives"] == int(y.sum())
    assert manifest["prevalence"] == pytest.approx(y.mean())
    assert manifest["feature_names"] == NAMES
    assert manifest["categorical_features"] == ["agent_class"]
    assert manifest["library"] == f"lightgbm {lgb.__version__}"
    assert manifest["seed"] == 7
    assert manifest["trained_at"].endswith("Z")
    loaded = load(out, feature_names=NAMES)
    assert loaded.version == manifest["version"]
    assert loaded.model.num_trees == manifest["num_trees"] == 15
    np.testing.assert_allclose(
        loaded.model.predict_proba(x[:500]),
        lgb.Booster(model_file=str(out / MODEL_FILE)).predict(x[:500]),
        rtol=1e-12,
        atol=0,
    )


def test_a_model_directory_whose_parts_disagree_is_refused(
    tmp_path: Path, trained: training.TrainedModel
) -> None:
    training.write(trained, tmp_path)
    with pytest.raises(ModelDirectoryError, match="first difference at column 9"):
        load(tmp_path, feature_names=[*NAMES[:9], "agent"])
    text = (tmp_path / MODEL_FILE).read_text()
    changed = re.sub(r"shrinkage=[0-9.]+", "shrinkage=0.5", text, count=1)
    assert changed != text
    (tmp_path / MODEL_FILE).write_text(changed)
    with pytest.raises(ModelDirectoryError, match="changed since training"):
        load(tmp_path)


def _small(params: dict[str, object]) -> str:
    x, y = synthetic(seed=6, rows=2_000)
    labels = {"multiclass": np.arange(2_000) % 3, "regression": x[:, 0]}.get(
        str(params["objective"]), y
    )
    settings = {"verbosity": -1, "num_threads": 1, "deterministic": True, **params}
    return lgb.train(settings, lgb.Dataset(x, label=labels), num_boost_round=3).model_to_string()


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"objective": "multiclass", "num_class": 3}, "3 classes"),
        ({"objective": "regression"}, "only `binary`"),
        ({"objective": "binary", "linear_tree": True}, "linear tree"),
        (
            {"objective": "binary", "boosting": "rf", "bagging_freq": 1, "bagging_fraction": 0.5},
            "boosting=rf",
        ),
    ],
)
def test_an_unsupported_model_is_refused_by_name(params: dict[str, object], reason: str) -> None:
    with pytest.raises(RiskModelError, match=f"unsupported LightGBM model: .*{re.escape(reason)}"):
        RiskModel.from_text(_small(params))


def test_a_malformed_model_is_refused_with_the_reason(trained: training.TrainedModel) -> None:
    text = trained.text
    with pytest.raises(RiskModelError, match=r"malformed LightGBM model: .*cut short"):
        RiskModel.from_text(text[: text.index("end of trees")])
    with pytest.raises(RiskModelError, match=r"malformed LightGBM model: tree .* no `"):
        RiskModel.from_text(text[: text.index("leaf_value=", len(text) // 2)])
    with pytest.raises(RiskModelError, match=r"malformed LightGBM model: .*not a LightGBM"):
        RiskModel.from_text('{"tree_info": []}')
    broken = re.sub(r"^left_child=\S+", "left_child=99", text, count=1, flags=re.MULTILINE)
    with pytest.raises(RiskModelError, match="tree 0: child 99 is out of range"):
        RiskModel.from_text(broken)
    assert issubclass(RiskModelError, ValueError)


def test_rows_of_another_width_or_type_are_refused(trained: training.TrainedModel) -> None:
    core = RiskModel.from_text(trained.text)
    with pytest.raises(RiskModelError, match="a row of 9 features for a model of 10"):
        core.predict_proba(np.zeros((3, 9)))
    with pytest.raises(RiskModelError, match="a row of 11 features"):
        core.score([0.0] * 11)
    with pytest.raises(TypeError, match="2-D numpy array of float64"):
        core.predict_proba(np.zeros((3, 10), dtype=np.float32))
    assert core.predict_proba(np.zeros((0, 10))).shape == (0,)
