"""``get`` and ``wait`` in Ray's shape, for people moving from Ray."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from dask.utils import parse_timedelta
from distributed import Future

from daskgen import _compat
from daskgen.client import DynamicFuture, FutureGenerator, Timeout, default_client

__all__ = ["get", "wait"]


def get(x: Any, timeout: Timeout = None) -> Any:
    """Like ``ray.get``: the value of a Future, or the values of a list of them.

    A :class:`~daskgen.DynamicFuture` gives its list of item Futures, as
    ``ray.get`` on a dynamic call's ref gives its refs. With an asynchronous
    client this returns an awaitable.

    Parameters
    ----------
    x : Future, DynamicFuture, or list of Futures
    timeout : number or string or timedelta, optional
        Time in seconds after which to raise ``TimeoutError``.

    Examples
    --------
    >>> daskgen.get(daskgen.submit(produce, 3, num_returns=3))  # doctest: +SKIP
    [0, 10, 20]
    """
    if isinstance(x, DynamicFuture):
        return x.result(timeout=timeout)
    if isinstance(x, Future):
        return x.result(timeout=timeout)
    if isinstance(x, Sequence) and all(isinstance(f, Future) for f in x):
        client = x[0].client if x else default_client()
        return _compat.gather(client, list(x), parse_timedelta(timeout))
    raise TypeError(
        f"daskgen.get takes a Future, a DynamicFuture or a list of Futures; got "
        f"{type(x).__name__}. To iterate a stream use `for fut in gen`."
    )


def wait(
    items: Sequence[Future[Any] | FutureGenerator],
    num_returns: int = 1,
    timeout: Timeout = None,
) -> Any:
    """Like ``ray.wait``: ``(ready, not_ready)`` once ``num_returns`` are ready.

    A :class:`~daskgen.FutureGenerator` counts as ready when its next item
    is (or it has ended), as in Ray. Both lists keep the order of ``items``.
    With a ``timeout`` it returns what is ready by then (Ray's behavior), and
    with an asynchronous client it returns an awaitable.

    Examples
    --------
    >>> ready, not_ready = daskgen.wait(refs, num_returns=2, timeout=5)  # doctest: +SKIP
    """
    items = list(items)
    if not 1 <= num_returns <= max(len(items), 1):
        raise ValueError(
            f"num_returns={num_returns} must be between 1 and the number of "
            f"items ({len(items)})"
        )
    bad = [x for x in items if not isinstance(x, (Future, FutureGenerator))]
    if bad:
        raise TypeError(
            f"daskgen.wait takes Futures and FutureGenerators; got "
            f"{type(bad[0]).__name__}"
        )
    if not items:
        return [], []
    client = items[0].client
    return client.sync(_wait, items, num_returns, parse_timedelta(timeout))


def _ready(x: Future[Any] | FutureGenerator) -> bool:
    if isinstance(x, FutureGenerator):
        return x.next_ready()
    return bool(x.done())


async def _wait_one(x: Future[Any] | FutureGenerator) -> None:
    if isinstance(x, FutureGenerator):
        state = x.call
        while not x.next_ready():
            event = state.event()
            event.clear()
            await event.wait()
    else:
        await _compat.future_done(x)


async def _wait(
    items: list[Future[Any] | FutureGenerator], num_returns: int, timeout: float | None
) -> tuple[list[Any], list[Any]]:
    pending = {asyncio.ensure_future(_wait_one(x)): x for x in items if not _ready(x)}
    try:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while sum(map(_ready, items)) < num_returns and pending:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                break
            done, _ = await asyncio.wait(
                pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            for t in done:
                del pending[t]
    finally:
        for t in pending:
            t.cancel()
    ready = [x for x in items if _ready(x)]
    return ready, [x for x in items if not _ready(x)]
