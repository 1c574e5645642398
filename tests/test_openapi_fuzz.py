"""schemathesis against the OpenAPI document the real server serves.

A server with data (warehouses, regions, SKUs, orders) runs as a child process on loopback; its
``/v1/openapi.json`` is loaded with schemathesis, and every operation is fuzzed as each role
(buyer, merchant, admin, and no token), with valid (positive) and invalid (negative) inputs.
Checks: no 5xx (``not_a_server_error``) and every documented response matches its schema
(``response_schema_conformance``). Half of the generated cases are anchored on IDs that exist
(SKUs, warehouses, regions, orders), so that requests get past "not found" into the handlers.

Two deterministic companions: every path/query parameter given each number-like string of
``HOSTILE``, and U+0000 inside JSON strings (which PostgreSQL's text and jsonb refuse).

Runs on SQLite and on PostgreSQL (``PYORDER_TEST_POSTGRES``; see ``tests/crash/databases.py``).
Bounded: a fixed number of examples per operation, role and mode, derandomized, no shrinking;
about 40-60 s in all. Every failure is collected (with schemathesis' curl reproduction) and
reported at once. Written against schemathesis 4.32 (``pip install schemathesis``).
"""

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support.postgres import fresh_postgres_database
from tests.support.server import ServerProcess

SCALE = float(os.environ.get("PYORDER_FUZZ_SCALE", "1"))
EXAMPLES = {GenerationMode.POSITIVE: round(12 * SCALE), GenerationMode.NEGATIVE: round(8 * SCALE)}
"""Examples per (operation, role, mode); ``PYORDER_FUZZ_SCALE=10`` for a longer hunt."""
RANDOM = os.environ.get("PYORDER_FUZZ_RANDOM") == "1"
"""Derandomized (the same cases every run) unless ``PYORDER_FUZZ_RANDOM=1``."""
ROLES = {"buyer": ("buyer", "alice"), "merchant": ("merchant", "m1"), "admin": ("admin", "root")}
CHECKS = [not_a_server_error, response_schema_conformance]
HOSTILE = ["\u00b2", "\uff11\uff12", "\u0663", "\u00bd", "1_0", " 7", "+1", "-1", "1.0", "9" * 25]
"""Path and query values that look like numbers to some parsers: superscript two, fullwidth
and Arabic-Indic digits, a vulgar fraction, ...; sent in negative mode, and each to every
parameter by ``test_hostile_parameters``."""


@dataclass(frozen=True)
class Served:
    server: ServerProcess
    schema: Any
    """The loaded schemathesis schema (``schemathesis.openapi.from_url``)."""
    known: dict[str, list[Any]]
    """Values that exist, by field name, to anchor generated cases on."""


