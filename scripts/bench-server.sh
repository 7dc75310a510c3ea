#!/usr/bin/env bash
# The policy server's benchmark (issue 9 §6): conditional bundle fetches and report ingestion
# on SQLite and on PostgreSQL, and the HTTP+TLS ceiling on the same machine, with
# `postwarden-loadgen`. Prints a Markdown table and keeps every run's JSON.
#
#   scripts/bench-server.sh                     # the full run (about 7 minutes)
#   BACKENDS=sqlite CONNECTIONS=16 DURATION=5s scripts/bench-server.sh   # a quick look
#
# Settings (environment): AGENTS (2000), DURATION (20s), WARMUP (3s), CONNECTIONS ("16 64"),
# SCENARIOS ("fetch reports mixed"), FINDINGS (findings per report, 100), BACKENDS
# ("sqlite postgres"), LOADGEN_THREADS (1), HTTP (h2 | http1.1), OUT (target/bench-server).
#
# PostgreSQL runs in a throwaway cluster (initdb + pg_ctl from /usr/lib/postgresql/*/bin, as the
# `postgres` user when run as root, on a free loopback port) with its durability settings left
# at their defaults: fsync and synchronous_commit on, as a production server would run. The
# server's SQLite database is in WAL mode with synchronous=FULL (the server's own settings).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

AGENTS=${AGENTS:-2000}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
CONNECTIONS=${CONNECTIONS:-"16 64"}
SCENARIOS=${SCENARIOS:-"fetch reports mixed"}
FINDINGS=${FINDINGS:-100}
BACKENDS=${BACKENDS:-"sqlite postgres"}
LOADGEN_THREADS=${LOADGEN_THREADS:-1}
HTTP=${HTTP:-h2}
OUT=${OUT:-$ROOT/target/bench-server}

SERVER=$ROOT/target/release/postwarden-server
LOADGEN=$ROOT/target/release/postwarden-loadgen

say() { printf 'bench-server: %s\n' "$*" >&2; }

cargo build --release -p postwarden-server -p postwarden-loadgen

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT/log.txt"
exec > >(tee -a "$OUT/log.txt") 2>&1
WORK=$(mktemp -d /tmp/postwarden-bench.XXXXXX)
PG_DIR=""
PG_BIN=""
SERVER_PID=""
CEILING_PID=""

as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_pid() { # PID: SIGTERM, then wait for it to end
    local pid=$1
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
}

stop_postgres() {
    if [ -n "$PG_DIR" ] && [ -f "$PG_DIR/data/postmaster.pid" ]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    [ -z "$PG_DIR" ] || rm -rf "$PG_DIR"
    PG_DIR=""
}

cleanup() {
    stop_pid "$SERVER_PID"
    stop_pid "$CEILING_PID"
    stop_postgres
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_ready() { # FILE PID LOG
    local file=$1 pid=$2 log=$3
    for _ in $(seq 300); do
        [ -s "$file" ] && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            say "the server exited before it was ready:"
            cat "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
    say "the server was not ready after 30 s:"
    cat "$log" >&2
    exit 1
}

start_postgres() {
    PG_BIN=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null \
        | sort -V | tail -n 1)
    if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
        say "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/install-test-deps.sh"
        exit 1
    fi
    PG_DIR=$(mktemp -d /tmp/postwarden-bench-pg.XXXXXX)
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$PG_DIR"; fi
    as_postgres "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 \
        --no-instructions >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; exit 1; }
    local port
    for _ in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 40000))
        if as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
            -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200" \
            start >/dev/null 2>&1; then
            "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres postwarden
            DATABASE_URL="postgres://postgres@127.0.0.1:$port/postwarden"
            PG_PID=$(head -n 1 "$PG_DIR/data/postmaster.pid")
            say "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on port $port" \
                "(fsync $(as_postgres "$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -Atc 'show fsync'))"
            return 0
        fi
    done
    say "PostgreSQL did not start:"
    cat "$PG_DIR/server.log" >&2
    exit 1
}

machine() {
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel: $(uname -r)"
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
}

load() { # LABEL SCENARIO CONNECTIONS EXTRA-ARGS…
    local label=$1 scenario=$2 conns=$3
    shift 3
    say "$label $scenario, $conns connections (load $(cut -d' ' -f1 /proc/loadavg))"
    "$LOADGEN" run --label "$label" --scenario "$scenario" --connections "$conns" \
        --agents "$AGENTS" --duration "$DURATION" --warmup "$WARMUP" \
        --findings-per-report "$FINDINGS" --threads "$LOADGEN_THREADS" --http "$HTTP" \
        --json "$OUT/$label-$scenario-$conns.json" "$@"
}

say "machine:"
machine | tee "$OUT/machine.txt" >&2

runs=()
SQLITE_DATA=""
for backend in $BACKENDS; do
    data="$WORK/$backend-data"
    mkdir -m 700 "$data"
    [ -n "$SQLITE_DATA" ] || SQLITE_DATA=$data
    db_args=()
    db_pid_args=()
    case $backend in
        sqlite) ;;
        postgres)
            start_postgres
            db_args=(--database-url "$DATABASE_URL")
            db_pid_args=(--db-pid "$PG_PID")
            ;;
        *) say "unknown backend $backend (sqlite or postgres)"; exit 2 ;;
    esac
    "$SERVER" serve --data-dir "$data" --listen 127.0.0.1:0 --ready-file "$WORK/$backend.ready" \
        --enroll-rate 1000000 "${db_args[@]}" 2>"$WORK/$backend-server.log" &
    SERVER_PID=$!
    wait_ready "$WORK/$backend.ready" "$SERVER_PID" "$WORK/$backend-server.log"
    token=$("$SERVER" admin create-token --name bench --data-dir "$data" "${db_args[@]}")
    for scenario in $SCENARIOS; do
        for conns in $CONNECTIONS; do
            load "$backend" "$scenario" "$conns" --ready-file "$WORK/$backend.ready" \
                --admin-token "$token" --agents-file "$WORK/$backend-agents.json" \
                --server-pid "$SERVER_PID" "${db_pid_args[@]}"
            runs+=("$OUT/$backend-$scenario-$conns.json")
        done
    done
    stop_pid "$SERVER_PID"
    SERVER_PID=""
    [ "$backend" != postgres ] || stop_postgres
done

# The ceiling: the same certificate (the first backend's data directory), the same TLS
# listener, handlers that do nothing.
ceiling_data=${SQLITE_DATA:-$WORK/ceiling-data}
[ -d "$ceiling_data" ] || mkdir -m 700 "$ceiling_data"
"$LOADGEN" ceiling --listen 127.0.0.1:0 --ready-file "$WORK/ceiling.ready" \
    --data-dir "$ceiling_data" 2>"$WORK/ceiling.log" &
CEILING_PID=$!
wait_ready "$WORK/ceiling.ready" "$CEILING_PID" "$WORK/ceiling.log"
ceilings=()
for conns in $CONNECTIONS; do
    load ceiling fetch "$conns" --ceiling --ready-file "$WORK/ceiling.ready" \
        --server-pid "$CEILING_PID"
    ceilings+=(--ceiling "$OUT/ceiling-fetch-$conns.json")
done
stop_pid "$CEILING_PID"
CEILING_PID=""

say "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "$AGENTS agents, $DURATION per run after $WARMUP warm-up, $FINDINGS findings per report," \
    "$HTTP, $LOADGEN_THREADS generator thread(s); $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo
"$LOADGEN" table "${ceilings[@]}" "${runs[@]}" "$OUT"/ceiling-fetch-*.json | tee "$OUT/table.md"
