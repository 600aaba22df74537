#!/usr/bin/env bash
# Builds both container images from deploy/docker/Dockerfile and runs them the way production
# does: as a non-root user on a read-only root filesystem, on non-default ports, until their
# HEALTHCHECK reports healthy; then a request end to end through the two containers, and a
# SIGTERM to each tier with a request in flight, which must finish before the container exits 0.
#
# Everything stays on loopback: dockerd runs without a bridge network (started here when it is
# not running), and every build and container uses the host network, bound to 127.0.0.1.
# When the public base images cannot be pulled, they are built locally: a Debian rootfs from
# Debian's packages (mmdebstrap) as debian:bookworm-slim, and that plus this machine's Rust
# toolchain and CA certificates as rust:1.95-slim-bookworm.
#
# Usage: deploy/docker/test-images.sh        (ends with one "images:" summary line)
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/prerequisites.sh

RUST_VERSION=1.95
DEBIAN_RELEASE=bookworm
RUNTIME_BASE="debian:${DEBIAN_RELEASE}-slim"
BUILDER_BASE="rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE}"
GATEWAY_IMAGE=task-gateway/gateway:test
TASK_SERVICE_IMAGE=task-gateway/task-service:test
DEBIAN_MIRROR=http://deb.debian.org/debian
DEBIAN_SECURITY=http://deb.debian.org/debian-security
# A container run by this script is named with this prefix and removed at exit.
NAME="task-gateway-imagetest-$$"
WORK="$(mktemp -d)"
STARTED_DOCKERD=""

step() { echo "== $*"; }
fail() {
    echo "images: FAILED: $*" >&2
    exit 1
}

