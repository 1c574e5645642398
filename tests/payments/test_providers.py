"""Provider configuration and the circuit breaker, without a network."""

import pytest

from pyorder.payments.providers import (
    CircuitBreaker,
    PaymentsConfig,
    Router,
    parse_provider,
)


def test_a_provider_spec_parses_and_bad_ones_are_refused() -> None:
    p = parse_provider("name=card1,url=http://127.0.0.1:9101/,secret=s,methods=card+wallet")
    assert (p.name, p.url, p.methods, p.priority, p.api_key) == (
        "card1",
        "http://127.0.0.1:9101",
        ("card", "wallet"),
        0,
        None,
    )
    with pytest.raises(ValueError, match="needs secret"):
        parse_provider("name=a,url=http://x,methods=card")
    with pytest.raises(ValueError, match="unknown payment methods"):
        parse_provider("name=a,url=http://x,secret=s,methods=cash")
    with pytest.raises(ValueError, match="unknown provider fields"):
        parse_provider("name=a,url=http://x,secret=s,methods=card,colour=red")


def test_the_breaker_opens_after_consecutive_failures_and_probes_once_after_cooldown() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=3, cooldown_s=5, clock=lambda: now[0])
    breaker.failure()
    breaker.failure()
    breaker.success()  # consecutive failures only
    breaker.failure()
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == "open"
    assert not breaker.allow()
    now[0] = 5.0
    assert breaker.state == "half_open"
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # one at a time
    breaker.failure()
    assert breaker.state == "open"
    now[0] = 10.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed"
    assert breaker.allow()


def test_the_router_puts_open_circuits_last_then_priority() -> None:
    a = parse_provider("name=a,url=http://a,secret=s,methods=card,priority=0")
    b = parse_provider("name=b,url=http://b,secret=s,methods=card,priority=1")
    w = parse_provider("name=w,url=http://w,secret=s,methods=wallet")
    router = Router(PaymentsConfig(providers=(a, b, w), breaker_threshold=1))
    assert [p.name for p in router.candidates("card")] == ["a", "b"]
    router.breakers["a"].failure()
    assert [p.name for p in router.candidates("card")] == ["b", "a"]
    assert [p.name for p in router.candidates("card", exclude=["b"])] == ["a"]
    assert router.candidates("bank_transfer") == []
