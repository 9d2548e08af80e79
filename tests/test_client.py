"""Generator tasks: every yield its own caller-owned Future, Ray's num_returns."""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
import traceback

import dask
import pytest
from _helpers import assert_raises, async_assert_clean, boom, gated, produce
from distributed import Client, Event, Future, as_completed, wait
from distributed.utils_test import async_poll_for, captured_logger, gen_cluster, inc

import daskgen
from daskgen.exceptions import (
    GeneratorCancelledError,
    InvalidStateError,
    NumReturnsError,
    StreamTimeoutError,
)


async def aproduce(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i * 10


def raise_cancelled():
    raise GeneratorCancelledError("raised by the user's own task")


def plain(n):
    return [i + 100 for i in range(n)]


# ------------------------------------------------------------------ static N


@gen_cluster(client=True)
async def test_static(c, s, a, b):
    await daskgen.install(c)
    refs = daskgen.submit(produce, 3, num_returns=3)
    assert isinstance(refs, list) and len(refs) == 3
    assert all(type(r) is Future for r in refs)
    assert await c.gather(refs) == [0, 10, 20]
    assert [await r for r in refs] == [0, 10, 20]
    del refs
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_static_one_and_zero(c, s, a, b):
    await daskgen.install(c)
    one = daskgen.submit(produce, 1, num_returns=1)
    assert isinstance(one, Future)
    assert await one == 0
    assert daskgen.submit(produce, 0, num_returns=0) is None
    del one
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_static_item_ready_before_task_ends(c, s, a, b):
    """Item 0 is ready while the generator is still blocked (Ray waits)."""
    await daskgen.install(c)
    ev = Event("go-static")
    refs = daskgen.submit(gated, 4, "go-static", 1, num_returns=4)
    assert await refs[0] == 0
    assert refs[1].status == "pending"
    gen = s.extensions["daskgen"].by_prefix[refs[0].key[0]]
    assert gen.state == "running"
    await ev.set()
    assert await c.gather(refs) == [0, 1, 2, 3]
    del refs, gen
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_unproduced_item_as_dependency(c, s, a, b):
    await daskgen.install(c)
    ev = Event("go-dep")
    refs = daskgen.submit(gated, 3, "go-dep", 0, num_returns=3)
    downstream = c.submit(inc, refs[2])
    await asyncio.sleep(0.2)
    assert downstream.status == "pending"
    await ev.set()
    assert await downstream == 3
    del refs, downstream
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_wait_and_as_completed(c, s, a, b):
    await daskgen.install(c)
    refs = daskgen.submit(produce, 5, num_returns=5)
    await wait(refs)
    assert all(r.done() for r in refs)
    seen = [await f async for f in as_completed(refs)]
    assert sorted(seen) == [0, 10, 20, 30, 40]
    del refs
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_zero_copy(c, s, a, b):
    """The object yielded is the object in the worker's data: no copy."""
    await daskgen.install(c)

    def same_object():
        import numpy as np

        arr = np.ones(1000)
        yield arr
        yield id(arr)

    first, ident = daskgen.submit(same_object, num_returns=2)
    ident = await ident
    (ws,) = s.tasks[first.key].who_has
    w = a if a.address == ws.address else b
    assert id(w.data[first.key]) == ident  # the yielded object itself
    del first, ident
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_fewer_yields(c, s, a, b):
    await daskgen.install(c)
    refs = daskgen.submit(produce, 2, num_returns=4)
    assert await refs[0] == 0
    assert await refs[1] == 10
    for r in refs[2:]:
        await assert_raises(r, NumReturnsError, "yielded 2 values, but num_returns=4")
    del refs, r
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_more_yields(c, s, a, b):
    """Ray only logs extra yields on the worker; daskgen errs the last item."""
    await daskgen.install(c)
    refs = daskgen.submit(produce, 3, num_returns=2)
    assert await refs[0] == 0
    await assert_raises(refs[1], NumReturnsError, "more than num_returns=2")
    del refs
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_static_error(c, s, a, b):
    await daskgen.install(c)
    with captured_logger("distributed.worker", level=logging.ERROR) as log:
        refs = daskgen.submit(boom, 2, num_returns=4)
        assert await c.gather(refs[:2]) == [0, 1]
        for r in refs[2:]:
            await assert_raises(r, ZeroDivisionError, "boom after yields")
            frames = [f.name for f in traceback.extract_tb(await r.traceback())]
            assert "boom" in frames
    # a real failure is logged as usual (only a requested cancel is not)
    assert "Compute Failed" in log.getvalue()
    assert "ZeroDivisionError" in log.getvalue()
    del refs, r
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_plain_function_num_returns(c, s, a, b):
    await daskgen.install(c)
    refs = daskgen.submit(plain, 3, num_returns=3)
    assert await c.gather(refs) == [100, 101, 102]
    bad = daskgen.submit(plain, 2, num_returns=3)
    await assert_raises(bad[2], NumReturnsError, "yielded 2 values, but num_returns=3")
    one = daskgen.submit(inc, 1)
    assert await one == 2
    del refs, bad, one
    await async_assert_clean(c, s, a, b)


def returns_int(n):
    return n


@gen_cluster(client=True)
async def test_plain_function_not_a_sequence(c, s, a, b):
    await daskgen.install(c)
    (bad, _) = daskgen.submit(returns_int, 2, num_returns=2)
    await assert_raises(
        bad, NumReturnsError, r"'returns_int' returned an int, not a sequence"
    )
    del bad, _
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_items_group_under_function_name(c, s, a, b):
    await daskgen.install(c)
    ev = Event("go-group")
    refs = daskgen.submit(gated, 3, "go-group", 2, num_returns=3)
    await wait(refs[:2])
    assert {ts.prefix.name for ts in s.tasks.values()} == {"gated", "gated-generator"}
    await ev.set()
    await wait(refs)
    del refs
    await async_assert_clean(c, s, a, b)


# ------------------------------------------------------------------ dynamic


@gen_cluster(client=True)
async def test_dynamic(c, s, a, b):
    await daskgen.install(c)
    ref = daskgen.submit(produce, 4, num_returns="dynamic")
    assert isinstance(ref, daskgen.DynamicFuture)
    items = await ref.result()
    assert repr(ref) == f"<DynamicFuture {ref.key}: finished, 4 items yielded>"
    assert all(type(f) is Future for f in items)
    assert await c.gather(items) == [0, 10, 20, 30]
    assert await c.submit(sum, items) == 60
    del ref, items
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_dynamic_error(c, s, a, b):
    await daskgen.install(c)
    ref = daskgen.submit(boom, 2, num_returns="dynamic")
    with pytest.raises(ZeroDivisionError, match="boom after yields"):
        await ref.result()
    del ref
    await async_assert_clean(c, s, a, b)


# ---------------------------------------------------------------- streaming


@gen_cluster(client=True)
async def test_streaming_async(c, s, a, b):
    await daskgen.install(c)
    gen = daskgen.submit(produce, 5)
    assert isinstance(gen, daskgen.FutureGenerator)
    out = [await f async for f in gen]
    assert out == [0, 10, 20, 30, 40]
    assert gen.is_finished()
    assert await gen.completed() is None
    with pytest.raises(StopAsyncIteration):
        await gen.__anext__()
    del gen
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_streaming_error_is_one_more_item(c, s, a, b):
    await daskgen.install(c)
    gen = daskgen.submit(boom, 2, num_returns="streaming")
    futs = [f async for f in gen]
    assert len(futs) == 3
    assert await c.gather(futs[:2]) == [0, 1]
    await assert_raises(futs[2], ZeroDivisionError, "boom after yields")
    assert await gen.completed() is None  # an application error is an item
    del gen, futs
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_async_generator_all_modes(c, s, a, b):
    await daskgen.install(c)
    assert await c.gather(daskgen.submit(aproduce, 2, num_returns=2)) == [0, 10]
    assert [await f async for f in daskgen.submit(aproduce, 3)] == [0, 10, 20]
    assert await c.gather(
        await daskgen.submit(aproduce, 2, num_returns="dynamic").result()
    ) == [0, 10]
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_next_timeout_and_ready(c, s, a, b):
    await daskgen.install(c)
    ev = Event("go-timeout")
    gen = daskgen.submit(gated, 3, "go-timeout", 1)
    assert await (await gen.next(timeout="5s")) == 0
    assert not gen.next_ready()
    with pytest.raises(StreamTimeoutError) as info:
        await gen.next(timeout=0.2)
    # the message tells a slow run from a lost item: where the call stands
    msg = str(info.value)
    del info  # its traceback holds the stream
    assert msg.startswith(
        "no item 1 of 'gated' within 0.2 s; the call's generator task is processing on "
    ), msg
    assert "(run 1 of 4); 1 item yielded; item 1 is not yielded yet" in msg, msg
    with pytest.raises(TimeoutError):
        await gen.next(timeout=0.05)
    await ev.set()
    rest = [await f async for f in gen]
    assert await c.gather(rest) == [1, 2]
    del gen, rest
    await async_assert_clean(c, s, a, b)


def wait_for_event(name):
    Event(name).wait()


@gen_cluster(
    client=True,
    nthreads=[("", 1)],
    config={
        "distributed.scheduler.worker-saturation": float("inf"),
        # the memory monitor would resume a worker paused by hand
        "distributed.worker.memory.pause": False,
    },
)
async def test_next_timeout_names_a_paused_worker(c, s, a):
    """A call assigned to a worker that is paused (its memory is above the
    pause threshold) waits: the timeout says so, not only 'not yielded'."""
    from distributed.core import Status

    await daskgen.install(c)
    blocker = c.submit(wait_for_event, "unblock-paused", key="blocker")
    gen = daskgen.submit(produce, 2)
    key = gen.key
    await async_poll_for(
        lambda: key in s.tasks and s.tasks[key].state == "processing", 10
    )
    a.status = Status.paused
    await async_poll_for(lambda: s.workers[a.address].status == Status.paused, 10)
    await Event("unblock-paused").set()
    await blocker
    with pytest.raises(StreamTimeoutError) as info:
        await gen.next(timeout=0.5)
    msg = str(info.value)
    del info  # its traceback holds the stream
    assert "and that worker is paused" in msg, msg
    a.status = Status.running
    assert await c.gather([f async for f in gen]) == [0, 10]
    del gen, blocker
    await async_assert_clean(c, s, a)


def test_next_timeout_message_states():
    """The other states a timeout's message names (the scheduler's answer,
    put into words without a cluster)."""
    from daskgen.client import _describe_where

    base = {
        "state": "waiting", "attempts": 1, "budget": 4, "yielded": 7,
        "run_yielded": 0, "taken": 7, "limit": None, "driver": "no-worker",
        "worker": None, "item": None, "item_on": [],
    }  # fmt: skip
    assert _describe_where(base, 7) == (
        "; the call is waiting to run (no-worker; 1 of 4 runs used); "
        "7 items yielded; item 7 is not yielded yet"
    )
    replay = dict(base, driver="processing", worker="tcp://w:1", attempts=2,
                  run_yielded=3, limit=8, item="waiting")  # fmt: skip
    assert _describe_where(replay, 7) == (
        "; the call's generator task is processing on tcp://w:1 (run 2 of 4); "
        "7 items yielded; this run has replayed 3 of them; backpressure limit 8; "
        "item 7 is waiting"
    )
    paused = dict(base, driver="processing", worker="tcp://w:1", run_yielded=7,
                  worker_status="paused")  # fmt: skip
    assert _describe_where(paused, 7) == (
        "; the call's generator task is processing on tcp://w:1 (run 1 of 4), "
        "and that worker is paused: its memory is above "
        "distributed.worker.memory.pause, and a paused worker starts no task "
        "until memory is freed; 7 items yielded; item 7 is not yielded yet"
    )
    held = dict(base, driver="memory", item="memory", item_on=["tcp://w:2"])
    assert _describe_where(held, 7) == (
        "; the call's generator task is memory; 7 items yielded; "
        "item 7 is memory on tcp://w:2"
    )
    assert "does not know the call" in _describe_where(None, 0)


@gen_cluster(client=True)
async def test_backpressure(c, s, a, b):
    await daskgen.install(c)
    gen = daskgen.submit(produce, 20, backpressure=3)
    ext = s.extensions["daskgen"]
    await async_poll_for(
        lambda: (
            ext.generators and next(iter(ext.generators.values())).state == "paused"
        ),
        5,
    )
    g = next(iter(ext.generators.values()))
    await asyncio.sleep(0.2)
    assert g.produced == 3
    for taken in range(1, 8):
        f = await gen.__anext__()
        assert await f == (taken - 1) * 10
        await async_poll_for(lambda g=g, t=taken: g.produced == min(20, t + 3), 5)
        await asyncio.sleep(0.05)
        assert g.produced - taken <= 3
    assert g.pauses >= 1
    rest = [await f async for f in gen]
    assert len(rest) == 13
    del gen, rest, f, g
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True, nthreads=[("", 1)])
async def test_backpressure_frees_thread_slot(c, s, a):
    """A paused generator holds no slot: a 1-thread worker runs other tasks."""
    await daskgen.install(c)
    gen = daskgen.submit(produce, 10, backpressure=1)
    first = await gen.__anext__()
    assert await c.submit(inc, first) == 1
    assert await c.submit(inc, 41) == 42
    rest = [await f async for f in gen]
    assert len(rest) == 9
    del gen, first, rest
    await async_assert_clean(c, s, a)


