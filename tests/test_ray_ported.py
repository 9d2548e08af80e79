"""Ray's own tests of *task* generators, ported to daskgen as a Ray user would.

Sources (ray-project/ray, python/ray/tests/): test_streaming_generator.py,
test_streaming_generator_2.py, _3.py, _4.py, test_streaming_generator_backpressure.py,
test_streaming_generator_regression.py and test_generators.py. Each test names the Ray
test it ports. Actor-only tests and tests of Ray internals are not ported (the list is in
the report that came with this file).

The mapping: ``ray.remote`` -> ``daskgen.remote``; ``ray.get(ref)`` -> ``fut.result()``;
``ray.wait`` -> ``daskgen.wait``; a node or worker death -> SIGKILL of a nanny worker
process; ``_generator_backpressure_num_objects`` -> ``backpressure=``; Ray's
``SignalActor`` / reporter actors -> ``distributed.Event`` / ``Variable``.

Where daskgen documents a deliberate difference from Ray (docs/semantics.md,
docs/from_ray.md) the test asserts daskgen's documented behavior and says so in a
comment starting with "Ray:". Everything else asserts what Ray asserts.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import numpy as np
import pytest
from _diag import scheduler_states  # tests/ is on sys.path
from _helpers import assert_clean, async_assert_clean, kill_worker, nanny_cluster
from distributed import (
    Event,
    Future,
    KilledWorker,
    Variable,
    get_client,
    wait,
)
from distributed.utils_test import async_poll_for, gen_cluster, poll_for

import daskgen
from daskgen.exceptions import (
    GeneratorCancelledError,
    GeneratorKilledError,
    ItemLostError,
    NumReturnsError,
    ReplayInconsistentError,
    StreamTimeoutError,
)

pytestmark = pytest.mark.timeout(120)

MiB = 2**20


# =========================================================================== helpers


def _drivers(dask_worker):
    ext = dask_worker.extensions.get("daskgen")
    return {
        d.gen_id: {"i": d.i, "limit": d.limit, "lifted": d.lifted, "stop": d.stop,
                   "outbox": len(d.outbox), "notes": len(d.notes),
                   "inflight": d.inflight, "done": d.done.is_set()}
        for d in (ext.drivers.values() if ext else ())
    }  # fmt: skip


def _gen_info(gen_id, dask_scheduler):
    g = dask_scheduler.extensions["daskgen"].generators.get(gen_id)
    if g is None:
        return None
    story = [
        (str(t[0])[-12:], *t[1:4]) for t in dask_scheduler.story(g.driver)
    ]  # fmt: skip
    return {**g.info(), "run_produced": g.run_produced, "story": story}


def stalled_streams(client, gens):
    """Where each stream that did not end stands: a slow run told from a stall
    (the scheduler's view in each timeout's message, and the workers' drivers)."""
    out = []
    for g in gens:
        try:
            g.next(timeout=0.01)
            out.append(f"{g!r}: an item is ready")
        except StopIteration:
            out.append(f"{g!r}: ended")
        except daskgen.StreamTimeoutError as e:
            info = client.run_on_scheduler(_gen_info, g._state.gen_id)
            out.append(f"{g!r}: {e}\n  scheduler: {info}")
    return "\n".join(out) + f"\ndrivers on the workers: {client.run(_drivers)}"


def kill_and_wait(client, addr, n_workers):
    kill_worker(client, addr)
    poll_for(
        lambda: addr not in client.scheduler_info()["workers"],
        20,
        fail_func=lambda: print(f"worker {addr} still listed after SIGKILL"),
    )
    client.wait_for_workers(n_workers, timeout=30)


def who_has(client, key):
    return client.run_on_scheduler(
        lambda dask_scheduler, k=key: (
            sorted(ws.address for ws in dask_scheduler.tasks[k].who_has)
            if k in dask_scheduler.tasks
            else []
        )
    )


def driver_key_of(item):
    name, token = item.key[0].rsplit("-", 1)
    return f"{name}-generator-{token}"


def driver_worker(client, key, timeout=15):
    """Address of the worker running (or holding the result of, or that last
    ran: a finished driver may be released at once) driver ``key``."""
    addr = None

    def found():
        nonlocal addr
        addr = client.run_on_scheduler(
            lambda dask_scheduler, k=key: (
                (
                    dask_scheduler.tasks[k].processing_on.address
                    if dask_scheduler.tasks[k].processing_on
                    else next(
                        (ws.address for ws in dask_scheduler.tasks[k].who_has or ()),
                        None,
                    )
                )
                if k in dask_scheduler.tasks
                else None
            )
        )
        if addr is None:
            info = generator_info(client, key)
            addr = info and info["state"] == "finished" and info["worker"] or None
        return addr is not None

    poll_for(found, timeout, fail_func=lambda: print(f"driver {key} never started"))
    return addr


def generator_info(client, key):
    """daskgen's scheduler record (live or history) for the driver key ``key``."""
    infos = client.run_on_scheduler(
        lambda dask_scheduler: dask_scheduler.extensions["daskgen"].get_info()
    )
    return next((i for i in reversed(infos) if i["key"] == str(key)), None)


def take(gen, n, timeout=20):
    """The next ``n`` item Futures of a stream; fails naming the missing items."""
    got = []
    for _ in range(n):
        try:
            got.append(gen.next(timeout=timeout))
        except StreamTimeoutError:
            start = gen._index
            raise AssertionError(
                f"items {list(range(start, start + n - len(got)))} of {gen!r} did "
                f"not arrive within {timeout} s"
            ) from None
    return got


def drain(gen, timeout=20):
    """Take items until the end of the stream (``StopIteration``)."""
    got = []
    while True:
        poll_for(
            gen.next_ready,
            timeout,
            fail_func=lambda: print(f"item {gen._index} of {gen!r} never came"),
        )
        try:
            got.append(next(gen))
        except StopIteration:
            return got


def results(futs, timeout=30):
    """Values of ``futs``; on a timeout the message names the pending items."""
    try:
        wait(futs, timeout=timeout)
    except TimeoutError:
        missing = [i for i, f in enumerate(futs) if not f.done()]
        raise AssertionError(
            f"items {missing} not ready within {timeout} s: "
            f"{scheduler_states(futs[0].client, futs)}"
        ) from None
    return [f.result() for f in futs]


async def assert_raises(fut, typ, match=None):
    """Check a Future's error without raising it: a raised exception's traceback
    keeps the Future alive (distributed's behavior, see semantics.md)."""
    exc = await fut.exception(timeout=20)
    assert isinstance(exc, typ), repr(exc)
    if match is not None:
        assert re.search(match, str(exc)), str(exc)
    return exc


async def apoll(coro_fn, timeout=10, what="condition"):
    """Poll an async predicate; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not await coro_fn():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        await asyncio.sleep(0.02)


async def anext_item(gen, timeout=10):
    """``await gen.next(timeout)``; StreamTimeoutError names the missing index."""
    return await gen.next(timeout=timeout)


async def ev_set(name):
    return await Event(name).is_set()


def ev_is_set(name):
    return Event(name).is_set()


# ====================================================== module-level task functions


def count(n):
    yield from range(n)


def raise_at_2():
    for i in range(5):
        if i == 2:
            raise ValueError("raised at index 2")
        yield i


def bump(name):
    """A counter kept in a distributed.Variable (Ray's ExecutionCounter actor)."""
    v = Variable(name)
    n = v.get(timeout=10) + 1
    v.set(n)
    return n


def retry_on_value_error(counter):
    attempt = bump(counter)
    for i in range(5):
        if i == 3 and attempt < 3:
            raise ValueError(f"attempt {attempt} fails at 3")
        yield i


def gated_each(n, prefix):
    """Yield item i once Event(f"{prefix}-{i}") is set."""
    for i in range(n):
        Event(f"{prefix}-{i}").wait()
        yield i


def gated_value(name, value):
    Event(name).wait()
    return value


def ten():
    return 10


class UnserializableException(Exception):
    def __init__(self):
        super().__init__("holds a lock")
        self.lock = threading.Lock()


def raise_unserializable():
    raise UnserializableException
    yield 1  # noqa: F841


def fail_at_4(crash):
    for i in range(10):
        if i == 4:
            if crash:
                os._exit(9)
            raise ValueError("fails at 4")
        yield 2


def array_or_list(n, store_in_plasma):
    for i in range(n):
        if store_in_plasma:
            yield np.ones(1_000_000, dtype=np.int8) * i
        else:
            yield [i]


def raise_before_yield():
    raise ValueError("before the first yield")
    yield 1  # noqa: F841


async def araise_before_yield():
    raise ValueError("before the first yield")
    yield 1  # noqa: F841


def yield_one():
    yield 1


def large_items(n):
    for i in range(n):
        yield np.ones(1_000_000, dtype=np.int8) * i


def fetch(x):
    return int(x[0])


def identity(x):
    return x


def recon_retry_gen(n, flag, hold, failure):
    """Yields items; blocks at 5 until ``hold``; fails at 3 once ``flag`` is set."""
    for i in range(n):
        if i == 3 and Event(flag).is_set():
            if failure == "exception":
                raise RuntimeError("fails at 3 on purpose")
            os._exit(5)
        if i == 5:
            Event(hold).wait()
        yield np.ones(1_000_000, dtype=np.int8) * i


def return_yield_mix():
    for i in range(3):
        yield i
        return


async def task_identity_agen():
    task_name = asyncio.current_task().get_name()
    for i in range(5):
        now = asyncio.current_task().get_name()
        assert task_name == now, f"{task_name} != {now}"
        yield i
    now = asyncio.current_task().get_name()
    assert task_name == now, f"{task_name} != {now}"


CV: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "daskgen_ported_cv", default=None
)


async def contextvar_agen():
    CV.set("set before the first yield")
    for _ in range(3):
        yield CV.get()


def contextvar_gen():
    CV.set("set before the first yield")
    for _ in range(3):
        yield CV.get()


async def concurrent_agen(prefix, k):
    for i in range(5):
        yield (k, i)
        if i == 0:
            Event(f"{prefix}-all-started").wait()
        await asyncio.sleep(0)


def ten_then_signal(signal_name=None):
    for _ in range(10):
        yield 1
    if signal_name is not None:
        Event(signal_name).set()


def hold_between(hold):
    for _ in range(3):
        yield np.zeros(10 * MiB, dtype=np.uint8)
        Event(hold).wait()


def copy_array(arr):
    return arr.copy()


def ten_slow_items(n):
    for i in range(n):
        time.sleep(0.05)
        yield np.ones(1_000_000, dtype=np.int8) * i


def five_ones():
    for _ in range(5):
        yield 1


def stream_until_cancelled(cancelled, extra):
    """Yields until ``cancelled`` is set, then goes on (Ray: for 1 s more; here
    until daskgen closes it, at most ``extra`` more items, 2 ms apart)."""
    i = 0
    left = None
    while left is None or left > 0:
        yield i
        i += 1
        if left is None and Event(cancelled).is_set():
            left = extra
        elif left is not None:
            left -= 1
        time.sleep(0.002)  # bounded: the cancel may take a while on a busy machine


async def astream_until_cancelled(cancelled, extra):
    i = 0
    left = None
    while left is None or left > 0:
        yield i
        i += 1
        if left is None and os.path.exists(cancelled):
            left = extra
        elif left is not None:
            left -= 1
        await asyncio.sleep(0.002)  # bounded, as above


def reporting(total, prefix, size=None):
    """Sets Event(f"{prefix}-reported-{i}") just before yielding item i."""
    for i in range(total):
        Event(f"{prefix}-reported-{i}").set()
        yield i if size is None else np.random.rand(size)


def bp_five():
    yield from range(5)


def bp_caller(failure_type, hold, key, gen_worker):
    """Ray's Caller actor method, as a task: owns a backpressured stream."""
    client = get_client()
    gen = daskgen.submit(
        bp_five, key=key, backpressure=1, workers=[gen_worker], client=client
    )
    assert next(gen).result() == 0
    if hold:
        Event(hold).wait()
    if failure_type == "exc":
        raise ValueError("the caller fails")
    return None


def five_then_signal(all_produced):
    for i in range(5):
        yield np.ones(10**7, dtype=np.uint8) * i
    Event(all_produced).set()


def large_values(num_returns, item_bytes):
    return [
        np.random.randint(np.iinfo(np.int8).max, size=(item_bytes, 1), dtype=np.int8)
        for _ in range(num_returns)
    ]


def large_values_generator(num_returns, item_bytes):
    for _ in range(num_returns):
        yield np.random.randint(
            np.iinfo(np.int8).max, size=(item_bytes, 1), dtype=np.int8
        )


def yields_then_raises(num_returns, store_in_plasma):
    for i in range(num_returns - 2):
        if store_in_plasma:
            yield np.ones(1_000_000, dtype=np.int8) * i
        else:
            yield [i]
    raise Exception("error")


class CustomException(Exception):
    pass


def fail_first_execution(num_returns, store_in_plasma, counter):
    for i in range(num_returns):
        if store_in_plasma:
            yield np.ones(1_000_000, dtype=np.int8) * i
        else:
            yield [i]
        if bump(counter) == 1:
            raise CustomException("error")


def read(gen):
    """Ray's ``read`` task: iterates what it was given (refs or values)."""
    for i, ref in enumerate(gen):
        value = ref.result() if isinstance(ref, Future) else ref
        if value[0] != i:
            return False
    return True


def static_list(num_returns):
    return list(range(num_returns))


def dynamic_with_sleep(num_returns):
    for i in range(num_returns):
        yield np.ones(1_000_000, dtype=np.int8) * i
        time.sleep(0.1)


def nondeterministic_length(flag, too_many_returns):
    num_returns = 10
    if Event(flag).is_set():  # Ray: the FailureSignal actor was killed
        num_returns += 1 if too_many_returns else -1
    for i in range(num_returns):
        yield np.ones(1_000_000, dtype=np.int8) * i


def crash_on_reexecution(flag):
    for i in range(10):
        yield np.ones(1_000_000, dtype=np.int8) * i
        if i == 5 and Event(flag).is_set():
            os._exit(255)


def fetch_all(*refs):
    return None


def maybe_empty_generator(counter):
    if bump(counter) > 1:
        for i in range(3):
            yield np.ones(1_000_000, dtype=np.int8) * i


def is_empty(items):
    return len(items) == 0


def ping():
    return "ok"


# ========================================================= test_streaming_generator.py


@gen_cluster(client=True, nthreads=[("", 1)])
async def test_generator_basic(c, s, a):
    """Ray: test_generator_basic, "Basic cases" and "Exceptions"."""
    await daskgen.install(c)
    f = daskgen.remote(count)
    gen = f.remote(5)
    i = 0
    async for ref in gen:
        assert await ref == i
        del ref
        i += 1
    assert i == 5

    gen = daskgen.remote(raise_at_2).remote()
    assert await (await anext_item(gen)) == 0
    assert await (await anext_item(gen)) == 1
    err = await anext_item(gen)
    await assert_raises(err, ValueError, "raised at index 2")  # Ray: RayTaskError
    for _ in range(2):
        with pytest.raises(StopAsyncIteration):
            await anext_item(gen)
    del gen, err
    await async_assert_clean(c, s, a)


@pytest.mark.parametrize("n_workers", [1, 2])
def test_generator_basic_retry_exceptions(n_workers):
    """Ray: test_generator_basic, "Retry exceptions": retry_exceptions=[ValueError],
    max_retries=10; the generator raises at index 3 until a flag flips. Items
    already reported are kept, the re-runs' duplicates dropped, and the stream
    ends normally."""
    with nanny_cluster(n_workers) as c:
        Variable("retry-counter").set(0)
        f = daskgen.remote(retry_exceptions=[ValueError], max_retries=10)(
            retry_on_value_error
        )
        gen = f.remote("retry-counter")
        values = [ref.result(timeout=20) for ref in take(gen, 5)]
        assert values == [0, 1, 2, 3, 4]
        assert drain(gen) == []  # StopIteration, no error item
        assert Variable("retry-counter").get() == 3  # two failed runs, one good
        del gen
        assert_clean(c)


@gen_cluster(client=True, nthreads=[("", 1)])
async def test_generator_basic_cancel(c, s, a):
    """Ray: test_generator_basic, "Cancel"."""
    await daskgen.install(c)
    gen = daskgen.remote(gated_each).remote(5, "basic-cancel")
    await Event("basic-cancel-0").set()
    assert await (await anext_item(gen)) == 0
    gen.cancel()
    with pytest.raises(GeneratorCancelledError, match="was cancelled"):
        await anext_item(gen)
    # Ray: StopIteration after the error. semantics.md: "Afterwards: next()
    # raises GeneratorCancelledError".
    with pytest.raises(GeneratorCancelledError):
        await anext_item(gen)
    # daskgen stops a generator at its next yield: let it reach one, once the
    # stop has reached the worker (the Event's reply could overtake it)
    await async_poll_for(
        lambda: any(d.stop for d in a.extensions["daskgen"].drivers.values()), 10
    )
    await Event("basic-cancel-1").set()
    exc = await gen.completed().exception(timeout=10)
    assert isinstance(exc, GeneratorCancelledError), exc
    del gen, exc
    await async_assert_clean(c, s, a)


def test_streaming_generator_bad_exception_not_failing():
    """Ray: test_streaming_generator_bad_exception_not_failing. An exception that
    cannot be pickled still reaches the caller as an error item."""
    with nanny_cluster(2) as c:
        _bad_exception(c)


def _bad_exception(c):
    gen = daskgen.remote(raise_unserializable).remote()
    refs = drain(gen)
    assert len(refs) == 1
    exc = refs[0].exception(timeout=20)  # Ray: ray.get raises RayTaskError
    assert isinstance(exc, Exception) and "holds a lock" in str(exc), repr(exc)
    # the worker is still fine
    assert [f.result() for f in take(daskgen.remote(count).remote(2), 2)] == [0, 1]
    del gen, refs, exc
    assert_clean(c)


@pytest.mark.slow
@pytest.mark.parametrize("crash_type", ["exception", "worker_crash"])
def test_generator_streaming_no_leak_upon_failures(crash_type):
    """Ray: test_generator_streaming_no_leak_upon_failures. Ray's caller is a task;
    here it is the test process. On one worker, so the retry lands on the same
    (restarted) worker. Ray uses the default max_retries=3; 1 here keeps it short."""
    with nanny_cluster(1) as c:
        for _ in range(2 if crash_type == "exception" else 1):
            gen = daskgen.remote(max_retries=1)(fail_at_4).remote(
                crash_type == "worker_crash"
            )
            failed = False
            ref = None
            try:
                for ref in gen:
                    # .exception(), not .result(): a raised exception keeps its
                    # Future referenced (distributed; semantics.md)
                    if ref.exception(timeout=30) is not None:
                        failed = True
                        break
            except Exception:
                failed = True
            assert failed, "the stream did not fail"
            del gen, ref
            gc.collect()
            assert_clean(c, timeout=30)


@gen_cluster(client=True)
async def test_generator_streaming_store_in_plasma(c, s, a, b):
    """Ray: test_generator_streaming (use_actors=False, both store_in_plasma): the
    stream is streaming, and an item is freed as soon as its ref is dropped."""
    await daskgen.install(c)
    f = daskgen.remote(max_retries=0)(array_or_list)
    for store_in_plasma in (False, True):
        gen = f.remote(3, store_in_plasma)
        i = 0
        async for ref in gen:
            key = ref.key
            if store_in_plasma:
                expected = np.ones(1_000_000, dtype=np.int8) * i
                assert np.array_equal(await ref, expected)
            else:
                assert await ref == [i]
            del ref
            await async_poll_for(
                lambda key=key: (
                    key not in s.tasks and key not in a.data and key not in b.data
                ),
                10,
                fail_func=lambda key=key: print(f"item {key} still held"),
            )
            i += 1
        assert i == 3
        del gen
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_streaming_generator_exception(c, s, a, b):
    """Ray: test_streaming_generator_exception (actor methods there; daskgen runs
    sync and async generators as tasks). A raise before the first yield is one
    error item, then StopIteration, again and again."""
    await daskgen.install(c)
    for func in (raise_before_yield, araise_before_yield):
        g = daskgen.remote(func).remote()
        err = await anext_item(g)
        await assert_raises(err, ValueError, "before the first yield")
        for _ in range(2):
            with pytest.raises(StopAsyncIteration):
                await anext_item(g)
        del g, err
    await async_assert_clean(c, s, a, b)


@pytest.mark.slow
@pytest.mark.parametrize("n_workers", [1, 2])
def test_next_sync_timeout_when_generator_ref_unavailable(n_workers):
    """Ray: test_next_sync_timeout_when_generator_ref_unavailable. Once the one
    item is taken, the worker holding the generator task's result dies:
    ``next(timeout=0)`` must not block, and the stream then ends normally."""
    with nanny_cluster(n_workers) as c:
        g = daskgen.remote(num_returns="streaming")(yield_one).remote()
        (first,) = take(g, 1, timeout=30)
        assert first.result(timeout=30) == 1
        kill_and_wait(c, driver_worker(c, g.key), n_workers)

        start = time.monotonic()
        with pytest.raises((StreamTimeoutError, StopIteration)):
            g.next(timeout=0)
        assert time.monotonic() - start < 10

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                g.next(timeout=1)
            except StreamTimeoutError:
                continue
            except StopIteration:
                break
            pytest.fail("the stream gave a second item")
        else:
            pytest.fail("Generator did not finish after the worker was restarted.")
        assert g.completed().result(timeout=30) is None
        del g, first
        assert_clean(c)


# ======================================================= test_streaming_generator_2.py


@pytest.mark.slow
def test_reconstruction():
    """Ray: test_reconstruction (skipped as flaky in Ray). max_retries=2: the items
    the caller holds are recomputed after two deaths; the third death exceeds
    max_retries and every item raises."""
    with nanny_cluster(1) as c:
        gen = daskgen.remote(max_retries=2)(large_items).remote(10)
        refs = take(gen, 5)
        kill_and_wait(c, driver_worker(c, gen.key), 1)
        for i, ref in enumerate(refs):
            assert c.submit(fetch, ref, pure=False).result(timeout=30) == i

        kill_and_wait(c, who_has(c, refs[0].key)[0], 1)
        refs += take(gen, 4)
        for i, ref in enumerate(refs):
            assert c.submit(fetch, ref, pure=False).result(timeout=30) == i

        kill_and_wait(c, who_has(c, refs[0].key)[0], 1)
        refs += take(gen, 1)
        for i, ref in enumerate(refs):
            exc = c.submit(fetch, ref, pure=False).exception(timeout=30)
            # Ray: "the maximum number of task retries has been exceeded"
            assert isinstance(exc, KilledWorker), f"item {i}: {exc!r}"
            assert "max_retries=2" in str(exc), f"item {i}: {exc}"
        del gen, refs, ref, exc


@pytest.mark.slow
@pytest.mark.parametrize("failure_type", ["exception", "crash"])
def test_reconstruction_retry_failed(failure_type):
    """Ray: test_reconstruction_retry_failed: the stream's retry fails the second
    time (an exception, or the worker crashes)."""
    flag, hold = f"rrf-flag-{failure_type}", f"rrf-hold-{failure_type}"
    with nanny_cluster(1) as c:
        gen = daskgen.remote(recon_retry_gen).remote(10, flag, hold, failure_type)
        refs = take(gen, 5)
        kill_and_wait(c, driver_worker(c, gen.key), 1)
        for i, ref in enumerate(refs):
            assert c.submit(fetch, ref, pure=False).result(timeout=30) == i

        kill_and_wait(c, driver_worker(c, gen.key), 1)
        Event(flag).set()
        if failure_type == "exception":
            refs += drain(gen, timeout=30)
            assert len(refs) == 6  # the 5 items, then the error item
        else:
            # a system failure is raised by next() (semantics.md), not an item
            with pytest.raises(GeneratorKilledError):
                drain(gen, timeout=60)

        for i, ref in enumerate(refs):
            fut = c.submit(fetch, ref, pure=False)
            if i < 3 and failure_type == "exception":
                assert fut.result(timeout=30) == i
            else:
                exc = fut.exception(timeout=30)
                assert exc is not None, f"item {i} did not fail"
                if failure_type == "crash":
                    # Ray's object store outlives a crashed worker process, so
                    # Ray recovers items 0-2; a Dask worker's memory does not:
                    # semantics.md, "Items produced and lost ... ItemLostError";
                    # an item that was waiting to be rebuilt when the last
                    # re-run was killed raises that GeneratorKilledError.
                    expected = ItemLostError if i < 3 else GeneratorKilledError
                    assert isinstance(exc, expected), f"item {i}: {exc!r}"
                    assert "max_retries=3" in str(exc), str(exc)
                else:
                    # the re-run's error, for the items it did not reach
                    assert "fails at 3 on purpose" in str(exc), repr(exc)
        Event(hold).set()
        del gen, refs, ref, fut


@gen_cluster(client=True)
async def test_return_yield_mix(c, s, a, b):
    """Ray: test_return_yield_mix."""
    await daskgen.install(c)
    result = [await ref async for ref in daskgen.remote(return_yield_mix).remote()]
    assert result == [0]
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_task_name_not_changed_for_iteration(c, s, a, b):
    """Ray: test_task_name_not_changed_for_iteration (an async actor method there;
    an async generator task here): one asyncio Task runs the whole generator."""
    await daskgen.install(c)
    values = []
    async for ref in daskgen.remote(task_identity_agen).remote():
        values.append(await ref)
    assert values == [0, 1, 2, 3, 4]
    del ref
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True)
async def test_contextvar_kept_across_yields(c, s, a, b):
    """For the same reason as the test above: a ContextVar set by a generator
    (async or sync) before its first yield is still set after each yield, as in
    any Python generator (and in a Ray async actor's generator task)."""
    await daskgen.install(c)
    for func in (contextvar_agen, contextvar_gen):
        values = [await ref async for ref in daskgen.remote(func).remote()]
        assert values == ["set before the first yield"] * 3, func.__name__
    await async_assert_clean(c, s, a, b)


