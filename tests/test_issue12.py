"""Issue 12: re-runs, reconstruction, cancellation and handle-drop cases.

Each test states the behavior daskgen promises (README.md, docs/semantics.md).
Kill tests use real LocalClusters with nanny processes (a SIGKILLed worker is
restarted by its nanny, on a new port); pure-logic tests use gen_cluster.
Generators count their runs by appending a line to a file in tmp_path (the
workers share the filesystem) and block on a ``distributed.Event``, never on a
sleep, so that every ordering below is forced.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import os
import signal
import time
import uuid
from concurrent.futures import CancelledError

import pytest
from _diag import scheduler_states  # tests/ is on sys.path
from _helpers import nanny_cluster, wait_until
from distributed import Client, Event, KilledWorker, wait
from distributed.utils_test import async_poll_for, gen_cluster

import daskgen

# ----------------------------------------------------------------- helpers


@pytest.fixture
def one_worker():
    with nanny_cluster(1) as client:
        yield client


def note(path, tag="run"):
    """Append ``tag`` to the file ``path`` (one line per event)."""
    with open(path, "a") as f:
        f.write(tag + "\n")


def count(path, tag="run"):
    try:
        with open(path) as f:
            return f.read().split().count(tag)
    except FileNotFoundError:
        return 0


def worker_addrs(c):
    return c.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.workers))


def kill(c, addr, n_workers):
    """SIGKILL the worker at ``addr``; return once its nanny restarted it."""
    pid = c.run(os.getpid, workers=[addr])[addr]
    os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: addr not in (ws := worker_addrs(c)) and len(ws) == n_workers,
        lambda: f"worker {addr} replaced; workers now {worker_addrs(c)}",
    )


def task_state(c, key):
    def get(dask_scheduler, key=key):
        ts = dask_scheduler.tasks.get(key)
        return None if ts is None else ts.state

    return c.run_on_scheduler(get)


def processing_on(c, key):
    def get(dask_scheduler, key=key):
        ts = dask_scheduler.tasks.get(key)
        if ts is None or ts.processing_on is None:
            return None
        return ts.processing_on.address

    return c.run_on_scheduler(get)


RUNNABLE = ("released", "waiting", "queued", "no-worker", "processing")


def wait_driver_settled(c, key, timeout=30):
    """The driver is neither running nor about to run (so a re-run shows)."""
    wait_until(
        lambda: task_state(c, key) not in RUNNABLE[1:],
        lambda: f"driver {key} still {task_state(c, key)}",
        timeout,
    )


def values(futs, timeout=30, when=""):
    """The values of ``futs``, in order; fail naming the missing or erred items."""
    deadline = time.monotonic() + timeout
    try:
        wait(futs, timeout=timeout)
    except TimeoutError:
        missing = {i: f.status for i, f in enumerate(futs) if not f.done()}
        raise AssertionError(
            f"{when}items not done within {timeout} s (index: status): {missing}; "
            f"{scheduler_states(futs[0].client, futs)}"
        ) from None
    erred = {
        i: repr(f.exception()) for i, f in enumerate(futs) if f.status != "finished"
    }
    assert not erred, f"{when}items erred: {erred}"
    out, failed = [], {}
    for i, f in enumerate(futs):
        left = max(1.0, deadline - time.monotonic())
        try:
            out.append(f.result(timeout=left))
        except TimeoutError:
            failed[i] = f"'finished' but not fetched within {timeout} s"
        except Exception as e:  # erred after wait() saw it finished
            failed[i] = repr(e)
    assert not failed, f"{when}items failed: {failed}"
    return out


def error_of(fut, what, timeout=30):
    """The exception of ``fut`` (without raising it); fail naming ``what``."""
    try:
        return fut.exception(timeout=timeout)
    except TimeoutError:
        raise AssertionError(
            f"{what} ({fut.key}) still {fut.status} after {timeout} s"
        ) from None


def take(gen, n, timeout=30):
    out = []
    for i in range(n):
        try:
            out.append(gen.next(timeout=timeout))
        except daskgen.StreamTimeoutError:
            raise AssertionError(
                f"stream item {i} (of {n} wanted) not yielded within {timeout} s"
            ) from None
    return out


def _call_keys(dask_scheduler, prefix):
    return sorted(
        str(k)
        for k in dask_scheduler.tasks
        if k == f"{prefix}-generator" or (type(k) is tuple and k[0] == prefix)
    )


def call_keys(c, prefix):
    return c.run_on_scheduler(_call_keys, prefix=prefix)


def pseudo_clients(c):
    return c.run_on_scheduler(
        lambda dask_scheduler: sorted(
            k for k in dask_scheduler.clients if str(k).startswith("daskgen-")
        )
    )


# -------------------------------------------------------- generator functions


def paused_then_marker(n, marker):
    yield from range(n)
    note(marker, "end")


def flaky_five(runs):
    """Yields 0, 10, 20, raises on its first run; later runs yield all five."""
    note(runs)
    first = count(runs) == 1
    for i in range(5):
        if i == 3 and first:
            raise ValueError("first run fails after 3 items")
        yield i * 10


def counted(runs, n):
    note(runs)
    for i in range(n):
        yield i * 10 + 1


def empty_unless_rerun(runs):
    """Yields nothing on its first run, one item on any re-run."""
    note(runs)
    if count(runs) > 1:
        yield "re-run"


def gated(runs, n, event_name, k):
    """Yield k items, wait for the Event, then the rest (values i * 10)."""
    note(runs)
    for i in range(n):
        if i == k:
            note(runs, "gate")
            Event(event_name).wait()
        yield i * 10


def blocked_plain(runs, event_name):
    note(runs)
    Event(event_name).wait()
    return 1


def yield_then_raise():
    yield 1
    raise ValueError("after one item")


def identity(x):
    return x


def use_all(*xs):
    return list(xs)


def wait_event(name):
    Event(name).wait()


CTX: contextvars.ContextVar[str] = contextvars.ContextVar(
    "daskgen_issue12", default="unset"
)


async def one_task_agen():
    first = asyncio.current_task()
    CTX.set("set before the first yield")
    yield (id(first), True, CTX.get())
    for _ in range(3):
        await asyncio.sleep(0)
        task = asyncio.current_task()
        # `first` stays referenced, so its id cannot be reused by a new task
        yield (id(task), task is first, CTX.get())


class AsyncGenCallable:
    async def __call__(self, n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i * 3


# ------------------------------------------------ 1. dropped paused stream


@gen_cluster(client=True)
async def test_dropped_paused_stream_runs_to_end(c, s, a, b, tmp_path_factory):
    await daskgen.install(c)
    marker = str(tmp_path_factory.mktemp("issue12") / "marker")
    gen = daskgen.submit(paused_then_marker, 10, marker, backpressure=2)
    ext = s.extensions["daskgen"]
    await async_poll_for(
        lambda: [g.state for g in ext.generators.values()] == ["paused"], timeout=10
    )
    assert count(marker, "end") == 0
    del gen
    gc.collect()
    await async_poll_for(
        lambda: count(marker, "end") == 1,
        timeout=10,
        fail_func=lambda: print(
            "generator never ran past its pause:",
            [g.info() for g in ext.generators.values()],
        ),
    )


# --------------------------------------- 2. retry_exceptions keeps the items


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["static", "dynamic", "streaming"])
def test_retry_exceptions_items_valid(one_worker, tmp_path, mode):
    c = one_worker
    runs = str(tmp_path / "runs")
    if mode == "static":
        items = daskgen.submit(flaky_five, runs, num_returns=5, retry_exceptions=True)
    elif mode == "dynamic":
        d = daskgen.submit(
            flaky_five, runs, num_returns="dynamic", retry_exceptions=True
        )
        items = d.result(timeout=30)
    else:
        gen = daskgen.submit(flaky_five, runs, retry_exceptions=True)
        items = take(gen, 5)
        # no error item after the five values (next_ready: next() would not wait)
        wait_until(gen.next_ready, "the stream's end")
        assert list(gen) == []
    assert values(items) == [0, 10, 20, 30, 40]
    assert count(runs) == 2
    # Items 0-2 were reported by the failed first attempt: still right.
    assert c.gather(items[:3]) == [0, 10, 20]


# -------------------------------- 3. reconstruction after every worker death


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode,drop",
    [
        ("static", False),
        ("dynamic", False),
        ("dynamic", True),
        ("streaming", False),
        ("streaming", True),
    ],
)
def test_reconstruction_every_time(one_worker, tmp_path, mode, drop):
    c = one_worker
    runs = str(tmp_path / "runs")
    key = f"rebuild-{uuid.uuid4().hex}"
    handle = None
    if mode == "static":
        items = daskgen.submit(counted, runs, 4, num_returns=4, max_retries=3, key=key)
    elif mode == "dynamic":
        handle = daskgen.submit(
            counted, runs, 4, num_returns="dynamic", max_retries=3, key=key
        )
        items = handle.result(timeout=30)
    else:
        handle = daskgen.submit(counted, runs, 4, max_retries=3, key=key)
        items = take(handle, 4)
    expected = [1, 11, 21, 31]
    assert values(items) == expected
    if drop:
        del handle
        gc.collect()
    driver = f"{key}-generator"
    wait_driver_settled(c, driver)
    assert count(runs) == 1
    for kills in (1, 2, 3):
        kill(c, worker_addrs(c)[0], 1)
        got = values(items, when=f"after kill {kills}: ")
        assert got == expected, f"after kill {kills}: {got}"
        wait_driver_settled(c, driver)
        assert count(runs) == 1 + kills, f"after kill {kills}: {count(runs)} runs"


# ------------------------------------ 4. re-runs count against max_retries


@pytest.mark.slow
def test_reruns_count_against_max_retries(one_worker, tmp_path):
    c = one_worker
    runs = str(tmp_path / "runs")
    key = f"budget-{uuid.uuid4().hex}"
    items = daskgen.submit(counted, runs, 3, num_returns=3, max_retries=1, key=key)
    assert values(items) == [1, 11, 21]
    kill(c, worker_addrs(c)[0], 1)
    assert values(items) == [1, 11, 21]  # run 2 rebuilt them
    assert count(runs) == 2
    kill(c, worker_addrs(c)[0], 1)
    try:
        wait(items, timeout=30)
    except TimeoutError:
        raise AssertionError(
            f"items neither rebuilt nor failed: {[f.status for f in items]}"
        ) from None
    for i, f in enumerate(items):
        assert f.status == "error", (
            f"item {i} is {f.status} after a third run (runs={count(runs)}); "
            "max_retries=1 allows one re-run"
        )
        exc = f.exception()
        assert isinstance(exc, (daskgen.ItemLostError, daskgen.GeneratorKilledError))
        assert isinstance(exc, KilledWorker)
        assert "max_retries=1" in str(exc), str(exc)
    wait_driver_settled(c, f"{key}-generator")
    assert count(runs) == 2


# ---------------------------- 5. nothing lost: a finished call is not re-run


@pytest.mark.slow
def test_finished_empty_dynamic_not_rerun(one_worker, tmp_path):
    c = one_worker
    runs = str(tmp_path / "runs")
    d = daskgen.submit(empty_unless_rerun, runs, num_returns="dynamic")
    assert d.result(timeout=30) == []
    assert count(runs) == 1
    kill(c, worker_addrs(c)[0], 1)
    wait_driver_settled(c, d.key)
    assert count(runs) == 1, "the finished call ran again after its worker died"
    assert d.result(timeout=30) == []
    assert count(runs) == 1


# --------------------------------------------- 6. retries exhausted: messages


@pytest.mark.slow
def test_stream_retries_exhausted_messages(one_worker, tmp_path):
    c = one_worker
    runs = str(tmp_path / "runs")
    ev = f"gate-{uuid.uuid4().hex}"
    gen = daskgen.submit(gated, runs, 5, ev, 2, max_retries=0)
    items = take(gen, 2)
    wait_until(lambda: count(runs, "gate") == 1, "generator blocked after 2 yields")
    kill(c, worker_addrs(c)[0], 1)
    for i, f in enumerate(items):
        exc = error_of(f, f"item {i}")
        assert isinstance(exc, KilledWorker), f"item {i}: {exc!r}"
    with pytest.raises(daskgen.GeneratorKilledError) as info:
        gen.next(timeout=30)
    for exc in (info.value, error_of(gen.completed(), "completed()")):
        assert isinstance(exc, daskgen.GeneratorKilledError), repr(exc)
        assert "max_retries=0" in str(exc), str(exc)
        assert "different workers" not in str(exc), str(exc)
    logs = [msg for _, msg in c.get_scheduler_logs()]
    assert not [m for m in logs if "4 workers died" in m], logs
    assert count(runs) == 1


@pytest.mark.slow
def test_plain_function_killed_message(one_worker, tmp_path):
    c = one_worker
    runs = str(tmp_path / "runs")
    fut = daskgen.submit(
        blocked_plain, runs, f"plain-{uuid.uuid4().hex}", max_retries=0
    )
    wait_until(lambda: count(runs) == 1, "plain task started")
    kill(c, worker_addrs(c)[0], 1)
    exc = error_of(fut, "the killed plain task")
    assert isinstance(exc, KilledWorker), repr(exc)
    assert "max_retries=0" in str(exc), str(exc)
    assert "different workers" not in str(exc), str(exc)
    logs = [msg for _, msg in c.get_scheduler_logs()]
    assert not [m for m in logs if "4 workers died" in m], logs
    assert count(runs) == 1


# ---------------------------- 7. is_finished while an error is still to come


@gen_cluster(client=True)
async def test_is_finished_error_item_pending(c, s, a, b):
    await daskgen.install(c)
    gen = daskgen.submit(yield_then_raise)
    await wait(gen.completed())
    await async_poll_for(gen.next_ready, timeout=10)
    first = await gen.__anext__()
    assert await first == 1
    assert not gen.is_finished(), "the error item is still to come"
    err = await gen.__anext__()
    assert isinstance(await err.exception(), ValueError)
    assert gen.is_finished()
    with pytest.raises(StopAsyncIteration):
        await gen.__anext__()
    del first, err


@pytest.mark.slow
def test_is_finished_killed_stream(one_worker, tmp_path):
    c = one_worker
    runs = str(tmp_path / "runs")
    gen = daskgen.submit(gated, runs, 5, f"gate-{uuid.uuid4().hex}", 2, max_retries=0)
    items = take(gen, 2)
    wait_until(lambda: count(runs, "gate") == 1, "generator blocked after 2 yields")
    kill(c, worker_addrs(c)[0], 1)
    error_of(gen.completed(), "completed()")
    wait_until(gen.next_ready, "the stream learned that its call ended")
    assert not gen.is_finished(), "next() has not raised GeneratorKilledError yet"
    with pytest.raises(daskgen.GeneratorKilledError):
        gen.next(timeout=30)
    assert gen.is_finished()
    del items


# --------------------------------- 8. next(timeout=) at the end: StopIteration


def test_next_timeout_end_raises_stop_iteration(one_worker):
    gen = daskgen.submit(counted, os.devnull, 3)
    assert values(take(gen, 3)) == [1, 11, 21]
    with pytest.raises(StopIteration):
        gen.next(timeout=5)


# ------------------------------- 9. an async generator runs in one asyncio task


@pytest.mark.parametrize("num_returns", [None, 4])
@gen_cluster(client=True)
async def test_async_generator_one_task(c, s, a, b, num_returns):
    await daskgen.install(c)
    if num_returns is None:
        gen = daskgen.submit(one_task_agen)
        items = [f async for f in gen]
    else:
        items = daskgen.submit(one_task_agen, num_returns=num_returns)
    got = await c.gather(items)
    assert len(got) == 4
    ids = {i for i, _, _ in got}
    assert [same for _, same, _ in got] == [True] * 4, got
    assert len(ids) == 1, got
    assert [v for _, _, v in got] == ["set before the first yield"] * 4, got


# -------------------- 10. item lost while its generator runs: rebuilt or fails


@pytest.mark.slow
def test_item_lost_while_generator_runs(tmp_path):
    with nanny_cluster(3) as c:
        runs = str(tmp_path / "runs")
        gate = f"gate-{uuid.uuid4().hex}"
        busy = f"busy-{uuid.uuid4().hex}"
        a, b, _ = worker_addrs(c)
        key = f"lost-{uuid.uuid4().hex}"
        driver = f"{key}-generator"
        gen = daskgen.submit(
            gated,
            runs,
            6,
            gate,
            3,
            workers=[a],
            allow_other_workers=True,
            max_retries=3,
            key=key,
        )
        items = take(gen, 3)
        wait_until(lambda: count(runs, "gate") == 1, "first run blocked at the gate")
        assert processing_on(c, driver) == a
        cons = c.submit(use_all, items[0], items[1], workers=[b])
        assert cons.result(timeout=30) == [0, 10]
        who_has = c.who_has(items[:2])
        assert all(b in who_has[f.key] for f in items[:2]), who_has
        # Keep B's one thread busy so that the re-run goes to another worker.
        blocker = c.submit(wait_event, busy, workers=[b], pure=False)
        bkey = blocker.key
        wait_until(lambda: processing_on(c, bkey) == b, "blocker running on B")
        kill(c, a, 3)
        wait_until(lambda: count(runs, "gate") == 2, "re-run blocked at the gate")
        rerun_on = processing_on(c, driver)
        assert rerun_on not in (a, b, None), (rerun_on, a, b)
        del blocker, cons
        kill(c, b, 3)  # the only copies of items 0 and 1 die with B
        probe = c.submit(identity, items[0], pure=False)
        try:
            v = probe.result(timeout=15)
        except TimeoutError:
            raise AssertionError(
                "item 0 neither rebuilt nor failed within 15 s (it hangs)"
            ) from None
        except KilledWorker as e:
            assert "still held in memory" not in str(e), str(e)
        except Exception as e:
            raise AssertionError(f"item 0 failed with {e!r}") from None
        else:
            assert v == 0
        del probe
        Event(gate).set()
        rest = take(gen, 3)
        assert values(items[2:] + rest) == [20, 30, 40, 50]
        wait_until(gen.next_ready, "the stream's end")
        assert list(gen) == []
        Event(busy).set()


# ---------------- 11. re-run on a worker that already holds items: no data loss


@pytest.mark.slow
def test_rerun_where_items_already_are(tmp_path):
    with nanny_cluster(2) as c:
        runs = str(tmp_path / "runs")
        gate = f"gate-{uuid.uuid4().hex}"
        a, y = worker_addrs(c)
        key = f"holds-{uuid.uuid4().hex}"
        driver = f"{key}-generator"
        items = daskgen.submit(
            gated,
            runs,
            20,
            gate,
            12,
            num_returns=20,
            workers=[a],
            allow_other_workers=True,
            key=key,
        )
        assert values(items[:12]) == [i * 10 for i in range(12)]
        wait_until(lambda: count(runs, "gate") == 1, "first run blocked at the gate")
        assert processing_on(c, driver) == a
        uses = [c.submit(identity, items[i], workers=[y]) for i in range(8)]
        assert values(uses) == [i * 10 for i in range(8)]
        who_has = c.who_has(items[:8])
        assert all(y in who_has[f.key] for f in items[:8]), who_has
        del uses
        kill(c, a, 2)
        wait_until(lambda: count(runs, "gate") == 2, "re-run blocked at the gate")
        assert processing_on(c, driver) == y, "the re-run did not land on Y"
        Event(gate).set()
        assert values(items) == [i * 10 for i in range(20)]


# ------------------------- 12. cancelling a call whose driver never started


NOWHERE = ["tcp://127.0.0.1:1"]


@pytest.mark.parametrize("how", ["gen-cancel", "client-cancel-static", "client-closes"])
def test_cancel_call_not_running(one_worker, how):
    c = one_worker
    key = f"nowhere-{uuid.uuid4().hex}"
    driver = f"{key}-generator"
    other = None
    gen = items = None
    if how == "gen-cancel":
        gen = daskgen.submit(counted, os.devnull, 3, workers=NOWHERE, key=key)
    elif how == "client-cancel-static":
        items = daskgen.submit(
            counted, os.devnull, 3, num_returns=3, workers=NOWHERE, key=key
        )
    else:
        other = Client(c.scheduler.address)
        gen = daskgen.submit(
            counted, os.devnull, 3, workers=NOWHERE, key=key, client=other
        )
    wait_until(
        lambda: task_state(c, driver) == "no-worker",
        lambda: f"driver state {task_state(c, driver)}",
        10,
    )
    assert pseudo_clients(c)  # the call's pseudo-client exists while it is live
    if how == "gen-cancel":
        gen.cancel()
        with pytest.raises(daskgen.GeneratorCancelledError):
            gen.next(timeout=5)
        # The handle may keep its driver's (cancelled) Future; nothing runnable.
        wait_until(
            lambda: not pseudo_clients(c) and task_state(c, driver) not in RUNNABLE,
            lambda: (
                f"driver {task_state(c, driver)}, pseudo-clients {pseudo_clients(c)}"
            ),
            10,
        )
        del gen
        gc.collect()
    elif how == "client-cancel-static":
        c.cancel(items)
        for f in items:
            with pytest.raises(CancelledError):
                f.result(timeout=5)
        del items, f
    else:
        other.close()
        del gen
    wait_until(
        lambda: not call_keys(c, key) and not pseudo_clients(c),
        lambda: f"left: tasks {call_keys(c, key)}, pseudo-clients {pseudo_clients(c)}",
        10,
    )


# -------------------------- 13. an object whose __call__ is an async generator


@gen_cluster(client=True)
async def test_async_generator_callable_object(c, s, a, b):
    await daskgen.install(c)
    gen = daskgen.submit(AsyncGenCallable(), 4)
    items = [f async for f in gen]
    assert await c.gather(items) == [0, 3, 6, 9]
