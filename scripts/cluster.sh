#!/usr/bin/env bash
# A local pyorder cluster on loopback, behind HAProxy (docs/operations.md, "Local cluster"):
#
#   bash scripts/cluster.sh up       # start what is not running yet (idempotent)
#   bash scripts/cluster.sh status   # what runs, each node's /readyz, HAProxy's view of them
#   bash scripts/cluster.sh down     # stop everything, nodes first (they drain)
#
# Topology (ports are the defaults; every one can be moved by the variable named):
#   HAProxy front     127.0.0.1:8080          PYORDER_CLUSTER_PORT
#   HAProxy stats     127.0.0.1:8404 (/;csv)  PYORDER_CLUSTER_STATS_PORT
#   node i (1..N)     127.0.0.1:8080+i        PYORDER_CLUSTER_NODE_PORT (node 1's; N: PYORDER_CLUSTER_NODES, 3)
#   card1, card2      127.0.0.1:9111, 9112    PYORDER_CLUSTER_SANDBOX_PORT (card1's; then +1, +2)
#   swift (carrier)   127.0.0.1:9113
#   PostgreSQL        127.0.0.1:54339, 54340  PYORDER_CLUSTER_PG_PORT (the primary's; its synchronous
#                                             standby on the next port: scripts/pg_pair.sh, data
#                                             in the state folder's pg-pair/; the nodes get the
#                                             multi-host DSN, and `pg_pair.sh promote` fails over)
# PYORDER_CLUSTER_PG=single starts one PostgreSQL instead (scripts/postgres.sh, in pg/), and
# PYORDER_CLUSTER_DSN=postgresql://... uses that database: the script then neither starts nor
# stops one.
#
# State folder: PYORDER_CLUSTER_DIR (default .cluster/ in the repository, git-ignored): pid files,
# logs (<name>.log), haproxy.cfg, the nodes' shared data directory (token secret), the DSN, and
# PostgreSQL's data directory. Mint a token with:
#   pyorder-token --data-dir .cluster/data --role admin --sub ops
# Nodes run `pyorder-server --cluster` with the default drain (3 s), plus the words of
# PYORDER_CLUSTER_NODE_ARGS; HAProxy checks /readyz every second (pyorder.server.haproxy writes
# its configuration). As root, the `postgres` user must be able to reach the state folder (else
# move it, or give PYORDER_CLUSTER_DSN). Installs Debian's haproxy when
# missing (as root). Reads no stdin.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
# Everything runs from the project's virtual environment (scripts/setup.sh makes it).
export PATH="$ROOT/${PYORDER_VENV:-.venv}/bin:$PATH:/usr/sbin:/sbin"

STATE="${PYORDER_CLUSTER_DIR:-$ROOT/.cluster}"
NODES="${PYORDER_CLUSTER_NODES:-3}"
FRONT_PORT="${PYORDER_CLUSTER_PORT:-8080}"
STATS_PORT="${PYORDER_CLUSTER_STATS_PORT:-8404}"
NODE_PORT="${PYORDER_CLUSTER_NODE_PORT:-$((FRONT_PORT + 1))}"
SANDBOX_PORT="${PYORDER_CLUSTER_SANDBOX_PORT:-9111}"
PG_PORT="${PYORDER_CLUSTER_PG_PORT:-54339}"
SECRET="${PYORDER_SANDBOX_SECRET:-whsec_pyorder_dev_only}"
HOST=127.0.0.1
FRONT="http://${HOST}:${FRONT_PORT}"
STOP_WAIT_S=40 # a node's drain (3 s) + its requests in flight + its flush, with margin

log() { echo "cluster.sh: $*" >&2; }

pidfile() { echo "$STATE/$1.pid"; }

