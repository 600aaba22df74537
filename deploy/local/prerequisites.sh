# Shared by run.sh, test.sh and .ci/run: makes sure the build has what it needs on a fresh
# machine. Sourced, not executed.

# Installs Debian packages, as root or through sudo; fails when there is no apt-get.
apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || return 1
        sudo="sudo"
    fi
    $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Installs cmake (pingora builds zlib-ng with it) when it is missing and the machine lets us.
ensure_build_tools() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo is not installed; install Rust 1.94 or newer (https://rustup.rs)" >&2
        return 1
    fi
    if command -v cmake >/dev/null 2>&1; then
        return 0
    fi
    echo "cmake is missing (pingora needs it to build); installing it" >&2
    apt_install cmake || { command -v brew >/dev/null 2>&1 && brew install cmake; } || true
    if ! command -v cmake >/dev/null 2>&1; then
        echo "error: cmake is required to build the gateway and could not be installed; install it and retry" >&2
        return 1
    fi
}

# Installs Prometheus (the operations test scrapes both tiers with a real server) when it is
# missing. Best effort: without it that test says it was skipped, except in CI where it fails.
ensure_prometheus() {
    command -v prometheus >/dev/null 2>&1 && return 0
    echo "prometheus is missing (the operations test runs a real one); installing it" >&2
    apt_install --no-install-recommends prometheus || echo "could not install prometheus; the operations test will be skipped" >&2
}

# Installs Debian's redis-server (the revocation tests start their own on a free loopback port)
# when it is missing. Best effort: without it those tests say they were skipped, except in CI
# where they fail. The package's own service is not needed: the tests run the binary directly.
ensure_redis_server() {
    command -v redis-server >/dev/null 2>&1 && return 0
    echo "redis-server is missing (the revocation tests run a real one); installing it" >&2
    apt_install --no-install-recommends redis-server || echo "could not install redis-server; the Redis revocation tests will be skipped" >&2
}

# Installs the Better Auth harness of the revocation test (gateway/tests/better-auth) from its
# lock file (npm ci, again whenever package-lock.json changed) when npm is present.
ensure_better_auth_harness() {
    local harness=gateway/tests/better-auth
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm is missing; the Better Auth sign-out test will be skipped" >&2
        return 0
    fi
    local stamp="$harness/node_modules/.installed-lock.sha256"
    local lock_sum
    lock_sum=$(sha256sum "$harness/package-lock.json" | cut -d' ' -f1)
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_sum" ] && return 0
    (cd "$harness" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || return 1
    echo "$lock_sum" >"$stamp"
}

# The example frontend (examples/nextjs) needs Node.js 20.9 or newer with npm.
ensure_node() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "error: the frontend needs Node.js 20.9+ and npm; install them (https://nodejs.org) and retry" >&2
        return 1
    fi
    if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 9) ? 0 : 1)'; then
        echo "error: the frontend needs Node.js 20.9 or newer; this is $(node --version)" >&2
        return 1
    fi
}

# Installs the example's pinned dependencies (npm ci, only when package-lock.json changed since
# the last install) and builds it (next build).
build_frontend() {
    ensure_node || return 1
    local app="examples/nextjs"
    local stamp="$app/node_modules/.installed-lock.sha256"
    local lock_sum
    lock_sum=$(sha256sum "$app/package-lock.json" | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
        echo "Installing the frontend's dependencies (npm ci)…"
        (cd "$app" && npm ci --no-audit --no-fund --loglevel=error) || return 1
        echo "$lock_sum" >"$stamp"
    fi
    echo "Building the frontend (next build)…"
    (cd "$app" && NEXT_TELEMETRY_DISABLED=1 npx --no-install next build >/dev/null) || {
        echo "error: next build failed; run it in $app to see why" >&2
        return 1
    }
}

# Installs Debian's Chromium (the browser suite drives it; Playwright's own download is not used)
# when it is missing.
ensure_chromium() {
    command -v "${CHROMIUM:-chromium}" >/dev/null 2>&1 && return 0
    echo "chromium is missing (the browser suite drives it); installing it" >&2
    apt_install --no-install-recommends chromium || true
    if ! command -v "${CHROMIUM:-chromium}" >/dev/null 2>&1; then
        echo "error: the browser suite needs Chromium; install it (apt-get install chromium) or set CHROMIUM to its path" >&2
        return 1
    fi
}