cleanup() {
    local ids
    ids="$(docker ps -aq --filter "name=^${NAME}-" 2>/dev/null || true)"
    if [ -n "$ids" ]; then
        # shellcheck disable=SC2086
        docker rm -f $ids >/dev/null 2>&1 || true
    fi
    if [ -n "$STARTED_DOCKERD" ]; then
        kill "$STARTED_DOCKERD" 2>/dev/null || true
        wait "$STARTED_DOCKERD" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- docker -----------------------------------------------------------------------------------

ensure_docker() {
    if ! command -v dockerd >/dev/null 2>&1; then
        step "installing Debian's docker.io"
        apt_install docker.io || fail "docker.io could not be installed"
    fi
    if docker info >/dev/null 2>&1; then
        return 0
    fi
    step "starting dockerd (no bridge network, no iptables)"
    dockerd --bridge=none --iptables=false --ip-masq=false >"$WORK/dockerd.log" 2>&1 &
    STARTED_DOCKERD=$!
    local _
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && return 0
        kill -0 "$STARTED_DOCKERD" 2>/dev/null || break
        sleep 0.5
    done
    tail -n 20 "$WORK/dockerd.log" >&2
    fail "dockerd did not start"
}

# --- base images ------------------------------------------------------------------------------

# The bookworm sources, as the official image has them.
debian_sources() {
    echo "deb $DEBIAN_MIRROR $DEBIAN_RELEASE main"
    echo "deb $DEBIAN_MIRROR $DEBIAN_RELEASE-updates main"
    echo "deb $DEBIAN_SECURITY $DEBIAN_RELEASE-security main"
}

ensure_mmdebstrap() {
    command -v mmdebstrap >/dev/null 2>&1 || apt_install mmdebstrap \
        || fail "mmdebstrap could not be installed"
}

# debian:bookworm-slim: a minbase rootfs without documentation, manual pages and translations
# (but with the copyright files), as the official slim image is made. The merged-usr hook lays
# out /usr without the usrmerge package, which would pull in perl.
build_runtime_base() {
    ensure_mmdebstrap
    local sources
    mapfile -t sources < <(debian_sources)
    mmdebstrap --quiet --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/lintian/*' \
        "$DEBIAN_RELEASE" "$WORK/runtime.tar" "${sources[@]}" \
        && docker import --change 'CMD ["bash"]' "$WORK/runtime.tar" "$RUNTIME_BASE" \
        && rm -f "$WORK/runtime.tar"
}

# rust:1.95-slim-bookworm: the same rootfs with a C toolchain, cmake, this machine's Rust
# toolchain (without its documentation) and this machine's CA certificates, so that cargo can
# reach the crates registry from inside a build.
build_builder_base() {
    ensure_mmdebstrap
    local sysroot version sources
    sysroot="$(rustc "+$RUST_VERSION" --print sysroot 2>/dev/null || rustc --print sysroot)"
    version="$("$sysroot/bin/rustc" --version)"
    case "$version" in
        "rustc $RUST_VERSION."*) ;;
        *) fail "$BUILDER_BASE needs Rust $RUST_VERSION on this machine, found: $version" ;;
    esac
    mapfile -t sources < <(debian_sources)
    mmdebstrap --quiet --variant=minbase \
        --include=ca-certificates,gcc,g++,libc6-dev,make,cmake,pkg-config \
        --customize-hook="mkdir -p \"\$1/usr/local/rust\" && tar -C '$sysroot' --exclude=./share/doc -c . | tar -C \"\$1/usr/local/rust\" -x" \
        --customize-hook="cp /usr/local/share/ca-certificates/*.crt \"\$1/usr/local/share/ca-certificates/\" 2>/dev/null || true" \
        --customize-hook='chroot "$1" update-ca-certificates' \
        "$DEBIAN_RELEASE" "$WORK/builder.tar" "${sources[@]}" \
        && docker import \
            --change 'ENV CARGO_HOME=/usr/local/cargo' \
            --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["bash"]' \
            "$WORK/builder.tar" "$BUILDER_BASE" \
        && rm -f "$WORK/builder.tar"
}

ensure_base_image() {
    local image=$1 builder=$2
    docker image inspect "$image" >/dev/null 2>&1 && return 0
    if docker pull --quiet "$image" >/dev/null 2>&1; then
        step "pulled $image"
        return 0
    fi
    step "$image cannot be pulled: building it from Debian's packages"
    local start=$SECONDS log="$WORK/base-image.log"
    # Each builder imports only a rootfs that mmdebstrap finished.
    if ! "$builder" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        fail "could not build $image"
    fi
    echo "built $image in $((SECONDS - start)) s, $(image_size "$image")"
}

# --- images -----------------------------------------------------------------------------------

build_images() {
    local start target image
    for target in gateway task-service; do
        image="task-gateway/$target:test"
        step "docker build --target $target"
        start=$SECONDS
        if ! DOCKER_BUILDKIT=0 docker build --network host -f deploy/docker/Dockerfile \
            --target "$target" -t "$image" . >"$WORK/build-$target.log" 2>&1; then
            tail -n 40 "$WORK/build-$target.log" >&2
            fail "docker build --target $target"
        fi
        echo "built $image in $((SECONDS - start)) s, $(image_size "$image")"
    done
}

image_size() {
    docker image inspect --format '{{.Size}}' "$1" | awk '{ printf "%.0f MB", $1 / 1000000 }'
}

# --- running them -----------------------------------------------------------------------------

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

random_secret() {
    head -c 48 /dev/urandom | base64 | tr -d '/+=\n'
}

# Waits until the container's HEALTHCHECK says healthy; fails when it says unhealthy, the
# container stops, or a minute passes.
wait_healthy() {
    local container=$1 status _
    for _ in $(seq 120); do
        status="$(docker inspect --format '{{.State.Status}} {{.State.Health.Status}}' "$container")"
        case "$status" in
            "running healthy") return 0 ;;
            *unhealthy) break ;;
            running*) sleep 0.5 ;;
            *) break ;;
        esac
    done
    docker logs "$container" 2>&1 | tail -n 20 >&2
    docker inspect --format '{{json .State.Health}}' "$container" >&2 || true
    fail "$container is not healthy: $status"
}

# The non-root and read-only promises, checked from inside the running container.
check_hardening() {
    local container=$1 uid
    uid="$(docker exec "$container" id -u)"
    [ "$uid" != 0 ] || fail "$container runs as root"
    [ "$(docker inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$container")" = true ] \
        || fail "$container root filesystem is writable"
    if docker exec "$container" touch /app/probe 2>/dev/null; then
        fail "$container can write to its root filesystem"
    fi
    echo "$container: uid $uid, read-only root filesystem"
}

# How both tiers run, as the Kubernetes manifests run them: the host network (loopback only),
# a read-only root filesystem, no capabilities, no privilege escalation.
HARDENED=(--network host --read-only --cap-drop ALL --security-opt no-new-privileges)

# Starts tier $1 from image $2 hardened, with the rest as `docker run` options, and waits until
# its HEALTHCHECK says healthy.
start_tier() {
    local tier=$1 image=$2
    shift 2
    docker run -d --name "$NAME-$tier" "${HARDENED[@]}" -e LOG_FORMAT=plain "$@" "$image" >/dev/null
    wait_healthy "$NAME-$tier"
}

start_task_service() {
    start_tier task-service "$TASK_SERVICE_IMAGE" \
        --tmpfs /app/data:rw,uid=10001,gid=10001,mode=0700 \
        -e TASK_SERVICE_LISTEN="127.0.0.1:$TASK_SERVICE_PORT" \
        -e GATEWAY_SIGNING_SECRET="$SIGNING_SECRET"
}

start_gateway() {
    start_tier gateway "$GATEWAY_IMAGE" --tmpfs /tmp \
        -e GATEWAY_LISTEN="127.0.0.1:$GATEWAY_PORT" \
        -e GATEWAY_ADMIN_LISTEN="127.0.0.1:$ADMIN_PORT" \
        -e TASK_SERVICE_URL="http://127.0.0.1:$TASK_SERVICE_PORT" \
        -e BETTER_AUTH_SECRET="$AUTH_SECRET" \
        -e GATEWAY_SIGNING_SECRET="$SIGNING_SECRET"
}

# curl against the gateway with the test user's token; prints the body, then the status on its
# own line.
api() {
    curl -sS --max-time 30 -w '\n%{http_code}' -H "authorization: Bearer $TOKEN" \
        -H 'content-type: application/json' "$@"
}

# Sends a task whose body arrives two seconds after the headers, so that the request is in
# flight through both tiers when a container is told to stop. Writes the status to $1.
slow_create() {
    local out=$1 title=$2
    { sleep 2; printf '{"title": "%s"}' "$title"; } \
        | curl -sS --max-time 30 -o /dev/null -w '%{http_code}' -X POST -T - -H 'expect:' \
            -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
            "$TASKS_URL" >"$out" 2>"$out.err" || true
}

# Stops a container with a request in flight: the request must get its 201, the container must
# exit 0, and well within the grace period.
check_drain() {
    local container=$1 title=$2 grace=20 start status code elapsed
    slow_create "$WORK/$title.status" "$title" &
    local request=$!
    # Let the headers reach both tiers before the signal (the body follows two seconds later).
    sleep 1
    start=$SECONDS
    docker stop --time "$grace" "$container" >/dev/null
    elapsed=$((SECONDS - start))
    wait "$request"
    status="$(cat "$WORK/$title.status")"
    code="$(docker inspect --format '{{.State.ExitCode}}' "$container")"
    [ "$status" = 201 ] || fail "$container stopped with a request in flight: it got '$status' $(cat "$WORK/$title.status.err")"
    [ "$code" = 0 ] || fail "$container exited $code after SIGTERM"
    [ "$elapsed" -lt "$grace" ] || fail "$container took the whole grace period to stop"
    echo "$container: SIGTERM with a request in flight: the request got 201, exit 0 after ${elapsed} s"
}

run_images() {
    GATEWAY_PORT="$(free_port)"
    ADMIN_PORT="$(free_port)"
    TASK_SERVICE_PORT="$(free_port)"
    AUTH_SECRET="$(random_secret)"
    SIGNING_SECRET="$(random_secret)"

    step "task service on 127.0.0.1:$TASK_SERVICE_PORT, gateway on :$GATEWAY_PORT (admin :$ADMIN_PORT)"
    start_task_service
    start_gateway
    check_hardening "$NAME-task-service"
    check_hardening "$NAME-gateway"

    step "the health check follows the configured address"
    docker exec "$NAME-gateway" gateway healthcheck || fail "gateway healthcheck failed on its configured address"
    if docker exec -e GATEWAY_ADMIN_LISTEN="127.0.0.1:$(free_port)" "$NAME-gateway" gateway healthcheck 2>/dev/null; then
        fail "gateway healthcheck passed against an address where nothing listens"
    fi
    if docker exec -e TASK_SERVICE_LISTEN="127.0.0.1:$(free_port)" "$NAME-task-service" task-service healthcheck 2>/dev/null; then
        fail "task-service healthcheck passed against an address where nothing listens"
    fi

    step "a request end to end through both containers"
    TOKEN="$(docker run --rm --network host -e BETTER_AUTH_SECRET="$AUTH_SECRET" "$GATEWAY_IMAGE" mint-token --sub imagetest-user --ttl 10m)"
    TASKS_URL="http://127.0.0.1:$GATEWAY_PORT/api/imagetest-user/tasks"
    local reply
    reply="$(api -X POST -d '{"title": "built in a container"}' "$TASKS_URL")"
    [ "${reply##*$'\n'}" = 201 ] || fail "create a task through the gateway: $reply"
    reply="$(api "$TASKS_URL")"
    [ "${reply##*$'\n'}" = 200 ] || fail "list tasks through the gateway: $reply"
    case "$reply" in
        *'"built in a container"'*) echo "created a task and listed it through the gateway" ;;
        *) fail "the created task is not in the list: $reply" ;;
    esac
    reply="$(curl -sS -o /dev/null -w '%{http_code}' "$TASKS_URL")"
    [ "$reply" = 401 ] || fail "a request without a token got $reply"

    step "SIGTERM drains"
    check_drain "$NAME-task-service" "in flight at the task service"
    docker rm "$NAME-task-service" >/dev/null
    start_task_service
    check_drain "$NAME-gateway" "in flight at the gateway"
}

main() {
    local start=$SECONDS
    ensure_docker
    ensure_base_image "$RUNTIME_BASE" build_runtime_base
    ensure_base_image "$BUILDER_BASE" build_builder_base
    build_images
    run_images
    echo "images: OK: built and ran $GATEWAY_IMAGE ($(image_size "$GATEWAY_IMAGE")) and $TASK_SERVICE_IMAGE ($(image_size "$TASK_SERVICE_IMAGE")) in $((SECONDS - start)) s"
}

main "$@"