@gen_cluster(client=True)
async def test_cancel_runs_finally(c, s, a, b):
    await daskgen.install(c)

    def with_finally(event_name):
        from distributed import Variable

        try:
            i = 0
            while True:
                yield i
                i += 1
                time.sleep(0.01)
        finally:
            Variable(event_name).set("closed")

    gen = daskgen.submit(with_finally, "fin-var")
    first = await gen.__anext__()
    assert await first == 0
    with captured_logger("distributed.worker", level=logging.ERROR) as log:
        gen.cancel()
        with pytest.raises(GeneratorCancelledError, match="cancelled"):
            await gen.__anext__()
        from distributed import Variable

        assert await Variable("fin-var").get(timeout=5) == "closed"
        await assert_raises(gen.completed(), GeneratorCancelledError, "cancelled")
        # a user's own task failing with the same exception type is logged
        other = c.submit(raise_cancelled, pure=False)
        await assert_raises(other, GeneratorCancelledError, "the user's own task")
    # a cancel the caller asked for is not an error in the worker's log
    assert "was cancelled after" not in log.getvalue()
    assert log.getvalue().count("Compute Failed") == 1
    assert "Key:       raise_cancelled" in log.getvalue()
    assert await first == 0  # items taken before the cancel stay valid
    Variable("fin-var").delete()
    del gen, first, other
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True, nthreads=[("", 1)])
async def test_cancel_frees_untaken_items(c, s, a):
    """After cancel() no next() can return the items yielded and not taken:
    they are freed at once, not kept in worker memory until the handle goes."""
    await daskgen.install(c)
    gen = daskgen.submit(gated, 6, "go-cancel-frees", 4)
    first = await gen.__anext__()
    (g,) = s.extensions["daskgen"].generators.values()
    await async_poll_for(lambda: g.produced == 4, timeout=10)
    assert len(a.data) == 4
    gen.cancel()
    await async_poll_for(lambda f=first: set(a.data) == {f.key}, timeout=10)
    assert {k for k in c.futures if isinstance(k, tuple)} == {first.key}
    await Event("go-cancel-frees").set()  # the generator stops at its next yield
    with pytest.raises(GeneratorCancelledError, match="cancelled"):
        await gen.__anext__()
    await assert_raises(gen.completed(), GeneratorCancelledError, "cancelled")
    assert await first == 0
    del gen, first
    await async_assert_clean(c, s, a)


