#!/usr/bin/env bash
# The browser suite: builds the gateway, the task service and the example frontend
# (examples/nextjs), then drives the real app in headless Chromium through the real gateway and
# task service, each on a free loopback port (examples/nextjs/tests/browser.mjs). Installs
# Debian's chromium when it is missing. Prints where its screenshots and logs are.
#
# Settings (optional): PROFILE (debug or release), CHROMIUM (path to the browser),
# BROWSER_TEST_ARTIFACTS (directory for screenshots and logs).
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/prerequisites.sh
ensure_build_tools
ensure_chromium

started=$(date +%s)
profile="${PROFILE:-debug}"
build_flags=()
[ "$profile" = "release" ] && build_flags=(--release)
cargo build "${build_flags[@]}" --bin gateway --bin task-service
build_frontend

export GATEWAY_BIN="$PWD/target/$profile/gateway" TASK_SERVICE_BIN="$PWD/target/$profile/task-service"
export CHROMIUM="$(command -v "${CHROMIUM:-chromium}")"
node examples/nextjs/tests/browser.mjs
echo "browser-test.sh: done in $(($(date +%s) - started)) s (builds included)"
