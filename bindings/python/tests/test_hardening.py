"""Defects outside users hit, each with the behaviour that replaced it: cancellation, exit with
a handler running, dropped engines, fork, Ctrl-C and timeouts in batches, back-pressure in
async code, bad input, handler messages, names in stats, and calls that would deadlock."""

import asyncio
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest

import metafed


def slow_topology(seconds):
    t = metafed.Topology()
    d = t.add_domain("D")
    t.add_agent(d, "Slow", lambda req: time.sleep(seconds) or 1)
    t.disable_breakers()
    t.set_timeouts(agent_ms=60_000, domain_ms=60_000, task_ms=60_000)
    return t


def test_cancelling_a_ticket_follows_concurrent_futures_and_delivery_goes_on(seed_engine):
    t = seed_engine.submit(1, "API")
    assert t.cancel() is False, "a submitted task is running: it cannot be cancelled"
    assert t.result(timeout=30).ok
    assert all(seed_engine.submit(i, "API").result(timeout=30).ok for i in range(10))


def test_asyncio_cancellation_and_timeouts_are_safe():
    with metafed.Engine(slow_topology(0.05), workers=1) as e:

        async def main():
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(e.run(1, "D"), 0.001)
            task = asyncio.ensure_future(e.run(2, "D"))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return await e.run(3, "D")

        c = asyncio.run(main())
        assert c.ok
        # The completion thread survived both.
        assert e.submit(4, "D").result(timeout=30).ok


def test_run_awaits_when_the_engine_is_full_and_the_loop_runs_on():
    with metafed.Engine(slow_topology(0.01), workers=1, max_in_flight=2) as e:

        async def main():
            ticks = 0
            stop = False

            async def ticker():
                nonlocal ticks
                while not stop:
                    ticks += 1
                    await asyncio.sleep(0.001)

            t = asyncio.ensure_future(ticker())
            done = await asyncio.gather(*(e.run(i, "D") for i in range(8)))
            stop = True
            await t
            return done, ticks

        done, ticks = asyncio.run(main())
    assert all(c.ok for c in done)
    assert ticks > 20, f"the event loop kept running while submissions waited ({ticks} ticks)"


def test_a_dropped_engine_is_closed_with_a_resource_warning():
    before = threading.active_count()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        e = metafed.Engine(metafed.Topology.seed(0.1), workers=2)
        assert e.submit(1, "API").result(timeout=30).ok
        del e
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught)
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() <= before, "its completion thread ended"


def run_script(code, timeout=60):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, env=env)


def test_exit_waits_for_a_running_handler_instead_of_aborting():
    r = run_script(
        """
        import time, metafed
        t = metafed.Topology()
        d = t.add_domain("D")
        t.add_agent(d, "Slow", lambda req: time.sleep(1.0) or 1, isolated=True)
        t.set_timeouts(agent_ms=50, domain_ms=100, task_ms=200)
        e = metafed.Engine(t, drain_timeout_ms=10)
        e.submit(1, "D")
        time.sleep(0.1)   # the handler is running; exit comes with it still inside time.sleep
        print("exiting")
        """
    )
    assert r.returncode == 0, r.stderr
    assert "exiting" in r.stdout
    assert "FATAL" not in r.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_gets_a_clear_error():
    r = run_script(
        """
        import os, sys, metafed
        e = metafed.Engine(metafed.Topology.seed(0.1))
        assert e.submit(1, "API").result(timeout=30).ok
        pid = os.fork()
        if pid == 0:
            try:
                e.submit(2, "API")
            except metafed.EngineClosed as ex:
                print("child:", ex, flush=True)
                os._exit(0)
            os._exit(3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert e.submit(3, "API").result(timeout=30).ok
        e.close()
        print("parent ok")
        """
    )
    assert r.returncode == 0, r.stderr
    assert "child: this engine belongs to process" in r.stdout and "parent ok" in r.stdout


def test_run_many_is_interruptible_and_has_a_timeout():
    t = metafed.Topology()
    d = t.add_domain("D")
    t.add_agent(d, "Sim", metafed.SimAgent(latency_us=50))
    t.disable_breakers()
    with metafed.Engine(t, workers=1) as e:
        start = time.monotonic()
        with pytest.raises(metafed.WaitTimeout) as info:
            e.run_many(range(10_000_000), "D", in_flight=64, timeout=0.2)
        assert time.monotonic() - start < 2.0
        partial = info.value.result
        assert 0 < partial.done < 10_000_000 and partial.ok == partial.done

        threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            e.run_many(range(10_000_000), "D", in_flight=64)
        assert time.monotonic() - start < 2.0
        assert e.submit(1, "D").result(timeout=30).ok, "the engine runs on after the interruption"


