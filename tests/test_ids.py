"""Order IDs: layout, uniqueness across threads, clock handling, routing genes, decoding."""

import itertools
import threading
import time
from collections import deque

import numpy as np
import numpy.typing as npt
import pytest

from pyorder.ids import (
    ORDER_ID_EPOCH_MS,
    ORDER_ID_NODE_BITS,
    ORDER_ID_SEQUENCE_BITS,
    ORDER_ID_TIME_BITS,
    ClockMovedBackwardsError,
    OrderIdError,
    OrderIdGenerator,
    decode_order_id,
)

T = ORDER_ID_EPOCH_MS + 1_000_000_000  # a fixed "now" for fake clocks


class FakeClock:
    """Plays back queued readings, then returns ``now``, advancing it by ``step`` per call."""

    def __init__(self, now: int, step: int = 0) -> None:
        self.now = now
        self.step = step
        self.queue: deque[int] = deque()
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self.calls += 1
            if self.queue:
                return self.queue.popleft()
            value = self.now
            self.now += self.step
            return value


def fields(ids: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.uint64], ...]:
    """(unix_ms, node, sequence field) of each ID."""
    seq_bits = np.uint64(ORDER_ID_SEQUENCE_BITS)
    node_bits = np.uint64(ORDER_ID_NODE_BITS)
    unix_ms = (ids >> (seq_bits + node_bits)) + np.uint64(ORDER_ID_EPOCH_MS)
    node = (ids >> seq_bits) & np.uint64(2**ORDER_ID_NODE_BITS - 1)
    seq = ids & np.uint64(2**ORDER_ID_SEQUENCE_BITS - 1)
    return unix_ms, node, seq


def assert_all_distinct(ids: npt.NDArray[np.uint64]) -> None:
    ordered = np.sort(ids)
    assert bool(np.all(ordered[1:] != ordered[:-1])), "duplicate order IDs"


def assert_increasing(ids: npt.NDArray[np.uint64]) -> None:
    assert ids.dtype == np.uint64
    assert bool(np.all(ids[1:] > ids[:-1]))


def test_layout_constants() -> None:
    assert ORDER_ID_EPOCH_MS == 1_767_225_600_000  # 2026-01-01T00:00:00Z
    assert (ORDER_ID_TIME_BITS, ORDER_ID_NODE_BITS, ORDER_ID_SEQUENCE_BITS) == (41, 8, 14)
    assert ORDER_ID_TIME_BITS + ORDER_ID_NODE_BITS + ORDER_ID_SEQUENCE_BITS == 63


def test_known_value_and_properties() -> None:
    gen = OrderIdGenerator(5, clock=FakeClock(ORDER_ID_EPOCH_MS + 1000))
    assert (gen.node, gen.gene_bits) == (5, 0)
    first = gen.next_id()
    assert first == (1000 << 22) | (5 << 14) == 4_194_385_920
    assert gen.next_id() == first + 1
    assert list(gen.next_ids(3)) == [first + 2, first + 3, first + 4]
    assert decode_order_id(first + 3) == (ORDER_ID_EPOCH_MS + 1000, 5, 3, 0)


def test_system_clock_ids_are_current_positive_and_increasing() -> None:
    gen = OrderIdGenerator(17)
    before = time.time_ns() // 1_000_000
    ids = gen.next_ids(100_000)
    after = time.time_ns() // 1_000_000
    assert ids.shape == (100_000,)
    assert_increasing(ids)
    assert bool(np.all(ids.view(np.int64) > 0))
    unix_ms, node, _ = fields(ids)
    assert bool(np.all(node == 17))
    assert before <= int(unix_ms[0])
    assert int(unix_ms[-1]) <= after
    assert gen.next_id() > int(ids[-1])
    assert gen.next_ids(0).shape == (0,)


