#!/usr/bin/env bash
# Set up and run the embedded demo: a small flash sale on the Rust core.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec python3 -m pyorder.demo "$@"
