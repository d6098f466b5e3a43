"""The decision engine from Python: tasks that name no domain, routed by the [classify] rules or
a Python classifier; the completion reports the domains and the complexity."""

import pytest

import metafed
from metafed import Classification, ClassifyInput, Outcome, Reason

RULES = """
[classify]
base = 0.1
key_attr = "tenant"

[[classify.rules]]
attr = "path"
prefix = "/api/"
domains = ["API"]
weight = 0.2

[[classify.rules]]
data_contains = "SELECT"
domains = ["Database"]
weight = 0.3

[[classify.bands]]
up_to = 0.5
priority = 1
"""


def topology() -> metafed.Topology:
    t = metafed.Topology()
    for name in ("API", "Database", "Auth"):
        d = t.add_domain(name)
        t.add_agent(d, name.lower(), metafed.SimAgent())
    return t


def test_rules_route_a_task_by_its_attributes_and_bytes():
    t = topology()
    t.set_classify(RULES)
    with metafed.Engine(t) as engine:
        c = engine.submit(1, None, attrs={"path": "/api/orders"}, data=b"SELECT 1").result(timeout=30)
        assert c.outcome == Outcome.OK, c
        assert c.domains == frozenset({0, 1})
        assert c.complexity == pytest.approx(0.6, abs=1e-4)
        c = engine.submit(2, None, attrs=[("path", "/api/x")]).result(timeout=30)
        assert (c.outcome, c.domains, c.priority) == (Outcome.OK, frozenset({0}), 1)
        c = engine.submit(3, None, attrs={"path": "/static"}).result(timeout=30)
        assert (c.outcome, c.reason, c.domains) == (Outcome.REJECTED, Reason.UNCLASSIFIED, frozenset())
        # A task that names its domains is not classified.
        c = engine.submit(4, "Auth", attrs={"path": "/api/x"}).result(timeout=30)
        assert (c.domains, c.complexity) == (frozenset({2}), 0.0)
        tickets = engine.submit_many([metafed.Task(5, None, attrs={"path": "/api/y"}), metafed.Task(6, "API")])
        assert [f.result(timeout=30).outcome for f in tickets] == [Outcome.OK, Outcome.OK]
        engine.set_admission(max_cost=2.5, min_cost=0.2)
        assert (engine.admission()["max_cost"], engine.admission()["min_cost"]) == (2.5, 0.2)
        assert engine.submit(9, None, attrs={"path": "/api/z"}).result(timeout=30).ok
        with pytest.raises(metafed.ConfigError, match="min_cost"):
            engine.set_admission(min_cost=0)
        s = engine.stats()
        assert (s.classified, s.unclassified) == (4, 1)
        assert s.reasons[Reason.UNCLASSIFIED] == 1
        with pytest.raises(metafed.ConfigError, match="classify.base"):
            engine.set_classify("[classify]\nbase = 3\n")
        with pytest.raises(metafed.InvalidArgument, match="more than 16"):
            engine.submit(7, None, attrs={f"k{i}": "v" for i in range(17)})
        with pytest.raises(TypeError, match=r"attrs\[0\]"):
            engine.submit(8, None, attrs=[("path", 3)])


async def _run(engine, attrs):
    return await engine.run(9, None, attrs=attrs)


def test_a_python_classifier_routes_and_its_failures_reject():
    seen = []

    def classify(t: ClassifyInput) -> Classification:
        seen.append(t)
        tenant = t.attrs.get("tenant")
        if tenant == "acme":
            return Classification(["Database", "Auth"], complexity=0.9, priority=3)
        if tenant == "none":
            return Classification([], complexity=0.5)
        raise LookupError("unknown tenant")

    t = topology()
    t.set_classifier(classify)
    with metafed.Engine(t) as engine:
        c = engine.submit(1, None, attrs={"tenant": "acme"}, data=b"x", payload=7).result(timeout=30)
        assert (c.outcome, c.domains, c.priority) == (Outcome.OK, frozenset({1, 2}), 3)
        assert c.complexity == pytest.approx(0.9, abs=1e-4)
        assert (seen[0].id, seen[0].payload, seen[0].data, dict(seen[0].attrs)) == (1, 7, b"x", {"tenant": "acme"})
        for tenant in ("none", "initech"):
            c = engine.submit(2, None, attrs={"tenant": tenant}).result(timeout=30)
            assert (c.outcome, c.reason) == (Outcome.REJECTED, Reason.UNCLASSIFIED)
        import asyncio

        c = asyncio.run(_run(engine, {"tenant": "acme"}))
        assert c.ok
        # Replaced live by rules, then removed: tasks must name their domains.
        with pytest.raises(metafed.ConfigError, match="both given"):
            engine.set_classify(RULES)
        engine.set_classifier(None)
        engine.set_classify(RULES)
        assert engine.submit(3, None, attrs={"path": "/api/"}).result(timeout=30).domains == frozenset({0})
        engine.set_classify("")
        with pytest.raises(metafed.UnknownDomain, match="no classifier"):
            engine.submit(4, None)
        assert any(r.action == "classifier" for r in engine.audit_log())