def test_unique_across_threads() -> None:
    gen = OrderIdGenerator(3, gene_bits=2)
    threads, batches, size = 4, 5, 110_000
    results: list[list[npt.NDArray[np.uint64]]] = [[] for _ in range(threads)]
    singles: list[list[int]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        start.wait()
        for b in range(batches):
            genes = np.arange(size, dtype=np.uint64) * np.uint64(t + b)
            results[t].append(gen.next_ids(size, genes=genes))
            singles[t].append(gen.next_id(t))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()

    for t in range(threads):
        assert len(results[t]) == batches
        for batch in results[t]:
            assert batch.shape == (size,)
            assert_increasing(batch)
        # Each thread's own IDs increase from call to call.
        own: list[int] = []
        for batch, one in zip(results[t], singles[t], strict=True):
            own += [int(batch[0]), int(batch[-1]), one]
        assert all(a < b for a, b in itertools.pairwise(own))
    everything = np.concatenate(
        [np.concatenate(r) for r in results] + [np.array(s, dtype=np.uint64) for s in singles]
    )
    assert everything.size == threads * batches * (size + 1) >= 2_000_000
    assert_all_distinct(everything)
    assert bool(np.all(fields(everything)[1] == 3))


def test_python_clock_from_several_threads() -> None:
    # The clock is a Python callable read with the GIL re-attached while other threads wait
    # for the generator: this must neither deadlock nor duplicate.
    clock = FakeClock(T, step=1)
    gen = OrderIdGenerator(9, gene_bits=4, clock=clock)
    out: list[npt.NDArray[np.uint64]] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(20):
            ids = gen.next_ids(5_000)
            one = np.array([gen.next_id(7)], dtype=np.uint64)
            with lock:
                out.extend([ids, one])

    workers = [threading.Thread(target=work) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    everything = np.concatenate(out)
    assert everything.size == 3 * 20 * 5_001
    assert_all_distinct(everything)
    # 1024 IDs per ms with 4 gene bits: 5,000 IDs need at least 5 ticks of the clock.
    assert clock.calls >= 3 * 20 * 5


def test_sequence_exhaustion_moves_to_the_next_ms() -> None:
    clock = FakeClock(T)
    clock.queue.extend([T] * 5)  # T for the first reads, then one ms further per read
    clock.now, clock.step = T + 1, 1
    gen = OrderIdGenerator(1, clock=clock)
    ids = gen.next_ids(16_384 + 100)
    assert_increasing(ids)
    unix_ms, _, seq = fields(ids)
    assert bool(np.all(unix_ms[:16_384] == T))
    assert list(seq[:16_384]) == list(range(16_384))
    assert bool(np.all(unix_ms[16_384:] == T + 1))
    assert list(seq[16_384:]) == list(range(100))


def test_clock_stepping_back_a_little_is_waited_out() -> None:
    clock = FakeClock(T)
    gen = OrderIdGenerator(2, max_backward_ms=100, clock=clock)
    first = gen.next_ids(1_000)
    # Back 40 ms, catching up over a few readings, then at T again.
    clock.queue.extend([T - 40, T - 40, T - 15, T - 1])
    second = gen.next_ids(1_000)
    assert int(second[0]) == int(first[-1]) + 1  # T's counter goes on
    both = np.concatenate([first, second])
    assert_increasing(both)
    assert bool(np.all(fields(both)[0] == T))
    # Back, then past T: a fresh millisecond.
    clock.queue.extend([T - 3, T + 5])
    third = gen.next_id()
    assert third > int(second[-1])
    assert decode_order_id(third) == (T + 5, 2, 0, 0)


def test_clock_stepping_back_far_raises() -> None:
    clock = FakeClock(T)
    gen = OrderIdGenerator(2, max_backward_ms=100, clock=clock)
    last = gen.next_id()
    clock.now = T - 500
    with pytest.raises(ClockMovedBackwardsError, match="500 ms") as info:
        gen.next_ids(10)
    assert info.value.behind_ms == 500
    assert isinstance(info.value, OrderIdError)
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(ClockMovedBackwardsError):
        gen.next_id()
    # Back at T: generation resumes right after the last ID; nothing was produced meanwhile.
    clock.now = T
    assert gen.next_id() == last + 1


def test_clock_errors_propagate() -> None:
    def broken() -> int:
        raise ZeroDivisionError("clock broke")

    with pytest.raises(ZeroDivisionError, match="clock broke"):
        OrderIdGenerator(0, clock=broken).next_id()
    with pytest.raises(OrderIdError, match="before the order-ID epoch"):
        OrderIdGenerator(0, clock=lambda: ORDER_ID_EPOCH_MS - 1).next_ids(5)
    with pytest.raises(OrderIdError, match="41-bit"):
        OrderIdGenerator(0, clock=lambda: ORDER_ID_EPOCH_MS + 2**41).next_id()


@pytest.mark.parametrize("gene_bits", [0, 1, 3, 6, 10])
def test_gene_bits(gene_bits: int) -> None:
    gen = OrderIdGenerator(11, gene_bits=gene_bits, clock=FakeClock(T, step=1))
    rng = np.random.default_rng(gene_bits)
    buyers = rng.integers(0, 2**64 - 1, size=20_000, dtype=np.uint64, endpoint=True)
    ids = gen.next_ids(buyers.size, genes=buyers)
    assert_increasing(ids)
    m = np.uint64(2**gene_bits)
    assert bool(np.all(ids % m == buyers % m))
    for i in range(0, buyers.size, 997):
        unix_ms, node, _, gene = decode_order_id(int(ids[i]), gene_bits)
        assert (node, gene) == (11, int(buyers[i]) % 2**gene_bits)
        assert unix_ms >= T
    for buyer in (0, 1, 12345, 2**64 - 1):
        assert gen.next_id(buyer) % 2**gene_bits == buyer % 2**gene_bits
    # The counter sits above the gene bits: 2**(14 - g) IDs per ms.
    _, _, seq = fields(ids)
    assert int((seq >> np.uint64(gene_bits)).max()) == 2 ** (14 - gene_bits) - 1


def test_decode_round_trip() -> None:
    gen = OrderIdGenerator(200, gene_bits=5, clock=FakeClock(T))
    genes = np.arange(0, 1_500, 3, dtype=np.uint64)  # 500 IDs: one ms holds 512
    ids = gen.next_ids(genes.size, genes=genes)
    for i, order_id in enumerate(ids.tolist()):
        unix_ms, node, sequence, gene = decode_order_id(order_id, 5)
        assert (unix_ms, node, sequence, gene) == (T, 200, i, (3 * i) % 32)
        rebuilt = ((unix_ms - ORDER_ID_EPOCH_MS) << 22) | (node << 14) | (sequence << 5) | gene
        assert rebuilt == order_id
    # Without gene bits the whole sequence field is the sequence.
    assert decode_order_id(int(ids[7])) == (T, 200, (7 << 5) | 21, 0)


@pytest.mark.parametrize(
    ("node", "gene_bits", "max_backward_ms", "message"),
    [
        (256, 0, 100, "node"),
        (-1, 0, 100, "node"),
        (0, 11, 100, "gene_bits"),
        (0, -1, 100, "gene_bits"),
        (0, 0, -1, "max_backward_ms"),
    ],
)
def test_invalid_config_raises_value_error(
    node: int, gene_bits: int, max_backward_ms: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        OrderIdGenerator(node, gene_bits=gene_bits, max_backward_ms=max_backward_ms)


def test_invalid_arguments_raise_value_error() -> None:
    assert OrderIdGenerator(255, gene_bits=10).node == 255
    with pytest.raises(ValueError, match="gene_bits"):
        decode_order_id(1, 11)
    gen = OrderIdGenerator(0)
    with pytest.raises(ValueError, match="genes"):
        gen.next_ids(3, genes=np.zeros(2, dtype=np.uint64))
