"""asyncio for `async def` handlers: the loop the package runs when an agent names none, and the
path of attempts to and from a loop.

Attempts of an `async def` agent wait in a native queue, one per loop (the library's
`metafed_attempt_queue`): an engine thread queues them without running any Python, so it never
waits for the GIL. The loop watches the queue's file descriptor; once woken it takes one batch
of the attempts that wait in one call (one batch per turn), starts a task for each, and gives
the answers back to the engine in one call per loop iteration. An attempt's timeout counts from
when the loop takes it (and the loop's cancellation from its batch's start), so a loop that falls
behind makes attempts wait (the task's deadline and the domain timeout still bound the wait),
not time out in a cascade of failovers."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import types
import weakref
from typing import Any, Callable, Optional

from ._native import check, ffi, lib, struct_reader
from ._types import Request

_lock = threading.Lock()
_loop: Optional[asyncio.AbstractEventLoop] = None


def default_loop() -> asyncio.AbstractEventLoop:
    """The package's loop, started if it is not running."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="metafed-asyncio", daemon=True).start()
            ready.wait()
            _loop = loop
        return _loop


_HANDLER_OK, _HANDLER_ERROR, _HANDLER_RAISED, _HANDLER_PENDING, _HANDLER_TIMED_OUT = 0, 1, 2, 3, 5
_BATCH = 256
_U64 = 1 << 64
_QUEUED = struct_reader(
    "metafed_queued_attempt",
    ("domain", "agent", "attempt.engine", "attempt.id", "tag", "ticket", "task_id", "payload", "data_len",
     "timeout_ns", "attempt_number", "fanout", "priority"),
)  # fmt: skip
_QUEUED_SIZE = ffi.sizeof("metafed_queued_attempt")
_ANSWER = struct_reader("metafed_attempt", ("engine", "id"))
_ANSWER_SIZE = ffi.sizeof("metafed_attempt")
_RESPONSE = struct_reader("metafed_response", ("struct_size", "code", "value", "data", "data_len"))
_RESPONSE_SIZE = ffi.sizeof("metafed_response")


class LoopQueue:
    """The queue of one loop's `async def` attempts, and its handlers by tag.

    `reply(value, error, key)` (from the topology module) turns a handler's result or exception
    into (return code, code, value, bytes)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, reply: Callable[..., tuple[int, int, int, bytes]]) -> None:
        self.loop = loop
        self._reply = reply
        out = ffi.new("metafed_attempt_queue **")
        check(lib().metafed_attempt_queue_new(0, out))
        self.handle = ffi.gc(out[0], lib().metafed_attempt_queue_free)
        fd = ffi.new("int32_t *")
        check(lib().metafed_attempt_queue_get_fd(self.handle, fd))
        self.fd = int(fd[0])
        self.handlers: list[Callable[..., Any]] = []
        self._lock = threading.Lock()
        self._watching = False
        self._take = ffi.new(f"metafed_queued_attempt[{_BATCH}]")
        self._n = ffi.new("size_t *")
        self._answers: list[tuple[int, int, int, int, int, bytes]] = []
        self._flush_at: Optional[asyncio.Handle] = None
        self._timed_out: set[asyncio.Task[Any]] = set()
        self._take_raw = ffi.buffer(self._take)
        self._attempts = ffi.new(f"metafed_attempt[{_BATCH}]")
        self._results = ffi.new(f"int32_t[{_BATCH}]")
        self._responses = ffi.new(f"metafed_response[{_BATCH}]")
        self._attempts_raw = ffi.buffer(self._attempts)
        self._responses_raw = ffi.buffer(self._responses)

    def add(self, fn: Callable[..., Any]) -> int:
        """Registers a handler; returns its tag. Starts watching the descriptor on first use."""
        with self._lock:
            self.handlers.append(fn)
            tag = len(self.handlers) - 1
            if not self._watching:
                self._watching = True
                # From any thread, before or while the loop runs.
                self.loop.call_soon_threadsafe(self.loop.add_reader, self.fd, self._drain)
        return tag

    def stats(self) -> dict[str, int]:
        s = ffi.new("metafed_attempt_queue_stats *")
        s.struct_size = ffi.sizeof("metafed_attempt_queue_stats")
        check(lib().metafed_attempt_queue_get_stats(self.handle, s))
        return {k: int(getattr(s, k)) for k in ("capacity", "waiting", "high_water", "queued", "taken", "expired", "refused")}

    # -- on the loop ----------------------------------------------------------------------

    def _drain(self) -> None:
        """Takes one batch of the attempts that wait and starts a task for each. One batch per
        turn of the loop: the descriptor stays readable while more wait, so a loop that falls
        behind takes them as it can start them, and they wait in the engine meanwhile."""
        l = lib()
        buf, n, raw = self._take, self._n, self._take_raw
        loop = self.loop
        handlers = self.handlers
        run = self._run
        create_task = loop.create_task
        buf[0].struct_size = _QUEUED_SIZE
        check(l.metafed_attempt_queue_take(self.handle, buf, _BATCH, n))
        k = int(n[0])
        groups: dict[int, list[tuple[asyncio.Task[Any], int, int]]] = {}
        for i in range(k):
            (domain, agent, engine, aid, tag, ticket, task_id, payload, data_len, timeout_ns, number, fanout,
             priority) = _QUEUED.unpack_from(raw, i * _QUEUED_SIZE)  # fmt: skip
            data = bytes(ffi.buffer(buf[i].data, data_len)) if data_len else b""
            r = Request(ticket, task_id, payload, data, domain, agent, number, fanout, priority, timeout_ns / 1e9)
            # One task per attempt, whose coroutine calls the handler and hands the answer back
            # itself (no done-callback to schedule).
            task = create_task(run(handlers[tag], r, engine, aid))
            group = groups.get(timeout_ns)
            entry = (task, engine, aid)
            if group is None:
                groups[timeout_ns] = [entry]
            else:
                group.append(entry)
        if groups:
            # The timeouts start once the batch's tasks have taken their first steps (this runs
            # after them, in the same turn): an attempt's time is its own, not its batch's.
            loop.call_soon(self._arm, groups)

    def _arm(self, groups: dict[int, list[tuple[asyncio.Task[Any], int, int]]]) -> None:
        """One timer per batch and timeout (the attempts of a batch mostly share one)."""
        call_later = self.loop.call_later
        for timeout_ns, entries in groups.items():
            call_later(timeout_ns / 1e9, self._expire, entries)

    async def _run(self, handler: Callable[..., Any], r: Request, engine: int, aid: int) -> None:
        """Runs one attempt's handler and queues its answer: its value, its exception, or (cancelled
        by `_expire`) timed out; cancelled by anyone else, it is dropped (the engine abandons it)."""
        try:
            coro = handler(r)
            if type(coro) is not types.CoroutineType and not inspect.isawaitable(coro):
                raise TypeError(f"an async handler returned {type(coro).__name__}, not an awaitable")
            value = await coro
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task in self._timed_out:
                self._timed_out.discard(task)
                self._queue((engine, aid), _HANDLER_TIMED_OUT, 0, 0, b"")
            else:
                self._queue((engine, aid), _HANDLER_PENDING, 0, 0, b"")
            raise
        except BaseException as e:  # noqa: BLE001 - the attempt fails; the loop goes on
            self._settled()
            self._answer((engine, aid), (r.ticket, r.domain, r.attempt), None, e)
            if not isinstance(e, Exception):
                raise  # SystemExit, KeyboardInterrupt: after the answer, as asyncio would
            return
        self._settled()
        if type(value) is int and 0 <= value < _U64:  # the common answer, queued directly
            self._answers.append((engine, aid, _HANDLER_OK, 0, value, b""))
            if self._flush_at is None:
                self._flush_at = self.loop.call_soon(self._flush)
            return
        self._answer((engine, aid), (r.ticket, r.domain, r.attempt), value, None)

    def _expire(self, entries: list[tuple[asyncio.Task[Any], int, int]]) -> None:
        for t, engine, aid in entries:
            if not t.done():
                self._timed_out.add(t)
                t.cancel()
                # Rarely needed: a task cancelled before its first step never runs `_run`.
                t.add_done_callback(functools.partial(self._expired, engine, aid))

    def _expired(self, engine: int, aid: int, task: asyncio.Task[Any]) -> None:
        if task in self._timed_out:  # `_run` never saw its cancellation
            self._timed_out.discard(task)
            self._queue((engine, aid), _HANDLER_TIMED_OUT, 0, 0, b"")

    def _settled(self) -> None:
        # A handler that swallowed its timeout's cancellation and answered: forget the mark.
        if self._timed_out:
            self._timed_out.discard(asyncio.current_task())

    def _answer(self, handle: tuple[int, int], key: tuple[int, int, int], value: object, error: Optional[BaseException]) -> None:
        rc, code, v, data = self._reply(value, error, key)
        self._queue(handle, rc, code, v, data)

    def _queue(self, handle: tuple[int, int], rc: int, code: int, value: int, data: bytes) -> None:
        self._answers.append((handle[0], handle[1], rc, code, value, data))
        if self._flush_at is None:
            self._flush_at = self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Gives this iteration's answers back to the engine, up to 256 a call."""
        self._flush_at = None
        answers, self._answers = self._answers, []
        l = lib()
        att, res, resp = self._attempts, self._results, self._responses
        att_raw, resp_raw = self._attempts_raw, self._responses_raw
        for lo in range(0, len(answers), _BATCH):
            chunk = answers[lo : lo + _BATCH]
            keep = []
            for i, (engine, aid, rc, code, value, data) in enumerate(chunk):
                _ANSWER.pack_into(att_raw, i * _ANSWER_SIZE, engine, aid)
                res[i] = rc
                address = 0
                if data:
                    b = ffi.from_buffer(data)
                    keep.append(b)
                    address = int(ffi.cast("uintptr_t", b))
                _RESPONSE.pack_into(resp_raw, i * _RESPONSE_SIZE, _RESPONSE_SIZE, code, value, address, len(data))
            # Abandoned or stale attempts need nothing more: the statuses are not read.
            l.metafed_attempts_complete(att, res, resp, len(chunk), ffi.NULL)
            del keep


_queues: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopQueue]" = weakref.WeakKeyDictionary()


def loop_queue(loop: asyncio.AbstractEventLoop, reply: Callable[..., tuple[int, int, int, bytes]]) -> LoopQueue:
    """The queue of `loop`'s `async def` attempts (made on first use)."""
    with _lock:
        q = _queues.get(loop)
        if q is None:
            if loop.is_closed():
                raise RuntimeError("the event loop is closed")
            q = _queues[loop] = LoopQueue(loop, reply)
        return q


def async_queue_stats() -> dict[str, int]:
    """What the queues of `async def` attempts have seen, summed over the loops that run them:
    `waiting` now, `high_water` (the most that waited in one queue at once), and since start the
    attempts `queued`, `taken` by their loop, `expired` (abandoned by the engine while they
    waited: the task's deadline or domain timeout passed first) and `refused` (a full queue)."""
    with _lock:
        qs = list(_queues.values())
    out = {"waiting": 0, "high_water": 0, "queued": 0, "taken": 0, "expired": 0, "refused": 0}
    for q in qs:
        s = q.stats()
        for k in out:
            out[k] = max(out[k], s[k]) if k == "high_water" else out[k] + s[k]
    return out
