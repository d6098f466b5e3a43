"""Cross-domain rerouting from Python: a domain's alternates take the sub-tasks that fail at it,
and the completion says which domain answered."""

from __future__ import annotations

import pytest

import metafed
from metafed import BreakerMode, Engine, Level, Outcome, Reason, Topology


def federation() -> Topology:
    """Primary (its agent always fails), Replica and Backup (theirs never do), no breakers."""
    t = Topology()
    for name, rate in (("Primary", 1.0), ("Replica", 0.0), ("Backup", 0.0)):
        d = t.add_domain(name)
        t.add_agent(d, name.lower(), metafed.SimAgent(error_rate=rate))
    t.disable_breakers()
    return t


def test_an_alternate_answers_for_a_failed_domain() -> None:
    t = federation()
    t.set_alternates("Primary", ["Replica"])
    with Engine(t, workers=1) as engine:
        replica = engine.domain_id("Replica")
        c = engine.submit(1, "Primary").result(timeout=30)
        assert (c.outcome, c.reason, c.answered, c.reroutes) == (Outcome.OK, Reason.NONE, frozenset({replica}), 1)
        assert [f.domain for f in c.failures] == [engine.domain_id("Primary")]
        stats = {d.name: d for d in engine.stats().domains}
        assert (stats["Primary"].failed, stats["Primary"].rerouted) == (1, 1)
        assert (stats["Replica"].ok, stats["Replica"].rerouted) == (1, 0)
        # A task that needs no rerouting answers from the domains it asked for.
        c = engine.submit(2, ["Replica", "Backup"]).result(timeout=30)
        assert (c.answered, c.reroutes) == (frozenset({replica, engine.domain_id("Backup")}), 0)


def test_alternates_change_live_in_order_and_are_audited() -> None:
    with Engine(federation(), workers=1) as engine:
        assert engine.alternates("Primary") == []
        assert engine.submit(1, "Primary").result(timeout=30).reason == Reason.AGENTS_EXHAUSTED
        engine.set_alternates("Primary", ["Replica", "Backup"])
        assert engine.alternates("Primary") == [engine.domain_id("Replica"), engine.domain_id("Backup")]
        record = engine.audit_log()[-1]
        assert (record.action, record.from_, record.to) == ("domain_alternates", "none", "Replica, Backup")
        engine.set_breaker_mode(Level.DOMAIN, engine.domain_id("Replica"), BreakerMode.FORCED_OPEN)
        c = engine.submit(2, "Primary").result(timeout=30)
        assert (c.ok, c.answered, c.reroutes) == (True, frozenset({engine.domain_id("Backup")}), 2)
        with pytest.raises(metafed.ConfigError, match="its own alternate"):
            engine.set_alternates("Primary", ["Primary"])
        with pytest.raises(TypeError, match="list of domain ids or names"):
            engine.set_alternates("Primary", "Replica")  # type: ignore[arg-type]
        engine.set_alternates("Primary", [])
        assert engine.submit(3, "Primary").result(timeout=30).outcome == Outcome.FAILED


def test_bad_alternates_are_refused_on_the_topology() -> None:
    t = federation()
    with pytest.raises(metafed.TopologyError, match="named twice"):
        t.set_alternates("Primary", ["Replica", "Replica"])
    with pytest.raises(metafed.UnknownDomain, match="Nowhere"):
        t.set_alternates("Primary", ["Nowhere"])
    with pytest.raises(metafed.InvalidArgument, match="at most 8"):
        t.set_alternates("Primary", ["Replica"] * 9)
    t.set_alternates("Primary", range(1, 3))  # any sequence of ids
    with Engine(t, workers=1) as engine:
        assert engine.alternates("Primary") == [1, 2]