@gen_cluster(client=True, nthreads=[("", 1)])
async def test_async_generators_concurrent(c, s, a):
    """Ray: test_async_actor_concurrent (async actor there; async generator tasks
    here, on a one-thread worker): three streams run at once. Instead of Ray's
    timing, each generator waits after item 0 until all three sent item 0."""
    await daskgen.install(c)
    gens = [daskgen.remote(concurrent_agen).remote("conc", k) for k in range(3)]
    firsts = [await (await anext_item(g, timeout=15)) for g in gens]
    assert firsts == [(0, 0), (1, 0), (2, 0)]
    await Event("conc-all-started").set()

    async def rest(g):
        return [await ref async for ref in g]

    outs = await asyncio.wait_for(asyncio.gather(*map(rest, gens)), 15)
    assert outs == [[(k, i) for i in range(1, 5)] for k in range(3)]
    del gens
    await async_assert_clean(c, s, a)


@gen_cluster(client=True)
async def test_no_memory_store_obj_leak(c, s, a, b):
    """Ray: test_no_memory_store_obj_leak."""
    await daskgen.install(c)
    f = daskgen.remote(ten_then_signal)
    for _ in range(2):
        gen = f.remote()
        for _ in range(10):
            async for ref in gen:
                del ref
        del gen
        await async_assert_clean(c, s, a, b)

    gen = f.remote("leak-signal")
    await Event("leak-signal").wait(timeout=10)
    del gen
    await async_assert_clean(c, s, a, b)


