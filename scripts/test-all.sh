#!/usr/bin/env bash
# Runs every test of metafed: Rust (unit, integration, doc), the loom models, and the C, C++
# and Python suites when present. Usage: scripts/test-all.sh   (from anywhere)
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

step() { printf '\n== %s\n' "$*"; }

step "Imports point down (scripts/check-imports.py)"
scripts/check-imports.py

# Every cargo command below selects the workspace's default members, as a plain `cargo build
# --release` at the top does: the crates are built with one set of features, once, and a later
# build compiles nothing. The federation application (federation/) is not one of them: its
# services' crates are built in a step of their own, and the library's build never waits on them.
step "Rust: build (release) and every Rust test of the workspace"
cargo build --release --locked --workspace --exclude metafed-federation
cargo test --release --locked --workspace --exclude metafed-federation

# With its PostgreSQL and Redis support: the test that uses them starts Debian's servers on the
# loopback interface when they are installed (.ci/run installs them), and says it skipped otherwise.
step "The federation with real agents: its services, faults and report (cargo test -p metafed-federation --all-features)"
cargo test --release --locked -p metafed-federation --all-features

step "loom models (LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:=2})"
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS CARGO_TARGET_DIR=target/loom \
  cargo test --release --locked -p metafed --lib loom_models

if [ -x tests/c/run.sh ]; then
  step "C and C++"
  tests/c/run.sh
fi

if [ -x bindings/python/run_tests.sh ]; then
  step "Python"
  bindings/python/run_tests.sh
  step "The federation's Python twin: nine async def agents on the same services (examples/python/real_agents)"
  examples/python/real_agents/run_tests.sh
fi

# Steps that need Debian packages beyond the toolchain: skipped with a note when they are missing,
# unless METAFED_REQUIRE_TOOLS is set (.ci/run installs them and sets it).
have() {
  local missing=() t
  for t in "$@"; do command -v "$t" >/dev/null || missing+=("$t"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -n "${METAFED_REQUIRE_TOOLS:-}" ]; then
    echo "required (METAFED_REQUIRE_TOOLS is set) but missing: ${missing[*]}" >&2
    exit 1
  fi
  echo "skipped: missing ${missing[*]}"
  return 1
}

step "Packaging: install into a prefix, C with pkg-config, C++ with CMake, the ABI against its record"
if have pkg-config cmake abidiff abidw; then
  tests/packaging/run.sh
fi

step "Fuzzing: a short run of each target (scripts/fuzz.sh ${METAFED_FUZZ_SECONDS:=20})"
if have cargo-fuzz; then
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    scripts/fuzz.sh "$METAFED_FUZZ_SECONDS"
  elif [ -n "${METAFED_REQUIRE_TOOLS:-}" ]; then
    echo "required (METAFED_REQUIRE_TOOLS is set) but missing: the nightly toolchain" >&2
    exit 1
  else
    echo "skipped: missing the nightly toolchain"
  fi
fi

step "Prometheus: the alerting rules, and a Prometheus server scraping metafed serve"
if have prometheus promtool; then
  promtool check config ops/prometheus/prometheus.yml
  scripts/prometheus-scrape.sh
fi

step "all tests passed in $(( (SECONDS - started) / 60 ))m $(( (SECONDS - started) % 60 ))s"
