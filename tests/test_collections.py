"""Collections from items, and Ray-shaped get and wait."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from distributed import Event
from distributed.utils_test import gen_cluster

import daskgen
from daskgen.exceptions import InvalidStateError


def blocks(n, rows=10, cols=3):
    for i in range(n):
        yield np.full((rows, cols), i, dtype=np.int64)


def scalars(n):
    yield from range(n)


def test_as_array(client):
    refs = daskgen.submit(blocks, 4, num_returns=4)
    x = daskgen.as_array(refs)
    assert x.shape == (40, 3) and x.dtype == np.int64
    assert x.numblocks == (4, 1)
    expected = np.concatenate([np.full((10, 3), i) for i in range(4)])
    np.testing.assert_array_equal(x.compute(), expected)
    assert x.sum().compute() == expected.sum()
    y = daskgen.as_array(refs, axis=1)
    assert y.shape == (10, 12)
    z = daskgen.as_array(refs, shapes=[(10, 3)] * 4, dtype=np.int64)
    assert z.sum().compute() == expected.sum()
    # The array refers to the items themselves (no copy): it keeps them alive.
    # (Where Dask runs its tasks, and so whether it copies a chunk to another
    # worker, is Dask's choice: not asserted.)
    keys = [r.key for r in refs]
    del refs, y, z
    assert all(client.refcount[k] > 0 for k in keys), dict(client.refcount)
    np.testing.assert_array_equal(x.compute(), expected)


def test_as_array_from_stream_and_dynamic(client):
    gen = daskgen.submit(blocks, 3)
    gen.completed().result()
    assert daskgen.as_array(gen).shape == (30, 3)
    dyn = daskgen.submit(blocks, 2, num_returns="dynamic")
    assert daskgen.as_array(dyn).sum().compute() == 30


def test_as_array_bad_input(client):
    def mixed():
        yield np.zeros((2, 2), dtype=np.int8)
        yield np.zeros((2, 2), dtype=np.float32)

    with pytest.raises(ValueError, match="different dtypes"):
        daskgen.as_array(daskgen.submit(mixed, num_returns=2))

    def shapes():
        yield np.zeros((2, 2))
        yield np.zeros((2, 3))

    with pytest.raises(ValueError, match="differ outside axis 0"):
        daskgen.as_array(daskgen.submit(shapes, num_returns=2))
    assert daskgen.as_array(daskgen.submit(shapes, num_returns=2), axis=1).shape == (
        2,
        5,
    )
    with pytest.raises(TypeError, match="needs numpy arrays; item 0 is a int"):
        daskgen.as_array(daskgen.submit(scalars, 2, num_returns=2))
    with pytest.raises(TypeError, match="non-empty list of item Futures"):
        daskgen.as_array([])
    with pytest.raises(TypeError, match="takes item Futures"):
        daskgen.as_array([np.zeros(2)])
    ev = Event("never")
    gen = daskgen.submit(gated_blocks, "never")
    with pytest.raises(InvalidStateError, match="has not ended"):
        daskgen.as_array(gen)
    gen.cancel()
    ev.set()


def gated_blocks(name):
    yield np.zeros(2)
    Event(name).wait()
    yield np.zeros(2)


def test_as_bag(client):
    b = daskgen.as_bag(daskgen.submit(scalars, 5, num_returns=5))
    assert b.npartitions == 5
    assert sorted(b.compute()) == [0, 1, 2, 3, 4]
    assert b.map(lambda x: x * 2).sum().compute() == 20

    def parts():
        yield [1, 2]
        yield [3]

    p = daskgen.as_bag(daskgen.submit(parts, num_returns=2), partitions=True)
    assert p.npartitions == 2 and p.sum().compute() == 6


def test_as_dataframe(client):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("dask.dataframe")

    def frames(n):
        for i in range(n):
            yield pd.DataFrame({"a": range(i * 3, i * 3 + 3), "b": [float(i)] * 3})

    ddf = daskgen.as_dataframe(daskgen.submit(frames, 3, num_returns=3))
    assert list(ddf.columns) == ["a", "b"]
    assert ddf.a.sum().compute() == sum(range(9))


def test_get(client):
    refs = daskgen.submit(scalars, 3, num_returns=3)
    assert daskgen.get(refs) == [0, 1, 2]
    assert daskgen.get(refs[1]) == 1
    items = daskgen.get(daskgen.submit(scalars, 2, num_returns="dynamic"))
    assert daskgen.get(items) == [0, 1]
    with pytest.raises(TypeError, match="daskgen.get takes"):
        daskgen.get(42)


def slow_then_fast(name):
    yield 0
    Event(name).wait()
    yield 1


def test_wait(client):
    refs = daskgen.submit(slow_then_fast, "w1", num_returns=2)
    ready, not_ready = daskgen.wait(refs, num_returns=1)
    assert ready == [refs[0]] and not_ready == [refs[1]]
    t = time.time()
    ready, not_ready = daskgen.wait(refs, num_returns=2, timeout=0.3)
    assert time.time() - t >= 0.25
    assert ready == [refs[0]]  # Ray returns what is ready at the timeout
    gen = daskgen.submit(slow_then_fast, "w2")
    next(gen)
    ready, not_ready = daskgen.wait([gen, refs[1]], num_returns=1, timeout=0.3)
    assert ready == [] and not_ready == [gen, refs[1]]
    Event("w2").set()
    ready, _ = daskgen.wait([gen, refs[1]], num_returns=1, timeout=10)
    assert ready == [gen]  # its next item is ready
    Event("w1").set()
    ready, not_ready = daskgen.wait(refs, num_returns=2)
    assert not_ready == []
    with pytest.raises(ValueError, match="num_returns=3 must be between"):
        daskgen.wait(refs, num_returns=3)


@gen_cluster(client=True)
async def test_get_and_wait_async(c, s, a, b):
    await daskgen.install(c)
    refs = daskgen.submit(scalars, 3, num_returns=3)
    assert await daskgen.get(refs) == [0, 1, 2]
    ready, not_ready = await daskgen.wait(refs, num_returns=3)
    assert len(ready) == 3 and not not_ready
    x = daskgen.as_array(
        daskgen.submit(blocks, 2, num_returns=2), shapes=[(10, 3)] * 2, dtype=np.int64
    )
    assert await c.compute(x.sum()) == 10 * 3
    await asyncio.sleep(0)
