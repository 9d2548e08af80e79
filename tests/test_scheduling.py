"""Dask moves tasks on its own: daskgen must follow a driver it moves.

Work stealing moves a task that is assigned to a busy worker but has not
started to an idle one, without a transition that a scheduler plugin sees.
A busy machine makes this common: it was the cause of streams with
backpressure stalling for good after worker kills (the limit went to the
worker the driver had first been assigned to).
"""

from __future__ import annotations

import pytest
from _helpers import async_assert_clean  # tests/ is on sys.path
from distributed import Event, Worker
from distributed.utils_test import async_poll_for, gen_cluster

import daskgen


def count(n):
    yield from range(n)


def block(name):
    Event(name).wait()


@pytest.mark.parametrize("backpressure", [1, 2])
@gen_cluster(
    client=True,
    nthreads=[("", 1)],
    config={"distributed.scheduler.worker-saturation": float("inf")},
)
async def test_stolen_driver_gets_its_backpressure_limit(c, s, a, backpressure):
    await daskgen.install(c)
    ev = Event("steal-blocker")
    blocker = c.submit(block, "steal-blocker", key="blocker")
    gen = daskgen.submit(count, 6, backpressure=backpressure)
    key = gen.key
    await async_poll_for(
        lambda: key in s.tasks and s.tasks[key].state == "processing", 10
    )
    dts = s.tasks[key]
    assert dts.processing_on.address == a.address  # waits behind the blocker
    async with Worker(s.address, nthreads=1) as b:
        # Move the driver to b the way the work-stealing extension does.
        steal = s.extensions["stealing"]
        steal.move_task_request(dts, s.workers[a.address], s.workers[b.address])
        await async_poll_for(
            lambda: (
                dts.processing_on is not None and dts.processing_on.address == b.address
            ),
            10,
        )
        await ev.set()
        values = [await (await gen.next(timeout=10)) for _ in range(6)]
        assert values == list(range(6))
        with pytest.raises(StopAsyncIteration):
            await gen.next(timeout=10)
        info = (await c.scheduler.daskgen_info(history=True))[0]
        assert info["worker"] == b.address
        assert info["attempts"] == 1  # moved before it started: still run 1
        await blocker
        del gen, blocker
        await async_assert_clean(c, s, a, b, allow_keys=())
