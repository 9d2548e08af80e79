"""The blocking API on a process cluster (distributed's ``client`` fixture),
and bad input: every wrong call fails at submit time, saying what to do."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest
from _diag import scheduler_states  # tests/ is on sys.path
from distributed import Client, Future, as_completed, wait

import daskgen
from daskgen.exceptions import InvalidStateError, StreamTimeoutError


def produce(n):
    for i in range(n):
        yield i * 10


def slow(n, delay):
    for i in range(n):
        time.sleep(delay)
        yield i


def plain(n):
    return list(range(n))


def scheduler_clean(client, timeout=10):
    gc.collect()  # raised exceptions' tracebacks hold handles in cycles
    deadline = time.time() + timeout
    while True:
        n = client.run_on_scheduler(
            lambda dask_scheduler: (
                len(dask_scheduler.tasks),
                len(dask_scheduler.extensions["daskgen"].generators),
                sorted(dask_scheduler.clients),
            )
        )
        if n[0] == 0 and n[1] == 0 and set(n[2]) <= {"fire-and-forget", client.id}:
            return
        assert time.time() < deadline, n
        time.sleep(0.05)


def test_remote_static(client):
    @daskgen.remote(num_returns=3)
    def three():
        yield from (1, 2, 3)

    refs = three.remote()
    assert all(type(r) is Future for r in refs)
    assert client.gather(refs) == [1, 2, 3]
    assert client.submit(sum, refs).result() == 6
    assert [f.result() for f in as_completed(refs)] != []
    four = three.options(num_returns=4)
    assert isinstance(four, daskgen.RemoteFunction)
    assert four is not three
    assert isinstance(four.remote()[3].exception(), daskgen.NumReturnsError)
    del refs
    scheduler_clean(client)


def test_streaming_for_loop(client):
    gen = daskgen.submit(produce, 4)
    assert [f.result() for f in gen] == [0, 10, 20, 30]
    assert gen.is_finished()
    assert gen.completed().result() is None
    assert gen.status is daskgen.StreamStatus.finished
    del gen
    scheduler_clean(client)


def test_dask_functions_with_a_stream(client):
    """Dask's own functions given a FutureGenerator: the useful thing or a
    clear error at once, never a hang or a silent wrong answer."""
    import distributed

    gen = daskgen.submit(slow, 3, 0.05)
    start = time.monotonic()
    # as_completed wants every Future at once (it used to hang for good)
    with pytest.raises(TypeError, match="as_completed cannot take a FutureGenerator"):
        as_completed(gen)
    # wait and progress look for Futures in collections (they found none)
    with pytest.raises(TypeError, match=r"not a Dask collection.*gen\.completed\(\)"):
        wait(gen)
    with pytest.raises(TypeError, match="daskgen.progress"):
        distributed.progress(gen)
    with pytest.raises(TypeError, match="not a Dask collection"):
        client.persist(gen)
    assert time.monotonic() - start < 5  # at once
    # what the messages suggest works
    ac = as_completed()
    first = None
    for fut in gen:
        first = first or fut
        ac.add(fut)
    assert sorted(f.result() for f in ac) == [0, 1, 2]
    wait(gen.completed())
    assert gen.is_finished()
    # client.gather over a stream streams its values (distributed's Iterator path)
    assert list(client.gather(daskgen.submit(produce, 3))) == [0, 10, 20]
    del gen, ac, fut, first
    scheduler_clean(client)


def test_distributed_progress_counts_static_items(client, capsys):
    """distributed.progress over a static call's items fills and returns (it
    waited for good: items go to memory without being processed)."""
    import threading

    import distributed

    refs = daskgen.submit(slow, 4, 0.1, num_returns=4)
    done = threading.Event()

    def show(refs):
        distributed.progress(refs, notebook=False, interval="50ms")
        done.set()

    t = threading.Thread(target=show, args=(refs,), daemon=True)
    t.start()
    assert done.wait(30), "distributed.progress never saw the items done"
    t.join()
    assert "100% Completed" in capsys.readouterr().out
    assert client.gather(refs) == [0, 1, 2, 3]
    del refs
    scheduler_clean(client)


def test_streaming_next_timeout(client):
    gen = daskgen.submit(slow, 2, 1.0)
    with pytest.raises(StreamTimeoutError, match="no item 0"):
        gen.next(timeout="100ms")
    assert gen.next(timeout=10).result() == 0
    assert [f.result() for f in gen] == [1]
    del gen
    scheduler_clean(client)


def test_dynamic_sync(client):
    ref = daskgen.submit(produce, 3, num_returns="dynamic")
    items = ref.result()
    assert client.gather(items) == [0, 10, 20]
    wait(items)
    del ref, items
    scheduler_clean(client)


def test_plain_function_submit(client):
    fut = daskgen.submit(plain, 3)
    assert type(fut) is Future and fut.result() == [0, 1, 2]
    assert client.gather(daskgen.submit(plain, 2, num_returns=2)) == [0, 1]
    del fut
    scheduler_clean(client)


def test_async_iteration_on_sync_client(client):
    gen = daskgen.submit(produce, 1)

    async def consume():
        return [f async for f in gen]

    with pytest.raises(InvalidStateError, match="asynchronous client"):
        asyncio.run(consume())
    list(gen)


# ---------------------------------------------------------------- bad input


def _assert_nothing_submitted(client):
    assert not client.futures


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_returns": -1}, "num_returns=-1 is not valid"),
        ({"num_returns": "many"}, "num_returns='many' is not valid"),
        ({"num_returns": 2.0}, "num_returns=2.0 is not valid"),
        ({"num_returns": True}, "num_returns=True is not valid"),
        ({"backpressure": 0}, "backpressure=0 is not valid"),
        ({"backpressure": "2"}, "backpressure='2' is not valid"),
        ({"backpressure": 2, "num_returns": 3}, "only applies to streaming"),
        ({"max_retries": -1}, "max_retries=-1 is not valid"),
        ({"retry_exceptions": ["x"]}, "retry_exceptions=.* is not valid"),
    ],
)
def test_bad_options(client, kwargs, match):
    with pytest.raises(ValueError, match=match):
        daskgen.submit(produce, 3, **kwargs)
    _assert_nothing_submitted(client)


@pytest.mark.parametrize("mode", ["dynamic", "streaming"])
def test_mode_needs_generator(client, mode):
    with pytest.raises(ValueError, match="needs a generator function.*plain"):
        daskgen.submit(plain, 3, num_returns=mode)
    _assert_nothing_submitted(client)


def test_not_callable(client):
    with pytest.raises(TypeError, match="needs a callable.*daskgen.submit\\(produce"):
        daskgen.submit(42)
    with pytest.raises(TypeError, match="needs a function"):
        daskgen.remote(42)
    _assert_nothing_submitted(client)


def test_remote_function_called_directly(client):
    f = daskgen.remote(produce)
    with pytest.raises(TypeError, match="produce.remote"):
        f(3)
    with pytest.raises(TypeError, match="unknown option"):
        f.options(num_retruns=2)
    with pytest.raises(TypeError, match="unknown option"):
        daskgen.remote(numreturns=2)


def test_no_client():
    with pytest.raises(ValueError, match="Client\\(LocalCluster\\(\\)\\)"):
        daskgen.submit(produce, 3)


def test_unpicklable_item(client):
    """A value that cannot move: the item raises when fetched; the stream goes on."""
    import threading

    def locks():
        yield threading.Lock()
        yield 1

    a, b = daskgen.submit(locks, num_returns=2)
    assert b.result() == 1
    with pytest.raises(Exception, match="(?i)pickle|serialize"):
        a.result()
    del a, b


def test_static_last_item_never_lost(client):
    """Regression: the end of a static call must not overtake its last value
    (found by a benchmark: a batch in flight while the last yield waited to be
    stored left the last item pending forever)."""
    for _ in range(40):
        refs = daskgen.submit(produce, 1000, num_returns=1000)
        wait(refs[0])
        try:
            wait(refs, timeout=60)  # a slow machine is not a lost item
        except TimeoutError:
            raise AssertionError(
                f"items not done after 60 s: {scheduler_states(client, refs)}"
            ) from None
        assert refs[-1].result() == 9990
        del refs


class _Slow:
    """Prints as "line", slowly: the built-in print writes its arguments one by
    one, so a line written from another thread meanwhile would split it."""

    def __str__(self) -> str:
        time.sleep(0.002)
        return "line"


def chatty(n):
    for i in range(n):
        daskgen.print("daskgen line", i)
        time.sleep(0.002)
        yield i


def test_print_lines_never_split_the_callers(client, capsys):
    # A client started while the caller's stdout is the one it prints to (the
    # fixture's client started before capsys replaced sys.stdout).
    with Client(client.scheduler.address) as caller:
        _print_alongside(caller, capsys)


def _print_alongside(client, capsys):
    n = 300
    refs = daskgen.submit(chatty, n, num_returns=n, client=client)
    out, i = [], 0
    deadline = time.monotonic() + 60
    while f"daskgen line {n - 1}\n" not in "".join(out):
        assert time.monotonic() < deadline, "".join(out)[-2000:]
        for _ in range(20):
            print("caller", _Slow(), i)
            i += 1
        out.append(capsys.readouterr().out)
    lines = "".join(out).splitlines()
    ours = [line for line in lines if not line.startswith("caller")]
    assert [line for line in lines if line.startswith("caller")] == [
        f"caller line {k}" for k in range(i)
    ]
    assert len(ours) == n
    for k, line in enumerate(ours):
        assert line.startswith("(chatty pid=") and line.endswith(f") daskgen line {k}")
    del refs


def test_print_waits_for_an_open_line_then_ends_it(monkeypatch):
    import io

    from daskgen import _console

    monkeypatch.setattr(_console, "STALE", 0.2)
    buf = io.StringIO()
    guard = _console.LineGuard(buf)
    guard.write("caller ")
    guard.emit("(f pid=1) one\n")
    assert buf.getvalue() == "caller "  # held while the caller's line is open
    guard.write("line\n")
    assert buf.getvalue() == "caller line\n(f pid=1) one\n"
    guard.emit("(f pid=1) two\n")  # between lines: at once
    assert buf.getvalue().endswith("line\n(f pid=1) one\n(f pid=1) two\n")
    guard.write("working...")  # left open: after STALE, on a line of its own
    guard.emit("(f pid=1) three\n")
    time.sleep(0.5)
    assert buf.getvalue().endswith("working...\n(f pid=1) three\n")
    assert guard.getvalue() == buf.getvalue()  # everything else is the stream's
