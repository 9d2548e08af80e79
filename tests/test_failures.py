"""Generator tasks against what real clusters do: worker deaths, retries,
dropped handles, closing clients. Real LocalClusters with nanny processes."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time

import pytest
from _helpers import assert_clean, kill_worker, nanny_cluster
from distributed import Client, Event, KilledWorker, wait
from distributed.utils_test import poll_for

import daskgen
from daskgen.exceptions import GeneratorCancelledError, ReplayInconsistentError

pytestmark = pytest.mark.slow


@pytest.fixture
def nanny_client():
    with nanny_cluster(2) as client:
        yield client
        assert_clean(client)


def driver_worker(client, key):
    """Address of the worker running the driver task ``key``."""
    deadline = time.time() + 10
    while time.time() < deadline:
        addr = client.run_on_scheduler(
            lambda dask_scheduler, k=key: (
                dask_scheduler.tasks[k].processing_on.address
                if k in dask_scheduler.tasks and dask_scheduler.tasks[k].processing_on
                else None
            )
        )
        if addr:
            return addr
        time.sleep(0.05)
    raise AssertionError(f"driver {key} never started")


def slow_count(n, delay):
    for i in range(n):
        time.sleep(delay)
        yield i * 2


def test_worker_killed_mid_stream_recomputes(nanny_client):
    c = nanny_client
    gen = daskgen.submit(slow_count, 30, 0.03, max_retries=2)
    got = []
    killed = False
    held = []
    for fut in gen:
        got.append(fut.result())
        held.append(fut)  # keep them: items lost with the worker get recomputed
        if len(got) == 10 and not killed:
            kill_worker(c, driver_worker(c, gen.key))
            killed = True
    assert got == [i * 2 for i in range(30)]
    assert c.gather(held) == got  # lost items were recomputed, same values
    assert gen.completed().result() is None
    del gen, held, fut


def test_worker_killed_no_retries(nanny_client):
    c = nanny_client
    ev = Event("hold-no-retries")
    refs = daskgen.submit(
        gated_static, 6, "hold-no-retries", 3, num_returns=6, max_retries=0
    )
    wait(refs[:3])
    addr = driver_worker(c, _driver_key(refs[0]))
    other = next(w for w in c.scheduler_info()["workers"] if w != addr)
    c.replicate(refs[:1], workers=[other])  # item 0 is also held elsewhere
    kill_worker(c, addr)
    poll_for(lambda refs=refs: all(r.status == "error" for r in refs[1:]), 30)
    for r in refs[1:]:
        # .exception(), not .result(): a raised exception's traceback would
        # keep the Future alive for the leak check (distributed does this too)
        assert isinstance(r.exception(timeout=30), KilledWorker)
    for r in refs[1:3]:  # produced, then lost with the worker
        exc = r.exception()
        assert isinstance(exc, daskgen.ItemLostError)
        assert "cannot run again" in str(exc) and "max_retries=0" in str(exc)
    for r in refs[3:]:  # never produced
        exc = r.exception()
        assert isinstance(exc, daskgen.GeneratorKilledError)
        assert "died 1 time, and max_retries=0 allows 0 re-runs" in str(exc)
    assert refs[0].result() == 0  # still held by the surviving worker
    ev.set()
    del refs, r, exc


def _driver_key(item):
    prefix = item.key[0]
    name, token = prefix.rsplit("-", 1)
    return f"{name}-generator-{token}"


def gated_static(n, event_name, k):
    ev = Event(event_name)
    for i in range(n):
        if i == k:
            ev.wait()
        yield i


def test_stream_killed_no_retries_completed_raises(nanny_client):
    c = nanny_client
    gen = daskgen.submit(gated_static, 5, "hold-stream", 2, max_retries=0)
    first = next(gen)
    assert first.result() == 0
    kill_worker(c, driver_worker(c, gen.key))
    assert isinstance(gen.completed().exception(timeout=30), KilledWorker)
    with pytest.raises(KilledWorker):
        for _ in gen:
            pass
    Event("hold-stream").set()
    del gen, first


def varying_length(marker):
    """Yields 5 items on its first run (then hangs), 2 on a re-run."""
    if os.path.exists(marker):
        yield from range(2)
        return
    open(marker, "w").close()
    yield from range(5)
    time.sleep(60)


def test_replay_inconsistent(nanny_client, tmp_path):
    c = nanny_client
    gen = daskgen.submit(varying_length, str(tmp_path / "marker"), max_retries=1)
    firsts = [next(gen) for _ in range(5)]
    kill_worker(c, driver_worker(c, gen.key))
    with pytest.raises(ReplayInconsistentError, match="yielded 2 items"):
        next(gen)
    del gen, firsts


def flaky(marker, exc_name):
    yield 1
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise {"ValueError": ValueError, "KeyError": KeyError}[exc_name]("flaky")
    yield 2


def test_retry_exceptions(nanny_client, tmp_path):
    c = nanny_client
    refs = daskgen.submit(
        flaky, str(tmp_path / "a"), "ValueError", num_returns=2, retry_exceptions=True
    )
    assert c.gather(refs) == [1, 2]
    refs = daskgen.submit(
        flaky,
        str(tmp_path / "b"),
        "KeyError",
        num_returns=2,
        retry_exceptions=[ValueError],
    )
    assert refs[0].result() == 1
    assert isinstance(refs[1].exception(), KeyError)
    refs = daskgen.submit(flaky, str(tmp_path / "c"), "ValueError", num_returns=2)
    assert isinstance(refs[1].exception(), ValueError)  # not retried by default
    del refs


def test_caller_client_closes_mid_stream(nanny_client):
    c = nanny_client
    other = Client(c.scheduler.address)
    gen = daskgen.submit(slow_count, 1000, 0.01, client=other)
    next(gen)
    other.close()
    poll_for(
        lambda: (
            not c.run_on_scheduler(
                lambda dask_scheduler: dask_scheduler.extensions["daskgen"].generators
            )
        ),
        10,
    )
    history = c.run_on_scheduler(
        lambda dask_scheduler: list(dask_scheduler.extensions["daskgen"].history)
    )
    assert history[-1]["state"] == "cancelled"
    assert history[-1]["yielded"] < 1000
    del gen


CALLER = """
import os, sys, time
import daskgen
from distributed import Client

