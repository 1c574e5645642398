"""The review queue's verdicts as training data: every reviewed decision of a database, with
the features its order was decided on, written as a feature matrix and its labels.

    python -m pyorder.risk.labels --database DB --out DIR [--after ID]

``DB`` is a ``postgresql://`` URL or the path of a SQLite store (opened read-only: a running
server may hold it). ``DIR`` gets ``features.npy`` (float64, one row per reviewed decision,
one column per feature of the catalogue, ``pyorder.risk.features.FEATURE_NAMES``, NaN where
missing), ``labels.npy`` (1.0: the reviewer rejected the order, 0.0: approved it), ``ids.npy``
(the orders' ids) and ``names.txt`` (the columns' names, comma-separated, as
``python -m pyorder.risk.train --names`` takes them). ``python -m pyorder.risk.ship --reviews
DIR`` trains the shipped model on the synthetic data plus these rows.

Decisions held before their features were kept (schema version 18) have a label and no
features: they are counted and left out. A feature the catalogue no longer has is dropped; one
it gained since is missing (NaN). What these labels can and cannot teach: docs/risk.md,
"Review queue".
"""

import argparse
import asyncio
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import asyncpg
import numpy as np
import numpy.typing as npt

from pyorder.risk.decisions import LABELS_SQL, label_from_row
from pyorder.risk.features import FEATURE_NAMES
from pyorder.risk.records import Label

PAGE = 10_000
"""Labels read per statement."""


class Examples(NamedTuple):
    """Reviewed decisions as training rows (catalogue columns), and those without features."""

    ids: npt.NDArray[np.int64]
    features: npt.NDArray[np.float64]
    labels: npt.NDArray[np.float64]
    without_features: int


def examples(labels: Sequence[Label], names: Sequence[str] = FEATURE_NAMES) -> Examples:
    """The labels that carry features as rows over ``names`` (NaN where missing)."""
    kept = [lb for lb in labels if lb.features is not None]
    matrix = np.full((len(kept), len(names)), np.nan)
    column = {name: i for i, name in enumerate(names)}
    for row, label in zip(matrix, kept, strict=True):
        for name, value in (label.features or {}).items():
            if name in column:
                row[column[name]] = value
    return Examples(
        ids=np.array([lb.id for lb in kept], dtype=np.int64),
        features=matrix,
        labels=np.array([lb.label for lb in kept], dtype=np.float64),
        without_features=len(labels) - len(kept),
    )


def _sqlite_labels(path: Path, after_id: int) -> Iterator[Label]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        sql = LABELS_SQL.format("?", "?")
        while rows := conn.execute(sql, (after_id, PAGE)).fetchall():
            yield from map(label_from_row, rows)
            after_id = rows[-1][0]
    finally:
        conn.close()


async def _postgres_labels(url: str, after_id: int) -> list[Label]:
    conn = await asyncpg.connect(url)
    try:
        found: list[Label] = []
        sql = LABELS_SQL.format("$1", "$2")
        while rows := await conn.fetch(sql, after_id, PAGE):
            found += map(label_from_row, rows)
            after_id = rows[-1][0]
        return found
    finally:
        await conn.close()


def read_labels(database: str, after_id: int = 0) -> list[Label]:
    """Every label of ``database`` (a ``postgresql://`` URL or a SQLite path) after
    ``after_id``, by id."""
    if database.startswith(("postgresql://", "postgres://")):
        return asyncio.run(_postgres_labels(database, after_id))
    path = Path(database)
    if not path.is_file():
        raise SystemExit(f"no SQLite store at {path}")
    return list(_sqlite_labels(path, after_id))


def write(found: Examples, directory: Path) -> None:
    """``features.npy``, ``labels.npy``, ``ids.npy`` and ``names.txt`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "features.npy", found.features)
    np.save(directory / "labels.npy", found.labels)
    np.save(directory / "ids.npy", found.ids)
    (directory / "names.txt").write_text(",".join(FEATURE_NAMES) + "\n", encoding="utf-8")


def load(directory: Path) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The (features, labels) ``write`` put in ``directory``, checked against the catalogue."""
    names = (directory / "names.txt").read_text(encoding="utf-8").strip().split(",")
    if names != list(FEATURE_NAMES):
        raise SystemExit(f"{directory}: written for another feature catalogue; export it again")
    features = np.load(directory / "features.npy")
    labels = np.load(directory / "labels.npy")
    if features.shape != (len(labels), len(names)):
        raise SystemExit(f"{directory}: {features.shape} features for {len(labels)} labels")
    return features, labels


def summary(found: Examples) -> Mapping[str, int]:
    rejected = int(found.labels.sum())
    return {
        "examples": len(found.labels),
        "rejected": rejected,
        "approved": len(found.labels) - rejected,
        "without_features": found.without_features,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pyorder.risk.labels",
        description="Export the review queue's verdicts with their features for training.",
    )
    parser.add_argument("--database", required=True, help="postgresql:// URL or SQLite path")
    parser.add_argument("--out", type=Path, required=True, help="the directory to write")
    parser.add_argument("--after", type=int, default=0, help="only decisions after this id")
    args = parser.parse_args(argv)
    found = examples(read_labels(args.database, args.after))
    write(found, args.out)
    counts = summary(found)
    print(
        f"{counts['examples']} reviewed decisions ({counts['rejected']} rejected, "
        f"{counts['approved']} approved) -> {args.out}; {counts['without_features']} without "
        "features (held before they were kept) left out"
    )


if __name__ == "__main__":
    main()
