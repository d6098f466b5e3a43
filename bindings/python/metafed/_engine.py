"""A running engine: submit tasks, get completions as futures, asyncio or polls, run batches."""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
import weakref
from array import array
from collections import deque
from concurrent.futures import Future
from typing import Any, Iterable, Optional, Sequence, Union

from ._native import EngineClosed, EngineFull, InvalidArgument, check, ffi, lib
from ._topology import MESSAGES, Topology
from ._types import (
    AgentStats,
    BatchResult,
    BreakerMode,
    BreakerState,
    Completion,
    DomainStats,
    Failure,
    FailureKind,
    Level,
    Outcome,
    Reason,
    ShutdownReport,
    Stats,
    Task,
)

Domains = Union[int, str, Iterable[Union[int, str]]]

_FULL, _SHUTTING_DOWN = 8, 9
_CONFIG_FIELDS = {
    "workers", "pin", "max_in_flight", "worker_capacity", "batch", "idle_spins", "idle_yield_us",
    "isolated_queue", "panic_routing", "drain_timeout_ms", "max_concurrent", "queue_capacity",
    "essential_priority", "rate_limit_per_s", "rate_limit_burst",
}

_live: "weakref.WeakSet[Engine]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Stop every engine before the interpreter tears down, so that no engine thread calls into
    # Python during interpreter shutdown.
    for e in list(_live):
        e.close()


class Ticket(Future):  # type: ignore[type-arg]
    """A submitted task: a `concurrent.futures.Future` whose result is its `Completion`."""

    def __init__(self, ticket: int) -> None:
        super().__init__()
        self.ticket = ticket

    def __repr__(self) -> str:
        return f"<Ticket {self.ticket:#x} {'done' if self.done() else 'pending'}>"


def _completion(c: Any) -> Completion:
    failures = []
    for k in range(c.failures_len):
        f = c.failures[k]
        kind = FailureKind(f.kind)
        message = MESSAGES.take(c.id, f.agent) if kind == FailureKind.RAISED else None
        failures.append(Failure(f.domain, f.agent, kind, f.code, message))
    return Completion(
        ticket=c.ticket,
        id=c.id,
        outcome=Outcome(c.outcome),
        reason=Reason(c.reason),
        value=c.value,
        attempts=c.attempts,
        latency_ns=c.latency_ns,
        priority=c.priority,
        failures=tuple(failures),
        failures_total=c.failures_total,
    )


