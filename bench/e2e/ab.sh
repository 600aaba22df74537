#!/usr/bin/env bash
# ab.sh — two builds of ours side by side: A and B, each a gateway + task service on its own
# database, timed in alternating rounds (A B, A B, …) under the same wrk load, so that a change
# is measured against the build before it in one run.
#
#   A_TS=/tmp/task-service-before B_TS=target/release/task-service bench/e2e/ab.sh
#   WORKLOAD=create BACKEND=postgres ROUNDS=5 A_GW=… B_GW=… bench/e2e/ab.sh
#   A_ENV="TOKIO_WORKER_THREADS=1" bench/e2e/ab.sh        # one binary, two settings
#
# Knobs: A_TS/B_TS, A_GW/B_GW (default target/release/{task-service,gateway}); A_ENV/B_ENV and
# A_GW_ENV/B_GW_ENV (extra `NAME=value …` for the task service / the gateway); BACKEND (sqlite
# or postgres at PG_HOST:PG_PORT, user PG_USER, trust auth: a fresh database per side, dropped at
# the end); WORKLOAD (list, create or mixed: the e2e scripts); ROUNDS (4); DURATION (8 s, after
# a 2 s warm-up). Seeds 200 list users with 20 tasks each through each side's gateway. Prints
# req/s and CPU µs per request of each tier for every round, then the medians. Loopback only;
# needs wrk, python3, curl (and psql for PostgreSQL). A benchmark: CI does not run it.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BACKEND=${BACKEND:-sqlite}
WORKLOAD=${WORKLOAD:-list}
ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-8}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_USER=${PG_USER:-postgres}
HOST=127.0.0.1
case $BACKEND in sqlite | postgres) ;; *) echo "BACKEND: sqlite or postgres" >&2; exit 2 ;; esac
case $WORKLOAD in list | create | mixed) ;; *) echo "WORKLOAD: list, create or mixed" >&2; exit 2 ;; esac
for tool in wrk python3 curl; do
  command -v "$tool" >/dev/null || { echo "missing '$tool'" >&2; exit 2; }
done

# The gateway refuses an upgrade socket in a directory others can read; keep the run private.
umask 077
RUN=$(mktemp -d /tmp/e2e-ab.XXXXXX)
PIDS=()
DATABASES=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for db in "${DATABASES[@]}"; do
    psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -qc "drop database if exists $db" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

python3 "$HERE/gen_tokens.py" --out "$RUN/tok" --list-users 200 --create-users 200 >/dev/null
SIGNING_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')

