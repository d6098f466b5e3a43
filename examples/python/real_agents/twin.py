"""The seed's federation with real agents, from Python: nine `async def` agents (aiohttp for
REST, GraphQL and OAuth 2.0 introspection, websockets for the WebSocket endpoint, the standard
library's sqlite3 and dbm, PyJWT for the Rust side's Ed25519 tokens, an RBAC role table) over
the services `metafed-federation --serve` starts on 127.0.0.1, with the seed's request mix
routed by the engine's classifier while faults come and go on the services.

Run (after `cargo build --release -p metafed-federation`, `pip install ./bindings/python` and
`pip install -r examples/python/real_agents/requirements.txt`):

    python3 examples/python/real_agents/twin.py [--seconds 20] [--rate 400]
        [--faults rest-reset,sql-lock,http-down] [--break REST,SQL] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dbm
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import aiohttp
import jwt
import metafed
from websockets.asyncio.client import connect as ws_connect

@dataclass(frozen=True)
class Kind:
    name: str
    share: int  # percent of the tasks
    path: str
    token: bool  # carries the caller's token (so it needs Auth)
    op: str
    query: Optional[str]  # the query in its bytes (so it needs the Database)


# The seed's request mix, as the Rust application runs it.
KINDS = [
    Kind("health check", 20, "/api/health", False, "read", None),
    Kind("login", 15, "/login", True, "write", None),
    Kind("public read", 30, "/api/orders", False, "read", "SELECT * FROM orders WHERE id = ?"),
    Kind("authenticated read", 25, "/api/orders", True, "read", "SELECT * FROM orders WHERE id = ? AND user = ?"),
    Kind("report", 10, "/api/reports", True, "report", "SELECT sum(total) FROM orders WHERE user = ?"),
]

AGENTS = {
    "API": ["REST", "GraphQL", "WebSocket"],
    "Database": ["SQL", "NoSQL", "Cache"],
    "Auth": ["JWT", "OAuth", "RBAC"],
}


def splitmix64(x: int) -> int:
    """The engine's `sim::splitmix64`, so that task `i` is of the same kind as in the Rust run."""
    m = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


def kind_of(task_id: int) -> int:
    roll, acc = splitmix64(task_id ^ 0xFEDE7A7E) % 100, 0
    for i, k in enumerate(KINDS):
        acc += k.share
        if roll < acc:
            return i
    return 0


def default_server() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get(
        "METAFED_FEDERATION", os.path.join(here, "..", "..", "..", "target", "release", "metafed-federation")
    )


class Services:
    """`metafed-federation --serve`: where its services are (`info`), and when each fault came
    and went on this process's clock (`edges`: `(monotonic time, fault, on)`)."""

    def __init__(self, server: str, seconds: float, faults: str, broken: str, on: float) -> None:
        if not os.path.exists(server):
            raise SystemExit(
                f"twin: no server at {server}: run `cargo build --release -p metafed-federation` "
                "or give --server (or METAFED_FEDERATION)"
            )
        cmd = [server, "--serve", "--seconds", str(seconds), "--on", str(on), "--faults", faults or "none"]
        if broken:
            cmd += ["--break", broken]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if not first:
            code = self.proc.wait()
            raise SystemExit(f"twin: {server} --serve exited ({code}) before it described its services")
        self.info: dict[str, Any] = json.loads(first)
        self.started = time.monotonic()
        self.edges: list[tuple[float, str, bool]] = []
        self._reader = threading.Thread(target=self._read, name="serve-events", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            ev = json.loads(line)
            if "fault" in ev:
                self.edges.append((time.monotonic(), ev["fault"], ev["on"]))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the services stop when their standard input closes
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=2)


class Stores:
    """The Database domain's Python side: the server's SQLite file (read-only connections, one
    per thread of a small pool), a dbm document store and an in-process cache, both loaded from
    the server's dump of the same data (`orders_jsonl`)."""

    def __init__(self, sqlite_path: str, dump: str, workdir: str) -> None:
        self.uri = f"file:{sqlite_path}?mode=ro"
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="sqlite")
        self.local = threading.local()
        with open(dump, "rb") as f:
            docs = [(int(json.loads(line)["id"]), line.rstrip(b"\n")) for line in f]
        self.docs = dbm.open(os.path.join(workdir, "orders.dbm"), "n")
        for i, doc in docs:
            self.docs[str(i)] = doc
        self.cache: dict[int, bytes] = dict(docs)

    def sql_read(self, order: int) -> Optional[bytes]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            # A locked database fails the read after 50 ms, well inside the agent timeout.
            conn = self.local.conn = sqlite3.connect(self.uri, uri=True, timeout=0.05, check_same_thread=False)
        row = conn.execute("SELECT id, user, item, total FROM orders WHERE id = ?", (order,)).fetchone()
        if row is None:
            return None
        return json.dumps({"id": row[0], "user": row[1], "item": row[2], "total": row[3]}).encode()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.docs.close()


