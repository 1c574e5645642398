"""The server's own hardening, end to end on loopback: malformed HTTP answered in JSON and
counted (never logged as a server error), deadlines on headers, bodies and idle connections,
a connection cap that a flood of slow connections cannot use to starve a normal client (under a
low open-files limit), load shedding with 503 + Retry-After that loses nothing acknowledged,
and ``/metrics`` only for those allowed to read it.

Times in these tests are generous bounds that prove a connection is closed, not measurements.
Tests whose requests never reach the store (``HTTP_ONLY``) run on SQLite only; those that place
orders or wait inside an order's handler run on both stores.
"""

import json
import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tests.server.e2e_lib import (
    HTTP_ONLY,
    Call,
    Launch,
    Response,
    Server,
    build_world,
    order_body,
    running_server,
    unique,
)
from tests.support.server import free_port

# --- raw HTTP ----------------------------------------------------------------------------------


def connect(srv: Server, timeout_s: float = 20.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.proc.port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (or resets) the connection."""
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out


def parse(raw: bytes) -> Response:
    """The first response in ``raw`` (status, lower-cased headers, body by Content-Length)."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Response(status, headers, rest[: int(headers.get("content-length", len(rest)))])


def exchange(srv: Server, data: bytes) -> Response:
    """Send ``data``, read until the server closes, parse the first response."""
    with connect(srv) as sock:
        sock.sendall(data)
        raw = read_all(sock)
    assert raw, "the server closed without answering"
    return parse(raw)


def metrics(srv: Server) -> str:
    resp = srv.call("GET", "/metrics", token=srv.admin())
    assert resp.status == 200, resp
    return resp.body.decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample (0 if absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == name + (f"{{{want}}}" if labels else ""):
            return float(value)
    return 0.0


def wait_for(check: Any, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.05)


def errors_logged(srv: Server) -> list[str]:
    """Lines of the server's output that report a server error."""
    text = srv.log_path.read_text(errors="replace")
    return [ln for ln in text.splitlines() if " ERROR " in ln or ln.startswith("Traceback")]


# --- malformed HTTP ----------------------------------------------------------------------------

HOST = b"Host: x\r\n"
MALFORMED: dict[str, tuple[bytes, int, str]] = {
    "request line too long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 414, "uri_too_long"),
    "query too long": (b"GET /healthz?" + b"a=1&" * 3000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 414, "uri_too_long"),
    "header too long": (b"GET /healthz HTTP/1.1\r\n" + HOST + b"X-A: " + b"a" * 9000 + b"\r\n\r\n", 431, "header_too_large"),
    "too many headers": (
        b"GET /healthz HTTP/1.1\r\n" + HOST + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",
        431,
        "too_many_headers",
    ),
    "bad method": (b"G(T /healthz HTTP/1.1\r\n" + HOST + b"\r\n", 400, "bad_method"),
    "TLS on the HTTP port": (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400, "bad_method"),
    "path without a slash": (b"GET healthz HTTP/1.1\r\n" + HOST + b"\r\n", 400, "bad_path"),
    "control bytes in the path": (b"GET /%zz\x01 HTTP/1.1\r\n" + HOST + b"\r\n", 400, "bad_path"),
    "unknown HTTP version": (b"GET / HTTP/9.9\r\n" + HOST + b"\r\n", 400, "bad_request_line"),
    "bad chunk size": (
        b"POST /v1/orders HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        400,
        "bad_framing",
    ),
    "Content-Length with Transfer-Encoding": (
        b"POST /v1/orders HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        "bad_framing",
    ),
}  # fmt: skip


@HTTP_ONLY
def test_malformed_http_is_answered_in_json_counted_and_not_logged_as_an_error(
    launch: Launch,
) -> None:
    srv = launch()
    for case, (data, status, code) in MALFORMED.items():
        resp = exchange(srv, data)
        assert resp.status == status, f"{case}: {resp}"
        assert resp.headers["content-type"].startswith("application/json"), f"{case}: {resp}"
        assert resp.error_code == code, f"{case}: {resp}"
    text = metrics(srv)
    expected: dict[str, int] = {}
    for _, _, code in MALFORMED.values():
        expected[code] = expected.get(code, 0) + 1
    for code, n in expected.items():
        assert sample(text, "pyorder_http_protocol_errors_total", code=code) == n, code
    assert errors_logged(srv) == []


@HTTP_ONLY
def test_a_broken_chunk_after_the_handler_started_is_a_400_and_no_error_log(
    launch: Launch,
) -> None:
    """The headers are fine, so the order handler runs and reads the body; the chunked
    framing then breaks. The client hears 400 bad_framing; the server logs no error (also not
    while draining the rest of the body after answering)."""
    srv = launch()
    token = srv.token("buyer", unique("chunks"))
    with connect(srv) as sock:
        head = (
            f"POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode() + b'3\r\n{"l\r\n')
        time.sleep(0.3)  # the handler is now waiting for the rest of the body
        sock.sendall(b"zz\r\nnot a chunk\r\n0\r\n\r\n")
        resp = parse(read_all(sock))
    assert resp.status == 400, resp
    assert resp.error_code == "bad_framing"
    assert srv.ok("GET", "/healthz", token=None) == {"status": "ok"}
    assert errors_logged(srv) == []


def test_a_client_leaving_mid_body_is_a_disconnect_not_a_storage_failure(
    launch: Launch,
) -> None:
    srv = launch()
    world = build_world(srv)
    sku = world.shop.sku({world.a: 10})
    buyer = srv.token("buyer", unique("leaver"))
    body = json.dumps(order_body([(sku, 1)], world.north)).encode()
    for _ in range(3):
        with connect(srv) as sock:
            head = (
                f"POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {buyer}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            sock.sendall(head.encode() + body[:10])
            time.sleep(0.2)  # the handler waits for the rest of the body
    wait_for(
        lambda: sample(metrics(srv), "pyorder_http_client_disconnects_total") >= 3,
        "the disconnects counted",
    )
    log = srv.log_path.read_text(errors="replace")
    assert "storage failed" not in log
    assert errors_logged(srv) == []
    # Nothing was placed, and the server still places orders.
    assert world.shop.totals(sku)["available"] == 10
    assert world.shop.order(buyer, [(sku, 1)], world.north).status == 201


# --- deadlines ---------------------------------------------------------------------------------


@HTTP_ONLY
def test_slow_headers_are_answered_408_and_closed_after_the_deadline(launch: Launch) -> None:
    srv = launch("--header-timeout-s", "1", "--keepalive-timeout-s", "60")
    with connect(srv, timeout_s=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        started = time.monotonic()
        raw = b""
        try:
            for byte in b"st: x\r\nX-Slow: " + b"a" * 100:  # one byte every 0.2 s: 20 s
                sock.sendall(bytes([byte]))
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = read_all(sock)
        waited = time.monotonic() - started
    assert waited < 15, f"the slow connection was held {waited:.1f} s"
    if raw:  # the 408 may be lost to a reset, as the client keeps sending
        resp = parse(raw)
        assert resp.status == 408, resp
        assert resp.error_code == "request_timeout"
    text = metrics(srv)
    assert sample(text, "pyorder_http_connections_closed_total", reason="header_timeout") == 1
    assert errors_logged(srv) == []


def test_a_slow_body_is_answered_408_and_closed_after_the_deadline(launch: Launch) -> None:
    srv = launch("--body-timeout-s", "1")
    world = build_world(srv)
    sku = world.shop.sku({world.a: 10})
    buyer = srv.token("buyer", unique("slow"))
    body = json.dumps(order_body([(sku, 1)], world.north)).encode()
    with connect(srv, timeout_s=30) as sock:
        head = (
            f"POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {buyer}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body[:10])
        started = time.monotonic()
        resp = parse(read_all(sock))
        waited = time.monotonic() - started
    assert waited < 15, f"the slow body was waited for {waited:.1f} s"
    assert resp.status == 408, resp
    assert resp.error_code == "request_timeout"
    assert world.shop.totals(sku)["available"] == 10
    text = metrics(srv)
    assert sample(text, "pyorder_http_connections_closed_total", reason="body_timeout") == 1
    assert errors_logged(srv) == []


@HTTP_ONLY
def test_idle_keep_alive_connections_are_closed(launch: Launch) -> None:
    srv = launch("--keepalive-timeout-s", "1")
    with connect(srv, timeout_s=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        raw = read_all(sock)  # the answer, then the close
        waited = time.monotonic() - started
    assert parse(raw).status == 200
    assert waited < 15, f"the idle connection was kept {waited:.1f} s"
    text = metrics(srv)
    assert sample(text, "pyorder_http_connections_closed_total", reason="idle") >= 1


# --- connection cap ----------------------------------------------------------------------------

SLOW_CONNECTIONS = 400
NOFILE = 256


def test_slow_connections_cannot_starve_a_normal_client(backend: str, tmp_path: Path) -> None:
    """The server runs under an open-files limit of 256 and with a header deadline long
    enough not to help; 400 connections each send part of a request's headers and stop. A
    normal client still places its orders: the connections waiting longest are closed to
    make room for new ones."""
    args = ("--header-timeout-s", "300", "--keepalive-timeout-s", "300")
    with (
        running_server(backend, tmp_path / "s", args, nofile=NOFILE) as srv,
        ExitStack() as slow,
    ):
        world = build_world(srv)
        sku = world.shop.sku({world.a: 100})
        buyer = srv.token("buyer", unique("patient"))
        for _ in range(SLOW_CONNECTIONS):
            try:
                sock = slow.enter_context(connect(srv))
                sock.sendall(b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            except OSError:
                pass  # closed to make room for the next: what the test is about
        for _ in range(20):
            assert world.shop.order(buyer, [(sku, 1)], world.north).status == 201
        text = metrics(srv)
        assert sample(text, "pyorder_http_connections_closed_total", reason="evicted") >= (
            SLOW_CONNECTIONS - NOFILE
        )
        assert sample(text, "pyorder_http_open_connections") < NOFILE
        assert world.shop.totals(sku)["available"] == 80
    assert errors_logged(srv) == []


# --- load shedding -----------------------------------------------------------------------------


def test_overload_is_refused_with_503_and_retry_after_and_loses_nothing_acknowledged(
    launch: Launch,
) -> None:
    srv = launch("--max-in-flight", "4", "--min-in-flight", "4")
    world = build_world(srv)
    sku = world.shop.sku({world.a: 10_000})
    buyers = [srv.token("buyer", unique("crowd")) for _ in range(20)]
    calls = [
        Call("POST", "/v1/orders", buyers[i % 20], json=order_body([(sku, 1)], world.north))
        for i in range(400)
    ]
    responses = srv.concurrently(calls, connections=400)
    statuses = [r.status for r in responses]
    assert set(statuses) <= {201, 503}, sorted(set(statuses))
    refused = [r for r in responses if r.status == 503]
    placed = statuses.count(201)
    assert refused, "nothing was refused: the bound of 4 in flight did not hold"
    assert placed, "nothing was placed"
    for r in refused:
        assert r.error_code == "overloaded", r
        assert r.headers["retry-after"] == "1", r.headers
    # Every 201 is stored, nothing else is.
    assert world.shop.totals(sku)["reserved"] == placed
    listed = [o for b in buyers for o in world.shop.all_orders(b)]
    assert len(listed) == placed
    text = metrics(srv)
    assert sample(text, "pyorder_http_shed_total") == len(refused)
    assert sample(text, "pyorder_http_in_flight") == 0
    assert sample(text, "pyorder_http_in_flight_limit") == 4


# --- /metrics ----------------------------------------------------------------------------------


def get(url: str, token: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@HTTP_ONLY
def test_metrics_need_an_admin_or_the_metrics_token(launch: Launch) -> None:
    srv = launch("--metrics-token", "s3cret-scrape")
    url = srv.url + "/metrics"
    assert get(url)[0] == 401
    assert get(url, "wrong")[0] == 401
    assert get(url, srv.token("buyer", "b"))[0] == 403
    assert get(url, srv.token("merchant", "m"))[0] == 403
    status, text = get(url, "s3cret-scrape")
    assert status == 200
    assert "pyorder_http_requests_total" in text
    assert get(url, srv.admin())[0] == 200


@contextmanager
def metrics_listener(launch: Launch, *args: str) -> Iterator[tuple[Server, str]]:
    port = free_port()
    srv = launch("--metrics-listen", f"127.0.0.1:{port}", *args)
    yield srv, f"http://127.0.0.1:{port}/metrics"


@HTTP_ONLY
def test_metrics_on_a_listener_of_their_own(launch: Launch) -> None:
    with metrics_listener(launch) as (srv, url):
        status, text = get(url)
        assert status == 200
        assert re.search(r"^pyorder_http_open_connections \d", text, re.M), text[:500]
        assert get(srv.url + "/metrics")[0] == 401  # still closed on the API's listener
    with metrics_listener(launch, "--metrics-token", "t0k") as (srv, url):
        assert get(url)[0] == 401
        assert get(url, "t0k")[0] == 200
