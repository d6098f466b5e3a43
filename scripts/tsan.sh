#!/usr/bin/env bash
# ThreadSanitizer over the Rust test binaries: the library, its dependencies and the standard
# library rebuilt with -Zsanitizer=thread (nightly, -Zbuild-std), then every integration test
# that drives engines from several threads; then the C tests (tests/c) built with gcc
# -fsanitize=thread against the same instrumented libmetafed.so. Needs: rustup component add
# rust-src --toolchain nightly
#
#   scripts/tsan.sh [FILTER ...]   (test-name filters; default: the modules listed below, then the C tests)
#
# Not run by scripts/test-all.sh or CI: the instrumented build takes about 10 minutes on 2 cores.
# Results go to target/tsan; a report fails the run (halt_on_error).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup component list --toolchain nightly --installed 2>/dev/null | grep -q rust-src \
  || { echo "needs nightly with rust-src: rustup component add rust-src --toolchain nightly" >&2; exit 1; }
# Test modules of the library's integration binary (a filter each).
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(small_engine:: api:: deferred:: faults:: workloads:: ops::)
export RUSTFLAGS="-Zsanitizer=thread"
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
# A thread-sanitized run is 5-15x slower: the tests' generous timeouts are sized for that.
CARGO_TARGET_DIR=target/tsan cargo +nightly test -Zbuild-std --target x86_64-unknown-linux-gnu --release -p metafed --test integration -- "${tests[@]}"

# The C tests against the instrumented shared library. The sanitizer's runtime must be in the
# executable; gcc's libtsan lacks symbols the Rust (LLVM) instrumentation calls
# (__tsan_memcpy ...), so the C programs link the runtime of the nightly toolchain instead. The
# C code itself is not instrumented: what is checked is the library, driven from C threads.
CARGO_TARGET_DIR=target/tsan cargo +nightly build -Zbuild-std --target x86_64-unknown-linux-gnu --release -p libmetafed
rt="$(rustc +nightly --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/lib/librustc-nightly_rt.tsan.a"
lib="$PWD/target/tsan/x86_64-unknown-linux-gnu/release"
out="$PWD/target/tsan/ctests"
mkdir -p "$out"
for t in w1 faults bad_args deferred ops; do
  gcc -std=c99 -O1 -g -Iinclude "tests/c/$t.c" -o "$out/$t" -Wl,--whole-archive "$rt" -Wl,--no-whole-archive \
    -L"$lib" -lmetafed -Wl,-rpath,"$lib" -pthread -ldl -lm -lstdc++ -rdynamic
  echo "-- C $t"
  "$out/$t"
done
echo "ThreadSanitizer: no data race reported (Rust tests and C tests)"