def order_reply(body: bytes) -> metafed.Reply:
    try:
        o = json.loads(body)
    except ValueError:
        raise metafed.AgentError(502, "not an order") from None
    if o is None:
        raise metafed.AgentError(404, "no such order")
    return metafed.Reply(int(o["total"]), body)


def decision(sub: str, op: str, allow: bool, by: str) -> metafed.Reply:
    return metafed.Reply(int(allow), json.dumps({"sub": sub, "op": op, "allow": allow, "by": by}).encode())


class Trust:
    """What the client side knows of the Auth services, kept current by `refresh`: the
    verifier's key set (JWKS, fetched again every quarter second, as verifiers poll it) and the
    users' tokens (fetched again after the issuer rotates its key: the end of `jwt-keys`)."""

    def __init__(self, keys: jwt.PyJWKSet, tokens: dict[str, str]) -> None:
        self.keys = keys
        self.tokens = tokens


async def refresh(trust: Trust, info: dict[str, Any], session: aiohttp.ClientSession, services: "Services") -> None:
    rotations = 0
    while True:
        await asyncio.sleep(0.25)
        try:
            async with session.get(info["jwks"]) as r:
                if r.status == 200:
                    trust.keys = jwt.PyJWKSet.from_dict(await r.json())
            ended = sum(1 for _, f, on in services.edges if f == "jwt-keys" and not on)
            if ended > rotations:
                async with session.get(info["tokens_url"]) as r:
                    if r.status == 200:
                        trust.tokens.update(await r.json())
                        rotations = ended
        except (aiohttp.ClientError, OSError, ValueError, jwt.PyJWKError):
            pass  # the service is down or cut: keep what we have, try again


