#!/usr/bin/env bash
# Set up, then run every check: Rust format/lint/tests, Python lint/types/stub, and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh
# Everything runs from the project's virtual environment (scripts/setup.sh makes it).
export PATH="$PWD/${PYORDER_VENV:-.venv}/bin:$PATH"
# Debian packages the tests use: wrk for the load-test smoke run, haproxy in front of the
# cluster tests' nodes (tests/support/balancer.py). Without them those tests are skipped, except
# under CI=true, where a missing haproxy fails them.
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null </dev/null
fi
# A throwaway PostgreSQL 15 for the storage and server tests (they run on SQLite and on it).
PYORDER_TEST_POSTGRES="${PYORDER_TEST_POSTGRES:-$(bash scripts/postgres.sh)}"
export PYORDER_TEST_POSTGRES
step() { echo; echo "==> $*"; "$@"; }
step cargo fmt --all --check
step cargo clippy --all-features --all-targets -- -D warnings
step cargo test
step ruff check .
step ruff format --check .
step mypy
step python3 -m mypy.stubtest pyorder._core
# The default run in two test processes (pytest-xdist): most tests wait on servers, sandboxes
# and PostgreSQL they start, so two share the machine's cores well (4 min against 6.5 on 2
# cores). Every test makes its own ports, directories and databases. With arguments (e.g.
# `-m long`: kill loops, floods, timing-sensitive smoke runs) one process unless
# PYORDER_TEST_WORKERS says otherwise; PYORDER_TEST_WORKERS=0 runs the default one in one too.
workers="${PYORDER_TEST_WORKERS:-$([ "$#" -eq 0 ] && echo 2 || echo 0)}"
step python3 -m pytest -n "$workers" "$@"
# The long hunts (tests marked `long`: fuzzing, property tests, kill loops) run after the default
# suite when PYORDER_LONG_TESTS=1 (CI sets it), or on their own with `bash scripts/test.sh -m long`.
if [ "${PYORDER_LONG_TESTS:-0}" = 1 ]; then
    step python3 -m pytest -m long
fi
