"""Building a topology: domains, simulated agents, and agents run by Python callables (plain
functions, which answer at once, or `async def` coroutines, which answer later on an asyncio
loop without holding an engine thread)."""

from __future__ import annotations

import asyncio
import collections.abc
import functools
import inspect
import threading
import weakref
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Mapping, Optional, Sequence, Tuple, Union

from . import _aio
from ._native import ENGINE_THREAD, MS, US, InvalidArgument, TopologyError, check, duration_ns, ffi, lib, struct_reader
from ._types import AgentError, Balance, BreakerMode, BreakerSettings, Level, Outlier, Reply, Request, Shedding, SimAgent

HandlerResult = Union[int, bytes, bytearray, memoryview, Tuple[int, bytes], Reply, None]
"""What a handler returns: the value (int, 0 to 2**64-1), the reply's bytes (value 0), both as
`(value, bytes)` or `Reply(value, data)`, or None (value 0)."""
Handler = Callable[[Request], HandlerResult]
"""A handler that answers at once (it runs on an engine thread, holding the GIL)."""
AsyncHandler = Callable[[Request], Awaitable[HandlerResult]]
"""An `async def` handler: it runs on an asyncio loop, and the engine does not wait for it."""
DomainRef = Union[int, str]

_HANDLER_OK, _HANDLER_ERROR, _HANDLER_RAISED, _HANDLER_PENDING = 0, 1, 2, 3
# Returned for a reply that is not one: the library records INVALID_REPLY with this code.
_INVALID_REPLY_CODE = 4
_U64 = 1 << 64


class _Messages:
    """Messages of handlers' exceptions (and of AgentError messages and invalid replies), by
    (ticket, domain, attempt), which names one attempt of one task uniquely while its completion
    is pending, until the completion picks them up. Bounded: the oldest go beyond `limit`
    (messages of tasks whose completions nobody converts, as in run_many)."""

    def __init__(self, limit: int = 65536) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[int, int, int], str] = OrderedDict()
        self._limit = limit

    def record(self, ticket: int, domain: int, attempt: int, message: str) -> None:
        with self._lock:
            self._items[(ticket, domain, attempt)] = message
            while len(self._items) > self._limit:
                self._items.popitem(last=False)

    def take(self, ticket: int, domain: int, attempt: int) -> Optional[str]:
        with self._lock:
            return self._items.pop((ticket, domain, attempt), None)


MESSAGES = _Messages()


class _Calls:
    """Python handler calls in progress (to wait for at interpreter exit) and the exit flag."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.exiting = False


CALLS = _Calls()


class _Keep(threading.local):
    """Keeps a handler's reply bytes alive until the library has copied them (it does before
    the next call on the same thread)."""

    data: Any = None


_KEEP = _Keep()


def _to_reply(value: object) -> tuple[int, int, bytes, Optional[str]]:
    """(return code, value, bytes, message for an invalid reply) of what a handler returned."""
    if value is None:
        return _HANDLER_OK, 0, b"", None
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < _U64:
            return _HANDLER_OK, value, b"", None
        return _INVALID_REPLY_CODE, 0, b"", f"the handler returned {value}, outside 0 to 2**64-1"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _HANDLER_OK, 0, bytes(value), None
    if isinstance(value, tuple) and len(value) == 2:
        v, data = value
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < _U64 and isinstance(data, (bytes, bytearray, memoryview)):
            return _HANDLER_OK, v, bytes(data), None
    return (
        _INVALID_REPLY_CODE,
        0,
        b"",
        f"the handler returned {type(value).__name__}; return an int (0 to 2**64-1), bytes, "
        "(int, bytes), metafed.Reply or None",
    )


def _answer(value: object, resp: Any, req_key: tuple[int, int, int]) -> int:
    """Fills `resp` from a handler's return value; returns the handler return code."""
    rc, v, data, message = _to_reply(value)
    if message is not None:
        MESSAGES.record(*req_key, message)
        return rc
    resp.value = v
    if data:
        keep = ffi.from_buffer(data)
        _KEEP.data = (data, keep)
        resp.data = keep
        resp.data_len = len(data)
    return rc


def _failed(e: BaseException, resp: Any, req_key: tuple[int, int, int]) -> int:
    """Fills `resp` for a handler that raised; returns the handler return code."""
    if isinstance(e, AgentError):
        resp.code = e.code
        if e.message:
            MESSAGES.record(*req_key, e.message)
        return _HANDLER_ERROR
    MESSAGES.record(*req_key, f"{type(e).__name__}: {e}")
    return _HANDLER_RAISED