@pytest.mark.slow
@pytest.mark.parametrize("n_workers", [1, 2])
def test_reconstruction_generator_out_of_scope(n_workers):
    """Ray: test_reconstruction_generator_out_of_scope (task variant; ``delay`` is
    a Ray RPC-delay injection). The stream handle is dropped, only tasks that
    depend on its items are held; their lost results are recomputed, which
    re-runs the generator."""
    with nanny_cluster(n_workers) as c:
        f = daskgen.remote(num_returns="streaming", max_retries=2)(large_items)
        gen = f.remote(2)
        refs = [c.submit(identity, ref, pure=False) for ref in gen]
        del gen
        for i, ref in enumerate(refs):
            assert c.submit(fetch, ref, pure=False).result(timeout=30) == i

        kill_and_wait(c, who_has(c, refs[0].key)[0], n_workers)
        for i, ref in enumerate(refs):
            assert c.submit(fetch, ref, pure=False).result(timeout=30) == i
        refs = []
        del ref
        assert_clean(c)

        # The stream stays in the lineage of a held task; unconsumed items are
        # still freed.
        gen = f.remote(2)
        ref = c.submit(identity, next(gen), pure=False)
        del gen
        assert c.submit(fetch, ref, pure=False).result(timeout=30) == 0
        kill_and_wait(c, who_has(c, ref.key)[0], n_workers)
        assert c.submit(fetch, ref, pure=False).result(timeout=30) == 0
        gc.collect()
        key = ref.key
        poll_for(
            lambda: all(
                set(d) <= {str(key)}
                for d in c.run(
                    lambda dask_worker: sorted(map(str, dask_worker.data))
                ).values()
            ),
            15,
        )
        del ref
        assert_clean(c)


