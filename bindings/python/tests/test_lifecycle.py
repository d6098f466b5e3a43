"""Closing while tasks are in flight, and many engines opened and closed."""

import gc
import os
import threading

import metafed


def slow_topology():
    t = metafed.Topology()
    d = t.add_domain("D")
    for i in range(3):
        t.add_agent(d, f"a{i}", metafed.SimAgent(latency_us=200))
    return t


def test_closing_with_tasks_in_flight_resolves_every_ticket():
    e = metafed.Engine(slow_topology())
    tickets = [e.submit(i, 0) for i in range(2000)]
    report = e.shutdown(drain=0.01)
    e.close()
    outcomes = [t.result(timeout=30) for t in tickets]  # every ticket resolves, once
    rejected = [c for c in outcomes if c.reason == metafed.Reason.SHUTTING_DOWN]
    assert len(rejected) == report.rejected
    assert all(c.ok for c in outcomes if c not in rejected)
    assert len({c.ticket for c in outcomes}) == 2000


def test_close_is_idempotent_and_runs_from_the_context_manager():
    with metafed.Engine(metafed.Topology.seed()) as e:
        e.submit(1, "API").result(timeout=30)
    e.close()
    assert e.shutdown().drained


def _rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _os_threads() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/task"))


def test_a_thousand_engines_leak_neither_memory_nor_threads():
    topology = metafed.Topology.seed(0.1)

    def cycle(n):
        for i in range(n):
            with metafed.Engine(topology, workers=1, max_in_flight=64) as e:
                e.submit(i, "API").result(timeout=30)
        gc.collect()

    cycle(100)  # warm up allocators and caches
    rss, threads = _rss_kib(), _os_threads()
    py_threads = threading.active_count()
    cycle(1000)
    grown = _rss_kib() - rss
    assert _os_threads() == threads, "every engine's threads are gone"
    assert threading.active_count() == py_threads
    assert grown < 16 * 1024, f"RSS grew {grown} KiB over 1,000 engines"


def test_close_drains_for_the_engines_drain_timeout():
    # close() and shutdown() without a drain use the engine's drain_timeout_ms.
    t = metafed.Topology()
    d = t.add_domain("D")
    t.add_agent(d, "slow", metafed.SimAgent(latency_us=300_000, io=True), max_concurrency=64)
    t.disable_breakers()
    t.set_timeouts(agent_ms=10_000, domain_ms=10_000, task_ms=10_000)
    for drain_ms, reason in ((0, metafed.Reason.SHUTTING_DOWN), (5_000, metafed.Reason.NONE)):
        e = metafed.Engine(t, drain_timeout_ms=drain_ms)
        tickets = [e.submit(i, "D") for i in range(20)]
        e.close()
        assert {tk.result(timeout=30).reason for tk in tickets} == {reason}, drain_ms
