#!/usr/bin/env bash
# profile.sh — where one tier's CPU goes under the e2e load, for ours only (no peers, no rounds).
#
#   bench/e2e/profile.sh [sqlite|postgres] [list|create|mixed] [task-service|gateway]
#
# Starts the release task-service and gateway the way bench.sh does (GATEWAY_THREADS=1,
# RUST_LOG=warn), seeds 200 list users with 20 tasks each through the gateway, warms up for 2 s,
# then runs wrk (-t1 -c32, 10 s) while `perf record -g` samples the chosen process. Prints req/s,
# the CPU µs per request of both tiers (from /proc), the machine's context switches per request,
# and perf's top symbols; leaves perf.data in the run folder for `perf report -i`. Needs wrk,
# python3, curl and perf (Debian's linux-perf); on PostgreSQL a server at 127.0.0.1:5432, user
# postgres, trust auth (PG_HOST, PG_PORT, PG_USER), where it uses a fresh database and drops it.
# Like every benchmark here it talks to 127.0.0.1 only; a quiet machine gives steadier figures.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BACKEND=${1:-sqlite}
WORKLOAD=${2:-list}
TARGET=${3:-task-service}
GW_BIN=${GW_BIN:-$ROOT/target/release/gateway}
TS_BIN=${TS_BIN:-$ROOT/target/release/task-service}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_USER=${PG_USER:-postgres}
HOST=127.0.0.1
case $BACKEND in sqlite | postgres) ;; *) echo "backend: sqlite or postgres" >&2; exit 2 ;; esac
case $WORKLOAD in list | create | mixed) ;; *) echo "workload: list, create or mixed" >&2; exit 2 ;; esac
case $TARGET in task-service | gateway) ;; *) echo "target: task-service or gateway" >&2; exit 2 ;; esac
for tool in wrk python3 curl perf; do
  command -v "$tool" >/dev/null || { echo "missing '$tool' (apt-get install wrk linux-perf)" >&2; exit 2; }
done
[[ -x $GW_BIN && -x $TS_BIN ]] || { echo "build first: cargo build --release -p gateway -p task-service" >&2; exit 2; }

# The gateway refuses an upgrade socket in a directory others can read; keep the run private.
umask 077
RUN=$(mktemp -d /tmp/e2e-profile.XXXXXX)
PIDS=()
DB=""
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n $DB ]]; then psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -qc "drop database if exists $DB" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
context_switches() { awk '/^ctxt/ {print $2}' /proc/stat; }

python3 "$HERE/gen_tokens.py" --out "$RUN/tok" --list-users 200 --create-users 200 >/dev/null
SIGNING_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
if [[ $BACKEND == sqlite ]]; then
  URL="sqlite://$RUN/tasks.db"
else
  DB="e2e_profile_$$"
  psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -qc "create database $DB"
  URL="postgres://$PG_USER@$PG_HOST:$PG_PORT/$DB"
fi
TSP=$(free_port); GWP=$(free_port); ADP=$(free_port)
env GATEWAY_SIGNING_SECRET="$SIGNING_SECRET" TASK_SERVICE_LISTEN="$HOST:$TSP" DATABASE_URL="$URL" \
  RUST_LOG=warn LOG_FORMAT=json "$TS_BIN" >"$RUN/task-service.log" 2>&1 &
TS_PID=$!; PIDS+=("$TS_PID")
env GATEWAY_SIGNING_SECRET="$SIGNING_SECRET" BETTER_AUTH_SECRET="$(cat "$RUN/tok/secret")" \
  JWT_ISSUER=e2e-bench JWT_AUDIENCE=e2e-bench GATEWAY_THREADS="${GATEWAY_THREADS:-1}" \
  GATEWAY_LISTEN="$HOST:$GWP" GATEWAY_ADMIN_LISTEN="$HOST:$ADP" TASK_SERVICE_URL="http://$HOST:$TSP" \
  GATEWAY_UPGRADE_SOCK=off RUST_LOG=warn LOG_FORMAT=json "$GW_BIN" >"$RUN/gateway.log" 2>&1 &
GW_PID=$!; PIDS+=("$GW_PID")
for _ in $(seq 100); do
  curl -sf "http://$HOST:$ADP/readyz" >/dev/null && break
  sleep 0.2
done
curl -sf "http://$HOST:$ADP/readyz" >/dev/null || { echo "the stack did not become ready; see $RUN" >&2; exit 1; }
python3 "$HERE/seed.py" --url "http://$HOST:$GWP" --tokens "$RUN/tok/list.tokens" --per-user 20

load() {  # load SECONDS
  wrk -t1 -c32 -d"$1"s --timeout 5s -s "$HERE/$WORKLOAD.lua" "http://$HOST:$GWP" \
    -- "$RUN/tok/list.tokens" "$RUN/tok/create.tokens" 0
}
load 2 >/dev/null
if [[ $TARGET == gateway ]]; then PROFILED=$GW_PID; else PROFILED=$TS_PID; fi
ts0=$(cpu_ticks "$TS_PID"); gw0=$(cpu_ticks "$GW_PID"); cs0=$(context_switches)
perf record -F 2000 -g -p "$PROFILED" -o "$RUN/perf.data" -- sleep 10 >/dev/null 2>&1 &
PERF_PID=$!
load 10 >"$RUN/wrk.txt"
wait "$PERF_PID" || true
ts1=$(cpu_ticks "$TS_PID"); gw1=$(cpu_ticks "$GW_PID"); cs1=$(context_switches)
requests=$(awk '/requests in/ {print $1}' "$RUN/wrk.txt")
ticks=$(getconf CLK_TCK)
grep -E "Requests/sec|Non-2xx|Socket errors" "$RUN/wrk.txt" || true
awk -v r="$requests" -v t=$((ts1 - ts0)) -v g=$((gw1 - gw0)) -v c=$((cs1 - cs0)) -v hz="$ticks" 'BEGIN {
  printf "%d requests: task-service %.1f µs/req, gateway %.1f µs/req, %.1f context switches/req (machine)\n",
    r, t * 1e6 / hz / r, g * 1e6 / hz / r, c / r }'
echo "== top symbols of the $TARGET (perf report -i $RUN/perf.data)"
perf report -i "$RUN/perf.data" --no-children --sort dso,sym -g none -q 2>/dev/null | head -30
trap - EXIT
cleanup
echo "run folder: $RUN"
