#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for the tests (idempotent, no stdin) and print its DSN.
#
#   export PYORDER_TEST_POSTGRES="$(bash scripts/postgres.sh)"
#
# Data directory: $PYORDER_PG_DIR (default /tmp/pyorder-pg), owned by the `postgres` OS user
# when run as root (root cannot run the server). Port: $PYORDER_PG_PORT (default 54329), on
# 127.0.0.1 only, trust authentication on loopback, fsync on (the tests check durability).
# Creates the database `pyorder_test`. If the cluster already runs, it only prints the DSN.
# Installs Debian's postgresql-15 only when no server binaries are found.
# Stop it with: pg_ctl stop -D "$PYORDER_PG_DIR" (as the postgres user when root).
set -euo pipefail

PGDATA_DIR="${PYORDER_PG_DIR:-/tmp/pyorder-pg}"
PORT="${PYORDER_PG_PORT:-54329}"
DB=pyorder_test
HOST=127.0.0.1
DSN="postgresql://postgres@${HOST}:${PORT}/${DB}"

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    local d
    for d in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

BINDIR="$(find_bindir || true)"
if [[ -z "$BINDIR" ]]; then
    log "no PostgreSQL server binaries found; installing postgresql-15"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql-15 >&2 </dev/null
    BINDIR="$(find_bindir)"
fi

# Run a server command as the postgres OS user when we are root, else as ourselves.
as_pg() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

ready() { "$BINDIR/pg_isready" -q -h "$HOST" -p "$PORT" -U postgres -d postgres; }

psql_pg() { "$BINDIR/psql" -X -q -h "$HOST" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@" </dev/null; }

if ! ready; then
    if [[ ! -s "$PGDATA_DIR/PG_VERSION" ]]; then
        log "initdb into $PGDATA_DIR"
        mkdir -p "$PGDATA_DIR"
        if [[ "$(id -u)" == 0 ]]; then
            chown postgres:postgres "$PGDATA_DIR"
        fi
        chmod 700 "$PGDATA_DIR"
        as_pg "$BINDIR/initdb" -D "$PGDATA_DIR" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=trust >/dev/null </dev/null
        # Loopback only, fsync on (durability is under test), sockets in the data directory so
        # that /var/run/postgresql need not exist.
        cat >>"$PGDATA_DIR/postgresql.conf" <<EOF

# --- pyorder test cluster (scripts/postgres.sh) ---
listen_addresses = '${HOST}'
port = ${PORT}
unix_socket_directories = '${PGDATA_DIR}'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 100
EOF
        cat >"$PGDATA_DIR/pg_hba.conf" <<EOF
# pyorder test cluster: trust on loopback and the local socket only.
local all all trust
host all all 127.0.0.1/32 trust
host all all ::1/128 trust
EOF
    fi
    log "starting PostgreSQL on ${HOST}:${PORT}"
    # Port and address again on the command line: they win over an older data directory's conf.
    as_pg "$BINDIR/pg_ctl" start -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" -w -t 60 \
        -o "-c port=${PORT} -c listen_addresses=${HOST}" >&2 </dev/null
    for _ in $(seq 1 60); do
        ready && break
        sleep 0.5
    done
    if ! ready; then
        log "PostgreSQL did not become ready; last lines of $PGDATA_DIR/server.log:"
        tail -n 20 "$PGDATA_DIR/server.log" >&2 || true
        exit 1
    fi
fi

if [[ "$(psql_pg -tA -c "SELECT 1 FROM pg_database WHERE datname = '${DB}'")" != 1 ]]; then
    psql_pg -c "CREATE DATABASE ${DB}" >&2
fi

echo "$DSN"
