"""A running engine: submit tasks, get completions as futures, asyncio or polls, run batches."""

from __future__ import annotations

import asyncio
import functools
import atexit
import json
import os
import sys
import threading
import time
import warnings
import weakref
from array import array
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Iterable, Literal, Mapping, Optional, Sequence, Union, overload

from ._native import (
    ENGINE_THREAD,
    MS,
    US,
    S,
    EngineClosed,
    EngineFull,
    InvalidArgument,
    UnknownDomain,
    WaitTimeout,
    check,
    ffi,
    lib,
    duration_ns,
    refuse_if_engine_thread,
    struct_reader,
)
from ._classify import Attrs, attr_pairs, fill_attrs
from ._classify import register as register_classifier
from ._classify import release as release_classifier
from ._classify import trampoline as classify_trampoline
from ._ops import AuditRecord, EventLogger, Health, audit_of, health_of, metrics_text_of, read_text, serve_admin_of
from ._topology import (
    CALLS,
    MESSAGES,
    AsyncHandler,
    Handler,
    Topology,
    alternate_list,
    apply_breaker_settings,
    balance_args,
    outlier_config,
    outlier_of,
    shedding_args,
    breaker_settings,
)
from ._types import (
    Admission,
    AgentStats,
    Balance,
    Outlier,
    Shedding,
    BatchResult,
    BreakerMode,
    BreakerSettings,
    BreakerState,
    Completion,
    DomainStats,
    Failure,
    FailureKind,
    Level,
    Outcome,
    Reason,
    ShutdownReport,
    SimAgent,
    Stats,
    Task,
)

Domains = Union[int, str, Iterable[Union[int, str]], None]
"""A task's domains: one id, one name, or several of either."""

_FULL = 8
_U64 = 1 << 64
_MAX_DEADLINE_S = 2_592_000.0  # 30 days: METAFED_MAX_DURATION_MS
# Failure kinds whose message, if the handler left one, is kept on the completion.
_WITH_MESSAGE = (FailureKind.ERROR, FailureKind.RAISED, FailureKind.INVALID_REPLY)


class Ticket(Future[Completion]):
    """A submitted task: a `concurrent.futures.Future` whose result is its `Completion`.

    A submitted task is already running, so `cancel()` returns False (as for any running
    future) and the task still completes; an asyncio wrapper of it (`Engine.run`) can be
    cancelled or time out safely. `result()` refuses to wait (WouldDeadlock) when called from a
    handler or a done-callback of the engine, where waiting could wait for itself."""

    def __init__(self, ticket: int) -> None:
        super().__init__()
        self.ticket = ticket
        self.set_running_or_notify_cancel()

    def result(self, timeout: Optional[float] = None) -> Completion:
        if not self.done():
            refuse_if_engine_thread("Ticket.result()")
        return super().result(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        if not self.done():
            refuse_if_engine_thread("Ticket.exception()")
        return super().exception(timeout)

    def __repr__(self) -> str:
        return f"<Ticket {self.ticket:#x} {'done' if self.done() else 'pending'}>"


_COMPLETION_FIELDS = (
    "outcome", "reason", "priority", "ticket", "id", "value", "latency_ns", "attempts", "failures_len",
    "failures_total", "bodies_len", "answered", "reroutes", "domains", "complexity",
)  # fmt: skip
_COMPLETION = struct_reader("metafed_completion", _COMPLETION_FIELDS)
_COMPLETION_SIZE = ffi.sizeof("metafed_completion")
_FAILURE = struct_reader("metafed_failure", ("domain", "agent", "kind", "code", "attempt"))
_FAILURE_SIZE = ffi.sizeof("metafed_failure")
_FAILURES_AT = ffi.offsetof("metafed_completion", "failures")
_TASK = struct_reader(
    "metafed_task",
    ("struct_size", "flags", "id", "domains", "payload", "data", "data_len", "priority", "deadline_ns", "key", "attrs",
     "attrs_len"),
)  # fmt: skip
_TASK_SIZE = ffi.sizeof("metafed_task")
_OUTCOMES = {int(v): v for v in Outcome}
_REASONS = {int(v): v for v in Reason}
_KINDS = {int(v): v for v in FailureKind}
_new = object.__new__
_fill_completion = object.__setattr__


def _enum(table: dict[int, Any], cls: Any, v: int) -> Any:
    got = table.get(v)
    return cls(v) if got is None else got  # an unknown value raises as cls(v) does


def _completion_at(array: Any, raw: Any, i: int) -> Completion:
    """The completion `array[i]` (`raw` is `ffi.buffer(array)`): its scalar fields read in one
    call, the Completion made without the frozen dataclass's field-by-field __init__ (it holds the
    same attributes; equality, repr and `dataclasses.replace` are the dataclass's)."""
    at = i * _COMPLETION_SIZE
    (outcome, reason, priority, ticket, id_, value, latency_ns, attempts, failures_len, failures_total, bodies_len,
     answered, reroutes, domains, complexity) = _COMPLETION.unpack_from(raw, at)  # fmt: skip
    failures: tuple[Failure, ...] = ()
    if failures_len:
        fs = []
        for k in range(failures_len):
            domain, agent, kind_v, code, attempt = _FAILURE.unpack_from(raw, at + _FAILURES_AT + k * _FAILURE_SIZE)
            kind = _enum(_KINDS, FailureKind, kind_v)
            message = MESSAGES.take(ticket, domain, attempt) if kind in _WITH_MESSAGE else None
            fs.append(Failure(domain, agent, kind, code, message, attempt))
        failures = tuple(fs)
    bodies: dict[int, bytes] = {}
    if bodies_len:
        c = array[i]
        bodies = {int(c.bodies[j].domain): bytes(ffi.buffer(c.bodies[j].data, c.bodies[j].len)) for j in range(bodies_len)}
    o = _new(Completion)
    outcome_e = _OUTCOMES.get(outcome)
    reason_e = _REASONS.get(reason)
    if outcome_e is None or reason_e is None:  # an unknown value raises as the enum's call does
        outcome_e, reason_e = Outcome(outcome), Reason(reason)
    _fill_completion(o, "__dict__", {
        "ticket": ticket, "id": id_, "outcome": outcome_e,
        "reason": reason_e, "value": value, "attempts": attempts, "latency_ns": latency_ns,
        "priority": priority, "failures": failures, "failures_total": failures_total, "bodies": bodies,
        "answered": _domain_ids(answered), "reroutes": reroutes, "domains": _domain_ids(domains),
        "complexity": complexity,
    })  # fmt: skip
    return o


@functools.lru_cache(maxsize=4096)
def _domain_ids(mask: int) -> frozenset[int]:
    """The domain ids of a bit set (cached: a completion has two, and sets repeat)."""
    return frozenset(d for d in range(64) if mask >> d & 1) if mask else frozenset()


class _State:
    """What an engine and its completion thread share. The thread holds this, never the
    Engine, so that an engine dropped without close() is collected (and then shut down)."""

    def __init__(self, handle: Any) -> None:
        self.h = handle
        self.lock = threading.Lock()  # guards futures; held across submit and registration
        # The Ticket of each tracked task (`Engine.run`'s futures are its loops' own).
        self.futures: dict[int, Ticket] = {}
        self.untracked: deque[Completion] = deque()
        self.untracked_ready = threading.Condition(threading.Lock())
        self.stopped = False  # the C shutdown has returned: every completion is queued
        self.closed = False
        self.forked = False  # this process is a fork of the one that started the engine
        self.explicit = False  # closed by close(), not by the collector
        self.drain = 5.0  # seconds: the engine's drain_timeout
        self.report: Optional[ShutdownReport] = None
        self.dispatcher: Optional[threading.Thread] = None
        self.events = EventLogger(handle)
        # `Engine.run`'s completion queue on each loop that has awaited one (inserted under `lock`).
        self.loop_queues: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopCompletions]" = weakref.WeakKeyDictionary()


_states: set[_State] = set()  # engines not yet closed, for interpreter exit and fork
_states_lock = threading.Lock()


