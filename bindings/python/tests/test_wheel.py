"""The package as a user installs it: a wheel that carries the library, installed into a fresh
venv, used from a directory outside the repository with no METAFED_LIBRARY."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys, metafed
path = metafed.library_path()
assert path.startswith(sys.prefix), (path, sys.prefix)
topology = metafed.Topology.seed(0.12)
with metafed.Engine(topology) as engine:
    batch = engine.run_many(range(2_000), "API")
    done = engine.submit(7, "Auth").result()
assert metafed._native.OUT_OF_LINE, "the installed package parses its C declarations at import"
print("ok", batch.ok, done.outcome.name, path)
"""


def test_the_wheel_carries_the_library_and_works_in_a_fresh_venv(tmp_path: Path) -> None:
    try:
        import venv  # noqa: F401
    except ImportError:
        pytest.skip("python3 -m venv is unavailable")
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(PACKAGE)], check=True
    )
    (wheel,) = dist.glob("metafed-*.whl")
    # Version-independent Python code, a platform's native library.
    assert wheel.name.startswith("metafed-0.1.0-py3-none-linux_"), wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert "metafed/libmetafed.so" in names and "metafed/_cdef.h" in names, names
    assert "metafed/_ffi.py" in names, names  # the declarations parsed at build time
    # Building from the clone leaves nothing in it (setuptools works under target/).
    litter = [p.name for p in PACKAGE.iterdir() if p.name == "build" or p.name.endswith(".egg-info")]
    assert not litter, f"the build left {litter} in {PACKAGE}"

    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True)

    env = {k: v for k, v in os.environ.items() if k not in ("METAFED_LIBRARY", "PYTHONPATH")}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run(
        [str(python), "-c", SCRIPT], cwd=elsewhere, env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    assert out[0] == "ok" and int(out[1]) > 1_900 and out[2] == "OK", out
    assert out[3].startswith(str(env_dir)), out