declare -A TS_PID GW_PID PORT
start() {  # start SIDE TASK_SERVICE GATEWAY TS_ENV GW_ENV
  local side=$1 ts_bin=$2 gw_bin=$3 url tsp gwp adp
  [[ -x $ts_bin && -x $gw_bin ]] || { echo "side $side: missing $ts_bin or $gw_bin" >&2; exit 2; }
  tsp=$(free_port); gwp=$(free_port); adp=$(free_port)
  if [[ $BACKEND == sqlite ]]; then
    url="sqlite://$RUN/$side.db"
  else
    local db="e2e_ab_${side,,}_$$"
    psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -qc "create database $db"
    DATABASES+=("$db")
    url="postgres://$PG_USER@$PG_HOST:$PG_PORT/$db"
  fi
  # shellcheck disable=SC2086 # the extra settings are words on purpose
  env $4 GATEWAY_SIGNING_SECRET="$SIGNING_SECRET" TASK_SERVICE_LISTEN="$HOST:$tsp" \
    DATABASE_URL="$url" RUST_LOG=warn LOG_FORMAT=json "$ts_bin" >"$RUN/$side-task-service.log" 2>&1 &
  PIDS+=($!); TS_PID[$side]=$!
  # shellcheck disable=SC2086
  env $5 GATEWAY_SIGNING_SECRET="$SIGNING_SECRET" BETTER_AUTH_SECRET="$(cat "$RUN/tok/secret")" \
    JWT_ISSUER=e2e-bench JWT_AUDIENCE=e2e-bench GATEWAY_THREADS="${GATEWAY_THREADS:-1}" \
    GATEWAY_LISTEN="$HOST:$gwp" GATEWAY_ADMIN_LISTEN="$HOST:$adp" TASK_SERVICE_URL="http://$HOST:$tsp" \
    GATEWAY_UPGRADE_SOCK=off RUST_LOG=warn LOG_FORMAT=json "$gw_bin" >"$RUN/$side-gateway.log" 2>&1 &
  PIDS+=($!); GW_PID[$side]=$!; PORT[$side]=$gwp
  for _ in $(seq 100); do
    curl -sf "http://$HOST:$adp/readyz" >/dev/null && break
    sleep 0.2
  done
  curl -sf "http://$HOST:$adp/readyz" >/dev/null || { echo "side $side did not become ready; see $RUN" >&2; exit 1; }
  python3 "$HERE/seed.py" --url "http://$HOST:$gwp" --tokens "$RUN/tok/list.tokens" --per-user 20 >/dev/null
}
start A "${A_TS:-$ROOT/target/release/task-service}" "${A_GW:-$ROOT/target/release/gateway}" "${A_ENV:-}" "${A_GW_ENV:-}"
start B "${B_TS:-$ROOT/target/release/task-service}" "${B_GW:-$ROOT/target/release/gateway}" "${B_ENV:-}" "${B_GW_ENV:-}"

load() {  # load SIDE SECONDS
  wrk -t1 -c32 -d"$2"s --timeout 5s -s "$HERE/$WORKLOAD.lua" "http://$HOST:${PORT[$1]}" \
    -- "$RUN/tok/list.tokens" "$RUN/tok/create.tokens" 0
}
hz=$(getconf CLK_TCK)
echo "round side req/s task-service_us/req gateway_us/req" >"$RUN/rounds.tsv"
for round in $(seq "$ROUNDS"); do
  for side in A B; do
    load "$side" 2 >/dev/null
    ts0=$(cpu_ticks "${TS_PID[$side]}"); gw0=$(cpu_ticks "${GW_PID[$side]}")
    load "$side" "$DURATION" >"$RUN/wrk-$side-$round.txt"
    ts1=$(cpu_ticks "${TS_PID[$side]}"); gw1=$(cpu_ticks "${GW_PID[$side]}")
    result=$(grep WRKRESULT "$RUN/wrk-$side-$round.txt")
    requests=$(sed -E 's/.* requests=([0-9]+).*/\1/' <<<"$result")
    rps=$(sed -E 's/.* rps=([0-9.]+).*/\1/' <<<"$result")
    bad=$(sed -E 's/.* non2xx=([0-9]+).*/\1/' <<<"$result")
    [[ $bad == 0 ]] || echo "side $side round $round: $bad non-2xx answers (see $RUN)" >&2
    awk -v r="$round" -v s="$side" -v q="$requests" -v rps="$rps" -v t=$((ts1 - ts0)) -v g=$((gw1 - gw0)) -v hz="$hz" \
      'BEGIN { printf "%d %s %.0f %.1f %.1f\n", r, s, rps, t * 1e6 / hz / q, g * 1e6 / hz / q }' |
      tee -a "$RUN/rounds.tsv"
  done
done
echo "medians ($WORKLOAD on $BACKEND, $ROUNDS rounds of ${DURATION}s, wrk -t1 -c32):"
python3 - "$RUN/rounds.tsv" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]).read().splitlines()[1:]]
for side in "AB":
    mine = [row for row in rows if row[1] == side]
    med = [statistics.median(float(row[i]) for row in mine) for i in (2, 3, 4)]
    print(f"  {side}: {med[0]:8.0f} req/s  task service {med[1]:6.1f} µs/req  gateway {med[2]:6.1f} µs/req")
EOF
echo "run folder: $RUN"
