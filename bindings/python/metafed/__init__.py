"""metafed: a three-level meta-federation task engine, driven from Python.

A meta orchestrator admits and decomposes tasks, domain orchestrators route each sub-task to
one of their redundant agents and fail over when one fails, and circuit breakers at every level
keep failures from cascading. The engine is Rust, reached through its C ABI with cffi.

    import metafed

    topology = metafed.Topology.seed(agent_error=0.12)
    with metafed.Engine(topology) as engine:
        done = engine.submit(42, "API").result()
        print(done.outcome, done.attempts)

Handlers are plain functions (they answer at once, on an engine thread) or `async def`
coroutines (they answer later, on an asyncio loop, holding no engine thread).
"""

from ._aio import async_queue_stats
from ._classify import Classification, ClassifyInput
from ._engine import Domains, Engine, Ticket, key_of
from ._native import (
    ConfigError,
    EngineClosed,
    EngineFull,
    InvalidArgument,
    LibraryNotFound,
    MetafedError,
    TopologyError,
    UnknownDomain,
    WaitTimeout,
    WouldDeadlock,
    ffi,
    lib,
    library_path,
)
from ._ops import AuditRecord, Health, HealthStatus, ReliabilityWindow, acting_as
from ._topology import AsyncHandler, Handler, HandlerResult, Topology
from ._types import (
    Admission,
    AgentError,
    AgentStats,
    Balance,
    BreakerSettings,
    Outlier,
    Shedding,
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
    Reply,
    Request,
    ShutdownReport,
    SimAgent,
    Stats,
    Task,
)


def version() -> str:
    """The version of the loaded library."""
    v: str = ffi.string(lib().metafed_version()).decode()
    return v


__version__ = "0.1.0"

__all__ = [
    "Admission", "AgentError", "AgentStats", "AsyncHandler", "AuditRecord", "Balance", "BatchResult", "BreakerMode", "BreakerSettings", "BreakerState", "Classification", "ClassifyInput", "Completion",
    "ConfigError", "DomainStats", "Engine", "EngineClosed", "EngineFull", "Failure", "FailureKind", "Handler",
    "HandlerResult", "Health", "HealthStatus", "InvalidArgument", "Level", "LibraryNotFound", "MetafedError", "Outcome", "Outlier", "Reason", "ReliabilityWindow", "Reply",
    "Request", "Shedding", "ShutdownReport", "SimAgent", "Stats", "Task", "Ticket", "Topology", "TopologyError", "UnknownDomain",
    "WaitTimeout", "WouldDeadlock", "acting_as", "async_queue_stats", "key_of", "library_path", "version",
]
