"""Build hooks: the wheel carries the Rust library.

`pip install ./bindings/python` and `python -m build bindings/python` run `cargo build --release -p
libmetafed` (the C library crate only) in the metafed workspace (the repository's, or the copy an
sdist carries) and put `libmetafed.so` inside the package, so the installed package works from any directory, in any
venv, after `cargo clean` or with the clone gone. The Python code stays version-independent (cffi
in ABI mode, no extension module), so the wheel is tagged `py3-none-<platform>`; the C declarations
are parsed at build time into `metafed/_ffi.py` (cffi's out-of-line ABI mode: a faster import).

Environment: `CARGO` (the cargo to run), `CARGO_TARGET_DIR` (honoured), `METAFED_SKIP_CARGO=1`
(copy an existing `target/release/libmetafed.so` without running cargo).
"""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
# The crate files an sdist carries so that a wheel can be built from it alone.
CRATE_FILES = ["Cargo.toml", "Cargo.lock", "build.rs", "README.md", "LICENSE-MIT", "LICENSE-APACHE"]
# The workspace members' sources (cargo reads every member's manifest, so each must be there).
CRATE_DIRS = ["src", "include", "bindings/c", "cli", "benches", "examples", "tests"]
SDIST_CRATE = "metafed-crate"


def crate_dir() -> Path:
    for candidate in (HERE.parent.parent, HERE / SDIST_CRATE):
        if (candidate / "Cargo.toml").is_file() and (candidate / "bindings" / "c" / "Cargo.toml").is_file():
            return candidate
    raise SystemExit(
        "metafed: cannot find the metafed crate (looked in ../../ and ./" + SDIST_CRATE + "). Build the "
        "package from a clone of the repository (pip install ./bindings/python) or from its sdist."
    )


def build_library() -> Path:
    crate = crate_dir()
    cargo = os.environ.get("CARGO", "cargo")
    manifest = str(crate / "Cargo.toml")
    if os.environ.get("METAFED_SKIP_CARGO") != "1":
        locked = ["--locked"] if (crate / "Cargo.lock").is_file() else []
        try:
            subprocess.run([cargo, "build", "--release", "-p", "libmetafed", *locked, "--manifest-path", manifest], check=True)
        except FileNotFoundError:
            raise SystemExit(
                "metafed: building the package needs Rust's cargo (https://rustup.rs), or set CARGO to its path"
            ) from None
    meta = subprocess.run(
        [cargo, "metadata", "--format-version", "1", "--no-deps", "--manifest-path", manifest],
        check=True,
        capture_output=True,
        text=True,
    )
    library = Path(json.loads(meta.stdout)["target_directory"]) / "release" / "libmetafed.so"
    if not library.is_file():
        raise SystemExit(f"metafed: cargo did not produce {library}")
    return library


def write_ffi_module(path: Path) -> None:
    """`metafed/_ffi.py`: the C declarations parsed once, at build time (cffi's out-of-line ABI
    mode), so that importing the installed package parses no C (the source checkout parses
    `_cdef.h` at import instead)."""
    import cffi

    cdef = (HERE / "metafed" / "_cdef.h").read_text()
    builder = cffi.FFI()
    builder.cdef(cdef)
    builder.set_source("metafed._ffi", None)
    builder.emit_python_code(str(path))
    # What it was made from: the package uses it only with that _cdef.h beside it.
    with path.open("a") as f:
        f.write(f"CDEF_SHA256 = {hashlib.sha256(cdef.encode()).hexdigest()!r}\n")


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        write_ffi_module(Path(self.build_lib) / "metafed" / "_ffi.py")
        target = Path(self.build_lib) / "metafed" / "libmetafed.so"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(build_library(), target)
        # The release profile keeps line tables for profiling; the packaged library drops them.
        if shutil.which("strip"):
            subprocess.run(["strip", "--strip-debug", str(target)], check=False)


class Sdist(sdist):
    def make_release_tree(self, base_dir, files):  # type: ignore[no-untyped-def]
        super().make_release_tree(base_dir, files)
        crate = crate_dir()
        dest = Path(base_dir) / SDIST_CRATE
        for name in CRATE_FILES:
            if (crate / name).is_file():
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy2(crate / name, dest / name)
        for name in CRATE_DIRS:
            if (crate / name).is_dir():
                shutil.copytree(crate / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "target"))


class NativeDistribution(Distribution):
    def has_ext_modules(self) -> bool:
        return True  # it carries a native library: a platform wheel, installed into platlib


class BdistWheel(bdist_wheel):
    def get_tag(self):  # type: ignore[no-untyped-def]
        _, _, platform = super().get_tag()
        return "py3", "none", platform


def scratch_dir() -> str:
    """Where setuptools works (its build/ and *.egg-info): under the workspace's target/ when
    building from a clone, so that `pip install ./bindings/python` leaves nothing in the clone;
    beside setup.py otherwise (an unpacked sdist, which pip discards)."""
    repo_target = HERE.parent.parent / "target"
    base = repo_target / "python-build" if (HERE.parent.parent / "Cargo.toml").is_file() else HERE / "build"
    base.mkdir(parents=True, exist_ok=True)
    return str(base)


SCRATCH = scratch_dir()
setup(
    distclass=NativeDistribution,
    cmdclass={"build_py": BuildPy, "sdist": Sdist, "bdist_wheel": BdistWheel},
    options={"build": {"build_base": SCRATCH}, "egg_info": {"egg_base": SCRATCH}},
)
