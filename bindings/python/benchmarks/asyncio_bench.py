"""The engine from asyncio against the same work in plain Python (not a test: run it, read it).

    python bindings/python/benchmarks/asyncio_bench.py [--pairs K] [--tasks N] [--only w5|w1|lag] [--json]

Three comparisons, each run as interleaved pairs (engine, peer, engine, peer, ...) with the median
of the pairwise ratios reported:

  w5   W5 from Python: the 3 x 3 (API, Database, Auth), nine `async def` agents that each
       `await asyncio.sleep(0.001)` and fail when the failure oracle says so (p = 0 and p = 0.12),
       failover up to 3 attempts, breakers disabled, each task awaited with `await engine.run()`
       inside `asyncio.run`, the agents on the running loop; at 64 and 1,024 tasks in flight.
       The peer is the same routing in plain asyncio: an asyncio task per in-flight slot, a
       semaphore per agent (1,024), `asyncio.wait_for` at the 50 ms agent timeout, round-robin
       agent choice and failover to the next agent. Both must succeed exactly as often as the
       oracle says (`1 - p^3` of the tasks); the engine's TIMED_OUT count is reported, and the
       CPU time the loop's thread spent per task (`time.thread_time()` over a run).
  w1   W1 with synchronous Python handlers (the oracle, no waiting), run with `run_many`, against
       a plain-Python version: a `concurrent.futures.ThreadPoolExecutor` with one thread per
       core, each task's whole route (choice, failover) run as one submitted call.
  lag  10,000 concurrent `await engine.run(...)` in one `asyncio.gather`, native (Rust) agents:
       the event loop's longest lag (a ticker that sleeps 1 ms and measures how late it wakes),
       against the same gather over plain `concurrent.futures.Future`s resolved by a thread.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import statistics
import sys
import threading
import time
from typing import Any, Callable

import metafed

_M = (1 << 64) - 1


def fails(task_id: int, attempt: int, p: float) -> bool:
    """The failure oracle of WORKLOADS.md: splitmix64(task_id * 31 + attempt) < floor(p * 2^64)."""
    if p <= 0.0:
        return False
    x = (task_id * 31 + attempt + 0x9E3779B97F4A7C15) & _M
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M
    return (x ^ (x >> 31)) < int(p * 2**64)


def oracle_successes(n: int, p: float, attempts: int = 3) -> int:
    return sum(1 for i in range(n) if not all(fails(i, a, p) for a in range(attempts)))


DOMAINS = ("API", "Database", "Auth")


def _async_agent(p: float) -> Callable[[Any], Any]:
    async def agent(req: Any) -> int:
        await asyncio.sleep(0.001)
        if fails(req.task_id, req.attempt, p):
            raise metafed.AgentError(1)
        return req.task_id

    return agent


# -- W5 ----------------------------------------------------------------------------------------


async def _closed_loop(n: int, in_flight: int, one: Callable[[int], Any]) -> tuple[int, float]:
    """Runs tasks 0..n-1 with `in_flight` at a time; returns (successes, seconds)."""
    next_id = 0
    ok = 0

    async def slot() -> None:
        nonlocal next_id, ok
        while next_id < n:
            i = next_id
            next_id += 1
            if await one(i):
                ok += 1

    start = time.perf_counter()
    await asyncio.gather(*(slot() for _ in range(in_flight)))
    return ok, time.perf_counter() - start


async def w5_engine(n: int, in_flight: int, p: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    t = metafed.Topology()
    agent = _async_agent(p)
    for name in DOMAINS:
        d = t.add_domain(name)
        for k in range(3):
            t.add_agent(d, f"{name}{k}", agent, loop=loop, max_concurrency=1024)
    t.disable_breakers()
    timed_out = 0
    with metafed.Engine(t) as e:

        async def one(i: int) -> bool:
            nonlocal timed_out
            c = await e.run(i, i % 3)
            if c.outcome == metafed.Outcome.TIMED_OUT:
                timed_out += 1
            return c.ok

        ok, secs = await _closed_loop(n, in_flight, one)
    return {"tasks_per_s": n / secs, "ok": ok, "timed_out": timed_out}


class _PlainRequest:
    __slots__ = ("task_id", "attempt", "domain", "agent")

    def __init__(self, task_id: int, attempt: int, domain: int, agent: int) -> None:
        self.task_id, self.attempt, self.domain, self.agent = task_id, attempt, domain, agent


async def w5_plain(n: int, in_flight: int, p: float) -> dict[str, Any]:
    agent = _async_agent(p)
    sems = [[asyncio.Semaphore(1024) for _ in range(3)] for _ in DOMAINS]
    rr = [0, 0, 0]
    timed_out = 0

    async def one(i: int) -> bool:
        nonlocal timed_out
        d = i % 3
        start = rr[d]
        rr[d] = (start + 1) % 3
        for attempt in range(3):
            a = (start + attempt) % 3
            async with sems[d][a]:
                try:
                    await asyncio.wait_for(agent(_PlainRequest(i, attempt, d, a)), 0.05)
                    return True
                except asyncio.TimeoutError:
                    timed_out += 1
                except metafed.AgentError:
                    pass
        return False

    ok, secs = await _closed_loop(n, in_flight, one)
    return {"tasks_per_s": n / secs, "ok": ok, "timed_out": timed_out}


# -- W1 with synchronous handlers ----------------------------------------------------------------


def _sync_agent(p: float) -> Callable[[Any], int]:
    def agent(req: Any) -> int:
        if fails(req.task_id, req.attempt, p):
            raise metafed.AgentError(1)
        return req.task_id

    return agent


def w1_engine(n: int, p: float) -> dict[str, Any]:
    t = metafed.Topology()
    agent = _sync_agent(p)
    for name in DOMAINS:
        d = t.add_domain(name)
        for k in range(3):
            t.add_agent(d, f"{name}{k}", agent)
    t.disable_breakers()
    with metafed.Engine(t) as e:
        r = e.run_many(range(n), [i % 3 for i in range(n)])
    return {"tasks_per_s": r.tasks_per_s, "ok": r.ok}


def w1_plain(n: int, p: float) -> dict[str, Any]:
    agent = _sync_agent(p)
    rr = [0, 0, 0]
    lock = threading.Lock()

    def route(i: int) -> bool:
        d = i % 3
        with lock:
            start = rr[d]
            rr[d] = (start + 1) % 3
        for attempt in range(3):
            try:
                agent(_PlainRequest(i, attempt, d, (start + attempt) % 3))
                return True
            except metafed.AgentError:
                pass
        return False

    window = 1024
    ok = 0
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        for lo in range(0, n, window):
            for f in [pool.submit(route, i) for i in range(lo, min(n, lo + window))]:
                ok += f.result()
    return {"tasks_per_s": n / (time.perf_counter() - start), "ok": ok}


# -- loop lag under 10,000 awaits ------------------------------------------------------------------


async def _lagging(body: Callable[[], Any]) -> float:
    """Runs `body()` while a ticker measures how late the loop wakes it; returns the worst (s)."""
    worst = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal worst
        while not stop:
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - t0 - 0.001)

    tick = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.01)
    await body()
    stop = True
    await tick
    return worst


async def lag_engine(n: int) -> dict[str, Any]:
    t = metafed.Topology.seed(0.12)
    t.disable_breakers()
    with metafed.Engine(t) as e:

        async def body() -> None:
            done = await asyncio.gather(*(e.run(i, i % 3) for i in range(n)))
            assert len(done) == n

        worst = await _lagging(body)
    return {"max_lag_s": worst}


async def lag_plain(n: int) -> dict[str, Any]:
    futures = [concurrent.futures.Future() for _ in range(n)]

    def resolve() -> None:
        for i, f in enumerate(futures):
            f.set_result(i)

    async def body() -> None:
        waiting = asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        threading.Thread(target=resolve).start()
        assert len(await waiting) == n

    return {"max_lag_s": await _lagging(body)}


# -- the driver ------------------------------------------------------------------------------------


def _loop_cpu(n: int, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`run()`'s result with the CPU time its thread (the event loop's) spent per task, in us."""
    start = time.thread_time()
    r = run()
    r["loop_cpu_us"] = (time.thread_time() - start) / n * 1e6
    return r