# Whether process $1 runs: a zombie (exited, not reaped yet, as under a container's init that
# reaps nothing) does not.
running() {
    kill -0 "$1" 2>/dev/null && [[ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

alive() {
    local f
    f="$(pidfile "$1")"
    [[ -s "$f" ]] && running "$(cat "$f")"
}

# Start "$@" in the background as component $1 (in its own session: a Ctrl-C in the terminal
# that ran `up` does not reach it), unless it already runs. Sets STARTED to 1 if it started it.
STARTED=0
start_bg() {
    local name="$1"
    shift
    STARTED=0
    if alive "$name"; then
        log "$name already runs (pid $(cat "$(pidfile "$name")"))"
        return 0
    fi
    setsid "$@" >>"$STATE/$name.log" 2>&1 </dev/null &
    echo $! >"$(pidfile "$name")"
    STARTED=1
}

# The HTTP status of GET $1 (000: no answer).
http_status() {
    curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" </dev/null || true
}

# Wait until GET $2 answers 200, or fail naming component $1 and its log.
wait_ready() {
    local name="$1" url="$2" i
    for i in $(seq 1 300); do
        [[ "$(http_status "$url")" == 200 ]] && return 0
        if ! alive "$name"; then
            log "$name exited; last lines of $STATE/$name.log:"
            tail -n 20 "$STATE/$name.log" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    log "$name not ready at $url after 30 s; see $STATE/$name.log"
    exit 1
}

haproxy_bin() {
    command -v haproxy 2>/dev/null && return 0
    if [[ "$(id -u)" != 0 ]]; then
        log "haproxy is not installed; as root: apt-get install -y haproxy"
        return 1
    fi
    log "installing Debian's haproxy"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 </dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >&2 </dev/null
    command -v haproxy
}

pg_bindir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r | head -n 1
}

database() {
    if [[ -n "${PYORDER_CLUSTER_DSN:-}" ]]; then
        echo "$PYORDER_CLUSTER_DSN"
        return 0
    fi
    if [[ "${PYORDER_CLUSTER_PG:-pair}" == single ]]; then
        # One PostgreSQL, in the state folder; `down` stops it.
        touch "$STATE/pg.managed"
        PYORDER_PG_DIR="$STATE/pg" PYORDER_PG_PORT="$PG_PORT" bash scripts/postgres.sh </dev/null
        return 0
    fi
    # A primary and its synchronous standby, in the state folder; `down` stops both.
    touch "$STATE/pg-pair.managed"
    PYORDER_PAIR_PORTS="$PG_PORT $((PG_PORT + 1))" bash scripts/pg_pair.sh up "$STATE/pg-pair" </dev/null
}

node_port() { echo $((NODE_PORT + $1 - 1)); }

up() {
    mkdir -p "$STATE/data"
    local dsn haproxy i port nodes=() extra=()
    read -r -a extra <<<"${PYORDER_CLUSTER_NODE_ARGS:-}"
    haproxy="$(haproxy_bin)"
    dsn="$(database)"
    echo "$dsn" >"$STATE/dsn"

    local card1=$SANDBOX_PORT card2=$((SANDBOX_PORT + 1)) swift=$((SANDBOX_PORT + 2))
    local hooks="${FRONT}/v1/webhooks"
    # The sandboxes send their webhooks to the front: any node takes them (forwarded to the
    # order's node).
    start_bg card1 python3 -m sandbox.payment.main --name card1 --port "$card1" \
        --secret "$SECRET" --methods card,wallet --webhook-url "$hooks/payments/card1"
    start_bg card2 python3 -m sandbox.payment.main --name card2 --port "$card2" \
        --secret "$SECRET" --methods card,bank_transfer --webhook-url "$hooks/payments/card2"
    start_bg swift python3 -m sandbox.carrier.main --name swift --port "$swift" \
        --secret "$SECRET" --time-scale 3600 --webhook-url "$hooks/carriers/swift"
    for name in card1 card2 swift; do
        case $name in card1) port=$card1 ;; card2) port=$card2 ;; swift) port=$swift ;; esac
        wait_ready "$name" "http://${HOST}:${port}/healthz"
    done

    # One node after the other: the first makes the schema on a new database. A node that
    # already runs is not waited for (`status` shows whether it is ready).
    for i in $(seq 1 "$NODES"); do
        port="$(node_port "$i")"
        nodes+=("${HOST}:${port}")
        start_bg "node$i" python3 -m pyorder.server.main --cluster --database "$dsn" \
            --host "$HOST" --port "$port" --data-dir "$STATE/data" \
            --payment-provider "name=card1,url=http://${HOST}:${card1},secret=$SECRET,methods=card+wallet,priority=0" \
            --payment-provider "name=card2,url=http://${HOST}:${card2},secret=$SECRET,methods=card+bank_transfer,priority=1" \
            --carrier "name=swift,url=http://${HOST}:${swift},secret=$SECRET" "${extra[@]}"
        if [[ $STARTED == 1 ]]; then
            wait_ready "node$i" "http://${HOST}:${port}/readyz"
        fi
    done

    python3 -m pyorder.server.haproxy --bind "${HOST}:${FRONT_PORT}" \
        --stats "${HOST}:${STATS_PORT}" "${nodes[@]}" >"$STATE/haproxy.cfg"
    "$haproxy" -c -q -f "$STATE/haproxy.cfg" </dev/null
    start_bg haproxy "$haproxy" -db -f "$STATE/haproxy.cfg"
    wait_ready haproxy "${FRONT}/readyz" # 200 once one node is up
    log "up: ${FRONT} (HAProxy over ${nodes[*]}), stats http://${HOST}:${STATS_PORT}/, database $dsn"
}

