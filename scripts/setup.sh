#!/usr/bin/env bash
# Install what pyorder needs on a fresh machine and build the Rust core (release profile, LTO)
# into the Python package, in place (editable), with the development tools.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || { echo "pyorder needs a Rust toolchain (cargo) on PATH" >&2; exit 1; }
# The Rust core links the system SQLite (the library Python's sqlite3 module uses: one copy of
# SQLite per process, see core_rs/src/storage/sqlite.rs), so building needs its headers.
sqlite_dev="$(dpkg-query -W -f='${Status}' libsqlite3-dev 2>/dev/null || true)"
if [[ "$sqlite_dev" != *"ok installed"* ]]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libsqlite3-dev >/dev/null
    elif [ ! -e /usr/include/sqlite3.h ]; then
        echo "pyorder needs the SQLite development files (Debian: apt-get install libsqlite3-dev)" >&2
        exit 1
    fi
fi
python3 -m pip install -q --disable-pip-version-check "maturin>=1.7,<2"
python3 -m pip install -q --disable-pip-version-check --no-build-isolation -e ".[dev]"
