"""What the tests share: generator functions, "nothing left behind", worker kills.

The checks poll with distributed's own ``poll_for`` / ``async_poll_for`` and
say what is left when they fail. (tests/ is on sys.path, so worker processes
import these functions by reference, as they do the test modules'.)
"""

from __future__ import annotations

import gc
import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from distributed import Client, Event, LocalCluster
from distributed.utils_test import async_poll_for, poll_for

__all__ = [
    "assert_clean",
    "assert_raises",
    "async_assert_clean",
    "boom",
    "gated",
    "kill_worker",
    "nanny_cluster",
    "produce",
    "wait_until",
]


# ------------------------------------------------------------------- clusters


@contextmanager
def nanny_cluster(n_workers: int = 1, threads_per_worker: int = 1) -> Iterator[Client]:
    """A LocalCluster of nanny worker processes (SIGKILL-able, restarted by
    their nanny) with a 400 MiB memory limit each, and its Client."""
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            memory_limit="400MiB",
            processes=True,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
        gc.collect()


# ------------------------------------------------------------------ generators


def produce(n, delay=0.0):
    """Yield 0, 10, 20, ... (``delay`` seconds before each)."""
    for i in range(n):
        if delay:
            time.sleep(delay)
        yield i * 10


def boom(n):
    """Yield 0 .. n-1, then raise."""
    yield from range(n)
    raise ZeroDivisionError("boom after yields")


def gated(n, event_name, k, delay=0.0):
    """Yield ``k`` items, wait for ``Event(event_name)``, then yield the rest."""
    ev = Event(event_name)
    for i in range(n):
        if i == k:
            ev.wait()
        if delay:
            time.sleep(delay)
        yield i


# ---------------------------------------------------------- nothing left behind


def _scheduler_state(dask_scheduler: Any, client_id: str) -> dict[str, Any]:
    ext = dask_scheduler.extensions.get("daskgen")
    return {
        "tasks": sorted(map(str, dask_scheduler.tasks)),
        "generators": sorted(ext.generators) if ext is not None else [],
        # daskgen's per-call pseudo-clients, or any other client left (but a
        # worker's own client, which get_client() in a task starts)
        "clients": sorted(
            c
            for c in dask_scheduler.clients
            if c not in ("fire-and-forget", client_id)
            and not c.startswith("Client-worker-")
        ),
    }


def _worker_state(dask_worker: Any) -> dict[str, Any]:
    ext = dask_worker.extensions.get("daskgen")
    return {
        "data": sorted(map(str, dask_worker.data)),
        "drivers": sorted(ext.drivers) if ext is not None else [],
        "actors": sorted(map(str, dask_worker.state.actors)),
    }


def _left(s: dict[str, Any], ws: dict[str, dict[str, Any]], allow: set[str]) -> dict:
    left: dict[str, Any] = {}
    tasks = [k for k in s["tasks"] if k not in allow]
    for name, value in (("tasks", tasks), ("generators", s["generators"])):
        if value:
            left[name] = value
    if s["clients"]:
        left["clients"] = s["clients"]
    for addr, w in ws.items():
        data = [k for k in w["data"] if k not in allow]
        actors = [k for k in w["actors"] if k not in allow]
        if data or w["drivers"] or actors:
            left[addr] = {"data": data, "drivers": w["drivers"], "actors": actors}
    return left


def assert_clean(client: Any, timeout: float = 30, allow_keys: Any = ()) -> None:
    """No task, generator call, pseudo-client, stored value or driver is left
    on the client's cluster (but the keys in ``allow_keys``)."""
    gc.collect()  # exceptions' tracebacks hold Futures in reference cycles
    allow = {str(k) for k in allow_keys}
    left: dict[str, Any] = {}

    def clean() -> bool:
        s = client.run_on_scheduler(_scheduler_state, client_id=client.id)
        ws = client.run(_worker_state)
        left.clear()
        left.update(_left(s, ws, allow))
        return not left

    poll_for(clean, timeout, fail_func=lambda: print("left behind:", left))


async def async_assert_clean(
    c: Any, s: Any, *workers: Any, timeout: float = 30, allow_keys: Any = ()
) -> None:
    """:func:`assert_clean` for in-process clusters (``gen_cluster``)."""
    gc.collect()
    allow = {str(k) for k in allow_keys}
    left: dict[str, Any] = {}

    def clean() -> bool:
        ws = {w.address: _worker_state(w) for w in workers}
        left.clear()
        left.update(_left(_scheduler_state(s, c.id), ws, allow))
        return not left

    await async_poll_for(clean, timeout, fail_func=lambda: print("left behind:", left))


# --------------------------------------------------------------------- polling


def wait_until(predicate: Any, what: Any, timeout: float = 30) -> Any:
    """distributed's ``poll_for``, saying ``what`` (a str, or a callable for
    state read at the time) if ``predicate`` stays false; returns its value."""
    result: list[Any] = [None]

    def check() -> bool:
        result[0] = predicate()
        return bool(result[0])

    poll_for(
        check,
        timeout,
        fail_func=lambda: print("not reached:", what() if callable(what) else what),
    )
    return result[0]


# ---------------------------------------------------------------------- errors


async def assert_raises(fut: Any, typ: type[BaseException], match: str) -> None:
    """Check a Future's error without raising it: a raised exception's
    traceback keeps the Future alive (distributed's behavior too)."""
    exc = await fut.exception()
    assert isinstance(exc, typ), exc
    assert re.search(match, str(exc)), str(exc)


def kill_worker(client: Any, addr: str, sig: int = signal.SIGKILL) -> None:
    """Kill the worker process at ``addr``; its nanny starts a new one."""
    pid = client.run(os.getpid, workers=[addr])[addr]
    os.kill(pid, sig)
