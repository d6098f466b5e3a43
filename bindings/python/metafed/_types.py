"""The values metafed exchanges with Python: enums, requests, completions, stats."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional, Sequence


class Outcome(enum.IntEnum):
    """How a task ended."""

    OK = 0
    FAILED = 1
    TIMED_OUT = 2
    REJECTED = 3


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


class FailureKind(enum.IntEnum):
    """How one attempt failed."""

    ERROR = 0
    RAISED = 1  # the handler raised (or panicked)
    SLOW = 2
    ABANDONED = 3
    OVERLOADED = 4
    DOWN = 5
    INVALID_REPLY = 6


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


class AgentError(Exception):
    """Raise from a handler to fail the attempt with an error `code` (other exceptions fail it
    too, as RAISED, with their message kept)."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or f"agent error {code}")
        self.code = code


class Request:
    """One attempt, as a handler sees it."""

    __slots__ = ("task_id", "payload", "data", "domain", "agent", "attempt", "fanout", "priority")

    def __init__(self, task_id: int, payload: int, data: bytes, domain: int, agent: int, attempt: int, fanout: int, priority: int) -> None:
        self.task_id = task_id
        self.payload = payload
        self.data = data
        self.domain = domain
        self.agent = agent
        self.attempt = attempt
        self.fanout = fanout
        self.priority = priority

    def __repr__(self) -> str:
        return f"Request(task_id={self.task_id}, domain={self.domain}, agent={self.agent}, attempt={self.attempt})"


@dataclass(frozen=True)
class Failure:
    """One failed attempt: where, how, the error code, and the exception's message if it raised."""

    domain: int
    agent: int
    kind: FailureKind
    code: int
    message: Optional[str] = None


@dataclass(frozen=True)
class Completion:
    """The one outcome of a task."""

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

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.OK


@dataclass(frozen=True)
class Task:
    """A task for `Engine.submit_many`: `domains` is a domain id, a name, or several."""

    id: int
    domains: object
    payload: int = 0
    data: bytes = b""
    priority: int = 0
    deadline: Optional[float] = None  # seconds


@dataclass(frozen=True)
class SimAgent:
    """A simulated agent: fails by the oracle at `error_rate`; `latency_us` per call."""

    error_rate: float = 0.0
    latency_us: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class DomainStats:
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


@dataclass(frozen=True)
class AgentStats:
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


@dataclass(frozen=True)
class Stats:
    """Counters per level, breaker states, latency, and the model's prediction."""

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


@dataclass(frozen=True)
class ShutdownReport:
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
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0
