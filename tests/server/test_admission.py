"""The adaptive in-flight bound of the placing routes (``pyorder.server.admission``), driven
with made-up latencies: each request is answered as if admitted ``took`` seconds ago."""

import time

from pyorder.server.admission import NORMAL_MIN_REQUESTS, Admission


def _interval(adm: Admission, latencies: list[float], in_flight: int = 1) -> None:
    """One interval in which requests with these latencies are answered, ``in_flight`` of them
    in flight each time; the interval ends with the last one."""
    for i, took in enumerate(latencies):
        if i == len(latencies) - 1:
            adm._window_end = time.perf_counter()  # this answer closes the interval
        adm.in_flight = in_flight
        adm.done(time.perf_counter() - took)


def test_a_standing_queue_shrinks_the_bound_though_some_requests_stay_fast() -> None:
    # CoDel's minimum would not shed here: one request in ten is fast.
    adm = Admission(max_limit=1024, min_limit=32, target_s=0.004)
    _interval(adm, [0.0005] + [0.008] * 9, in_flight=160)
    assert adm.limit == 768
    for _ in range(30):
        _interval(adm, [0.0005] + [0.008] * 9, in_flight=160)
    assert adm.limit == 32  # never below min_limit


def test_the_bound_grows_back_when_requests_at_it_are_fast() -> None:
    adm = Admission(max_limit=1024, min_limit=32, target_s=0.004)
    adm.limit = 64
    _interval(adm, [0.001] * 20, in_flight=64)  # at the bound, fast
    assert adm.limit == 68
    _interval(adm, [0.001] * 20, in_flight=10)  # below it: no reason to grow
    assert adm.limit == 68


def test_the_target_follows_the_normal_latency_once_seen() -> None:
    adm = Admission(max_limit=1024, min_limit=32, target_s=0.010, factor=2.0)
    assert adm.target == 0.010
    assert adm.normal_s is None
    _interval(adm, [0.001] * (NORMAL_MIN_REQUESTS - 1), in_flight=8)  # too few to tell
    assert adm.normal_s is None
    _interval(adm, [0.0015] * NORMAL_MIN_REQUESTS, in_flight=8)
    assert adm.normal_s is not None
    assert abs(adm.normal_s - 0.0015) < 1e-4
    assert abs(adm.target - 0.003) < 2e-4
    # 6 ms is under the configured 10 ms, but twice the normal: the bound shrinks.
    _interval(adm, [0.006] * 20, in_flight=160)
    assert adm.limit == 768


def test_a_flood_does_not_move_the_normal_latency() -> None:
    adm = Admission(max_limit=1024, min_limit=32, target_s=0.010, factor=2.0)
    for _ in range(3):
        _interval(adm, [0.0015] * 20, in_flight=8)
    normal = adm.normal_s
    for _ in range(50):  # over the target: shrinking, never normal
        _interval(adm, [0.006] * 20, in_flight=adm.limit)
    assert adm.limit == 32
    for _ in range(20):  # within the target at the bound, with refusals: not normal either
        adm.refuse()
        _interval(adm, [0.0025] * 20, in_flight=adm.limit)
    adm.limit = 128
    for _ in range(20):  # a lull without refusals, but more in flight than min_limit
        _interval(adm, [0.0025] * 20, in_flight=100)
    assert adm.normal_s == normal


def test_a_refusal_is_a_503_with_retry_after() -> None:
    adm = Admission()
    resp = adm.refuse()
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    assert adm.shed == 1
