"""Inventory throughput: the Rust core against the pure-Python reference model, same work.

Skipped by default (the project's pytest options include ``--benchmark-skip``); run with

    pytest benchmarks/test_bench_inventory.py --benchmark-only -s

(``--benchmark-enable`` alone does not override ``--benchmark-skip``; ``--benchmark-only`` does).
Each Rust case is paired with the same work on ``tests/reference_inventory.py`` in the same run;
with ``-s`` every case prints its throughput and the Python cases print how many times slower
they are than their Rust twin. The numbers are also stored in each benchmark's ``extra_info``
(see ``--benchmark-json``).

Targets on one core: >= 1,000,000 single-call orders/s (reserve + confirm from Python) and
>= 20,000,000 line items/s through ``reserve_batch``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from pyorder.inventory import Inventory, MatchPolicy, ReserveStatus

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.reference_inventory import ReferenceInventory

CATALOGUE = 10_000
PAIRS = 10_000  # single-call reserve + confirm pairs per round
BATCH_ORDERS = 100_000
STOCK = 10**9  # never runs out during a benchmark
T0 = 1_767_225_600_000
TIMEOUT_MS = 15 * 60 * 1000

U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]

_rust_seconds: dict[str, float] = {}  # mean seconds per round of each Rust case, by name


def record(benchmark: BenchmarkFixture, case: str, engine: str, units: int, what: str) -> None:
    """Store and print the throughput of the case just run, and the Python/Rust ratio."""
    assert benchmark.stats is not None
    mean = float(benchmark.stats.stats.mean)
    benchmark.extra_info[f"{what}_per_s"] = units / mean
    line = f"{case} [{engine}]: {units / mean:,.0f} {what}/s ({mean * 1e3:.2f} ms per round)"
    if engine == "rust":
        _rust_seconds[case] = mean
    elif case in _rust_seconds:
        ratio = mean / _rust_seconds[case]
        benchmark.extra_info["times_slower_than_rust"] = ratio
        line += f", {ratio:,.0f}x slower than Rust"
    print(f"\n{line}")


def rounds(engine: str) -> int:
    return 10 if engine == "rust" else 3


ENGINES = ["rust", "python"]


def make(engine: str) -> Any:
    return Inventory() if engine == "rust" else ReferenceInventory()


def catalogue(inv: Any, n: int = CATALOGUE) -> U32:
    skus: U32 = inv.add_skus(np.full(n, STOCK, dtype=np.int64))
    return skus


# ---------------------------------------------------------------------------- single calls
@pytest.mark.benchmark(group="single-call reserve+confirm")
@pytest.mark.parametrize("engine", ENGINES)
def test_single_call_reserve_confirm(benchmark: BenchmarkFixture, engine: str) -> None:
    inv = make(engine)
    skus = catalogue(inv).tolist()
    rng = np.random.default_rng(1)
    order = [skus[i] for i in rng.integers(0, len(skus), PAIRS)]

    def run() -> None:
        reserve, confirm = inv.reserve, inv.confirm
        for sku in order:
            confirm(reserve(sku, 1))

    benchmark.pedantic(run, rounds=rounds(engine), iterations=1, warmup_rounds=1)  # type: ignore[no-untyped-call]
    record(benchmark, "single-call", engine, PAIRS, "orders")
    assert inv.open_reservations == 0


# ---------------------------------------------------------------------------- batches
def single_line_orders(n_skus: int, n: int, seed: int = 2) -> tuple[U32, U32]:
    rng = np.random.default_rng(seed)
    skus = rng.integers(0, n_skus, n).astype(np.uint32)
    quantities = rng.integers(1, 4, n).astype(np.uint32)
    return skus, quantities


@pytest.mark.benchmark(group="reserve_batch single-line")
@pytest.mark.parametrize("engine", ENGINES)
def test_reserve_batch_single_line(benchmark: BenchmarkFixture, engine: str) -> None:
    skus, quantities = single_line_orders(CATALOGUE, BATCH_ORDERS)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        inv = make(engine)
        catalogue(inv)
        return (inv,), {}

    def run(inv: Any) -> None:
        result = inv.reserve_batch(skus, quantities, now_ms=T0)
        assert result.status[0] == ReserveStatus.OK

    benchmark.pedantic(run, setup=setup, rounds=rounds(engine), iterations=1)  # type: ignore[no-untyped-call]
    record(benchmark, "reserve_batch single-line", engine, BATCH_ORDERS, "items")


def regional_set_up(inv: Any, n_skus: int) -> None:
    """3 warehouses; every SKU stocked in two of them; regions 0-2 each prefer their own."""
    inv.add_warehouse()
    inv.add_warehouse()
    for region, order in enumerate([[0, 1, 2], [1, 2, 0], [2, 0, 1]]):
        inv.set_region(region, order)
    for sku in range(n_skus):
        inv.add_sku({sku % 3: STOCK, (sku + 1) % 3: STOCK})


def multi_line_orders(n_skus: int, n: int, seed: int = 3) -> tuple[U32, U32, U32, U64, U32]:
    """``n`` orders of 1-4 distinct SKUs each: (skus, quantities, offsets, buyers, regions)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, n)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.uint32)
    total = int(offsets[-1])
    # distinct SKUs within an order: a random start plus a stride per line
    starts = np.repeat(rng.integers(0, n_skus, n), sizes)
    line_in_order = np.arange(total) - np.repeat(offsets[:-1].astype(np.int64), sizes)
    skus = ((starts + line_in_order * 7919) % n_skus).astype(np.uint32)
    quantities = rng.integers(1, 4, total).astype(np.uint32)
    buyers = rng.integers(0, 1_000_000, n).astype(np.uint64)
    regions = rng.integers(0, 3, n).astype(np.uint32)
    return skus, quantities, offsets, buyers, regions


