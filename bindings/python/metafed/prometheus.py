"""The engine's metrics in an application's own `prometheus_client` registry:

    from prometheus_client import REGISTRY, start_http_server
    from metafed.prometheus import EngineCollector

    REGISTRY.register(EngineCollector(engine))
    start_http_server(8000)   # the application's /metrics now includes metafed_*

Each scrape asks the engine for its metrics text and parses it with `prometheus_client`'s own
parser, so the families keep the names, types, help and labels the engine gives them. The
collector holds the engine weakly: once the engine is closed or collected it yields nothing.
Needs the `prometheus_client` package (`pip install prometheus_client`).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ._engine import Engine


class EngineCollector(Collector):
    """A `prometheus_client` collector of one engine's metrics."""

    def __init__(self, engine: "Engine") -> None:
        self._engine = weakref.ref(engine)

    def collect(self) -> Iterator[Metric]:
        engine = self._engine()
        if engine is None or engine._state.closed:
            return
        yield from text_string_to_metric_families(engine.metrics_text())
