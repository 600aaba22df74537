#!/usr/bin/env bash
# The benchmarks: the gateway against nginx and HAProxy on one stub (bench/gateway), and the whole
# stack against the FastAPI peer (bench/e2e, bench/fastapi-peer). Builds the release binaries,
# installs wrk, nginx, haproxy and the peer's Python packages when they are missing, and prints
# each harness's table (ratios to the peers in the same run). A benchmark, not a test: CI does not
# run it. Every server binds 127.0.0.1 only and is stopped at the end.
#
#   bench/run.sh gateway        # ~12 min: every algorithm, access log on and off, the pingora floor
#   bench/run.sh e2e            # ~10 min: list and create, SQLite and PostgreSQL, vs FastAPI (2 workers)
#   bench/run.sh                # both
#
# Knobs: ROUNDS (3), WORKERS (1: worker threads/processes of every proxy, ours included),
# REVOCATIONS (100000: entries loaded for the `gateway-revocations` target), and those of each
# harness (see their READMEs).
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/local/prerequisites.sh
ensure_build_tools

what=${1:-all}
case $what in gateway | e2e | all) ;; *)
    echo "usage: bench/run.sh [gateway|e2e|all]" >&2
    exit 2
    ;;
esac

export ROUNDS=${ROUNDS:-3}
export WORKERS=${WORKERS:-1}
cargo build --release -p gateway -p task-service
gateway=$PWD/target/release/gateway

run_gateway() {
    cargo build --release -p gateway --example plain_proxy
    bench/gateway/setup.sh
    local revocations
    revocations=$(mktemp -d)
    trap 'rm -rf "$revocations"' RETURN
    python3 bench/gateway/revocations.py "${REVOCATIONS:-100000}" "$revocations/revocations.json"
    local ours="env RUST_LOG=warn GATEWAY_THREADS=$WORKERS REVOCATION_FILE=$revocations/empty.json $gateway"
    bench/gateway/bench.sh \
        --sut "gateway-hs256=$ours" \
        --sut "gateway-hs256-log=${ours/RUST_LOG=warn/RUST_LOG=info}" \
        --sut "gateway-revocations=${ours/empty.json/revocations.json}" \
        --sut "gateway-eddsa=$ours" --sut-auth eddsa \
        --sut "gateway-es256=$ours" --sut-auth es256 \
        --sut "gateway-rs256=$ours" --sut-auth rs256 \
        --sut "pingora-plain=env GATEWAY_THREADS=$WORKERS $PWD/target/release/examples/plain_proxy" \
        --sut-auth none \
        nginx haproxy haproxy-hs256 haproxy-es256 haproxy-rs256
}

run_e2e() {
    bench/fastapi-peer/setup.sh
    GATEWAY_THREADS=$WORKERS GW_BIN=$gateway TS_BIN=$PWD/target/release/task-service \
        SYSTEMS=${SYSTEMS:-ours fastapi-2w} WORKLOADS=${WORKLOADS:-list create} \
        bench/e2e/bench.sh
}

case $what in
gateway) run_gateway ;;
e2e) run_e2e ;;
all)
    run_gateway
    run_e2e
    ;;
esac