@gen_cluster(client=True)
async def test_cancel_static_items(c, s, a, b):
    await daskgen.install(c)
    ev = Event("go-cancel-static")
    refs = daskgen.submit(gated, 5, "go-cancel-static", 1, num_returns=5)
    assert await refs[0] == 0
    ext = s.extensions["daskgen"]
    (g,) = ext.generators.values()
    await c.cancel(refs)
    await async_poll_for(lambda g=g: g.cancelled, timeout=5)
    await ev.set()
    await async_poll_for(lambda: not ext.generators, timeout=5)
    (info,) = ext.history
    assert info["state"] == "cancelled"
    assert info["yielded"] < 5  # stopped at the first yield after the cancel
    del refs, g
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True, nthreads=[("", 1)])
async def test_driver_keeps_no_per_item_state(c, s, a):
    """A long stream whose consumer drops each item leaves nothing per item in
    its driver (a set of stored indices once grew by one int per yield)."""
    await daskgen.install(c)
    gen = daskgen.submit(gated, 301, "go-per-item", 300)
    for _ in range(300):
        await (await gen.__anext__())  # taken, checked, dropped
    (driver,) = a.extensions["daskgen"].drivers.values()
    await async_poll_for(lambda d=driver: not d.mine and not d.notes, timeout=10)
    await Event("go-per-item").set()
    assert await (await gen.__anext__()) == 300
    with pytest.raises(StopAsyncIteration):
        await gen.__anext__()
    del gen, driver
    await async_assert_clean(c, s, a)