# ======================================================= test_streaming_generator_3.py


@gen_cluster(client=True, nthreads=[("", 1)] * 4)
async def test_generator_wait(c, s, *workers):
    """Ray: test_generator_wait. Ray's sleeps are Events here."""
    await daskgen.install(c)
    f = daskgen.remote(num_returns="streaming")(gated_each)

    # basic cases
    gen = f.remote(2, "wait-a")
    for expected in [0, 1]:
        waiter = asyncio.ensure_future(daskgen.wait([gen], num_returns=1))
        await asyncio.sleep(0.05)
        assert not waiter.done(), f"wait returned before item {expected} existed"
        await Event(f"wait-a-{expected}").set()
        r, ur = await asyncio.wait_for(waiter, 10)
        assert len(r) == 1
        assert await (await anext_item(r[0])) == expected
        assert len(ur) == 0
    for _ in range(3):  # the end counts as ready: next raises StopIteration
        r, ur = await asyncio.wait_for(daskgen.wait([gen], num_returns=1), 10)
        assert len(r) == 1
        with pytest.raises(StopAsyncIteration):
            await anext_item(r[0])
        assert len(ur) == 0

    # the generator task has finished before wait
    for i in range(2):
        await Event(f"wait-b-{i}").set()
    gen = f.remote(2, "wait-b")
    await gen.completed()
    for i in range(2):
        r, ur = await daskgen.wait([gen], timeout=0)
        assert len(r) == 1
        assert len(ur) == 0
        assert await (await anext_item(r[0])) == i

    # mixed with a regular Future
    gen = f.remote(2, "wait-b")
    ref = c.submit(gated_value, "wait-c", 10, pure=False)
    ready, unready = [], [gen, ref]
    result_set = set()
    while unready:
        ready, unready = await asyncio.wait_for(daskgen.wait(unready), 10)
        assert len(ready) == 1
        for r in ready:
            if isinstance(r, daskgen.FutureGenerator):
                try:
                    result_set.add(await (await anext_item(r)))
                except StopAsyncIteration:
                    await Event("wait-c").set()
                else:
                    unready.append(r)
            else:
                result_set.add(await r)
    assert result_set == {0, 1, 10}

    # timeout
    gen = f.remote(3, "wait-never")
    ref = c.submit(ten, pure=False)
    await wait(ref)
    ready, unready = await daskgen.wait([gen, ref], timeout=2)
    assert len(ready) == 1
    assert len(unready) == 1

    # num_returns
    gen = f.remote(1, "wait-b")
    ref = c.submit(ten, pure=False)
    ready, unready = await asyncio.wait_for(daskgen.wait([ref, gen], num_returns=2), 10)
    assert len(ready) == 2
    assert len(unready) == 0
    for i in range(3):
        await Event(f"wait-never-{i}").set()
    del gen, ref, ready, unready, r, waiter
    await async_assert_clean(c, s, *workers)