def build(info: dict[str, Any], stores: Stores, session: aiohttp.ClientSession, trust: Trust) -> metafed.Topology:
    """The seed's 3 x 3 with nine `async def` agents, each answering with real data."""
    loop = asyncio.get_running_loop()
    perms: dict[str, list[str]] = info["permissions"]
    roles: dict[str, str] = info["roles"]

    def call(req: metafed.Request) -> dict[str, Any]:
        c: dict[str, Any] = json.loads(req.data)
        return c

    async def rest(req: metafed.Request) -> metafed.Reply:
        c = call(req)
        try:
            async with session.get(f"{info['rest']}/{c['order']}") as r:
                if r.status != 200:
                    raise metafed.AgentError(r.status, f"REST answered {r.status}")
                return order_reply(await r.read())
        except (aiohttp.ClientError, OSError) as e:
            raise metafed.AgentError(502, f"REST: {e!r}") from None

    async def graphql(req: metafed.Request) -> metafed.Reply:
        c = call(req)
        q = {"query": f"{{ order(id: {c['order']}) {{ id user item total }} }}"}
        try:
            async with session.post(info["graphql"], json=q) as r:
                if r.status != 200:
                    raise metafed.AgentError(r.status, f"GraphQL answered {r.status}")
                o = (await r.json())["data"]["order"]
        except (aiohttp.ClientError, OSError, ValueError, KeyError, TypeError) as e:
            raise metafed.AgentError(502, f"GraphQL: {e!r}") from None
        return order_reply(json.dumps(o).encode())

    async def websocket(req: metafed.Request) -> metafed.Reply:
        c = call(req)
        try:
            async with ws_connect(info["websocket"], open_timeout=None, close_timeout=0.05) as ws:
                await ws.send(str(c["order"]))
                reply = await ws.recv()
        except Exception as e:  # OSError, and websockets' own ConnectionClosed, InvalidStatus, ...
            raise metafed.AgentError(502, f"WebSocket: {e!r}") from None
        return order_reply(reply.encode() if isinstance(reply, str) else reply)

    async def sql(req: metafed.Request) -> metafed.Reply:
        c = call(req)
        try:
            body = await loop.run_in_executor(stores.pool, stores.sql_read, c["order"])
        except sqlite3.OperationalError as e:  # "database is locked"
            raise metafed.AgentError(503, f"SQL: {e}") from None
        if body is None:
            raise metafed.AgentError(404, "no such order")
        return order_reply(body)

    async def nosql(req: metafed.Request) -> metafed.Reply:
        doc = stores.docs.get(str(call(req)["order"]))
        if doc is None:
            raise metafed.AgentError(404, "no such document")
        return order_reply(doc)

    async def cache(req: metafed.Request) -> metafed.Reply:
        hit = stores.cache.get(call(req)["order"])
        if hit is None:
            raise metafed.AgentError(404, "cache miss")
        return order_reply(hit)

    async def jwt_agent(req: metafed.Request) -> metafed.Reply:
        c = call(req)
        try:
            kid = jwt.get_unverified_header(c["token"]).get("kid")
            key = next((k for k in trust.keys.keys if k.key_id == kid), None)
            if key is None:
                raise metafed.AgentError(401, f"no trusted key {kid!r}")
            claims = jwt.decode(c["token"], key.key, algorithms=["EdDSA"], options={"require": ["exp", "sub"]})
        except (jwt.InvalidTokenError, KeyError) as e:
            raise metafed.AgentError(401, f"JWT: {e}") from None
        return decision(claims["sub"], c["op"], c["op"] in perms.get(claims["role"], []), "JWT")

    async def oauth(req: metafed.Request) -> metafed.Reply:
        c = call(req)
        try:
            async with session.post(info["introspect"], data={"token": c["token"]}) as r:
                if r.status != 200:
                    raise metafed.AgentError(r.status, f"introspection answered {r.status}")
                i = await r.json()
        except (aiohttp.ClientError, OSError, ValueError) as e:
            raise metafed.AgentError(502, f"introspection: {e!r}") from None
        if not i.get("active"):
            raise metafed.AgentError(401, "the token is not active")
        return decision(i.get("sub", c["user"]), c["op"], c["op"] in i.get("scope", "").split(), "OAuth")

    async def rbac(req: metafed.Request) -> metafed.Reply:
        c = call(req)
        role = roles.get(c["user"])
        return decision(c["user"], c["op"], role is not None and c["op"] in perms.get(role, []), "RBAC")

    handlers = {
        "REST": rest, "GraphQL": graphql, "WebSocket": websocket,
        "SQL": sql, "NoSQL": nosql, "Cache": cache,
        "JWT": jwt_agent, "OAuth": oauth, "RBAC": rbac,
    }  # fmt: skip
    topology = metafed.Topology()
    for domain, names in AGENTS.items():
        d = topology.add_domain(domain)
        for name in names:
            topology.add_agent(d, name, handlers[name], max_concurrency=64, loop=loop)
    # The seed's breakers (on by default), with the Rust application's timeouts for loopback
    # services: an attempt 200 ms, a sub-task 600 ms, a task 1.5 s.
    topology.set_timeouts(agent_ms=200, domain_ms=600, task_ms=1500)
    # The seed's extraction as the engine's rules, as the server renders Rust's
    # `ClassifyConfig::seed()`: a path under /api/ needs the API, SELECT in the bytes the
    # Database, a token Auth.
    topology.set_classify(info["classify_toml"])
    return topology


@dataclass
class Record:
    kind: int
    submitted: float  # seconds from the start of the load
    ok: bool
    reason: str
    latency_ms: float
    domains: frozenset[str]


@dataclass
class Run:
    seconds: float
    rate: float
    submitted: int = 0
    records: dict[int, Record] = field(default_factory=dict)
    twice: int = 0


async def load(engine: metafed.Engine, info: dict[str, Any], trust: Trust, run: Run, progress: bool) -> float:
    """The open loop: `rate` tasks a second for `seconds`, each awaited on its own. Returns the
    load's start on the monotonic clock."""
    names = {engine.domain_id(d): d for d in AGENTS}
    tokens = trust.tokens  # updated in place when the issuer rotates
    users, orders = int(info["users"]), int(info["orders"])
    pending: set[asyncio.Task[None]] = set()

    async def one(i: int, at: float) -> None:
        k = KINDS[kind_of(i)]
        # The same order and user for task i as in the Rust run.
        user = f"u{splitmix64(i ^ 0x5EED) % users}"
        body: dict[str, Any] = {"order": 1 + splitmix64(i) % orders, "user": user, "op": k.op}
        attrs = {"path": k.path, "op": k.op}
        if k.token:
            body["token"] = attrs["token"] = tokens[user]
        if k.query:
            body["query"] = k.query
        c = await engine.run(i, None, attrs=attrs, data=json.dumps(body).encode())
        if i in run.records:
            run.twice += 1
        run.records[i] = Record(
            kind_of(i), at, c.ok, c.reason.name, c.latency_ns / 1e6, frozenset(names[d] for d in c.domains)
        )

    errors: list[BaseException] = []

    def done(t: "asyncio.Task[None]") -> None:
        pending.discard(t)
        exc = None if t.cancelled() else t.exception()
        if exc is not None:
            errors.append(exc)

    start = time.monotonic()
    total = int(run.seconds * run.rate)
    next_report = 5.0
    for i in range(total):
        delay = start + i / run.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        # When it really goes out (a loop that falls behind submits late), for the fault windows.
        at = time.monotonic() - start
        t = asyncio.create_task(one(i, at))
        pending.add(t)
        t.add_done_callback(done)
        run.submitted += 1
        if progress and at >= next_report:
            print(f"  {at:.0f} s: {len(run.records)} tasks completed", file=sys.stderr)
            next_report += 5.0
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    if errors:
        raise RuntimeError(f"{len(errors)} tasks raised; the first: {errors[0]!r}") from errors[0]
    return start


