"""Operating an engine from Python: metrics (parsed by prometheus_client, and re-exposed through
an application's registry), health, the admin endpoint over urllib, the audit trail with
acting_as, and breaker events on the `metafed` logger."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

import pytest

import metafed
from metafed import BreakerMode, Engine, HealthStatus, Level, Topology

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def seed_engine() -> Engine:
    t = Topology.seed(agent_error=0.12)
    t.disable_breakers()
    return Engine(t, workers=2)


def test_metrics_parse_and_agree_with_stats() -> None:
    with seed_engine() as engine:
        engine.run_many(range(3000), "API")
        families = {f.name: f for f in text_string_to_metric_families(engine.metrics_text())}
        stats = engine.stats()
        admitted = families["metafed_tasks_admitted"]
        assert admitted.type == "counter"
        assert admitted.samples[0].value == 3000
        ok = [s for s in families["metafed_tasks_completed"].samples if s.labels == {"outcome": "ok", "reason": "none"}]
        assert ok[0].value == stats.ok
        hist = families["metafed_task_latency_seconds"]
        assert hist.type == "histogram"
        count = [s for s in hist.samples if s.name.endswith("_count")]
        assert count[0].value == 3000
        state = families["metafed_breaker_state"]
        assert {s.labels["level"] for s in state.samples} == {"meta", "domain", "agent"}
        assert engine.metrics_text(openmetrics=True).endswith("# EOF\n")
        with pytest.raises(TypeError):
            engine.metrics_text(openmetrics=1)  # type: ignore[arg-type]


def test_an_application_registry_includes_the_engine() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from metafed.prometheus import EngineCollector

    registry = CollectorRegistry()
    engine = seed_engine()
    try:
        registry.register(EngineCollector(engine))
        engine.run_many(range(500), "Auth")
        text = generate_latest(registry).decode()
        assert "metafed_tasks_admitted_total 500.0" in text
        assert 'metafed_agent_attempts_total{agent="JWT",domain="Auth"}' in text
    finally:
        engine.close()
    assert "metafed_" not in generate_latest(registry).decode()


def test_health_and_the_reliability_monitor() -> None:
    with seed_engine() as engine:
        engine.run_many(range(500), "Database")
        h = engine.health()
        assert h.status is HealthStatus.HEALTHY and h.lifecycle == "running" and h.reasons == []
        db = h.reliability[1]
        assert (db.domain, db.finished) == ("Database", 500)
        engine.set_domain_down("Database")
        engine.run_many(range(500, 1000), "Database")
        h = engine.health()
        assert h.status is HealthStatus.DEGRADED
        assert h.reliability[1].below_prediction
        assert any("below the predicted" in r for r in h.reasons)
        engine.shutdown()
        h = engine.health()
        assert h.status is HealthStatus.UNHEALTHY and "engine stopped" in h.reasons


def _get(url: str, token: str | None = None) -> tuple[int, str, str]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def test_the_admin_endpoint() -> None:
    with seed_engine() as engine:
        port = engine.serve_admin("127.0.0.1:0", token="t0k")
        base = f"http://127.0.0.1:{port}"
        engine.run_many(range(1000), "API")
        assert _get(base + "/metrics")[0] == 401
        code, ctype, text = _get(base + "/metrics", "t0k")
        assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
        names = {f.name for f in text_string_to_metric_families(text)}
        assert "metafed_tasks_admitted" in names
        code, ctype, body = _get(base + "/health", "t0k")
        assert (code, ctype) == (200, "application/json")
        assert json.loads(body)["status"] == "healthy"
        assert _get(base + "/ready", "t0k")[0] == 200
        assert _get(base + "/nothing", "t0k")[0] == 404
        with pytest.raises(metafed.ConfigError, match="already listens"):
            engine.serve_admin("127.0.0.1:0")
        engine.stop_admin()
        with pytest.raises(metafed.InvalidArgument, match="not running"):
            engine.stop_admin()
        with pytest.raises(metafed.ConfigError, match="admin address"):
            engine.serve_admin("nonsense")
        with pytest.raises(TypeError):
            engine.serve_admin(9464)  # type: ignore[arg-type]


def test_audit_trail_and_events_on_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="metafed")
    engine = seed_engine()
    with metafed.acting_as("alice", "INC-42"):
        engine.set_breaker_mode(Level.AGENT, 1, BreakerMode.FORCED_OPEN)
        with metafed.acting_as("bot"):
            engine.set_agent_in_rotation(4, False)
        engine.set_breaker_mode(Level.AGENT, 1, BreakerMode.NORMAL)
    engine.set_domain_down("Auth", True)
    log = engine.audit_log()
    assert [(r.actor, r.action) for r in log] == [
        ("alice", "breaker_mode"),
        ("bot", "agent_rotation"),
        ("alice", "breaker_mode"),
        ("unknown", "domain_down"),
    ]
    assert (log[0].target, log[0].from_, log[0].to, log[0].reason) == ("agent API/GraphQL", "disabled", "forced_open", "INC-42")
    assert (log[1].target, log[1].from_, log[1].to) == ("agent Database/NoSQL", "in", "out")
    assert [r.seq for r in engine.audit_log(after=2)] == [3, 4]
    engine.close()  # the completion thread logs what is left before it ends
    opened = [r for r in caplog.records if getattr(r, "breaker", None) == "agent API/GraphQL" and r.to_state == "open"]
    assert opened and opened[0].levelno == logging.INFO and opened[0].cause == "forced"
    actions = [r for r in caplog.records if getattr(r, "audit", False)]
    assert [r.actor for r in actions] == ["alice", "bot", "alice", "unknown"]
    with pytest.raises(TypeError):
        with metafed.acting_as(""):
            pass


def test_live_settings() -> None:
    with seed_engine() as engine:
        with metafed.acting_as("ops"):
            engine.set_rate_limit(1 / 60)
        result = engine.run_many(range(20), "API")
        assert result.rejected >= 18
        engine.set_rate_limit(0)
        assert engine.run_many(range(20, 40), "API").ok >= 19
        with pytest.raises(metafed.ConfigError, match="per_s"):
            engine.set_rate_limit(-1)
        with pytest.raises(metafed.ConfigError, match="not added or removed"):
            engine.set_agent_max_concurrency(0, 4)
        with pytest.raises(metafed.InvalidArgument):
            engine.set_agent_max_concurrency(0, 0)
        assert [(r.actor, r.action, r.to) for r in engine.audit_log()][:2] == [
            ("ops", "rate_limit", "0.016666666666666666/s, burst 1"),
            ("unknown", "rate_limit", "none"),
        ]


def test_admission_settings_change_while_running() -> None:
    with seed_engine() as engine:
        before = engine.admission()
        assert before["max_concurrent"] == 0 and len(before["priority_reserve"]) == 4
        assert before["queue_timeout_ms"] == 0
        engine.set_admission(max_concurrent=8, queue_capacity=16, priority_reserve=[0, 0, 0.1, 0.2], queue_timeout_ms=250)
        after = engine.admission()
        assert (after["max_concurrent"], after["queue_capacity"], after["queue_timeout_ms"]) == (8, 16, 250)
        assert after["priority_reserve"] == (0, 0, 0.1, 0.2)
        assert after["rate_limit_per_s"] == before["rate_limit_per_s"]
        # 200 at once against 8 past the throttle and 16 waiting per worker: the rest throttled.
        burst = engine.run_many(range(200), "API")
        assert burst.ok >= 8 and burst.rejected > 0 and burst.ok + burst.rejected == 200
        with pytest.raises(metafed.ConfigError, match="essential_priority"):
            engine.set_admission(essential_priority=7)
        with pytest.raises(TypeError, match="unexpected setting 'throttle'"):
            engine.set_admission(throttle=3)
        with pytest.raises(ValueError, match="4 shares"):
            engine.set_admission(priority_reserve=[0.1])
        assert engine.admission()["essential_priority"] == before["essential_priority"]
        engine.set_admission(max_concurrent=0)
        assert engine.run_many(range(200, 400), "API").ok > 150
        assert [r.action for r in engine.audit_log()] == [
            "max_concurrent", "queue_capacity", "priority_reserve", "queue_timeout", "max_concurrent"
        ]


def test_breaker_settings_change_while_running() -> None:
    with seed_engine() as engine:
        before = engine.breaker_config(metafed.Level.AGENT)
        assert before["timeout_ms"] == 50.0 and before["consecutive_failures"] == 3
        assert isinstance(before["mode"], metafed.BreakerMode)
        engine.set_breaker(metafed.Level.AGENT, consecutive_failures=6, timeout_ms=40.0)
        after = engine.breaker_config(metafed.Level.AGENT)
        assert (after["consecutive_failures"], after["timeout_ms"], after["min_calls"]) == (6, 40.0, before["min_calls"])
        assert engine.run_many(range(200), "API").ok > 150
        with pytest.raises(metafed.InvalidArgument, match="half_open_probes"):
            engine.set_breaker(metafed.Level.DOMAIN, half_open_probes=0)
        with pytest.raises(TypeError, match="unknown breaker setting 'timeout'"):
            engine.set_breaker(metafed.Level.DOMAIN, timeout=1.0)
        assert engine.audit_log()[-1].action == "breaker_config"


def test_an_agent_marked_down_is_failed_over() -> None:
    with seed_engine() as engine:
        engine.set_agent_down(0)
        result = engine.run_many(range(300), "API")
        assert result.ok > 250
        assert engine.stats().agents[0].failures > 0
        engine.set_agent_down(0, False)
        with pytest.raises(metafed.InvalidArgument):
            engine.set_agent_down(999)
        with pytest.raises(TypeError):
            engine.set_agent_down(0, 1)  # type: ignore[arg-type]
        assert [r.action for r in engine.audit_log()][-2:] == ["agent_down", "agent_down"]


def test_agents_are_added_weighted_and_removed_while_running() -> None:
    calls = {"new": 0}

    def new_agent(req: metafed.Request) -> int:
        calls["new"] += 1
        return 1

    with seed_engine() as engine:
        before = len(engine.stats().agents)
        with metafed.acting_as("ops", "migration"):
            a = engine.add_agent("API", "Edge", new_agent, weight=3)
        assert a == before
        assert engine.agent_weight(a) == 3
        assert engine.run_many(range(300), "API").done == 300
        assert calls["new"] > 0
        stats = engine.stats().agents
        assert stats[a].name == "Edge" and stats[a].weight == 3 and stats[a].in_rotation and not stats[a].removed
        engine.set_agent_weight(a, 1)
        with pytest.raises(metafed.ConfigError, match="weight must be 1 to 100"):
            engine.set_agent_weight(a, 0)
        with pytest.raises(metafed.ConfigError, match="already has an agent named"):
            engine.add_agent("API", "Edge", new_agent)
        with pytest.raises(metafed.UnknownDomain):
            engine.add_agent(42, "X", new_agent)
        engine.remove_agent(a)
        with pytest.raises(metafed.InvalidArgument, match="was removed"):
            engine.remove_agent(a)
        seen = calls["new"]
        assert engine.run_many(range(300, 600), "API").done == 300
        assert calls["new"] == seen
        stats = engine.stats().agents
        assert stats[a].removed and not stats[a].in_rotation
        assert engine.add_agent(0, "Sim", sim=metafed.SimAgent(error_rate=0.0)) == a + 1
        actions = [(r.actor, r.action, r.target) for r in engine.audit_log()]
        assert actions[:2] == [("ops", "agent_added", "agent API/Edge"), ("unknown", "agent_weight", "agent API/Edge")]
        assert ("unknown", "agent_removed", "agent API/Edge") in actions


def test_domains_are_added_and_removed_while_running() -> None:
    with seed_engine() as engine:
        geo = engine.add_domain("Geo")
        assert geo == 3
        engine.add_agent("Geo", "Maps", sim=metafed.SimAgent(error_rate=0.0))
        assert engine.run_many(range(100), "Geo").ok == 100
        assert engine.run_many(range(100, 200), "Geo").done == 100
        stats = engine.stats()
        assert stats.domains[geo].name == "Geo" and stats.domains[geo].subtasks == 200
        with pytest.raises(metafed.ConfigError, match="already a domain named"):
            engine.add_domain("API")
        engine.remove_domain("Auth")
        with pytest.raises(metafed.UnknownDomain):
            engine.run_many(range(1), "Auth")
        with pytest.raises(metafed.UnknownDomain):
            engine.remove_domain(2)
        assert [r.action for r in engine.audit_log()][:2] == ["domain_added", "agent_added"]


def test_a_domain_name_added_again_after_its_removal_is_the_new_domain() -> None:
    with seed_engine() as engine:
        engine.remove_domain("Auth")
        auth = engine.add_domain("Auth")
        assert auth == 3
        engine.add_agent("Auth", "JWT", sim=metafed.SimAgent(error_rate=0.0))
        assert engine.run_many(range(50), "Auth").ok == 50
        topology = metafed.Topology()
        d = topology.add_domain("D")
        with pytest.raises(metafed.InvalidArgument, match="weight must be 1 to 100, got 0"):
            topology.add_agent(d, "A", sim=metafed.SimAgent(), weight=0)
        assert topology.add_agent(d, "A", sim=metafed.SimAgent(), weight=3) == 0


def test_spare_ids_bound_what_can_be_added_while_running() -> None:
    t = Topology.seed(agent_error=0.0)
    with Engine(t, workers=1, spare_agents=1, spare_domains=1) as engine:
        engine.add_domain("Geo")
        with pytest.raises(metafed.ConfigError, match="spare_domains = 1"):
            engine.add_domain("Maps")
        engine.add_agent("Geo", "A", sim=metafed.SimAgent())
        with pytest.raises(metafed.ConfigError, match="spare_agents = 1"):
            engine.add_agent("Geo", "B", sim=metafed.SimAgent())
        assert engine.run_many(range(10), "Geo").ok == 10
    with pytest.raises(metafed.ConfigError, match="spare_agents must be at most 4096"):
        Engine(t, spare_agents=5000)


def test_slow_calls_trip_an_agent_breaker_by_their_rate(caplog: pytest.LogCaptureFixture) -> None:
    """resilience4j's slow-call rate over a count window: an agent whose calls all succeed, but
    slowly, leaves rotation; its fast peer takes the work and never trips."""
    import time

    caplog.set_level(logging.INFO, logger="metafed")
    t = Topology()
    d = t.add_domain("D")

    def slow_handler(request: metafed.Request) -> bytes:
        time.sleep(0.03)
        return b"slow"

    slow = t.add_agent(d, "slow", slow_handler)
    fast = t.add_agent(d, "fast", lambda request: b"fast")
    t.set_breaker(Level.AGENT, timeout_ms=1000.0, consecutive_failures=0, failure_rate=0.0, count_window=10,
                  min_calls=5, slow_call_duration_ms=20.0, slow_call_rate=0.5)
    with Engine(t, workers=1) as engine:
        cfg = engine.breaker_config(Level.AGENT)
        assert (cfg["count_window"], cfg["slow_call_duration_ms"], cfg["slow_call_rate"]) == (10, 20.0, 0.5)
        result = engine.run_many(range(60), "D")
        assert result.ok == 60
        stats = engine.stats()
        assert stats.agents[slow].trips >= 1 and stats.agents[fast].trips == 0
        with pytest.raises(metafed.InvalidArgument, match="slow_call_duration"):
            engine.set_breaker(Level.AGENT, slow_call_duration_ms=0.0)
        with pytest.raises(TypeError, match="count_window must be int"):
            engine.set_breaker(Level.AGENT, count_window=2.5)
    tripped = [r for r in caplog.records if getattr(r, "breaker", None) == "agent D/slow" and r.to_state == "open"]
    assert tripped and tripped[0].cause == "slow_call_rate"


def test_a_domain_balanced_by_peak_ewma_avoids_its_slow_agent() -> None:
    """W6 on one domain: three simulated I/O agents of 1 ms, one 10 ms on 30% of its calls.
    Round-robin gives it a third of the calls; peak EWMA, set while the engine runs, much less."""
    t = Topology()
    d = t.add_domain("D")
    for i, name in enumerate(("a", "b", "slow")):
        sim = metafed.SimAgent(latency_us=1000.0, io=True, seed=i + 1)
        if name == "slow":
            sim = metafed.SimAgent(latency_us=1000.0, latency="long_tail", slow_us=10_000.0, slow_rate=0.3, io=True, seed=3)
        t.add_agent(d, name, sim=sim)
    with pytest.raises(metafed.InvalidArgument, match="long_tail"):
        t.add_agent(d, "x", sim=metafed.SimAgent(slow_us=5.0, slow_rate=0.1))
    t.disable_breakers()
    t.set_balance("D", metafed.Balance())
    with pytest.raises(TypeError, match="metafed.Balance"):
        t.set_balance("D", "peak_ewma")  # type: ignore[arg-type]
    with Engine(t, workers=2) as engine:
        assert engine.balance("D") == metafed.Balance()

        def slow_share(first: int) -> float:
            before = [a.calls for a in engine.stats().agents]
            result = engine.run_many(range(first, first + 2000), "D", in_flight=16)
            assert result.ok == 2000
            calls = [a.calls - b for a, b in zip(engine.stats().agents, before)]
            return calls[2] / sum(calls)

        assert 0.30 < slow_share(0) < 0.37
        with metafed.acting_as("test", "W6"):
            engine.set_balance("D", metafed.Balance.peak_ewma())
        assert engine.balance(d) == metafed.Balance("peak_ewma", 10_000.0, 30.0)
        assert slow_share(2000) < 0.15
        assert engine.audit_log()[-1].action == "domain_balance"
        with pytest.raises(ValueError, match="kind"):
            metafed.Balance("least_loaded")
        with pytest.raises(ValueError, match="decay_ms"):
            metafed.Balance.peak_ewma(decay_ms=0)
        with pytest.raises(metafed.UnknownDomain):
            engine.set_balance(7, metafed.Balance())


def test_outlier_detection_ejects_an_always_failing_agent() -> None:
    t = Topology()
    d = t.add_domain("D")
    t.add_agent(d, "good", sim=metafed.SimAgent())
    t.add_agent(d, "broken", sim=metafed.SimAgent(error_rate=1.0))
    # Agent breakers with no trigger of their own: only outlier detection takes an agent out.
    t.set_breaker(Level.AGENT, consecutive_failures=0, failure_rate=0.0)
    t.set_outlier("D", metafed.Outlier())
    with pytest.raises(TypeError, match="metafed.Outlier"):
        t.set_outlier("D", {"consecutive_failures": 5})  # type: ignore[arg-type]
    with Engine(t, workers=1) as engine:
        assert engine.outlier("D") == metafed.Outlier()
        assert engine.run_many(range(200), "D", in_flight=1).ok == 200
        broken = engine.stats().agents[1]
        assert broken.ejections == 1 and broken.calls < 20
        with pytest.raises(metafed.InvalidArgument, match="latency_factor"):
            engine.set_outlier("D", metafed.Outlier(latency_factor=0.5))
        engine.set_outlier("D", metafed.Outlier(latency_factor=3.0, min_samples=5))
        assert engine.outlier("D") == metafed.Outlier(latency_factor=3.0, min_samples=5)
        engine.set_outlier("D", None)
        assert engine.outlier("D") is None
        assert [r.action for r in engine.audit_log()][-2:] == ["domain_outlier", "domain_outlier"]
    with pytest.raises(TypeError, match="min_calls must be int"):
        metafed.Outlier(min_calls=2.5)  # type: ignore[arg-type]


def test_adaptive_shedding_rejects_with_its_own_reason() -> None:
    """A domain whose only agent takes 4 attempts at once (20 ms each) and a burst of 100: with a
    wait queue of 8 the rest are rejected at once as DOMAIN_OVERLOADED, and counted."""
    t = Topology()
    d = t.add_domain("D")
    t.add_agent(d, "a", sim=metafed.SimAgent(latency_us=20_000.0, io=True), max_concurrency=4)
    t.disable_breakers()
    t.set_shedding("D", metafed.Shedding(queue_capacity=8))
    with Engine(t, workers=1) as engine:
        assert engine.shedding("D") == metafed.Shedding(5.0, 100.0, 8)
        result = engine.run_many(range(100), "D", in_flight=100, outcomes=True)
        stats = engine.stats()
        assert result.ok >= 12 and result.rejected >= 50
        assert stats.reasons.get(metafed.Reason.DOMAIN_OVERLOADED) == result.rejected
        engine.set_shedding("D", None)
        assert engine.shedding("D") is None
        with pytest.raises(TypeError, match="metafed.Shedding"):
            engine.set_shedding("D", 5.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target_ms"):
        metafed.Shedding(target_ms=0)


def test_keyed_rate_limits_per_tenant() -> None:
    """A tenant's key holds it to its class's quota; another tenant is not affected; the quotas
    change while the engine runs."""
    limits = {"capacity": 1024, "default_per_s": 0.001, "default_burst": 2,
              "classes": [{"name": "gold", "per_s": 0.001, "burst": 5, "keys": ["acme"]}]}
    with Engine(Topology.seed(0.0), workers=1, keyed_limits=limits) as engine:
        acme = [engine.submit(i, "API", key="acme").result(5) for i in range(8)]
        assert [c.ok for c in acme] == [True] * 5 + [False] * 3
        assert all(c.reason == metafed.Reason.RATE_LIMITED for c in acme[5:])
        other = [engine.submit(i, "API", key="globex").result(5) for i in range(3)]
        assert [c.ok for c in other] == [True, True, False]
        assert engine.submit(99, "API").result(5).ok, "a task without a key is not limited"
        assert engine.submit(100, "API", key=metafed.key_of("acme")).result(5).reason == metafed.Reason.RATE_LIMITED
        stats = engine.keyed_stats()
        assert stats is not None and stats["tracked"] == 2
        assert ["gold", 5, 4] in stats["classes"]
        engine.set_keyed_limits({**limits, "classes": [{"name": "gold", "per_s": 0.001, "burst": 50, "keys": ["acme"]}]})
        assert engine.submit(101, "API", key="acme").result(5).ok
        with pytest.raises(metafed.ConfigError, match="burst"):
            engine.set_keyed_limits({**limits, "default_burst": 0})
        with pytest.raises(TypeError, match="key must be"):
            engine.submit(1, "API", key=1.5)  # type: ignore[call-overload]
    with pytest.raises(metafed.ConfigError, match="capacity"):
        Engine(Topology.seed(0.0), keyed_limits={"capacity": 0})
    assert metafed.key_of("acme") == metafed.key_of("acme") != metafed.key_of("globex")


def test_an_adaptive_throttle_starts_at_its_initial_limit() -> None:
    with Engine(Topology.seed(0.0), workers=1, adaptive_throttle={"initial_limit": 40, "min_limit": 8, "max_limit": 400, "target_latency": 20.0}) as engine:
        assert engine.admission()["max_concurrent"] == 40
        assert engine.run_many(range(2000), "API").ok == 2000
    with pytest.raises(metafed.ConfigError, match="initial_limit"):
        Engine(Topology.seed(0.0), adaptive_throttle={"initial_limit": 4, "min_limit": 8})


def test_admission_and_breaker_settings_are_typed_values() -> None:
    import dataclasses

    with seed_engine() as engine:
        a = engine.admission()
        assert isinstance(a, metafed.Admission)
        # Read as the dicts they were, and changed as values.
        assert a["max_concurrent"] == a.max_concurrent == 0 and a.get("nothing", 7) == 7 and "min_cost" in a
        assert dict(a.items())["queue_capacity"] == a.queue_capacity
        engine.set_admission(dataclasses.replace(a, max_concurrent=12, queue_timeout_ms=30.0))
        b = engine.admission()
        assert (b.max_concurrent, b.queue_timeout_ms, b.queue_capacity) == (12, 30.0, a.queue_capacity)
        engine.set_admission(b, max_concurrent=0)  # a value, then keywords over it
        assert engine.admission() == dataclasses.replace(b, max_concurrent=0)
        with pytest.raises(TypeError, match="metafed.Admission"):
            engine.set_admission({"max_concurrent": 3})  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="max_concurrent must be int"):
            metafed.Admission(max_concurrent=1.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="4 shares"):
            metafed.Admission(priority_reserve=(0.1,))  # type: ignore[arg-type]
        with pytest.raises(KeyError):
            a["throttle"]

        br = engine.breaker_config(metafed.Level.DOMAIN)
        assert isinstance(br, metafed.BreakerSettings) and isinstance(br.mode, metafed.BreakerMode)
        engine.set_breaker(metafed.Level.DOMAIN, dataclasses.replace(br, failure_rate=0.75, open_base_ms=200.0))
        after = engine.breaker_config(metafed.Level.DOMAIN)
        assert (after.failure_rate, after.open_base_ms, after.min_calls) == (0.75, 200.0, br.min_calls)
        with pytest.raises(TypeError, match="metafed.BreakerSettings"):
            engine.set_breaker(metafed.Level.DOMAIN, dict(br.items()))  # type: ignore[arg-type]
        assert engine.run_many(range(100), "API").ok > 80

    # A topology takes the same value.
    t = metafed.Topology.seed(0.0)
    with metafed.Engine(t) as first:
        agent = first.breaker_config(metafed.Level.AGENT)
    t.set_breaker(metafed.Level.AGENT, dataclasses.replace(agent, consecutive_failures=9))
    with metafed.Engine(t) as second:
        assert second.breaker_config(metafed.Level.AGENT) == dataclasses.replace(agent, consecutive_failures=9)


def test_the_version_is_written_once() -> None:
    import importlib.metadata

    assert importlib.metadata.version("metafed") == metafed.__version__
