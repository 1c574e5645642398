#!/usr/bin/env bash
# Install what pyorder needs on a fresh machine and build the Rust core (release profile, LTO)
# into the Python package, in place (editable), with the development tools.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || { echo "pyorder needs a Rust toolchain (cargo) on PATH" >&2; exit 1; }
python3 -m pip install -q --disable-pip-version-check "maturin>=1.7,<2"
python3 -m pip install -q --disable-pip-version-check --no-build-isolation -e ".[dev]"
