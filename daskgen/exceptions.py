"""Exceptions raised by daskgen.

The hierarchy, with the Dask or Python exception each one extends so that
code which already catches Dask's errors keeps working::

    DaskgenError
    ├── NumReturnsError(ValueError)           fewer or more yields than num_returns=N
    ├── ReplayInconsistentError(RuntimeError) a re-run yielded a different number of items
    ├── GeneratorCancelledError(CancelledError) the generator call was cancelled
    ├── StreamTimeoutError(TimeoutError)      no next item within the timeout
    ├── InvalidStateError(RuntimeError)       a handle used in a state that cannot serve it
    ├── GeneratorKilledError(distributed.KilledWorker) workers died more than max_retries allows
    └── ItemLostError(distributed.KilledWorker) an item was lost and its generator cannot re-run

Both ``KilledWorker`` subclasses are caught by code that catches Dask's own
:class:`distributed.KilledWorker`.
"""

from __future__ import annotations

from concurrent.futures import CancelledError
from typing import Any

from distributed import KilledWorker

__all__ = [
    "ActorDiedError",
    "DaskgenError",
    "GeneratorCancelledError",
    "GeneratorKilledError",
    "InvalidStateError",
    "ItemLostError",
    "NumReturnsError",
    "ReplayInconsistentError",
    "StreamTimeoutError",
]


def a_noun(noun: str) -> str:
    """``noun`` with its indefinite article, for messages: "an int", "a dict"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


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

    A ``concurrent.futures.CancelledError`` (what distributed raises for a
    cancelled Future), not asyncio's, which would read as task cancellation.

    Raised by ``next()`` on a cancelled :class:`~daskgen.FutureGenerator`, and by
    the items of a static call that were not produced before the cancellation.
    """


class StreamTimeoutError(DaskgenError, TimeoutError):
    """No next item arrived within the ``timeout`` given to ``next``."""


class InvalidStateError(DaskgenError, RuntimeError):
    """A handle was used in a way its state or client cannot serve.

    For example ``async for`` on a stream whose client is synchronous.
    """


class _KilledWorkerMessage(DaskgenError, KilledWorker):
    def __init__(self, message: str, *args: Any) -> None:
        Exception.__init__(self, message, *args)

    def __str__(self) -> str:
        return str(self.args[0])


class GeneratorKilledError(_KilledWorkerMessage):
    """The worker running a daskgen task died more often than ``max_retries`` allows.

    Raised by the call's Futures that were not produced (and by a stream's
    ``next``). Dask's own KilledWorker counts the cluster-wide
    ``distributed.scheduler.allowed-failures``; daskgen counts ``max_retries``
    of the call, and says so.
    """


class ItemLostError(_KilledWorkerMessage):
    """An item was lost with its worker, and its generator cannot run again.

    Raised by an item whose generator call already failed for good (for
    example it exhausted ``max_retries``), so the lineage that would recompute
    the item is gone. A :class:`distributed.KilledWorker`, so code catching
    Dask's error for dead workers catches it too.
    """


class ActorDiedError(_KilledWorkerMessage):
    """The actor is gone with its worker (Ray: ``ActorDiedError``). Dask does
    not restart actors: every call of it, running or not, raises this."""


def actor_died_error(actor: str, name: str, worker: Any) -> ActorDiedError:
    return ActorDiedError(
        f"actor {actor!r} (call {name!r}) was lost with its worker {worker}: Dask "
        "does not restart actors, so the actor and its state are gone. Create a "
        "new actor (Cls.remote(...) or client.submit(Cls, actor=True)) and call it "
        "again."
    )


def killed_error(
    name: str,
    key: Any,
    deaths: int,
    max_retries: int,
    worker: Any,
    runs: int | None = None,
) -> GeneratorKilledError:
    """The error of a call whose worker died once more than max_retries allows."""
    s = "s" if max_retries != 1 else ""
    text = (
        f"the worker running {name!r} (task {key!r}) died {deaths} "
        f"time{'s' if deaths != 1 else ''}, and max_retries={max_retries} allows "
        f"{max_retries} re-run{s}."
    )
    if runs is not None and runs > deaths:
        text += (
            f" It ran {runs} times in all: worker deaths, retried exceptions and "
            "rebuilding lost items each use a re-run."
        )
    return GeneratorKilledError(
        f"{text} The last worker was {worker}. A worker usually dies for "
        "exceeding its memory limit: check the worker logs, yield smaller values, "
        "or give workers more memory. See "
        "https://distributed.dask.org/en/stable/killed.html"
    )
