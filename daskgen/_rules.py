"""A generator call's rules, as pure functions of plain data.

The scheduler plugin (:mod:`daskgen.scheduler`) owns the scheduler's tasks and
messages; what it *decides* is here, so every rule can be tested with a table
and no cluster (``tests/test_rules.py``):

- :func:`classify`: what to do with one yield a driver reported;
- :func:`end_outcome`: what a run's end (return or raise) means for the call;
- :func:`limit` and :func:`pause_step`: backpressure and its pause accounting.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from daskgen._core import Mode, State

__all__ = [
    "End",
    "Item",
    "ItemView",
    "Pause",
    "classify",
    "end_outcome",
    "limit",
    "held",
    "pause_step",
    "share",
]


class Item(Enum):
    """What the scheduler does with one reported yield."""

    ELSEWHERE = "elsewhere"  # the worker holds no copy of it (it was fetching one)
    PAST_END = "past end"  # beyond the item count of an earlier run: drop; the run errs
    CREATE_WANTED = (
        "create wanted"  # static, before `declare` made it: create, want, complete
    )
    CREATE = "create"  # a stream's or dynamic call's new item: create and complete
    COMPLETE = (
        "complete"  # it waits only for this driver (lost, being rebuilt): complete
    )
    REVIVE = "revive"  # released but wanted again: to waiting, then complete
    DROP = "drop"  # nobody wants it (released before produced, a replayed duplicate)


#: Outcomes that put the item in memory on the reporting worker.
STORED = frozenset({Item.CREATE_WANTED, Item.CREATE, Item.COMPLETE, Item.REVIVE})


@dataclass(frozen=True)
class ItemView:
    """What the scheduler knows of an item's task, for :func:`classify`."""

    state: str  # the task's Dask state ("released", "waiting", "memory", ...)
    waits_only_on_driver: bool  # waiting, and for the driver only
    wanted: bool  # a client or a dependent task wants it


def classify(
    *,
    mode: Mode,
    index: int,
    held: bool,
    item: ItemView | None,
    final: int | None,
    produced: int,
    declared: int,
    abandoned: bool,
) -> Item:
    """What to do with yield ``index`` of a run that is the driver's current one.

    Parameters
    ----------
    mode
        The call's mode.
    index
        The yield's index.
    held
        Whether the reporting worker holds the value (False: it was fetching
        a copy that another worker has).
    item
        The item's task, or None if the scheduler has none.
    final
        The item count of an earlier run that ran to its end, if any.
    produced
        Highest index + 1 reported by any run before this batch.
    declared
        Static calls: how many items ``declare`` has made so far.
    abandoned
        The caller dropped its handle.
    """
    if final is not None and index >= final:
        return Item.PAST_END
    if not held:
        return Item.ELSEWHERE
    if item is None:
        if mode is Mode.STATIC:
            return Item.CREATE_WANTED if index >= declared else Item.DROP
        if index < produced or abandoned:
            return Item.DROP  # released before it was produced (again)
        return Item.CREATE
    if item.state == "waiting" and item.waits_only_on_driver:
        return Item.COMPLETE
    if item.state == "released" and item.wanted:
        return Item.REVIVE
    return Item.DROP


class End(Enum):
    """What a run's end means for the call (:func:`end_outcome`)."""

    IGNORE = "ignore"  # a replay (rebuild) pass ended: nothing to decide
    CANCELLED = "cancelled"  # stopped by a cancel: the driver errs, no retry
    INCONSISTENT = "inconsistent"  # a re-run yielded another number of items
    FINISHED = "finished"  # returned: its item count is final
    RETRY = "retry"  # raised, and may run again (retry_exceptions, budget left)
    RAISE = "raise"  # raised: the driver errs (static and dynamic calls)
    ERROR_ITEM = "error item"  # a stream raised: its error is one more item


def end_outcome(
    *,
    mode: Mode,
    count: int,
    raised: bool,
    retryable: bool,
    replay: bool,
    cancelled: bool,
    final: int | None,
    produced: int,
    attempts: int,
    budget: int,
) -> End:
    """What the end of a run that yielded ``count`` items means.

    ``raised``: the generator raised; ``retryable``: that exception is one of
    ``retry_exceptions``; ``replay``: a rebuild pass (it re-yields lost
    items, never decides); ``cancelled``: it stopped on a cancel; ``final``:
    the count of an earlier run that returned; ``produced``: highest index + 1
    of any run; ``attempts`` and ``budget``: runs so far, runs allowed.
    """
    if replay:
        return End.IGNORE
    if cancelled:
        return End.CANCELLED
    if not raised:
        if (final is not None and count != final) or count < produced:
            return End.INCONSISTENT
        return End.FINISHED
    # One budget for every re-run, as in Ray: a retried exception uses a
    # re-run of max_retries like a worker death or a rebuild does.
    if retryable and attempts < budget:
        return End.RETRY
    if mode is not Mode.STREAMING:
        return End.RAISE
    return End.ERROR_ITEM


def limit(taken: int, backpressure: int | None) -> int | None:
    """Highest index + 1 a stream may yield before its consumer takes more."""
    return None if backpressure is None else taken + backpressure


def share(free: int, wants: list[int | None], holds: list[int]) -> list[int]:
    """Split an actor's ``free`` budget among its streams, fairly: one item at
    a time to the stream that holds least (the oldest first among equals),
    each up to what it wants (None: no limit of its own).

    A stream's grant is its limit minus what its consumer took; the grants of
    one actor's streams never add up to more than its ``max_pending``.
    """
    out = [0] * len(wants)
    level = list(holds)
    while free > 0:
        able = [i for i, w in enumerate(wants) if w is None or out[i] < w]
        if not able:
            break
        i = min(able, key=lambda j: (level[j], j))
        out[i] += 1
        level[i] += 1
        free -= 1
    return out


def held(limit: int, taken: int, produced: int, ended: bool) -> int:
    """What a stream holds of its actor's budget: its grant (``limit - taken``)
    while it runs; once ended, the items it yielded and nobody took."""
    return max((produced if ended else limit) - taken, 0)


class Pause(Enum):
    PAUSE = "pause"
    RESUME = "resume"


def pause_step(state: State, produced: int, limit: int | None) -> Pause | None:
    """Whether a call starts or ends a backpressure pause now.

    A running call that yielded up to its limit is paused (until the consumer
    takes more); a paused one resumes once it may yield again, or when the
    limit is lifted (the caller dropped its handle).
    """
    if state is State.RUNNING and limit is not None and produced >= limit:
        return Pause.PAUSE
    if state is State.PAUSED and (limit is None or produced < limit):
        return Pause.RESUME
    return None


def end_reply(outcome: End) -> dict[str, Any]:
    """The part of the reply to a driver's final report that the outcome fixes.

    ``raise``: the driver task raises the generator's error (Dask then errs
    it, or retries it if its ``retries`` allow); the stream's error item and
    the inconsistent run's error are added by the plugin.
    """
    if outcome in (End.CANCELLED, End.RETRY, End.RAISE):
        return {"raise": True}
    if outcome is End.ERROR_ITEM:
        return {"raise": False}
    return {}
