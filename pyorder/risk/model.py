"""Loading a trained risk model (a directory written by ``pyorder.risk.train``) into the Rust
core, which scores it: no LightGBM at run time.

A row of features is float64 in the model's feature order, NaN = missing. The core gives its
probability of fraud (LightGBM's own, to the last bit) and its **score**, an integer 0-99:
``floor(100 * p)`` capped at 99, so a score ``s`` means ``s% <= p < (s+1)%`` and thresholds such
as "block at 75" compare scores (``docs/risk.md``, "Model").
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pyorder._core import RiskModel, RiskModelError

__all__ = ["LoadedModel", "ModelDirectoryError", "RiskModel", "RiskModelError", "load"]

MODEL_FILE = "model.txt"
MANIFEST_FILE = "manifest.json"


class ModelDirectoryError(ValueError):
    """A model directory whose parts disagree: the text changed since training, or the feature
    names are not the ones expected."""


@dataclass(frozen=True, slots=True)
class LoadedModel:
    model: RiskModel
    """The core's model: ``score(row)``, ``probability(row)``, ``predict_proba(matrix)``."""
    manifest: dict[str, object]
    """``manifest.json`` as written by training (version, rows, prevalence, ...)."""

    @property
    def version(self) -> str:
        return self.model.version


def load(directory: Path, feature_names: Sequence[str] | None = None) -> LoadedModel:
    """Load ``directory``'s ``model.txt`` into the core and check it against its manifest: the
    same version (the text is the one trained) and the same feature names, which must also be
    ``feature_names`` when given (the columns the caller will pass).

    Raises ``RiskModelError`` for a malformed or unsupported model text, ``ModelDirectoryError``
    when the parts disagree, ``OSError`` when a file cannot be read.
    """
    manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    if not isinstance(manifest, dict):
        raise ModelDirectoryError(f"{directory / MANIFEST_FILE} is not a JSON object")
    # Bytes, not text mode: the version hashes the file exactly as written.
    model = RiskModel.from_text((directory / MODEL_FILE).read_bytes().decode())
    if manifest.get("version") != model.version:
        raise ModelDirectoryError(
            f"{directory}: the manifest is of version {manifest.get('version')!r} but "
            f"{MODEL_FILE} is version {model.version!r}: the model text changed since training"
        )
    if manifest.get("feature_names") != model.feature_names:
        raise ModelDirectoryError(
            f"{directory}: the manifest's feature names differ from the model's"
        )
    if feature_names is not None and list(feature_names) != model.feature_names:
        expected, got = list(feature_names), model.feature_names
        diff = next(
            (i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
            min(len(expected), len(got)),
        )
        raise ModelDirectoryError(
            f"{directory}: the model's features are not the expected ones: "
            f"{len(got)} against {len(expected)}, first difference at column {diff}"
        )
    return LoadedModel(model=model, manifest=manifest)
