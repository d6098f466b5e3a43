#!/usr/bin/env bash
# A Prometheus server scrapes `metafed serve` and returns the engine's series through its query
# API. Starts both on 127.0.0.1 (free ports), queries until the series appear (or 90 s pass),
# checks the alerting rules were loaded, and stops both. Needs `prometheus` (Debian's package:
# apt-get install prometheus) and a release build (cargo build --release).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/target/release/metafed"
test -x "$bin" || { echo "missing $bin: run cargo build --release" >&2; exit 1; }
command -v prometheus >/dev/null || { echo "prometheus is not installed (apt-get install prometheus)" >&2; exit 1; }
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# The engine, on a free port; its first line on stdout names the address.
"$bin" serve --listen 127.0.0.1:0 --offered-rps 2000 --outage-every 20 --progress-every 0 >"$work/serve.out" 2>"$work/serve.err" &
pids+=($!)
for _ in $(seq 100); do grep -q "admin endpoint on" "$work/serve.out" && break; sleep 0.1; done
target="$(sed -n 's|.*admin endpoint on http://\([0-9.:]*\).*|\1|p' "$work/serve.out")"
test -n "$target" || { echo "metafed serve did not start:" >&2; cat "$work/serve.out" "$work/serve.err" >&2; exit 1; }

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cp "$root/ops/prometheus/alerts.yml" "$work/alerts.yml"
cat >"$work/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: metafed
    static_configs:
      - targets: ["$target"]
YML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$port" --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)

python3 - "$port" "$target" <<'PY'
import json, sys, time, urllib.parse, urllib.request

port, target = sys.argv[1], sys.argv[2]
api = f"http://127.0.0.1:{port}/api/v1"

def get(path):
    with urllib.request.urlopen(api + path, timeout=10) as r:
        return json.load(r)

def query(expr):
    return get("/query?query=" + urllib.parse.quote(expr))["data"]["result"]

deadline = time.time() + 90
want = ["metafed_tasks_admitted_total", 'metafed_breaker_state{level="domain"}',
        "metafed_domain_reliability_measured_ratio", "metafed_task_latency_seconds_bucket"]
found = {}
while time.time() < deadline:
    try:
        for expr in want:
            if expr not in found:
                r = query(expr)
                if r:
                    found[expr] = r
        if len(found) == len(want) and float(query("metafed_tasks_admitted_total")[0]["value"][1]) > 0:
            break
    except OSError:
        pass  # Prometheus is still starting
    time.sleep(1)
else:
    sys.exit(f"Prometheus did not return the engine's series within 90 s; found {sorted(found)}")
admitted = float(query("metafed_tasks_admitted_total")[0]["value"][1])
instance = found["metafed_tasks_admitted_total"][0]["metric"]["instance"]
assert instance == target, (instance, target)
assert len(found['metafed_breaker_state{level="domain"}']) == 9, "3 domains x 3 states"
rules = [r["name"] for g in get("/rules")["data"]["groups"] for r in g["rules"]]
assert "MetafedBreakerOpenTooLong" in rules and "MetafedReliabilityBelowPrediction" in rules, rules
p99 = query("histogram_quantile(0.99, sum(rate(metafed_task_latency_seconds_bucket[10s])) by (le))")
print(f"Prometheus scraped metafed serve at {target}: metafed_tasks_admitted_total = {admitted:.0f}, "
      f"{len(rules)} alerting rules loaded, p99 latency query -> {p99[0]['value'][1] if p99 else 'no data yet'}")
PY
