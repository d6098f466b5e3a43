"""The decision engine from Python: task attributes, a classifier callable, and the `[classify]`
rules as TOML (C ABI 1.5)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from ._native import ENGINE_THREAD, InvalidArgument, ffi

MAX_ATTRS = 16  # METAFED_MAX_ATTRS (test_constants checks it); names and values the library checks

Attrs = Union[Mapping[str, str], Sequence["tuple[str, str]"], None]


@dataclass(frozen=True)
class ClassifyInput:
    """What a classifier sees of a task that named no domain."""

    id: int
    payload: int
    data: bytes
    attrs: Mapping[str, str]
    key: int
    priority: int


@dataclass(frozen=True)
class Classification:
    """A classifier's verdict: the domains the task needs (ids or names, not empty), its
    complexity from 0 to 1, and optionally a priority (0 highest .. 3), a deadline (seconds
    from submission) and a key for the keyed rate limits (an int, or a str hashed as `key_of`
    does)."""

    domains: Union[int, str, Sequence[Union[int, str]]]
    complexity: float = 0.0
    priority: Optional[int] = None
    deadline: Optional[float] = None
    key: Union[int, str, None] = None


def attr_pairs(attrs: Attrs) -> list[tuple[str, str]]:
    """A task's attributes as (name, value) pairs, checked (errors name the attribute)."""
    if attrs is None:
        return []
    items = list(attrs.items()) if isinstance(attrs, Mapping) else list(attrs)
    if len(items) > MAX_ATTRS:
        raise InvalidArgument(4, f"the task has {len(items)} attributes, more than {MAX_ATTRS}")
    out = []
    for i, pair in enumerate(items):
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(f"attrs[{i}] must be a (name, value) pair of str")
        name, value = pair
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"attrs[{i}]: a name and a value are str, not {type(name).__name__} and {type(value).__name__}")
        out.append((name, value))
    return out


def fill_attrs(t: Any, pairs: list[tuple[str, str]]) -> Any:
    """Points `metafed_task` `t` at its attributes; returns what must stay alive until the call
    returns."""
    if not pairs:
        t.attrs = ffi.NULL
        t.attrs_len = 0
        return None
    arr = ffi.new("metafed_attr[]", len(pairs))
    keep: list[Any] = [arr]
    for i, (name, value) in enumerate(pairs):
        n, v = name.encode(), value.encode()
        if not n:
            raise InvalidArgument(4, f"attrs[{i}] has an empty name")
        bn, bv = ffi.new("char[]", n), ffi.new("char[]", v)
        keep += [bn, bv]
        arr[i].name, arr[i].name_len = bn, len(n)
        arr[i].value, arr[i].value_len = bv, len(v)
        if not v:
            arr[i].value = ffi.NULL  # NULL with length 0: empty (a length of 0 reads to the NUL)
    t.attrs = arr
    t.attrs_len = len(pairs)
    return keep


class _Classifier:
    """A Python classifier, alive while the library holds it (`_LIVE`, released by the
    finalizer)."""

    __slots__ = ("fn", "handle", "resolve", "__weakref__")

    def __init__(self, fn: Callable[[ClassifyInput], Classification], resolve: Callable[[], Any]) -> None:
        self.fn = fn
        self.resolve = resolve
        self.handle = ffi.new_handle(self)


_LIVE: set[_Classifier] = set()
_LIVE_LOCK = threading.Lock()


def register(fn: Any, resolve: Callable[[], Any]) -> _Classifier:
    """`resolve()` gives the function that maps a domain name or id to its id (None once its
    owner is gone: held weakly, so a classifier never keeps its engine alive)."""
    if not callable(fn):
        raise TypeError(f"a classifier must be callable, not {type(fn).__name__}")
    c = _Classifier(fn, resolve)
    with _LIVE_LOCK:
        _LIVE.add(c)
    return c


@ffi.callback("void(void *)")
def release(user_data):  # type: ignore[no-untyped-def]
    c = ffi.from_handle(user_data)
    with _LIVE_LOCK:
        _LIVE.discard(c)


@ffi.callback("metafed_classify_fn", error=-1)
def trampoline(user_data, inp, out):  # type: ignore[no-untyped-def]
    # Runs on a worker thread, holding the GIL for its duration (cffi takes it).
    c = ffi.from_handle(user_data)
    was = ENGINE_THREAD.active
    ENGINE_THREAD.active = True
    try:
        attrs: dict[str, str] = {}
        for i in range(inp.attrs_len):
            a = inp.attrs[i]
            name = ffi.unpack(a.name, a.name_len).decode()
            attrs.setdefault(name, ffi.unpack(a.value, a.value_len).decode() if a.value_len else "")
        data = ffi.unpack(ffi.cast("char *", inp.data), inp.data_len) if inp.data_len else b""
        task = ClassifyInput(int(inp.id), int(inp.payload), data, attrs, int(inp.key), int(inp.priority))
        v = c.fn(task)
        if not isinstance(v, Classification):
            return -2
        domains = v.domains
        if isinstance(domains, (int, str)):
            domains = (domains,)
        resolve = c.resolve()
        if resolve is None:
            return -3  # the engine that set it is gone
        mask = 0
        for d in domains:
            mask |= 1 << resolve(d)
        out.domains = mask
        out.complexity = float(v.complexity)
        flags = 0
        if v.priority is not None:
            out.priority = int(v.priority)
            flags |= 1
        if v.deadline is not None:
            out.deadline_ns = max(1, round(float(v.deadline) * 1e9))
            flags |= 2
        if v.key is not None:
            from ._engine import _key_arg

            out.key = _key_arg(v.key)
            flags |= 4
        out.flags = flags
        return 0
    except Exception:  # noqa: BLE001 - a classifier that raises refuses the task
        return -1
    finally:
        ENGINE_THREAD.active = was
