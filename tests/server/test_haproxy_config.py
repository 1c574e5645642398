"""The HAProxy configuration of ``pyorder.server.haproxy``: the copy in ``docs/operations.md``
("Local cluster") is what it renders for the script's default ports, HAProxy accepts it, and
it retries on another node only the requests safe to run twice."""

import subprocess
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pyorder.server.haproxy import Pool, main, render
from tests.support.balancer import Balancer, haproxy_binary
from tests.support.server import ROOT

DEFAULTS = Pool(
    "127.0.0.1:8080",
    ["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"],
    "127.0.0.1:8404",
)


def _documented() -> str:
    text = (ROOT / "docs" / "operations.md").read_text()
    local = text[text.index("## Local cluster") :]
    block = local[local.index("```haproxy\n") + len("```haproxy\n") :]
    return block[: block.index("```")]


def test_the_documented_configuration_is_the_rendered_one() -> None:
    assert _documented() == render(DEFAULTS)


def test_the_command_line_prints_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--bind", "127.0.0.1:8080", "--stats", "127.0.0.1:8404", *DEFAULTS.nodes])
    assert capsys.readouterr().out == render(DEFAULTS)


def test_haproxy_accepts_it(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text(render(DEFAULTS))
    check = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(config)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # HAProxy resets its health checks' connections once it has the status


class _Answers(BaseHTTPRequestHandler):
    """A node that answers every request 200."""

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer()

    def _answer(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


class _Drops(_Answers):
    """A node that is ready, but closes the connection on every other request unanswered (a
    node that died with the request in flight)."""

    def _answer(self) -> None:
        if self.path == "/readyz":
            super()._answer()
        else:
            self.close_connection = True


def test_haproxy_retries_on_another_node_only_what_is_safe(tmp_path: Path) -> None:
    """Through the configuration, against one node that drops requests and one that answers:
    reads, keyed writes and providers' webhooks always get their answer (retried on the
    other node), an unkeyed write meets the drop when it is sent to that node."""
    servers = [_Quiet(("127.0.0.1", 0), h) for h in (_Drops, _Answers)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    nodes = [f"127.0.0.1:{s.server_address[1]}" for s in servers]
    balancer = Balancer(tmp_path, nodes).start()
    try:

        def status(method: str, path: str, headers: dict[str, str]) -> int:
            data = b"{}" if method == "POST" else None
            req = urllib.request.Request(
                balancer.url + path, data=data, method=method, headers=headers
            )
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return int(resp.status)
            except urllib.error.HTTPError as err:
                return err.code
            except (urllib.error.URLError, ConnectionError):
                return 0

        # Round robin: of four requests of a kind, two are sent to the dropping node first.
        key = {"Idempotency-Key": "k"}
        for method, path, headers in [
            ("GET", "/v1/orders/1", {}),
            ("HEAD", "/v1/orders/1", {}),
            ("POST", "/v1/orders", key),
            ("POST", "/v1/webhooks/payments/card1", {}),
            ("POST", "/v1/webhooks/carriers/swift", {}),
        ]:
            assert [status(method, path, headers) for _ in range(4)] == [200] * 4, (method, path)
        unkeyed = [status("POST", "/v1/orders", {}) for _ in range(4)]
        assert unkeyed.count(200) == 2, unkeyed
    finally:
        balancer.stop()
        for server in servers:
            server.shutdown()
            server.server_close()
