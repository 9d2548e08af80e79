"""Generator methods of Dask actors (daskgen.remote on a class, daskgen.actor),
on LocalClusters of nanny workers; Ray's actor-generator tests are the model."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from _helpers import assert_clean, async_assert_clean, nanny_cluster, wait_until
from distributed import Client, Future, KilledWorker, wait
from distributed.utils_test import gen_cluster

import daskgen
from daskgen import dashboard
from daskgen.exceptions import ActorDiedError, GeneratorCancelledError

pytestmark = pytest.mark.slow


class Model:
    """Loads something once, then streams per request."""

    def __init__(self, vocab):
        self.vocab = list(vocab)
        self.calls = 0
        self.ran = []  # (call, index) in the order the actor ran them
        self.gate = threading.Event()

    def generate(self, n, tag="g"):
        self.calls += 1
        for i in range(n):
            self.ran.append((tag, i))
            daskgen.print(f"{tag} token {i}")
            yield self.vocab[i % len(self.vocab)]

    async def agenerate(self, n, delay=0.0):
        self.calls += 1
        for i in range(n):
            if delay:
                await asyncio.sleep(delay)
            yield (i, id(asyncio.get_running_loop()))

    def fail_after(self, n):
        yield from range(n)
        raise KeyError("model broke after its tokens")

    def slow(self, n, delay, tag="slow"):
        for i in range(n):
            time.sleep(delay)
            self.ran.append((tag, i))
            yield i

    def where(self):
        from distributed import get_worker

        return get_worker().address

    def count(self):
        return self.calls

    async def acount(self):
        return self.calls

    def history(self):
        return list(self.ran)

    def pair(self):
        return [1, 2]


RemoteModel = daskgen.remote(Model)


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def nanny_client(request):
    with nanny_cluster(request.param, threads_per_worker=2) as client:
        yield client


@pytest.fixture
def two_workers():
    with nanny_cluster(2, threads_per_worker=2) as client:
        yield client


def test_ray_shaped_calls(nanny_client):
    c = nanny_client
    model = RemoteModel.remote("abc")
    home = model.where.remote().result()
    assert home == model.worker

    # streaming (the default for a generator method)
    gen = model.generate.remote(4)
    assert isinstance(gen, daskgen.FutureGenerator)
    items = list(gen)
    assert all(type(f) is Future for f in items)
    assert [f.result() for f in items] == ["a", "b", "c", "a"]
    # each item is stored on the actor's worker, and is a dependency as any Future
    assert {w for ws in c.who_has(items).values() for w in ws} == {home}
    assert c.submit(lambda *xs: "".join(xs), *items).result() == "abca"

    # static and dynamic
    a, b = model.generate.options(num_returns=2).remote(2)
    assert c.gather([a, b]) == ["a", "b"]
    ref = model.generate.options(num_returns="dynamic").remote(3)
    assert c.gather(ref.result()) == ["a", "b", "c"]

    # plain methods, sync and async, return Futures; one instance throughout
    calls = model.count.remote()
    assert isinstance(calls, Future) and calls.result() == 3
    assert model.acount.remote().result() == 3
    assert c.gather(model.pair.options(num_returns=2).remote()) == [1, 2]
    # Dask's own Actor proxy sees the same object
    assert model.actor.count().result() == 3

    # an async generator method runs on the worker's event loop, step by step
    values = [f.result() for f in model.agenerate.remote(3)]
    assert [i for i, _ in values] == [0, 1, 2]
    assert len({loop for _, loop in values}) == 1
    del gen, items, a, b, ref, calls, values
    with pytest.raises(TypeError, match=r"Model\.remote\(\.\.\.\)"):
        RemoteModel("abc")
    with pytest.raises(TypeError, match=r"\.generate\.remote\(\.\.\.\)"):
        model.generate(3)
    with pytest.raises(AttributeError, match="has no method 'nope'"):
        model.nope.remote()
    with pytest.raises(TypeError, match="unknown option"):
        model.generate.options(workers=["x"])
    key = model.key
    assert_clean(c, allow_keys=[key])  # the actor, held by the handle
    del model
    assert_clean(c)


def test_dask_shaped_entry_and_errors_in_order(nanny_client):
    c = nanny_client
    fut = c.submit(Model, "xyz", actor=True)
    model = daskgen.actor(fut)
    assert daskgen.actor(fut.result()).key == model.key  # from the Actor proxy too
    gen = model.fail_after.remote(2)
    assert next(gen).result() == 0
    assert next(gen).result() == 1
    # .exception(), not .result(): a raised error's traceback would keep the
    # Future alive for the leak check (distributed's behavior)
    err = next(gen).exception()
    assert isinstance(err, KeyError) and "model broke after its tokens" in str(err)
    with pytest.raises(StopIteration):
        next(gen)
    # static: the error is the items' error past the last value yielded
    refs = model.fail_after.options(num_returns=3).remote(2)
    assert c.gather(refs[:2]) == [0, 1]
    assert isinstance(refs[2].exception(), KeyError)
    with pytest.raises(TypeError, match="cannot be sent to a task"):
        c.submit(lambda m: m, model)
    del gen, err, refs, model
    fut.release()
    del fut
    assert_clean(c)


def test_concurrency_backpressure_and_interleaving(nanny_client):
    c = nanny_client
    model = RemoteModel.remote("ab")
    # A stream paused by backpressure holds nothing: plain calls and other
    # streams of the same actor run meanwhile (no deadlock).
    paused = model.generate.options(backpressure=1).remote(50, tag="p")
    first = next(paused)
    wait_until(
        lambda: ("p", 1) in model.history.remote().result(),
        "the paused stream never yielded its second item",
    )
    time.sleep(0.3)
    assert model.count.remote().result() == 1  # runs while the stream is paused
    assert model.history.remote().result() == [("p", 0), ("p", 1)]
    # Two streams interleave at their yields: each step runs in the actor's
    # one thread, and neither holds it between steps.
    one = model.slow.options(num_returns=4).remote(4, 0.05, tag="one")
    two = model.slow.options(num_returns=4).remote(4, 0.05, tag="two")
    wait([*one, *two], timeout=30)
    ran = model.history.remote().result()[2:]
    assert sorted(ran) == sorted([(t, i) for t in ("one", "two") for i in range(4)])
    assert ran.index(("two", 0)) < ran.index(("one", 3)), ran
    assert ran.index(("one", 0)) < ran.index(("two", 3)), ran
    # the paused stream resumes when the consumer takes
    assert [f.result() for f in [first, *paused]] == ["a", "b"] * 25
    del paused, first, one, two
    key = model.key
    assert_clean(c, allow_keys=[key])


def _pending(dask_scheduler, actor):
    ext = dask_scheduler.extensions["daskgen"]
    return sorted(
        (g.submitted, g.produced - g.taken)
        for g in ext.generators.values()
        if g.spec.actor == actor
    )


def test_actor_wide_limit(two_workers):
    """max_pending: an actor's streams together hold at most that many items
    yielded and not taken, shared fairly; taking from one frees room for all."""
    c = two_workers
    model = RemoteModel.options(max_pending=4).remote("ab")
    gens = [model.generate.remote(10, tag=f"s{i}") for i in range(3)]

    def pending():
        return [n for _, n in c.run_on_scheduler(_pending, actor=model.key)]

    wait_until(lambda: sum(pending()) == 4, lambda: f"pending {pending()}")
    time.sleep(0.5)
    assert sum(pending()) == 4, pending()  # no stream yields past the budget
    # the actor answers meanwhile; the streams without room have not started
    assert model.count.remote().result() == 1
    # What a consumer takes frees room, and it goes to the streams that hold
    # least: the first stream's taking lets the two others start.
    held = pending()
    first = [next(gens[0]) for _ in range(2)]
    wait_until(
        lambda: sum(pending()) == 4 and min(pending()) >= 1,
        lambda: f"pending {pending()}, was {held}",
    )
    # everything arrives once the consumers take
    out = [[f.result() for f in first] + [f.result() for f in gens[0]]]
    out += [[f.result() for f in g] for g in gens[1:]]
    assert out == [["a", "b"] * 5] * 3
    assert sorted(model.history.remote().result()) == sorted(
        (f"s{i}", k) for i in range(3) for k in range(10)
    )
    with pytest.raises(ValueError, match="max_pending=0 is not valid"):
        RemoteModel.options(max_pending=0).remote("ab")
    del gens, first, out
    assert_clean(c, allow_keys=[model.key])


def test_cancel_stops_the_method_not_the_actor(nanny_client):
    c = nanny_client
    model = RemoteModel.remote("ab")
    gen = model.slow.remote(1000, 0.01)
    assert next(gen).result() == 0
    gen.cancel()
    with pytest.raises(GeneratorCancelledError):
        next(gen)
    wait_until(
        lambda: c.run_on_scheduler(_states) == ["cancelled"],
        lambda: f"the call is {c.run_on_scheduler(_states)}",
    )
    n = len(model.history.remote().result())
    time.sleep(0.3)
    assert len(model.history.remote().result()) == n < 1000  # it stopped
    assert model.count.remote().result() == 0  # and the actor still answers
    del gen
    assert_clean(c, allow_keys=[model.key])


def test_dropped_stream_runs_to_its_end(two_workers):
    """Ray semantics, as for functions: the caller dropping its handle does not
    stop the method; its items are freed as they come."""
    c = two_workers
    model = RemoteModel.remote("ab")
    gen = model.slow.remote(20, 0.01)
    next(gen)
    del gen
    wait_until(
        lambda: len(model.history.remote().result()) == 20,
        lambda: f"ran {model.history.remote().result()}",
    )
    assert_clean(c, allow_keys=[model.key])


def test_print_from_an_actor_reaches_the_caller(two_workers, capsys):
    c = two_workers
    with Client(c.scheduler.address) as caller:  # started under capsys
        fut = caller.submit(Model, "ab", actor=True)
        model = daskgen.actor(fut)
        gen = model.generate.remote(2, tag="hello")
        assert [f.result() for f in gen] == ["a", "b"]
        out: list[str] = []
        wait_until(
            lambda: (
                out.append(capsys.readouterr().out) or "hello token 1" in "".join(out)
            ),
            lambda: f"printed: {''.join(out)!r}",
        )
        lines = [line for line in "".join(out).splitlines() if "token" in line]
        assert all(
            re.fullmatch(r"\(Model\.generate pid=\d+\) hello token \d", x)
            for x in lines
        )
        del model, fut, gen


def _states(dask_scheduler):
    ext = dask_scheduler.extensions["daskgen"]
    return [g.state.value for g in ext.generators.values()]


def _first_error(gen):
    """The first error among a stream's items (``.exception()``: nothing raised
    here keeps a Future alive), or the stream's own."""
    try:
        for f in gen:
            wait(f, timeout=60)
            if f.status == "error":
                return f.exception()
    except Exception as e:  # the stream itself ends with the driver's error
        return e
    return None


