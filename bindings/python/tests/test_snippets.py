"""The README's Python example runs as shown and prints what it says it prints."""

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[3] / "docs" / "python.md"


def python_example() -> str:
    text = README.read_text()
    section = text[text.index("## Using it from Python") :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("```\n", start)]


def test_the_readme_python_example_runs_as_shown(tmp_path: Path) -> None:
    code = python_example()
    assert "metafed.Engine(topology)" in code  # the example this test is about
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, check=True, capture_output=True, text=True, timeout=300
    ).stdout.split()
    # print(done.outcome, done.body, batch.ok, same.ok, engine.stats().latency_p99_ns)
    assert out[0] == "OK", out
    assert int(out[-3]) > 90_000 and out[-2] == "True" and int(out[-1]) > 0, out
