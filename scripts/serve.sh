#!/usr/bin/env bash
# Set up, then start the pyorder server on its embedded default: SQLite in ./data, no other
# service needed. It prints where it listens and how to mint a development token.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Everything runs from the project's virtual environment (scripts/setup.sh makes it).
export PATH="$PWD/${PYORDER_VENV:-.venv}/bin:$PATH"
exec pyorder-server "$@"
