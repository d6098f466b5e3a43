"""Python handlers: what they see, what they return, what happens when they raise."""

import threading

import pytest

import metafed


def one_domain(*handlers, isolated=False):
    t = metafed.Topology()
    d = t.add_domain("D")
    for i, h in enumerate(handlers):
        t.add_agent(d, f"a{i}", h, isolated=isolated)
    return t


def test_handlers_see_the_request_and_return_values():
    seen = []

    def fail(req):
        raise metafed.AgentError(1)

    def h(req):
        seen.append((req.task_id, req.payload, req.data, req.domain, req.agent, req.attempt, req.fanout, req.priority))
        seen.append((req.ticket, req.timeout))
        return req.payload + 1

    # Every field a different value: domain 3 (after three of one agent each), agent 5 (the
    # third of its domain), attempt 2, fan-out 1, priority 0.
    t = metafed.Topology()
    for name in ("A", "B", "C"):
        t.add_agent(t.add_domain(name), name.lower(), lambda req: 0)
    d = t.add_domain("D")
    for i, fn in enumerate((fail, fail, h)):
        t.add_agent(d, f"d{i}", fn)
    t.disable_breakers()
    t.set_timeouts(agent_ms=3_000, domain_ms=10_000, task_ms=20_000)
    with metafed.Engine(t) as e:
        c = e.submit(9, "D", payload=41, data=b"xyz").result(timeout=30)
    assert c.ok and c.value == 42
    assert seen[0] == (9, 41, b"xyz", 3, 5, 2, 1, 0)
    ticket, timeout = seen[1]
    assert ticket == c.ticket and 0 < timeout <= 3.0, seen[1]


def test_an_exception_is_an_agent_failure_with_its_message_kept():
    def bad(req):
        raise RuntimeError(f"broken on {req.task_id}")

    def good(req):
        return 5

    with metafed.Engine(one_domain(bad, good)) as e:
        done = [e.submit(i, "D").result(timeout=30) for i in range(6)]
    assert all(c.ok for c in done), "failover to the good agent"
    raised = [f for c in done for f in c.failures]
    assert raised, "the bad agent was tried"
    for f in raised:
        assert f.kind == metafed.FailureKind.RAISED
        assert f.message is not None and f.message.startswith("RuntimeError: broken on")


def test_agent_error_codes_and_exhaustion():
    def code(req):
        raise metafed.AgentError(400 + req.attempt)

    t = one_domain(code, code)
    t.disable_breakers()
    with metafed.Engine(t) as e:
        c = e.submit(1, 0).result(timeout=30)
    assert c.outcome == metafed.Outcome.FAILED and c.reason == metafed.Reason.AGENTS_EXHAUSTED
    assert sorted(f.code for f in c.failures) == [400, 401]
    assert sorted(f.agent for f in c.failures) == [0, 1] and c.failures_total == 2
    assert [f.attempt for f in c.failures] == [0, 1] and {f.domain for f in c.failures} == {0}
    assert all(f.kind == metafed.FailureKind.ERROR and f.message is None for f in c.failures)


def test_an_isolated_handler_that_blocks_stalls_nothing_else():
    gate = threading.Event()

    def hung(req):
        gate.wait()
        return 0

    t = metafed.Topology()
    d = t.add_domain("D")
    t.add_agent(d, "hung", hung, isolated=True)
    t.add_agent(d, "ok", lambda req: 1)
    with metafed.Engine(t) as e:
        done = [e.submit(i, d).result(timeout=30) for i in range(20)]
        gate.set()
    assert all(c.ok for c in done)
    assert any(f.kind == metafed.FailureKind.ABANDONED for c in done for f in c.failures)


def test_handlers_run_on_engine_threads_not_the_callers():
    threads = set()

    def h(req):
        threads.add(threading.get_ident())
        return 0

    with metafed.Engine(one_domain(h, h, h), workers=2) as e:
        r = e.run_many(range(20_000), 0)
    assert r.ok == 20_000
    assert threading.get_ident() not in threads, "handlers run on engine threads"
