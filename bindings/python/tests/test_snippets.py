"""Every Python program of README.md and docs/*.md (each ```python block) runs as printed, each in
a fresh interpreter outside the repository: what a newcomer copies works."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def snippets() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for i, code in enumerate(re.findall(r"(?ms)^```python\n(.*?)^```$", doc.read_text()), 1):
            found.append((f"{doc.relative_to(ROOT)}#{i}", code))
    return found


def test_the_readme_has_a_python_program() -> None:
    assert any(name.startswith("README.md#") for name, _ in snippets())


@pytest.mark.parametrize(("name", "code"), snippets(), ids=[n for n, _ in snippets()])
def test_the_snippet_runs_as_printed(name: str, code: str, tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{name} failed:\n{run.stdout}\n{run.stderr}"
