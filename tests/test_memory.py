"""The seed's point, on a real worker with a real memory limit: a task that
returns many large values is killed by its nanny; as a generator it finishes
with the worker's memory bounded (spilling what the caller holds)."""

from __future__ import annotations

import threading

import numpy as np
import psutil
import pytest
from distributed import Client, KilledWorker, LocalCluster, wait

import daskgen

pytestmark = pytest.mark.slow

ITEM = 32 * 2**20  # 32 MiB
N = 24  # 768 MiB in all, on a 512 MiB worker
LIMIT = "512MiB"


@pytest.fixture
def mem_client():
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            memory_limit=LIMIT,
            processes=True,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _start_sampler(dask_worker):
    """Sample this worker process's RSS every 5 ms in a thread."""
    proc = psutil.Process()
    state = {"peak": proc.memory_info().rss, "stop": threading.Event()}

    def run():
        while not state["stop"].wait(0.005):
            state["peak"] = max(state["peak"], proc.memory_info().rss)

    state["thread"] = threading.Thread(target=run, daemon=True)
    state["thread"].start()
    dask_worker._daskgen_test_sampler = state
    return state["peak"]


def _stop_sampler(dask_worker):
    state = dask_worker._daskgen_test_sampler
    state["stop"].set()
    state["thread"].join()
    del dask_worker._daskgen_test_sampler
    return state["peak"]


def _spilled(dask_worker):
    return dask_worker.data.cumulative_metrics.get(("disk-write", "bytes"), 0)


def measure(client, fn):
    (baseline,) = client.run(_start_sampler).values()
    try:
        fn()
    finally:
        (peak,) = client.run(_stop_sampler).values()
    return baseline, peak


def values(n, nbytes):
    for i in range(n):
        yield np.full(nbytes, i % 127, dtype=np.int8)


def values_list(n, nbytes):
    return [np.full(nbytes, i % 127, dtype=np.int8) for i in range(n)]


def test_streaming_consumer_drops_each_item(mem_client):
    c = mem_client

    def consume():
        gen = daskgen.submit(values, N, ITEM, backpressure=1)
        for i, fut in enumerate(gen):
            assert c.submit(np.max, fut).result() == i % 127
            del fut

    baseline, peak = measure(c, consume)
    assert peak - baseline <= 3 * ITEM * 1.1, (baseline, peak)


def test_static_held_spills(mem_client):
    c = mem_client
    refs = []

    def hold_all():
        refs.extend(daskgen.submit(values, N, ITEM, num_returns=N))
        wait(refs)

    baseline, peak = measure(c, hold_all)
    assert peak < 512 * 2**20, peak
    (spilled,) = c.run(_spilled).values()
    assert spilled >= N * ITEM - 512 * 2**20  # the rest went to disk
    assert c.submit(np.max, refs[-1]).result() == (N - 1) % 127
    refs.clear()


def test_list_returning_is_killed(mem_client):
    c = mem_client
    refs = daskgen.submit(values_list, N, ITEM, num_returns=N, max_retries=0)
    with pytest.raises(KilledWorker):
        refs[0].result(timeout=60)
    del refs
    c.wait_for_workers(1, timeout=30)  # the nanny restarted it
    assert c.submit(sum, [1, 2]).result() == 3  # and it takes new work
