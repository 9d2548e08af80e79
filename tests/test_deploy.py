"""Deployed as users deploy: `dask scheduler --preload daskgen` and two
`dask worker` processes from the command line, and a load test."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import time

import dask
import pytest
from distributed import Client, LocalCluster, wait
from distributed.utils_test import poll_for, popen

import daskgen

pytestmark = pytest.mark.slow


def _dask(*args: str) -> list[str]:
    return [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]]


@pytest.fixture
def cli_cluster(tmp_path):
    """``dask scheduler --preload daskgen`` and two ``dask worker`` processes,
    started and stopped by distributed's own ``popen``."""
    sched_file = str(tmp_path / "scheduler.json")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            popen(
                _dask(
                    "scheduler",
                    "--preload",
                    "daskgen",
                    "--scheduler-file",
                    sched_file,
                    "--port",
                    "0",
                    "--dashboard-address",
                    ":0",
                ),
                env=env,
                terminate_timeout=20,
            )
        )
        poll_for(lambda: os.path.exists(sched_file), 30)
        for _ in range(2):
            stack.enter_context(
                popen(
                    _dask(
                        "worker",
                        "--scheduler-file",
                        sched_file,
                        "--nthreads",
                        "1",
                        "--memory-limit",
                        "300MiB",
                    ),
                    env=env,
                    terminate_timeout=20,
                )
            )
        # A client without daskgen's client preload: what the scheduler's
        # --preload installs is tested, not what this client would.
        with (
            dask.config.set({"distributed.client.preload": []}),
            Client(scheduler_file=sched_file, timeout=30) as client,
        ):
            client.wait_for_workers(2, timeout=30)
            yield client


def count(n, delay=0.0):
    for i in range(n):
        if delay:
            time.sleep(delay)
        yield i


def test_cli_cluster(cli_cluster):
    c = cli_cluster
    # the preload installed the plugin before any client asked for it
    assert c.run_on_scheduler(
        lambda dask_scheduler: "daskgen" in dask_scheduler.plugins
    )
    assert c.gather(daskgen.submit(count, 3, num_returns=3)) == [0, 1, 2]
    assert c.gather(daskgen.submit(count, 4, num_returns="dynamic").result()) == [
        0,
        1,
        2,
        3,
    ]
    gen = daskgen.submit(count, 40, 0.02, max_retries=2)
    got = []
    for fut in gen:
        got.append(fut.result())
        if len(got) == 5:
            addr = c.run_on_scheduler(
                lambda dask_scheduler, k=gen.key: (
                    dask_scheduler.tasks[k].processing_on.address
                )
            )
            os.kill(c.run(os.getpid, workers=[addr])[addr], signal.SIGKILL)
    assert got == list(range(40))
    del gen, fut


def consume_slowly(c, handle, mode):
    if mode == "streaming":
        out = []
        for f in handle:
            out.append(f.result())
            if random.random() < 0.1:
                time.sleep(0.01)
        return out
    if mode == "dynamic":
        return c.gather(handle.result())
    return c.gather(handle)


def _tasks_left(dask_scheduler):
    return [
        (str(ts.key), ts.state, sorted(cs.client_key for cs in ts.who_wants or ()))
        for ts in dask_scheduler.tasks.values()
    ]


def test_load_50_generators(tmp_path):
    """50 concurrent generators of 100 items, mixed modes, 2 one-thread
    workers, some slow consumers: all finish, scheduler state valid."""
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            memory_limit="500MiB",
            processes=True,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as c,
    ):
        modes = ["streaming", "dynamic", "static"] * 17
        handles = []
        for i, mode in enumerate(modes[:50]):
            nr = 100 if mode == "static" else mode
            bp = 5 if mode == "streaming" and i % 2 else None
            handles.append(
                (mode, daskgen.submit(count, 100, num_returns=nr, backpressure=bp))
            )
        start = time.time()
        for mode, h in handles:
            assert consume_slowly(c, h, mode) == list(range(100))
        assert time.time() - start < 120
        del handles, h
        c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.validate_state())
        deadline = time.time() + 20
        while left := c.run_on_scheduler(_tasks_left):
            assert time.time() < deadline, f"{len(left)} tasks left: {left[:10]}"
            time.sleep(0.1)
        wait([])
