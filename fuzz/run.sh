#!/usr/bin/env bash
# Runs each fuzz target for a bounded time (default 60 s each) on a stable toolchain.
#
#   fuzz/run.sh            # 60 s per target
#   fuzz/run.sh 300        # 5 minutes per target
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a C++ compiler (libFuzzer is built
# from source). `-s none` turns off the sanitizer, whose `-Zsanitizer` flag is the only part of
# cargo-fuzz that needs nightly; the coverage instrumentation it uses is stable. The first build
# takes about 6 minutes on 2 cores, so CI runs the property tests with more cases instead
# (see fuzz/README.md). Findings land in fuzz/artifacts/<target>/ and make this script fail.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
targets=(path_check bearer_token assertion_verify)
cargo fuzz build -s none -O
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    echo "== $target: ${seconds}s"
    cargo fuzz run -s none -O "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -artifact_prefix="artifacts/$target/" 2>&1 |
        grep -E '^Done [0-9]+ runs|[[:space:]]DONE[[:space:]]|SUMMARY|panicked|Test unit written' || true
    if compgen -G "artifacts/$target/*" >/dev/null; then
        echo "error: $target found a failing input: $(ls "artifacts/$target")" >&2
        exit 1
    fi
done
