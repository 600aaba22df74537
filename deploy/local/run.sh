#!/usr/bin/env bash
# Runs the whole system locally: the task service on SQLite (./data/tasks.db) and the gateway in
# front of it. Builds what is needed, generates development secrets when none are set (kept in
# ./.dev/secrets.env so that tokens stay valid across restarts), prints a ready-to-paste curl with a
# minted token, and stops both tiers on Ctrl-C.
#
# Settings (all optional): GATEWAY_LISTEN (127.0.0.1:8080), GATEWAY_ADMIN_LISTEN (127.0.0.1:9090),
# TASK_SERVICE_LISTEN (127.0.0.1:8081), DATABASE_URL (sqlite://data/tasks.db), BETTER_AUTH_SECRET,
# BETTER_AUTH_URL, GATEWAY_SIGNING_SECRET, CORS_ALLOWED_ORIGINS, PROFILE (debug or release).
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/prerequisites.sh
ensure_build_tools

profile="${PROFILE:-debug}"
build_flags=()
[ "$profile" = "release" ] && build_flags=(--release)
echo "Building the gateway and the task service ($profile)…"
cargo build "${build_flags[@]}" --bin gateway --bin task-service
bin="target/$profile"

secrets_file=".dev/secrets.env"
if [ -z "${BETTER_AUTH_SECRET:-}" ] || [ -z "${GATEWAY_SIGNING_SECRET:-}" ]; then
    if [ ! -f "$secrets_file" ]; then
        mkdir -p .dev
        umask 077
        {
            echo "BETTER_AUTH_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
            echo "GATEWAY_SIGNING_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        } >"$secrets_file"
        echo "Generated development secrets in $secrets_file (set BETTER_AUTH_SECRET and GATEWAY_SIGNING_SECRET to use your own)."
    else
        echo "Using development secrets from $secrets_file."
    fi
    while IFS='=' read -r name value; do
        if [ -z "${!name:-}" ]; then export "$name=$value"; fi
    done <"$secrets_file"
fi

export LOG_FORMAT="${LOG_FORMAT:-plain}"
export TASK_SERVICE_LISTEN="${TASK_SERVICE_LISTEN:-127.0.0.1:8081}"
export TASK_SERVICE_URL="${TASK_SERVICE_URL:-http://$TASK_SERVICE_LISTEN}"
export GATEWAY_LISTEN="${GATEWAY_LISTEN:-127.0.0.1:8080}"
export GATEWAY_ADMIN_LISTEN="${GATEWAY_ADMIN_LISTEN:-127.0.0.1:9090}"
export DATABASE_URL="${DATABASE_URL:-sqlite://data/tasks.db}"

pids=()
stop() {
    trap - INT TERM EXIT
    echo
    echo "Stopping…"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop INT TERM EXIT

"$bin/task-service" &
pids+=($!)
"$bin/gateway" &
pids+=($!)

# Wait (at most 30 s) for the gateway to report ready: keys loaded and a healthy task service.
for _ in $(seq 1 300); do
    if curl -fsS "http://$GATEWAY_ADMIN_LISTEN/readyz" >/dev/null 2>&1; then break; fi
    for pid in "${pids[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then echo "error: a service exited at start; see its message above" >&2; exit 1; fi
    done
    sleep 0.1
done
if ! curl -fsS "http://$GATEWAY_ADMIN_LISTEN/readyz" >/dev/null 2>&1; then
    echo "error: the gateway did not become ready within 30 s" >&2
    exit 1
fi

user="demo-user"
token=$("$bin/gateway" mint-token --sub "$user" --email demo@example.com --ttl 1h)
cat <<MSG

The system is up: gateway on http://$GATEWAY_LISTEN, task service on http://$TASK_SERVICE_LISTEN ($DATABASE_URL),
metrics on http://$GATEWAY_ADMIN_LISTEN/metrics and http://$TASK_SERVICE_LISTEN/metrics.
A token for user "$user", valid for an hour, is in the commands below. Paste them in another terminal:

TOKEN='$token'
curl -sS -X POST http://$GATEWAY_LISTEN/api/$user/tasks -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' -d '{"title":"Buy milk","priority":"high"}'
curl -sS http://$GATEWAY_LISTEN/api/$user/tasks -H "Authorization: Bearer \$TOKEN"

Press Ctrl-C to stop both tiers.
MSG
wait -n "${pids[@]}" || true
echo "a service stopped; stopping the other" >&2
