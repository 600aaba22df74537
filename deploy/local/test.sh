#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, API (SQLite and PostgreSQL) and end-to-end.
#
# PostgreSQL tests use the server at TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres),
# creating and dropping a fresh database per test. Without a reachable server they are skipped and
# this script says so; with CI=true a missing server is an error.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/prerequisites.sh
ensure_build_tools
ensure_prometheus
ensure_redis_server
ensure_better_auth_harness

default_pg="postgres://postgres@127.0.0.1:5432/postgres"
pg_url="${TEST_POSTGRES_URL:-$default_pg}"
pg_host=$(sed -E 's#^[a-z]+://([^@/]*@)?([^:/?]+).*#\2#' <<<"$pg_url")
pg_port=$(sed -nE 's#^[a-z]+://([^@/]*@)?[^:/?]+:([0-9]+).*#\2#p' <<<"$pg_url")
pg_port=${pg_port:-5432}
if (exec 3<>"/dev/tcp/$pg_host/$pg_port") 2>/dev/null; then
    export TEST_POSTGRES_URL="$pg_url"
    echo "PostgreSQL: running PostgreSQL tests against $pg_host:$pg_port"
    pg_note="PostgreSQL tests ran against $pg_host:$pg_port"
elif [ "${CI:-}" = "true" ]; then
    echo "error: CI requires PostgreSQL at $pg_host:$pg_port (set TEST_POSTGRES_URL) but it is not reachable" >&2
    exit 1
else
    unset TEST_POSTGRES_URL
    echo "PostgreSQL: nothing listens on $pg_host:$pg_port; PostgreSQL tests will be SKIPPED"
    pg_note="PostgreSQL tests were SKIPPED (no server at $pg_host:$pg_port; set TEST_POSTGRES_URL)"
fi

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    echo "cargo-nextest not found; using cargo test"
    cargo test --workspace --no-fail-fast "$@"
fi
echo "$pg_note"
