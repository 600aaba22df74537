#!/usr/bin/env bash
# bench.sh — end-to-end, side-by-side benchmark: our gateway + task-service against the seed's
# FastAPI backend (../fastapi-peer), same load, interleaved, loopback only. See README.md.
#   ./bench.sh                                  # everything: 3 rounds, sqlite + postgres
#   BACKENDS=sqlite WORKLOADS=list ROUNDS=1 ./bench.sh
#   BIN_WAIT_S=2400 ./bench.sh                  # wait up to 40 min for the release binaries
# Results: /tmp/e2e-bench/<timestamp>/ (summary.md, rounds.tsv, conditions.txt, logs in run/).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEER_DIR="$(cd "$HERE/../fastapi-peer" && pwd)"
GW_BIN="${GW_BIN:-target/release/gateway}"
TS_BIN="${TS_BIN:-target/release/task-service}"
PEER_VENV="${PEER_VENV:-/tmp/fastapi-peer-venv}"
OUT_BASE="${OUT_BASE:-/tmp/e2e-bench}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"          # seconds per timed run
WARMUP="${WARMUP:-2}"               # seconds of warm-up right before each timed run
CONNS="${CONNS:-32}"
THREADS="${THREADS:-1}"             # wrk threads
WRK_TIMEOUT="${WRK_TIMEOUT:-5}"     # seconds; a slower answer counts as an error (timeout)
N_USERS="${N_USERS:-200}"           # list users (seeded) and, as many again, create users
TASKS_PER_USER="${TASKS_PER_USER:-20}"
BACKENDS="${BACKENDS:-sqlite postgres}"
WORKLOADS="${WORKLOADS:-list create mixed}"
SYSTEMS="${SYSTEMS:-ours fastapi-1w fastapi-2w}"
FASTAPI_SQLITE_WAL="${FASTAPI_SQLITE_WAL:-1}"  # 1: the peer runs SQLite in WAL, as ours does
PG_HOST="${PG_HOST:-127.0.0.1}" PG_PORT="${PG_PORT:-5432}" PG_USER="${PG_USER:-postgres}"
QUIET_THRESHOLD="${QUIET_THRESHOLD:-0.15}"   # other load (fraction of one core) deemed quiet
QUIET_MAX_WAIT="${QUIET_MAX_WAIT:-60}"       # most seconds to wait for quiet before one run
QUIET_BUDGET="${QUIET_BUDGET:-600}"          # most seconds of such waiting in the whole run
NOISY_RETRIES="${NOISY_RETRIES:-1}"          # redo a run during which other load exceeded it
BIN_WAIT_S="${BIN_WAIT_S:-0}"                # poll (every 30 s) this long for the binaries
START_TIMEOUT="${START_TIMEOUT:-120}"        # seconds for a system to become ready
KEEP_DB="${KEEP_DB:-0}"                      # 1: keep the SQLite files (and PostgreSQL databases)
HOST=127.0.0.1

exec 5>&1 6>&2
die() { echo "bench.sh: $*" >&6; exit 2; }
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&5; }

for v in ROUNDS DURATION WARMUP CONNS THREADS WRK_TIMEOUT N_USERS TASKS_PER_USER START_TIMEOUT; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -ge 1 ]] || die "$v must be a positive integer (got '${!v}')"
done
for v in QUIET_MAX_WAIT QUIET_BUDGET NOISY_RETRIES BIN_WAIT_S; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
for b in $BACKENDS; do [[ "$b" =~ ^(sqlite|postgres)$ ]] || die "BACKENDS: sqlite|postgres (got '$b')"; done
for w in $WORKLOADS; do [[ "$w" =~ ^(list|create|mixed)$ ]] || die "WORKLOADS: list|create|mixed (got '$w')"; done
for s in $SYSTEMS; do [[ "$s" =~ ^(ours|fastapi-[0-9]+w)$ ]] || die "SYSTEMS: ours|fastapi-<N>w (got '$s')"; done

