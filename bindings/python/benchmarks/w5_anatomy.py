"""Where W5's time goes from Python, and what a burst does (not a test: run it, read it).

    python bindings/python/benchmarks/w5_anatomy.py [--tasks N] [--in-flight K]

Three measurements, each of the engine (`await engine.run`, `async def` agents on the running
loop) and of the same routing in plain asyncio (`asyncio_bench.py`'s W5 peer):

  turns    turns of the event loop per task (`BaseEventLoop._run_once` counted) and how many of
           them waited in the selector: few tasks per turn means each pays the turn's fixed cost;
  latency  a task's time from `run()` to its result, the median, beside the engine's own
           latency (`Completion.latency_ns`, submission to completion);
  burst    N attempts at once, each awaiting 40 ms with 50 ms allowed: how many succeed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import selectors
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import asyncio_bench as bench  # noqa: E402

import metafed  # noqa: E402


def turns(n: int, in_flight: int) -> None:
    count = {"turns": 0, "waits": 0}
    run_once = asyncio.BaseEventLoop._run_once  # type: ignore[attr-defined]
    select = selectors.EpollSelector.select

    def counted_run_once(self: Any) -> None:
        count["turns"] += 1
        run_once(self)

    def counted_select(self: Any, timeout: Any = None) -> Any:
        if timeout is None or timeout > 0:
            count["waits"] += 1
        return select(self, timeout)

    asyncio.BaseEventLoop._run_once = counted_run_once  # type: ignore[attr-defined]
    selectors.EpollSelector.select = counted_select  # type: ignore[method-assign]
    try:
        for name, f in (("engine", bench.w5_engine), ("asyncio", bench.w5_plain)):
            count.update(turns=0, waits=0)
            r = asyncio.run(f(n, in_flight, 0.0))
            print(
                f"  turns   {name:<8} {r['tasks_per_s']:>9,.0f} tasks/s  {count['turns'] / n:.3f} turns per task "
                f"({n / max(count['turns'], 1):.1f} tasks a turn), {count['waits'] / n:.3f} waits in the selector per task"
            )
    finally:
        asyncio.BaseEventLoop._run_once = run_once  # type: ignore[attr-defined]
        selectors.EpollSelector.select = select  # type: ignore[method-assign]


async def _latency_engine(n: int, in_flight: int) -> tuple[float, float, float]:
    loop = asyncio.get_running_loop()
    t = metafed.Topology()
    agent = bench._async_agent(0.0)
    for name in bench.DOMAINS:
        d = t.add_domain(name)
        for k in range(3):
            t.add_agent(d, f"{name}{k}", agent, loop=loop, max_concurrency=1024)
    t.disable_breakers()
    walls: list[float] = []
    engine_side: list[float] = []
    with metafed.Engine(t) as e:

        async def one(i: int) -> bool:
            start = time.perf_counter()
            c = await e.run(i, i % 3)
            walls.append(time.perf_counter() - start)
            engine_side.append(c.latency_ns / 1e9)
            return c.ok

        _, secs = await bench._closed_loop(n, in_flight, one)
    return n / secs, statistics.median(walls), statistics.median(engine_side)


async def _latency_plain(n: int, in_flight: int) -> tuple[float, float]:
    agent = bench._async_agent(0.0)
    walls: list[float] = []

    async def one(i: int) -> bool:
        start = time.perf_counter()
        await asyncio.wait_for(agent(bench._PlainRequest(i, 0, i % 3, 0)), 0.05)
        walls.append(time.perf_counter() - start)
        return True

    _, secs = await bench._closed_loop(n, in_flight, one)
    return n / secs, statistics.median(walls)


def latency(n: int, in_flight: int) -> None:
    tps, wall, inside = asyncio.run(_latency_engine(n, in_flight))
    print(f"  latency engine   {tps:>9,.0f} tasks/s  run() to result p50 {wall * 1e3:.2f} ms, engine-side p50 {inside * 1e3:.2f} ms")
    tps, wall = asyncio.run(_latency_plain(n, in_flight))
    print(f"  latency asyncio  {tps:>9,.0f} tasks/s  call to result p50 {wall * 1e3:.2f} ms")


async def _burst_engine(n: int) -> collections.Counter[str]:
    async def agent(req: Any) -> int:
        await asyncio.sleep(0.04)
        return 1

    loop = asyncio.get_running_loop()
    t = metafed.Topology()
    d = t.add_domain("IO")
    t.add_agent(d, "A", agent, loop=loop, max_concurrency=8192)
    t.disable_breakers()
    with metafed.Engine(t) as e:
        done = await asyncio.gather(*(e.run(i, "IO") for i in range(n)))
    return collections.Counter(f"{c.outcome.name}/{c.reason.name}" for c in done)


async def _burst_plain(n: int) -> int:
    async def agent() -> int:
        await asyncio.sleep(0.04)
        return 1

    async def one() -> bool:
        try:
            await asyncio.wait_for(agent(), 0.05)
            return True
        except asyncio.TimeoutError:
            return False

    return sum(await asyncio.gather(*(one() for _ in range(n))))


def burst() -> None:
    for n in (1000, 4000, 8000):
        got = asyncio.run(_burst_engine(n))
        plain = asyncio.run(_burst_plain(n))
        print(f"  burst   {n:>5} awaits of 40 ms, 50 ms each: engine {dict(got)}; asyncio wait_for {plain} ok")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=20_000, help="tasks per turns/latency run (default 20,000)")
    ap.add_argument("--in-flight", type=int, default=64, help="tasks in flight for turns/latency (default 64)")
    args = ap.parse_args()
    if args.tasks < 1 or args.in_flight < 1:
        ap.error("--tasks and --in-flight must be at least 1")
    print(f"metafed {metafed.version()}, W5 p = 0, {args.in_flight} in flight, {args.tasks:,} tasks")
    turns(args.tasks, args.in_flight)
    latency(args.tasks, args.in_flight)
    burst()


if __name__ == "__main__":
    main()
