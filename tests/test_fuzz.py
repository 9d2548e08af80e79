"""Bad input, fuzzed: every combination of ``submit``'s arguments either works
or raises a clear error before anything reaches the scheduler, and leaves
nothing behind (hypothesis over options and every kind of callable)."""

from __future__ import annotations

import functools
import gc
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import daskgen
from daskgen.exceptions import NumReturnsError

pytestmark = pytest.mark.slow

N = 3  # every callable below gives 3 values


def gen_fn(n=N):
    yield from range(n)


async def agen_fn(n=N):
    for i in range(n):
        yield i


def plain_fn(n=N):
    return list(range(n))


class GenCallable:
    def __call__(self, n=N):
        yield from range(n)


class AsyncGenCallable:
    async def __call__(self, n=N):
        for i in range(n):
            yield i


class PlainCallable:
    def __call__(self, n=N):
        return list(range(n))


class Methods:
    def gen(self, n=N):
        yield from range(n)

    @staticmethod
    def static_gen(n=N):
        yield from range(n)


CALLABLES = {
    "generator function": gen_fn,
    "async generator function": agen_fn,
    "plain function": plain_fn,
    "callable object (generator)": GenCallable(),
    "callable object (async generator)": AsyncGenCallable(),
    "callable object (plain)": PlainCallable(),
    "partial of a generator function": functools.partial(gen_fn),
    "partial of a plain function": functools.partial(plain_fn),
    "bound generator method": Methods().gen,
    "static generator method": Methods.static_gen,
    "builtin (range)": range,
    "lambda (plain)": lambda n=N: list(range(n)),
    "not callable": 42,
}
GENERATORS = {
    "generator function",
    "async generator function",
    "callable object (generator)",
    "callable object (async generator)",
    "partial of a generator function",
    "bound generator method",
    "static generator method",
}

options = st.fixed_dictionaries(
    {},
    optional={
        "num_returns": st.sampled_from(
            [None, "streaming", "dynamic", "static", 0, 1, 3, 5, -1, True, 2.0]
        ),
        "backpressure": st.sampled_from([None, 1, 2, 0, -1, True, 1.5, "2"]),
        "max_retries": st.sampled_from([None, 0, 2, -1, True, 1.5]),
        "retry_exceptions": st.sampled_from(
            [False, True, [ValueError], (KeyError, OSError), ValueError, [], [1], "x"]
        ),
        "key": st.sampled_from([None, "fuzz-key", 5, b"bytes"]),
    },
)


def _state(dask_scheduler):
    return (
        len(dask_scheduler.tasks),
        len(dask_scheduler.extensions["daskgen"].generators),
        sorted(c for c in dask_scheduler.clients if c.startswith("daskgen-")),
    )


def _details(dask_scheduler):
    return {
        "tasks": {
            str(k): (ts.state, sorted(c.client_key for c in ts.who_wants or ()))
            for k, ts in dask_scheduler.tasks.items()
        },
        "generators": [
            g.info() for g in dask_scheduler.extensions["daskgen"].generators.values()
        ],
    }


def _wait_clean(client, timeout=20):
    gc.collect()
    deadline = time.time() + timeout
    while (state := client.run_on_scheduler(_state)) != (0, 0, []):
        assert time.time() < deadline, (
            f"left behind: {state}: {client.run_on_scheduler(_details)}"
        )
        time.sleep(0.05)


def _value(fut):
    # .exception() first: raising a Future's stored exception would keep the
    # Future referenced by the client's state (docs/semantics.md, last row)
    exc = fut.exception(timeout=30)
    if exc is not None:
        raise type(exc)(*exc.args)
    return fut.result(timeout=30)


def _consume(result, mode):
    """Every value of a call's result, in order."""
    if mode == "dynamic":
        exc = result.exception(timeout=30)
        if exc is not None:
            raise type(exc)(*exc.args)
        return [_value(f) for f in result.result(timeout=30)]
    if mode == "streaming":
        return [_value(f) for f in result]
    if result is None:
        return []
    if isinstance(result, list):
        return [_value(f) for f in result]
    return _value(result)


counts = {"examples": 0, "worked": 0, "rejected": 0}


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(name=st.sampled_from(sorted(CALLABLES)), opts=options)
def test_submit_works_or_rejects_up_front(client, name, opts):
    func = CALLABLES[name]
    if opts.get("key") == "fuzz-key":
        opts["key"] = f"fuzz-key-{time.time_ns()}"  # a live key is reused on purpose
    counts["examples"] += 1
    daskgen.install(client)
    before = client.run_on_scheduler(_state)
    try:
        result = daskgen.submit(func, N, **opts)
    except (TypeError, ValueError) as e:
        counts["rejected"] += 1
        # Rejected before anything was sent, with a message that says what to do.
        assert client.run_on_scheduler(_state) == before
        text = str(e)
        assert any(
            w in text for w in ("use", "Use", "Pass", "needs", "must", "e.g.")
        ), text
        return
    counts["worked"] += 1
    nr = opts.get("num_returns")
    is_gen = name in GENERATORS
    mode = (
        "dynamic"
        if nr == "dynamic"
        else "streaming"
        if nr in (None, "streaming") and is_gen
        else "plain"
        if nr is None
        else "static"
    )
    try:
        got = _consume(result, mode)
    except NumReturnsError as e:
        # A count that does not match what the callable gives is known only
        # when it runs; the error says so.
        assert isinstance(nr, int) and nr != N, (nr, e)
        assert "num_returns" in str(e)
    else:
        if mode == "plain":
            expected = range(N) if name == "builtin (range)" else list(range(N))
            assert got == expected
        elif mode == "static":
            # N=0: no Future to carry an error (the worker logs the extra yields)
            assert got == list(range(N))[:nr] and nr in (0, N), (nr, got)
        else:
            assert got == list(range(N))
    del result
    _wait_clean(client)


def test_fuzz_ran_examples():
    """The property test above ran (hypothesis did not skip it all)."""
    assert counts["examples"] >= 30, counts
    assert counts["worked"] and counts["rejected"], counts
