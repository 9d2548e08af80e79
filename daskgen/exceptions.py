"""Exceptions raised by daskgen.

The hierarchy, with the Dask or Python exception each one extends so that
code which already catches Dask's errors keeps working::

    DaskgenError
    ├── NumReturnsError(ValueError)           fewer or more yields than num_returns=N
    ├── ReplayInconsistentError(RuntimeError) a re-run yielded a different number of items
    ├── GeneratorCancelledError(CancelledError) the generator call was cancelled
    ├── StreamTimeoutError(TimeoutError)      no next item within the timeout
    └── InvalidStateError(RuntimeError)       a handle used in a state that cannot serve it

A worker that dies while running a generator more often than ``max_retries``
allows raises Dask's own :class:`distributed.KilledWorker`.
"""

from __future__ import annotations

from asyncio import CancelledError

__all__ = [
    "DaskgenError",
    "GeneratorCancelledError",
    "InvalidStateError",
    "NumReturnsError",
    "ReplayInconsistentError",
    "StreamTimeoutError",
]


class DaskgenError(Exception):
    """Base class of every exception daskgen defines."""


class NumReturnsError(DaskgenError, ValueError):
    """A task yielded (or returned) a different number of values than ``num_returns``.

    Raised by the items a static ``num_returns=N`` call did not get (too few
    yields), or by its last item when the generator yields more than N values.
    """


class ReplayInconsistentError(DaskgenError, RuntimeError):
    """A re-run of a generator yielded a different number of items than before.

    Raised after a retry (worker death, or ``retry_exceptions``) when the
    generator is not deterministic in its length. Ray 2.60 raises
    ``StreamingGeneratorReplayInconsistentError`` in the same case.
    """


class GeneratorCancelledError(DaskgenError, CancelledError):
    """The generator call was cancelled before it ended.

    Raised by ``next()`` on a cancelled :class:`~daskgen.FutureGenerator`, and by
    the items of a static call that were not produced before the cancellation.
    """


class StreamTimeoutError(DaskgenError, TimeoutError):
    """No next item arrived within the ``timeout`` given to ``next``."""


class InvalidStateError(DaskgenError, RuntimeError):
    """A handle was used in a way its state or client cannot serve.

    For example ``async for`` on a stream whose client is synchronous.
    """
