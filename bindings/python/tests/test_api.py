"""The Pythonic API: futures, asyncio, poll, stats, and clear errors for bad input."""

import asyncio
import concurrent.futures
import os
import subprocess
import sys

import pytest

import metafed


def test_tickets_are_futures(seed_engine):
    tickets = [seed_engine.submit(i, ["API", "Auth"]) for i in range(200)]
    assert all(isinstance(t, concurrent.futures.Future) for t in tickets)
    done, not_done = concurrent.futures.wait(tickets, timeout=30)
    assert not not_done
    completions = [t.result() for t in tickets]
    assert [c.id for c in completions] == list(range(200))
    assert all(c.attempts >= 2 for c in completions), "two sub-tasks each"
    assert seed_engine.wait(tickets[0]) == completions[0]


def test_asyncio(seed_engine):
    async def main():
        return await asyncio.gather(*(seed_engine.run(i, "Database") for i in range(100)))

    done = asyncio.run(main())
    assert [c.id for c in done] == list(range(100))


def test_poll_returns_untracked_completions(seed_engine):
    tickets = {seed_engine.submit(i, 1, track=False) for i in range(50)}
    got = []
    while len(got) < 50:
        batch = seed_engine.poll(timeout=10)
        assert batch, "completions arrive"
        got.extend(batch)
    assert {c.ticket for c in got} == tickets
    assert seed_engine.poll() == []


def test_stats_and_controls(seed_engine):
    seed_engine.run_many(range(3000), "API")
    before = seed_engine.stats()
    assert before.agents[0].calls > 0
    seed_engine.set_breaker_mode(metafed.Level.AGENT, 0, metafed.BreakerMode.FORCED_OPEN)
    r = seed_engine.run_many(range(3000, 6000), "API")
    s = seed_engine.stats()
    assert s.completed == 6000 and r.done == 3000
    assert s.agents[0].breaker == metafed.BreakerState.OPEN
    assert s.agents[0].calls == before.agents[0].calls, "a forced-open agent gets no calls"
    assert s.agents[1].calls > before.agents[1].calls
    assert len(s.domains) == 3 and s.domains[0].subtasks == 6000


def test_bad_input_raises_clear_exceptions(seed_engine):
    with pytest.raises(metafed.UnknownDomain, match="no domain named"):
        seed_engine.submit(1, "Nope")
    with pytest.raises(metafed.UnknownDomain, match="domain 5"):
        seed_engine.submit(1, 5).result()
    with pytest.raises(TypeError, match="task_id must be int"):
        seed_engine.submit("1", "API")
    with pytest.raises(TypeError, match="data must be bytes"):
        seed_engine.submit(1, "API", data="text")
    with pytest.raises(metafed.InvalidArgument, match="priority"):
        seed_engine.submit(1, "API", priority=9)
    with pytest.raises(TypeError):
        seed_engine.submit(1, 2.5)
    with pytest.raises(TypeError, match="unexpected keyword argument .colour."):
        metafed.Engine(metafed.Topology.seed(), colour=3)
    with pytest.raises(metafed.ConfigError, match="max_in_flight"):
        metafed.Engine(metafed.Topology.seed(), max_in_flight=0)
    with pytest.raises(TypeError):
        metafed.Engine("not a topology")
    with pytest.raises(metafed.TopologyError, match="has no agents"):
        t = metafed.Topology()
        t.add_domain("Empty")
        metafed.Engine(t)
    with pytest.raises(metafed.ConfigError):
        metafed.Topology.from_toml("[[domains]]\nname = 3\n")
    with pytest.raises(metafed.InvalidArgument, match="agent_error"):
        metafed.Topology.seed(2.0)
    with pytest.raises(TypeError, match="exactly one of handler and sim"):
        metafed.Topology().add_agent(0, "a")


def test_a_closed_engine_refuses_work():
    e = metafed.Engine(metafed.Topology.seed())
    e.close()
    e.close()  # idempotent
    with pytest.raises(metafed.EngineClosed):
        e.submit(1, "API")
    with pytest.raises(metafed.EngineClosed):
        e.stats()


def test_toml_topology_with_bound_handlers():
    t = metafed.Topology.from_toml('[[domains]]\nname = "A"\nagents = [{ name = "x" }, { name = "y", sim = { error_rate = 1.0 } }]\n')
    with pytest.raises(metafed.TopologyError, match="no handler"):
        metafed.Engine(t)
    t.bind("A", "x", lambda req: 3)
    with metafed.Engine(t) as e:
        assert e.submit(1, "A").result(timeout=30).ok


def test_a_missing_library_is_explained():
    env = dict(os.environ, METAFED_LIBRARY="/nonexistent/libmetafed.so")
    p = subprocess.run([sys.executable, "-c", "import metafed; metafed.Topology()"], env=env, capture_output=True, text=True)
    assert p.returncode != 0
    assert "cannot find libmetafed.so" in p.stderr and "cargo build --release" in p.stderr


def test_ctrl_c_interrupts_run_many_within_a_slice():
    """Slow tasks (200 ms) at 64 in flight: Ctrl-C raises KeyboardInterrupt at the end of the
    slice running, one task's time, not after thousands of tasks (12.5 s before)."""
    import os
    import signal
    import threading
    import time

    t = metafed.Topology()
    d = t.add_domain("D")
    t.add_agent(d, "slow", sim=metafed.SimAgent(latency_us=200_000.0, io=True))
    t.set_timeouts(agent_ms=10_000, domain_ms=20_000, task_ms=30_000)
    sent = []

    def interrupt():
        time.sleep(0.3)
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    with metafed.Engine(t, workers=1) as e:
        threading.Thread(target=interrupt, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            e.run_many(range(10_000), "D", in_flight=64)
        late = time.monotonic() - sent[0]
    assert late < 2.0, f"KeyboardInterrupt {late:.2f} s after the signal"


def test_a_completion_holds_exactly_the_dataclass_fields():
    # Completions are built by setting their __dict__ (fast); a field left out would read as its
    # class default instead of failing.
    import dataclasses

    t = metafed.Topology()
    d = t.add_domain("D")
    t.add_agent(d, "a", lambda req: (5, b"x"))
    with metafed.Engine(t) as e:
        c = e.submit(1, d).result(timeout=30)
    assert set(vars(c)) == {f.name for f in dataclasses.fields(metafed.Completion)}
    assert c.ok and c.value == 5 and c.body == b"x" and c.domains == frozenset({0}) == c.answered
    assert dataclasses.replace(c) == c
