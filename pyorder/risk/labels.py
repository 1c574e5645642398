"""Training labels from a database: the review queue's verdicts and the fraud reports, each with
the features its order was decided on, written as a feature matrix and its labels.

    python -m pyorder.risk.labels --database DB --out DIR [--after ID] [--mature-days D]

``DB`` is a ``postgresql://`` URL or the path of a SQLite store (opened read-only: a running
server may hold it). Two kinds of rows, by id:

- every reviewed decision: 1 when the reviewer rejected the order or it was reported as fraud
  later (``pyorder.risk.fraud``: a chargeback, a merchant's report), 0 when approved and never
  reported;
- every allowed order sampled with its features (``--risk-sample-allowed``): 1 when reported
  as fraud, 0 when it was charged and decided at least ``--mature-days`` (default 60) ago
  without a report; a younger one may still be charged back, and one never charged is neither
  honest nor fraud for certain: both are left out (counted). Read whole each export
  (``--after`` limits the reviewed decisions only).

``DIR`` gets ``features.npy`` (float64, one row per label, one column per feature of the
catalogue, ``pyorder.risk.features.FEATURE_NAMES``, NaN where missing), ``labels.npy`` (1.0
fraud, 0.0 not), ``ids.npy`` (the orders' ids), ``sampled.npy`` (True for a sampled allowed
order: each stands for about 1 / the sample rate of the allowed orders, a weight for whoever
trains on them) and ``names.txt`` (the columns' names, comma-separated, as ``python -m
pyorder.risk.train --names`` takes them). ``python -m pyorder.risk.ship --reviews DIR`` trains
the shipped model on the synthetic data plus these rows.

Decisions held before their features were kept (schema version 18) have a label and no
features: they are counted and left out. A feature the catalogue no longer has is dropped; one
it gained since is missing (NaN). What these labels can and cannot teach: docs/risk.md,
"Review queue" and "Fraud reports".
"""

import argparse
import asyncio
import math
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import asyncpg
import numpy as np
import numpy.typing as npt

from pyorder.kernel.clock import now_ms
from pyorder.risk.decisions import (
    LABELS_SQL,
    REPORTS_WITHOUT_FEATURES_SQL,
    SAMPLED_LABELS_SQL,
    UNLABELLED_SQL,
    label_from_row,
)
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


def _postgres(database: str) -> bool:
    return database.startswith(("postgresql://", "postgres://"))


def _sql(database: str, template: str, count: int) -> str:
    """``template`` with the store's numbered placeholders (``$n`` or ``?n``) for ``count``
    parameters."""
    mark = "$" if _postgres(database) else "?"
    return template.format(*(f"{mark}{n}" for n in range(1, count + 1)))


def _sqlite(database: str) -> sqlite3.Connection:
    """A read-only connection (a running server may hold the store)."""
    path = Path(database)
    if not path.is_file():
        raise SystemExit(f"no SQLite store at {path}")
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def _labels(database: str, template: str, after_id: int, *extra: int) -> list[Label]:
    """The labels of a statement over ``(after_id, limit, *extra)``, page by page by id."""
    sql = _sql(database, template, 2 + len(extra))
    if _postgres(database):

        async def read() -> list[Label]:
            conn = await asyncpg.connect(database)
            try:
                found: list[Label] = []
                cursor = after_id
                while rows := await conn.fetch(sql, cursor, PAGE, *extra):
                    found += map(label_from_row, rows)
                    cursor = rows[-1][0]
                return found
            finally:
                await conn.close()

        return asyncio.run(read())
    conn = _sqlite(database)
    try:
        found: list[Label] = []
        cursor = after_id
        while rows := conn.execute(sql, (cursor, PAGE, *extra)).fetchall():
            found += map(label_from_row, rows)
            cursor = rows[-1][0]
        return found
    finally:
        conn.close()


