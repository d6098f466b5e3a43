"""The asyncio loop that runs `async def` handlers when their agent names none: one per process,
started on first use on a daemon thread of its own."""

from __future__ import annotations

import asyncio
import threading
from typing import Optional

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
