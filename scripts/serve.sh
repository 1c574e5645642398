#!/usr/bin/env bash
# Set up, then start the pyorder server on its embedded default: SQLite in ./data, no other
# service needed. It prints where it listens and how to mint a development token.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec pyorder-server "$@"
