#!/usr/bin/env bash
# Set up and run the embedded demo: a small flash sale on the Rust core.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Everything runs from the project's virtual environment (scripts/setup.sh makes it).
export PATH="$PWD/${PYORDER_VENV:-.venv}/bin:$PATH"
exec python3 -m pyorder.demo "$@"
