#!/usr/bin/env bash
# Instructions per task for W1 (1024 in flight, breakers off) on ONE engine worker, counted by
# valgrind's callgrind: a repeatable cost figure on a noisy machine (the same binary and inputs
# give the same count whatever else runs). It runs `metafed probe` at two task counts and divides
# the difference, so start-up and shut-down cancel out; it also splits the count by thread
# (the engine's worker, and the submitting thread, which includes the benchmark driver).
#
#   scripts/callgrind-w1.sh [TASKS_A] [TASKS_B]      (defaults 100000 300000)
#   GUARDED=1 scripts/callgrind-w1.sh                 (the features on, as bench's engine-guarded)
#
# valgrind runs one thread at a time, so time spent waiting (spinning, yielding) is counted too;
# both counts include it in the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
a=${1:-100000}
b=${2:-300000}
cargo build --release --locked --quiet
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
run() {
  valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$dir/cg.$1" \
    target/release/metafed probe --tasks "$1" --workers 1 ${GUARDED:+--guarded} >/dev/null 2>&1
}
run "$a"
run "$b"
total() { cat "$dir"/cg."$1"-* | awk '/^summary:/ {s += $2} END {print s}'; }
thread() { awk '/^summary:/ {print $2}' "$dir/cg.$1-$2"; }
per() { echo $(( ($2 - $1) / (b - a) )); }
echo "W1 on one worker${GUARDED:+, features on (engine-guarded)}, callgrind, ($b - $a) tasks:"
echo "  all threads       $(per "$(total "$a")" "$(total "$b")") instructions per task"
echo "  submitting thread $(per "$(thread "$a" 01)" "$(thread "$b" 01)") instructions per task (submit, poll, the minimal loop)"
echo "  engine worker     $(per "$(thread "$a" 02)" "$(thread "$b" 02)") instructions per task"