@gen_cluster(client=True)
async def test_dropped_items_freed_generator_completes(c, s, a, b):
    """Ray semantics: dropping every handle frees items; the task still ends."""
    await daskgen.install(c)
    from distributed import Variable

    def count_to(n):
        yield from range(n)
        Variable("done-var").set(n)

    refs = daskgen.submit(count_to, 5, num_returns=5)
    del refs
    assert await Variable("done-var").get(timeout=5) == 5
    gen = daskgen.submit(count_to, 7)
    del gen
    assert await Variable("done-var").get(timeout=5) in (5, 7)
    await async_poll_for(lambda: not s.extensions["daskgen"].generators, timeout=5)
    Variable("done-var").delete()
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_async_client_needs_no_install(c, s, a, b):
    """A client started after `import daskgen` installs daskgen as it starts
    (a client preload): the plugin is there before the client sends anything,
    and no `await daskgen.install(client)` is needed."""
    assert "daskgen" in s.plugins
    gen = daskgen.submit(produce, 3)
    assert [await f async for f in gen] == [0, 10, 20]
    refs = daskgen.submit(produce, 2, num_returns=2)
    assert await c.gather(refs) == [0, 10]
    del gen, refs
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=False)
async def test_async_client_without_the_preload(s, a, b):
    """A preload list of the user's own leaves daskgen out: submit says what
    to do, and install works as before."""
    with dask.config.set({"distributed.client.preload": []}):
        async with Client(s.address, asynchronous=True) as c:
            assert "daskgen" not in s.plugins
            with pytest.raises(InvalidStateError, match="await daskgen.install"):
                daskgen.submit(produce, 3)
            await daskgen.install(c)
            gen = daskgen.submit(produce, 2)
            assert [await f async for f in gen] == [0, 10]
            del gen
            await async_assert_clean(c, s, a, b)