def _kill(client, addr):
    pid = client.run(os.getpid, workers=[addr])[addr]
    os.kill(pid, signal.SIGKILL)


def test_actor_worker_dies(nanny_client):
    """Dask does not restart actors: every call of one whose worker died
    raises ActorDiedError naming the actor; nothing hangs, nothing is left."""
    c = nanny_client
    model = RemoteModel.remote("ab")
    gen = model.slow.remote(10_000, 0.005)
    assert next(gen).result() == 0
    _kill(c, model.worker)
    err = _first_error(gen)
    assert isinstance(err, ActorDiedError) and isinstance(err, KilledWorker), err
    assert model.key in str(err) and "Dask does not restart actors" in str(err)
    # A new call of the dead actor: at once, before anything is submitted
    with pytest.raises(ActorDiedError, match="create a new actor|Create a new actor"):
        model.count.remote()
    # A new actor works (on the restarted worker, or the other one). Waiting
    # for the worker first: with no worker, distributed queues the actor's
    # task, and its validation asserts that an actor is never queued.
    c.wait_for_workers(len(c.cluster.workers), timeout=60)
    again = RemoteModel.remote("cd")
    assert [f.result() for f in again.generate.remote(2)] == ["c", "d"]
    del gen, model, again, err
    assert_clean(c)


