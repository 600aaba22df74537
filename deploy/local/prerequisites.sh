# Shared by run.sh, test.sh and .ci/run: makes sure the build has what it needs on a fresh
# machine. Sourced, not executed.

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
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
    fi
    if command -v apt-get >/dev/null 2>&1; then
        $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null
    elif command -v brew >/dev/null 2>&1; then
        brew install cmake
    elif command -v dnf >/dev/null 2>&1; then
        $sudo dnf install -y cmake
    fi
    if ! command -v cmake >/dev/null 2>&1; then
        echo "error: cmake is required to build the gateway and could not be installed; install it and retry" >&2
        return 1
    fi
}
