#!/usr/bin/env bash
# Runs the whole system locally: the task service on SQLite (./data/tasks.db) and the gateway in
# front of it. Builds what is needed, generates development secrets when none are set (kept in
# ./.dev/secrets.env so that tokens stay valid across restarts), prints a ready-to-paste curl with a
# minted token, and stops both tiers on Ctrl-C.
#
# With --with-frontend it also builds and starts the example app (examples/nextjs) on
# http://localhost:3000, has the gateway verify that app's Better Auth tokens (its JWKS) and allow
# its origin, and prints the URL to open.
#
# Settings (all optional): GATEWAY_LISTEN (127.0.0.1:8080), GATEWAY_ADMIN_LISTEN (127.0.0.1:9090),
# TASK_SERVICE_LISTEN (127.0.0.1:8081), DATABASE_URL (sqlite://data/tasks.db), BETTER_AUTH_SECRET,
# BETTER_AUTH_URL, GATEWAY_SIGNING_SECRET, CORS_ALLOWED_ORIGINS, PROFILE (debug or release);
# with --with-frontend, FRONTEND_PORT (3000).
set -euo pipefail
cd "$(dirname "$0")/../.."

with_frontend=false
for arg in "$@"; do
    case "$arg" in
        --with-frontend) with_frontend=true ;;
        -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument $arg (expected --with-frontend)" >&2; exit 2 ;;
    esac
done

source deploy/local/prerequisites.sh
ensure_build_tools
$with_frontend && ensure_node

profile="${PROFILE:-debug}"
build_flags=()
[ "$profile" = "release" ] && build_flags=(--release)
echo "Building the gateway and the task service ($profile)…"
cargo build "${build_flags[@]}" --bin gateway --bin task-service
bin="target/$profile"
$with_frontend && build_frontend

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

if $with_frontend; then
    # The app's own secrets: Better Auth's (cookies, its stored signing keys), which is not the
    # gateway's HS256 secret, and the token with which it revokes sessions at the gateway.
    frontend_secrets=".dev/frontend.env"
    if [ ! -f "$frontend_secrets" ]; then
        mkdir -p .dev
        (
            umask 077
            {
                echo "FRONTEND_AUTH_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
                echo "GATEWAY_ADMIN_TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
            } >"$frontend_secrets"
        )
        echo "Generated the frontend's development secrets in $frontend_secrets."
    fi
    while IFS='=' read -r name value; do
        if [ -z "${!name:-}" ]; then export "$name=$value"; fi
    done <"$frontend_secrets"
    frontend_url="http://localhost:${FRONTEND_PORT:-3000}"
    export BETTER_AUTH_URL="$frontend_url"
    export CORS_ALLOWED_ORIGINS="$frontend_url"
fi

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

if $with_frontend; then
    auth_db="$PWD/data/auth.db"
    (
        cd examples/nextjs
        # Only this app's variables: it must not see the gateway's secrets.
        exec env -i PATH="$PATH" HOME="$HOME" NODE_ENV=production NEXT_TELEMETRY_DISABLED=1 \
            BETTER_AUTH_URL="$frontend_url" BETTER_AUTH_SECRET="$FRONTEND_AUTH_SECRET" \
            AUTH_DATABASE_PATH="$auth_db" GATEWAY_URL="http://$GATEWAY_LISTEN" \
            GATEWAY_ADMIN_URL="http://$GATEWAY_ADMIN_LISTEN" GATEWAY_ADMIN_TOKEN="$GATEWAY_ADMIN_TOKEN" \
            node node_modules/next/dist/bin/next start -H 127.0.0.1 -p "${FRONTEND_PORT:-3000}"
    ) &
    app_pid=$!
    pids+=("$app_pid")
    # The gateway loads the app's keys before it reports ready, so the app must answer first.
    for _ in $(seq 1 300); do
        if curl -fsS "$frontend_url/api/auth/jwks" >/dev/null 2>&1; then break; fi
        if ! kill -0 "$app_pid" 2>/dev/null; then echo "error: the frontend exited at start; see its message above" >&2; exit 1; fi
        sleep 0.1
    done
    if ! curl -fsS "$frontend_url/api/auth/jwks" >/dev/null 2>&1; then
        echo "error: the frontend did not answer on $frontend_url within 30 s" >&2
        exit 1
    fi
fi

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

if $with_frontend; then
    cat <<MSG

The system is up: open $frontend_url in a browser, sign up, and manage your tasks.
The app calls the gateway on http://$GATEWAY_LISTEN, which verifies its Better Auth tokens and forwards to
the task service on http://$TASK_SERVICE_LISTEN ($DATABASE_URL); accounts are in data/auth.db.

Press Ctrl-C to stop everything.
MSG
else
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
fi
wait -n "${pids[@]}" || true
echo "a service stopped; stopping the others" >&2