# ------------------------------------------------------------ global time bound
nb=$(wc -w <<<"$BACKENDS"); nw=$(wc -w <<<"$WORKLOADS"); ns=$(wc -w <<<"$SYSTEMS")
est=$(( nb * nw * ns * ROUNDS * (WARMUP + DURATION + 4) * (1 + NOISY_RETRIES) ))
BENCH_MAX_S="${BENCH_MAX_S:-$(( est * 2 + QUIET_BUDGET + BIN_WAIT_S + nb * ns * (START_TIMEOUT + 300) + 300 ))}"
if [[ -z "${E2E_BENCH_UNDER_TIMEOUT:-}" ]]; then
  export E2E_BENCH_UNDER_TIMEOUT=1
  exec timeout --foreground -k 20 "$BENCH_MAX_S" "$BASH" "${BASH_SOURCE[0]}" "$@"
fi

((ROUNDS >= 3)) || echo "bench.sh: note: ROUNDS=$ROUNDS (<3): medians are weak" >&2

# --------------------------------------------------------------- prerequisites
if ! command -v wrk >/dev/null; then
  if [[ $(id -u) -eq 0 ]]; then
    log "installing wrk (apt-get)"
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk; }; } >/dev/null 2>&1
  fi
  command -v wrk >/dev/null || die "wrk missing (apt-get install wrk)"
fi
for tool in python3 curl timeout setsid flock; do command -v "$tool" >/dev/null || die "missing '$tool'"; done
[[ " $BACKENDS " != *" postgres "* ]] || command -v psql >/dev/null || die "psql missing (needed for the postgres backend)"

mkdir -p "$OUT_BASE"
exec 9>"$OUT_BASE/bench.lock"
flock -n 9 || die "another bench.sh holds $OUT_BASE/bench.lock"

need_ours=0; need_peer=0
for s in $SYSTEMS; do if [[ $s == ours ]]; then need_ours=1; else need_peer=1; fi; done
if ((need_ours)); then
  waited=0
  until [[ -x "$GW_BIN" && -x "$TS_BIN" ]] \
        && (( $(date +%s) - $(stat -c %Y "$GW_BIN") >= 10 && $(date +%s) - $(stat -c %Y "$TS_BIN") >= 10 )); do
    ((waited < BIN_WAIT_S)) || die "release binaries missing: GW_BIN=$GW_BIN TS_BIN=$TS_BIN (BIN_WAIT_S=$BIN_WAIT_S)"
    ((waited % 300 == 0)) && log "waiting for $GW_BIN and $TS_BIN (polling every 30 s, up to ${BIN_WAIT_S}s)"
    sleep 30; waited=$((waited + 30))
  done
fi
if ((need_peer)); then
  PEER_VENV="$PEER_VENV" "$PEER_DIR/setup.sh" >/dev/null || die "FastAPI peer setup failed ($PEER_DIR/setup.sh)"
fi

STAMP="$(date +%Y%m%d-%H%M%S)"
RES="$OUT_BASE/$STAMP"; [[ ! -e "$RES" ]] || RES="$RES-$$"
# The gateway keeps its upgrade socket here, and refuses a directory others can enter.
RUN="$RES/run"; mkdir -p "$RUN"; chmod 700 "$RUN"
TOK="$RES/tokens"
if ((need_ours)); then
  # run copies, so a rebuild of the release binaries during the run cannot mix two builds
  mkdir -p "$RUN/bin"; cp "$GW_BIN" "$RUN/bin/gateway"; cp "$TS_BIN" "$RUN/bin/task-service"
  GW_SRC="$GW_BIN"; TS_SRC="$TS_BIN"; GW_BIN="$RUN/bin/gateway"; TS_BIN="$RUN/bin/task-service"
fi
python3 "$HERE/gen_tokens.py" --out "$TOK" --list-users "$N_USERS" --create-users "$N_USERS" >/dev/null
AUTH_SECRET="$(cat "$TOK/secret")"
DB_PREFIX="e2e_${STAMP//-/_}_$$_"           # this run's PostgreSQL databases
SIGNING_SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
ISSUER=e2e-bench; AUDIENCE=e2e-bench

