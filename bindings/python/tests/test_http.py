"""A REST agent doing real I/O: an async handler that calls a loopback HTTP server (started here,
on 127.0.0.1) with asyncio streams, beside a backup agent. The server is killed mid-run: the
domain fails over to the backup, and every task gets exactly one completion."""

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import metafed


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        body = f"user {self.path.rsplit('/', 1)[-1]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_rest_agent_fails_over_when_its_server_dies():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()

    async def rest(req: metafed.Request) -> metafed.Reply:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET /users/{req.task_id} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
            await writer.drain()
            response = await reader.read()
        finally:
            writer.close()
        head, _, body = response.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.0 200"):
            raise metafed.AgentError(502, head.split(b"\r\n")[0].decode())
        return metafed.Reply(200, body)

    t = metafed.Topology()
    d = t.add_domain("API")
    t.add_agent(d, "REST", rest, max_concurrency=32)
    t.add_agent(d, "Backup", lambda req: (203, b"from backup"))
    t.disable_breakers()
    t.set_timeouts(agent_ms=2_000, domain_ms=5_000, task_ms=10_000)
    n = 400
    with metafed.Engine(t, workers=2) as e:
        first = [e.submit(i, "API") for i in range(n // 2)]
        done_first = [tk.result(timeout=60) for tk in first]
        server.shutdown()
        server.server_close()  # connections are refused from here on
        second = [e.submit(i, "API") for i in range(n // 2, n)]
        done_second = [tk.result(timeout=60) for tk in second]
    done = done_first + done_second
    assert len({c.ticket for c in done}) == n, "one completion per task"
    assert all(c.ok for c in done)
    from_server = [c for c in done_first if c.value == 200]
    assert from_server, "the server answered while it ran"
    assert all(c.body == f"user {c.id}".encode() for c in from_server)
    # After the server died, REST attempts fail (connection refused) and fail over.
    assert all(c.value == 203 and c.body == b"from backup" for c in done_second)
    refused = [f for c in done_second for f in c.failures]
    assert refused and all(f.kind == metafed.FailureKind.RAISED and "ConnectionRefusedError" in (f.message or "") for f in refused)