def test_actor_died_before_a_call_reached_the_scheduler(two_workers):
    c = two_workers
    model = RemoteModel.remote("ab")
    addr, actor_future = model.worker, model.future
    _kill(c, addr)
    wait_until(lambda f=actor_future: f.status == "error", "the actor never erred")
    # bypass the handle's own check: the scheduler fails the call itself
    from daskgen.worker import ActorMethod

    gen = daskgen.submit(
        ActorMethod(model.key, "generate", "Model", True),
        3,
        client=c,
        workers=[addr],
        max_retries=0,
    )
    err = _first_error(gen)
    assert isinstance(err, ActorDiedError) and model.key in str(err), err
    del gen, model, actor_future, err
    assert_clean(c)


_CALLER = """
import os, sys, time, daskgen
from distributed import Client

class Slow:
    def run(self, n):
        for i in range(n):
            time.sleep(0.005)
            yield i

c = Client(sys.argv[1])
actor = daskgen.remote(Slow).remote()
gen = actor.run.remote(100_000)
print(next(gen).result(), flush=True)
os._exit(0)  # dies: no goodbye to the scheduler
"""


def test_caller_process_dies_mid_stream(two_workers):
    """The scheduler stops the dead caller's call; its actor, which only that
    caller held, goes too; nothing is left."""
    c = two_workers
    proc = subprocess.run(
        [sys.executable, "-c", _CALLER, c.scheduler.address],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.strip() == "0", proc.stderr[-2000:]
    wait_until(
        lambda: c.run_on_scheduler(_states) == [],
        lambda: f"the dead caller's call is {c.run_on_scheduler(_states)}",
    )
    assert_clean(c)


@gen_cluster(client=True, nthreads=[("", 2)])
async def test_async_client(c, s, a):
    model = await daskgen.actor(c.submit(Model, "ab", actor=True))
    out = [await f async for f in model.agenerate.remote(3, 0.01)]
    assert [i for i, _ in out] == [0, 1, 2]
    assert [await f async for f in model.generate.remote(2)] == ["a", "b"]
    assert await model.count.remote() == 2
    row = s.extensions["daskgen"].history[-1]
    assert row["name"] == "Model.generate" and row["actor"] == model.key
    # the dashboard's pages show it as any call, marked as an actor's
    assert dashboard.display(row)["mode"] == "streaming, actor"
    assert dashboard.display(row)["name"] == "Model.generate"
    key = model.key
    del model, out
    await async_assert_clean(c, s, a, allow_keys=[key])
