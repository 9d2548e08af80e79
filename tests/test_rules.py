"""daskgen's call rules (daskgen._rules) as tables: no cluster, well under a second."""

from __future__ import annotations

import pytest

from daskgen._core import CallSpec, Mode, State
from daskgen._rules import (
    End,
    Item,
    ItemView,
    Pause,
    classify,
    end_outcome,
    end_reply,
    held,
    limit,
    pause_step,
    share,
)

WAITING_ON_DRIVER = ItemView("waiting", waits_only_on_driver=True, wanted=True)
WAITING_ON_MORE = ItemView("waiting", waits_only_on_driver=False, wanted=True)
RELEASED_WANTED = ItemView("released", waits_only_on_driver=False, wanted=True)
RELEASED_UNWANTED = ItemView("released", waits_only_on_driver=False, wanted=False)
IN_MEMORY = ItemView("memory", waits_only_on_driver=False, wanted=True)

S, D, ST = Mode.STATIC, Mode.DYNAMIC, Mode.STREAMING

# (mode, index, held, item, final, produced, declared, abandoned) -> outcome
CLASSIFY = [
    # a new yield of a stream or dynamic call
    pytest.param(ST, 5, True, None, None, 5, 0, False, Item.CREATE, id="stream-new"),
    pytest.param(D, 0, True, None, None, 0, 0, False, Item.CREATE, id="dynamic-new"),
    # ... that the caller released before it was produced, or a dropped handle's
    pytest.param(ST, 3, True, None, None, 5, 0, False, Item.DROP, id="stream-released"),
    pytest.param(ST, 5, True, None, None, 5, 0, True, Item.DROP, id="stream-abandoned"),
    # static: before `declare` made it, create it; after, its absence means released
    pytest.param(S, 7, True, None, None, 7, 4, False, Item.CREATE_WANTED, id="static-early"),
    pytest.param(S, 2, True, None, None, 7, 4, False, Item.DROP, id="static-released"),
    # a declared (or lost) item that waits for this driver only
    pytest.param(S, 2, True, WAITING_ON_DRIVER, None, 2, 4, False, Item.COMPLETE, id="static-declared"),
    pytest.param(ST, 2, True, WAITING_ON_DRIVER, None, 9, 0, False, Item.COMPLETE, id="stream-rebuilt"),
    # waiting on something else too: not ours to complete
    pytest.param(ST, 2, True, WAITING_ON_MORE, None, 9, 0, False, Item.DROP, id="waits-on-more"),
    # released and wanted again (a task being recomputed needs it)
    pytest.param(ST, 2, True, RELEASED_WANTED, None, 9, 0, False, Item.REVIVE, id="revive"),
    pytest.param(ST, 2, True, RELEASED_UNWANTED, None, 9, 0, False, Item.DROP, id="released-unwanted"),
    # a replayed duplicate of an item in memory
    pytest.param(ST, 2, True, IN_MEMORY, None, 9, 0, False, Item.DROP, id="duplicate"),
    # the worker was fetching a copy: nothing of its own to store
    pytest.param(ST, 2, False, RELEASED_WANTED, None, 9, 0, False, Item.ELSEWHERE, id="not-held"),
    pytest.param(ST, 9, False, None, None, 9, 0, False, Item.ELSEWHERE, id="not-held-new"),
    # beyond what an earlier run that returned yielded: an inconsistent re-run
    pytest.param(ST, 4, True, None, 4, 4, 0, False, Item.PAST_END, id="past-end"),
    pytest.param(ST, 4, False, None, 4, 4, 0, False, Item.PAST_END, id="past-end-not-held"),
    pytest.param(ST, 3, True, IN_MEMORY, 4, 4, 0, False, Item.DROP, id="before-end"),
]  # fmt: skip


@pytest.mark.parametrize(
    "mode,index,held,item,final,produced,declared,abandoned,expected", CLASSIFY
)
def test_classify(
    mode, index, held, item, final, produced, declared, abandoned, expected
):
    got = classify(
        mode=mode,
        index=index,
        held=held,
        item=item,
        final=final,
        produced=produced,
        declared=declared,
        abandoned=abandoned,
    )
    assert got is expected


def _end(**kw):
    base = dict(
        mode=ST,
        count=5,
        raised=False,
        retryable=False,
        replay=False,
        cancelled=False,
        final=None,
        produced=5,
        attempts=1,
        budget=4,
    )
    return end_outcome(**{**base, **kw})