# ----------------------------------------------------------- process management
PIDS=(); PNAMES=(); PG_DBS=()
alive() { local s; s="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1; s="${s##*) }"; [[ "${s%% *}" != Z ]]; }
stop_pid() {  # stop_pid PID NAME: TERM its process group (it is a session leader), then KILL
  local pid=$1 name=$2 deadline
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 8))
  while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
  if alive "$pid"; then echo "bench.sh: $name (pid $pid) ignored TERM; sending KILL" >&6; kill -KILL "$pid" 2>/dev/null || true; fi
  kill -KILL -- "-$pid" 2>/dev/null || true   # leftovers of its group (uvicorn workers)
  wait "$pid" 2>/dev/null || true
}
stop_all() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    [[ -n "${PIDS[i]}" ]] || continue
    stop_pid "${PIDS[i]}" "${PNAMES[i]}"; log "stopped ${PNAMES[i]} (pid ${PIDS[i]})"
  done
  PIDS=(); PNAMES=()
  drop_dbs
}
drop_dbs() {
  local d
  ((KEEP_DB == 0)) || { PG_DBS=(); return 0; }
  rm -f "$RUN"/sqlite-*.db "$RUN"/sqlite-*.db-wal "$RUN"/sqlite-*.db-shm "$RUN"/sqlite-*.db-journal
  for d in "${PG_DBS[@]:-}"; do
    [[ -n "$d" ]] || continue
    psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -qAtc "drop database if exists \"$d\" with (force)" postgres >/dev/null 2>&1 \
      && log "dropped database $d" || echo "bench.sh: could not drop database $d" >&6
  done
  PG_DBS=()
}
final() { stop_all; rm -rf "$RUN/bin"; }
trap final EXIT
trap 'echo "bench.sh: interrupted (signal, or the BENCH_MAX_S watchdog); stopping servers" >&6; exit 130' INT TERM

