"""Progress display for generator calls.

Examples
--------
>>> from daskgen.progress import progress
>>> gen = daskgen.submit(produce, 1000)  # doctest: +SKIP
>>> progress(gen)  # doctest: +SKIP
[daskgen] produce: 1000 items yielded, 0 taken | 812.4/s | 1.2 s | finished
>>> progress(daskgen.submit(produce, 3, num_returns=3))  # doctest: +SKIP
[########################################] | 100% Completed |  0.1s
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO, TypeAlias

from distributed import utils as _dutils

from daskgen.client import DynamicFuture, FutureGenerator, _StreamState
from daskgen.dashboard import format_rate, format_seconds

__all__ = ["progress"]

_is_kernel: Any = _dutils.is_kernel  # untyped in distributed

Stream: TypeAlias = "FutureGenerator | DynamicFuture"


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
    gen_or_list : FutureGenerator, DynamicFuture, or list of Futures
        A streaming call's :class:`~daskgen.FutureGenerator` or a dynamic
        call's :class:`~daskgen.DynamicFuture` (or a list of these): shows a
        running count of the items yielded so far, as the client learns of
        them. Anything else (e.g. the Futures of a ``num_returns=N`` call) is
        passed to :func:`distributed.progress`, which shows a bar of the
        items completed.
    notebook : bool, optional
        Display in a Jupyter notebook (default: guess). For generator calls
        the display updates in place.
    interval : float
        Seconds between updates of a generator call's count.
    file : file-like, optional
        Where the text display goes (default ``sys.stderr``).

    Returns
    -------
    None, or a coroutine for an asynchronous client's generator calls
    (``await progress(gen)``), or what :func:`distributed.progress` returns.

    Notes
    -----
    For generator calls this blocks until every call has ended (returned,
    raised or been cancelled); it does not take items, so run it before or
    alongside the loop that consumes them (e.g. in a thread).
    """
    streams = _streams(gen_or_list)
    if streams is None:
        import distributed

        dask_progress: Any = distributed.progress  # untyped
        return dask_progress(gen_or_list, notebook=notebook)
    if notebook is None:
        notebook = bool(_is_kernel())
    show = _notebook_display() if notebook else _text_display(file or sys.stderr)
    bar = _Bar(streams, show)
    if any(s.client.asynchronous for s, _ in streams):
        return bar.run_async(interval)
    bar.run(interval)
    return None


def _streams(x: Any) -> list[tuple[_StreamState, Stream]] | None:
    """The stream states of ``x``, or None if it is not (a list of) generator calls."""
    items: list[Any] = list(x) if isinstance(x, (list, tuple, set)) else [x]
    if not items or not all(
        isinstance(i, (FutureGenerator, DynamicFuture)) for i in items
    ):
        if any(isinstance(i, FutureGenerator) for i in items):
            raise TypeError(
                "progress() takes a FutureGenerator, a DynamicFuture, a list of "
                "these, or a list of Futures; not a FutureGenerator mixed with "
                "other objects."
            )
        return None
    out: list[tuple[_StreamState, Stream]] = []
    for i in items:
        state = i._state if isinstance(i, FutureGenerator) else i._stream
        out.append((state, i))
    return out


# How a call ended (its driver task's final state), as shown.
_ENDS = {"memory": "finished", "erred": "failed"}


class _Bar:
    """The count of items yielded by some generator calls."""

    def __init__(
        self,
        streams: list[tuple[_StreamState, Stream]],
        show: Callable[[str, bool], None],
    ) -> None:
        self.streams = streams
        self.show = show
        self.start = time.monotonic()

    def done(self) -> bool:
        return all(
            s.end is not None or s.client.status in ("closing", "closed")
            for s, _ in self.streams
        )

    def text(self) -> str:
        elapsed = time.monotonic() - self.start
        parts = []
        for s, handle in self.streams:
            name = (
                handle._name if isinstance(handle, FutureGenerator) else str(handle.key)
            )
            part = f"{name}: {s.produced} items yielded"
            if isinstance(handle, FutureGenerator):
                part += f", {handle._index} taken"
            if s.end is not None:
                part += f" ({_ENDS.get(s.end, s.end)})"
            parts.append(part)
        produced = sum(s.produced for s, _ in self.streams)
        rate = produced / elapsed if elapsed > 0 else 0.0
        if not self.done():
            state = "running"
        elif any(s.end not in (None, "memory") for s, _ in self.streams):
            state = "failed"
        else:
            state = "finished"
        return (
            f"[daskgen] {'; '.join(parts)} | {format_rate(rate)} | "
            f"{format_seconds(elapsed)} | {state}"
        )

    def run(self, interval: float) -> None:
        try:
            while not self.done():
                self.show(self.text(), False)
                time.sleep(interval)
        finally:
            self.show(self.text(), True)

    async def run_async(self, interval: float) -> None:
        try:
            while not self.done():
                self.show(self.text(), False)
                await asyncio.sleep(interval)
        finally:
            self.show(self.text(), True)


def _text_display(file: TextIO) -> Callable[[str, bool], None]:
    width = [0]

    def show(text: str, last: bool) -> None:
        pad = " " * max(0, width[0] - len(text))
        width[0] = len(text)
        file.write("\r" + text + pad + ("\n" if last else ""))
        file.flush()

    return show


def _notebook_display() -> Callable[[str, bool], None]:
    ipd = importlib.import_module("IPython.display")
    handle: list[Any] = [None]

    def show(text: str, last: bool) -> None:
        if handle[0] is None:
            handle[0] = ipd.display(ipd.Pretty(text), display_id=True)
        else:
            handle[0].update(ipd.Pretty(text))

    return show