# SIGTERM each of the components named, at once; wait up to $STOP_WAIT_S for them to exit, then
# SIGKILL what is left.
stop() {
    local name pid pids=() i
    for name in "$@"; do
        if alive "$name"; then
            pid="$(cat "$(pidfile "$name")")"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    for i in $(seq 1 $((STOP_WAIT_S * 10))); do
        local left=0
        for pid in "${pids[@]}"; do
            running "$pid" && left=1
        done
        [[ $left == 0 ]] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        if running "$pid"; then
            log "pid $pid still runs after ${STOP_WAIT_S} s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    for name in "$@"; do rm -f "$(pidfile "$name")"; done
}

down() {
    [[ -d "$STATE" ]] || return 0
    local nodes=() f name
    for f in "$STATE"/node*.pid; do
        [[ -e "$f" ]] || continue
        name="$(basename "$f" .pid)"
        nodes+=("$name")
    done
    # The nodes drain and give their stock leases back while HAProxy still answers (503 once
    # every node is out); then the rest.
    stop "${nodes[@]}"
    stop haproxy
    stop card1 card2 swift
    if [[ -e "$STATE/pg.managed" && -s "$STATE/pg/PG_VERSION" ]]; then
        local bindir
        bindir="$(pg_bindir)"
        if [[ -n "$bindir" && -e "$STATE/pg/postmaster.pid" ]]; then
            if [[ "$(id -u)" == 0 ]]; then
                runuser -u postgres -- "$bindir/pg_ctl" stop -D "$STATE/pg" -m fast -w >&2 </dev/null
            else
                "$bindir/pg_ctl" stop -D "$STATE/pg" -m fast -w >&2 </dev/null
            fi
        fi
        rm -f "$STATE/pg.managed"
    fi
    if [[ -e "$STATE/pg-pair.managed" ]]; then
        bash scripts/pg_pair.sh down "$STATE/pg-pair" </dev/null >&2
        rm -f "$STATE/pg-pair.managed"
    fi
    log "down"
}

status() {
    local name f ok=0 port
    for f in "$STATE"/*.pid; do
        [[ -e "$f" ]] || continue
        name="$(basename "$f" .pid)"
        if alive "$name"; then
            case $name in
            node*)
                port="$(node_port "${name#node}")"
                echo "$name    pid $(cat "$f")  http://${HOST}:${port}  /readyz $(http_status "http://${HOST}:${port}/readyz")"
                ;;
            *) echo "$name    pid $(cat "$f")" ;;
            esac
        else
            echo "$name    not running"
            ok=1
        fi
    done
    if [[ ! -e "$STATE/haproxy.pid" ]]; then
        echo "nothing runs (state folder: $STATE)"
        return 1
    fi
    echo "front    ${FRONT}  /readyz $(http_status "${FRONT}/readyz")"
    [[ -s "$STATE/dsn" ]] && echo "database $(cat "$STATE/dsn")"
    # HAProxy's view: node, state (UP, DOWN, "UP 1/2" while it changes), last check.
    curl -s -m 2 "http://${HOST}:${STATS_PORT}/;csv" </dev/null |
        awk -F, '$1 == "pyorder" && $2 ~ /^n[0-9]+$/ { print "haproxy  " $2 " " $18 " " $37 }' || true
    return $ok
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
*)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