def _dispatch(state: _State) -> None:
    """Takes completions from the library (the GIL is released while it waits) and resolves
    their futures, or queues them for `poll`. Done-callbacks run here: the thread counts as
    the engine's, so that a callback that waits on another ticket is refused."""
    ENGINE_THREAD.active = True
    buf = ffi.new("metafed_completion[256]")
    raw = ffi.buffer(buf)
    n = ffi.new("size_t *")
    l = lib()
    next_events = 0.0
    while True:
        now = time.monotonic()
        if now >= next_events:
            next_events = now + 0.25
            state.events.pump()
        stopped = state.stopped  # read before polling: then an empty poll means drained
        buf[0].struct_size = _COMPLETION_SIZE
        if l.metafed_engine_poll(state.h, buf, 256, 50 * MS, n) != 0:
            break
        k = n[0]
        if k == 0:
            if stopped:
                break
            continue
        done = [_completion_at(buf, raw, i) for i in range(k)]
        for i, c in enumerate(done):
            if c.bodies:  # the library's copy of reply bytes, read into `c`
                l.metafed_completion_release(buf + i)
        resolved = []
        with state.lock:
            for c in done:
                fut = state.futures.pop(c.ticket, None)
                if fut is None:
                    with state.untracked_ready:
                        state.untracked.append(c)
                        state.untracked_ready.notify_all()
                else:
                    resolved.append((fut, c))
        for fut, c in resolved:
            try:
                fut.set_result(c)
            except Exception:  # noqa: BLE001 - a future resolved elsewhere must not stop delivery
                pass
    state.events.pump()  # what the shutdown itself changed
    # Anything left would never complete: say so rather than hang.
    with state.lock:
        left, state.futures = state.futures, {}
    closed = EngineClosed(9, "the engine closed before the task completed")
    for fut in left.values():
        try:
            fut.set_exception(closed)
        except Exception:  # noqa: BLE001
            pass