# overrides of a stream's run that yielded 5 items and returned -> outcome, reply
END = [
    pytest.param({}, End.FINISHED, {}, id="returned"),
    pytest.param({"replay": True, "raised": True}, End.IGNORE, {}, id="replay"),
    pytest.param({"cancelled": True, "raised": True}, End.CANCELLED, {"raise": True}, id="cancelled"),
    # a re-run that yielded fewer than an earlier run, or another count than one that returned
    pytest.param({"count": 3}, End.INCONSISTENT, {}, id="fewer-than-produced"),
    pytest.param({"final": 6, "produced": 6, "count": 7}, End.INCONSISTENT, {}, id="more-than-final"),
    pytest.param({"final": 5}, End.FINISHED, {}, id="same-as-final"),
    # raised: retried while the budget lasts, if retry_exceptions names it
    pytest.param({"raised": True, "retryable": True}, End.RETRY, {"raise": True}, id="retry"),
    pytest.param({"raised": True, "retryable": True, "attempts": 4}, End.ERROR_ITEM, {"raise": False}, id="budget-spent"),
    pytest.param({"raised": True}, End.ERROR_ITEM, {"raise": False}, id="stream-error-item"),
    pytest.param({"raised": True, "mode": S}, End.RAISE, {"raise": True}, id="static-raises"),
    pytest.param({"raised": True, "mode": D}, End.RAISE, {"raise": True}, id="dynamic-raises"),
    # a raise is never "inconsistent": its error is what the caller gets
    pytest.param({"raised": True, "count": 2}, End.ERROR_ITEM, {"raise": False}, id="raised-early"),
]  # fmt: skip


@pytest.mark.parametrize("overrides,expected,reply", END)
def test_end_outcome(overrides, expected, reply):
    outcome = _end(**overrides)
    assert outcome is expected
    assert end_reply(outcome) == reply


@pytest.mark.parametrize(
    "taken,backpressure,expected", [(0, None, None), (0, 3, 3), (7, 3, 10)]
)
def test_limit(taken, backpressure, expected):
    assert limit(taken, backpressure) == expected


PAUSE = [
    (State.RUNNING, 3, 3, Pause.PAUSE),  # at the limit
    (State.RUNNING, 4, 3, Pause.PAUSE),  # past it (a report of several yields)
    (State.RUNNING, 2, 3, None),
    (State.RUNNING, 9, None, None),  # no backpressure
    (State.PAUSED, 3, 3, None),  # still at the limit
    (State.PAUSED, 3, 4, Pause.RESUME),  # the consumer took one
    (State.PAUSED, 3, None, Pause.RESUME),  # lifted: the handle was dropped
    (State.WAITING, 3, 3, None),  # not running: nothing to pause
    (State.FINISHED, 3, 4, None),
]


@pytest.mark.parametrize("state,produced,lim,expected", PAUSE)
def test_pause_step(state, produced, lim, expected):
    assert pause_step(state, produced, lim) is expected


def test_call_spec_round_trip():
    spec = CallSpec(
        gen_id="abc",
        prefix="produce-abc",
        mode=Mode.STREAMING,
        name="produce",
        client="Client-1",
        max_retries=3,
        backpressure=4,
        end_key="produce-completed-abc",
        retry_exceptions=(KeyError,),
    )
    meta = spec.to_annotation()
    assert meta["mode"] == "streaming" and type(meta["mode"]) is str
    back = CallSpec.from_annotation(meta)
    assert back == spec  # retry_exceptions stays on the worker side
    assert back.retry_exceptions is False
    assert back.item_key(7) == ("produce-abc", 7)
    assert back.pseudo_client == "daskgen-abc"
    with pytest.raises(AttributeError):
        back.max_retries = 0  # type: ignore[misc]
    assert f"{State.ERRED}" == "erred" and str(Mode.STATIC) == "static"


# free, wants, holds -> shares (one at a time to whoever holds least)
SHARE = [
    (4, [None, None], [0, 0], [2, 2]),
    (5, [None, None], [0, 0], [3, 2]),  # the oldest first among equals
    (3, [None, None], [3, 0], [0, 3]),  # to the stream holding least
    (4, [1, None], [0, 0], [1, 3]),  # up to its own backpressure
    (4, [1, 0], [0, 0], [1, 0]),  # what nobody wants stays free
    (0, [None], [2], [0]),
    (-2, [None], [5], [0]),  # over budget (a cancelled grant): nothing
    (2, [], [], []),
]


@pytest.mark.parametrize("free,wants,holds,expected", SHARE)
def test_share(free, wants, holds, expected):
    assert share(free, wants, holds) == expected
    assert sum(expected) <= max(free, 0)


@pytest.mark.parametrize(
    "limit,taken,produced,ended,expected",
    [
        (8, 3, 5, False, 5),  # running: its whole grant, yielded or not
        (8, 3, 5, True, 2),  # ended: only what nobody took
        (8, 8, 8, False, 0),
        (4, 6, 6, True, 0),
    ],
)
def test_held(limit, taken, produced, ended, expected):
    assert held(limit, taken, produced, ended) == expected