start_bg() {  # start_bg NAME LOGFILE CMD... -> STARTED_PID (its own session and process group)
  local name=$1 logf=$2; shift 2
  setsid "$@" >"$logf" 2>&1 </dev/null 5>&- 6>&- 9>&- &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID"); PNAMES+=("$name")
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
wait_http() {  # wait_http URL PID SECONDS
  local deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    alive "$2" || return 1
    curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

# system state, per backend
declare -A URL=() SRV=() STATUS=() DBURL=() DETAIL=()

start_system() {  # start_system BACKEND SYSTEM
  local b=$1 s=$2 db url p logf
  if [[ $b == sqlite ]]; then
    DBURL[$s]="$RUN/$b-$s.db"
  else
    db="$DB_PREFIX${s//-/_}"
    psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -qAtc "create database \"$db\"" postgres >/dev/null \
      || { STATUS[$s]="could not create database"; return 1; }
    PG_DBS+=("$db"); DBURL[$s]="$db"
  fi
  if [[ $s == ours ]]; then
    if [[ $b == sqlite ]]; then url="sqlite://$RUN/$b-$s.db"; else url="postgres://$PG_USER@$PG_HOST:$PG_PORT/$db"; fi
    local tsp gwp adp
    tsp=$(free_port); gwp=$(free_port); adp=$(free_port)
    start_bg "$b/ours task-service" "$RUN/$b-ours-ts.log" env GATEWAY_SIGNING_SECRET="$SIGNING_SECRET" \
      TASK_SERVICE_LISTEN="$HOST:$tsp" DATABASE_URL="$url" RUST_LOG=warn LOG_FORMAT=json "$TS_BIN"
    local ts_pid=$STARTED_PID
    if ! wait_http "http://$HOST:$tsp/readyz" "$ts_pid" "$START_TIMEOUT"; then
      tail -n 5 "$RUN/$b-ours-ts.log" >&2; STATUS[$s]="task-service did not become ready"; return 1
    fi
    start_bg "$b/ours gateway" "$RUN/$b-ours-gw.log" env GATEWAY_SIGNING_SECRET="$SIGNING_SECRET" \
      BETTER_AUTH_SECRET="$AUTH_SECRET" JWT_ISSUER="$ISSUER" JWT_AUDIENCE="$AUDIENCE" \
      GATEWAY_LISTEN="$HOST:$gwp" GATEWAY_ADMIN_LISTEN="$HOST:$adp" TASK_SERVICE_URL="http://$HOST:$tsp" \
      GATEWAY_UPGRADE_SOCK="$RUN/$b-gateway-upgrade.sock" RUST_LOG=warn LOG_FORMAT=json "$GW_BIN"
    local gw_pid=$STARTED_PID
    if ! wait_http "http://$HOST:$adp/readyz" "$gw_pid" "$START_TIMEOUT"; then
      tail -n 5 "$RUN/$b-ours-gw.log" >&2; STATUS[$s]="gateway did not become ready"; return 1
    fi
    URL[$s]="http://$HOST:$gwp"; SRV[$s]="$gw_pid+$ts_pid"
    DETAIL[$s]="gateway pid $gw_pid :$gwp (admin :$adp), task-service pid $ts_pid :$tsp"
  else
    local workers=${s#fastapi-}; workers=${workers%w}
    if [[ $b == sqlite ]]; then url="sqlite:///$RUN/$b-$s.db"; else url="postgresql://$PG_USER@$PG_HOST:$PG_PORT/$db"; fi
    p=$(free_port)
    start_bg "$b/$s uvicorn" "$RUN/$b-$s.log" env DATABASE_URL="$url" BETTER_AUTH_SECRET="$AUTH_SECRET" \
      JWT_ISSUER="$ISSUER" JWT_AUDIENCE="$AUDIENCE" ACCESS_LOG=0 LOG_LEVEL=info \
      SQLITE_WAL="$FASTAPI_SQLITE_WAL" PEER_VENV="$PEER_VENV" "$PEER_DIR/run.sh" "$p" "$workers"
    local pid=$STARTED_PID
    if ! wait_http "http://$HOST:$p/health" "$pid" "$START_TIMEOUT"; then
      tail -n 5 "$RUN/$b-$s.log" >&2; STATUS[$s]="uvicorn did not become ready"; return 1
    fi
    if ((workers > 1)); then  # every worker must be serving, not only the first one up
      local deadline=$((SECONDS + START_TIMEOUT))
      while (( $(grep -c 'Application startup complete' "$RUN/$b-$s.log" || true) < workers && SECONDS < deadline )); do sleep 0.3; done
    fi
    URL[$s]="http://$HOST:$p"; SRV[$s]="$pid"
    DETAIL[$s]="uvicorn pid $pid :$p, $workers worker(s): $(ps --ppid "$pid" -o pid= | tr -s ' \n' ' ')"
  fi
  STATUS[$s]=started
}

pg_pid() {  # the postmaster's pid (its tree = the database's CPU), or "-"
  local dd pid
  dd="$(psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -qAtc 'show data_directory' postgres 2>/dev/null)" || { echo -; return; }
  pid="$(head -n1 "$dd/postmaster.pid" 2>/dev/null)" || { echo -; return; }
  [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" && echo "$pid" || echo -
}

# ------------------------------------------------------------------ conditions
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
  echo "params: rounds=$ROUNDS warmup=${WARMUP}s duration=${DURATION}s wrk -t$THREADS -c$CONNS --timeout ${WRK_TIMEOUT}s; list users=$N_USERS x $TASKS_PER_USER seeded tasks, create users=$N_USERS"
  echo "backends: $BACKENDS | workloads: $WORKLOADS | systems: $SYSTEMS"
  echo "tokens: HS256, random BETTER_AUTH_SECRET (same for both systems), iss=aud=$ISSUER checked by both, exp=2100-01-01, sub = 32 alphanumerics"
  if ((need_ours)); then
    echo "ours: gateway $GW_SRC ($(stat -c %y "$GW_SRC" | cut -d. -f1), sha256 $(sha256sum "$GW_BIN" | cut -c1-12)); task-service $TS_SRC ($(stat -c %y "$TS_SRC" | cut -d. -f1), sha256 $(sha256sum "$TS_BIN" | cut -c1-12)); run from copies in run/bin (removed at the end); RUST_LOG=warn LOG_FORMAT=json, defaults otherwise (token cache on)"
  fi
  if ((need_peer)); then
    echo "fastapi: $PEER_DIR via run.sh (uvicorn --no-access-log --log-level info: lifecycle lines only), SQLITE_WAL=$FASTAPI_SQLITE_WAL; $(grep -iE '^(fastapi|uvicorn|sqlmodel|sqlalchemy|pydantic|pyjwt|psycopg|starlette|uvloop|httptools)==' "$PEER_VENV/freeze.txt" | tr '\n' ' ')"
    echo "python: $("$PEER_VENV/bin/python" --version 2>&1)"
  fi
  [[ " $BACKENDS " != *" postgres "* ]] || echo "postgres: $(psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -qAtc 'select version()' postgres 2>/dev/null | cut -d, -f1) at $PG_HOST:$PG_PORT; fsync=$(psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -qAtc 'show fsync' postgres 2>/dev/null) synchronous_commit=$(psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -qAtc 'show synchronous_commit' postgres 2>/dev/null)"
  echo "tools: $(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}'), $(python3 --version)"
  echo "loadavg before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "machine busy over 1 s before start: $(python3 "$HERE/cpu.py" wait-quiet --max-wait 0 | cut -d' ' -f2) cores"
  echo "quiet rule: before each timed run wait (<= ${QUIET_MAX_WAIT}s per run, <= ${QUIET_BUDGET}s in all) until the machine uses < $QUIET_THRESHOLD core; a run whose other load exceeded it is redone (<= $NOISY_RETRIES time(s)) while the budget lasts"
} | tee "$RES/conditions.txt"
log "results and logs: $RES  (bench.sh pid $$; to abort cleanly: kill -INT $$)"

# --------------------------------------------------------------------- timing
HEADER='backend	workload	system	round	attempt	rps	p50_us	p99_us	requests	errors	non2xx	sock_errors	statuses	wall_s	wrk_cpu_s	server_cpu_s	server_cpu_parts	db_cpu_s	idle_systems_cpu_s	other_cpu_s	irq_cpu_s	steal_s	quiet_wait_s	quiet_ok'
echo "$HEADER" >"$RES/rounds.tsv"; echo "$HEADER" >"$RES/discarded.tsv"
printf 'backend\tsystem\tstatus\tdetail\n' >"$RES/systems.tsv"
quiet_spent=0; NEVER_QUIET=0
wait_quiet() {  # sets QW (seconds waited) and QOK (1 quiet, 0 gave up)
  local left=$((QUIET_BUDGET - quiet_spent)) q qrc=0 qload
  QW=0; QOK=1
  ((left < QUIET_MAX_WAIT)) || left=$QUIET_MAX_WAIT
  if ((left <= 0)); then
    q="$(python3 "$HERE/cpu.py" wait-quiet --threshold "$QUIET_THRESHOLD" --max-wait 0)" || qrc=$?
  else
    q="$(python3 "$HERE/cpu.py" wait-quiet --threshold "$QUIET_THRESHOLD" --max-wait "$left")" || qrc=$?
  fi
  read -r QW qload <<<"$q"
  quiet_spent=$((quiet_spent + ${QW%.*}))
  if ((qrc != 0)); then
    QOK=0; NEVER_QUIET=$((NEVER_QUIET + 1))
    log "machine still busy (other load $qload cores) after ${QW}s of waiting; timing $1 anyway"
  elif ((${QW%.*} >= 2)); then
    log "waited ${QW}s for a quiet machine"
  fi
}
ms() { awk -v x="$1" 'BEGIN { printf "%.2f", x / 1000 }'; }
wrk_run() {  # wrk_run SYSTEM WORKLOAD SECONDS OFFSET
  timeout -k 2 $(($3 + WRK_TIMEOUT + 15)) wrk -t"$THREADS" -c"$CONNS" -d"$3"s --timeout "${WRK_TIMEOUT}s" \
    -s "$HERE/$2.lua" "${URL[$1]}" -- "$TOK/list.tokens" "$TOK/create.tokens" "$4"
}
# time_one BACKEND WORKLOAD SYSTEM ROUND ATTEMPT -> ROW (tsv), OTHER (cores); 1 if wrk failed
time_one() {
  local b=$1 w=$2 s=$3 r=$4 a=$5 tag="$1-$2-$3-r$4" off rc=0 t0 t1 line kv errs sock _real wu ws o idle_specs=() x
  ((a == 0)) || tag="$tag-retry$a"
  off=$(( (r * 53 + a * 17) % N_USERS ))
  for x in $SYSTEMS; do [[ $x != "$s" && "${STATUS[$x]:-}" == timed ]] && idle_specs+=("${SRV[$x]}"); done
  local idle_spec; idle_spec="$(IFS=+; echo "${idle_specs[*]:--}")"
  wait_quiet "$b/$w/$s"
  wrk_run "$s" "$w" "$WARMUP" "$off" >"$RUN/warmup-$tag.log" 2>&1 || echo "bench.sh: warm-up of $tag exited $?" >&6
  local c0 c1
  c0="$(python3 "$HERE/cpu.py" snap "${SRV[$s]}" "${SRV[$s]%%+*}" "$idle_spec" "$PG_PID" "pgother:$PG_PID:$DB_PREFIX")"
  t0=$(date +%s.%N)
  TIMEFORMAT='%3R %3U %3S'
  { time wrk_run "$s" "$w" "$DURATION" "$off" >"$RUN/wrk-$tag.log" 2>&1; } 2>"$RUN/time-$tag" || rc=$?
  t1=$(date +%s.%N)
  c1="$(python3 "$HERE/cpu.py" snap "${SRV[$s]}" "${SRV[$s]%%+*}" "$idle_spec" "$PG_PID" "pgother:$PG_PID:$DB_PREFIX")"
  line="$(grep -m1 '^WRKRESULT ' "$RUN/wrk-$tag.log" || true)"
  if ((rc != 0)) || [[ -z "$line" ]]; then
    echo "bench.sh: wrk on $tag failed (rc=$rc); see $RUN/wrk-$tag.log" >&6; return 1
  fi
  declare -A W=()
  for kv in ${line#WRKRESULT }; do W[${kv%%=*}]="${kv#*=}"; done
  sock=$(( W[err_connect] + W[err_read] + W[err_write] + W[err_timeout] ))
  errs=$(( sock + W[non2xx] ))
  read -r _real wu ws <"$RUN/time-$tag"
  ROW="$(awk -v b="$b" -v w="$w" -v s="$s" -v r="$r" -v a="$a" -v rps="${W[rps]}" -v p50="${W[p50_us]}" \
    -v p99="${W[p99_us]}" -v n="${W[requests]}" -v errs="$errs" -v non2xx="${W[non2xx]}" -v sock="$sock" \
    -v st="${W[statuses]}" -v t0="$t0" -v t1="$t1" -v wu="$wu" -v ws="$ws" -v c0="$c0" -v c1="$c1" \
    -v qw="$QW" -v qok="$QOK" -v ours="$([[ $s == ours ]] && echo 1 || echo 0)" '
    BEGIN {
      split(c0, x, " "); split(c1, y, " ")
      srv = y[1] - x[1]; first = y[2] - x[2]; idle = y[3] - x[3]
      # db: the PostgreSQL server minus its backends serving other jobs'"'"' databases (those stay in other)
      db = (y[4] - x[4]) - (y[5] - x[5]); if (db < 0) db = 0
      busy = y[6] - x[6]; irq = y[7] - x[7]; steal = y[8] - x[8]; wrk = wu + ws
      parts = ours ? sprintf("gateway=%.2f,task-service=%.2f", first, srv - first) : sprintf("uvicorn=%.2f", srv)
      # other = process CPU of everything but ours (irq/softirq time is reported on its own:
      # on loopback it is mostly this benchmark'"'"'s own packets)
      o = busy - wrk - srv - idle - db; if (o < 0) o = 0
      printf "%s\t%s\t%s\t%d\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%.3f\t%.2f\t%.2f\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%d",
        b, w, s, r, a, rps, p50, p99, n, errs, non2xx, sock, st, t1 - t0, wrk, srv, parts, db, idle, o, irq, steal, qw, qok
    }')"
  OTHER="$(awk -F'\t' '{ printf "%.2f", $20 / $14 }' <<<"$ROW")"
  local srvus; srvus="$(awk -F'\t' '{ printf "%.0f", ($9 ? $16 / $9 * 1e6 : 0) }' <<<"$ROW")"
  printf '%s  %-8s %-6s r%d %-11s %8.0f req/s  p50 %7s ms  p99 %7s ms  errors %d  server %s us/req  other load %s cores%s\n' \
    "$(date +%H:%M:%S)" "$b" "$w" "$r" "$s" "${W[rps]}" "$(ms "${W[p50_us]}")" "$(ms "${W[p99_us]}")" \
    "$errs" "$srvus" "$OTHER" "$( ((a == 0)) || echo " (retry $a)")$( ((errs == 0)) || echo "  <-- ERRORS: ${W[statuses]}")" >&5
}

PG_PID=-
for b in $BACKENDS; do
  log "=== backend $b: starting ${SYSTEMS// /, }"
  URL=(); SRV=(); STATUS=(); DBURL=(); DETAIL=()
  if [[ $b == postgres ]]; then
    psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -qAtc 'select 1' postgres >/dev/null 2>&1 \
      || { echo "bench.sh: PostgreSQL at $PG_HOST:$PG_PORT is not reachable; skipping the postgres backend" >&6
           for s in $SYSTEMS; do printf '%s\t%s\t%s\t%s\n' "$b" "$s" "not run: no postgres" "" >>"$RES/systems.tsv"; done; continue; }
    PG_PID="$(pg_pid)"
  else
    PG_PID=-
  fi
  for s in $SYSTEMS; do
    if start_system "$b" "$s"; then log "started $b/$s: ${DETAIL[$s]} at ${URL[$s]}"; else log "$b/$s: ${STATUS[$s]}"; fi
  done
  # correctness first (the same check for both: it is the same public API), then the seed
  for s in $SYSTEMS; do
    [[ "${STATUS[$s]}" == started ]] || continue
    if timeout 120 python3 "$PEER_DIR/check.py" --url "${URL[$s]}" --secret "$AUTH_SECRET" --issuer "$ISSUER" \
         --audience "$AUDIENCE" --name "$b/$s" --quiet >>"$RES/checks.txt" 2>&1; then
      log "check $b/$s: OK"
    else
      STATUS[$s]="failed checks"; log "check $b/$s: FAILED (see $RES/checks.txt)"; continue
    fi
    if timeout 900 python3 "$HERE/seed.py" --url "${URL[$s]}" --tokens "$TOK/list.tokens" --per-user "$TASKS_PER_USER" \
         >"$RUN/seed-$b-$s.txt" 2>&1; then
      STATUS[$s]=timed; log "seed $b/$s: $(tail -n1 "$RUN/seed-$b-$s.txt")"
    else
      STATUS[$s]="seed failed"; log "seed $b/$s: FAILED: $(tail -n1 "$RUN/seed-$b-$s.txt")"
    fi
  done
  for w in $WORKLOADS; do
    for ((r = 1; r <= ROUNDS; r++)); do
      for s in $SYSTEMS; do
        [[ "${STATUS[$s]}" == timed ]] || continue
        for ((a = 0; ; a++)); do
          time_one "$b" "$w" "$s" "$r" "$a" || break
          if awk -v o="$OTHER" -v q="$QUIET_THRESHOLD" 'BEGIN { exit !(o > q) }' \
             && ((a < NOISY_RETRIES && quiet_spent < QUIET_BUDGET)); then
            log "other load $OTHER cores during $b/$w/$s round $r: discarding it and retrying"
            echo "$ROW" >>"$RES/discarded.tsv"; continue
          fi
          echo "$ROW" >>"$RES/rounds.tsv"; break
        done
        for x in ${SRV[$s]//+/ }; do
          alive "$x" || { echo "bench.sh: $b/$s (pid $x) died during $w round $r" >&6; STATUS[$s]="died during timing"; }
        done
      done
    done
  done
  for s in $SYSTEMS; do printf '%s\t%s\t%s\t%s\n' "$b" "$s" "${STATUS[$s]:-not started}" "${DETAIL[$s]:-}" >>"$RES/systems.tsv"; done
  stop_all
done
{
  echo "loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "quiet waiting: ${quiet_spent}s of ${QUIET_BUDGET}s budget; timed runs started on a machine that never got quiet: $NEVER_QUIET"
} | tee -a "$RES/conditions.txt"

echo
rc=0
QUIET_THRESHOLD="$QUIET_THRESHOLD" python3 "$HERE/aggregate.py" "$RES" || rc=$?
exit "$rc"
