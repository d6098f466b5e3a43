"""Loading the metafed library and turning its status codes into exceptions."""

from __future__ import annotations

import hashlib
import importlib
import os
import struct
import threading
from pathlib import Path
from typing import Any, Optional, Sequence

_CDEF = Path(__file__).with_name("_cdef.h").read_text()
ffi: Any
try:
    # An installed package: the declarations were parsed when it was built (cffi's out-of-line
    # ABI mode, `_ffi.py` made by setup.py), so importing it parses no C; used only if it was
    # made from the `_cdef.h` beside it.
    _ffi: Any = importlib.import_module(f"{__package__}._ffi")
    if _ffi.CDEF_SHA256 != hashlib.sha256(_CDEF.encode()).hexdigest():
        raise ImportError("metafed/_ffi.py was made from another _cdef.h")
    ffi = _ffi.ffi
    OUT_OF_LINE = True
except (ImportError, AttributeError):  # a source checkout, or a stale _ffi.py: parse them now
    import cffi  # type: ignore[import-untyped]

    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    OUT_OF_LINE = False

_FORMATS = {
    "uint8_t": "B",
    "uint16_t": "H",
    "uint32_t": "I",
    "int32_t": "i",
    "uint64_t": "Q",
    "int64_t": "q",
    "double": "d",
    "size_t": "Q" if ffi.sizeof("size_t") == 8 else "I",
}
_POINTER = "Q" if ffi.sizeof("void *") == 8 else "I"


def struct_reader(ctype: str, names: Sequence[str]) -> struct.Struct:
    """A `struct.Struct` that reads the fields `names` (in the order of their offsets; "a.b" for
    field b of the struct in field a) of the C struct `ctype` from its bytes in one call:
    `unpack_from(ffi.buffer(array), i * size)` gives them as a tuple. On hot paths one call
    replaces a cdata attribute read per field (about 90 ns each, plus an `int()`); `pack_into`
    writes them (a pointer as its address, 0 for NULL)."""
    fmt = ["="]  # native byte order, no implicit padding: offsets come from cffi
    at = 0
    for name in names:
        path = name.split(".")
        t = ffi.typeof(ctype)
        for part in path:
            t = dict(t.fields)[part].type
        offset = ffi.offsetof(ctype, *path)
        if offset < at:
            raise ValueError(f"struct_reader: {ctype}.{name} is not after the previous field")
        if offset > at:
            fmt.append(f"{offset - at}x")
        fmt.append(_POINTER if t.kind == "pointer" else _FORMATS[t.cname])
        at = offset + ffi.sizeof(t)
    return struct.Struct("".join(fmt))


_LIB_NAME = "libmetafed.so"
_lib: Optional[Any] = None
_lib_path: Optional[Path] = None


def _candidates() -> list[Path]:
    found = []
    env = os.environ.get("METAFED_LIBRARY")
    if env:
        found.append(Path(env))
        return found  # an explicit choice is the only one tried
    here = Path(__file__).resolve().parent
    found.append(here / _LIB_NAME)  # the library an installed package carries
    found.append(here.parent.parent.parent / "target" / "release" / _LIB_NAME)  # a source checkout
    return found


def lib() -> Any:
    """The loaded library (loaded on first use)."""
    global _lib, _lib_path
    if _lib is None:
        tried = []
        for path in _candidates():
            tried.append(str(path))
            if path.is_file():
                _lib = ffi.dlopen(str(path))
                _lib_path = path.resolve()
                break
        else:
            raise LibraryNotFound(
                "cannot find libmetafed.so (tried: " + ", ".join(tried) + "). An installed package "
                "carries it (pip install ./bindings/python builds it with cargo); from a source "
                "checkout, run `cargo build --release` in the repository, or set METAFED_LIBRARY "
                "to the path of libmetafed.so."
            )
    return _lib


def library_path() -> str:
    """The path of the libmetafed.so this process uses (loading it if needed)."""
    lib()
    assert _lib_path is not None
    return str(_lib_path)


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


class WouldDeadlock(MetafedError, RuntimeError):
    """A call that waits was made from a handler or a completion callback (a thread the engine
    needs to make progress), where it could wait for itself forever. Only calls that do not
    wait (submitting when there is room, stats, controls) are allowed there."""


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
    17: WouldDeadlock,
}


def last_error() -> str:
    """The library's message for the last failed call on this thread, without the C function's
    name it starts with."""
    message: str = ffi.string(lib().metafed_last_error()).decode("utf-8", "replace")
    head, sep, rest = message.partition(": ")
    return rest if sep and head.startswith("metafed_") and " " not in head else message


MAX_DURATION_NS = 2_592_000 * 10**9  # METAFED_MAX_DURATION_NS: 30 days
FOREVER = 2**64 - 1  # METAFED_FOREVER

MS = 1_000_000  # nanoseconds per unit, for duration_ns
US = 1_000
S = 1_000_000_000


def duration_ns(value: object, what: str, unit_ns: int, *, positive: bool = False) -> int:
    """A duration in the unit of `what` (`unit_ns` nanoseconds each) as the nanoseconds of the C
    ABI. Refuses, naming `what`, a value that is not a number, negative, not finite, above 30
    days, or (with `positive`) zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, not {type(value).__name__}")
    ns = value * unit_ns
    if not 0 <= ns <= MAX_DURATION_NS or (positive and ns == 0):
        floor = "more than 0" if positive else "at least 0"
        raise InvalidArgument(4, f"{what} must be {floor} and at most 30 days, got {value}")
    return max(1, round(ns)) if positive else round(ns)


def check(status: int) -> None:
    """Raises the exception for a failed call's status."""
    if status == 0:
        return
    message = last_error()
    cls = _ERRORS.get(status, MetafedError)
    if cls is OSError:
        raise OSError(message)
    raise cls(status, message)


class _EngineThread(threading.local):
    """Marks the threads the engine needs to make progress: a worker while it runs a Python
    handler, and an engine's completion thread while it runs done-callbacks."""

    active = False


ENGINE_THREAD = _EngineThread()


def refuse_if_engine_thread(what: str) -> None:
    """Raises WouldDeadlock when called from a handler or a completion callback."""
    if ENGINE_THREAD.active:
        raise WouldDeadlock(
            17,
            f"{what} waits, and was called from a handler or a completion callback, where it could wait for "
            "itself; submit and return, or use an async handler",
        )