@pytest.mark.benchmark(group="reserve_batch multi-line, 3 warehouses, regions")
@pytest.mark.parametrize("engine", ENGINES)
def test_reserve_batch_multi_line_regions(benchmark: BenchmarkFixture, engine: str) -> None:
    skus, quantities, offsets, buyers, regions = multi_line_orders(CATALOGUE, BATCH_ORDERS)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        inv = make(engine)
        regional_set_up(inv, CATALOGUE)
        return (inv,), {}

    def run(inv: Any) -> None:
        result = inv.reserve_batch(
            skus,
            quantities,
            order_offsets=offsets,
            buyers=buyers,
            regions=regions,
            policy=MatchPolicy.PREFER_ONE_PARCEL,
            now_ms=T0,
        )
        assert all(s == ReserveStatus.OK for s in result.status[:100])

    benchmark.pedantic(run, setup=setup, rounds=rounds(engine), iterations=1)  # type: ignore[no-untyped-call]
    record(benchmark, "reserve_batch multi-line", engine, len(skus), "items")


@pytest.mark.benchmark(group="confirm_batch")
@pytest.mark.parametrize("engine", ENGINES)
def test_confirm_batch(benchmark: BenchmarkFixture, engine: str) -> None:
    skus, quantities = single_line_orders(CATALOGUE, BATCH_ORDERS)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        inv = make(engine)
        catalogue(inv)
        ids = np.asarray(inv.reserve_batch(skus, quantities, now_ms=T0).reservation)
        return (inv, ids.astype(np.uint64)), {}

    def run(inv: Any, ids: U64) -> None:
        statuses = inv.confirm_batch(ids, now_ms=T0)
        assert statuses[-1] == ReserveStatus.OK

    benchmark.pedantic(run, setup=setup, rounds=rounds(engine), iterations=1)  # type: ignore[no-untyped-call]
    record(benchmark, "confirm_batch", engine, BATCH_ORDERS, "reservations")
