#!/usr/bin/env bash
# Zero-downtime restarts under load, measured on this machine.
#
# Starts two task-service replicas (sharing one SQLite file) behind one gateway, all on free
# loopback ports, and drives steady load through the gateway with wrk (half creates, half lists,
# one user). During each run it restarts one part while traffic flows:
#
#   gateway:  a graceful binary upgrade: a new `gateway --upgrade` takes over the listening sockets,
#             then the old process gets SIGQUIT and drains;
#   replica:  one task-service replica gets SIGTERM, drains and is started again; the gateway's
#             health checks take it out and put it back.
#
# For each run it prints the requests sent, the failed ones (non-2xx responses and socket errors,
# as wrk counts them), p99 and worst latency. It exits non-zero if any request failed.
#
#   deploy/local/rolling-restart.sh                  # both runs, 20 s each
#   DURATION=30 CONNECTIONS=64 deploy/local/rolling-restart.sh replica
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/prerequisites.sh
ensure_build_tools
command -v wrk >/dev/null 2>&1 || apt_install wrk || { echo "error: wrk is required" >&2; exit 1; }

runs=("$@")
[ ${#runs[@]} -gt 0 ] || runs=(gateway replica)
duration="${DURATION:-20}"
connections="${CONNECTIONS:-32}"
profile="${PROFILE:-release}"
build_flags=()
[ "$profile" = "release" ] && build_flags=(--release)
cargo build "${build_flags[@]}" --bin gateway --bin task-service
bin="$PWD/target/$profile"

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_http() { # url
    for _ in $(seq 1 200); do
        curl -fsS "$1" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "error: $1 did not answer" >&2
    return 1
}

export GATEWAY_SIGNING_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export BETTER_AUTH_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export LOG_FORMAT=plain RUST_LOG=warn
export DATABASE_URL="sqlite://$work/tasks.db"
ts_ports=("$(free_port)" "$(free_port)")
export GATEWAY_LISTEN="127.0.0.1:$(free_port)"
export GATEWAY_ADMIN_LISTEN="127.0.0.1:$(free_port)"
export GATEWAY_UPGRADE_SOCK="$work/upgrade.sock"
export TASK_SERVICE_URL="http://127.0.0.1:${ts_ports[0]},http://127.0.0.1:${ts_ports[1]}"

start_replica() { # index
    TASK_SERVICE_LISTEN="127.0.0.1:${ts_ports[$1]}" "$bin/task-service" 2>>"$work/task-service-$1.log" &
    replica_pids[$1]=$!
    pids+=($!)
    wait_http "http://127.0.0.1:${ts_ports[$1]}/readyz"
}
start_gateway() { # extra args
    "$bin/gateway" "$@" 2>>"$work/gateway.log" &
    gateway_pid=$!
    pids+=($!)
}
replica_pids=()
start_replica 0
start_replica 1
start_gateway
wait_http "http://$GATEWAY_ADMIN_LISTEN/readyz"

user="load-user"
export TOKEN=$("$bin/gateway" mint-token --sub "$user" --ttl 1h)
cat >"$work/load.lua" <<LUA
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  if n % 2 == 0 then
    return wrk.format("POST", "/api/$user/tasks", nil, '{"title":"steady load"}')
  end
  return wrk.format("GET", "/api/$user/tasks?limit=20")
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d failed=%d non2xx=%d connect=%d read=%d write=%d timeout=%d p99_ms=%.2f max_ms=%.2f\n",
    summary.requests, e.status + e.connect + e.read + e.write + e.timeout, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(99) / 1000, latency.max / 1000))
end
LUA

upgrade_gateway() {
    local old=$gateway_pid
    rm -f "$GATEWAY_UPGRADE_SOCK"
    start_gateway --upgrade
    for _ in $(seq 1 200); do [ -S "$GATEWAY_UPGRADE_SOCK" ] && break; sleep 0.05; done
    kill -QUIT "$old"
    wait "$old" 2>/dev/null || true
    echo "  gateway $old handed its sockets to $gateway_pid and exited"
}
restart_replica() {
    local old=${replica_pids[0]}
    kill -TERM "$old"
    wait "$old" 2>/dev/null || true
    echo "  task-service replica $old stopped"
    start_replica 0
    echo "  task-service replica ${replica_pids[0]} started and ready"
}

status=0
for run in "${runs[@]}"; do
    case "$run" in
        gateway) event=upgrade_gateway ;;
        replica) event=restart_replica ;;
        *) echo "error: unknown run $run (gateway or replica)" >&2; exit 2 ;;
    esac
    echo "== $run: ${duration}s of load, $connections connections, restart at $((duration / 3))s"
    wrk -t2 -c"$connections" -d"${duration}s" --timeout 5s -s "$work/load.lua" "http://$GATEWAY_LISTEN" >"$work/wrk-$run.log" 2>&1 &
    wrk_pid=$!
    sleep $((duration / 3))
    $event
    wait "$wrk_pid"
    result=$(grep '^RESULT' "$work/wrk-$run.log" | sed 's/^RESULT //')
    echo "  $result"
    case "$result" in *" failed=0 "*) ;; *) status=1 ;; esac
done
total=$(curl -fsS -o /dev/null -D - "http://$GATEWAY_LISTEN/api/$user/tasks?limit=1" -H "Authorization: Bearer $TOKEN" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-total-count" {print $2}')
echo "tasks stored for $user: $total"
exit $status