def _post(server: ServerProcess, path: str, role: tuple[str, str], body: object) -> Any:
    req = urllib.request.Request(
        server.url + path,
        data=json.dumps(body).encode(),
        method="PUT" if path.startswith("/v1/regions/") else "POST",
        headers={
            "Authorization": f"Bearer {server.token(*role)}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    with ExitStack() as stack:
        database = None
        if request.param == "postgres":
            database = stack.enter_context(fresh_postgres_database("pyorder_fuzz"))
        server = ServerProcess(tmp_path_factory.mktemp("fuzz") / "data", database=database)
        stack.callback(server.stop)
        yield _seed(server.start())


def _seed(server: ServerProcess) -> Served:
    admin, merchant, buyer = ROLES["admin"], ROLES["merchant"], ROLES["buyer"]
    _post(server, "/v1/warehouses", admin, {"name": "platform", "regions": ["east", "0"]})
    _post(server, "/v1/warehouses", merchant, {"name": "own", "regions": ["west", "east"]})
    skus = [
        _post(
            server,
            "/v1/skus",
            merchant,
            {
                "title": f"sku {i}",
                "price": 100 + i,
                "currency": "CNY",
                "limit_per_buyer": i,
                "stock": [{"warehouse": 0, "units": 10**6}, {"warehouse": 1, "units": 10**6}],
            },
        )["id"]
        for i in range(3)
    ]
    address = {"name": "A", "line1": "1 Road", "city": "C", "region": "east"}
    orders = [
        _post(
            server, "/v1/orders", buyer, {"lines": [{"sku": s, "quantity": 1}], "address": address}
        )["id"]
        for s in skus
    ]
    with urllib.request.urlopen(server.url + "/v1/openapi.json", timeout=10) as resp:
        document = json.loads(resp.read())
    assert document["openapi"].startswith("3.1"), document["openapi"]
    schema = schemathesis.openapi.from_url(server.url + "/v1/openapi.json")
    known: dict[str, list[Any]] = {
        "sku": skus,
        "sku_id": skus,
        "warehouse": [0, 1],
        "warehouse_id": [0, 1],
        "warehouses": [[0], [1, 0]],
        "region": ["east", "west", "0"],
        "order_id": [int(o) for o in orders],
    }
    return Served(server, schema, known)


def _anchor(value: Any, known: dict[str, list[Any]], data: st.DataObject) -> Any:
    """``value`` with some fields replaced by values that exist (recursively)."""
    if isinstance(value, dict):
        return {
            k: (
                data.draw(st.sampled_from(known[k]))
                if k in known and data.draw(st.booleans())
                else _anchor(v, known, data)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_anchor(v, known, data) for v in value]
    return value


def _fuzz(served: Served, who: str) -> list[str]:
    headers = {}
    if who in ROLES:
        headers["Authorization"] = f"Bearer {served.server.token(*ROLES[who])}"
    failures: list[str] = []
    for result in served.schema.get_all_operations():
        operation = result.ok()
        inputs = any(True for _ in operation.iter_parameters()) or bool(operation.body)
        for mode, examples in EXAMPLES.items():
            if mode is GenerationMode.NEGATIVE and not inputs:
                continue  # nothing to make invalid
            run = _runner(served, operation, mode, headers, examples if who in ROLES else 3)
            try:
                run()
            except Unsatisfiable:
                continue
            except (Exception, BaseExceptionGroup) as exc:  # a failed check: report, go on
                _report(failures, exc, f"{operation.label} as {who} ({mode.value})")
    return failures


def _runner(
    served: Served, operation: Any, mode: GenerationMode, headers: dict[str, str], examples: int
) -> Callable[[], None]:
    """A Hypothesis test of ``operation``: generated cases (some anchored on existing IDs, some
    negative ones given number-like strings), each sent and checked."""

    @settings(
        max_examples=examples,
        phases=[Phase.explicit, Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=not RANDOM,
    )
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def run(case: Case[Any], data: st.DataObject) -> None:
        if mode is GenerationMode.NEGATIVE and data.draw(st.booleans()):
            for params in (case.path_parameters, case.query):
                for name in params or {}:
                    params[name] = data.draw(st.sampled_from(HOSTILE))
        elif data.draw(st.booleans()):
            if case.path_parameters:
                case.path_parameters = _anchor(case.path_parameters, served.known, data)
            if isinstance(case.body, dict):
                case.body = _anchor(case.body, served.known, data)
        case.call_and_validate(
            base_url=served.server.url, headers=headers, checks=CHECKS, timeout=10
        )

    return run


@pytest.mark.long
@pytest.mark.parametrize("who", [*ROLES, "anonymous"])
def test_openapi_fuzz(served: Served, who: str) -> None:
    failures = _fuzz(served, who)
    assert not failures, f"{len(failures)} schemathesis failure(s):\n" + "\n".join(failures)


def test_served_document(served: Served) -> None:
    """The document is OpenAPI 3.1, names every operation the fuzzing covers, and secures
    every /v1 operation with the bearer scheme (but the providers' webhooks, authenticated by
    their signature)."""
    labels = {r.ok().label for r in served.schema.get_all_operations()}
    assert {
        "POST /v1/orders",
        "POST /v1/orders/batch",
        "GET /v1/orders/{order_id}",
        "POST /v1/skus",
        "PUT /v1/regions/{region}",
    } <= labels, labels
    raw = served.schema.raw_schema
    for path, item in raw["paths"].items():
        for method, op in item.items():
            if path.startswith("/v1/") and path != "/v1/openapi.json":
                if path.startswith("/v1/webhooks/"):
                    assert "security" not in op, (method, path)
                    continue
                assert op.get("security") == [{"bearer": []}], (method, path)


def _report(failures: list[str], exc: BaseException, label: str) -> None:
    failures.append(f"--- {label}:\n{exc}")


def test_hostile_parameters(served: Served) -> None:
    """Every path and query parameter, given each number-like string of ``HOSTILE`` (the other
    path parameters anchored on existing IDs): a 4xx that matches the document, never a 5xx."""
    headers = {"Authorization": f"Bearer {served.server.token(*ROLES['admin'])}"}
    failures: list[str] = []
    sent = 0
    for result in served.schema.get_all_operations():
        operation = result.ok()
        params = [(p.location, p.name) for p in operation.iter_parameters()]
        for location, name in params:
            if location not in ("path", "query"):
                continue
            for value in HOSTILE:
                path = {
                    n: str(served.known.get(n, ["0"])[0]) for where, n in params if where == "path"
                }
                query: dict[str, str] = {}
                (path if location == "path" else query)[name] = value
                case = operation.Case(path_parameters=path or None, query=query or None)
                sent += 1
                try:
                    case.call_and_validate(
                        base_url=served.server.url, headers=headers, checks=CHECKS, timeout=10
                    )
                except (Exception, BaseExceptionGroup) as exc:  # a failed check
                    _report(failures, exc, f"{operation.label} with {name}={value!r}")
    assert sent > 50, sent
    assert not failures, f"{len(failures)} failure(s):\n" + "\n".join(failures)


NUL = "nul\u0000byte"


def test_nul_in_strings(served: Served) -> None:
    """JSON strings may carry U+0000; PostgreSQL's text and jsonb cannot. A body with one in
    any string field is stored or refused with a 4xx, never a 5xx, and never fails the other
    requests that share its commit."""
    url = served.server.url
    sku = served.known["sku"][0]

    def order(name: str) -> dict[str, Any]:
        return {
            "lines": [{"sku": sku, "quantity": 1}],
            "address": {"name": name, "line1": "1 Road", "city": "C", "region": "east"},
        }

    bodies: list[tuple[tuple[str, str], str, dict[str, Any]]] = [
        (ROLES["admin"], "/v1/warehouses", {"name": NUL}),
        (ROLES["merchant"], "/v1/skus", {"title": NUL, "price": 1, "currency": "CNY"}),
        (ROLES["buyer"], "/v1/orders", order(NUL)),
        (ROLES["buyer"], "/v1/orders/batch", {"orders": [order("fine"), order(NUL)]}),
    ]
    failures: list[str] = []
    for role, path, body in bodies:
        for _ in range(2):  # the second catches a write path left down by the first
            status, answer = _send(url + path, served.server.token(*role), body)
            if status >= 500:
                failures.append(f"POST {path} {json.dumps(body)} -> {status} {answer}")
    assert not failures, "\n".join(failures)


def _send(url: str, token: str, body: object) -> tuple[int, str]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()[:300]
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read().decode()[:300]