@gen_cluster(client=False)
async def test_client_starts_when_daskgen_cannot_install(s, a, b, monkeypatch):
    """A scheduler that cannot take daskgen's plugin does not stop a client."""

    async def refuse(client, plugin):
        raise ImportError("No module named 'daskgen'")

    monkeypatch.setattr(daskgen._compat, "register_scheduler_plugin", refuse)
    with captured_logger("daskgen.client", level=logging.WARNING) as log:
        async with Client(s.address, asynchronous=True) as c:
            assert await c.submit(inc, 1) == 2
            with pytest.raises(InvalidStateError, match="see the logs"):
                daskgen.submit(produce, 3)
    assert "could not install its plugins" in log.getvalue()
    assert "No module named 'daskgen'" in log.getvalue()


@gen_cluster(client=True)
async def test_dask_functions_with_a_stream_async(c, s, a, b):
    """An asynchronous client's FutureGenerator given to Dask's functions:
    a clear error at once (tests/test_sync.py has the synchronous client)."""
    await daskgen.install(c)
    gen = daskgen.submit(produce, 3)
    with pytest.raises(TypeError, match="not a Dask collection"):
        await wait(gen)
    with pytest.raises(InvalidStateError, match="async for"):
        as_completed(gen)
    with pytest.raises(InvalidStateError, match="async for"):
        c.gather(gen)
    assert [await f async for f in gen] == [0, 10, 20]
    await wait(gen.completed())
    del gen
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_stream_handle_protocols(c, s, a, b):
    await daskgen.install(c)
    gen = daskgen.submit(produce, 2)
    with pytest.raises(NotImplementedError):
        gen.send(1)
    with pytest.raises(NotImplementedError):
        gen.throw(ValueError)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(gen)
    # passed to a task: daskgen's message, not only "Could not serialize"
    with pytest.raises(TypeError, match="FutureGenerator cannot be pickled"):
        c.submit(len, gen)
    # Not tokenized: distributed's words, with daskgen's as their cause. (Its
    # log record holds the graph; kept from pytest's capture, which keeps it.)
    with (
        captured_logger("distributed.protocol.pickle", propagate=False),
        pytest.raises(TypeError) as info,
    ):
        c.submit(len, [gen], pure=False)
    assert "FutureGenerator cannot be pickled" in str(info.value.__cause__)
    del info
    with pytest.raises(InvalidStateError, match="asynchronous client"):
        iter(gen)
    assert "FutureGenerator produce" in repr(gen)
    [await f async for f in gen]
    del gen
    await async_assert_clean(c, s, a, b)


