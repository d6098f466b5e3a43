#!/usr/bin/env bash
# Fuzzes the TOML loaders and the C ABI with cargo-fuzz (libFuzzer, AddressSanitizer) for
# SECONDS each (default 60), starting from the committed corpus; new inputs go to
# target/fuzz-corpus/, crashes to fuzz/artifacts/. Needs nightly Rust and cargo-fuzz:
#   rustup toolchain install nightly --profile minimal && cargo install cargo-fuzz
#   scripts/fuzz.sh [SECONDS]
# scripts/test-all.sh runs it for 20 s per target when both are installed (.ci/run installs
# them); the corpus itself is replayed on stable in every `cargo test` (bindings/c/tests/fuzz_corpus.rs).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2; exit 1; }
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for target in toml c_abi; do
  mkdir -p "../target/fuzz-corpus/$target"
  dict=()
  [ "$target" = toml ] && dict=(-dict=toml.dict)
  echo "-- $target, $seconds s"
  if ! cargo +nightly fuzz run -O "$target" "../target/fuzz-corpus/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -max_len=4096 "${dict[@]}" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz target $target failed: the input is in fuzz/artifacts/$target" >&2
    exit 1
  fi
  grep -E "^#[0-9]+ +DONE|^Done" "$log" || tail -n 3 "$log"
done
