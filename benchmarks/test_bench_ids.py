"""Order-ID throughput: the Rust generator against a pure-Python Snowflake of the same layout.

Skipped by default (the project's pytest options include ``--benchmark-skip``); run with
``pytest benchmarks/test_bench_ids.py --benchmark-only``. Compare the mean times of the
``ids`` group: one call makes ``N`` IDs. The layout allows 16,384 IDs per ms, so a batch of
``N`` IDs cannot take less than ``N / 16_384`` ms of wall-clock time, whoever generates it.
"""

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from pyorder.ids import ORDER_ID_EPOCH_MS, OrderIdGenerator

N = 1_000_000
T = TypeVar("T")

pytestmark = pytest.mark.benchmark(group="ids")


class PySnowflake:
    """Pure-Python generator of the same layout (41 | 8 | 14, same epoch, no gene bits)."""

    def __init__(self, node: int) -> None:
        self._node_part = node << 14
        self._lock = threading.Lock()
        self._last_ms = 0
        self._counter = 0

    def _now(self) -> int:
        return time.time_ns() // 1_000_000

    def next_id(self) -> int:
        with self._lock:
            now = self._now()
            if now < self._last_ms:
                raise RuntimeError("clock moved backwards")
            if now > self._last_ms:
                self._last_ms, self._counter = now, 0
            elif self._counter > 0x3FFF:
                while now <= self._last_ms:
                    now = self._now()
                self._last_ms, self._counter = now, 0
            counter = self._counter
            self._counter += 1
            return ((self._last_ms - ORDER_ID_EPOCH_MS) << 22) | self._node_part | counter

    def next_ids(self, n: int) -> list[int]:
        return [self.next_id() for _ in range(n)]


def few_rounds(benchmark: BenchmarkFixture, fn: Callable[[], T]) -> T:
    """Time ``fn`` 3 times only: the per-ID Python loops take about a second per call."""
    result: T = benchmark.pedantic(fn, rounds=3, iterations=1)  # type: ignore[no-untyped-call]
    return result


def assert_batch(ids: npt.NDArray[np.uint64] | list[int]) -> None:
    arr = np.asarray(ids, dtype=np.uint64)
    assert arr.shape == (N,)
    assert bool(np.all(arr[1:] > arr[:-1]))


def test_rust_next_ids(benchmark: BenchmarkFixture) -> None:
    gen = OrderIdGenerator(1)
    benchmark.extra_info["ids_per_call"] = N
    assert_batch(benchmark(gen.next_ids, N))


def test_rust_next_ids_with_genes(benchmark: BenchmarkFixture) -> None:
    """With 2 gene bits a ms holds 4,096 IDs, so this is bound by the clock at >= 244 ms."""
    gen = OrderIdGenerator(1, gene_bits=2)
    buyers = np.random.default_rng(0).integers(0, 2**63, size=N, dtype=np.uint64)
    benchmark.extra_info["ids_per_call"] = N
    assert_batch(benchmark(lambda: gen.next_ids(N, genes=buyers)))


def test_rust_next_id_loop(benchmark: BenchmarkFixture) -> None:
    """Per-call overhead: N single IDs from a Python loop."""
    gen = OrderIdGenerator(1)
    benchmark.extra_info["ids_per_call"] = N
    assert_batch(few_rounds(benchmark, lambda: [gen.next_id() for _ in range(N)]))


def test_python_snowflake_baseline(benchmark: BenchmarkFixture) -> None:
    gen = PySnowflake(1)
    benchmark.extra_info["ids_per_call"] = N
    assert_batch(few_rounds(benchmark, lambda: gen.next_ids(N)))