# ------------------------------------------------------------------ printing


@gen_cluster(client=True)
async def test_print_reaches_caller_only(c, s, a, b, capsys=None):
    await daskgen.install(c)
    received = []
    c.unsubscribe_topic(f"daskgen-print-{c.id}")
    c.subscribe_topic(f"daskgen-print-{c.id}", received.append)

    def talk():
        yield 1
        daskgen.print("yielded return value", 0)

    assert await daskgen.submit(talk, num_returns=1) == 1
    await async_poll_for(lambda: received, timeout=5)
    msg = received[0][1]
    assert msg["name"] == "talk" and msg["text"] == "yielded return value 0\n"
    assert isinstance(msg["pid"], int)
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_dropped_dynamic_future_stops_and_frees(c, s, a, b):
    await daskgen.install(c)
    ref = daskgen.submit(gated, 10, "never-dyn", 3, num_returns="dynamic")
    ext = s.extensions["daskgen"]
    await async_poll_for(
        lambda: ext.generators and next(iter(ext.generators.values())).produced == 3,
        5,
    )
    del ref
    await async_poll_for(lambda: not ext.generators, timeout=5)
    assert ext.history[-1]["state"] == "cancelled"
    assert not c.futures
    await Event("never-dyn").set()
    await async_assert_clean(c, s, a, b)


def exactly_then_raise():
    yield 1
    yield 2
    raise KeyError("after the last value")


@gen_cluster(client=True)
async def test_static_raise_after_n_keeps_values(c, s, a, b):
    """Ray: a generator that yields N values and then raises keeps all N."""
    await daskgen.install(c)
    refs = daskgen.submit(exactly_then_raise, num_returns=2)
    assert await c.gather(refs) == [1, 2]
    del refs
    await async_assert_clean(c, s, a, b)


