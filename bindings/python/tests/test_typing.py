"""`mypy --strict` accepts code written as docs/python.md and the example write it (the package
ships py.typed and precise signatures)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

USER_SCRIPT = '''
import asyncio
import metafed

topology = metafed.Topology()
api = topology.add_domain("API")
topology.add_agent(api, "REST", lambda req: req.payload * 2)
topology.add_agent(api, "Sim", metafed.SimAgent(error_rate=0.12))

async def rest(req: metafed.Request) -> tuple[int, bytes]:
    await asyncio.sleep(0)
    return 1, b"body"

topology.add_agent(api, "Async", rest, max_concurrency=8)

with metafed.Engine(topology, workers=2) as engine:
    ticket: metafed.Ticket = engine.submit(1, "API", payload=21)
    done: metafed.Completion = ticket.result()
    number: int = engine.submit(2, "API", track=False)
    polled: list[metafed.Completion] = engine.poll(timeout=1.0)
    batch = engine.run_many(range(1000), "API")
    rate: float = batch.tasks_per_s

    async def main() -> metafed.Completion:
        return await engine.run(3, "API")

    same = asyncio.run(main())
    print(done.outcome, done.body, number, polled, rate, same.ok, engine.stats().domains[0].name)
'''


@pytest.mark.skipif(shutil.which("mypy") is None and not (Path(sys.executable).parent / "mypy").exists(), reason="mypy not installed")
def test_mypy_strict_accepts_the_documented_usage(tmp_path):
    script = tmp_path / "user.py"
    script.write_text(USER_SCRIPT)
    example = ROOT / "examples" / "python" / "federation.py"
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(script), str(example)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("mypy") is None and not (Path(sys.executable).parent / "mypy").exists(), reason="mypy not installed")
def test_the_package_itself_passes_mypy_strict():
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "metafed"],
        capture_output=True,
        text=True,
        cwd=ROOT / "bindings" / "python",
    )
    assert r.returncode == 0, r.stdout + r.stderr
