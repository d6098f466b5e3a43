"""Build hook: records where this repository's Rust library is built, so that an installed
package finds `target/release/libmetafed.so` without METAFED_LIBRARY. The package stays pure
Python (no compiled extension); the library is loaded at run time with cffi in ABI mode."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    def run(self):
        super().run()
        repo_target = (Path(__file__).resolve().parent / ".." / ".." / "target" / "release").resolve()
        out = Path(self.build_lib) / "metafed" / "_location.py"
        out.write_text(f"# Written at install time by setup.py.\nREPO_TARGET = {str(repo_target)!r}\n")


setup(cmdclass={"build_py": BuildPy})