def _to_loop(loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the loop is closed: nobody awaits these any more
        pass


_SUBMIT_BATCH = 256
_E_HANDLE, _E_SHUTTING_DOWN = 2, 9


def _error_of(status: int) -> BaseException:
    try:
        check(status)
    except BaseException as e:  # noqa: BLE001 - the exception of a status, to hand to a future
        return e
    return RuntimeError(f"status {status}")


def _none() -> None:
    return None


class _LoopCompletions:
    """`Engine.run` on one asyncio loop: its submissions, and its completions.

    The tasks a loop's `run` calls submit in one iteration go to the library together (one call
    for up to 256, at the end of the iteration), naming a completion queue of the library's (ABI
    1.7) whose descriptor the loop watches. Completions are taken in batches on the loop's own
    thread: no thread stands between the engine and the awaiters, so no GIL is handed back and
    forth, and a batch costs one wake-up of the loop. Used on its loop's thread only, so it
    needs no lock."""

    def __init__(self, state: _State, loop: asyncio.AbstractEventLoop) -> None:
        l = lib()
        out = ffi.new("metafed_completion_queue **")
        check(l.metafed_engine_completion_queue_new(state.h, out))
        self.handle = ffi.gc(out[0], l.metafed_completion_queue_free)
        fd = ffi.new("int32_t *")
        check(l.metafed_completion_queue_get_fd(self.handle, fd))
        self.fd = int(fd[0])
        # Weakly: the loop holds this (its reader), and a closed loop must be collectable, its
        # queue then freed (and with it the slots of its tasks still running).
        self.loop_ref = weakref.ref(loop)
        self.h = state.h
        self.futures: dict[int, asyncio.Future[Completion]] = {}
        # The task records of the next submission, each naming the queue (`_fill` leaves that
        # field), and for each its future, what keeps its bytes alive, and when to give up
        # while the engine is full.
        self.tasks = ffi.new(f"metafed_task[{_SUBMIT_BATCH}]")
        self.tasks_raw = ffi.buffer(self.tasks)
        for i in range(_SUBMIT_BATCH):
            self.tasks[i].completion_queue = self.handle
        self.pending: list[tuple[asyncio.Future[Completion], Any, Optional[float]]] = []
        self.tickets = ffi.new(f"uint64_t[{_SUBMIT_BATCH}]")
        self.n_out = ffi.new("size_t *")
        self.submit_at: Optional[asyncio.Handle] = None
        self.backing_off = False  # the engine was full: the next try is on a timer
        self.pause = 1e-4
        self.buf = ffi.new("metafed_completion[256]")
        self.raw = ffi.buffer(self.buf)
        self.n = ffi.new("size_t *")
        self.watching = True
        loop.add_reader(self.fd, self.drain)

    def submit(self) -> None:
        """Submits what waits, in one call; what the engine has no room for waits for the next
        try (backing off up to 5 ms), and fails with EngineFull past its timeout."""
        self.submit_at = None
        self.backing_off = False
        l = lib()
        futures, tickets = self.futures, self.tickets
        while self.pending:
            pending = self.pending
            k = len(pending)
            status = l.metafed_engine_submit_batch(self.h, self.tasks, k, tickets, self.n_out)
            m = int(self.n_out[0])
            for i in range(m):
                futures[tickets[i]] = pending[i][0]
            if m == k:
                pending.clear()
                self.pause = 1e-4
                return
            if status == 0:
                self._keep(range(m, k))  # a prefix went: the next call says why the rest did not
                continue
            # Nothing went (m is 0): `status` is why the first task was refused.
            if status == _FULL:
                now = time.monotonic()
                late = [i for i in range(k) if (end := pending[i][2]) is not None and now >= end]
                for i in late:
                    if not pending[i][0].done():
                        pending[i][0].set_exception(EngineFull(_FULL, "the engine stayed full until the timeout"))
                self._keep([i for i in range(k) if i not in late] if late else range(k))
                loop = self.loop_ref()
                if self.pending and loop is not None:
                    self.backing_off = True
                    self.submit_at = loop.call_later(self.pause, self.submit)
                    self.pause = min(self.pause * 2, 5e-3)
                return
            error = _error_of(status)
            refused = range(k) if status in (_E_SHUTTING_DOWN, _E_HANDLE) else range(1)  # all, or the first
            for i in refused:
                if not pending[i][0].done():
                    pending[i][0].set_exception(error)
            self._keep(range(len(refused), k))

    def _keep(self, keep: Iterable[int]) -> None:
        """Keeps the pending tasks `keep` (indices, in order), their records moved to the front."""
        pending, tasks, size = self.pending, self.tasks, _TASK_SIZE
        kept = []
        for j, i in enumerate(keep):
            if i != j:
                ffi.memmove(tasks + j, tasks + i, size)
            kept.append(pending[i])
        self.pending = kept

    def drain(self) -> None:
        """Resolves the futures of every completion that waits (on the loop)."""
        l = lib()
        buf, raw, n, futures = self.buf, self.raw, self.n, self.futures
        while True:
            buf[0].struct_size = _COMPLETION_SIZE
            check(l.metafed_completion_queue_take(self.handle, buf, 256, n))
            k = n[0]
            for i in range(k):
                c = _completion_at(buf, raw, i)
                if c.bodies:  # the library's copy of reply bytes, read into `c`
                    l.metafed_completion_release(buf + i)
                fut = futures.pop(c.ticket, None)
                if fut is not None and not fut.done():  # its awaiter may have been cancelled
                    fut.set_result(c)
            if k < 256:
                return

    def close(self, error: BaseException) -> None:
        """After the engine's shutdown (every completion delivered): resolves what came, fails
        what never will, and stops watching (on the loop)."""
        loop = self.loop_ref()
        if self.watching and loop is not None and not loop.is_closed():
            self.watching = False
            loop.remove_reader(self.fd)
        if self.submit_at is not None:
            self.submit_at.cancel()
            self.submit_at = None
        self.drain()
        left = list(self.futures.values()) + [p[0] for p in self.pending]
        self.futures, self.pending = {}, []
        for fut in left:
            if not fut.done():
                fut.set_exception(error)

    def abandon(self) -> None:
        """Its loop is closed: nobody can await its tasks any more. Frees the library's queue now
        (what its tasks still running deliver is discarded and their slots freed)."""
        self.futures, self.pending = {}, []
        self.watching = False
        ffi.release(self.handle)


def _close_loop_queues(state: _State) -> None:
    """Hands each loop's completion queue its last completions, on its loop."""
    with state.lock:
        queues = list(state.loop_queues.values())
    closed = EngineClosed(9, "the engine closed before the task completed")
    try:
        here: Optional[asyncio.AbstractEventLoop] = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    for q in queues:
        loop = q.loop_ref()
        if loop is None or loop.is_closed():
            continue  # nobody awaits its tasks; collected with the engine's state
        if loop is here:
            q.close(closed)
        else:
            _to_loop(loop, q.close, closed)


def _shutdown_state(state: _State, drain: float) -> ShutdownReport:
    if state.report is not None:
        return state.report
    r = ffi.new("metafed_shutdown_report *")
    r.struct_size = ffi.sizeof("metafed_shutdown_report")
    check(lib().metafed_engine_shutdown(state.h, duration_ns(max(0.0, drain), "drain", S), r))
    state.stopped = True
    if state.dispatcher is not None and state.dispatcher is not threading.current_thread():
        state.dispatcher.join()
    _close_loop_queues(state)
    state.report = ShutdownReport(bool(r.drained), int(r.rejected), int(r.detached_threads), r.elapsed_ns / 1e9)
    return state.report


def _close_state(state: _State) -> None:
    """Shuts the engine down (if not yet) and frees it; runs once, from close(), the collector,
    or interpreter exit."""
    if state.closed:
        return
    with _states_lock:
        _states.discard(state)
    if state.forked:
        state.closed = True  # the engine's threads live in the parent; nothing to stop here
        return
    if not state.explicit:
        warnings.warn("a metafed.Engine was dropped without close(); closing it now", ResourceWarning, stacklevel=2)
    if ENGINE_THREAD.active or (state.dispatcher is threading.current_thread()):
        # Collected on an engine thread: the library shuts down from a thread of its own.
        state.closed = True
        lib().metafed_engine_free(state.h)
        return
    try:
        _shutdown_state(state, state.drain)
    finally:
        state.closed = True
        with state.untracked_ready:
            state.untracked_ready.notify_all()
        lib().metafed_engine_free(state.h)


@atexit.register
def _close_all() -> None:
    # Stop every engine before the interpreter tears down, then wait for Python handlers still
    # running (a worker inside Python code when the interpreter finalizes would be killed in a
    # way that aborts the process). New handler calls are refused from here on.
    with CALLS.lock:
        CALLS.exiting = True
    with _states_lock:
        states = list(_states)
    for s in states:
        s.explicit = True
        try:
            _close_state(s)
        except Exception:  # noqa: BLE001 - exit must go on
            pass
    waited = 0.0
    while True:
        with CALLS.lock:
            running = CALLS.running
        if running == 0:
            return
        if waited >= 5.0 and int(waited * 100) % 500 == 0:
            print(f"metafed: waiting for {running} handler call(s) to return before exit", file=sys.stderr)
        time.sleep(0.01)
        waited += 0.01


def _after_fork_in_child() -> None:
    with _states_lock:
        for s in _states:
            s.forked = True


_AT_FORK = hasattr(os, "register_at_fork")
if _AT_FORK:
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _int_arg(v: object, what: str, lo: int = 0, hi: int = _U64 - 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{what} must be int, not {type(v).__name__}")
    if not lo <= v <= hi:
        raise InvalidArgument(4, f"{what} must be {lo} to {hi}, got {v}")
    return v



def key_of(name: str) -> int:
    """The engine's key for a name (a tenant, a client): what `submit(..., key=name)` uses."""
    if not isinstance(name, str):
        raise TypeError(f"name must be str, not {type(name).__name__}")
    out = ffi.new("uint64_t *")
    check(lib().metafed_key_of(name.encode(), out))
    return int(out[0])


def _key_arg(key: object) -> int:
    if key is None:
        return 0
    if isinstance(key, str):
        return key_of(key)
    if isinstance(key, bool) or not isinstance(key, int):
        raise TypeError(f"key must be an int or a str, not {type(key).__name__}")
    if not 0 <= key < 2**64:
        raise InvalidArgument(4, f"key must be 0 to 2**64-1, got {key}")
    return key


def _reasons_of(s: Any) -> dict[Reason, int]:
    """Completions by reason from a `metafed_stats`: ABI 1.0's array, and the reasons after it
    (each a field of its own)."""
    out = {Reason(r): int(s.reasons[r]) for r in range(len(s.reasons)) if s.reasons[r]}
    if s.domain_overloaded:
        out[Reason.DOMAIN_OVERLOADED] = int(s.domain_overloaded)
    if s.unclassified:
        out[Reason.UNCLASSIFIED] = int(s.unclassified)
    return out

class Engine:
    """A running federation. Use it as a context manager, or call `close()`; an engine dropped
    without either is closed when collected (with a ResourceWarning), and every open engine is
    closed at interpreter exit.

    Completions reach Python three ways: the `Ticket` future `submit` returns (also awaitable
    through `run`), `poll` for tasks submitted with `track=False`, and `run_many`, which runs a
    whole batch inside the library and returns counts (the fast path: no Python object per task).

    Time budgets (set on the topology, `Topology.set_timeouts`) apply to every task, breakers or
    not: 50 ms per attempt, 200 ms per sub-task, 500 ms per task from submission (time waiting
    for a worker included). A task's own `deadline` can only shorten them.

    The keyword settings are those of the C `metafed_engine_config` (None keeps the default):
    `workers` (0: one per core), `pin`, `max_in_flight` (task slots), `worker_capacity`,
    `batch`, `idle_spins`, `idle_yield_us`, `isolated_queue`, `panic_routing`,
    `drain_timeout_ms`, `max_concurrent`, `queue_capacity`, `essential_priority`,
    `rate_limit_per_s`, `rate_limit_burst`, `queue_timeout_ms` (how long a task may wait for the
    throttle; 0: no bound), and `spare_agents` (16) and `spare_domains` (4), the
    agents and domains `add_agent` and `add_domain` can add while the engine runs.
    `keyed_limits` is a mapping of the fields of `[engine.keyed_limits]` in TOML (`capacity`,
    `default_per_s`, `default_burst`, `classes`: [{`name`, `per_s`, `burst`, `keys`}]): rate
    limits per task key (`submit(..., key=)`). `adaptive_throttle` is a mapping of the fields of
    `[engine.adaptive_throttle]` (`algorithm`: "aimd" or "gradient2"; `initial_limit`,
    `min_limit`, `max_limit`; AIMD's `backoff_ratio` and `target_latency` in ms; Gradient2's
    `smoothing`, `queue_size`, `long_window`): the throttle's limit moved by latency;
    `admission()` then reports the limit in force."""

    def __init__(
        self,
        topology: Topology,
        *,
        workers: Optional[int] = None,
        pin: Optional[bool] = None,
        max_in_flight: Optional[int] = None,
        worker_capacity: Optional[int] = None,
        batch: Optional[int] = None,
        idle_spins: Optional[int] = None,
        idle_yield_us: Optional[int] = None,
        isolated_queue: Optional[int] = None,
        panic_routing: Optional[bool] = None,
        drain_timeout_ms: Optional[int] = None,
        max_concurrent: Optional[int] = None,
        queue_capacity: Optional[int] = None,
        essential_priority: Optional[int] = None,
        rate_limit_per_s: Optional[float] = None,
        rate_limit_burst: Optional[float] = None,
        queue_timeout_ms: Optional[float] = None,
        spare_agents: Optional[int] = None,
        spare_domains: Optional[int] = None,
        keyed_limits: Optional[Mapping[str, Any]] = None,
        adaptive_throttle: Optional[Mapping[str, Any]] = None,
    ) -> None:
        if not isinstance(topology, Topology):
            raise TypeError(f"topology must be a metafed.Topology, not {type(topology).__name__}")
        cfg = ffi.new("metafed_engine_config *")
        cfg.struct_size = ffi.sizeof("metafed_engine_config")
        check(lib().metafed_engine_config_init(cfg))
        ints = {
            "workers": workers,
            "max_in_flight": max_in_flight,
            "worker_capacity": worker_capacity,
            "batch": batch,
            "idle_spins": idle_spins,
            "isolated_queue": isolated_queue,
            "max_concurrent": max_concurrent,
            "queue_capacity": queue_capacity,
            "essential_priority": essential_priority,
            "spare_agents": spare_agents,
            "spare_domains": spare_domains,
        }
        for key, value in ints.items():
            if value is not None:
                setattr(cfg, key, _int_arg(value, key, 0, 2**32 - 1))
        if idle_yield_us is not None:
            cfg.idle_yield_ns = _int_arg(idle_yield_us, "idle_yield_us", 0, 2**32 - 1) * US
        if drain_timeout_ms is not None:
            cfg.drain_timeout_ns = duration_ns(_int_arg(drain_timeout_ms, "drain_timeout_ms", 0, 2**32 - 1), "drain_timeout_ms", MS)
        for key, flag in (("pin", pin), ("panic_routing", panic_routing)):
            if flag is not None:
                if not isinstance(flag, bool):
                    raise TypeError(f"{key} must be bool, not {type(flag).__name__}")
                setattr(cfg, key, int(flag))
        if queue_timeout_ms is not None:
            cfg.queue_timeout_ns = duration_ns(queue_timeout_ms, "queue_timeout_ms", MS)
        for key, num in (("rate_limit_per_s", rate_limit_per_s), ("rate_limit_burst", rate_limit_burst)):
            if num is not None:
                if isinstance(num, bool) or not isinstance(num, (int, float)):
                    raise TypeError(f"{key} must be a number, not {type(num).__name__}")
                setattr(cfg, key, float(num))
        keyed_json = None
        if keyed_limits is not None:
            if not isinstance(keyed_limits, Mapping):
                raise TypeError(f"keyed_limits must be a mapping (the fields of [engine.keyed_limits]), not {type(keyed_limits).__name__}")
            keyed_json = ffi.new("char[]", json.dumps(dict(keyed_limits)).encode())
            cfg.keyed_limits_json = keyed_json
        adaptive_json = None
        if adaptive_throttle is not None:
            if not isinstance(adaptive_throttle, Mapping):
                raise TypeError(f"adaptive_throttle must be a mapping (the fields of [engine.adaptive_throttle]), not {type(adaptive_throttle).__name__}")
            adaptive_json = ffi.new("char[]", json.dumps(dict(adaptive_throttle)).encode())
            cfg.adaptive_throttle_json = adaptive_json
        out = ffi.new("metafed_engine **")
        check(lib().metafed_engine_new(topology.handle, cfg, out))
        del keyed_json, adaptive_json
        self._state = _State(out[0])
        self._state.drain = cfg.drain_timeout_ns / S  # what close() and shutdown() allow by default
        self._pid = os.getpid()
        self._topology = topology
        self._keepalive = list(topology._agents)  # the Python handlers this engine may call
        self._domain_ids: dict[str, int] = {}
        self._names: Optional[tuple[list[str], list[str]]] = None
        self._task = ffi.new("metafed_task *")
        self._task_raw = ffi.buffer(self._task)
        self._ticket_out = ffi.new("uint64_t *")
        # The loop `run` last ran on, and its completion queue (a hint, read without a lock; weak,
        # so that it keeps neither alive).
        self._loop_queue: tuple[Callable[[], Any], Callable[[], Optional[_LoopCompletions]]] = (_none, _none)
        with _states_lock:
            _states.add(self._state)
        self._state.dispatcher = threading.Thread(target=_dispatch, args=(self._state,), name="metafed-dispatch", daemon=True)
        self._state.dispatcher.start()
        self._finalizer = weakref.finalize(self, _close_state, self._state)
        self._finalizer.atexit = False  # _close_all does it, and waits for handlers

    # -- checks ----------------------------------------------------------------------------

    def _check_process(self) -> None:
        # The at-fork hook marks a child's engines; without one (no os.register_at_fork), ask for
        # the pid, a system call on every call.
        if self._state.forked or (not _AT_FORK and os.getpid() != self._pid):
            self._state.forked = True
            raise EngineClosed(
                9,
                f"this engine belongs to process {self._pid}, and this is a fork of it ({os.getpid()}): its "
                "threads do not exist here; start a new engine in the child",
            )

    def _check_open(self) -> None:
        self._check_process()
        if self._state.closed or self._state.stopped:
            raise EngineClosed(9, "the engine is shut down")

    def _check_not_closed(self) -> None:
        self._check_process()
        if self._state.closed:
            raise EngineClosed(2, "the engine is closed")

    # -- submission ----------------------------------------------------------------------

    def domain_id(self, name: str) -> int:
        """The id of the domain called `name` (UnknownDomain if there is none)."""
        d = self._domain_ids.get(name)
        if d is None:
            # The engine's names (domains may be added while it runs; a name added again after
            # a removal is the newest domain of that name).
            domains, _ = self._name_lists()
            if name not in domains:
                self._names = None
                domains, _ = self._name_lists()
            if name in domains:
                d = len(domains) - 1 - domains[::-1].index(name)
            else:
                d = self._topology.domain_id(name)  # raises UnknownDomain, naming it
            self._domain_ids[name] = d
        return d

    def _mask(self, domains: Domains) -> int:
        if isinstance(domains, bool):
            raise TypeError("domains must be a domain id, a name, or several")
        if isinstance(domains, (int, str)):
            domains = (domains,)
        if domains is None:
            raise InvalidArgument(4, "domains names no domain")
        try:
            items = list(domains)
        except TypeError:
            raise TypeError(f"domains must be a domain id, a name, or several, not {type(domains).__name__}") from None
        if not items:
            raise InvalidArgument(4, "domains names no domain")
        mask = 0
        for d in items:
            mask |= 1 << self._check_domain(d)
        return mask

    def _check_domain(self, d: object) -> int:
        if isinstance(d, str):
            return self.domain_id(d)
        if isinstance(d, bool) or not isinstance(d, int):
            raise TypeError(f"a domain is an id (int) or a name (str), not {type(d).__name__}")
        if not 0 <= d < 64:
            raise InvalidArgument(4, f"domain id {d} is out of range (0 to 63)")
        return d

    def _fill(
        self, raw: Any, records: Any, k: int, task_id: int, domains: Domains, payload: int, data: bytes, priority: int, deadline: Optional[float],
        key: Union[int, str, None] = None, attrs: Attrs = None,
    ) -> Any:
        """Fills task record `records[k]` (`raw` is `ffi.buffer(records)`); returns what must stay
        alive until the library call returns."""
        if not (type(task_id) is int and 0 <= task_id < _U64 and type(payload) is int and 0 <= payload < _U64):
            _int_arg(task_id, "task_id")
            _int_arg(payload, "payload")
        if not (type(priority) is int and 0 <= priority <= 3):
            _int_arg(priority, "priority", 0, 3)
        if type(data) is not bytes and not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        if deadline is not None:
            if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
                raise TypeError(f"deadline must be a number of seconds, not {type(deadline).__name__}")
            if not 0 < deadline <= _MAX_DEADLINE_S:
                raise InvalidArgument(4, f"deadline must be more than 0 and at most {_MAX_DEADLINE_S:.0f} s (30 days), got {deadline}")
        if type(domains) is int and 0 <= domains < 64:
            mask = 1 << domains  # the common case, without _mask's general path
        else:
            mask = 0 if domains is None else self._mask(domains)
        key_v = 0 if key is None else _key_arg(key)
        deadline_ns = 0 if deadline is None else max(1, round(deadline * S))
        keep: Any = ffi.NULL
        address = 0
        if len(data):
            keep = ffi.from_buffer(data)
            address = int(ffi.cast("uintptr_t", keep))
        # One write of every field (attrs none: the library reads no attrs pointer then).
        _TASK.pack_into(raw, k * _TASK_SIZE, _TASK_SIZE, 0, task_id, mask, payload, address, len(data), priority, deadline_ns, key_v, 0, 0)
        if attrs is not None:
            keep = (keep, fill_attrs(records[k], attr_pairs(attrs)))
        return keep

    @overload
    def submit(
        self,
        task_id: int,
        domains: Domains,
        *,
        payload: int = 0,
        data: bytes = b"",
        priority: int = 0,
        deadline: Optional[float] = None,
        timeout: Optional[float] = None,
        track: Literal[True] = True,
        key: Union[int, str, None] = None,
        attrs: Attrs = None,
    ) -> Ticket: ...

    @overload
    def submit(
        self,
        task_id: int,
        domains: Domains,
        *,
        payload: int = 0,
        data: bytes = b"",
        priority: int = 0,
        deadline: Optional[float] = None,
        timeout: Optional[float] = None,
        track: Literal[False],
        key: Union[int, str, None] = None,
        attrs: Attrs = None,
    ) -> int: ...

    def submit(
        self,
        task_id: int,
        domains: Domains,
        *,
        payload: int = 0,
        data: bytes = b"",
        priority: int = 0,
        deadline: Optional[float] = None,
        timeout: Optional[float] = None,
        track: bool = True,
        key: Union[int, str, None] = None,
        attrs: Attrs = None,
    ) -> Union[Ticket, int]:
        """Submits a task: `task_id` (0 to 2**64-1) is its correlation id, `domains` what it
        needs, `payload` and `data` what handlers see, `priority` 0 (highest) to 3, `deadline`
        seconds from now (the task budget of 500 ms applies anyway). Waits while the engine is
        full, up to `timeout` seconds (forever if None; EngineFull after). Returns a `Ticket`
        (a Future of its `Completion`), or with `track=False` the ticket number, whose
        completion `poll` returns. `key` (an int, or a str the engine hashes; see `key_of`) is the
        task's key for the engine's keyed rate limits. `domains` None: the engine's classifier
        routes the task by its `attrs` (a dict of str, or (name, value) pairs) and bytes. From a
        handler it never waits: a full engine raises WouldDeadlock."""
        self._check_open()
        end = None if timeout is None else time.monotonic() + timeout
        pause = 1e-5
        while True:
            got: Union[Ticket, int, None] = self._submit_now(
                task_id, domains, payload, data, priority, deadline, Ticket if track else None, key, attrs
            )
            if got is not None:
                return got
            if end is not None and time.monotonic() >= end:
                raise EngineFull(_FULL, "the engine stayed full until the timeout")
            refuse_if_engine_thread("submit() on a full engine")
            time.sleep(pause)  # backpressure: let completions drain (the GIL is released)
            pause = min(pause * 2, 1e-3)

    def _submit_now(
        self,
        task_id: int,
        domains: Domains,
        payload: int,
        data: bytes,
        priority: int,
        deadline: Optional[float],
        waiter: Any,
        key: Union[int, str, None] = None,
        attrs: Attrs = None,
    ) -> Any:
        """One try at submitting: None when the engine is full; else the ticket number
        (`waiter` None) or a new `Ticket` (`waiter` is the Ticket class)."""
        state = self._state
        with state.lock:
            keep = self._fill(self._task_raw, self._task, 0, task_id, domains, payload, data, priority, deadline, key, attrs)
            status = lib().metafed_engine_submit(state.h, self._task, self._ticket_out)
            if status == 0:
                ticket = int(self._ticket_out[0])
                if waiter is None:
                    return ticket
                if waiter is Ticket:
                    waiter = Ticket(ticket)
                state.futures[ticket] = waiter
                return waiter
        del keep
        if status != _FULL:
            check(status)
        return None

    def submit_many(self, tasks: Iterable[Task], *, timeout: Optional[float] = None) -> list[Ticket]:
        """Submits tasks in batches (one call into the library per batch); returns their tickets."""
        self._check_open()
        tasks = list(tasks)
        for t in tasks:
            if not isinstance(t, Task):
                raise TypeError(f"submit_many takes metafed.Task values, not {type(t).__name__}")
        out: list[Ticket] = []
        state = self._state
        l = lib()
        batch = 256
        arr = ffi.new(f"metafed_task[{batch}]")
        raw = ffi.buffer(arr)
        tickets = ffi.new(f"uint64_t[{batch}]")
        n_out = ffi.new("size_t *")
        end = None if timeout is None else time.monotonic() + timeout
        i = 0
        while i < len(tasks):
            chunk = tasks[i : i + batch]
            keep = [
                self._fill(raw, arr, k, t.id, t.domains, t.payload, t.data, t.priority, t.deadline, t.key, t.attrs)
                for k, t in enumerate(chunk)
            ]
            with state.lock:
                status = l.metafed_engine_submit_batch(state.h, arr, len(chunk), tickets, n_out)
                m = n_out[0]
                for k in range(m):
                    fut = Ticket(int(tickets[k]))
                    state.futures[fut.ticket] = fut
                    out.append(fut)
            del keep
            i += m
            if status not in (0, _FULL):
                check(status)
            if m < len(chunk):
                if end is not None and time.monotonic() >= end:
                    raise EngineFull(_FULL, f"the engine stayed full until the timeout ({len(out)} of {len(tasks)} submitted)")
                refuse_if_engine_thread("submit_many() on a full engine")
                time.sleep(1e-4)
        return out

    async def run(
        self,
        task_id: int,
        domains: Domains,
        *,
        payload: int = 0,
        data: bytes = b"",
        priority: int = 0,
        deadline: Optional[float] = None,
        timeout: Optional[float] = None,
        key: Union[int, str, None] = None,
        attrs: Attrs = None,
    ) -> Completion:
        """Submits a task and awaits its completion (asyncio). While the engine is full it awaits
        (the event loop runs on), up to `timeout` seconds. Cancelling it (or
        `asyncio.wait_for` timing out) is safe: the task runs to its end regardless."""
        self._check_open()
        loop = asyncio.get_running_loop()
        cached = self._loop_queue
        q = cached[1]() if cached[0]() is loop else None
        if q is None:
            q = self._loop_queue_of(loop)
        if type(data) is not bytes and isinstance(data, (bytearray, memoryview)):
            data = bytes(data)  # submitted at the end of the loop's turn: as it is now
        fut: asyncio.Future[Completion] = loop.create_future()
        end = None if timeout is None else time.monotonic() + timeout
        pause = 1e-4
        # Packed here (bad arguments raise here), submitted with the others of this loop
        # iteration, resolved by the loop itself when its completion queue's descriptor says
        # completions wait.
        while True:
            k = len(q.pending)
            if k < _SUBMIT_BATCH:
                keep = self._fill(q.tasks_raw, q.tasks, k, task_id, domains, payload, data, priority, deadline, key, attrs)
                q.pending.append((fut, keep, end))
                if k == 0 and q.submit_at is None:
                    q.submit_at = loop.call_soon(q.submit)
                elif k + 1 == _SUBMIT_BATCH and q.submit_at is not None and not q.backing_off:
                    q.submit_at.cancel()
                    q.submit()  # a full batch goes now
                break
            # A full batch that the engine had no room for: wait for the next try.
            if end is not None and time.monotonic() >= end:
                raise EngineFull(_FULL, "the engine stayed full until the timeout")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5e-3)
        # Cancelling the awaiter cancels `fut` only; the task runs to its end regardless.
        return await fut

    def _loop_queue_of(self, loop: asyncio.AbstractEventLoop) -> _LoopCompletions:
        """This engine's completion queue on `loop` (made on first use, on the loop)."""
        state = self._state
        with state.lock:
            q = state.loop_queues.get(loop)
            if q is None:
                # Loops closed since (each `asyncio.run` makes one): free their queues now.
                for old, oq in list(state.loop_queues.items()):
                    if old.is_closed():
                        del state.loop_queues[old]
                        oq.abandon()
                q = state.loop_queues[loop] = _LoopCompletions(state, loop)
        self._loop_queue = (weakref.ref(loop), weakref.ref(q))
        return q

    def wait(self, ticket: Ticket, timeout: Optional[float] = None) -> Completion:
        """The completion of `ticket`, waiting up to `timeout` seconds (TimeoutError after)."""
        if not isinstance(ticket, Ticket):
            raise TypeError(f"wait takes a Ticket, not {type(ticket).__name__}")
        return ticket.result(timeout)

    def poll(self, max_items: int = 256, timeout: float = 0.0) -> list[Completion]:
        """Completions of tasks submitted with `track=False`, up to `max_items`, waiting up to
        `timeout` seconds for the first. EngineClosed once the engine is closed."""
        self._check_not_closed()
        _int_arg(max_items, "max_items", 1, 2**31)
        state = self._state
        with state.untracked_ready:
            if not state.untracked and timeout > 0:
                refuse_if_engine_thread("poll() with a timeout")
                state.untracked_ready.wait_for(lambda: bool(state.untracked) or state.closed, timeout)
            out: list[Completion] = []
            while state.untracked and len(out) < max_items:
                out.append(state.untracked.popleft())
            return out

    def run_many(
        self,
        ids: Union[Sequence[int], range, "array[int]"],
        domains: Union[Domains, Sequence[int]],
        *,
        priority: int = 0,
        in_flight: int = 1024,
        outcomes: bool = False,
        timeout: Optional[float] = None,
    ) -> BatchResult:
        """Runs a batch as a closed loop inside the library (the GIL is released while it runs)
        and returns the counts per outcome: task `k` has id `ids[k]` and needs `domains` (one
        domain id or name for all) or `domains[k]` (a per-task sequence of domain ids), with at
        most `in_flight` in flight. With `outcomes=True`, `result.outcomes[k]` is task `k`'s
        `Outcome` value. It runs in slices of about 20 ms, so Ctrl-C interrupts it and `timeout`
        (seconds) ends it (WaitTimeout, with the partial result as `.result`)."""
        self._check_open()
        refuse_if_engine_thread("run_many()")
        _int_arg(priority, "priority", 0, 3)
        _int_arg(in_flight, "in_flight", 1, 2**31)
        try:
            id_arr = ids if isinstance(ids, array) and ids.typecode == "Q" else array("Q", ids)
        except (OverflowError, TypeError):
            raise InvalidArgument(4, "ids must be ints from 0 to 2**64-1") from None
        n = len(id_arr)
        if isinstance(domains, (int, str)) and not isinstance(domains, bool):
            dom_arr = array("Q", [self._mask(domains)])
        else:
            dom_arr = array("Q", (1 << self._check_domain(d) for d in domains))  # type: ignore[union-attr]
            if len(dom_arr) != n:
                raise InvalidArgument(4, f"domains has {len(dom_arr)} entries for {n} tasks")
        out_arr = array("i", bytes(4 * n)) if outcomes else None
        counts = [0, 0, 0, 0]
        c_counts = ffi.new("uint64_t[4]")
        done = ffi.new("size_t *")
        ids_p = ffi.from_buffer("uint64_t[]", id_arr) if n else ffi.NULL
        dom_p = ffi.from_buffer("uint64_t[]", dom_arr)
        out_p = ffi.from_buffer("int32_t[]", out_arr) if out_arr is not None and n else ffi.NULL
        per_task = len(dom_arr) > 1
        start = time.perf_counter()
        # A slice holds at least the window (`in_flight`), and starts at that: a slice ends when
        # all its tasks have, so with slow tasks a slice of thousands kept Ctrl-C waiting for
        # seconds (12.5 s with 200 ms tasks at 64 in flight).
        floor = in_flight
        pos, chunk = 0, min(4096, max(floor, 64))
        end = None if timeout is None else time.monotonic() + timeout

        def result() -> BatchResult:
            return BatchResult(n, pos, counts[0], counts[1], counts[2], counts[3], time.perf_counter() - start, out_arr)

        while pos < n:
            k = min(chunk, n - pos)
            t0 = time.perf_counter()
            status = lib().metafed_engine_run_batch(
                self._state.h,
                ids_p + pos,
                dom_p + pos if per_task else dom_p,
                k if per_task else 1,
                k,
                priority,
                in_flight,
                out_p + pos if out_p != ffi.NULL else ffi.NULL,
                c_counts,
                done,
            )
            for j in range(4):
                counts[j] += int(c_counts[j])
            pos += int(done[0])
            check(status)
            # Slices of about 20 ms: short enough for Ctrl-C and timeouts, long enough that the
            # window drained at each slice's end costs little.
            took = max(time.perf_counter() - t0, 1e-6)
            chunk = max(floor, min(1 << 22, int(chunk * 0.02 / took)))
            if end is not None and time.monotonic() >= end and pos < n:
                e = WaitTimeout(11, f"run_many timed out after {pos} of {n} tasks")
                e.result = result()  # type: ignore[attr-defined]
                raise e
        return result()

    # -- watching and controlling --------------------------------------------------------

    def _name_lists(self, counts: Optional[tuple[int, int]] = None) -> tuple[list[str], list[str]]:
        # Ids are never reused: the lists only grow, when domains or agents are added while
        # running (`counts`, the engine's (domains, agents) now, tells).
        if self._names is None or (counts is not None and counts != (len(self._names[0]), len(self._names[1]))):
            l = lib()
            s = ffi.new("metafed_stats *")
            s.struct_size = ffi.sizeof("metafed_stats")
            check(l.metafed_engine_get_stats(self._state.h, s))
            buf = ffi.new("char[512]")
            domains, agents = [], []
            for d in range(s.domains):
                check(l.metafed_engine_get_domain_name(self._state.h, d, buf, 512, ffi.NULL))
                domains.append(ffi.string(buf).decode())
            for a in range(s.agents):
                check(l.metafed_engine_get_agent_name(self._state.h, a, buf, 512, ffi.NULL))
                agents.append(ffi.string(buf).decode())
            self._names = (domains, agents)
        return self._names

    def stats(self) -> Stats:
        """Counters per level, breaker states, latency percentiles and the model's prediction."""
        self._check_not_closed()
        l = lib()
        h = self._state.h
        s = ffi.new("metafed_stats *")
        s.struct_size = ffi.sizeof("metafed_stats")
        check(l.metafed_engine_get_stats(h, s))
        domain_names, agent_names = self._name_lists((s.domains, s.agents))
        weight = ffi.new("uint32_t *")
        domains, agents = [], []
        ds = ffi.new("metafed_domain_stats *")
        for d in range(s.domains):
            ds.struct_size = ffi.sizeof("metafed_domain_stats")
            check(l.metafed_engine_get_domain_stats(h, d, ds))
            domains.append(
                DomainStats(
                    domain_names[d], BreakerState(ds.state), ds.subtasks, ds.ok, ds.failed, ds.shed, ds.faults, ds.timeouts,
                    ds.failovers, ds.recovered, ds.trips, ds.hedges, ds.hedge_wins, ds.budget_denied, ds.waited,
                    ds.rerouted,
                )
            )
        a = ffi.new("metafed_agent_stats *")
        for i in range(s.agents):
            a.struct_size = ffi.sizeof("metafed_agent_stats")
            check(l.metafed_engine_get_agent_stats(h, i, a))
            removed = l.metafed_engine_get_agent_weight(h, i, weight) != 0  # refused for a removed agent
            agents.append(
                AgentStats(
                    agent_names[i], BreakerState(a.state), a.calls, a.failures, a.slow, a.panics, a.abandoned, a.overloaded,
                    a.mean_latency_ns, a.trips, bool(a.in_rotation), bool(a.isolated), a.deferred, a.cancelled, a.in_flight,
                    a.max_concurrency, 0 if removed else int(weight[0]), removed, a.ejections,
                )
            )
        return Stats(
            workers=s.workers,
            slots=s.slots,
            in_flight=s.in_flight,
            submit_full=s.submit_full,
            admitted=s.admitted,
            completed=s.completed,
            ok=s.outcomes[0],
            failed=s.outcomes[1],
            timed_out=s.outcomes[2],
            rejected=s.outcomes[3],
            reasons=_reasons_of(s),
            panic_routed=s.panic_routed,
            latency_p50_ns=s.latency_p50_ns,
            latency_p99_ns=s.latency_p99_ns,
            latency_p999_ns=s.latency_p999_ns,
            meta_breaker=BreakerState(s.meta_state),
            meta_trips=s.meta_trips,
            predicted_success=s.predicted_success,
            domains=domains,
            agents=agents,
            late_results=s.late_results,
            events_dropped=s.events_dropped,
            classified=int(s.classified),
            unclassified=int(s.unclassified),
            cost_held=float(s.cost_held),
        )

    def set_breaker_mode(self, level: Level, index: int, mode: BreakerMode) -> None:
        """Forces a breaker open, disables it, or returns it to normal. `index` is the domain or
        agent id (0 for the meta level)."""
        self._check_not_closed()
        _int_arg(index, "index", 0, 2**32 - 1)
        check(lib().metafed_engine_set_breaker_mode(self._state.h, int(level), index, int(mode)))

    def set_domain_down(self, domain: Union[int, str], down: bool = True) -> None:
        """Marks a domain down (every call to its agents fails: a correlated fault) or up."""
        self._check_not_closed()
        if not isinstance(down, bool):
            raise TypeError(f"down must be bool, not {type(down).__name__}")
        check(lib().metafed_engine_set_domain_down(self._state.h, self._check_domain(domain), int(down)))

    def set_keyed_limits(self, keyed_limits: Mapping[str, Any]) -> None:
        """Changes the keyed rate limits' quotas and classes while tasks run (a mapping as
        `Engine(keyed_limits=)` takes; the capacity stays as it started). Audited."""
        self._check_not_closed()
        if not isinstance(keyed_limits, Mapping):
            raise TypeError(f"keyed_limits must be a mapping, not {type(keyed_limits).__name__}")
        check(lib().metafed_engine_set_keyed_limits_json(self._state.h, json.dumps(dict(keyed_limits)).encode()))

    def keyed_stats(self) -> Optional[dict[str, Any]]:
        """What the keyed rate limits counted (`tracked`, `capacity`, `evicted`, `table_full`,
        `classes`: [name, admitted, refused] per quota class), or None without keyed limits."""
        self._check_not_closed()
        h = self._state.h
        text = read_text(lambda b, c, n: lib().metafed_engine_get_keyed_stats_json(h, b, c, n))
        out: Optional[dict[str, Any]] = json.loads(text)
        return out

    def set_balance(self, domain: Union[int, str], balance: Balance) -> None:
        """Changes how `domain` chooses its agents while tasks run (see `Balance`); switching to
        peak EWMA starts its agents' estimates afresh. Recorded in the audit trail."""
        self._check_not_closed()
        args = balance_args(balance)
        check(lib().metafed_engine_set_domain_balance(self._state.h, self._check_domain(domain), *args))

    def set_alternates(self, domain: Union[int, str], alternates: Sequence[Union[int, str]]) -> None:
        """Changes the domains (ids or names, in order) that a sub-task of `domain` is rerouted
        to when it fails at `domain` (see `Topology.set_alternates`); an empty list stops its
        rerouting. Workers reroute by them from their next turn. Recorded in the audit trail."""
        self._check_not_closed()
        ids = [self._check_domain(a) for a in alternate_list(alternates)]
        check(lib().metafed_engine_set_domain_alternates(self._state.h, self._check_domain(domain), ids, len(ids)))

    def set_classifier(self, classifier: Optional[Any]) -> None:
        """Installs a classifier for tasks that name no domain while tasks run, or (None) removes
        it (see `Topology.set_classifier`). Refused while the engine has `[classify]` rules
        (`set_classify("")` removes them). Recorded in the audit trail."""
        self._check_not_closed()
        if classifier is None:
            check(lib().metafed_engine_set_classifier(self._state.h, ffi.NULL, ffi.NULL, ffi.NULL))
            return
        c = register_classifier(classifier, weakref.WeakMethod(self._check_domain))
        check(lib().metafed_engine_set_classifier(self._state.h, classify_trampoline, c.handle, release_classifier))

    def set_classify(self, toml: str) -> None:
        """Replaces the decision engine's settings while tasks run, from TOML text holding a
        `[classify]` table (rules, bands, key_attr; "" removes them). ConfigError names a bad
        field and changes nothing. Recorded in the audit trail."""
        self._check_not_closed()
        if not isinstance(toml, str):
            raise TypeError(f"toml must be str, not {type(toml).__name__}")
        check(lib().metafed_engine_set_classify_toml(self._state.h, toml.encode()))

    def alternates(self, domain: Union[int, str]) -> list[int]:
        """The ids of the domains a sub-task of `domain` is rerouted to now, in order."""
        self._check_not_closed()
        out, n = ffi.new("uint16_t[8]"), ffi.new("size_t *")
        check(lib().metafed_engine_get_domain_alternates(self._state.h, self._check_domain(domain), out, 8, n))
        return [int(out[i]) for i in range(min(int(n[0]), 8))]

    def set_outlier(self, domain: Union[int, str], outlier: Optional[Outlier]) -> None:
        """Gives `domain` outlier detection while tasks run, changes it, or (None) removes it
        (see `Outlier`). Recorded in the audit trail."""
        self._check_not_closed()
        cfg = outlier_config(outlier)
        check(lib().metafed_engine_set_domain_outlier(self._state.h, self._check_domain(domain), cfg))

    def set_shedding(self, domain: Union[int, str], shedding: Optional[Shedding]) -> None:
        """Gives `domain` adaptive shedding while tasks run, changes it, or (None) removes it
        (see `Shedding`). Recorded in the audit trail."""
        self._check_not_closed()
        args = shedding_args(shedding)
        check(lib().metafed_engine_set_domain_shedding(self._state.h, self._check_domain(domain), *args))

    def shedding(self, domain: Union[int, str]) -> Optional[Shedding]:
        """`domain`'s adaptive shedding now, or None."""
        self._check_not_closed()
        t, i, c = ffi.new("uint64_t *"), ffi.new("uint64_t *"), ffi.new("uint32_t *")
        check(lib().metafed_engine_get_domain_shedding(self._state.h, self._check_domain(domain), t, i, c))
        return Shedding(t[0] / MS, i[0] / MS, int(c[0])) if t[0] else None

    def outlier(self, domain: Union[int, str]) -> Optional[Outlier]:
        """`domain`'s outlier detection now, or None."""
        self._check_not_closed()
        cfg = ffi.new("metafed_outlier_config *")
        cfg.struct_size = ffi.sizeof("metafed_outlier_config")
        on = ffi.new("int32_t *")
        check(lib().metafed_engine_get_domain_outlier(self._state.h, self._check_domain(domain), cfg, on))
        return outlier_of(cfg) if on[0] else None

    def balance(self, domain: Union[int, str]) -> Balance:
        """How `domain` chooses its agents now."""
        self._check_not_closed()
        kind, decay, rtt = ffi.new("int32_t *"), ffi.new("uint64_t *"), ffi.new("uint64_t *")
        check(lib().metafed_engine_get_domain_balance(self._state.h, self._check_domain(domain), kind, decay, rtt))
        if kind[0] == 0:
            return Balance()
        return Balance("peak_ewma", decay[0] / MS, rtt[0] / MS)

    def set_agent_down(self, agent: int, down: bool = True) -> None:
        """Marks one agent (by id) down (every call to it fails, kind DOWN: an outage drill) or
        up again. Its breaker and its domain react as to any failing agent."""
        self._check_not_closed()
        _int_arg(agent, "agent", 0, 0xFFFF)
        if not isinstance(down, bool):
            raise TypeError(f"down must be bool, not {type(down).__name__}")
        check(lib().metafed_engine_set_agent_down(self._state.h, agent, int(down)))

    def add_agent(
        self,
        domain: Union[int, str],
        name: str,
        handler: Union[Handler, AsyncHandler, SimAgent, None] = None,
        *,
        sim: Optional[SimAgent] = None,
        max_concurrency: int = 0,
        weight: int = 1,
        loop: Optional[asyncio.AbstractEventLoop] = None,
    ) -> int:
        """Adds an agent to a domain (id or name) of the running engine and returns its id; the
        arguments are those of `Topology.add_agent` (an isolated agent needs a restart). Workers
        route to it from their next turn. It takes one of the engine's spare agent ids
        (`Engine(..., spare_agents=)`, 16 by default); ids are never reused. ConfigError says why when it
        cannot (a name the domain has, no spare id left). Recorded in the audit trail."""
        self._check_not_closed()
        self._names = None  # domains may have been added since
        domains, _ = self._name_lists()
        if isinstance(domain, bool) or not isinstance(domain, (int, str)):
            raise TypeError(f"domain must be a domain id or name, not {type(domain).__name__}")
        dname = domain if isinstance(domain, str) else (domains[domain] if 0 <= domain < len(domains) else None)
        if dname is None:
            raise UnknownDomain(6, f"domain id {domain} does not exist")
        scratch = Topology()
        try:
            d = scratch.add_domain(dname)
            scratch.add_agent(d, name, handler, sim=sim, max_concurrency=max_concurrency, weight=weight, loop=loop)
            out = ffi.new("uint16_t *")
            check(lib().metafed_engine_add_agent(self._state.h, scratch.handle, dname.encode(), name.encode(), out))
            self._keepalive.extend(scratch._agents)
        finally:
            scratch.close()
        return int(out[0])

    def add_domain(self, name: str) -> int:
        """Adds a domain to the running engine and returns its id; tasks may name it at once, so
        add its agents (`add_agent`) first. It takes one of the engine's spare domain ids
        (`Engine(..., spare_domains=)`, 4 by default), with no injected faults, one attempt per
        agent, and no hedging or retry budget. ConfigError says why when it cannot. Recorded in
        the audit trail."""
        self._check_not_closed()
        if not isinstance(name, str):
            raise TypeError(f"name must be str, not {type(name).__name__}")
        out = ffi.new("uint16_t *")
        check(lib().metafed_engine_add_domain(self._state.h, name.encode(), out))
        self._names = None
        self._domain_ids.pop(name, None)
        return int(out[0])

    def remove_domain(self, domain: Union[int, str]) -> None:
        """Removes a domain (id or name) from the running engine: tasks that name it are refused
        from now on (UnknownDomain); the sub-tasks already admitted run to their outcome, so no
        task is lost. Its id is not reused; its counters stay in `stats()`. Recorded in the audit
        trail."""
        self._check_not_closed()
        d = self.domain_id(domain) if isinstance(domain, str) else domain
        _int_arg(d, "domain", 0, 0xFFFF)
        check(lib().metafed_engine_remove_domain(self._state.h, d))
        self._domain_ids = {k: v for k, v in self._domain_ids.items() if v != d}

    def remove_agent(self, agent: int) -> None:
        """Removes an agent (by id) from the running engine: workers stop routing to it from
        their next turn, its attempts in flight finish, no task is lost. Its id is not reused
        and its counters stay in `stats()` (marked `removed`). Recorded in the audit trail."""
        self._check_not_closed()
        _int_arg(agent, "agent", 0, 0xFFFF)
        check(lib().metafed_engine_remove_agent(self._state.h, agent))

    def set_agent_weight(self, agent: int, weight: int) -> None:
        """Changes an agent's routing weight (1 to 100) while tasks run: an agent of weight 3
        is chosen first three times as often as one of weight 1. Recorded in the audit trail."""
        self._check_not_closed()
        _int_arg(agent, "agent", 0, 0xFFFF)
        _int_arg(weight, "weight", 0, 2**32 - 1)
        check(lib().metafed_engine_set_agent_weight(self._state.h, agent, weight))

    def agent_weight(self, agent: int) -> int:
        """An agent's routing weight now."""
        self._check_not_closed()
        _int_arg(agent, "agent", 0, 0xFFFF)
        out = ffi.new("uint32_t *")
        check(lib().metafed_engine_get_agent_weight(self._state.h, agent, out))
        return int(out[0])

    def set_agent_in_rotation(self, agent: int, in_rotation: bool = True) -> None:
        """Takes an agent (by id) out of its domain's rotation, or puts it back."""
        self._check_not_closed()
        _int_arg(agent, "agent", 0, 0xFFFF)
        if not isinstance(in_rotation, bool):
            raise TypeError(f"in_rotation must be bool, not {type(in_rotation).__name__}")
        check(lib().metafed_engine_set_agent_in_rotation(self._state.h, agent, int(in_rotation)))

    # -- operating -----------------------------------------------------------------------

    def metrics_text(self, openmetrics: bool = False) -> str:
        """The engine's Prometheus metrics now: the text format (what `promtool` and
        `prometheus_client`'s parser read), or OpenMetrics with `openmetrics=True`. For an
        application's own `/metrics`, register `metafed.prometheus.EngineCollector(engine)`."""
        self._check_not_closed()
        if not isinstance(openmetrics, bool):
            raise TypeError(f"openmetrics must be bool, not {type(openmetrics).__name__}")
        return metrics_text_of(self._state.h, openmetrics)

    def health(self) -> Health:
        """What `/health` says: healthy, degraded (agents out, or a domain measurably worse than
        predicted) or unhealthy (a domain unserved, the meta level degraded, shutting down), with
        the reasons and the reliability monitor per domain."""
        self._check_not_closed()
        return health_of(self._state.h)

    def serve_admin(self, addr: str = "127.0.0.1:9464", token: Optional[str] = None) -> int:
        """Starts the admin endpoint (GET /metrics, /health, /ready) on a thread of the engine's
        and returns its port (`addr` with port 0 picks a free one). With `token`, requests must
        carry `Authorization: Bearer <token>`. It stops with `stop_admin()` or `close()`."""
        self._check_open()
        return serve_admin_of(self._state.h, addr, token)

    def stop_admin(self) -> None:
        """Stops the admin endpoint (InvalidArgument if it is not running)."""
        self._check_not_closed()
        check(lib().metafed_engine_stop_admin(self._state.h))

    def set_rate_limit(self, per_s: float, burst: float = 1.0) -> None:
        """Changes the admission rate limit while tasks run: `per_s` tasks per second (0: no
        limit), bursts of up to `burst`. Recorded in the audit trail."""
        self._check_not_closed()
        for name, v in (("per_s", per_s), ("burst", burst)):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"{name} must be a number, not {type(v).__name__}")
        check(lib().metafed_engine_set_rate_limit(self._state.h, float(per_s), float(burst)))

    _ADMISSION_FIELDS = (
        "max_concurrent", "queue_capacity", "essential_priority", "priority_reserve", "rate_limit_per_s",
        "rate_limit_burst", "max_cost", "min_cost", "queue_timeout_ms",
    )

    def admission(self) -> Admission:
        """The admission settings now (see Admission; read by key too, as the dict it was)."""
        self._check_not_closed()
        cfg = ffi.new("metafed_admission_config *")
        cfg.struct_size = ffi.sizeof("metafed_admission_config")
        check(lib().metafed_engine_get_admission(self._state.h, cfg))
        out: dict[str, Any] = {k: getattr(cfg, k) for k in self._ADMISSION_FIELDS if k != "queue_timeout_ms"}
        out["priority_reserve"] = tuple(cfg.priority_reserve)
        out["queue_timeout_ms"] = cfg.queue_timeout_ns / MS
        return Admission(**out)

    def set_admission(self, settings: Optional[Admission] = None, /, **changes: Any) -> None:
        """Changes admission settings while tasks run: all of them from an Admission (say
        `dataclasses.replace(engine.admission(), max_concurrent=64)`), and the fields named as
        keywords; those not given keep their current values. Turning the throttle off lets the
        tasks waiting for it go on. Checked whole (a bad value raises ConfigError naming it, and
        nothing changes); each changed setting is an audit record."""
        self._check_not_closed()
        if settings is not None:
            if not isinstance(settings, Admission):
                raise TypeError(f"settings must be metafed.Admission, not {type(settings).__name__}")
            changes = {**dict(settings.items()), **changes}
        cfg = ffi.new("metafed_admission_config *")
        cfg.struct_size = ffi.sizeof("metafed_admission_config")
        check(lib().metafed_engine_get_admission(self._state.h, cfg))
        for key, v in changes.items():
            if key not in self._ADMISSION_FIELDS:
                raise TypeError(f"set_admission() got an unexpected setting {key!r}; "
                                f"known: {', '.join(self._ADMISSION_FIELDS)}")
            if key == "priority_reserve":
                shares = list(v)
                if len(shares) != 4:
                    raise ValueError(f"priority_reserve must have 4 shares, got {len(shares)}")
                for i, r in enumerate(shares):
                    if isinstance(r, bool) or not isinstance(r, (int, float)):
                        raise TypeError(f"priority_reserve[{i}] must be a number, not {type(r).__name__}")
                    cfg.priority_reserve[i] = float(r)
            elif key == "queue_timeout_ms":
                cfg.queue_timeout_ns = duration_ns(v, key, MS)
            elif key.startswith("rate_limit") or key in ("max_cost", "min_cost"):
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise TypeError(f"{key} must be a number, not {type(v).__name__}")
                setattr(cfg, key, float(v))
            else:
                _int_arg(v, key, 0, 2**32 - 1)
                setattr(cfg, key, v)
        check(lib().metafed_engine_set_admission(self._state.h, cfg))

    def set_agent_max_concurrency(self, agent: int, limit: int) -> None:
        """Changes an agent's limit on attempts in flight while tasks run (the agent must have
        been started with one; the new limit is at least 1). Recorded in the audit trail."""
        self._check_not_closed()
        _int_arg(agent, "agent", 0, 0xFFFF)
        _int_arg(limit, "limit", 1, 2**32 - 1)
        check(lib().metafed_engine_set_agent_max_concurrency(self._state.h, agent, limit))

    def breaker_config(self, level: Level) -> BreakerSettings:
        """A level's breaker settings now (see BreakerSettings; read by key too, as the dict it
        was)."""
        self._check_not_closed()
        cfg = ffi.new("metafed_breaker_config *")
        cfg.struct_size = ffi.sizeof("metafed_breaker_config")
        check(lib().metafed_engine_get_breaker_config(self._state.h, int(level), cfg))
        return breaker_settings(cfg)

    def set_breaker(self, level: Level, settings: Optional[BreakerSettings] = None, /, **changes: float) -> None:
        """Changes a level's breaker settings while tasks run: all of them from BreakerSettings
        (say `dataclasses.replace(engine.breaker_config(level), failure_rate=0.3)`), and the
        fields named as keywords (as `Topology.set_breaker`: timeout_ms, consecutive_failures,
        failure_rate, window_ms, min_calls, open_base_ms, open_max_ms, half_open_probes, mode,
        count_window, slow_call_duration_ms, slow_call_rate); those not given keep their current
        values.
        `timeout_ms` is also the level's time budget. Breakers keep their state. Recorded in the
        audit trail."""
        self._check_not_closed()
        cfg = ffi.new("metafed_breaker_config *")
        cfg.struct_size = ffi.sizeof("metafed_breaker_config")
        check(lib().metafed_engine_get_breaker_config(self._state.h, int(level), cfg))
        apply_breaker_settings(cfg, changes, settings)
        check(lib().metafed_engine_set_breaker_config(self._state.h, int(level), cfg))

    def audit_log(self, after: int = 0) -> list[AuditRecord]:
        """The operator actions recorded (the newest 1,024), oldest first; with `after`, those
        numbered above it. Name the actor with `metafed.acting_as(...)`."""
        self._check_not_closed()
        _int_arg(after, "after")
        return audit_of(self._state.h, after)

    # -- stopping ------------------------------------------------------------------------

    def shutdown(self, drain: Optional[float] = None) -> ShutdownReport:
        """Stops accepting tasks, lets those in flight finish for up to `drain` seconds (by
        default the engine's `drain_timeout_ms`, 5 s unless set), then completes the rest as
        rejected (SHUTTING_DOWN). Every outstanding Ticket resolves. Idempotent. Not from a
        handler (WouldDeadlock)."""
        if self._state.report is not None:
            return self._state.report
        self._check_not_closed()
        refuse_if_engine_thread("shutdown()")
        return _shutdown_state(self._state, self._state.drain if drain is None else drain)

    def close(self) -> None:
        """Shuts down (if not yet, letting tasks in flight finish for up to the engine's
        `drain_timeout_ms`) and frees the engine. Idempotent; also runs at exit. Not from a
        handler or a done-callback (WouldDeadlock)."""
        if self._state.closed:
            return
        if not self._state.forked:
            refuse_if_engine_thread("close()")
        self._state.explicit = True
        self._finalizer()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
