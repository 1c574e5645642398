#!/usr/bin/env bash
# A PostgreSQL primary and a synchronous streaming standby on loopback, for failover tests,
# benchmarks and the local cluster (docs/operations.md, "Database failover").
#
#   bash scripts/pg_pair.sh up [DIR]       start both (initdb and base backup on first use);
#                                           prints the multi-host DSN on stdout
#   bash scripts/pg_pair.sh promote [DIR]  promote the standby (after the primary died)
#   bash scripts/pg_pair.sh rebuild-standby [DIR]
#                                           a new standby in the dead primary's place, from a
#                                           base backup of the new primary (synchronous again)
#   bash scripts/pg_pair.sh status [DIR]   each server's port, pid, role; replication state
#   bash scripts/pg_pair.sh dsn [DIR]      print the DSN again
#   bash scripts/pg_pair.sh down [DIR]     stop both (the data directories stay)
#
# DIR: the argument, else $PYORDER_PAIR_DIR, else /tmp/pyorder-pair; it holds primary/ and
# standby/ (data directories), their logs and `ports`. Ports: $PYORDER_PAIR_PORTS ("P1 P2"),
# else two free ones, kept in DIR/ports for the next commands. Database: $PYORDER_PAIR_DB
# (default pyorder). $PYORDER_PAIR_SYNC=off makes replication asynchronous
# (synchronous_standby_names = ''), for comparing throughput; the default is synchronous: a
# commit is acknowledged once the standby has flushed it too (RPO 0).
#
# The DSN lists both servers with target_session_attrs=read-write: a client takes the first
# one that accepts writes, so after `promote` the same DSN reaches the new primary.
# Runs the servers as the `postgres` OS user when root (root cannot run them), like
# scripts/postgres.sh. Trust authentication on loopback only; fsync on. Binaries: version 15 in
# /usr/lib/postgresql, else the newest there, or $PYORDER_PG_BINDIR.
set -euo pipefail

HOST=127.0.0.1
DB="${PYORDER_PAIR_DB:-pyorder}"
STANDBY_NAME=pyorder_standby
SYNC="${PYORDER_PAIR_SYNC:-on}"

log() { echo "pg_pair.sh: $*" >&2; }
die() {
    log "$*"
    exit 1
}

usage() { die "usage: pg_pair.sh up|down|promote|rebuild-standby|status|dsn [DIR]"; }

