"""Provider configuration and the circuit breaker, without a network."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pyorder.logistics.carriers import parse_carrier
from pyorder.payments.providers import (
    CircuitBreaker,
    PaymentsConfig,
    Router,
    load_config,
    parse_provider,
)
from tests.support.server import ROOT

PROVIDER = {
    "name": "card1",
    "url": "http://127.0.0.1:9101/",
    "secret": "whsec_1",
    "methods": ["card"],
}


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


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ({"timeout_ms": "abc"}, "timeout_ms: Expected `int`, got `str`"),
        ({"timeout_ms": 2**64}, "timeout_ms: Expected `int` <= 600000"),
        ({"breaker_threshold": 0}, "breaker_threshold: Expected `int` >= 1"),
        ({"reconcile_interval_s": 1e308}, "reconcile_interval_s: Expected `float` <= 86400"),
        ({"retry_max_s": -1}, "retry_max_s"),
        ({"colour": "red"}, "unknown field `colour`"),
        ({"providers": {"name": "a"}}, "providers: Expected `array`, got `object`"),
        (
            {"providers": [{**PROVIDER, "priority": 2**63}]},
            r"providers\[0\].priority: Expected `int` <= 1000000",
        ),
        (
            {"providers": [{**PROVIDER, "timeout_ms": 1.5}]},
            r"providers\[0\].timeout_ms: Expected `int \| null`, got `float`",
        ),
        ({"providers": [{**PROVIDER, "url": "ftp://x"}]}, r"providers\[0\].url"),
        ({"providers": [{**PROVIDER, "secret": "a\u0000b"}]}, r"providers\[0\].secret"),
        ({"providers": [{**PROVIDER, "name": "a/b"}]}, r"providers\[0\].name"),
        ({"providers": [{**PROVIDER, "methods": ["cash"]}]}, r"providers\[0\].methods\[0\]"),
        ({"providers": [PROVIDER, PROVIDER]}, "the name 'card1' is used twice"),
        ([], "Expected `object`, got `array`"),
    ],
)
def test_a_bad_payment_config_file_is_refused_naming_the_field(
    tmp_path: Path, doc: object, says: str
) -> None:
    path = tmp_path / "payments.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=says) as refused:
        load_config(path)
    assert str(path) in str(refused.value)


def test_a_good_payment_config_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "payments.json"
    path.write_text(json.dumps({"providers": [PROVIDER], "timeout_ms": 250, "retry_max_s": 1}))
    config = load_config(path)
    assert (config.timeout_ms, config.retry_max_s) == (250, 1.0)
    assert [(p.name, p.url, p.methods) for p in config.providers] == [
        ("card1", "http://127.0.0.1:9101", ("card",))
    ]
    (tmp_path / "deep.json").write_text('{"providers": [' + "[" * 5000 + "]" * 5000 + "]}")
    with pytest.raises(ValueError, match=r"deep\.json: providers\[0\]: Expected `object`"):
        load_config(tmp_path / "deep.json")


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("name=a,url=http://x,secret=s,methods=card,priority=abc", "priority: Expected `int`"),
        ("name=a,url=http://x,secret=s,methods=card,timeout_ms=0", "timeout_ms: Expected `int` >="),
        ("name=a b,url=http://x,secret=s,methods=card", "name"),
    ],
)
def test_a_bad_provider_spec_names_the_field(spec: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_provider(spec)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("name=c,url=http://x,secret=s,priority=9223372036854775808", "priority: Expected `int`"),
        ("name=c,url=http://x,secret=s,timeout_ms=1.5", "timeout_ms: Expected `int"),
        ("name=c,url=x,secret=s", "url"),
        ("name=c,url=http://x", "needs secret"),
        ("name=c,url=http://x,secret=s,colour=red", "unknown carrier fields: colour"),
    ],
)
def test_a_bad_carrier_spec_names_the_field(spec: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_carrier(spec)


def test_the_server_refuses_to_start_with_a_bad_payment_config(tmp_path: Path) -> None:
    bad = tmp_path / "payments.json"
    bad.write_text(json.dumps({"providers": [{**PROVIDER, "timeout_ms": "fast"}]}))
    cmd = [sys.executable, "-m", "pyorder.server.main", "--data-dir", str(tmp_path / "data")]
    out = subprocess.run(
        [*cmd, "--payment-config", str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2, out
    assert "providers[0].timeout_ms: Expected `int | null`, got `str`" in out.stderr
    assert "Traceback" not in out.stderr