@pytest.mark.parametrize("backpressure", [True, False])
@gen_cluster(client=True, nthreads=[("", 1)] * 4)
async def test_generator_wait_e2e(c, s, *workers, backpressure):
    """Ray: test_generator_wait_e2e (without its elapsed-time bounds)."""
    await daskgen.install(c)
    f = daskgen.remote(count).options(backpressure=1 if backpressure else None)
    gen = [f.remote(2) for _ in range(4)]
    ref = [c.submit(ten, pure=False) for _ in range(4)]
    ready, unready = [], [*gen, *ref]
    result = []
    deadline = time.monotonic() + 20
    while unready:
        assert time.monotonic() < deadline, f"never ready: {unready}"
        ready, unready = await daskgen.wait(
            unready, num_returns=len(unready), timeout=0.1
        )
        for r in ready:
            if isinstance(r, daskgen.FutureGenerator):
                try:
                    result.append(await (await anext_item(r)))
                except StopAsyncIteration:
                    pass
                else:
                    unready.append(r)
            else:
                result.append(await r)
    assert len(result) == 12
    result = Counter(result)
    assert result[0] == 4
    assert result[1] == 4
    assert result[10] == 4
    del gen, ref, ready, unready, r
    await async_assert_clean(c, s, *workers)


@gen_cluster(client=True)
async def test_completed_next_ready_is_finished(c, s, a, b):
    """Ray: test_completed_next_ready_is_finished. Ray's 1 s sleeps are Events."""
    await daskgen.install(c)
    f = daskgen.remote(gated_each)
    gen = f.remote(3, "cnr")
    assert not gen.is_finished()
    assert not gen.next_ready()
    await Event("cnr-0").set()
    r, _ = await asyncio.wait_for(daskgen.wait([gen]), 10)
    gen = r[0]
    assert gen.next_ready()
    _, ur = await daskgen.wait([gen.completed()], timeout=0)
    assert len(ur) == 1

    # consume the items
    await anext_item(gen)
    assert not gen.is_finished()
    _, ur = await daskgen.wait([gen.completed()], timeout=0)
    assert len(ur) == 1

    await Event("cnr-1").set()
    await anext_item(gen)
    assert not gen.is_finished()
    _, ur = await daskgen.wait([gen.completed()], timeout=0)
    assert len(ur) == 1

    await Event("cnr-2").set()
    await anext_item(gen)
    with pytest.raises(StopAsyncIteration):
        await anext_item(gen)
    assert gen.is_finished()
    # Ray: not gen.next_ready() here ("Since the next should raise
    # StopIteration, it should be False"). from_ray.md: next_ready() is "True if
    # next would return at once (an item is waiting, or the stream has ended)".
    assert gen.next_ready()
    r, _ = await daskgen.wait([gen.completed()], timeout=0)
    assert len(r) == 1

    # the failed case (Ray: ray.cancel(gen, force=True) -> WorkerCrashedError)
    gen = f.remote(3, "cnr-fail")
    await Event("cnr-fail-0").set()
    await anext_item(gen)
    gen.cancel()
    # daskgen stops it at its next yield, once the stop reached the worker
    # (or, on a busy machine, the stop came before the generator asked for
    # its next value: it stopped there and its driver is already gone)
    ext, key = s.extensions["daskgen"], gen.key
    await async_poll_for(
        lambda: (
            any(
                d.stop for w in (a, b) for d in w.extensions["daskgen"].drivers.values()
            )
            or any(g.state == "cancelled" for g in ext.generators.values())
        ),
        10,
        fail_func=lambda: print(
            "cnr-fail:",
            ext.get_info(history=False),
            {w.address: list(w.extensions["daskgen"].drivers) for w in (a, b)},
            s.story(key),
        ),
    )
    await Event("cnr-fail-1").set()
    r, _ = await asyncio.wait_for(daskgen.wait([gen]), 10)
    assert len(r) == 1
    # the last exception is not taken yet
    assert gen.next_ready()
    assert not gen.is_finished()
    exc = await gen.completed().exception(timeout=10)
    assert isinstance(exc, GeneratorCancelledError), exc
    with pytest.raises(GeneratorCancelledError):
        await anext_item(gen)
    # Ray: not next_ready() here. semantics.md: after cancel() every next()
    # raises GeneratorCancelledError at once, so next_ready() stays True.
    assert gen.next_ready()
    assert gen.is_finished()
    await Event("cnr-fail-2").set()
    del gen, r, exc, ur, _
    await async_assert_clean(c, s, a, b)


# ======================================================= test_streaming_generator_4.py


CALLER = """
import os, signal, sys
import daskgen
from distributed import Client

def kill_caller(caller_pid):
    os.kill(caller_pid, signal.SIGKILL)
    yield [1] * 1024 * 1024

client = Client(sys.argv[1])
gen = daskgen.submit(kill_caller, os.getpid())
print("submitted", flush=True)
next(gen).result()
print("not killed", flush=True)
"""


@pytest.mark.slow
def test_caller_death():
    """Ray: test_caller_death (the callee is an actor there, a generator task
    here): the generator SIGKILLs its caller's process, then yields. The
    generator must end and not block the worker's one thread."""
    with nanny_cluster(1) as c:
        proc = subprocess.run(
            [sys.executable, "-c", CALLER, c.scheduler.address],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert "submitted" in proc.stdout, proc.stderr
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)
        assert c.submit(ping, pure=False).result(timeout=10) == "ok"
        assert_clean(c, timeout=20)