def count(n):
    for i in range(n):
        time.sleep(0.01)
        yield i

client = Client(sys.argv[1])
gen = daskgen.submit(count, 1000)
next(gen)
print("started", flush=True)
os._exit(1)
"""


def test_caller_process_dies(nanny_client):
    c = nanny_client
    proc = subprocess.run(
        [sys.executable, "-c", CALLER, c.scheduler.address],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "started" in proc.stdout, proc.stderr
    assert_clean(c, timeout=20)


def test_drop_handles_before_production(nanny_client):
    """The seed's `[0]` case: only the first item is kept."""
    c = nanny_client
    first = daskgen.submit(slow_count, 8, 0.01, num_returns=8)[0]
    assert first.result() == 0
    gen = daskgen.submit(slow_count, 8, 0.01)
    del gen
    refs = daskgen.submit(slow_count, 8, 0.01, num_returns=8)
    keep = refs[3]
    del refs
    assert keep.result() == 6

    def info():
        return c.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.extensions["daskgen"].get_info()
        )

    poll_for(lambda: [i["state"] for i in info()] == ["finished"] * 3, 30)
    assert [i["yielded"] for i in info()] == [8, 8, 8]  # all ran to their end
    del first, keep


def test_cancel_while_paused(nanny_client):
    gen = daskgen.submit(slow_count, 100, 0.0, backpressure=2)
    next(gen)
    time.sleep(0.3)
    gen.cancel()
    with pytest.raises(GeneratorCancelledError):
        next(gen)
    assert isinstance(gen.completed().exception(timeout=10), GeneratorCancelledError)
    del gen


def test_chaos(nanny_client):
    """A 200-item stream while workers are killed (3 kills)."""
    c = nanny_client
    gen = daskgen.submit(slow_count, 200, 0.02, max_retries=5)
    stop = threading.Event()
    kills = []

    def chaos():
        rng = random.Random(42)
        while len(kills) < 3 and not stop.wait(1.2):
            workers = list(c.scheduler_info()["workers"])
            if len(workers) < 2:
                continue
            addr = rng.choice(workers)
            try:
                kill_worker(c, addr)
                kills.append(addr)
            except Exception:
                pass

    t = threading.Thread(target=chaos)
    t.start()
    try:
        got = [f.result() for f in gen]
    finally:
        stop.set()
        t.join()
    assert got == [i * 2 for i in range(200)]
    assert len(kills) >= 1
    del gen


def hang_after_one():
    yield 1
    time.sleep(60)
    yield 2


def test_max_retries_counts_deaths(nanny_client):
    """max_retries=1: the first death re-runs the generator, the second fails
    it, whatever the cluster's allowed-failures (3) says."""
    c = nanny_client
    refs = daskgen.submit(hang_after_one, num_returns=2, max_retries=1)
    assert refs[0].result(timeout=30) == 1
    key = _driver_key(refs[0])
    kill_worker(c, driver_worker(c, key))
    poll_for(
        lambda: (
            c.run_on_scheduler(
                lambda dask_scheduler, k=key: (
                    dask_scheduler.extensions["daskgen"].by_driver[k].attempts
                )
            )
            == 2
        ),
        30,
    )
    assert refs[0].result(timeout=30) == 1  # recomputed by the re-run
    kill_worker(c, driver_worker(c, key))
    poll_for(lambda refs=refs: refs[1].status == "error", 30)
    exc = refs[1].exception()
    assert isinstance(exc, daskgen.GeneratorKilledError)
    assert isinstance(exc, KilledWorker)
    assert "died 2 times, and max_retries=1 allows 1 re-run." in str(exc)
    del refs, exc


def die_in_plain():
    time.sleep(60)


def test_max_retries_plain_function(nanny_client):
    c = nanny_client
    fut = daskgen.submit(die_in_plain, max_retries=0)
    addr = driver_worker(c, fut.key)
    kill_worker(c, addr)
    poll_for(lambda fut=fut: fut.status == "error", 30)
    # Dask's own KilledWorker: a plain task has no items whose error daskgen
    # could word (its message counts the global allowed-failures)
    assert isinstance(fut.exception(), KilledWorker)
    del fut
