#!/usr/bin/env bash
# Runs every test of metafed: Rust (unit, integration, doc), the loom models, and the C, C++
# and Python suites when present. Usage: scripts/test-all.sh   (from anywhere)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "Rust: build (release) and every Rust test"
cargo build --release --locked
cargo test --release --locked

step "Rust: future handlers on tokio (cargo feature tokio)"
cargo test --release --locked --features tokio --test future_handler

step "loom models (LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:=2})"
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS CARGO_TARGET_DIR=target/loom \
  cargo test --release --locked --lib loom_models

if [ -x tests/c/run.sh ]; then
  step "C and C++"
  tests/c/run.sh
fi

if [ -x bindings/python/run_tests.sh ]; then
  step "Python"
  bindings/python/run_tests.sh
fi

step "Prometheus: the alerting rules, and a Prometheus server scraping metafed serve"
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  promtool check config ops/prometheus/prometheus.yml
  scripts/prometheus-scrape.sh
elif [ -n "${METAFED_REQUIRE_PROMTOOL:-}" ]; then
  echo "prometheus and promtool are required (METAFED_REQUIRE_PROMTOOL is set): apt-get install prometheus" >&2
  exit 1
else
  echo "prometheus is not installed (apt-get install prometheus): skipped"
fi

step "all tests passed"
