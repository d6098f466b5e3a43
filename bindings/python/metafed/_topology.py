"""Building a topology: domains, simulated agents, and agents run by Python callables."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Optional, Union

from ._native import InvalidArgument, TopologyError, check, ffi, lib
from ._types import AgentError, Level, Request, SimAgent

Handler = Callable[[Request], Optional[int]]
DomainRef = Union[int, str]

_HANDLER_OK, _HANDLER_ERROR, _HANDLER_RAISED = 0, 1, 2


class _Messages:
    """Messages of exceptions raised by handlers, by (task id, agent), until a completion picks
    them up. Bounded: the oldest are dropped beyond `limit` keys."""

    def __init__(self, limit: int = 65536) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[int, int], list[str]] = OrderedDict()
        self._limit = limit

    def record(self, task_id: int, agent: int, message: str) -> None:
        with self._lock:
            self._items.setdefault((task_id, agent), []).append(message)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)

    def take(self, task_id: int, agent: int) -> Optional[str]:
        with self._lock:
            msgs = self._items.get((task_id, agent))
            if not msgs:
                return None
            m = msgs.pop(0)
            if not msgs:
                del self._items[(task_id, agent)]
            return m


MESSAGES = _Messages()


class _Agent:
    """A Python handler, kept alive by its topology and every engine started from it."""

    __slots__ = ("fn", "handle")

    def __init__(self, fn: Handler) -> None:
        self.fn = fn
        self.handle = ffi.new_handle(self)


@ffi.callback("metafed_handler_fn", error=_HANDLER_RAISED)
def _trampoline(user_data, req, resp):  # type: ignore[no-untyped-def]
    # Runs on an engine thread, holding the GIL only for its duration (cffi takes and releases it).
    agent = ffi.from_handle(user_data)
    data = bytes(ffi.buffer(req.data, req.data_len)) if req.data_len else b""
    r = Request(req.task_id, req.payload, data, req.domain, req.agent, req.attempt, req.fanout, req.priority)
    try:
        value = agent.fn(r)
    except AgentError as e:
        resp.code = int(e.code) & 0x7FFFFFFF
        return _HANDLER_ERROR
    except BaseException as e:  # noqa: BLE001 - every exception is an agent failure
        MESSAGES.record(req.task_id, req.agent, f"{type(e).__name__}: {e}")
        return _HANDLER_RAISED
    resp.value = (value or 0) & 0xFFFFFFFFFFFFFFFF
    return _HANDLER_OK


class Topology:
    """Domains and their agents, breakers per level, injected faults. Build one, then start any
    number of engines from it (each takes a copy)."""

    def __init__(self) -> None:
        out = ffi.new("metafed_topology **")
        check(lib().metafed_topology_new(out))
        self._init(out[0])

    def _init(self, handle) -> None:  # type: ignore[no-untyped-def]
        self._h = handle
        self._agents: list[_Agent] = []

    @classmethod
    def _wrap(cls, fn) -> "Topology":  # type: ignore[no-untyped-def]
        out = ffi.new("metafed_topology **")
        check(fn(out))
        t = cls.__new__(cls)
        t._init(out[0])
        return t

    @classmethod
    def seed(cls, agent_error: float = 0.12) -> "Topology":
        """The seed report's 3 x 3 (API, Database, Auth; three simulated agents each)."""
        return cls._wrap(lambda out: lib().metafed_topology_seed(float(agent_error), out))

    @classmethod
    def from_toml(cls, text: str) -> "Topology":
        """A topology from TOML text (agents without `sim` must be bound with `bind`)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        return cls._wrap(lambda out: lib().metafed_topology_from_toml(text.encode(), out))

    @classmethod
    def from_file(cls, path: str) -> "Topology":
        return cls._wrap(lambda out: lib().metafed_topology_from_file(str(path).encode(), out))

    @property
    def handle(self):  # type: ignore[no-untyped-def]
        if self._h is None:
            raise TopologyError(2, "the topology is closed")
        return self._h

    def domain_id(self, name: str) -> int:
        if not isinstance(name, str):
            raise TypeError(f"a domain name must be str, not {type(name).__name__}")
        out = ffi.new("uint16_t *")
        check(lib().metafed_topology_domain_id(self.handle, name.encode(), out))
        return int(out[0])

    def _domain(self, d: DomainRef) -> int:
        if isinstance(d, bool) or not isinstance(d, (int, str)):
            raise TypeError(f"a domain is an id (int) or a name (str), not {type(d).__name__}")
        return self.domain_id(d) if isinstance(d, str) else d

    def add_domain(self, name: str) -> int:
        """Adds a domain; returns its id."""
        if not isinstance(name, str):
            raise TypeError(f"name must be str, not {type(name).__name__}")
        out = ffi.new("uint16_t *")
        check(lib().metafed_topology_add_domain(self.handle, name.encode(), out))
        return int(out[0])

    def add_agent(self, domain: DomainRef, name: str, handler: Optional[Handler] = None, *, sim: Optional[SimAgent] = None, isolated: bool = False) -> int:
        """Adds an agent run by `handler(request) -> value` (raise `AgentError(code)` to fail
        with a code; any other exception fails the attempt as RAISED, its message kept), or a
        simulated one (`sim`, or a `SimAgent` in place of the handler). Returns the agent's id.
        An isolated agent runs on its own thread."""
        if not isinstance(name, str):
            raise TypeError(f"name must be str, not {type(name).__name__}")
        if isinstance(handler, SimAgent) and sim is None:
            handler, sim = None, handler
        if (handler is None) == (sim is None):
            raise TypeError("give exactly one of handler and sim")
        d = self._domain(domain)
        if not 0 <= d <= 0xFFFF:
            raise InvalidArgument(4, f"domain id {d} is out of range")
        out = ffi.new("uint16_t *")
        flags = 1 if isolated else 0
        if sim is not None:
            spec = ffi.new("metafed_sim_agent *")
            check(lib().metafed_sim_agent_init(spec))
            spec.flags = flags
            spec.error_rate = sim.error_rate
            spec.latency_kind = 1 if sim.latency_us > 0 else 0
            spec.latency_us = sim.latency_us
            spec.seed = sim.seed
            check(lib().metafed_topology_add_sim_agent(self.handle, d, name.encode(), spec, out))
        else:
            if not callable(handler):
                raise TypeError(f"handler must be callable, not {type(handler).__name__}")
            agent = _Agent(handler)
            check(lib().metafed_topology_add_callback_agent(self.handle, d, name.encode(), _trampoline, agent.handle, ffi.NULL, flags, out))
            self._agents.append(agent)
        return int(out[0])

    def bind(self, domain: str, agent: str, handler: Handler, *, isolated: bool = False) -> int:
        """Gives agent `agent` of domain `domain` (declared in TOML) a Python handler."""
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        a = _Agent(handler)
        out = ffi.new("uint16_t *")
        check(lib().metafed_topology_bind_callback(self.handle, domain.encode(), agent.encode(), _trampoline, a.handle, ffi.NULL, 1 if isolated else 0, out))
        self._agents.append(a)
        return int(out[0])

    def set_domain_fault_rate(self, domain: DomainRef, rate: float) -> None:
        check(lib().metafed_topology_set_domain_fault_rate(self.handle, self._domain(domain), float(rate)))

    def set_meta_fault_rate(self, rate: float) -> None:
        check(lib().metafed_topology_set_meta_fault_rate(self.handle, float(rate)))

    def set_max_attempts(self, domain: DomainRef, attempts: int) -> None:
        check(lib().metafed_topology_set_max_attempts(self.handle, self._domain(domain), int(attempts)))

    def set_breaker(self, level: Level, **settings: float) -> None:
        """Changes a level's breaker settings (fields of `metafed_breaker_config`: timeout_ms,
        consecutive_failures, failure_rate, window_ms, min_calls, open_base_ms, open_max_ms,
        half_open_probes, mode); the others keep the level's seed defaults."""
        cfg = ffi.new("metafed_breaker_config *")
        check(lib().metafed_breaker_config_init(int(level), cfg))
        for key, value in settings.items():
            if key in ("struct_size", "reserved") or not hasattr(cfg, key):
                raise TypeError(f"unknown breaker setting {key!r}")
            setattr(cfg, key, value)
        check(lib().metafed_topology_set_breaker(self.handle, int(level), cfg))

    def disable_breakers(self) -> None:
        """Disables every breaker (results still counted)."""
        check(lib().metafed_topology_disable_breakers(self.handle))

    def close(self) -> None:
        """Frees the topology (engines started from it keep running). Idempotent."""
        if self._h is not None:
            lib().metafed_topology_free(self._h)
            self._h = None

    def __enter__(self) -> "Topology":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass
