"""The wheel installs one import name, ``pyorder``: its server is ``pyorder.server`` and the
sandboxes (development peers) are not in it, so installing pyorder shadows no other package.

Built for real with maturin (the release profile; the crate's build is cached in ``target/``
after ``scripts/setup.sh``), hence ``long``."""

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.long


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    maturin = shutil.which("maturin") or str(Path(sys.executable).with_name("maturin"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [maturin, "build", "--release", "--auditwheel", "skip", "--out", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=1200,
    )
    (built,) = out.glob("pyorder-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_installs_only_pyorder(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"pyorder"}
    assert "pyorder/server/main.py" in names
    assert "pyorder/server/api/orders.py" in names
    assert any(name.startswith("pyorder/_core.") and name.endswith(".so") for name in names)
    assert "pyorder/py.typed" in names
    assert "pyorder/_core.pyi" in names
    assert not any(name.startswith(("sandbox/", "server/", "tests/")) for name in names)


def test_every_command_of_the_wheel_is_in_it(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    config = configparser.ConfigParser()
    config.read_string(wheel.read(entry_points).decode())
    commands = dict(config["console_scripts"])
    assert set(commands) == {"pyorder-server", "pyorder-token"}
    for target in commands.values():
        module, _, function = target.partition(":")
        source = wheel.read(module.replace(".", "/") + ".py").decode()
        assert f"def {function}(" in source