def _one(database: str, template: str, *params: int) -> tuple[int, ...]:
    """The one row of an aggregate statement, as ints."""
    sql = _sql(database, template, len(params))
    if _postgres(database):

        async def read() -> tuple[int, ...]:
            conn = await asyncpg.connect(database)
            try:
                return tuple(map(int, await conn.fetchrow(sql, *params) or ()))
            finally:
                await conn.close()

        return asyncio.run(read())
    conn = _sqlite(database)
    try:
        return tuple(map(int, conn.execute(sql, params).fetchone() or ()))
    finally:
        conn.close()


def read_labels(database: str, after_id: int = 0) -> list[Label]:
    """Every reviewed decision of ``database`` (a ``postgresql://`` URL or a SQLite path) after
    ``after_id`` as a label, by id."""
    return _labels(database, LABELS_SQL, after_id)


class Unlabelled(NamedTuple):
    """What the export leaves out besides the decisions without features."""

    young: int
    """Sampled allowed orders, charged, unreported and younger than the maturity."""
    unpaid: int
    """Sampled allowed orders never charged and unreported (nothing to charge back)."""
    reports_without_features: int
    """Fraud reports of orders whose decision kept no features (not sampled)."""


def read_sampled(database: str, mature_before_ms: int) -> tuple[list[Label], Unlabelled]:
    """Every sampled allowed decision of ``database`` that has a label, by id: reported as
    fraud (1), or charged and decided at or before ``mature_before_ms`` without a report (0);
    and what is left out. Read whole each time: an old one gains its label late (a report, or
    its maturity), so a cursor from the last export would miss it."""
    found = _labels(database, SAMPLED_LABELS_SQL, 0, mature_before_ms)
    young, unpaid = _one(database, UNLABELLED_SQL, mature_before_ms)
    (orphans,) = _one(database, REPORTS_WITHOUT_FEATURES_SQL)
    return found, Unlabelled(young, unpaid, orphans)


def write(found: Examples, directory: Path, sampled: Sequence[int] = ()) -> None:
    """``features.npy``, ``labels.npy``, ``ids.npy``, ``sampled.npy`` (whether each row's id is
    in ``sampled``) and ``names.txt`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "features.npy", found.features)
    np.save(directory / "labels.npy", found.labels)
    np.save(directory / "ids.npy", found.ids)
    np.save(directory / "sampled.npy", np.isin(found.ids, np.asarray(sampled, dtype=np.int64)))
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
        description="Export the review queue's verdicts and the fraud reports, with their"
        " features, for training.",
    )
    parser.add_argument("--database", required=True, help="postgresql:// URL or SQLite path")
    parser.add_argument("--out", type=Path, required=True, help="the directory to write")
    parser.add_argument(
        "--after",
        type=int,
        default=0,
        help="only reviewed decisions after this id (the sampled ones are read whole: an old"
        " one gains its label late)",
    )
    parser.add_argument(
        "--mature-days",
        type=float,
        default=60.0,
        help="a charged sampled allowed order without a fraud report is labelled honest once"
        " decided this many days ago (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if not (math.isfinite(args.mature_days) and args.mature_days >= 0):
        parser.error("--mature-days must be a number >= 0")
    reviewed = read_labels(args.database, args.after)
    mature_before = now_ms() - int(args.mature_days * 86_400_000)
    sampled, left = read_sampled(args.database, mature_before)
    by_id = {lb.id: lb for lb in sampled} | {lb.id: lb for lb in reviewed}
    found = examples(sorted(by_id.values()))
    write(found, args.out, [lb.id for lb in sampled])
    kept = [lb for lb in reviewed if lb.features is not None]
    rejected = sum(lb.label for lb in kept)
    fraud = sum(lb.label for lb in sampled)
    print(
        f"{len(kept)} reviewed decisions ({rejected} rejected or reported,"
        f" {len(kept) - rejected} approved); {len(sampled)} sampled allowed orders ({fraud}"
        f" reported as fraud, {len(sampled) - fraud} charged and not reported after"
        f" {args.mature_days:g} days); {len(found.labels)} rows -> {args.out}. Left out:"
        f" {len(reviewed) - len(kept)} reviewed without features (held before they were"
        f" kept); sampled orders {left.young} too recent to label and {left.unpaid} never"
        f" charged; {left.reports_without_features} fraud reports of orders not sampled"
    )


if __name__ == "__main__":
    main()
