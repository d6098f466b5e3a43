"""Operating an engine: Prometheus metrics, health, the admin endpoint, the audit trail, and
breaker events on the `logging` module."""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from ._native import check, ffi, lib
from ._types import BreakerState, Level

logger = logging.getLogger("metafed")
# A library logs to its logger and leaves output to the application: without a handler of the
# application's, Python would print warnings (a breaker opening) to stderr.
logger.addHandler(logging.NullHandler())


class HealthStatus(str, enum.Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class ReliabilityWindow:
    """One domain's success over the monitor's window (about a minute), beside the model's
    prediction from its agents' error rates."""

    domain: str
    window_s: float
    finished: int
    ok: int
    measured: float
    low: float
    high: float
    predicted: float
    below_prediction: bool


@dataclass(frozen=True)
class Health:
    """What `/health` says: `status`, the engine's `lifecycle` (running, draining, stopping,
    stopped), the `reasons` it is not healthy, and per domain the reliability monitor."""

    status: HealthStatus
    lifecycle: str
    reasons: list[str]
    reliability: list[ReliabilityWindow]


@dataclass(frozen=True)
class AuditRecord:
    """One operator action: when, who (the actor set with `metafed.acting_as`), why, what."""

    seq: int
    at_unix_ms: int
    actor: str
    reason: str
    action: str
    target: str
    from_: str
    to: str


class _Actor(threading.local):
    def __init__(self) -> None:
        self.stack: list[tuple[str, str]] = []


_ACTOR = _Actor()


@contextlib.contextmanager
def acting_as(actor: str, reason: str = "") -> Iterator[None]:
    """Records this thread's operator actions (breaker modes, rotation, domain down, the admin
    endpoint), on every engine, as done by `actor` for `reason`, inside the `with` block."""
    if not isinstance(actor, str) or not actor:
        raise TypeError("actor must be a non-empty str")
    if not isinstance(reason, str):
        raise TypeError(f"reason must be str, not {type(reason).__name__}")
    _ACTOR.stack.append((actor, reason))
    check(lib().metafed_audit_set_actor(actor.encode(), reason.encode()))
    try:
        yield
    finally:
        _ACTOR.stack.pop()
        if _ACTOR.stack:
            a, r = _ACTOR.stack[-1]
            check(lib().metafed_audit_set_actor(a.encode(), r.encode()))
        else:
            check(lib().metafed_audit_set_actor(ffi.NULL, ffi.NULL))


def read_text(call: Callable[[Any, int, Any], int]) -> str:
    """A text from a size-query getter `call(buf, cap, out_len)`: sized, then read, again if it
    grew in between."""
    n = ffi.new("size_t *")
    check(call(ffi.NULL, 0, n))
    while True:
        cap = n[0] + 4096
        buf = ffi.new("char[]", cap)
        check(call(buf, cap, n))
        if n[0] < cap:
            text: str = ffi.unpack(buf, n[0]).decode("utf-8")
            return text


def health_of(handle: Any) -> Health:
    status = ffi.new("int32_t *")
    text = read_text(lambda b, c, n: lib().metafed_engine_get_health_json(handle, b, c, n, status))
    h = json.loads(text)
    return Health(
        status=HealthStatus(h["status"]),
        lifecycle=h["lifecycle"],
        reasons=list(h["reasons"]),
        reliability=[ReliabilityWindow(**w) for w in h["reliability"]],
    )


def audit_of(handle: Any, after: int) -> list[AuditRecord]:
    text = read_text(lambda b, c, n: lib().metafed_engine_get_audit_json(handle, after, b, c, n))
    out = []
    for r in json.loads(text):
        r["from_"] = r.pop("from")
        out.append(AuditRecord(**r))
    return out


_CAUSES = {
    0: "consecutive_failures",
    1: "failure_rate",
    2: "open_time_elapsed",
    3: "probe_failed",
    4: "probes_succeeded",
    5: "forced",
    6: "reset",
    7: "slow_call_rate",
    8: "outlier_failures",
    9: "outlier_failure_rate",
    10: "outlier_latency",
}


class EventLogger:
    """Moves an engine's breaker events and audit records onto the `metafed` logger; run by the
    engine's completion thread at most every quarter second, and once more at shutdown."""

    def __init__(self, handle: Any) -> None:
        self.h = handle
        self.buf = ffi.new("metafed_breaker_event[256]")
        self.buf[0].struct_size = ffi.sizeof("metafed_breaker_event")  # the array's stride
        self.n = ffi.new("size_t *")
        self.audit_seq = 0
        self.names: dict[tuple[int, int], str] = {}

    def breaker_name(self, level: int, index: int) -> str:
        key = (level, index)
        if key not in self.names:
            self.names[key] = read_text(lambda b, c, n: lib().metafed_engine_get_breaker_name(self.h, level, index, b, c, n))
        return self.names[key]

    def pump(self) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        l = lib()
        while True:
            if l.metafed_engine_drain_events(self.h, self.buf, 256, self.n) != 0:
                return
            count = int(self.n[0])
            for i in range(count):
                e = self.buf[i]
                name = self.breaker_name(e.level, e.index)
                frm, to = BreakerState(getattr(e, "from")).name.lower(), BreakerState(e.to).name.lower()
                cause = _CAUSES.get(e.cause, str(e.cause))
                extra = {
                    "breaker": name,
                    "level": Level(e.level).name.lower(),
                    "from_state": frm,
                    "to_state": to,
                    "cause": cause,
                    "task_id": int(e.task_id) if e.has_task else None,
                    "at_ns": int(e.at_ns),
                }
                logger.info("breaker %s: %s -> %s (%s)", name, frm, to, cause, extra=extra)
            if count < 256:
                break
        for r in audit_of(self.h, self.audit_seq):
            self.audit_seq = r.seq
            logger.info(
                "operator action by %s: %s %s: %s -> %s",
                r.actor,
                r.action,
                r.target,
                r.from_,
                r.to,
                extra={
                    "audit": True,
                    "seq": r.seq,
                    "actor": r.actor,
                    "reason": r.reason,
                    "action": r.action,
                    "target": r.target,
                    "from_value": r.from_,
                    "to_value": r.to,
                },
            )


def metrics_text_of(handle: Any, openmetrics: bool) -> str:
    return read_text(lambda b, c, n: lib().metafed_engine_get_metrics_text(handle, int(openmetrics), b, c, n))


def serve_admin_of(handle: Any, addr: str, token: Optional[str]) -> int:
    if not isinstance(addr, str):
        raise TypeError(f"addr must be str, not {type(addr).__name__}")
    if token is not None and not isinstance(token, str):
        raise TypeError(f"token must be str or None, not {type(token).__name__}")
    port = ffi.new("uint16_t *")
    check(lib().metafed_engine_serve_admin(handle, addr.encode(), token.encode() if token is not None else ffi.NULL, port))
    return int(port[0])
