"""A federation with Python handlers: three domains, redundant agents (one flaky, one an
`async def` that waits on I/O and answers with bytes), and the stats at the end.
Run: python examples/python/federation.py (after `cargo build --release` and
`pip install ./bindings/python`)."""

import asyncio

import metafed


def rest(req: metafed.Request) -> int:
    return req.payload * 2


def flaky(req: metafed.Request) -> int:
    if req.task_id % 4 == 0:
        raise ConnectionError("upstream reset")  # an agent failure; the domain fails over
    return req.payload * 2


async def graphql(req: metafed.Request) -> metafed.Reply:
    await asyncio.sleep(0.001)  # waits without holding an engine thread
    return metafed.Reply(req.payload * 2, b'{"data": "ok"}')


def cache(req: metafed.Request) -> int:
    if req.attempt == 0 and req.task_id % 10 == 0:
        raise metafed.AgentError(404, "cache miss")  # a miss, reported as an error code
    return req.payload


topology = metafed.Topology()
api = topology.add_domain("API")
topology.add_agent(api, "REST", rest)
topology.add_agent(api, "Flaky", flaky)
topology.add_agent(api, "GraphQL", graphql, max_concurrency=64)
db = topology.add_domain("Database")
topology.add_agent(db, "Cache", cache)
topology.add_agent(db, "SQL", metafed.SimAgent(error_rate=0.05))  # a simulated agent beside them
auth = topology.add_domain("Auth")
topology.add_agent(auth, "JWT", lambda req: 1)

with metafed.Engine(topology) as engine:
    # One task, as a future.
    done = engine.submit(1, ["API", "Auth"], payload=21).result()
    print(f"task 1: {done.outcome} after {done.attempts} attempts, value {done.value}, body {done.body!r}")

    # Many, with asyncio (inside a coroutine: `await` needs one).
    async def many() -> list[metafed.Completion]:
        return await asyncio.gather(*(engine.run(i, i % 3, payload=i) for i in range(1_000)))

    results = asyncio.run(many())
    print(f"asyncio: {sum(c.ok for c in results)} of {len(results)} ok")
    failed_over = next(c for c in results if c.failures)
    print(f"a failover: task {failed_over.id}: {[(str(f.kind), f.message or f.code) for f in failed_over.failures]}")

    # A large batch, run inside the library.
    batch = engine.run_many(range(100_000), "Database")
    print(f"run_many: {batch.ok} of {batch.done} ok at {batch.tasks_per_s:,.0f} tasks/s")

    s = engine.stats()
    print(f"stats: {s.completed} completed, {s.ok} ok, p50 {s.latency_p50_ns / 1e3:.1f} us, model predicts {s.predicted_success:.4f}")
    for d in s.domains:
        print(f"  {d.name:<8} sub-tasks {d.subtasks:>7}  failovers {d.failovers:>5}  recovered {d.recovered:>5}  breaker {d.breaker}")