class Engine:
    """A running federation. Use it as a context manager, or call `close()` (also run at exit).

    Completions reach Python three ways: the `Ticket` future `submit` returns (also awaitable
    through `run`), `poll` for tasks submitted with `track=False`, and `run_many`, which runs a
    whole batch inside the library and returns counts (the fast path: no Python object per task).
    """

    def __init__(self, topology: Topology, **config: Any) -> None:
        if not isinstance(topology, Topology):
            raise TypeError(f"topology must be a metafed.Topology, not {type(topology).__name__}")
        cfg = ffi.new("metafed_engine_config *")
        check(lib().metafed_engine_config_init(cfg))
        for key, value in config.items():
            if key not in _CONFIG_FIELDS:
                raise TypeError(f"unknown engine setting {key!r} (known: {', '.join(sorted(_CONFIG_FIELDS))})")
            if isinstance(value, bool):
                value = int(value)
            if not isinstance(value, (int, float)):
                raise TypeError(f"engine setting {key} must be a number, not {type(value).__name__}")
            setattr(cfg, key, value)
        out = ffi.new("metafed_engine **")
        check(lib().metafed_engine_new(topology.handle, cfg, out))
        self._h = out[0]
        self._topology = topology
        self._keepalive = list(topology._agents)  # the Python handlers this engine may call
        self._domain_ids: dict[str, int] = {}
        self._lock = threading.Lock()  # guards _futures; held across submit and registration
        self._futures: dict[int, Ticket] = {}
        self._untracked: deque[Completion] = deque()
        self._untracked_ready = threading.Condition(threading.Lock())
        self._stopped = False  # the C shutdown has returned: every completion is queued
        self._closed = False
        self._report: Optional[ShutdownReport] = None
        self._task = ffi.new("metafed_task *")
        self._ticket_out = ffi.new("uint64_t *")
        self._dispatcher = threading.Thread(target=self._dispatch, name="metafed-dispatch", daemon=True)
        self._dispatcher.start()
        _live.add(self)

    # -- completions ---------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Takes completions from the library (the GIL is released while it waits) and resolves
        their futures, or queues them for `poll`."""
        buf = ffi.new("metafed_completion[256]")
        n = ffi.new("size_t *")
        l = lib()
        while True:
            stopped = self._stopped  # read before polling: then an empty poll means drained
            buf[0].struct_size = ffi.sizeof("metafed_completion")
            if l.metafed_engine_poll(self._h, buf, 256, 50, n) != 0:
                break
            k = n[0]
            if k == 0:
                if stopped:
                    break
                continue
            done = [_completion(buf[i]) for i in range(k)]
            resolved = []
            with self._lock:
                for c in done:
                    fut = self._futures.pop(c.ticket, None)
                    if fut is None:
                        with self._untracked_ready:
                            self._untracked.append(c)
                            self._untracked_ready.notify_all()
                    else:
                        resolved.append((fut, c))
            for fut, c in resolved:
                fut.set_result(c)
        # Anything left would never complete: say so rather than hang.
        with self._lock:
            left, self._futures = self._futures, {}
        for fut in left.values():
            fut.set_exception(EngineClosed(9, "the engine closed before the task completed"))

    # -- submission ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed or self._stopped:
            raise EngineClosed(9, "the engine is shut down")

    def domain_id(self, name: str) -> int:
        d = self._domain_ids.get(name)
        if d is None:
            d = self._domain_ids[name] = self._topology.domain_id(name)
        return d

    def _mask(self, domains: Domains) -> int:
        if isinstance(domains, bool):
            raise TypeError("domains must be a domain id, a name, or several")
        if isinstance(domains, (int, str)):
            domains = (domains,)
        mask = 0
        try:
            items = list(domains)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"domains must be a domain id, a name, or several, not {type(domains).__name__}") from None
        for d in items:
            if isinstance(d, str):
                d = self.domain_id(d)
            elif isinstance(d, bool) or not isinstance(d, int):
                raise TypeError(f"a domain is an id (int) or a name (str), not {type(d).__name__}")
            if not 0 <= d < 64:
                raise InvalidArgument(4, f"domain id {d} is out of range")
            mask |= 1 << d
        return mask

    def _fill(self, t: Any, task_id: int, domains: Domains, payload: int, data: bytes, priority: int, deadline: Optional[float]) -> Any:
        if isinstance(task_id, bool) or not isinstance(task_id, int):
            raise TypeError(f"task_id must be int, not {type(task_id).__name__}")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        if not 0 <= priority <= 3:
            raise InvalidArgument(4, f"priority {priority} is out of range (0 highest .. 3 lowest)")
        t.struct_size = ffi.sizeof("metafed_task")
        t.flags = 0
        t.id = task_id & 0xFFFFFFFFFFFFFFFF
        t.domains = self._mask(domains)
        t.payload = payload & 0xFFFFFFFFFFFFFFFF
        keep = ffi.from_buffer(data) if len(data) else ffi.NULL
        t.data = keep
        t.data_len = len(data)
        t.priority = priority
        t.deadline_us = 0 if deadline is None else max(1, int(deadline * 1e6))
        return keep

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
    ) -> Union[Ticket, int]:
        """Submits a task; waits while the engine is full (up to `timeout` seconds, forever if
        None). Returns a `Ticket` (a Future of its `Completion`), or, with `track=False`, the
        ticket number, whose completion `poll` returns."""
        self._check_open()
        l = lib()
        end = None if timeout is None else time.monotonic() + timeout
        pause = 1e-5
        while True:
            with self._lock:
                keep = self._fill(self._task, task_id, domains, payload, data, priority, deadline)
                status = l.metafed_engine_submit(self._h, self._task, self._ticket_out)
                if status == 0:
                    ticket = int(self._ticket_out[0])
                    if not track:
                        return ticket
                    fut = Ticket(ticket)
                    self._futures[ticket] = fut
                    return fut
            del keep
            if status != _FULL:
                check(status)
            if end is not None and time.monotonic() >= end:
                raise EngineFull(_FULL, "the engine stayed full until the timeout")
            time.sleep(pause)  # backpressure: let completions drain
            pause = min(pause * 2, 1e-3)

    def submit_many(self, tasks: Iterable[Task], *, timeout: Optional[float] = None) -> list[Ticket]:
        """Submits tasks in batches (one call into the library per batch); returns their tickets."""
        self._check_open()
        tasks = list(tasks)
        for t in tasks:
            if not isinstance(t, Task):
                raise TypeError(f"submit_many takes metafed.Task values, not {type(t).__name__}")
        out: list[Ticket] = []
        l = lib()
        batch = 256
        arr = ffi.new(f"metafed_task[{batch}]")
        tickets = ffi.new(f"uint64_t[{batch}]")
        n_out = ffi.new("size_t *")
        end = None if timeout is None else time.monotonic() + timeout
        i = 0
        while i < len(tasks):
            chunk = tasks[i : i + batch]
            keep = [self._fill(arr[k], t.id, t.domains, t.payload, t.data, t.priority, t.deadline) for k, t in enumerate(chunk)]
            with self._lock:
                status = l.metafed_engine_submit_batch(self._h, arr, len(chunk), tickets, n_out)
                m = n_out[0]
                for k in range(m):
                    fut = Ticket(int(tickets[k]))
                    self._futures[fut.ticket] = fut
                    out.append(fut)
            del keep
            i += m
            if status not in (0, _FULL):
                check(status)
            if m < len(chunk):
                if end is not None and time.monotonic() >= end:
                    raise EngineFull(_FULL, f"the engine stayed full until the timeout ({len(out)} of {len(tasks)} submitted)")
                time.sleep(1e-4)
        return out

    async def run(self, task_id: int, domains: Domains, **kwargs: Any) -> Completion:
        """Submits a task and awaits its completion (asyncio)."""
        ticket = self.submit(task_id, domains, **kwargs)
        assert isinstance(ticket, Ticket)
        return await asyncio.wrap_future(ticket)

    def wait(self, ticket: Ticket, timeout: Optional[float] = None) -> Completion:
        """The completion of `ticket`, waiting up to `timeout` seconds (TimeoutError after)."""
        if not isinstance(ticket, Ticket):
            raise TypeError(f"wait takes a Ticket, not {type(ticket).__name__}")
        return ticket.result(timeout)

    def poll(self, max_items: int = 256, timeout: float = 0.0) -> list[Completion]:
        """Completions of tasks submitted with `track=False`, up to `max_items`, waiting up to
        `timeout` seconds for the first."""
        with self._untracked_ready:
            if not self._untracked and timeout > 0:
                self._untracked_ready.wait_for(lambda: bool(self._untracked) or self._closed, timeout)
            out = []
            while self._untracked and len(out) < max_items:
                out.append(self._untracked.popleft())
            return out

    def run_many(self, ids: Union[Sequence[int], range, array], domains: Union[Domains, Sequence[int]], *, priority: int = 0, in_flight: int = 1024, outcomes: bool = False) -> BatchResult:
        """Runs a batch as a closed loop inside the library (the GIL is released throughout) and
        returns the counts per outcome: task `k` has id `ids[k]` and needs `domains` (one domain
        id or name for all) or `domains[k]` (a per-task sequence of domain ids). With
        `outcomes=True`, `result.outcomes[k]` is task `k`'s `Outcome` value."""
        self._check_open()
        id_arr = ids if isinstance(ids, array) and ids.typecode == "Q" else array("Q", ids)
        n = len(id_arr)
        if isinstance(domains, (int, str)) and not isinstance(domains, bool):
            dom_arr = array("Q", [self._mask(domains)])
        else:
            dom_arr = array("Q", (1 << self._check_domain(d) for d in domains))  # type: ignore[union-attr]
            if len(dom_arr) != n:
                raise InvalidArgument(4, f"domains has {len(dom_arr)} entries for {n} tasks")
        out_arr = array("i", bytes(4 * n)) if outcomes else None
        counts = ffi.new("uint64_t[4]")
        done = ffi.new("size_t *")
        start = time.perf_counter()
        status = lib().metafed_engine_run_batch(
            self._h,
            ffi.from_buffer("uint64_t[]", id_arr) if n else ffi.NULL,
            ffi.from_buffer("uint64_t[]", dom_arr) if len(dom_arr) else ffi.NULL,
            len(dom_arr),
            n,
            priority,
            in_flight,
            ffi.from_buffer("int32_t[]", out_arr) if out_arr is not None and n else ffi.NULL,
            counts,
            done,
        )
        elapsed = time.perf_counter() - start
        check(status)
        return BatchResult(n, int(done[0]), int(counts[0]), int(counts[1]), int(counts[2]), int(counts[3]), elapsed, out_arr)

    def _check_domain(self, d: Any) -> int:
        if isinstance(d, str):
            return self.domain_id(d)
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < 64:
            raise TypeError(f"a domain is an id (int in 0..63) or a name (str), not {d!r}")
        return d

    # -- watching and controlling --------------------------------------------------------

    def stats(self) -> Stats:
        """Counters per level, breaker states, latency percentiles and the model's prediction."""
        self._check_not_closed()
        l = lib()
        s = ffi.new("metafed_stats *")
        s.struct_size = ffi.sizeof("metafed_stats")
        check(l.metafed_engine_stats(self._h, s))
        domains, agents = [], []
        ds = ffi.new("metafed_domain_stats *")
        for d in range(s.domains):
            ds.struct_size = ffi.sizeof("metafed_domain_stats")
            check(l.metafed_engine_domain_stats(self._h, d, ds))
            domains.append(DomainStats(str(d), BreakerState(ds.state), ds.subtasks, ds.ok, ds.failed, ds.shed, ds.faults, ds.timeouts, ds.failovers, ds.recovered, ds.trips))
        a = ffi.new("metafed_agent_stats *")
        for i in range(s.agents):
            a.struct_size = ffi.sizeof("metafed_agent_stats")
            check(l.metafed_engine_agent_stats(self._h, i, a))
            agents.append(AgentStats(str(i), BreakerState(a.state), a.calls, a.failures, a.slow, a.panics, a.abandoned, a.overloaded, a.mean_latency_ns, a.trips, bool(a.in_rotation), bool(a.isolated)))
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
            reasons={Reason(r): s.reasons[r] for r in range(12) if s.reasons[r]},
            panic_routed=s.panic_routed,
            latency_p50_ns=s.latency_p50_ns,
            latency_p99_ns=s.latency_p99_ns,
            latency_p999_ns=s.latency_p999_ns,
            meta_breaker=BreakerState(s.meta_state),
            meta_trips=s.meta_trips,
            predicted_success=s.predicted_success,
            domains=domains,
            agents=agents,
        )

    def set_breaker_mode(self, level: Level, index: int, mode: BreakerMode) -> None:
        self._check_not_closed()
        check(lib().metafed_engine_set_breaker_mode(self._h, int(level), int(index), int(mode)))

    def set_domain_down(self, domain: Union[int, str], down: bool = True) -> None:
        self._check_not_closed()
        check(lib().metafed_engine_set_domain_down(self._h, self._check_domain(domain), int(bool(down))))

    def _check_not_closed(self) -> None:
        if self._closed:
            raise EngineClosed(2, "the engine is closed")

    # -- stopping ------------------------------------------------------------------------

    def shutdown(self, drain: float = 5.0) -> ShutdownReport:
        """Stops accepting tasks, lets those in flight finish for up to `drain` seconds, then
        completes the rest as rejected (SHUTTING_DOWN). Every outstanding Ticket resolves.
        Idempotent."""
        if self._report is not None:
            return self._report
        self._check_not_closed()
        r = ffi.new("metafed_shutdown_report *")
        r.struct_size = ffi.sizeof("metafed_shutdown_report")
        check(lib().metafed_engine_shutdown(self._h, max(0, int(drain * 1000)), r))
        self._stopped = True
        self._dispatcher.join()
        self._report = ShutdownReport(bool(r.drained), r.rejected, r.detached_threads, r.elapsed_us / 1e6)
        return self._report

    def close(self) -> None:
        """Shuts down (if not yet) and frees the engine. Idempotent; also runs at exit."""
        if self._closed:
            return
        if threading.current_thread() is self._dispatcher:
            raise RuntimeError("close() cannot be called from a completion callback")
        self.shutdown()
        self._closed = True
        with self._untracked_ready:
            self._untracked_ready.notify_all()
        lib().metafed_engine_free(self._h)
        _live.discard(self)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass
