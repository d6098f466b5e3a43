"""The values metafed exchanges with Python: enums, requests, replies, completions, stats."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, NamedTuple, Optional, Sequence, Tuple, Union


class Outcome(enum.IntEnum):
    """How a task ended."""

    OK = 0
    FAILED = 1
    TIMED_OUT = 2
    REJECTED = 3

    def __str__(self) -> str:
        return self.name


class Reason(enum.IntEnum):
    """Why a task did not succeed (NONE when it did)."""

    NONE = 0
    AGENTS_EXHAUSTED = 1
    DOMAIN_FAULT = 2
    META_FAULT = 3
    NO_AGENT = 4
    DOMAIN_SHED = 5
    DEGRADED = 6
    THROTTLED = 7
    RATE_LIMITED = 8
    SHUTTING_DOWN = 9
    DEADLINE = 10
    DOMAIN_TIMEOUT = 11
    BUDGET_EXHAUSTED = 12
    DOMAIN_OVERLOADED = 13
    UNCLASSIFIED = 14  # named no domain and could not be classified

    def __str__(self) -> str:
        return self.name


class FailureKind(enum.IntEnum):
    """How one attempt failed."""

    ERROR = 0  # the handler raised AgentError(code)
    RAISED = 1  # the handler raised another exception (or panicked)
    SLOW = 2  # it answered after the agent timeout
    ABANDONED = 3  # it did not answer in time (async handler, or isolated agent): abandoned
    OVERLOADED = 4  # no room: its queue, or the worker's deferred-attempt slots, were full
    DOWN = 5  # its domain was marked down
    INVALID_REPLY = 6  # the handler returned something that is not a reply
    DROPPED = 7  # a deferred attempt was dropped without an answer

    def __str__(self) -> str:
        return self.name


class Level(enum.IntEnum):
    """Breaker levels."""

    META = 0
    DOMAIN = 1
    AGENT = 2


class BreakerMode(enum.IntEnum):
    """An operator's override of a breaker."""

    NORMAL = 0
    DISABLED = 1
    FORCED_OPEN = 2


class BreakerState(enum.IntEnum):
    """A breaker's state."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2

    def __str__(self) -> str:
        return self.name


class AgentError(Exception):
    """Raise from a handler to fail the attempt with an error `code` (a 32-bit integer) and,
    optionally, a message kept on the completion's failure. Any other exception fails the
    attempt too, as RAISED, with its message kept."""

    def __init__(self, code: int, message: str = "") -> None:
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError(f"code must be int, not {type(code).__name__}")
        if not -(2**31) <= code < 2**31:
            raise ValueError(f"code must fit in 32 bits, got {code}")
        super().__init__(message or f"agent error {code}")
        self.code = code
        self.message = message


class Reply(NamedTuple):
    """What a handler may return to answer with bytes: a value and the reply's body. A handler
    may also return a plain `int` (the value), `bytes` (the body, value 0), `(int, bytes)`, or
    `None` (value 0)."""

    value: int = 0
    data: bytes = b""


class Request:
    """One attempt, as a handler sees it. `ticket` is the task's ticket (unique among tasks in
    flight); `timeout` the seconds an async handler has before the engine abandons the attempt."""

    __slots__ = ("ticket", "task_id", "payload", "data", "domain", "agent", "attempt", "fanout", "priority", "timeout")

    def __init__(
        self,
        ticket: int,
        task_id: int,
        payload: int,
        data: bytes,
        domain: int,
        agent: int,
        attempt: int,
        fanout: int,
        priority: int,
        timeout: float,
    ) -> None:
        self.ticket = ticket
        self.task_id = task_id
        self.payload = payload
        self.data = data
        self.domain = domain
        self.agent = agent
        self.attempt = attempt
        self.fanout = fanout
        self.priority = priority
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Request(task_id={self.task_id}, domain={self.domain}, agent={self.agent}, attempt={self.attempt})"


@dataclass(frozen=True)
class Balance:
    """How a domain chooses its agents: `"round_robin"` (smooth weighted round-robin, the
    default) or `"peak_ewma"` (of two agents drawn at random, the one with the lower peak-EWMA
    latency x (attempts in flight + 1); `decay_ms` is the estimate's time constant and
    `default_rtt_ms` the estimate of an agent before its first answer). The durations matter
    only for peak EWMA."""

    kind: str = "round_robin"
    decay_ms: float = 10_000.0
    default_rtt_ms: float = 30.0

    KINDS: ClassVar[tuple[str, ...]] = ("round_robin", "peak_ewma")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"balance kind must be one of {', '.join(self.KINDS)}, not {self.kind!r}")
        _check_positive(self, ("decay_ms", "default_rtt_ms"))

    @classmethod
    def peak_ewma(cls, decay_ms: float = 10_000.0, default_rtt_ms: float = 30.0) -> "Balance":
        """Peak EWMA (Finagle's and Linkerd's defaults: decay 10 s, default RTT 30 ms)."""
        return cls("peak_ewma", decay_ms, default_rtt_ms)


class _SettingsMapping:
    """Read access by key, as the dicts these settings were before (`a["max_concurrent"]`,
    `a.get(...)`, `dict(a.items())`): a program written for those keeps working."""

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.keys() else default

    def keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self))  # type: ignore[arg-type]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def __contains__(self, key: object) -> bool:
        return key in self.keys()


def _check_positive(obj: Any, numbers: tuple[str, ...]) -> None:
    """Checks a settings value's fields that must be numbers above zero."""
    _check_numbers(obj, (), numbers)
    for what in numbers:
        v = getattr(obj, what)
        if not v > 0:
            raise ValueError(f"{what} must be greater than zero, got {v}")


def _check_numbers(obj: Any, ints: tuple[str, ...], numbers: tuple[str, ...]) -> None:
    """Checks a settings value's fields: `ints` 32-bit unsigned, `numbers` int or float."""
    for what in ints:
        v = getattr(obj, what)
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{what} must be int, not {type(v).__name__}")
        if not 0 <= v < 2**32:
            raise ValueError(f"{what} must be 0 to 2**32-1, got {v}")
    for what in numbers:
        v = getattr(obj, what)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{what} must be a number, not {type(v).__name__}")


@dataclass(frozen=True)
class Admission(_SettingsMapping):
    """The meta level's admission settings (`Engine.admission()`; `Engine.set_admission(a)` with
    one, or with keywords for the fields to change). `max_concurrent` is the throttle (0: none),
    with `queue_capacity` tasks waiting per worker; `essential_priority` the lowest priority
    admitted in degraded mode; `priority_reserve` the share of task slots each priority may not
    take (four shares); `rate_limit_per_s` and `rate_limit_burst` the rate limit (0: none);
    `max_cost` a concurrency budget in complexity units (0: none) and `min_cost` the least a
    task counts; `queue_timeout_ms` how long a task may wait for the throttle from its
    submission before it is rejected as THROTTLED (0: no bound). Read by key too, as the dict
    it used to be."""

    max_concurrent: int = 0
    queue_capacity: int = 4096
    essential_priority: int = 0
    priority_reserve: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    rate_limit_per_s: float = 0.0
    rate_limit_burst: float = 1.0
    max_cost: float = 0.0
    min_cost: float = 0.0
    queue_timeout_ms: float = 0.0

    def __post_init__(self) -> None:
        _check_numbers(self, ("max_concurrent", "queue_capacity", "essential_priority"),
                       ("rate_limit_per_s", "rate_limit_burst", "max_cost", "min_cost", "queue_timeout_ms"))
        shares = tuple(self.priority_reserve)
        if len(shares) != 4:
            raise ValueError(f"priority_reserve must have 4 shares, got {len(shares)}")
        for i, r in enumerate(shares):
            if isinstance(r, bool) or not isinstance(r, (int, float)):
                raise TypeError(f"priority_reserve[{i}] must be a number, not {type(r).__name__}")
        object.__setattr__(self, "priority_reserve", tuple(float(r) for r in shares))


@dataclass(frozen=True)
class BreakerSettings(_SettingsMapping):
    """One level's breaker settings (`Engine.breaker_config(level)`; `Engine.set_breaker(level,
    b)` with one, or with keywords for the fields to change; `Topology.set_breaker` the same):
    `timeout_ms` (also the level's time budget), the trips (`consecutive_failures`,
    `failure_rate` over `window_ms` once `min_calls` calls came, resilience4j's `count_window`,
    `slow_call_duration_ms` and `slow_call_rate`), the open time (`open_base_ms`, doubling up to
    `open_max_ms`), `half_open_probes`, and `mode` (a BreakerMode). 0 turns a trigger off. Read by
    key too, as the dict it used to be."""

    timeout_ms: float
    consecutive_failures: int
    failure_rate: float
    window_ms: float
    min_calls: int
    open_base_ms: float
    open_max_ms: float
    half_open_probes: int
    mode: "BreakerMode"
    count_window: int = 0
    slow_call_duration_ms: float = 0.0
    slow_call_rate: float = 0.0

    def __post_init__(self) -> None:
        _check_numbers(self, ("consecutive_failures", "min_calls", "half_open_probes", "count_window"),
                       ("timeout_ms", "failure_rate", "window_ms", "open_base_ms", "open_max_ms",
                        "slow_call_duration_ms", "slow_call_rate"))
        object.__setattr__(self, "mode", BreakerMode(self.mode))


@dataclass(frozen=True)
class Outlier:
    """A domain's outlier detection: an agent that fails `consecutive_failures` times in a row,
    fails at `failure_rate` over its last `min_calls` calls, or whose latency estimate exceeds
    `latency_factor` times its peers' median (after `min_samples` samples) is ejected through its
    breaker for `base_ejection_ms` (more for ejections in a row, up to `max_ejection_ms`); at
    most `max_ejected_percent` of the domain's agents are out, but one always may be and never
    the last. 0 turns a trigger off. The defaults are Envoy's."""

    consecutive_failures: int = 5
    failure_rate: float = 0.0
    min_calls: int = 50
    latency_factor: float = 0.0
    min_samples: int = 20
    base_ejection_ms: float = 30_000.0
    max_ejection_ms: float = 300_000.0
    max_ejected_percent: float = 10.0

    def __post_init__(self) -> None:
        _check_numbers(self, ("consecutive_failures", "min_calls", "min_samples"),
                       ("failure_rate", "latency_factor", "base_ejection_ms", "max_ejection_ms", "max_ejected_percent"))


@dataclass(frozen=True)
class Shedding:
    """A domain's adaptive shedding (CoDel's idea): while its sub-tasks' shortest wait for an
    agent has stayed above `target_ms` for `interval_ms`, one that has waited longer than the
    target is rejected (`Reason.DOMAIN_OVERLOADED`), as is one that finds the wait queue full
    (`queue_capacity` per worker, 0: no bound). The defaults are CoDel's."""

    target_ms: float = 5.0
    interval_ms: float = 100.0
    queue_capacity: int = 0

    def __post_init__(self) -> None:
        _check_positive(self, ("target_ms", "interval_ms"))
        _check_numbers(self, ("queue_capacity",), ())


@dataclass(frozen=True)
class Failure:
    """One failed attempt: where (domain and agent ids), which attempt, how, the error code, and
    the handler's message if it raised (or raised `AgentError` with one)."""

    domain: int
    agent: int
    kind: FailureKind
    code: int
    message: Optional[str] = None
    attempt: int = 0


@dataclass(frozen=True)
class Completion:
    """The one outcome of a task. `bodies` holds the reply bytes of each sub-task whose
    successful attempt returned some, by domain id; `body` is the first (a one-domain task's
    reply). `answered` holds the ids of the domains whose sub-tasks succeeded: those the task
    asked for, except that a sub-task rerouted after failing at its domain answered from an
    alternate (`Topology.set_alternates`); `reroutes` counts the moves to an alternate.
    `domains` holds the domains the task needed (those it named, or those its classifier chose)
    and `complexity` its classifier's score (0 for a task that named its domains)."""

    ticket: int
    id: int
    outcome: Outcome
    reason: Reason
    value: int
    attempts: int
    latency_ns: int
    priority: int
    failures: tuple[Failure, ...]
    failures_total: int
    bodies: Mapping[int, bytes] = field(default_factory=dict)
    answered: frozenset[int] = frozenset()
    reroutes: int = 0
    domains: frozenset[int] = frozenset()
    complexity: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the task succeeded."""
        return self.outcome == Outcome.OK

    @property
    def body(self) -> Optional[bytes]:
        """The reply bytes of the first sub-task that returned some (None if none did)."""
        return next(iter(self.bodies.values()), None)


@dataclass(frozen=True)
class Task:
    """A task for `Engine.submit_many`: `domains` is a domain id, a name, or several; None
    for a task the engine's classifier routes by its `attrs` (a dict of str, or (name, value)
    pairs) and bytes."""

    id: int
    domains: Union[int, str, Sequence[Union[int, str]], None]
    payload: int = 0
    data: bytes = b""
    priority: int = 0
    deadline: Optional[float] = None  # seconds
    key: Union[int, str, None] = None  # for the keyed rate limits (a str is hashed: key_of)
    attrs: Union[Mapping[str, str], Sequence[Tuple[str, str]], None] = None


@dataclass(frozen=True)
class SimAgent:
    """A simulated agent: fails by the oracle at `error_rate`; each call takes `latency_us`
    microseconds ("fixed"), or that on average ("exponential"), or that except a `slow_rate`
    share of first attempts that take `slow_us` ("long_tail"). With `io=True` it waits the way an
    I/O agent does, holding no thread (each call is a deferred attempt completed by a timer)."""

    error_rate: float = 0.0
    latency_us: float = 0.0
    seed: int = 0
    io: bool = False
    latency: str = "fixed"
    slow_us: float = 0.0
    slow_rate: float = 0.0


@dataclass(frozen=True)
class DomainStats:
    """One domain's counters and breaker state."""

    name: str
    breaker: BreakerState
    subtasks: int
    ok: int
    failed: int
    shed: int
    faults: int
    timeouts: int
    failovers: int
    recovered: int
    trips: int
    hedges: int = 0
    hedge_wins: int = 0
    budget_denied: int = 0
    waited: int = 0
    rerouted: int = 0


@dataclass(frozen=True)
class AgentStats:
    """One agent's counters and breaker state."""

    name: str
    breaker: BreakerState
    calls: int
    failures: int
    slow: int
    raised: int
    abandoned: int
    overloaded: int
    mean_latency_ns: int
    trips: int
    in_rotation: bool
    isolated: bool
    deferred: int = 0
    cancelled: int = 0
    in_flight: int = 0
    max_concurrency: int = 0
    weight: int = 1
    removed: bool = False
    ejections: int = 0


@dataclass(frozen=True)
class Stats:
    """Counters per level, breaker states, latency, and the model's prediction. `reasons`
    counts completions by reason; `late_results` the answers of deferred attempts that came
    after their attempt was abandoned; `events_dropped` the breaker events the engine could not
    keep for the `metafed` logger (it keeps 1,024 between the quarter-second drains)."""

    workers: int
    slots: int
    in_flight: int
    submit_full: int
    admitted: int
    completed: int
    ok: int
    failed: int
    timed_out: int
    rejected: int
    reasons: dict[Reason, int]
    panic_routed: int
    latency_p50_ns: int
    latency_p99_ns: int
    latency_p999_ns: int
    meta_breaker: BreakerState
    meta_trips: int
    predicted_success: float
    domains: list[DomainStats] = field(default_factory=list)
    agents: list[AgentStats] = field(default_factory=list)
    late_results: int = 0
    events_dropped: int = 0
    classified: int = 0  # tasks that named no domain and were classified
    unclassified: int = 0  # ... and could not be (Reason.UNCLASSIFIED)
    cost_held: float = 0.0  # complexity units the admitted tasks hold of the cost budget


@dataclass(frozen=True)
class ShutdownReport:
    """What a shutdown did: whether everything in flight finished in time, how many tasks were
    completed as rejected instead, threads left behind (handlers that never returned)."""

    drained: bool
    rejected: int
    detached_threads: int
    elapsed_s: float


@dataclass(frozen=True)
class BatchResult:
    """What `Engine.run_many` did: counts per outcome, time, and (if asked) every outcome."""

    tasks: int
    done: int
    ok: int
    failed: int
    timed_out: int
    rejected: int
    elapsed_s: float
    outcomes: Optional[Sequence[int]] = None

    @property
    def tasks_per_s(self) -> float:
        """Tasks completed per second of the run."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0
