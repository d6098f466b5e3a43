"""Tasks per second from Python (not a test: run it, read it).

    python bindings/python/benchmarks/bench.py [--tasks N] [--pairs K]

Three paths, each run K times in turn (A B C A B C ...), median reported:
  native-batch   simulated (Rust) agents, W1 routing, run_many: one call into the library per
                 batch, no Python object per task (target: >= 1,000,000 tasks/s)
  python-batch   every agent a Python handler (the oracle), run_many (target: >= 100,000 tasks/s)
  futures        native agents, one submit() and one Future per task (the convenient path)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import metafed


def oracle_handler(req: metafed.Request) -> int:
    m = (1 << 64) - 1
    x = (req.task_id * 31 + req.attempt) & m
    x = (x + 0x9E3779B97F4A7C15) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    if (x ^ (x >> 31)) < 2213609288845146193:  # floor(0.12 * 2^64)
        raise metafed.AgentError(1)
    return req.task_id


def python_topology() -> metafed.Topology:
    t = metafed.Topology()
    for name in ("API", "Database", "Auth"):
        d = t.add_domain(name)
        for i in range(3):
            t.add_agent(d, f"{name}{i}", oracle_handler)
    t.disable_breakers()
    return t


def native_batch(n: int) -> float:
    t = metafed.Topology.seed(0.12)
    t.disable_breakers()
    with metafed.Engine(t) as e:
        domains = [i % 3 for i in range(n)]
        r = e.run_many(range(n), domains)
        assert r.done == n
        return r.tasks_per_s


def python_batch(n: int) -> float:
    with metafed.Engine(python_topology()) as e:
        r = e.run_many(range(n), [i % 3 for i in range(n)])
        assert r.done == n
        return r.tasks_per_s


def futures(n: int) -> float:
    with metafed.Engine(metafed.Topology.seed(0.12)) as e:
        start = time.perf_counter()
        window = []
        for i in range(n):
            window.append(e.submit(i, i % 3))
            if len(window) >= 1024:
                for t in window:
                    t.result()
                window.clear()
        for t in window:
            t.result()
        return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=1_000_000, help="tasks per native run (Python-handler runs use a tenth, futures a twentieth)")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    runs = {"native-batch": (native_batch, args.tasks), "python-batch": (python_batch, args.tasks // 10), "futures": (futures, args.tasks // 20)}
    results: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.pairs):
        for name, (fn, n) in runs.items():
            results[name].append(fn(n))
    summary = {k: {"median_tasks_per_s": statistics.median(v), "runs": v} for k, v in results.items()}
    if args.json:
        print(json.dumps({"cpus": os.cpu_count(), "metafed": metafed.version(), "results": summary}, indent=2))
        return
    print(f"metafed {metafed.version()} from Python {'.'.join(map(str, __import__('sys').version_info[:3]))}, {os.cpu_count()} CPUs, {args.pairs} rounds")
    targets = {"native-batch": 1_000_000, "python-batch": 100_000, "futures": None}
    for name, s in summary.items():
        target = targets[name]
        verdict = "" if target is None else ("  (target %d: %s)" % (target, "met" if s["median_tasks_per_s"] >= target else "MISSED"))
        spread = f"{min(results[name]):,.0f} .. {max(results[name]):,.0f}"
        print(f"  {name:<13} {s['median_tasks_per_s']:>12,.0f} tasks/s median  [{spread}]{verdict}")


if __name__ == "__main__":
    main()
