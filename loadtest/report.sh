#!/usr/bin/env bash
# Every figure of BENCHMARKS.md, one after another, on loopback: the Rust core and intake
# (pytest-benchmark), durable storage, HTTP single and batch (wrk), click-to-paid and lightning
# refunds through the sandboxes, and the locust scenarios. Each command writes its own summary;
# their console output goes to results/report-<time>/report.log. Takes about 8 minutes on 2 cores.
#
#   bash loadtest/report.sh                  # SQLite, and PostgreSQL from scripts/postgres.sh
#   PYORDER_REPORT_POSTGRES=none bash loadtest/report.sh   # SQLite only
set -euo pipefail
cd "$(dirname "$0")/.."
# Everything runs from the project's virtual environment (scripts/setup.sh makes it).
export PATH="$PWD/${PYORDER_VENV:-.venv}/bin:$PATH"

out="results/report-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$out"
log="$out/report.log"
pg="${PYORDER_REPORT_POSTGRES:-}"
if [ -z "$pg" ]; then
    pg="$(bash scripts/postgres.sh)"
fi

run() {
    echo "==> $* ($(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$log"
    "$@" 2>&1 | tee -a "$log"
}

echo "machine: $(nproc) cores, $(uname -srm), $(python3 --version)" | tee -a "$log"
run pytest -q -p no:cacheprovider benchmarks/test_bench_inventory.py benchmarks/test_bench_ids.py \
    benchmarks/test_bench_intake.py --benchmark-only --benchmark-columns=median,ops,rounds
run python benchmarks/hot_sku.py
if [ "$pg" != none ]; then
    run python benchmarks/storage_throughput.py --orders 100000 --postgres "$pg"
else
    run python benchmarks/storage_throughput.py --orders 100000
fi
for _ in 1 2 3; do
    run python loadtest/http_bench.py --out "$out"
done
run python loadtest/click_to_paid.py --orders 2000 --concurrency 32 --out "$out"
run python loadtest/lightning_refund.py --returns 300 --concurrency 16 --out "$out"
if [ "$pg" != none ]; then
    run python loadtest/http_bench.py --database "$pg" --out "$out"
    run python loadtest/click_to_paid.py --orders 2000 --concurrency 32 --database "$pg" --out "$out"
    run python loadtest/lightning_refund.py --returns 300 --concurrency 16 --database "$pg" --out "$out"
fi
run python loadtest/scenario.py flash-sale --users 500 --spawn-rate 250 --duration 20 \
    --stock 500 --buyers 5000 --baseline --out "$out"
run python loadtest/scenario.py gateway --users 4 --batch-size 200 --duration 20 --baseline \
    --out "$out"
run python loadtest/scenario.py everyday --users 50 --spawn-rate 25 --duration 30 \
    --catalogue 5000 --out "$out"
echo "report: $out" | tee -a "$log"
