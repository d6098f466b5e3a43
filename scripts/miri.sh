#!/usr/bin/env bash
# Miri (the Rust interpreter that checks every memory access for undefined behaviour and every
# shared access for data races) over the library's unit tests and tests/small_engine.rs (every
# cross-thread hand-off of a real engine: workers, an isolated agent, a deferred agent answered
# from another thread, a panicking handler, fan-out, wait, poll, shutdown), the engine test
# under several thread schedules (-Zmiri-many-seeds). Needs the nightly toolchain with miri:
#   rustup toolchain install nightly --component miri
#
#   scripts/miri.sh [SEEDS]     (default 8 seeds for the engine test; about 30 s per seed here)
#
# Not run by scripts/test-all.sh or CI: on a 2-core machine it takes several minutes.
# Isolation is off because the audit trail reads the wall clock (SystemTime).
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-8}
cargo +nightly miri --version >/dev/null 2>&1 || { echo "miri is not installed: rustup toolchain install nightly --component miri" >&2; exit 1; }
export MIRIFLAGS="-Zmiri-disable-isolation ${MIRIFLAGS:-}"
echo "== Miri: the library's unit tests"
cargo +nightly miri test -p metafed --lib
echo "== Miri: a small engine, $seeds schedules"
MIRIFLAGS="$MIRIFLAGS -Zmiri-many-seeds=0..$seeds" cargo +nightly miri test -p metafed --test integration small_engine::
echo "Miri: no undefined behaviour, no data race"
