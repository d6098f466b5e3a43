"""W1 (WORKLOADS.md) with Python handlers, breakers disabled: the oracle's exact success count."""

import metafed
from conftest import oracle_fails

P = 0.12


def oracle_handler(req: metafed.Request) -> int:
    key = req.task_id * 4 + req.domain if req.fanout > 1 else req.task_id
    if oracle_fails(key, req.attempt, P):
        raise metafed.AgentError(1)
    return key


def topology() -> metafed.Topology:
    t = metafed.Topology()
    for name, agents in [("API", ["REST", "GraphQL", "WebSocket"]), ("Database", ["SQL", "NoSQL", "Cache"]), ("Auth", ["JWT", "OAuth", "RBAC"])]:
        d = t.add_domain(name)
        for a in agents:
            t.add_agent(d, a, oracle_handler)
    t.disable_breakers()
    return t


def test_w1_with_python_handlers_matches_the_oracle_exactly():
    n = 30_000
    expected = sum(1 for i in range(n) if not all(oracle_fails(i, a, P) for a in range(3)))
    with metafed.Engine(topology()) as engine:
        result = engine.run_many(range(n), [i % 3 for i in range(n)], outcomes=True)
    assert result.done == n
    assert result.ok == expected
    assert result.ok + result.failed == n
    assert [i for i, o in enumerate(result.outcomes) if o != 0] == [i for i in range(n) if all(oracle_fails(i, a, P) for a in range(3))]


def test_w1_through_futures_matches_too():
    n = 3_000
    expected = sum(1 for i in range(n) if not all(oracle_fails(i, a, P) for a in range(3)))
    with metafed.Engine(topology()) as engine:
        tickets = engine.submit_many(metafed.Task(i, i % 3) for i in range(n))
        done = [t.result(timeout=60) for t in tickets]
    assert sum(c.ok for c in done) == expected
    assert [c.id for c in done] == list(range(n))


def test_native_agents_in_bulk():
    n = 200_000
    with metafed.Engine(metafed.Topology.seed(P)) as engine:
        r = engine.run_many(range(n), "Database")
        s = engine.stats()
    expected = sum(1 for i in range(n) if not all(oracle_fails(i, a, P) for a in range(3)))
    assert (r.done, r.ok) == (n, expected)
    assert s.completed == n and s.ok == expected
    assert abs(s.predicted_success - (1 - P**3)) < 1e-12
