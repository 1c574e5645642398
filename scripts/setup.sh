#!/usr/bin/env bash
# Install what pyorder needs on a fresh machine and build the Rust core (release profile, LTO)
# into the Python package, in place (editable), with the development tools.
#
# Everything Python goes into the project's own virtual environment, ./.venv (or $PYORDER_VENV):
# a stock Debian/Ubuntu python3 refuses a global `pip install` (PEP 668), and a venv keeps the
# project's packages apart from the system's. The other scripts run everything from it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || { echo "pyorder needs a Rust toolchain (cargo) on PATH" >&2; exit 1; }

apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null </dev/null
    else
        echo "pyorder needs the Debian packages: $* (apt-get install $*)" >&2
        exit 1
    fi
}

# The Rust core links the system SQLite (the library Python's sqlite3 module uses: one copy of
# SQLite per process, see core_rs/src/storage/sqlite.rs), so building needs its headers.
sqlite_dev="$(dpkg-query -W -f='${Status}' libsqlite3-dev 2>/dev/null || true)"
if [[ "$sqlite_dev" != *"ok installed"* && ! -e /usr/include/sqlite3.h ]]; then
    apt_install libsqlite3-dev
fi

venv="${PYORDER_VENV:-.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    # Debian splits venv's pip bootstrap (ensurepip) into python3-venv.
    if ! "$python" -c "import ensurepip, venv" 2>/dev/null; then
        apt_install python3-venv
    fi
    "$python" -m venv "$venv"
fi
# The build backend (maturin, installed below without build isolation) runs `maturin` by name.
export PATH="$PWD/$venv/bin:$PATH"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.7,<2"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation -e ".[dev]"