@pytest.mark.slow
def test_intermediate_generator_object_recovery_while_generator_running():
    """Ray: test_intermediate_generator_object_recovery_while_generator_running.
    A consumer of item 0 finishes on worker 2; worker 2 dies while the producer
    (worker 1) still runs; the consumer's result must come back at once, not
    when the producer ends."""
    with nanny_cluster(3) as c:
        w1, w2, _ = sorted(c.scheduler_info()["workers"])
        producer = daskgen.remote(workers=[w1])(hold_between)
        streaming_ref = producer.remote("recovery-hold")
        consumer_ref = c.submit(
            copy_array,
            next(streaming_ref),
            workers=[w2],
            allow_other_workers=True,
            pure=False,
        )
        wait(consumer_ref, timeout=30)
        assert who_has(c, consumer_ref.key) == [w2]
        kill_and_wait(c, w2, 3)

        start = time.time()
        assert consumer_ref.result(timeout=10).size == 10 * MiB
        assert time.time() - start < 10
        assert not ev_is_set("recovery-hold")  # the producer is still running
        Event("recovery-hold").set()
        del streaming_ref, consumer_ref


@pytest.mark.slow
@pytest.mark.parametrize("backpressure", [False, True])
def test_many_tasks_lineage_reconstruction_mini_stress_test(backpressure):
    """Ray: test_many_tasks_lineage_reconstruction_mini_stress_test (without its RPC
    delay and failure injection). Five streams of 10 items; three workers
    SIGKILLed while they run. Ray's max_retries=-1 has no daskgen equivalent: 10."""
    with nanny_cluster(3) as c:
        f = daskgen.remote(max_retries=10, backpressure=1 if backpressure else None)(
            ten_slow_items
        )
        unready = [f.remote(10) for _ in range(5)]
        values = {id(g): [] for g in unready}
        consumed = 0
        kills = 0
        rng = random.Random(0)
        deadline = time.monotonic() + 60
        while unready:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"streams never ended: {stalled_streams(c, unready)}"
                )
            ready, unready = daskgen.wait(
                unready, num_returns=len(unready), timeout=0.1
            )
            for r in ready:
                try:
                    ref = next(r)
                except StopIteration:
                    continue
                values[id(r)].append(int(ref.result(timeout=30)[0]))
                del ref
                consumed += 1
                unready.append(r)
            if kills < 3 and consumed >= 8 * (kills + 1):
                workers = sorted(c.scheduler_info()["workers"])
                kill_and_wait(c, rng.choice(workers), 3)
                kills += 1
        assert kills == 3
        assert list(values.values()) == [list(range(10))] * 5
        del ready, r
        assert_clean(c)


@gen_cluster(client=True)
async def test_local_gc_not_hang(c, s, a, b):
    """Ray: test_local_gc_not_hang: a backpressured stream left alone while garbage
    is collected everywhere still runs to its end."""
    await daskgen.install(c)
    gen = daskgen.remote(backpressure=1)(five_ones).remote()
    ext = s.extensions["daskgen"]
    await async_poll_for(
        lambda: any(g.state == "paused" for g in ext.generators.values()), 10
    )
    gc.collect()
    await c.run(gc.collect)
    values = [await ref async for ref in gen]
    assert values == [1] * 5
    del gen
    await async_assert_clean(c, s, a, b)


@pytest.mark.parametrize("use_asyncio", [False, True])
@gen_cluster(client=True)
async def test_cancel(c, s, a, b, use_asyncio):
    """Ray: test_cancel (actor methods there; sync and async generator tasks here).
    After the cancel, the next read raises the cancellation, even though the
    generator went on yielding (Ray: 1 s more; here until it is closed)."""
    await daskgen.install(c)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        marker = os.path.join(tmp, "cancelled")
        if use_asyncio:
            gen = daskgen.remote(astream_until_cancelled).remote(marker, 5000)
        else:
            gen = daskgen.remote(stream_until_cancelled).remote("cancel-signal", 5000)
        raised = False
        try:
            i = 0
            while True:
                ref = await anext_item(gen)
                assert i == await ref
                if i == 0:
                    gen.cancel()
                    await Event("cancel-signal").set()
                    open(marker, "w").close()
                i += 1
        except GeneratorCancelledError:
            raised = True
        except StopAsyncIteration:
            pass
        assert raised, "the stream ended without the cancellation"
        exc = await gen.completed().exception(timeout=10)
        assert isinstance(exc, GeneratorCancelledError), exc
    del gen, ref, exc
    await async_assert_clean(c, s, a, b)


# ================================================ test_streaming_generator_backpressure.py


@gen_cluster(client=True, nthreads=[("", 1)])
async def test_streaming_generator_backpressure_basic(c, s, a):
    """Ray: test_streaming_generator_backpressure_basic (actor=False). Ray sleeps 2 s
    to see the task held back; here the scheduler reports it paused."""
    await daskgen.install(c)
    TOTAL_RETURN = 10
    ext = s.extensions["daskgen"]
    gen = daskgen.remote(backpressure=1)(reporting).remote(TOTAL_RETURN, "bpb")

    def paused_at(n):
        gs = list(ext.generators.values())
        return bool(gs) and gs[0].state == "paused" and gs[0].produced == n

    for i in range(TOTAL_RETURN - 4):
        r, _ = await asyncio.wait_for(daskgen.wait([gen]), 10)
        assert len(r) == 1
        await apoll(lambda i=i: ev_set(f"bpb-reported-{i}"), what=f"report of {i}")
        await async_poll_for(lambda i=i: paused_at(i + 1), 10)
        assert not await ev_set(f"bpb-reported-{i + 1}")
        # consume the ref -> the task goes on
        await (await anext_item(gen))
        await apoll(
            lambda i=i: ev_set(f"bpb-reported-{i + 1}"), what=f"report of {i + 1}"
        )

    # dropping the stream lifts backpressure: the task runs to its end
    del gen, r
    gc.collect()  # not in Ray: rules out a reference cycle keeping the handle
    await apoll(
        lambda: ev_set(f"bpb-reported-{TOTAL_RETURN - 1}"),
        what=f"report of the last item {TOTAL_RETURN - 1}",
    )
    await async_assert_clean(c, s, a)


@pytest.mark.parametrize("backpressure_size", [2, 3, 5, 7, 10, 15])
@gen_cluster(client=True)
async def test_streaming_generator_backpressure_multiple_objects(
    c, s, a, b, backpressure_size
):
    """Ray: test_streaming_generator_backpressure_multiple_objects."""
    await daskgen.install(c)
    TOTAL_RETURN = 10
    prefix = f"bpm{backpressure_size}"
    ext = s.extensions["daskgen"]
    gen = daskgen.remote(backpressure=backpressure_size)(reporting).remote(
        TOTAL_RETURN, prefix, 1024
    )

    async def reported(i):
        return await Event(f"{prefix}-reported-{i}").is_set()

    async def poll_reported(i):
        await apoll(lambda: reported(i), what=f"report of item {i}")

    def paused_at(n):
        gs = list(ext.generators.values())
        return bool(gs) and gs[0].state == "paused" and gs[0].produced == n

    r = None
    for i in range(0, TOTAL_RETURN - backpressure_size, backpressure_size):
        r, _ = await asyncio.wait_for(daskgen.wait([gen]), 10)
        assert len(r) == 1
        for j in range(backpressure_size):
            await poll_reported(i + j)
        await async_poll_for(lambda i=i: paused_at(i + backpressure_size), 10)
        assert not await reported(i + backpressure_size)
        for j in range(backpressure_size):
            await (await anext_item(gen))
            await poll_reported(min(i + backpressure_size + j, TOTAL_RETURN - 1))
    rest = [ref async for ref in gen]
    assert gen._index == TOTAL_RETURN
    del gen, rest, r
    await async_assert_clean(c, s, a, b)


