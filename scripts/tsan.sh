#!/usr/bin/env bash
# ThreadSanitizer over the Rust test binaries: the library, its dependencies and the standard
# library rebuilt with -Zsanitizer=thread (nightly, -Zbuild-std), then every integration test
# that drives engines from several threads. Needs: rustup component add rust-src --toolchain nightly
#
#   scripts/tsan.sh [TEST ...]     (default: the tests listed below)
#
# Not run by scripts/test-all.sh or CI: the instrumented build takes about 10 minutes on 2 cores.
# Results go to target/tsan; a report fails the run (halt_on_error).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup component list --toolchain nightly --installed 2>/dev/null | grep -q rust-src \
  || { echo "needs nightly with rust-src: rustup component add rust-src --toolchain nightly" >&2; exit 1; }
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(small_engine api deferred faults workloads ops)
args=()
for t in "${tests[@]}"; do args+=(--test "$t"); done
export RUSTFLAGS="-Zsanitizer=thread"
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
# A thread-sanitized run is 5-15x slower: the tests' generous timeouts are sized for that.
CARGO_TARGET_DIR=target/tsan cargo +nightly test -Zbuild-std --target x86_64-unknown-linux-gnu --release "${args[@]}"
echo "ThreadSanitizer: no data race reported"
