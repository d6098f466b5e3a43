"""Loading the metafed library and turning its status codes into exceptions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import cffi

ffi = cffi.FFI()
ffi.cdef((Path(__file__).with_name("_cdef.h")).read_text())

_LIB_NAME = "libmetafed.so"
_lib: Optional[Any] = None


def _candidates() -> list[Path]:
    found = []
    env = os.environ.get("METAFED_LIBRARY")
    if env:
        found.append(Path(env))
        return found  # an explicit choice is the only one tried
    here = Path(__file__).resolve().parent
    found.append(here / _LIB_NAME)
    try:
        from ._location import REPO_TARGET  # written by setup.py at install time

        found.append(Path(REPO_TARGET) / _LIB_NAME)
    except ImportError:
        pass
    found.append(here.parent.parent.parent / "target" / "release" / _LIB_NAME)  # a source checkout
    return found


def lib() -> Any:
    """The loaded library (loaded on first use)."""
    global _lib
    if _lib is None:
        tried = []
        for path in _candidates():
            tried.append(str(path))
            if path.is_file():
                _lib = ffi.dlopen(str(path))
                break
        else:
            raise LibraryNotFound(
                "cannot find libmetafed.so (tried: " + ", ".join(tried) + "). Build it with "
                "`cargo build --release` in the metafed repository, or set METAFED_LIBRARY to "
                "the path of libmetafed.so."
            )
    return _lib


class LibraryNotFound(ImportError):
    """libmetafed.so could not be found; the message says where it looked and how to build it."""


class MetafedError(Exception):
    """A metafed call failed. `status` is the C status code, `message` the library's detail."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class EngineFull(MetafedError):
    """Backpressure: no room for the task now."""


class EngineClosed(MetafedError):
    """The engine is shut down or closed."""


class UnknownDomain(MetafedError, LookupError):
    """A domain name or id the topology does not have."""


class InvalidArgument(MetafedError, ValueError):
    """An argument out of range or malformed."""


class TopologyError(MetafedError, ValueError):
    """The topology is invalid."""


class ConfigError(MetafedError, ValueError):
    """The configuration is invalid, or its TOML does not parse."""


class WaitTimeout(MetafedError, TimeoutError):
    """The wait timed out."""


_ERRORS = {
    1: InvalidArgument,  # NULL: from Python, an argument we failed to pass
    2: EngineClosed,  # a freed handle
    4: InvalidArgument,
    5: TopologyError,
    6: ConfigError,
    7: OSError,
    8: EngineFull,
    9: EngineClosed,
    10: UnknownDomain,
    11: WaitTimeout,
}


def check(status: int) -> None:
    """Raises the exception for a failed call's status."""
    if status == 0:
        return
    l = lib()
    message = ffi.string(l.metafed_last_error()).decode("utf-8", "replace")
    cls = _ERRORS.get(status, MetafedError)
    if cls is OSError:
        raise OSError(message)
    raise cls(status, message)