@pytest.mark.slow
def test_caller_failure_doesnt_hang():
    """Ray: test_caller_failure_doesnt_hang. The caller (an actor in Ray, a task
    here, on the other worker) owns a backpressured stream and takes one item.
    If the caller returns or raises, the stream must run to its end; if the
    caller's process is killed, the stream must stop (Ray: FAILED). Ray's
    ``sys.exit`` case has no task equivalent (distributed re-raises SystemExit
    in its thread) and is left out."""
    with nanny_cluster(2) as c:
        caller_w, gen_w = sorted(c.scheduler_info()["workers"])
        caller = daskgen.remote(bp_caller).options(workers=[caller_w])

        def ended(key, states):
            info = generator_info(c, f"{key}-generator")
            return info is not None and info["state"] in states

        # the caller finishes: the stream finishes
        caller.remote(None, None, "bp-caller-1", gen_w).result(timeout=30)
        poll_for(lambda: ended("bp-caller-1", {"finished"}), 15)
        assert generator_info(c, "bp-caller-1-generator")["yielded"] == 5

        # the caller raises: the stream finishes
        r = caller.remote("exc", None, "bp-caller-2", gen_w)
        assert isinstance(r.exception(timeout=30), ValueError)
        # The failed task's traceback holds its frames, and so the handle, for
        # as long as its error is held (Python and Dask keep the traceback;
        # Ray's actor frames are gone): release it, then the stream finishes
        # once the worker's garbage collector has freed that reference cycle.
        del r
        poll_for(
            lambda: (
                c.run(gc.collect) is not None and ended("bp-caller-2", {"finished"})
            ),
            15,
            fail_func=lambda: print(generator_info(c, "bp-caller-2-generator")),
        )

        # the caller is killed: the stream stops
        r = caller.options(max_retries=0).remote(
            None, "bp-caller-hold", "bp-caller-4", gen_w
        )
        poll_for(lambda: ended("bp-caller-4", {"paused", "running"}), 15)
        kill_and_wait(c, caller_w, 2)
        poll_for(
            lambda: ended("bp-caller-4", {"cancelled", "erred"}),
            15,
            fail_func=lambda: print(generator_info(c, "bp-caller-4-generator")),
        )
        Event("bp-caller-hold").set()
        del r


def test_backpressure_invalid():
    """Ray: test_backpressure_invalid, the ``=0`` case (the async-actor case is
    actor-only, ``_num_objects_per_yield`` is Ray-internal)."""
    with pytest.raises(ValueError, match="backpressure=0 is not valid"):

        @daskgen.remote(backpressure=0)
        def f():
            yield 1


@pytest.mark.slow
@pytest.mark.parametrize("n_workers", [1, 2])
def test_backpressure_pause_signal(n_workers):
    """Ray: test_backpressure_pause_signal: SIGTERM to the worker of a task paused
    by backpressure, max_retries=0 -> the task fails (WorkerCrashedError)."""
    with nanny_cluster(n_workers) as c:
        gen = daskgen.remote(backpressure=1, max_retries=0)(count).remote(5)
        assert take(gen, 1)[0].result(timeout=20) == 0

        key = gen.key

        def paused():
            info = generator_info(c, key)
            return info is not None and info["state"] == "paused"

        poll_for(paused, 15)
        kill_worker(c, driver_worker(c, gen.key), signal.SIGTERM)
        exc = gen.completed().exception(timeout=30)
        assert isinstance(exc, GeneratorKilledError), exc
        assert "max_retries=0" in str(exc)
        del gen, exc


# ================================================ test_streaming_generator_regression.py


@gen_cluster(client=True, nthreads=[("", 1)])
async def test_unconsumed_generator_objects_freed_on_stream_deletion(c, s, a):
    """Ray: test_unconsumed_generator_objects_freed_on_stream_deletion."""
    await daskgen.install(c)
    gen_ref = daskgen.remote(backpressure=1)(five_then_signal).remote("all-produced")
    await async_poll_for(lambda: a.state.nbytes >= 10**7, 10)
    # drop the stream without taking anything
    del gen_ref
    await Event("all-produced").wait(timeout=10)
    await async_poll_for(
        lambda: not a.data,
        10,
        fail_func=lambda: print("still in worker memory:", list(a.data)),
    )
    await async_assert_clean(c, s, a)


# =============================================================== test_generators.py


@pytest.mark.slow
def test_generator_oom():
    """Ray: test_generator_oom, scaled to a 400 MiB worker: 10 x 50 MB."""
    n, item_bytes = 10, 50 * 10**6
    with nanny_cluster(1) as c:
        # the worker may be killed for its memory using normal returns
        with contextlib.suppress(KilledWorker):
            daskgen.remote(max_retries=0)(large_values).options(num_returns=n).remote(
                n, item_bytes
            )[0].result(timeout=60)
        c.wait_for_workers(1, timeout=30)
        # a generator lets the worker finish
        refs = (
            daskgen.remote(max_retries=0)(large_values_generator)
            .options(num_returns=n)
            .remote(n, item_bytes)
        )
        first, last = refs[0], refs[-1]
        del refs
        wait(last, timeout=60)
        assert last.status == "finished", last.exception()
        assert first.result(timeout=30).shape == (item_bytes, 1)
        del first, last


@pytest.mark.parametrize("store_in_plasma", [False, True])
@gen_cluster(client=True)
async def test_generator_returns(c, s, a, b, store_in_plasma):
    """Ray: test_generator_returns (use_actors=False)."""
    await daskgen.install(c)
    fn = daskgen.remote(max_retries=0)(array_or_list)
    num_returns = 3

    refs = fn.options(num_returns=num_returns).remote(num_returns - 1, store_in_plasma)
    # Ray: ray.get(refs) raises RayTaskError, as_instanceof_cause() a ValueError
    exc = await assert_raises(
        refs[-1], ValueError, "yielded 2 values, but num_returns=3"
    )
    assert isinstance(exc, NumReturnsError)

    # Ray: no error (ray-project/ray#28689, a TODO there). semantics.md: the last
    # item raises NumReturnsError.
    refs = fn.options(num_returns=num_returns).remote(num_returns + 1, store_in_plasma)
    exc = await refs[-1].exception()
    assert isinstance(exc, NumReturnsError)
    assert "more than num_returns=3" in str(exc)

    values = await c.gather(
        fn.options(num_returns=num_returns).remote(num_returns, store_in_plasma)
    )
    assert [x[0] for x in values] == list(range(num_returns))
    # works for num_returns=1 if the generator yields a single value
    assert (await fn.options(num_returns=1).remote(1, store_in_plasma))[0] == 0
    del refs, exc
    await async_assert_clean(c, s, a, b)


@pytest.mark.parametrize("store_in_plasma", [False, True])
@gen_cluster(client=True)
async def test_generator_errors(c, s, a, b, store_in_plasma):
    """Ray: test_generator_errors."""
    await daskgen.install(c)
    generator = daskgen.remote(max_retries=0)(yields_then_raises)
    ref1, ref2, ref3 = generator.options(num_returns=3).remote(3, store_in_plasma)
    await ref1
    for ref in (ref2, ref3):
        exc = await ref.exception()
        assert type(exc) is Exception and str(exc) == "error", exc

    # Ray: ray.get(dynamic_ref) gives [ref1, ref2] where ref2 raises. semantics.md:
    # DynamicFuture.result() raises the user's exception.
    dynamic_ref = generator.options(num_returns="dynamic").remote(3, store_in_plasma)
    with pytest.raises(Exception, match="^error$"):  # noqa: PT011
        await dynamic_ref.result()
    del ref1, ref2, ref3, ref, exc, dynamic_ref
    await async_assert_clean(c, s, a, b)


