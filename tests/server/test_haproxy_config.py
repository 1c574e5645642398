"""The HAProxy configuration of ``pyorder.server.haproxy``: the copy in ``docs/operations.md``
("Local cluster") is what it renders for the script's default ports, and HAProxy accepts it."""

import subprocess
from pathlib import Path

import pytest

from pyorder.server.haproxy import Pool, main, render
from tests.support.balancer import haproxy_binary
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
