#!/usr/bin/env bash
# The cost of the C boundary per task: W1 (1024 in flight, breakers off) driven from Rust (the
# engine's own API, `metafed probe`) and from C (benches/c/w1_from_c.c: simulated agents, C
# callback agents, and the run_batch bulk call), run in turn, PAIRS times, medians reported.
#   benches/c/run.sh [PAIRS] [TASKS] [WORKERS]     (defaults 5 2000000 0)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
pairs=${1:-5}; tasks=${2:-2000000}; workers=${3:-0}
cd "$root"
cargo build --release --locked --quiet
cc -std=c99 -O2 -Wall -Wextra -Werror -pedantic benches/c/w1_from_c.c -Iinclude target/release/libmetafed.a -lpthread -ldl -lm -o target/w1_from_c
declare -A runs
for _ in $(seq "$pairs"); do
  runs[rust]+="$(target/release/metafed probe --tasks "$tasks" --workers "$workers" | awk '{print $NF}') "
  for mode in sim callback run_batch; do
    runs[$mode]+="$(target/w1_from_c "$mode" "$tasks" "$workers" | awk '{print $1}') "
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
rust=$(echo "${runs[rust]}" | median)
printf '%-28s %14s %22s\n' "W1 driven from" "tasks/s" "ns/task vs Rust"
printf '%-28s %14.0f %22s\n' "Rust (engine API)" "$rust" "-"
for mode in sim callback run_batch; do
  m=$(echo "${runs[$mode]}" | median)
  printf '%-28s %14.0f %+22.1f\n' "C: $mode" "$m" "$(echo "1000000000/$m - 1000000000/$rust" | bc -l)"
done