def _reply_of(value: object, error: Optional[BaseException], key: tuple[int, int, int]) -> tuple[int, int, int, bytes]:
    """(return code, error code, value, bytes) of an async handler's result or exception, for
    completing its attempt."""
    if error is not None:
        if isinstance(error, AgentError):
            if error.message:
                MESSAGES.record(*key, error.message)
            return _HANDLER_ERROR, error.code, 0, b""
        MESSAGES.record(*key, f"{type(error).__name__}: {error}")
        return _HANDLER_RAISED, 0, 0, b""
    rc, v, data, message = _to_reply(value)
    if message is not None:
        # A deferred attempt has no "invalid reply" completion: it fails as raised, with the message.
        MESSAGES.record(*key, message)
        return _HANDLER_RAISED, _INVALID_REPLY_CODE, 0, b""
    return rc, 0, v, data


def _add_queued(topology: Any, d: int, name: str, agent: "_Agent", out: Any) -> None:
    """Adds an `async def` agent whose attempts wait for its loop in the loop's queue."""
    loop = agent.loop if agent.loop is not None else _aio.default_loop()
    q = _aio.loop_queue(loop, _reply_of)
    tag = q.add(agent.fn)
    check(lib().metafed_topology_add_queue_agent(topology, d, name.encode(), q.handle, tag, 0, out))


