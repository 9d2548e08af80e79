"""Measuring helpers shared by the examples (not part of daskgen)."""

from __future__ import annotations

import contextlib
import threading

import psutil
from distributed import Client


class PeakRSS:
    """Sample the RSS of this process's children (the worker) every 10 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.01):
            rss = 0
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    rss = max(rss, child.memory_info().rss)
            self.peak = max(self.peak, rss)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def spilled_bytes(client: Client) -> int:
    """Bytes the worker(s) wrote to disk so far."""
    out = client.run(
        lambda dask_worker: getattr(dask_worker.data, "cumulative_metrics", {}).get(
            ("disk-write", "bytes"), 0
        )
    )
    return int(sum(out.values()))
