#!/usr/bin/env bash
# Set up, then run every check: Rust format/lint/tests, Python lint/types/stub, and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh
step() { echo; echo "==> $*"; "$@"; }
step cargo fmt --all --check
step cargo clippy --all-features --all-targets -- -D warnings
step cargo test
step ruff check .
step ruff format --check .
step mypy
step python3 -m mypy.stubtest pyorder._core
step python3 -m pytest "$@"