def pct(ok: int, n: int) -> Optional[float]:
    return None if n == 0 else round(100.0 * ok / n, 1)


def report(run: Run, stats: metafed.Stats, edges: list[tuple[float, str, bool]], info: dict[str, Any], start: float) -> dict[str, Any]:
    recs = list(run.records.values())
    lat = sorted(r.latency_ms for r in recs)

    def q(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else 0.0

    out: dict[str, Any] = {
        "run": {
            "seconds": run.seconds,
            "rate": run.rate,
            "submitted": run.submitted,
            "completed": len(recs),
            "completed_twice": run.twice,
            "never_completed": run.submitted - len(recs),
            "engine_completed": stats.completed,
            "ok_percent": pct(sum(r.ok for r in recs), len(recs)),
            "p50_ms": q(0.5),
            "p99_ms": q(0.99),
        },
        "kinds": [],
        "agents": [],
        "faults": [],
    }
    for i, k in enumerate(KINDS):
        rs = [r for r in recs if r.kind == i]
        reasons: dict[str, int] = {}
        for r in rs:
            if not r.ok:
                reasons[r.reason] = reasons.get(r.reason, 0) + 1
        out["kinds"].append(
            {"kind": k.name, "tasks": len(rs), "ok_percent": pct(sum(r.ok for r in rs), len(rs)), "failed_by": reasons}
        )
    for ag in stats.agents:
        out["agents"].append(
            {"agent": ag.name, "calls": ag.calls, "failures": ag.failures, "abandoned": ag.abandoned, "trips": ag.trips}
        )
    sched = {f["fault"]: f for f in info["schedule"]}
    ons = {f: t - start for t, f, on in edges if on}
    offs = [(t - start, f) for t, f, on in edges if not on and f in ons]
    for n, (b, f) in enumerate(offs):
        a, domain = ons[f], sched[f]["domain"]
        # The recovery window: from the fault's end to the next fault's start (or the load's end).
        until = ons[offs[n + 1][1]] if n + 1 < len(offs) else run.seconds
        during = [r for r in recs if a <= r.submitted < b]
        need = [r for r in during if domain in r.domains]
        other = [r for r in during if domain not in r.domains]
        after = [r for r in recs if b <= r.submitted < until and domain in r.domains]
        first_ok = min((r.submitted for r in after if r.ok), default=None)
        n_ok, o_ok = pct(sum(r.ok for r in need), len(need)), pct(sum(r.ok for r in other), len(other))
        if n_ok is not None and n_ok >= 95.0:
            contained = "agent"  # the domain's other agents answered
        elif o_ok is None or o_ok >= 95.0:
            contained = "domain"  # the domain failed, the tasks that do not need it did not
        else:
            contained = "none"
        out["faults"].append({
            "fault": f, "what": sched[f]["what"], "domain": domain, "agents": sched[f]["agents"],
            "start_s": round(a, 2), "end_s": round(b, 2),
            "needing_tasks": len(need), "needing_ok_percent": n_ok,
            "other_tasks": len(other), "other_ok_percent": o_ok,
            "after_s": round(until - b, 2),
            "after_tasks": len(after), "after_ok_percent": pct(sum(r.ok for r in after), len(after)),
            "first_ok_after_s": None if first_ok is None else round(first_ok - b, 3),
            "contained_at": contained,
        })  # fmt: skip
    return out


def text(r: dict[str, Any]) -> str:
    run = r["run"]
    lines = [
        f"The seed's federation from Python: {run['submitted']:,} tasks in {run['seconds']:g} s at {run['rate']:g}/s, "
        f"nine async def agents on real services",
        f"  completions {run['completed']:,} (twice {run['completed_twice']}, never {run['never_completed']}), "
        f"ok {run['ok_percent']}%, p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms",
        "",
        f"  {'kind':<20}{'tasks':>8}{'ok %':>8}  failed by",
    ]
    for k in r["kinds"]:
        why = ", ".join(f"{n} {c}" for n, c in sorted(k["failed_by"].items())) or "-"
        lines.append(f"  {k['kind']:<20}{k['tasks']:>8}{k['ok_percent'] if k['ok_percent'] is not None else '-':>8}  {why}")
    lines += ["", f"  {'agent':<12}{'calls':>8}{'failed':>8}{'abandoned':>10}{'trips':>7}"]
    for a in r["agents"]:
        lines.append(f"  {a['agent']:<12}{a['calls']:>8}{a['failures']:>8}{a['abandoned']:>10}{a['trips']:>7}")
    if r["faults"]:
        lines += ["", "  faults (tasks submitted while each was on):"]
    for f in r["faults"]:
        def p(x: Optional[float]) -> str:
            return "-" if x is None else f"{x}%"

        back = "" if f["first_ok_after_s"] is None else f", first ok {f['first_ok_after_s']:.2f} s after its end"
        lines.append(
            f"  {f['fault']:<21}{f['start_s']:>5.1f}-{f['end_s']:<5.1f} s  needing {f['domain']}: "
            f"{p(f['needing_ok_percent'])} ok of {f['needing_tasks']}, others {p(f['other_ok_percent'])} of "
            f"{f['other_tasks']}; contained at {f['contained_at']}; in the {f['after_s']:.1f} s after: "
            f"{p(f['after_ok_percent'])} of {f['after_tasks']}{back}"
        )
    return "\n".join(lines) + "\n"


def positive(s: str) -> float:
    try:
        x = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None
    if not x > 0 or x != x or x == float("inf"):
        raise argparse.ArgumentTypeError(f"{s!r} is not a positive number")
    return x


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    # Starting the server and reading its description block: off the loop.
    services = await asyncio.to_thread(Services, args.server, args.seconds, args.faults, args.broken, args.on)
    workdir = tempfile.mkdtemp(prefix="metafed-twin-")
    stores: Optional[Stores] = None
    try:
        info = services.info
        stores = Stores(info["sqlite"], info["orders_jsonl"], workdir)
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=1.0)) as session:
            async with session.get(info["jwks"]) as r:
                keys = jwt.PyJWKSet.from_dict(await r.json())  # the verifier's key set (RFC 7517)
            trust = Trust(keys, dict(info["tokens"]))
            refresher = asyncio.create_task(refresh(trust, info, session, services))
            engine = metafed.Engine(build(info, stores, session, trust))
            try:
                run = Run(args.seconds, args.rate)
                if not args.quiet:
                    print(
                        f"services on 127.0.0.1 (HTTP {info['http']}); running {args.seconds:g} s at {args.rate:g}/s; "
                        f"faults: {', '.join(f['fault'] for f in info['schedule']) or 'none'}",
                        file=sys.stderr,
                    )
                start = await load(engine, info, trust, run, not args.quiet)
                stats = engine.stats()
            finally:
                refresher.cancel()
                await asyncio.to_thread(engine.close)  # its drain waits: off the loop
        return report(run, stats, services.edges, info, start)
    finally:
        services.close()
        if stores is not None:
            stores.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=positive, default=20.0, help="how long the load runs (default 20)")
    p.add_argument("--rate", type=positive, default=400.0, help="tasks submitted a second, open loop (default 400)")
    p.add_argument(
        "--faults",
        help="the faults of the shared services to schedule, comma-separated, or none (rest-reset, graphql-reset, "
        "ws-slow, http-down, sql-lock, jwt-keys, introspect-blackhole; default: rest-reset, ws-slow, sql-lock, "
        "jwt-keys, introspect-blackhole, http-down; none with --break)",
    )
    p.add_argument("--break", dest="broken", default="", metavar="AGENTS",
                   help="agents to break for the whole run (REST, GraphQL, WebSocket, SQL, JWT, OAuth)")  # fmt: skip
    p.add_argument("--on", type=float, default=0.5, help="the share of each fault's slot it is on (default 0.5)")
    p.add_argument("--server", default=default_server(), help="the metafed-federation binary (default: the release build)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    args = p.parse_args()
    if not 0 < args.on < 1:
        p.error(f"--on {args.on} is not a share between 0 and 1 (exclusive)")
    if args.faults is None:
        args.faults = "none" if args.broken else "rest-reset,ws-slow,sql-lock,jwt-keys,introspect-blackhole,http-down"
    r = asyncio.run(amain(args))
    print(json.dumps(r, indent=2) if args.json else text(r), end="\n" if args.json else "")


if __name__ == "__main__":
    main()
