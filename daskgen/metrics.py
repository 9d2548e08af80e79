"""daskgen's Prometheus metrics, on the scheduler's ``/metrics``.

:func:`register` (called when daskgen's scheduler plugin starts) adds one
collector to ``prometheus_client.REGISTRY``, under Dask's namespace
(``distributed.dashboard.prometheus.namespace``, ``dask`` by default):

``dask_daskgen_generators{state="..."}``
    Gauge: generator calls by state, live calls plus the finished ones the
    scheduler still remembers (``daskgen.history``).
``dask_daskgen_items_yielded_total``, ``dask_daskgen_bytes_yielded_total``
    Counters: items yielded (and their sizes) since the scheduler started.
``dask_daskgen_backpressure_pauses_total``, ``dask_daskgen_backpressure_paused_seconds_total``
    Counters: how often generators waited on a slow consumer, and how long.

The collector reports every live plugin of the process
(:func:`daskgen.dashboard.live_plugins`); if one process runs several
schedulers with daskgen (tests do), their values are summed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dask.config

from daskgen import dashboard
from daskgen._core import State

if TYPE_CHECKING:
    from daskgen.scheduler import GeneratorSchedulerPlugin

logger = logging.getLogger(__name__)

__all__ = ["register"]

_lock = threading.Lock()
_collector: _Collector | None = None


class _Collector:
    """Prometheus collector over every live plugin of this process."""

    def _families(self, plugins: list[GeneratorSchedulerPlugin]) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        ns = dask.config.get("distributed.dashboard.prometheus.namespace", "dask")

        def name(n: str) -> str:
            return "_".join(p for p in (ns, "daskgen", n) if p)

        counts = dict.fromkeys((st.value for st in State), 0)
        totals: dict[str, float] = dict.fromkeys(
            ("items", "bytes", "pauses", "paused_seconds"), 0
        )
        for plugin in plugins:
            for g in list(plugin.generators.values()):
                counts[g.state] = counts.get(g.state, 0) + 1
            for info in list(plugin.history):
                counts[info["state"]] = counts.get(info["state"], 0) + 1
            for k, v in dashboard.totals(plugin).items():
                totals[k] = totals.get(k, 0) + v
        gens = GaugeMetricFamily(
            name("generators"),
            "Generator calls by state: live ones plus the finished ones the "
            "scheduler remembers (daskgen.history)",
            labels=["state"],
        )
        for state, n in counts.items():
            gens.add_metric([state], n)
        yield gens
        yield CounterMetricFamily(
            name("items_yielded"),
            "Items yielded by generator calls",
            value=totals["items"],
        )
        yield CounterMetricFamily(
            name("bytes_yielded"),
            "Bytes (sizeof) of the items yielded by generator calls",
            value=totals["bytes"],
        )
        yield CounterMetricFamily(
            name("backpressure_pauses"),
            "Times a streaming generator paused because its consumer was behind",
            value=totals["pauses"],
        )
        yield CounterMetricFamily(
            name("backpressure_paused_seconds"),
            "Seconds streaming generators spent paused by backpressure",
            value=totals["paused_seconds"],
        )

    def describe(self) -> list[Any]:
        """The metric names, without values (saves a collect at registration)."""
        return list(self._families([]))

    def collect(self) -> Iterator[Any]:
        """The metrics, summed over the daskgen schedulers of this process."""
        plugins = dashboard.live_plugins()
        if plugins:
            yield from self._families(plugins)


def register() -> None:
    """Add the collector to ``prometheus_client.REGISTRY``, once per process
    (nothing without ``prometheus_client``)."""
    global _collector
    with _lock:
        if _collector is not None:
            return
        try:
            from prometheus_client import REGISTRY
        except ImportError:
            return
        collector = _Collector()
        try:
            REGISTRY.register(collector)
        except ValueError as e:  # names taken, e.g. this module was reloaded
            logger.warning("daskgen: Prometheus metrics not registered: %s", e)
        _collector = collector