def fails_at_once(n):
    raise ValueError("before any yield")
    yield  # pragma: no cover


@gen_cluster(client=True)
async def test_declaration_read_after_driver_failed(c, s, a, b):
    """A busy scheduler may read a static call's declaration after its driver
    already failed: the items must err, not stay pending (seen under load)."""
    import pytest as _pytest

    await daskgen.install(c)
    held = []
    real = daskgen._compat.send_to_scheduler

    def hold_declare(client, msg):
        if msg.get("op") == "daskgen-declare":
            held.append((client, msg))
        else:
            real(client, msg)

    mp = _pytest.MonkeyPatch()
    mp.setattr(daskgen._compat, "send_to_scheduler", hold_declare)
    try:
        refs = daskgen.submit(fails_at_once, 3, num_returns=3)
    finally:
        mp.undo()
    ext = s.extensions["daskgen"]
    await async_poll_for(lambda: ext.generators, timeout=5)
    (g,) = ext.generators.values()
    await async_poll_for(lambda g=g: g.state == "erred", timeout=5)
    assert g.gen_id in ext.generators  # kept alive until declared
    ((client, msg),) = held
    real(client, msg)
    for r in refs:
        await assert_raises(r, ValueError, "before any yield")
    del refs, r, g
    await async_assert_clean(c, s, a, b)


def _refuse_to_load():
    raise ImportError("no module named 'only_on_the_client'")


class LoadsOnlyOnTheClient:
    """Pickles fine, fails to unpickle: like an object of a module the client
    has and the scheduler lacks (the scheduler unpickles the whole graph)."""

    def __reduce__(self):
        return (_refuse_to_load, ())


def uses(obj, n):
    yield from range(n)


@pytest.mark.parametrize("num_returns", ["streaming", 3, "dynamic"])
@gen_cluster(client=True)
async def test_graph_the_scheduler_cannot_load(c, s, a, b, num_returns):
    """The scheduler rejects the call's graph: every handle raises, none hangs."""
    await daskgen.install(c)
    with pytest.raises(RuntimeError, match="deserialization of the task graph"):
        await c.submit(uses, LoadsOnlyOnTheClient(), 1)  # what plain Dask does
    r = daskgen.submit(uses, LoadsOnlyOnTheClient(), 3, num_returns=num_returns)
    if num_returns == "streaming":
        with pytest.raises(RuntimeError, match="deserialization of the task graph"):
            await asyncio.wait_for(r.__anext__(), 10)
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(r.__anext__(), 10)
        exc = await asyncio.wait_for(r.completed().exception(), 10)
        assert "deserialization" in str(exc)
    elif num_returns == "dynamic":
        with pytest.raises(RuntimeError, match="deserialization of the task graph"):
            await asyncio.wait_for(r.result(), 10)
    else:
        for item in r:
            exc = await asyncio.wait_for(item.exception(), 10)
            assert isinstance(exc, daskgen.DaskgenError), exc
            assert "uses" in str(exc) and "deserializ" in str(exc), exc
        del item
    del r
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_key_reused_by_a_live_call(c, s, a, b):
    """A second call with the key of a live call shares its items (like two
    client.submit calls with one key) and does not disturb them."""
    await daskgen.install(c)
    ev = Event("reuse-key")
    first = daskgen.submit(gated, 3, "reuse-key", 1, num_returns=3, key="mycall")
    assert await first[0] == 0
    second = daskgen.submit(gated, 3, "reuse-key", 1, num_returns=3, key="mycall")
    assert [f.key for f in second] == [f.key for f in first]
    await asyncio.sleep(0.2)  # let the scheduler read the second declaration
    assert first[0].status == "finished"
    await ev.set()
    assert await c.gather(first) == [0, 1, 2]
    assert await c.gather(second) == [0, 1, 2]
    del first, second
    await async_assert_clean(c, s, a, b)
