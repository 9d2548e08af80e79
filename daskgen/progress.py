"""Progress display for generator calls.

Examples
--------
>>> from daskgen.progress import progress
>>> gen = daskgen.submit(produce, 1000)  # doctest: +SKIP
>>> progress(gen)  # doctest: +SKIP
[daskgen] produce: 1000 items yielded, 0 taken (finished) | 812.4/s | 1.2 s | finished
>>> progress(daskgen.submit(produce, 3, num_returns=3))  # doctest: +SKIP
[daskgen] [########################################] 3/3 items | 0.1 s | finished
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO, TypeAlias

from dask.utils import format_time
from distributed import Future
from distributed import client as _dclient
from distributed import utils as _dutils

from daskgen.client import CallState, DynamicFuture, FutureGenerator

__all__ = ["progress"]

_is_kernel: Any = _dutils.is_kernel  # untyped in distributed
_futures_of: Any = _dclient.futures_of

Stream: TypeAlias = "FutureGenerator | DynamicFuture"
Show: TypeAlias = "Callable[[str, bool], None]"

#: Width of the bar of a list of Futures, in characters.
BAR_WIDTH = 40


def progress(
    gen_or_list: Any,
    *,
    notebook: bool | None = None,
    interval: float = 0.1,
    file: TextIO | None = None,
) -> Any:
    """Show the progress of generator calls until they end.

    Parameters
    ----------
    gen_or_list : FutureGenerator, DynamicFuture, list of these, or Futures
        A streaming call's :class:`~daskgen.FutureGenerator` or a dynamic
        call's :class:`~daskgen.DynamicFuture`, or a list of these: a running
        count of the items yielded so far (there is no total to show a bar
        against). Otherwise a Future or a collection of Futures, e.g. the
        items of a ``num_returns=N`` call: a bar of how many are done.
    notebook : bool, optional
        Display in a Jupyter notebook, updated in place (default: guess).
    interval : float
        Seconds between updates.
    file : file-like, optional
        Where the text display goes (default ``sys.stderr``), one line
        rewritten with ``\\r``.

    Returns
    -------
    None, or, if the calls belong to an asynchronous client, a coroutine to
    await (``await progress(gen)``).

    Notes
    -----
    This blocks until every call has ended (returned, raised or been
    cancelled) or every Future is done; it does not take items, so run it
    before or alongside the loop that consumes them (e.g. in a thread).

    :func:`distributed.progress` takes a static call's items too (daskgen
    tells its plugins when they are done), but not a stream, which has no
    total.
    """
    tracker = _tracker(gen_or_list)
    if notebook is None:
        notebook = bool(_is_kernel())
    show = _notebook_display() if notebook else _text_display(file or sys.stderr)
    if tracker.asynchronous():
        return _run_async(tracker, show, interval)
    _run(tracker, show, interval)
    return None


# ------------------------------------------------------------------ trackers


class _Tracker:
    """What a display shows: a line of text, and whether it is final."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def clients(self) -> list[Any]:
        raise NotImplementedError

    def asynchronous(self) -> bool:
        return any(c.asynchronous for c in self.clients())

    def closed(self) -> bool:
        return any(c.status in ("closing", "closed") for c in self.clients())

    def done(self) -> bool:
        raise NotImplementedError

    def text(self) -> str:
        raise NotImplementedError


class _StreamTracker(_Tracker):
    """Items yielded by streaming or dynamic calls, as their client learns of them."""

    def __init__(self, streams: list[tuple[CallState, Stream]]) -> None:
        super().__init__()
        self.streams = streams

    def clients(self) -> list[Any]:
        return [s.client for s, _ in self.streams]

    def done(self) -> bool:
        return self.closed() or all(s.end is not None for s, _ in self.streams)

    def text(self) -> str:
        parts = []
        for s, handle in self.streams:
            if isinstance(handle, FutureGenerator):
                part = (
                    f"{handle.name}: {s.produced} items yielded, {handle.taken} taken"
                )
            else:
                part = f"{handle.key}: {s.produced} items yielded"
            if s.end is not None:
                part += f" ({_ENDS.get(s.end, s.end)})"
            parts.append(part)
        elapsed = self.elapsed()
        produced = sum(s.produced for s, _ in self.streams)
        rate = produced / elapsed if elapsed > 0 else 0.0
        if not self.done():
            state = "running"
        elif any(s.end not in (None, "memory") for s, _ in self.streams):
            state = "failed"
        else:
            state = "finished"
        return (
            f"[daskgen] {'; '.join(parts)} | {rate:,.1f}/s | "
            f"{format_time(elapsed)} | {state}"
        )


class _FutureTracker(_Tracker):
    """How many of some Futures are done, from their client-side status."""

    def __init__(self, futures: list[Future[Any]]) -> None:
        super().__init__()
        self.futures = futures

    def clients(self) -> list[Any]:
        return list({id(f.client): f.client for f in self.futures}.values())

    def done(self) -> bool:
        return self.closed() or all(f.status in _DONE for f in self.futures)

    def text(self) -> str:
        n = len(self.futures)
        ndone = sum(f.status in _DONE for f in self.futures)
        nerr = sum(f.status in ("error", "cancelled") for f in self.futures)
        fill = BAR_WIDTH * ndone // n if n else BAR_WIDTH
        bar = "#" * fill + " " * (BAR_WIDTH - fill)
        errors = f", {nerr} failed" if nerr else ""
        state = "running" if not self.done() else "failed" if nerr else "finished"
        return (
            f"[daskgen] [{bar}] {ndone}/{n} items{errors} | "
            f"{format_time(self.elapsed())} | {state}"
        )


# Client-side statuses of a Future that will not change on their own.
_DONE = ("finished", "error", "cancelled")

# How a call ended (its driver task's final state), as shown.
_ENDS = {"memory": "finished", "erred": "failed"}


def _tracker(x: Any) -> _Tracker:
    items: list[Any] = list(x) if isinstance(x, (list, tuple, set)) else [x]
    streamlike = (FutureGenerator, DynamicFuture)
    if items and all(isinstance(i, streamlike) for i in items):
        return _StreamTracker([(i.call, i) for i in items])
    if any(isinstance(i, FutureGenerator) for i in items):
        raise TypeError(
            "progress() takes a FutureGenerator, a DynamicFuture, a list of "
            "these, or Futures; not a FutureGenerator mixed with other objects."
        )
    futures = _futures_of(x)
    if not futures:
        raise TypeError(f"progress() found no Futures in {type(x).__name__} {x!r:.80}")
    return _FutureTracker(list(futures))


# ------------------------------------------------------------------- running


def _run(tracker: _Tracker, show: Show, interval: float) -> None:
    try:
        while not tracker.done():
            show(tracker.text(), False)
            time.sleep(interval)
    finally:
        show(tracker.text(), True)


async def _run_async(tracker: _Tracker, show: Show, interval: float) -> None:
    try:
        while not tracker.done():
            show(tracker.text(), False)
            await asyncio.sleep(interval)
    finally:
        show(tracker.text(), True)


def _text_display(file: TextIO) -> Show:
    width = [0]

    def show(text: str, last: bool) -> None:
        pad = " " * max(0, width[0] - len(text))
        width[0] = len(text)
        file.write("\r" + text + pad + ("\n" if last else ""))
        file.flush()

    return show


def _notebook_display() -> Show:
    ipd = importlib.import_module("IPython.display")
    handle: list[Any] = [None]

    def show(text: str, last: bool) -> None:
        if handle[0] is None:
            handle[0] = ipd.display(ipd.Pretty(text), display_id=True)
        else:
            handle[0].update(ipd.Pretty(text))

    return show