[[ $# -ge 1 ]] || usage
CMD="$1"
DIR="${2:-${PYORDER_PAIR_DIR:-/tmp/pyorder-pair}}"
PRIMARY="$DIR/primary"
STANDBY="$DIR/standby"

# The server binaries: $PYORDER_PG_BINDIR, else version 15's, else the newest installed
# (scripts/postgres.sh installs 15 when there are none).
find_bindir() {
    local d
    for d in ${PYORDER_PG_BINDIR:-} /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/pg_basebackup" ]]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}
BINDIR="$(find_bindir)" || die "no PostgreSQL server binaries (set PYORDER_PG_BINDIR, or run scripts/postgres.sh)"

# A server command as the postgres OS user when we are root, else as ourselves.
as_pg() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ports() {
    if [[ ! -s "$DIR/ports" ]]; then
        local p1 p2
        if [[ -n "${PYORDER_PAIR_PORTS:-}" ]]; then
            read -r p1 p2 <<<"$PYORDER_PAIR_PORTS"
        else
            p1="$(free_port)"
            p2="$(free_port)"
            while [[ "$p2" == "$p1" ]]; do p2="$(free_port)"; done
        fi
        echo "$p1 $p2" >"$DIR/ports"
    fi
    read -r P1 P2 <"$DIR/ports"
}

dsn() { echo "postgresql://postgres@${HOST}:${P1},${HOST}:${P2}/${DB}?target_session_attrs=read-write"; }

ready() { "$BINDIR/pg_isready" -q -h "$HOST" -p "$1" -U postgres -d postgres; }

psql_at() {
    local port="$1"
    shift
    "$BINDIR/psql" -X -q -h "$HOST" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@" </dev/null
}

# Whether process $1 is alive (a zombie is not: it has exited and only waits to be reaped). The
# state field of /proc/PID/stat (the command name before it has no spaces here).
alive() {
    local state
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
    [[ -n "$state" && "$state" != Z* ]]
}

# Whether the postmaster of data directory $1 is alive: a killed one leaves its pid file, and
# may linger as a zombie where nothing reaps orphans (a container's init).
running() {
    [[ -s "$1/postmaster.pid" ]] || return 1
    alive "$(head -n 1 "$1/postmaster.pid")"
}

# Remove lock file $1 when the process it names is dead or a zombie. PostgreSQL tests the pid
# with kill(pid, 0), which a zombie passes, so a killed postmaster that nothing has reaped yet
# keeps its data directory's and its socket's locks "held" and the next start fails.
clear_stale_lock() {
    local pid
    [[ -s "$1" ]] || return 0
    pid="$(head -n 1 "$1")"
    if [[ -n "$pid" ]] && ! alive "$pid"; then
        log "removing the stale lock $1 of the dead postmaster $pid"
        rm -f "$1"
    fi
}

start() { # data directory, port, log file
    running "$1" && return 0
    clear_stale_lock "$1/postmaster.pid"
    clear_stale_lock "$DIR/.s.PGSQL.$2.lock"
    # Port and socket directory on the command line: they win over the copied configuration.
    as_pg "$BINDIR/pg_ctl" start -D "$1" -l "$3" -w -t 60 \
        -o "-c port=$2 -c listen_addresses=${HOST} -c unix_socket_directories=${DIR}" >&2 </dev/null \
        || {
            tail -n 20 "$3" >&2 || true
            die "the server in $1 did not start"
        }
}

init_primary() {
    log "initdb of the primary into $PRIMARY (port $P1)"
    as_pg mkdir -m 700 "$PRIMARY"
    as_pg "$BINDIR/initdb" -D "$PRIMARY" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=trust >/dev/null </dev/null
    local names="$STANDBY_NAME"
    [[ "$SYNC" == off ]] && names=""
    as_pg tee -a "$PRIMARY/postgresql.conf" >/dev/null <<EOF

# --- pyorder primary of a replicated pair (scripts/pg_pair.sh) ---
listen_addresses = '${HOST}'
fsync = on
full_page_writes = on
wal_level = replica
max_wal_senders = 4
max_replication_slots = 4
hot_standby = on
max_connections = 100
# A commit returns once the standby named here has flushed it as well ('' = asynchronous).
synchronous_commit = on
synchronous_standby_names = '${names}'
EOF
    as_pg tee "$PRIMARY/pg_hba.conf" >/dev/null <<EOF
# pyorder replicated pair: trust on loopback and the local socket only.
local all all trust
host all all 127.0.0.1/32 trust
local replication all trust
host replication all 127.0.0.1/32 trust
EOF
    start "$PRIMARY" "$P1" "$DIR/primary.log"
    # No standby yet to wait for: these commits are local.
    psql_at "$P1" -c "SET synchronous_commit = local" \
        -c "CREATE ROLE replicator WITH REPLICATION LOGIN" -c "CREATE DATABASE ${DB}" >&2
}

port_of() { if [[ "$1" == "$PRIMARY" ]]; then echo "$P1"; else echo "$P2"; fi; }
log_of() { if [[ "$1" == "$PRIMARY" ]]; then echo "$DIR/primary.log"; else echo "$DIR/standby.log"; fi; }
other() { if [[ "$1" == "$PRIMARY" ]]; then echo "$STANDBY"; else echo "$PRIMARY"; fi; }

# A standby in data directory $1 (its port by its name), made by a base backup of the server
# on port $2, which waits for it when replication is synchronous.
make_standby() {
    local target="$1" from="$2" port
    port="$(port_of "$target")"
    log "base backup of the server on port $from into $target (port $port)"
    psql_at "$from" -c "SET synchronous_commit = local" -c \
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '${STANDBY_NAME}'" >/dev/null
    as_pg "$BINDIR/pg_basebackup" -h "$HOST" -p "$from" -U replicator -D "$target" -R \
        -X stream -C -S "$STANDBY_NAME" --checkpoint=fast >&2 </dev/null
    # application_name is the name synchronous_standby_names waits for. After a promotion this
    # server runs alone, so it must not wait for a standby of its own until one is attached.
    # A promotion that lands just as the stream from a dead primary breaks waits out
    # wal_retrieve_retry_interval first (5 s by default, seen in the failover tests): 200 ms.
    as_pg tee -a "$target/postgresql.auto.conf" >/dev/null <<EOF
primary_conninfo = 'host=${HOST} port=${from} user=replicator application_name=${STANDBY_NAME}'
primary_slot_name = '${STANDBY_NAME}'
synchronous_standby_names = ''
wal_retrieve_retry_interval = '200ms'
EOF
    start "$target" "$port" "$(log_of "$target")"
}

wait_streaming() { # the primary's port
    local want=async state=""
    [[ "$SYNC" == off ]] || want=sync
    for _ in $(seq 1 120); do
        state="$(psql_at "$1" -tA -c \
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = '${STANDBY_NAME}'")"
        [[ "$state" == "$want" ]] && return 0
        sleep 0.25
    done
    die "the standby is not streaming as $want (state: '${state}'); see the logs in $DIR"
}

up() {
    mkdir -p "$DIR"
    [[ "$(id -u)" == 0 ]] && chown postgres:postgres "$DIR"
    ports
    if [[ -s "$STANDBY/PG_VERSION" && ! -f "$STANDBY/standby.signal" && ! -f "$PRIMARY/standby.signal" ]]; then
        # Starting both would make two primaries (split brain): the old one has writes the
        # other never saw, or lacks the new one's.
        die "the standby of $DIR was promoted: start the new primary by hand (pg_ctl), then run rebuild-standby"
    fi
    [[ -s "$PRIMARY/PG_VERSION" ]] || init_primary
    start "$PRIMARY" "$P1" "$DIR/primary.log"
    if [[ ! -s "$STANDBY/PG_VERSION" ]]; then
        make_standby "$STANDBY" "$P1"
    fi
    start "$STANDBY" "$P2" "$DIR/standby.log"
    local d
    for d in "$PRIMARY" "$STANDBY"; do
        if [[ -f "$d/standby.signal" ]]; then
            wait_streaming "$(port_of "$(other "$d")")"
        fi
    done
    dsn
}

down() {
    local d
    for d in "$STANDBY" "$PRIMARY"; do
        if running "$d"; then
            as_pg "$BINDIR/pg_ctl" stop -D "$d" -m fast -w -t 30 >&2 </dev/null \
                || as_pg "$BINDIR/pg_ctl" stop -D "$d" -m immediate -w >&2 </dev/null
        fi
    done
}

# The data directory of the running server that is not a standby (none: empty).
current_primary() {
    local d
    for d in "$PRIMARY" "$STANDBY"; do
        if running "$d" && [[ ! -f "$d/standby.signal" ]]; then
            echo "$d"
            return 0
        fi
    done
}

promote() {
    local d
    for d in "$STANDBY" "$PRIMARY"; do
        if [[ -f "$d/standby.signal" ]]; then
            log "promoting the standby in $d (port $(port_of "$d"))"
            as_pg "$BINDIR/pg_ctl" promote -D "$d" -w -t 60 >&2 </dev/null
            return 0
        fi
    done
    die "no standby in $DIR (promoted already?)"
}

# After a failover: a new standby in the dead primary's place, made from the new primary, which
# then waits for it again (synchronous_standby_names, set by ALTER SYSTEM, reloaded).
rebuild_standby() {
    local primary target from names="$STANDBY_NAME"
    primary="$(current_primary)"
    [[ -n "$primary" ]] || die "no running primary in $DIR"
    target="$(other "$primary")"
    from="$(port_of "$primary")"
    if running "$target"; then
        as_pg "$BINDIR/pg_ctl" stop -D "$target" -m immediate -w >&2 </dev/null
    fi
    rm -rf "$target"
    make_standby "$target" "$from"
    [[ "$SYNC" == off ]] && names=""
    psql_at "$from" -c "ALTER SYSTEM SET synchronous_standby_names = '${names}'" \
        -c "SELECT pg_reload_conf()" >/dev/null
    wait_streaming "$from"
}

status() {
    local name d port pid role
    for name in primary standby; do
        d="$DIR/$name"
        port="$P1"
        [[ "$name" == standby ]] && port="$P2"
        pid="-"
        [[ -s "$d/postmaster.pid" ]] && pid="$(head -n 1 "$d/postmaster.pid")"
        if ready "$port"; then
            role="$(psql_at "$port" -tA -c \
                "SELECT CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END")"
        else
            role=down
        fi
        echo "$name port=$port pid=$pid role=$role"
        if [[ "$role" == primary ]]; then
            psql_at "$port" -tA -F ' ' -c "SELECT 'replica', application_name, state, sync_state,
                pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS lag_bytes
                FROM pg_stat_replication"
        fi
    done
}

case "$CMD" in
up) up ;;
down)
    if [[ -s "$DIR/ports" ]]; then
        ports
        down
    fi
    ;;
promote)
    ports
    promote
    ;;
rebuild-standby)
    ports
    rebuild_standby
    dsn
    ;;
status)
    ports
    status
    ;;
dsn)
    ports
    dsn
    ;;
*) usage ;;
esac
