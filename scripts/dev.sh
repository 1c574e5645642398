#!/usr/bin/env bash
# Local development: two payment provider sandboxes, a carrier sandbox and the pyorder server
# wired to them.
#
#   card1  card + wallet          http://127.0.0.1:9101  (priority 0)
#   card2  card + bank_transfer   http://127.0.0.1:9102  (priority 1: card fails over to it)
#   swift  carrier                http://127.0.0.1:9201  (a scan every 4 s: 4 h of carrier time)
#
# Each sandbox posts its signed events to the server's /v1/webhooks/payments/<name> or
# /v1/webhooks/carriers/<name>. Extra arguments go to pyorder-server (say, --auto-ship). Ctrl-C
# stops all four. PYORDER_PORT (8080) moves the server; PYORDER_SANDBOX_SECRET sets the shared
# webhook secret (default: a fixed development one).
# Run `bash scripts/setup.sh` once first (scripts/serve.sh does it).
set -euo pipefail
cd "$(dirname "$0")/.."
# Everything runs from the project's virtual environment (scripts/setup.sh makes it).
export PATH="$PWD/${PYORDER_VENV:-.venv}/bin:$PATH"
port="${PYORDER_PORT:-8080}"
secret="${PYORDER_SANDBOX_SECRET:-whsec_pyorder_dev_only}"
hook="http://127.0.0.1:${port}/v1/webhooks/payments"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait
}
trap cleanup EXIT INT TERM

python3 -m sandbox.payment.main --name card1 --port 9101 --secret "$secret" \
    --methods card,wallet --webhook-url "$hook/card1" &
pids+=($!)
python3 -m sandbox.payment.main --name card2 --port 9102 --secret "$secret" \
    --methods card,bank_transfer --webhook-url "$hook/card2" &
pids+=($!)
python3 -m sandbox.carrier.main --name swift --port 9201 --secret "$secret" --time-scale 3600 \
    --webhook-url "http://127.0.0.1:${port}/v1/webhooks/carriers/swift" &
pids+=($!)

# No load balancer here: Ctrl-C stops the server without the drain period (docs/operations.md).
python3 -m pyorder.server.main --port "$port" --drain-s 0 \
    --payment-provider "name=card1,url=http://127.0.0.1:9101,secret=$secret,methods=card+wallet,priority=0" \
    --payment-provider "name=card2,url=http://127.0.0.1:9102,secret=$secret,methods=card+bank_transfer,priority=1" \
    --carrier "name=swift,url=http://127.0.0.1:9201,secret=$secret" \
    "$@" &
pids+=($!)
wait -n