def _pairs(pairs: int, a: Callable[[], dict[str, Any]], b: Callable[[], dict[str, Any]], key: str) -> dict[str, Any]:
    ra, rb = [], []
    for k in range(pairs):
        # A B, B A, ...: neither side always runs first (after the other's garbage, a warm cache).
        if k % 2 == 0:
            ra.append(a())
            rb.append(b())
        else:
            rb.append(b())
            ra.append(a())
    ratios = [x[key] / y[key] if y[key] else float("inf") for x, y in zip(ra, rb)]
    return {"engine": ra, "peer": rb, "median_ratio": statistics.median(ratios), "ratios": ratios}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=5, help="interleaved pairs per comparison (default 5)")
    ap.add_argument("--tasks", type=int, default=20_000, help="tasks per W5 run (W1 runs 10x as many; default 20,000)")
    ap.add_argument("--only", choices=("w5", "w1", "lag"), action="append", help="run only these comparisons")
    ap.add_argument("--json", action="store_true", help="one JSON document on standard output")
    args = ap.parse_args()
    if args.pairs < 1 or args.tasks < 1:
        ap.error("--pairs and --tasks must be at least 1")
    which = args.only or ["w5", "w1", "lag"]
    out: dict[str, Any] = {"metafed": metafed.version(), "python": sys.version.split()[0], "cpus": os.cpu_count(), "pairs": args.pairs}
    log = (lambda *a: None) if args.json else print
    log(f"metafed {out['metafed']} from Python {out['python']}, {out['cpus']} CPUs, {args.pairs} interleaved pairs")
    n = args.tasks
    if "w5" in which:
        for p in (0.0, 0.12):
            expect = oracle_successes(n, p)
            for in_flight in (64, 1024):
                r = _pairs(
                    args.pairs,
                    lambda: _loop_cpu(n, lambda: asyncio.run(w5_engine(n, in_flight, p))),
                    lambda: _loop_cpu(n, lambda: asyncio.run(w5_plain(n, in_flight, p))),
                    "tasks_per_s",
                )
                r["oracle_ok"] = expect
                r["exact"] = all(x["ok"] == expect for x in r["engine"] + r["peer"])
                r["engine_exact"] = all(x["ok"] == expect for x in r["engine"])
                r["peer_exact"] = all(x["ok"] == expect for x in r["peer"])
                out[f"w5_p{p}_inflight{in_flight}"] = r
                e_tps = statistics.median(x["tasks_per_s"] for x in r["engine"])
                p_tps = statistics.median(x["tasks_per_s"] for x in r["peer"])
                e_cpu = statistics.median(x["loop_cpu_us"] for x in r["engine"])
                p_cpu = statistics.median(x["loop_cpu_us"] for x in r["peer"])
                tos = max(x["timed_out"] for x in r["engine"])
                peer_tos = max(x["timed_out"] for x in r["peer"])
                log(
                    f"  W5 p={p:<4} {in_flight:>5} in flight: engine {e_tps:>8,.0f}/s  asyncio {p_tps:>8,.0f}/s  "
                    f"ratio {r['median_ratio']:.2f}x  timed out (worst run) engine {tos} asyncio {peer_tos}  "
                    f"exact engine {r['engine_exact']} asyncio {r['peer_exact']}  "
                    f"loop CPU per task engine {e_cpu:.1f} us asyncio {p_cpu:.1f} us"
                )
    if "w1" in which:
        n1 = 10 * n
        expect = oracle_successes(n1, 0.12)
        r = _pairs(args.pairs, lambda: w1_engine(n1, 0.12), lambda: w1_plain(n1, 0.12), "tasks_per_s")
        r["oracle_ok"] = expect
        r["exact"] = all(x["ok"] == expect for x in r["engine"] + r["peer"])
        out["w1_sync"] = r
        e_tps = statistics.median(x["tasks_per_s"] for x in r["engine"])
        p_tps = statistics.median(x["tasks_per_s"] for x in r["peer"])
        log(f"  W1 sync handlers: engine {e_tps:>10,.0f}/s  thread pool {p_tps:>10,.0f}/s  ratio {r['median_ratio']:.2f}x  exact {r['exact']}")
    if "lag" in which:
        r = _pairs(args.pairs, lambda: asyncio.run(lag_engine(10_000)), lambda: asyncio.run(lag_plain(10_000)), "max_lag_s")
        out["lag_10000"] = r
        e_lag = statistics.median(x["max_lag_s"] for x in r["engine"])
        p_lag = statistics.median(x["max_lag_s"] for x in r["peer"])
        log(f"  10,000 awaits: longest loop lag engine {e_lag * 1e3:.0f} ms  plain futures {p_lag * 1e3:.0f} ms  ratio {r['median_ratio']:.2f}x")
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