@pytest.mark.parametrize("store_in_plasma", [False, True])
@gen_cluster(client=True)
async def test_dynamic_generator_retry_exception(c, s, a, b, store_in_plasma):
    """Ray: test_dynamic_generator_retry_exception."""
    await daskgen.install(c)
    counter = f"dyn-retry-{store_in_plasma}"
    await Variable(counter).set(0)
    generator = daskgen.remote(max_retries=1)(fail_first_execution)
    dynamic_ref = generator.options(num_returns="dynamic").remote(
        3, store_in_plasma, counter
    )
    # Ray: [ref1, ref2], ref2 raises. semantics.md: result() raises.
    with pytest.raises(CustomException, match="error"):
        await dynamic_ref.result()

    await Variable(counter).set(0)
    dynamic_ref = generator.options(
        num_returns="dynamic", retry_exceptions=[CustomException]
    ).remote(3, store_in_plasma, counter)
    items = await dynamic_ref.result()
    assert len(items) == 3
    for i, ref in enumerate(items):
        assert (await ref)[0] == i
    del dynamic_ref, items, ref
    await async_assert_clean(c, s, a, b)


@pytest.mark.parametrize("store_in_plasma", [False, True])
@gen_cluster(client=True)
async def test_dynamic_generator(c, s, a, b, store_in_plasma):
    """Ray: test_dynamic_generator (its task variant; Ray names it use_actors=True)."""
    await daskgen.install(c)
    remote_generator_fn = daskgen.remote(num_returns="dynamic")(array_or_list)
    read_task = daskgen.remote(read)

    gen = (
        await remote_generator_fn.options(num_returns="dynamic")
        .remote(10, store_in_plasma)
        .result()
    )
    for i, ref in enumerate(gen):
        assert (await ref)[0] == i

    # an empty generator
    gen = (
        await remote_generator_fn.options(num_returns="dynamic")
        .remote(0, store_in_plasma)
        .result()
    )
    assert len(gen) == 0

    # also works with a static num_returns
    assert await read_task.remote(
        remote_generator_fn.options(num_returns=10).remote(10, store_in_plasma)
    )

    # a normal function does not work with num_returns="dynamic" (Ray: raises at
    # get; daskgen: at submit)
    with pytest.raises(ValueError, match="needs a generator function"):
        daskgen.remote(num_returns="dynamic")(static_list).remote(3)

    # as a task argument: the list of items
    gen = remote_generator_fn.options(num_returns="dynamic").remote(10, store_in_plasma)
    assert await read_task.remote(await gen.result())
    del gen, ref
    await async_assert_clean(c, s, a, b)


@pytest.mark.xfail(
    strict=True,
    reason="known issue (docs/semantics.md): a DynamicFuture passed to a task "
    "gives None, where Ray hands the task the ObjectRefGenerator",
)
@gen_cluster(client=True)
async def test_dynamic_generator_as_task_argument(c, s, a, b):
    """Ray: test_dynamic_generator, its last part: the generator itself as a
    task argument."""
    await daskgen.install(c)
    gen = daskgen.remote(num_returns="dynamic")(array_or_list).remote(10, True)
    result = daskgen.remote(read).remote(gen)
    assert await result.exception() is None, await result.exception()


@gen_cluster(client=True)
async def test_dynamic_generator_distributed(c, s, a, b):
    """Ray: test_dynamic_generator_distributed: values fetched from another node."""
    await daskgen.install(c)
    dyn = daskgen.remote(num_returns="dynamic", workers=[a.address])(
        dynamic_with_sleep
    ).remote(3)
    gen = await dyn.result()
    for i, ref in enumerate(gen):
        assert (await ref)[0] == i
        assert await c.submit(fetch, ref, workers=[b.address], pure=False) == i
    del dyn, gen, ref
    await async_assert_clean(c, s, a, b)


@pytest.mark.slow
def test_dynamic_generator_reconstruction():
    """Ray: test_dynamic_generator_reconstruction."""
    with nanny_cluster(2) as c:
        dyn = daskgen.remote(num_returns="dynamic")(large_items).remote(10)
        refs = dyn.result(timeout=30)
        del dyn  # Ray: gen = ray.get(dynamic_generator.remote(10))
        # recovery of all dynamic objects through re-execution
        kill_and_wait(c, who_has(c, refs[0].key)[0], 2)
        for i, ref in enumerate(refs):
            assert c.submit(fetch, ref, pure=False).result(timeout=30) == i

        # copy the last item to the other worker, then lose the rest
        holder = who_has(c, refs[0].key)[0]
        other = next(w for w in c.scheduler_info()["workers"] if w != holder)
        c.submit(fetch, refs[-1], workers=[other], pure=False).result(timeout=30)
        kill_and_wait(c, holder, 2)
        for i, ref in enumerate(refs):
            assert c.submit(fetch, ref, pure=False).result(timeout=30) == i
        del refs, ref
        assert_clean(c)


@pytest.mark.slow
@pytest.mark.parametrize("too_many_returns", [False, True])
def test_dynamic_generator_reconstruction_nondeterministic(too_many_returns):
    """Ray: test_dynamic_generator_reconstruction_nondeterministic: the re-run
    after a death yields 11 (or 9) items instead of 10."""
    flag = f"nondet-{too_many_returns}"
    with nanny_cluster(1) as c:
        dyn = daskgen.remote(num_returns="dynamic")(nondeterministic_length).remote(
            flag, too_many_returns
        )
        refs = dyn.result(timeout=30)
        del dyn
        assert len(refs) == 10
        Event(flag).set()
        kill_and_wait(c, who_has(c, refs[0].key)[0], 1)
        if too_many_returns:
            for i, ref in enumerate(refs):
                assert int(ref.result(timeout=30)[0]) == i
        else:
            excs = [ref.exception(timeout=30) for ref in refs]
            assert any(excs), "every item was recomputed from a shorter re-run"
            bad = [e for e in excs if e is not None]
            assert all(isinstance(e, ReplayInconsistentError) for e in bad), bad
            del excs, bad
        del refs


@pytest.mark.slow
def test_dynamic_generator_reconstruction_fails():
    """Ray: test_dynamic_generator_reconstruction_fails: every re-run crashes its
    worker after half the items; the items and a task using them raise."""
    with nanny_cluster(1) as c:
        dyn = daskgen.remote(num_returns="dynamic")(crash_on_reexecution).remote(
            "recon-fails"
        )
        refs = dyn.result(timeout=30)
        del dyn
        c.submit(fetch_all, *refs, pure=False).result(timeout=30)

        Event("recon-fails").set()
        kill_and_wait(c, who_has(c, refs[0].key)[0], 1)
        done = c.submit(fetch_all, *refs, pure=False)
        # Ray: getting the refs in order raises WorkerCrashedError at some point
        exc = None
        for ref in refs:
            exc = ref.exception(timeout=60)
            if exc is not None:
                break
        assert isinstance(exc, KilledWorker), f"no item raised KilledWorker: {exc!r}"
        # other tasks get the error too
        assert isinstance(done.exception(timeout=30), KilledWorker)
        del refs, ref, exc, done


@pytest.mark.slow
def test_dynamic_empty_generator_reconstruction_nondeterministic():
    """Ray: test_dynamic_empty_generator_reconstruction_nondeterministic: an empty
    generator is never re-run, whatever dies."""
    with nanny_cluster(1) as c:
        Variable("empty-counter").set(0)
        dyn = daskgen.remote(num_returns="dynamic")(maybe_empty_generator).remote(
            "empty-counter"
        )
        check = daskgen.remote(is_empty)
        # Ray passes the ObjectRefGenerator; a DynamicFuture passed to a task is
        # None (semantics.md, "Known issues"; test_dynamic_generator shows it),
        # so the task gets the list of items.
        assert check.remote(dyn.result(timeout=30)).result(timeout=30)
        kill_and_wait(c, list(c.scheduler_info()["workers"])[0], 1)
        assert check.remote(dyn.result(timeout=30)).result(timeout=30)
        # an empty generator is never reconstructed
        assert Variable("empty-counter").get(timeout=10) == 1
        del dyn
