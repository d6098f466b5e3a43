"""The Python twin's tests: it runs against `metafed-federation --serve` for a few seconds and
checks what the Rust application's own test checks (exactly once, faults contained at their
level, broken agents absorbed by their domains, bad input refused by name)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

TWIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "twin.py")


def run(*args: str) -> dict[str, Any]:
    p = subprocess.run([sys.executable, TWIN, "--json", "-q", *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    report: dict[str, Any] = json.loads(p.stdout)
    return report


def exactly_once(r: dict[str, Any]) -> None:
    run = r["run"]
    assert run["submitted"] == int(run["seconds"] * run["rate"])
    assert run["completed"] == run["submitted"] == run["engine_completed"]
    assert run["completed_twice"] == 0 and run["never_completed"] == 0


def test_scheduled_faults_are_contained_at_their_level() -> None:
    r = run("--seconds", "12", "--rate", "250", "--on", "0.3",
            "--faults", "http-down,rest-reset,sql-lock,jwt-keys,introspect-blackhole")  # fmt: skip
    exactly_once(r)
    faults = {f["fault"]: f for f in r["faults"]}
    assert list(faults) == ["http-down", "rest-reset", "sql-lock", "jwt-keys", "introspect-blackhole"]
    for name in ["rest-reset", "sql-lock", "jwt-keys", "introspect-blackhole"]:
        f = faults[name]
        assert f["needing_tasks"] > 0 and f["contained_at"] == "agent", f
    # The expired key broke the JWT agent (its key set refreshed without the old key), and the
    # rotated tokens mended it.
    jwt_agent = next(a for a in r["agents"] if a["agent"] == "JWT")
    assert jwt_agent["failures"] > 0 and jwt_agent["calls"] > jwt_agent["failures"] + 50, jwt_agent
    down = faults["http-down"]
    # The whole HTTP service is down: tasks that need the API fail, the others do not ...
    assert down["contained_at"] == "domain", down
    assert down["needing_ok_percent"] < 50 and down["other_ok_percent"] >= 95, down
    # ... and the API answers again once the service is back.
    assert down["first_ok_after_s"] is not None and down["first_ok_after_s"] < 1.5, down


def test_broken_agents_are_absorbed_by_their_domains() -> None:
    r = run("--seconds", "5", "--rate", "250", "--break", "REST,SQL,JWT,OAuth")
    exactly_once(r)
    for k in r["kinds"]:
        assert k["ok_percent"] >= 95, k
    agents = {a["agent"]: a for a in r["agents"]}
    for name in ["REST", "SQL", "JWT", "OAuth"]:
        assert agents[name]["failures"] > 0 and agents[name]["trips"] > 0, agents[name]
    for name in ["GraphQL", "WebSocket", "NoSQL", "Cache", "RBAC"]:
        assert agents[name]["calls"] > 0 and agents[name]["failures"] == 0, agents[name]


def test_run_sh_runs_the_twin_in_one_command() -> None:
    # It makes (or reuses) target/twin-venv with the package and the clients, then runs the twin.
    run_sh = os.path.join(os.path.dirname(TWIN), "run.sh")
    p = subprocess.run([run_sh, "--seconds", "2", "--rate", "100", "--faults", "none", "--json", "-q"],
                       capture_output=True, text=True, timeout=900)  # fmt: skip
    assert p.returncode == 0, p.stderr
    exactly_once(json.loads(p.stdout))


@pytest.mark.parametrize(
    "args, says",
    [
        (["--break", "Cache"], "cache-stale"),  # the Rust agents' own cache: not shared
        (["--faults", "disk-full"], "unknown fault \"disk-full\""),
        (["--rate", "-3"], "--rate"),
        (["--on", "1.5"], "--on"),
    ],
)
def test_bad_arguments_are_refused_by_name(args: list[str], says: str) -> None:
    p = subprocess.run([sys.executable, TWIN, "-q", *args], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert says in p.stderr, p.stderr