class _Agent:
    """A Python handler, kept alive by its topology and every engine started from it."""

    __slots__ = ("fn", "handle", "is_async", "loop")

    def __init__(self, fn: Callable[[Request], Any], is_async: bool, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        self.fn = fn
        self.is_async = is_async
        self.loop = loop
        self.handle = ffi.new_handle(self)


_REQUEST = struct_reader(
    "metafed_request",
    ("domain", "agent", "task_id", "payload", "data_len", "attempt", "fanout", "priority", "ticket", "time_left_ns"),
)


def _request(req: Any) -> Request:
    """The request of a handler call (`metafed_request`), its fields read in one call."""
    domain, agent, task_id, payload, data_len, attempt, fanout, priority, ticket, time_left_ns = _REQUEST.unpack_from(
        ffi.buffer(req)
    )
    data = bytes(ffi.buffer(req.data, data_len)) if data_len else b""
    return Request(ticket, task_id, payload, data, domain, agent, attempt, fanout, priority, time_left_ns / 1e9)


@ffi.callback("metafed_handler_fn", error=_HANDLER_RAISED)
def _trampoline(user_data, req, resp):  # type: ignore[no-untyped-def]
    # Runs on an engine thread, holding the GIL only for its duration (cffi takes and releases it).
    agent = ffi.from_handle(user_data)
    with CALLS.lock:
        if CALLS.exiting:
            return _HANDLER_RAISED
        CALLS.running += 1
    was = ENGINE_THREAD.active
    ENGINE_THREAD.active = True
    try:
        r = _request(req)
        key = (r.ticket, r.domain, r.attempt)
        if agent.is_async:
            return _start_async(agent, req, r, resp, key)
        try:
            value = agent.fn(r)
        except BaseException as e:  # noqa: BLE001 - every exception is an agent failure
            return _failed(e, resp, key)
        return _answer(value, resp, key)
    finally:
        ENGINE_THREAD.active = was
        with CALLS.lock:
            CALLS.running -= 1


def _start_async(agent: _Agent, req: Any, r: Request, resp: Any, key: tuple[int, int, int]) -> int:
    """Defers the attempt and runs the coroutine on its loop; the loop completes the attempt."""
    attempt = ffi.new("metafed_attempt *")
    if lib().metafed_request_defer(req, attempt) != 0:
        MESSAGES.record(*key, "no room for another deferred attempt on this worker")
        resp.code = -1
        return _HANDLER_ERROR
    handle = (int(attempt.engine), int(attempt.id))
    try:
        coro = agent.fn(r)
        if not inspect.isawaitable(coro):
            raise TypeError(f"an async handler returned {type(coro).__name__}, not an awaitable")
        loop = agent.loop if agent.loop is not None else _aio.default_loop()
        future = asyncio.run_coroutine_threadsafe(_bounded(coro, r.timeout), loop)
    except BaseException as e:  # noqa: BLE001 - the attempt fails; the engine runs on
        _complete(handle, key, None, e)
        return _HANDLER_PENDING
    future.add_done_callback(functools.partial(_done, handle, key))
    return _HANDLER_PENDING


async def _bounded(coro: Awaitable[HandlerResult], timeout: float) -> HandlerResult:
    # The engine abandons the attempt at `timeout` (its timer decides, and records it as
    # abandoned): stop the work soon after, too. The grace keeps this backstop from firing
    # first, which would complete the attempt as dropped instead (the loop's timer starts after
    # the engine's, but can run early by its clock resolution, or the engine's timer thread late).
    return await asyncio.wait_for(coro, max(timeout, 1e-3) * 1.1 + 0.005)


def _done(handle: tuple[int, int], key: tuple[int, int, int], future: Any) -> None:
    try:
        value = future.result()
    except BaseException as e:  # noqa: BLE001
        _complete(handle, key, None, e)
    else:
        _complete(handle, key, value, None)


def _complete(handle: tuple[int, int], key: tuple[int, int, int], value: object, error: Optional[BaseException]) -> None:
    attempt = ffi.new("metafed_attempt *")
    attempt.engine, attempt.id = handle
    resp = ffi.new("metafed_response *")
    resp.struct_size = ffi.sizeof("metafed_response")
    if isinstance(error, (asyncio.TimeoutError, asyncio.CancelledError)):
        rc = _HANDLER_PENDING  # abandoned by the engine (or cancelled): dropped
    elif error is not None:
        rc = _failed(error, resp, key)
    else:
        rc = _answer(value, resp, key)
    # Abandoned or already completed: nothing more to do either way.
    lib().metafed_attempt_complete(attempt[0], rc, resp)


# The breaker settings Python takes and gives, in milliseconds where they are durations (the
# C struct holds nanoseconds: `timeout_ms` is its `timeout_ns`).
_BREAKER_DURATIONS = ("timeout_ms", "window_ms", "open_base_ms", "open_max_ms", "slow_call_duration_ms")
_BREAKER_COUNTS = ("consecutive_failures", "min_calls", "half_open_probes", "mode", "count_window")
BREAKER_SETTINGS = ("timeout_ms", "consecutive_failures", "failure_rate", "window_ms", "min_calls", "open_base_ms",
                    "open_max_ms", "half_open_probes", "mode", "count_window", "slow_call_duration_ms",
                    "slow_call_rate")


def alternate_list(alternates: object) -> list[Any]:
    """A list of alternates, refusing a lone name (a str is a sequence of letters)."""
    if isinstance(alternates, (str, bytes)) or not isinstance(alternates, collections.abc.Sequence):
        raise TypeError(f"alternates must be a list of domain ids or names, not {type(alternates).__name__}")
    if len(alternates) > 8:
        raise InvalidArgument(4, f"a domain has at most 8 alternates, got {len(alternates)}")
    return list(alternates)


def balance_args(balance: object) -> tuple[int, int, int]:
    """A `Balance` as the C functions take it: kind, decay and default RTT in nanoseconds."""
    if not isinstance(balance, Balance):
        raise TypeError(f"balance must be a metafed.Balance, not {type(balance).__name__}")
    kind = Balance.KINDS.index(balance.kind)
    decay = duration_ns(balance.decay_ms, "decay_ms", MS, positive=True)
    return kind, decay, duration_ns(balance.default_rtt_ms, "default_rtt_ms", MS, positive=True)


def outlier_config(outlier: object) -> Any:
    """An `Outlier` (or None: off) as the C functions take it."""
    if outlier is None:
        return ffi.NULL
    if not isinstance(outlier, Outlier):
        raise TypeError(f"outlier must be a metafed.Outlier or None, not {type(outlier).__name__}")
    cfg = ffi.new("metafed_outlier_config *")
    cfg.struct_size = ffi.sizeof("metafed_outlier_config")
    cfg.consecutive_failures = outlier.consecutive_failures
    cfg.failure_rate = outlier.failure_rate
    cfg.min_calls = outlier.min_calls
    cfg.min_samples = outlier.min_samples
    cfg.latency_factor = outlier.latency_factor
    cfg.base_ejection_ns = duration_ns(outlier.base_ejection_ms, "base_ejection_ms", MS, positive=True)
    cfg.max_ejection_ns = duration_ns(outlier.max_ejection_ms, "max_ejection_ms", MS, positive=True)
    cfg.max_ejected_percent = outlier.max_ejected_percent
    return cfg


def shedding_args(shedding: object) -> tuple[int, int, int]:
    """A `Shedding` (or None: off) as the C functions take it: target, interval, capacity."""
    if shedding is None:
        return 0, 0, 0
    if not isinstance(shedding, Shedding):
        raise TypeError(f"shedding must be a metafed.Shedding or None, not {type(shedding).__name__}")
    target = duration_ns(shedding.target_ms, "target_ms", MS, positive=True)
    interval = duration_ns(shedding.interval_ms, "interval_ms", MS, positive=True)
    if not 0 <= shedding.queue_capacity < 2**32:
        raise InvalidArgument(4, f"queue_capacity must be 0 to 2**32-1, got {shedding.queue_capacity}")
    return target, interval, shedding.queue_capacity


def outlier_of(cfg: Any) -> Outlier:
    """A `metafed_outlier_config` as an `Outlier`."""
    return Outlier(
        int(cfg.consecutive_failures), float(cfg.failure_rate), int(cfg.min_calls), float(cfg.latency_factor),
        int(cfg.min_samples), cfg.base_ejection_ns / MS, cfg.max_ejection_ns / MS, float(cfg.max_ejected_percent),
    )


def breaker_settings(cfg: Any) -> BreakerSettings:
    """A `metafed_breaker_config` as BreakerSettings."""
    out: dict[str, Any] = {}
    for key in BREAKER_SETTINGS:
        out[key] = getattr(cfg, key[:-3] + "_ns") / MS if key in _BREAKER_DURATIONS else getattr(cfg, key)
    out["mode"] = BreakerMode(cfg.mode)
    return BreakerSettings(**out)


def apply_breaker_settings(cfg: Any, settings: Mapping[str, Any], whole: Optional[BreakerSettings] = None) -> None:
    """Writes BreakerSettings (`whole`, every field) then keyword settings into a
    `metafed_breaker_config`, naming a bad key or value."""
    if whole is not None:
        if not isinstance(whole, BreakerSettings):
            raise TypeError(f"breaker settings must be metafed.BreakerSettings, not {type(whole).__name__}")
        settings = {**dict(whole.items()), **settings}
    for key, value in settings.items():
        if key not in BREAKER_SETTINGS:
            raise TypeError(f"unknown breaker setting {key!r}; known: {', '.join(BREAKER_SETTINGS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"breaker setting {key} must be a number, not {type(value).__name__}")
        if key in _BREAKER_DURATIONS:
            setattr(cfg, key[:-3] + "_ns", duration_ns(value, f"breaker setting {key}", MS))
            continue
        if key in _BREAKER_COUNTS and not isinstance(value, int):
            raise TypeError(f"breaker setting {key} must be int, not {type(value).__name__}")
        try:
            setattr(cfg, key, value)
        except OverflowError:
            raise InvalidArgument(4, f"breaker setting {key} is out of range: {value}") from None


class Topology:
    """Domains and their agents, breakers per level, timeouts, hedging, retry budgets, injected
    faults. Build one, then start any number of engines from it (each takes a copy)."""

    def __init__(self) -> None:
        out = ffi.new("metafed_topology **")
        check(lib().metafed_topology_new(out))
        self._init(out[0])

    def _init(self, handle: Any) -> None:
        self._h = handle
        self._agents: list[_Agent] = []

    @classmethod
    def _wrap(cls, fn: Callable[[Any], int]) -> "Topology":
        out = ffi.new("metafed_topology **")
        check(fn(out))
        t = cls.__new__(cls)
        t._init(out[0])
        return t

    @classmethod
    def seed(cls, agent_error: float = 0.12) -> "Topology":
        """The seed report's 3 x 3 (API, Database, Auth; three simulated agents each, failing at
        `agent_error`), with the seed's breakers."""
        return cls._wrap(lambda out: lib().metafed_topology_new_seed(_number(agent_error, "agent_error"), out))

    @classmethod
    def from_toml(cls, text: str) -> "Topology":
        """A topology from TOML text (agents without `sim` must be bound with `bind`)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        return cls._wrap(lambda out: lib().metafed_topology_new_from_toml(text.encode(), out))

    @classmethod
    def from_file(cls, path: str) -> "Topology":
        """A topology from a TOML file."""
        return cls._wrap(lambda out: lib().metafed_topology_new_from_file(str(path).encode(), out))

    @property
    def handle(self) -> Any:
        """The C handle (for the library's use)."""
        if self._h is None:
            raise TopologyError(2, "the topology is closed")
        return self._h

    def domain_id(self, name: str) -> int:
        """The id of the domain called `name` (UnknownDomain if there is none)."""
        if not isinstance(name, str):
            raise TypeError(f"a domain name must be str, not {type(name).__name__}")
        out = ffi.new("uint16_t *")
        check(lib().metafed_topology_get_domain_id(self.handle, name.encode(), out))
        return int(out[0])

    def _domain(self, d: DomainRef) -> int:
        if isinstance(d, bool) or not isinstance(d, (int, str)):
            raise TypeError(f"a domain is an id (int) or a name (str), not {type(d).__name__}")
        if isinstance(d, str):
            return self.domain_id(d)
        if not 0 <= d <= 0xFFFF:
            raise InvalidArgument(4, f"domain id {d} is out of range")
        return d

    def add_domain(self, name: str) -> int:
        """Adds a domain; returns its id."""
        if not isinstance(name, str):
            raise TypeError(f"name must be str, not {type(name).__name__}")
        out = ffi.new("uint16_t *")
        check(lib().metafed_topology_add_domain(self.handle, name.encode(), out))
        return int(out[0])

    def add_agent(
        self,
        domain: DomainRef,
        name: str,
        handler: Union[Handler, AsyncHandler, SimAgent, None] = None,
        *,
        sim: Optional[SimAgent] = None,
        isolated: bool = False,
        threads: int = 0,
        max_concurrency: int = 0,
        weight: int = 1,
        loop: Optional[asyncio.AbstractEventLoop] = None,
    ) -> int:
        """Adds an agent and returns its id. It is run by `handler(request)`, or simulated
        (`sim`, or a `SimAgent` in place of the handler).

        A plain handler answers at once (see `HandlerResult`; raise `AgentError(code)` to fail
        with a code, any other exception fails the attempt as RAISED with its message kept). An
        `async def` handler runs on `loop` (default: a loop the package runs on a thread of its
        own) and holds no engine thread while it awaits; the engine abandons it at the agent
        timeout (`request.timeout` seconds).

        `isolated` (or `threads` > 0) runs a blocking handler on threads of its own (`threads`,
        default 1), so that a handler that blocks stalls only this agent. `max_concurrency` (> 0)
        caps the attempts in flight at once; beyond it the domain picks another agent or the
        sub-task waits. `weight` (1 to 100) is its share of the domain's traffic against its
        other agents' weights."""
        if not isinstance(name, str):
            raise TypeError(f"name must be str, not {type(name).__name__}")
        if isinstance(handler, SimAgent) and sim is None:
            handler, sim = None, handler
        if (handler is None) == (sim is None):
            raise TypeError("give exactly one of handler and sim")
        threads = _count(threads, "threads")
        max_concurrency = _count(max_concurrency, "max_concurrency")
        # Checked before the agent is added, so that a bad weight adds nothing.
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise TypeError(f"weight must be int, not {type(weight).__name__}")
        if not 1 <= weight <= 100:
            raise InvalidArgument(4, f"weight must be 1 to 100, got {weight}")
        if isolated and threads == 0:
            threads = 1
        d = self._domain(domain)
        out = ffi.new("uint16_t *")
        if sim is not None:
            check(lib().metafed_topology_add_sim_agent(self.handle, d, name.encode(), _sim_spec(sim, threads > 0), out))
        else:
            agent = _make_agent(handler, loop)
            flags = 1 if threads > 0 else 0
            if agent.is_async and not flags:
                _add_queued(self.handle, d, name, agent, out)
            else:
                check(lib().metafed_topology_add_callback_agent(self.handle, d, name.encode(), _trampoline, agent.handle, ffi.NULL, flags, out))
            self._agents.append(agent)
        a = int(out[0])
        if threads > 1 or max_concurrency:
            self.set_agent_limits(a, threads=threads, max_concurrency=max_concurrency)
        if weight != 1:
            check(lib().metafed_topology_set_agent_weight(self.handle, a, weight))
        return a

    def bind(
        self,
        domain: str,
        agent: str,
        handler: Union[Handler, AsyncHandler],
        *,
        isolated: bool = False,
        threads: int = 0,
        max_concurrency: int = 0,
        loop: Optional[asyncio.AbstractEventLoop] = None,
    ) -> int:
        """Gives agent `agent` of domain `domain` (declared in TOML) a Python handler; the
        options are those of `add_agent`. Returns the agent's id."""
        if not isinstance(domain, str) or not isinstance(agent, str):
            raise TypeError("domain and agent are names (str)")
        threads = _count(threads, "threads")
        max_concurrency = _count(max_concurrency, "max_concurrency")
        if isolated and threads == 0:
            threads = 1
        a = _make_agent(handler, loop)
        out = ffi.new("uint16_t *")
        flags = 1 if threads > 0 else 0
        check(lib().metafed_topology_bind_callback_agent(self.handle, domain.encode(), agent.encode(), _trampoline, a.handle, ffi.NULL, flags, out))
        self._agents.append(a)
        agent_id = int(out[0])
        if threads > 1 or max_concurrency:
            self.set_agent_limits(agent_id, threads=threads, max_concurrency=max_concurrency)
        return agent_id

    def set_agent_limits(self, agent: int, *, threads: Optional[int] = None, max_concurrency: Optional[int] = None) -> None:
        """Changes how agent `agent` (its id) runs: on `threads` threads of its own (0: on the
        engine's workers), and at most `max_concurrency` attempts in flight (0: no limit)."""
        if isinstance(agent, bool) or not isinstance(agent, int) or not 0 <= agent <= 0xFFFF:
            raise InvalidArgument(4, f"agent must be an agent id (0 to 65535), got {agent!r}")
        if threads is not None:
            check(lib().metafed_topology_set_agent_threads(self.handle, agent, _count(threads, "threads")))
        if max_concurrency is not None:
            check(lib().metafed_topology_set_agent_max_concurrency(self.handle, agent, _count(max_concurrency, "max_concurrency")))

    def set_domain_fault_rate(self, domain: DomainRef, rate: float) -> None:
        """Injects correlated faults: a share `rate` (0 to 1) of the domain's sub-tasks fail
        whatever their agents do."""
        check(lib().metafed_topology_set_domain_fault_rate(self.handle, self._domain(domain), _number(rate, "rate")))

    def set_meta_fault_rate(self, rate: float) -> None:
        """Injects faults at the meta level: a share `rate` (0 to 1) of tasks fail at admission."""
        check(lib().metafed_topology_set_meta_fault_rate(self.handle, _number(rate, "rate")))

    def set_max_attempts(self, domain: DomainRef, attempts: int) -> None:
        """How many attempts (failovers and hedges included) a sub-task of `domain` may make
        (default: its number of agents)."""
        check(lib().metafed_topology_set_max_attempts(self.handle, self._domain(domain), _count(attempts, "attempts")))

    def set_timeouts(self, *, agent_ms: Optional[float] = None, domain_ms: Optional[float] = None, task_ms: Optional[float] = None) -> None:
        """Sets the time budgets, which apply whether or not the breakers are enabled: one
        attempt (`agent_ms`, default 50: a handler slower than that counts as failed, and an
        async handler is abandoned), a sub-task across its attempts (`domain_ms`, default 200),
        and a task from submission (`task_ms`, default 500: it bounds every task, whatever its own
        deadline, time spent waiting for a worker included). None leaves a budget as it is."""
        # 0 is "unchanged" to the C ABI; here None is, and a budget of 0 is refused.
        vals = [0 if v is None else duration_ns(v, n, MS, positive=True) for v, n in ((agent_ms, "agent_ms"), (domain_ms, "domain_ms"), (task_ms, "task_ms"))]
        check(lib().metafed_topology_set_timeouts(self.handle, *vals))

    def set_hedge(
        self,
        domain: DomainRef,
        *,
        after_ms: Optional[float] = None,
        percentile: Optional[float] = None,
        max_extra: int = 1,
        min_samples: int = 100,
        period_ms: float = 1000.0,
    ) -> None:
        """Makes `domain` hedge: an attempt (of an async or isolated handler, or a simulated I/O
        agent) not answered after `after_ms`, or after the `percentile`-th percentile of the
        domain's recent latency, gets one more attempt at another agent (up to `max_extra`); the
        first success wins. Give one of `after_ms` and `percentile`; neither turns hedging off."""
        h = ffi.new("metafed_hedge_config *")
        h.struct_size = ffi.sizeof("metafed_hedge_config")
        check(lib().metafed_hedge_config_init(h))
        if after_ms is not None and percentile is not None:
            raise TypeError("give one of after_ms and percentile")
        if after_ms is None and percentile is None:
            check(lib().metafed_topology_set_hedge(self.handle, self._domain(domain), ffi.NULL))
            return
        if after_ms is not None:
            h.delay_ns = duration_ns(after_ms, "after_ms", MS, positive=True)
            h.percentile = 0.0
        else:
            h.percentile = _number(percentile, "percentile")
        h.max_extra = _count(max_extra, "max_extra")
        h.min_samples = _count(min_samples, "min_samples")
        h.period_ns = duration_ns(period_ms, "period_ms", MS)
        check(lib().metafed_topology_set_hedge(self.handle, self._domain(domain), h))

    def set_retry_budget(self, domain: DomainRef, ratio: Optional[float], *, min_per_s: float = 10.0, window_ms: float = 1000.0) -> None:
        """Holds `domain`'s failovers and hedges to `ratio` retries per sub-task (plus
        `min_per_s` per second per worker) over a sliding window; None removes the budget."""
        d = self._domain(domain)
        if ratio is None:
            check(lib().metafed_topology_remove_retry_budget(self.handle, d))
            return
        window = duration_ns(window_ms, "window_ms", MS, positive=True)
        check(lib().metafed_topology_set_retry_budget(self.handle, d, _number(ratio, "ratio"), _number(min_per_s, "min_per_s"), window))

    def set_shedding(self, domain: DomainRef, shedding: Optional[Shedding]) -> None:
        """Gives `domain` adaptive shedding, or (None) none (see `Shedding`)."""
        check(lib().metafed_topology_set_domain_shedding(self.handle, self._domain(domain), *shedding_args(shedding)))

    def set_outlier(self, domain: DomainRef, outlier: Optional[Outlier]) -> None:
        """Gives `domain` outlier detection, or (None) none (see `Outlier`)."""
        check(lib().metafed_topology_set_domain_outlier(self.handle, self._domain(domain), outlier_config(outlier)))

    def set_alternates(self, domain: DomainRef, alternates: Sequence[DomainRef]) -> None:
        """Names the domains (ids or names, in order) that a sub-task of `domain` is rerouted to
        when it fails at `domain` through the domain's own fault (its breaker open or shedding,
        every agent failed or none available, its injected fault, its time or retry budget
        spent), while the task's deadline has not passed. Alternates must be domains already
        added, not `domain`, each once, at most 8; an empty list removes them. A sub-task follows
        the alternates of the domain it started in only. `Completion.answered` and
        `Completion.reroutes` tell what happened."""
        ids = [self._domain(a) for a in alternate_list(alternates)]
        check(lib().metafed_topology_set_domain_alternates(self.handle, self._domain(domain), ids, len(ids)))

    def set_classifier(self, classifier: Any) -> None:
        """Gives the engine a classifier for tasks that name no domain (`domains=None`): a
        callable taking a `ClassifyInput` (id, payload, data, attrs, key, priority) and returning
        a `Classification` (domains as ids or names of domains added so far, complexity 0 to 1,
        and optionally priority, deadline, key). It runs on the engine's worker threads (holding
        the GIL); one that raises, returns something else, or names no domain rejects the task
        (`Reason.UNCLASSIFIED`). The topology must have no `[classify]` rules."""
        from ._classify import register, release, trampoline

        # The classifier must not keep the topology alive (it may outlive it: close() while
        # engines run): names are looked up through a weak reference and remembered.
        owner = weakref.ref(self)
        names: dict[str, int] = {}

        def resolve(d: DomainRef) -> int:
            if isinstance(d, str):
                if d not in names:
                    t = owner()
                    if t is None or t._h is None:
                        raise KeyError(f"domain {d!r}: its topology is gone; return domain ids")
                    names[d] = t.domain_id(d)
                return names[d]
            if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < 64:
                raise ValueError(f"a domain is an id (0 to 63) or a name, not {d!r}")
            return d

        c = register(classifier, lambda: resolve)
        check(lib().metafed_topology_set_classifier(self.handle, trampoline, c.handle, release))

    def set_classify(self, toml: str) -> None:
        """The decision engine's settings from TOML text holding a `[classify]` table: rules on
        attributes and bytes that add domains and weight to a task's complexity, bands that give
        priority and deadline by complexity, and `key_attr` (see docs/classify.md). Rule domains
        are checked when the engine starts."""
        if not isinstance(toml, str):
            raise TypeError(f"toml must be str, not {type(toml).__name__}")
        check(lib().metafed_topology_set_classify_toml(self.handle, toml.encode()))

    def set_balance(self, domain: DomainRef, balance: Balance) -> None:
        """Sets how `domain` chooses its agents (see `Balance`)."""
        check(lib().metafed_topology_set_domain_balance(self.handle, self._domain(domain), *balance_args(balance)))

    def set_breaker(self, level: Level, settings: Optional[BreakerSettings] = None, /, **changes: float) -> None:
        """Changes a level's breaker settings: all of them from BreakerSettings, and the fields
        named as keywords (timeout_ms, consecutive_failures, failure_rate, window_ms, min_calls,
        open_base_ms, open_max_ms, half_open_probes, mode, and resilience4j's count_window,
        slow_call_duration_ms and slow_call_rate); the others keep the level's seed defaults."""
        cfg = ffi.new("metafed_breaker_config *")
        cfg.struct_size = ffi.sizeof("metafed_breaker_config")
        check(lib().metafed_breaker_config_init(int(level), cfg))
        apply_breaker_settings(cfg, changes, settings)
        check(lib().metafed_topology_set_breaker_config(self.handle, int(level), cfg))

    def disable_breakers(self) -> None:
        """Disables every breaker (results still counted). The time budgets (`set_timeouts`)
        still apply."""
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


def _make_agent(handler: Any, loop: Optional[asyncio.AbstractEventLoop]) -> _Agent:
    if not callable(handler):
        raise TypeError(f"handler must be callable, not {type(handler).__name__}")
    is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(getattr(handler, "__call__", None))
    if loop is not None and not isinstance(loop, asyncio.AbstractEventLoop):
        raise TypeError(f"loop must be an asyncio event loop, not {type(loop).__name__}")
    if loop is not None and not is_async:
        raise TypeError("loop applies to async def handlers only")
    return _Agent(handler, is_async, loop)


_LATENCY_FORMS = ("fixed", "exponential", "long_tail")


def _sim_spec(sim: SimAgent, isolated: bool) -> Any:
    spec = ffi.new("metafed_sim_agent *")
    spec.struct_size = ffi.sizeof("metafed_sim_agent")
    check(lib().metafed_sim_agent_init(spec))
    spec.flags = (1 if isolated else 0) | (2 if sim.io else 0)
    spec.error_rate = _number(sim.error_rate, "error_rate")
    if sim.latency not in _LATENCY_FORMS:
        raise InvalidArgument(4, f"latency must be one of {', '.join(_LATENCY_FORMS)}, got {sim.latency!r}")
    latency = duration_ns(sim.latency_us, "latency_us", US)
    slow = duration_ns(sim.slow_us, "slow_us", US)
    slow_rate = _number(sim.slow_rate, "slow_rate")
    if sim.latency == "exponential":
        spec.exponential_mean_ns = latency
    else:
        spec.latency_ns = latency
    if sim.latency != "long_tail" and (slow or slow_rate):
        # Silently dropped before: a slow share is only a long tail's.
        raise InvalidArgument(4, f"slow_us and slow_rate need latency=\"long_tail\", not {sim.latency!r}")
    if sim.latency == "long_tail" and slow_rate != 0:
        # With no slow share, a long tail is its common latency alone (the C ABI's form for it).
        spec.slow_latency_ns = slow
        spec.slow_rate = slow_rate
    if isinstance(sim.seed, bool) or not isinstance(sim.seed, int) or not 0 <= sim.seed < _U64:
        raise InvalidArgument(4, f"seed must be an int from 0 to 2**64-1, got {sim.seed!r}")
    spec.seed = sim.seed
    return spec


def _number(v: object, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{what} must be a number, not {type(v).__name__}")
    return float(v)


def _count(v: object, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{what} must be int, not {type(v).__name__}")
    if not 0 <= v < 2**32:
        raise InvalidArgument(4, f"{what} must be 0 or more (and below 2**32), got {v}")
    return v