def test_bad_input_is_refused_naming_the_argument(seed_engine):
    e = seed_engine
    for kwargs, exc, pattern in [
        (dict(task_id=-1), metafed.InvalidArgument, "task_id must be 0 to"),
        (dict(task_id=2**64), metafed.InvalidArgument, "task_id must be 0 to"),
        (dict(payload=-5), metafed.InvalidArgument, "payload must be 0 to"),
        (dict(payload="x"), TypeError, "payload must be int, not str"),
        (dict(priority="high"), TypeError, "priority must be int, not str"),
        (dict(priority=4), metafed.InvalidArgument, "priority must be 0 to 3"),
        (dict(deadline=-1.0), metafed.InvalidArgument, "deadline must be more than 0"),
        (dict(deadline=1e12), metafed.InvalidArgument, "deadline must be more than 0"),
        (dict(domains=[]), metafed.InvalidArgument, "names no domain"),
    ]:
        args = dict(task_id=1, domains="API")
        args.update(kwargs)
        task_id, domains = args.pop("task_id"), args.pop("domains")
        with pytest.raises(exc, match=pattern):
            e.submit(task_id, domains, **args)
    with pytest.raises(metafed.InvalidArgument, match="in_flight must be 1 to"):
        e.run_many(range(10), "API", in_flight=-1)
    with pytest.raises(metafed.InvalidArgument, match="ids must be ints"):
        e.run_many([-1], "API")
    with pytest.raises(metafed.InvalidArgument, match="workers must be 0 to"):
        metafed.Engine(metafed.Topology.seed(0.1), workers=-1)
    with pytest.raises(TypeError, match="pin must be bool"):
        metafed.Engine(metafed.Topology.seed(0.1), pin=1)  # type: ignore[arg-type]


def test_poll_after_close_raises():
    e = metafed.Engine(metafed.Topology.seed(0.1))
    e.close()
    with pytest.raises(metafed.EngineClosed):
        e.poll()
    with pytest.raises(metafed.EngineClosed):
        e.submit(1, "API")


def test_invalid_replies_are_failures_with_a_message_and_no_traceback(capfd):
    replies = {0: "text", 1: 1.5, 2: -1, 3: 2**70 + 5, 4: True}
    t = metafed.Topology()
    d = t.add_domain("D")
    t.add_agent(d, "A", lambda req: replies[req.task_id])
    t.set_max_attempts(d, 1)
    with metafed.Engine(t) as e:
        done = {i: e.submit(i, "D").result(timeout=30) for i in replies}
    for i, c in done.items():
        assert c.outcome == metafed.Outcome.FAILED, (i, c)
        f = c.failures[0]
        assert f.kind == metafed.FailureKind.INVALID_REPLY
        assert f.message and ("returned" in f.message), f.message
    assert "Traceback" not in capfd.readouterr().err


def test_messages_belong_to_the_attempt_not_the_task_id():
    def h(req):
        if req.payload == 1:
            raise RuntimeError(f"first run of {req.task_id}")
        raise metafed.AgentError(9, "second run")

    t = metafed.Topology()
    d = t.add_domain("D")
    t.add_agent(d, "A", h)
    t.set_max_attempts(d, 1)
    with metafed.Engine(t) as e:
        # Same task id twice; the first run's completion is never converted (run_many).
        e.run_many([5], "D")
        c = e.submit(5, "D", payload=2).result(timeout=30)
        c1 = e.submit(6, "D", payload=1).result(timeout=30)
    assert [(f.kind, f.code, f.message) for f in c.failures] == [(metafed.FailureKind.ERROR, 9, "second run")]
    assert c1.failures[0].message == "RuntimeError: first run of 6"


def test_stats_name_domains_and_agents_and_rotation_is_controllable(seed_engine):
    s = seed_engine.stats()
    assert [d.name for d in s.domains] == ["API", "Database", "Auth"]
    assert [a.name for a in s.agents][:3] == ["REST", "GraphQL", "WebSocket"]
    seed_engine.set_agent_in_rotation(0, False)
    assert not seed_engine.stats().agents[0].in_rotation
    seed_engine.set_agent_in_rotation(0, True)
    assert seed_engine.stats().agents[0].in_rotation
    with pytest.raises(metafed.InvalidArgument, match="agent"):
        seed_engine.set_agent_in_rotation(99, True)


def test_errors_do_not_start_with_c_function_names(seed_engine):
    with pytest.raises(metafed.UnknownDomain) as info:
        seed_engine.submit(1, "Nope")
    assert not str(info.value).startswith("metafed_")


def test_calls_that_would_wait_are_refused_in_handlers():
    box = {}
    seen = []

    def h(req):
        e = box["engine"]
        if req.task_id != 1:
            return 0
        inner = e.submit(2, "D")  # there is room: this does not wait
        for call in (
            lambda: inner.result(),
            lambda: e.wait(inner),
            lambda: e.run_many([3], "D"),
            lambda: e.poll(timeout=1.0),
            lambda: e.shutdown(),
            lambda: e.close(),
        ):
            try:
                call()
                seen.append("returned")
            except metafed.WouldDeadlock as ex:
                assert isinstance(ex, RuntimeError)
                seen.append("refused")
        return 1

    t = metafed.Topology()
    d = t.add_domain("D")
    t.add_agent(d, "A", h)
    with metafed.Engine(t, workers=1) as e:
        box["engine"] = e
        assert e.submit(1, "D").result(timeout=30).ok
    assert seen == ["refused"] * 6


def test_done_callbacks_that_wait_are_refused_too(seed_engine):
    results = []
    other = seed_engine.submit(2, "API")

    def callback(fut):
        try:
            results.append(other.result() if not other.done() else "done already")
        except metafed.WouldDeadlock:
            results.append("refused")

    seed_engine.submit(1, "API").add_done_callback(callback)
    other.result(timeout=30)
    deadline = time.monotonic() + 10
    while not results and time.monotonic() < deadline:
        time.sleep(0.01)
    assert results and results[0] in ("refused", "done already")
