"""The worker half of daskgen: the driver task that runs a generator.

The driver is an ordinary Dask task. It secedes from the worker's thread pool
(so a generator paused by backpressure holds no thread slot), runs the user's
generator in its own thread, and for each yield:

1. puts the value into the worker's own data, without a copy or serialization
   (the same path as a local ``scatter``), so Dask's spilling applies to it;
2. queues a small notification (index, size, type) that the worker's event loop
   sends to the scheduler in batches, one RPC in flight at a time.

The scheduler replies with the items nobody wants any more (freed here), a
backpressure limit, and whether to stop (the call was cancelled).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import os
import threading
import time
import traceback as tb_module
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from dask.sizeof import sizeof
from dask.utils import parse_bytes
from distributed import get_worker, secede
from distributed.diagnostics.plugin import WorkerPlugin
from distributed.protocol import pickle
from distributed.utils import log_errors

from daskgen import _compat, _config
from daskgen._core import PLUGIN_NAME, CallSpec, Op, print_topic
from daskgen.exceptions import (
    ActorDiedError,
    GeneratorCancelledError,
    NumReturnsError,
    ReplayInconsistentError,
    a_noun,
)

if TYPE_CHECKING:
    from distributed import Worker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallInfo:
    """Who runs the current generator, for ``daskgen.print``."""

    name: str
    client: str
    pid: int


current_call: contextvars.ContextVar[CallInfo | None] = contextvars.ContextVar(
    "daskgen_current_call", default=None
)


# Keys of drivers stopped by a cancel the caller asked for (bounded: a key is
# removed when its log record passes the filter, and the oldest go first).
_requested_cancels: dict[Any, None] = {}


def _note_requested_cancel(key: Any) -> None:
    _requested_cancels[key] = None
    while len(_requested_cancels) > 1000:
        del _requested_cancels[next(iter(_requested_cancels))]


class _RequestedCancelFilter(logging.Filter):
    """Drop the worker's "Compute Failed" error for a driver stopped by a
    cancel the caller asked for: nothing failed. Every other record passes,
    a user's task failing with GeneratorCancelledError included."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _requested_cancels or not str(record.msg).startswith("Compute Failed"):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        try:
            hit = bool(args) and args[0] in _requested_cancels
        except TypeError:  # an unhashable first argument
            return True
        if hit:
            del _requested_cancels[args[0]]
        return not hit


def _install_log_filter() -> None:
    wlog = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _RequestedCancelFilter) for f in wlog.filters):
        wlog.addFilter(_RequestedCancelFilter())


class GeneratorWorkerPlugin(WorkerPlugin):
    """Worker plugin holding the drivers that run on this worker."""

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self) -> None:
        self.worker: Worker | None = None
        self.drivers: dict[str, Driver] = {}
        self.early_limits: dict[str, int | None] = {}  # see handle_limit
        self.lock: threading.Lock | None = None  # made in setup (not pickled)

    def setup(self, worker: Worker) -> None:
        self.lock = threading.Lock()
        _install_log_filter()
        self.worker = worker
        worker.extensions[PLUGIN_NAME] = self
        worker.stream_handlers.update(
            {
                Op.STOP: log_errors(self.handle_stop),
                Op.LIMIT: log_errors(self.handle_limit),
                Op.REBUILD: log_errors(self.handle_rebuild),
            }
        )

    def teardown(self, worker: Worker) -> None:
        for d in list(self.drivers.values()):
            d.set_stop()

    def handle_stop(self, gen_id: str) -> None:
        d = self.drivers.get(gen_id)
        if d is not None:
            d.set_stop(requested=True)

    def handle_limit(self, gen_id: str, limit: int | None) -> None:
        assert self.lock is not None
        with self.lock:
            d = self.drivers.get(gen_id)
            if d is None:
                # A grant can come before its driver's thread has started
                # (granted streams wait for it): keep it for the driver.
                self.early_limits[gen_id] = limit
                while len(self.early_limits) > 1000:
                    del self.early_limits[next(iter(self.early_limits))]
                return
        d.set_limit(limit)

    def add_driver(self, driver: Driver) -> None:
        assert self.lock is not None
        with self.lock:
            self.drivers[driver.gen_id] = driver
            early = self.early_limits.pop(driver.gen_id, _NO_LIMIT)
        if early is not _NO_LIMIT:
            driver.set_limit(early)

    def handle_rebuild(self, gen_id: str, indices: list[int]) -> None:
        d = self.drivers.get(gen_id)
        if d is not None:
            d.rebuild(indices)


_NO_LIMIT: Any = object()


def _plugin(worker: Worker) -> GeneratorWorkerPlugin:
    ext = worker.extensions.get(PLUGIN_NAME)
    if ext is None:  # plugin not yet delivered to this worker
        ext = GeneratorWorkerPlugin()
        ext.setup(worker)
    assert isinstance(ext, GeneratorWorkerPlugin)
    return ext


# A yield at least this large waits (briefly) for its report to leave.
_HANDOFF_BYTES = 1 << 20


class _Stop(Exception):
    pass


class _Rebuild:
    """The sink of a rebuild pass: publishes the wanted indices only, and
    stops after the last of them (see Driver.rebuild)."""

    def __init__(self, driver: Driver, wanted: set[int]) -> None:
        self.driver = driver
        self.wanted = wanted
        self.last = max(wanted)
        self.i = 0

    def step(self) -> None:
        if self.i > self.last or self.driver._stopped():
            raise _Stop

    def accept(self, value: Any) -> None:
        if self.i in self.wanted:
            self.driver._publish(self.i, value, rebuilt=True)
        self.i += 1


class Driver:
    """Runs one attempt of one generator call in a seceded task thread."""

    def __init__(self, worker: Worker, key: Any, spec: CallSpec) -> None:
        self.worker = worker
        self.key = key
        self.spec = spec
        self.gen_id = spec.gen_id
        self.prefix = spec.prefix
        self.end_key = spec.end_key  # the call's end marker, if any
        self.end_stored = False
        self.mode = spec.mode
        self.num_returns = spec.num_returns
        self.retry_exceptions = spec.retry_exceptions
        self.batch_size: int = _config.get("batch-size")
        self.run_id = _compat.driver_run_id(worker, key)
        self.cond = threading.Condition()
        # (index, value, nbytes, yielded by a rebuild pass)
        self.outbox: list[tuple[int, Any, int, bool]] = []
        self.outbox_bytes = 0
        self.max_outbox_bytes: int = parse_bytes(_config.get("outbox-bytes"))
        self.scheduled = False
        self.notes: list[tuple[int, int, bytes | None, str]] = []
        self.held: tuple[int, int, bytes | None, str] | None = None
        self.inflight = False
        self.stop = False
        self.cancel_requested = False
        # A granted stream yields nothing before the scheduler's first grant.
        self.limit: int | None = 0 if spec.granted else spec.backpressure
        self.lifted = False  # backpressure lifted for good (handle dropped)
        self.error: str | None = None
        self.end: dict[str, Any] | None = None
        self.final: dict[str, Any] | None = None
        self.done = threading.Event()
        self.pumped = -1  # highest index stored, its report sent or queued
        self.reported = False  # the first report is on its way
        self.types: dict[type, tuple[bytes | None, str]] = {}
        # Indices this attempt put into the worker's data itself and has not
        # had a reply for: a drop frees only these, never a copy an earlier
        # attempt (or a fetch) left here.
        self.mine: set[int] = set()
        self.i = 0  # values yielded so far
        self.call: tuple[Callable[..., Any], tuple[Any, ...], Any] | None = None
        self.rebuilds: list[set[int]] = []  # passes asked for, not started yet
        self.rebuilder: threading.Thread | None = None
        self.info: CallInfo | None = None

    # ------------------------------------------------------------ thread side

    def set_stop(self, requested: bool = False) -> None:
        """Stop at the next yield; ``requested``: the caller cancelled the call."""
        with self.cond:
            self.stop = True
            self.cancel_requested |= requested
            self.cond.notify_all()

    def set_limit(self, limit: int | None) -> None:
        with self.cond:
            self._apply_limit(limit)
            self.cond.notify_all()

    def _apply_limit(self, limit: int | None) -> None:
        """A backpressure limit from the scheduler (under ``cond``). Limits
        come by two paths (a take's message, a report's reply) and may arrive
        out of order: within a run one never lowers the limit, and once lifted
        (the handle was dropped) it stays lifted."""
        if limit is None:
            if self.limit is not None:
                self.lifted = True
            self.limit = None
        elif not self.lifted:
            self.limit = limit if self.limit is None else max(self.limit, limit)

    def _stopped(self) -> bool:
        return (
            self.stop
            or self.error is not None
            or _compat.worker_task_state(self.worker, self.key) == "cancelled"
        )

    def _wait_allowed(self, i: int) -> None:
        with self.cond:
            while (
                not self.stop and self.limit is not None and i >= self.limit
            ):  # paused by backpressure; seceded, so no thread slot is held
                self.cond.wait()
        if self._stopped():
            raise _Stop

    def _publish(self, i: int, value: Any, rebuilt: bool = False) -> None:
        nbytes = sizeof(value)
        with self.cond:
            self.outbox.append((i, value, nbytes, rebuilt))
            self.outbox_bytes += nbytes
            wake = not self.scheduled
            self.scheduled = True
        if wake:
            self.worker.loop.add_callback(self._pump)
        if (i == 0 or nbytes >= _HANDOFF_BYTES) and i != (self.num_returns or 0) - 1:
            # Let the event loop store and report this item before the
            # generator runs on. A generator busy between yields holds the GIL,
            # and the loop would get it only at the switch interval, once to
            # store the item and once to send its report: 5-10 ms later, and
            # a large item then lives (and needs memory) while the next one is
            # built. Bounded, and only for the first item and large ones: a
            # tiny item's yield never waits.
            with self.cond:
                self.cond.wait_for(
                    lambda: (
                        (self.reported if i == 0 else self.pumped >= i) or self.stop
                    ),
                    timeout=0.01,
                )
        if self.outbox_bytes > self.max_outbox_bytes and len(self.outbox) > 1:
            # Values waiting for the event loop are not in the worker's data
            # yet, so they cannot spill: past outbox-bytes, wait until they are
            # stored. One value may always wait while the next is built, so
            # storing a large value is never on the generator's critical path.
            with self.cond:
                while (
                    self.outbox_bytes > self.max_outbox_bytes
                    and len(self.outbox) > 1
                    and not self.stop
                ):
                    self.cond.wait()

    def run(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> Any:
        error: BaseException | None = None
        self.call = (func, args, kwargs)
        try:
            _drive(self, func(*args, **kwargs), func)
        except _Stop:
            error = GeneratorCancelledError(
                f"generator call {self.gen_id} was cancelled after {self.i} items"
            )
            if self.cancel_requested:
                _note_requested_cancel(self.key)
            logger.debug("%s stopped after %d items", self.key, self.i)
        except BaseException as e:
            error = e
        with self.cond:
            rebuilder = self.rebuilder
        if rebuilder is not None:
            rebuilder.join()  # its items are reported before the end
        i = self.i
        if error is None and self.num_returns is not None and i < self.num_returns:
            error = NumReturnsError(
                f"the task yielded {i} values, but num_returns={self.num_returns}. "
                "Pass num_returns equal to the number of values it yields, or use "
                "num_returns='streaming' or 'dynamic'."
            )
        end: dict[str, Any] = {"count": i}
        if error is not None:
            end.update(_error_payload(error))
            end["extra"] = isinstance(error, NumReturnsError) and i == self.num_returns
            end["retryable"] = self._retryable(error)
            end["cancelled"] = isinstance(error, GeneratorCancelledError)
        if self.error is not None:
            end = {"count": i, "replay": True}
        self._finish(end)
        assert self.final is not None
        if self.final.get("error") or self.error:
            raise ReplayInconsistentError(self.final.get("error") or self.error)
        if error is not None and (self.final.get("raise") or "raise" not in self.final):
            raise error
        return None

    def rebuild(self, indices: list[int]) -> None:
        """Yield items again that were lost while this run had passed them:
        a second instance of the generator runs in its own thread up to the
        last of them, and only those are stored and reported."""
        with self.cond:
            self.rebuilds.append(set(indices))
            if self.rebuilder is not None:
                return
            self.rebuilder = threading.Thread(
                target=self._rebuild_passes, name=f"daskgen-rebuild-{self.gen_id}"
            )
            self.rebuilder.start()  # under the lock: run() may join it at once

    def _rebuild_passes(self) -> None:
        token = current_call.set(self.info) if self.info else None
        try:
            while True:
                with self.cond:
                    if not self.rebuilds or self.stop:
                        self.rebuilder = None
                        return
                    wanted = set().union(*self.rebuilds)
                    self.rebuilds.clear()
                assert self.call is not None
                func, args, kwargs = self.call
                try:
                    _drive(_Rebuild(self, wanted), func(*args, **kwargs), func)
                except _Stop:
                    pass
                except BaseException as e:  # the items wait; the run's end decides
                    logger.warning(
                        "daskgen: rebuilding items of %s failed: %r", self.key, e
                    )
        finally:
            if token is not None:
                current_call.reset(token)

    def step(self) -> None:
        """Before each value: wait while paused by backpressure; stop if asked."""
        self._wait_allowed(self.i)

    def accept(self, value: Any) -> None:
        """A value the generator yielded: check the count, then publish it."""
        if self.num_returns is not None and self.i >= self.num_returns:
            raise NumReturnsError(
                f"the generator yielded more than num_returns="
                f"{self.num_returns} values. Pass a larger num_returns, "
                "or use num_returns='streaming' or 'dynamic' when the "
                "count is not known in advance."
            )
        self._publish(self.i, value)
        self.i += 1

    def _retryable(self, e: BaseException) -> bool:
        if isinstance(e, (GeneratorCancelledError, NumReturnsError)):
            return False
        r = self.retry_exceptions
        if r is True:
            return isinstance(e, Exception)
        if not r:
            return False
        return isinstance(e, r)

    def _finish(self, end: dict[str, Any]) -> None:
        with self.cond:
            self.end = end
            wake = not self.scheduled
            self.scheduled = True
        if wake:
            self.worker.loop.add_callback(self._pump)
        while not self.done.wait(1.0):
            if self.worker.status.name not in ("running", "paused", "init"):
                self.final = {"raise": True}
                return

    # -------------------------------------------------------- event loop side

    def _pump(self) -> None:
        with self.cond:
            # One batch per turn of the event loop. With nothing in flight,
            # only the first waiting value: its notification leaves at once
            # instead of waiting while thousands of later yields are stored.
            take = self.batch_size if self.inflight or self.notes else 1
            batch = self.outbox[:take]
            del self.outbox[:take]
            more = bool(self.outbox)
            self.scheduled = more
            end = self.end
        last, stored_bytes = -1, 0
        if batch:
            data: dict[Any, Any] = {}
            for i, value, *_ in batch:
                key = (self.prefix, i)
                if _compat.worker_task_state(self.worker, key) in _STORABLE:
                    data[key] = value
                    self.mine.add(i)
                else:
                    # Held already (or being fetched): a drop of this report
                    # must not free that copy, whoever stored it.
                    self.mine.discard(i)
            if data:
                _compat.store_local(
                    self.worker, data, stimulus_id=f"daskgen-store-{time.time()}"
                )
            stored_bytes = sum(nb for _, _, nb, _ in batch)
            for i, value, _, rebuilt in batch:
                typ = type(value)
                t = self.types.get(typ)
                if t is None:
                    try:
                        t = (pickle.dumps(typ), _typename(typ))
                    except Exception:
                        t = (None, _typename(typ))
                    self.types[typ] = t
                nbytes = _compat.held_nbytes(self.worker, (self.prefix, i))
                note = (i, nbytes, t[0], t[1])
                if (
                    self.num_returns is not None
                    and i == self.num_returns - 1
                    and not rebuilt
                ):
                    self.held = note  # released with the end: see docs/semantics.md
                else:
                    self.notes.append(note)
            last = batch[-1][0]
            del data, batch, value
        if not self.inflight and (
            self.notes or (end is not None and not more and not self.done.is_set())
        ):
            self.inflight = True
            asyncio.ensure_future(self._send())
        if last >= 0:  # one wake-up for both waits in _publish
            with self.cond:
                self.outbox_bytes -= stored_bytes
                self.pumped = max(self.pumped, last)
                self.cond.notify_all()
        if more:  # after the send, so that it leaves before the next batch
            self.worker.loop.add_callback(self._pump)

    async def _send(self) -> None:
        try:
            while True:
                with self.cond:
                    # The end goes last: not while yields still wait in the
                    # outbox for the pump (the last of them may be held).
                    end = self.end if not self.outbox else None
                notes = self.notes[: self.batch_size]
                del self.notes[: self.batch_size]
                last = end if not self.notes and end is not None else None
                if not notes and last is None:
                    break
                if last is not None and self.held is not None:
                    # A static call's last item goes with the end, so that a
                    # generator yielding more than N values errs it instead.
                    if last.get("extra"):
                        self._drop([self.held[0]])
                    else:
                        notes.append(self.held)
                    self.held = None
                if not self.reported:
                    with self.cond:
                        self.reported = True
                        self.cond.notify_all()
                if (
                    last is not None
                    and self.end_key is not None
                    and _compat.worker_task_state(self.worker, self.end_key)
                    in _STORABLE
                ):
                    # The end marker's value, in case the scheduler marks it
                    # done with this report (a run that ends normally).
                    _compat.store_local(
                        self.worker,
                        {self.end_key: None},
                        stimulus_id=f"daskgen-end-{time.time()}",
                    )
                    self.end_stored = True
                produced = getattr(self.worker.scheduler, Op.PRODUCED)
                reply = await produced(
                    gen_id=self.gen_id,
                    run_id=self.run_id,
                    worker=self.worker.address,
                    items=notes,
                    end=last,
                )
                self._handle_reply(reply)
                # A drop names only indices of its own report: those are done
                # with (else ``mine`` grew by one int per item of a stream).
                self.mine.difference_update([n[0] for n in notes])
                if last is not None:
                    if self.end_stored and not reply.get("completed"):
                        _compat.free_local(
                            self.worker, [self.end_key], f"daskgen-end-{time.time()}"
                        )
                    self.final = reply
                    self.done.set()
                    break
        except Exception as e:  # scheduler gone, or a bug: stop the generator
            logger.warning("daskgen driver %s lost the scheduler: %r", self.key, e)
            self.final = {"raise": True}
            self.set_stop()
            self.done.set()
        finally:
            self.inflight = False
        if self.notes or (self.end is not None and not self.done.is_set()):
            self._pump()

    def _handle_reply(self, reply: dict[str, Any]) -> None:
        if reply.get("drop"):
            self._drop(reply["drop"])
        if reply.get("error") and self.error is None:
            self.error = reply["error"]
        with self.cond:
            if reply.get("stop"):
                self.stop = True
                self.cancel_requested |= not reply.get("stale")
            if self.limit is not None or reply.get("limit") is not None:
                self._apply_limit(reply.get("limit"))
            self.cond.notify_all()

    def _drop(self, indices: list[int]) -> None:
        """Free values the scheduler did not take, of those this attempt stored."""
        mine = [i for i in indices if i in self.mine]
        self.mine.difference_update(mine)
        keys = [
            (self.prefix, i)
            for i in mine
            if _compat.worker_task_state(self.worker, (self.prefix, i)) == "memory"
        ]
        if keys:
            _compat.free_local(self.worker, keys, f"daskgen-drop-{time.time()}")


def _typename(typ: type) -> str:
    return f"{typ.__module__}.{typ.__qualname__}"


def _error_payload(e: BaseException) -> dict[str, Any]:
    try:
        exc = pickle.dumps(e)
        pickle.loads(exc)
    except Exception:
        exc = pickle.dumps(Exception(repr(e)))
    tb = e.__traceback__
    tb_text = "".join(tb_module.format_tb(tb))
    try:
        tbb: bytes | None = pickle.dumps(tb)
    except Exception:
        tbb = None
    return {
        "error": {"exception": exc, "traceback": tbb},
        "text": f"{type(e).__name__}: {e}",
        "traceback_text": tb_text,
    }


#: Worker task states of an item key in which a yield is stored here: the
#: worker does not hold the key (a "released" state may be left from an
#: earlier copy that was fetched and dropped). In "memory" the worker already
#: holds a value (kept: it may be the only copy); in "flight" it is fetching one.
_STORABLE = frozenset({None, "released", "fetch", "missing"})


class _Sink(Protocol):
    def step(self) -> None: ...

    def accept(self, value: Any) -> None: ...


def _drive(driver: _Sink, result: Any, func: Callable[..., Any]) -> None:
    """Feed every value of ``result`` to ``driver``: a generator, an async
    generator (run in one asyncio task from start to end, so context variables
    and ``asyncio.current_task()`` hold across yields), or the sequence a plain
    function returned. One rule for every kind of callable: what it returned."""
    if inspect.isasyncgen(result):
        agen = result

        async def main() -> None:
            try:
                while True:
                    driver.step()
                    try:
                        value = await agen.__anext__()
                    except StopAsyncIteration:
                        return
                    driver.accept(value)
                    del value
            finally:
                await agen.aclose()

        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(main())
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
        return
    if inspect.isgenerator(result):
        gen = result
        del result
        try:
            while True:
                driver.step()
                try:
                    value = next(gen)
                except StopIteration:
                    return
                driver.accept(value)
                del value
        finally:
            gen.close()
    # A plain function with num_returns=N: split the sequence it returned.
    try:
        len(result)
        it: Iterator[Any] = iter(result)
    except TypeError:
        raise NumReturnsError(
            f"{getattr(func, '__name__', func)!r} returned {a_noun(type(result).__name__)}, "
            "not a sequence, so it cannot be split into num_returns values. Return "
            "a list or tuple, or make the function a generator."
        ) from None
    del result
    for value in it:
        driver.step()
        driver.accept(value)
        del value


def run_driver(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: Any, spec: CallSpec
) -> None:
    """The driver task's function (what a daskgen call's driver key runs)."""
    worker = get_worker()
    key = worker.get_current_task()
    secede()
    plugin = _plugin(worker)
    driver = Driver(worker, key, spec)
    plugin.add_driver(driver)
    driver.info = CallInfo(name=spec.name, client=spec.client, pid=os.getpid())
    token = current_call.set(driver.info)
    try:
        return driver.run(func, args, kwargs)
    finally:
        current_call.reset(token)
        if plugin.drivers.get(driver.gen_id) is driver:
            del plugin.drivers[driver.gen_id]


# --------------------------------------------------------------------- actors


class ActorMethod:
    """What an actor call's task runs: ``method`` of the actor ``actor_key``,
    on the worker that holds the actor (daskgen restricts the task to it).

    The instance is the one Dask keeps for the actor. Each step runs where
    Dask runs that actor's own method calls, so daskgen's calls and Dask's
    (``actor.method()``) never run the actor's code at the same time:

    - a sync method, and each step (``next()``) of a sync generator method,
      in the worker's actor thread (one per worker, as for Dask actors);
    - a coroutine method, and each step of an async generator method, on
      the worker's event loop.

    Between steps nothing is held: two streams of one actor interleave at
    their yields, and a stream paused by backpressure lets other calls run.
    """

    def __init__(
        self,
        actor_key: str,
        method: str,
        cls_name: str,
        is_generator: bool,
        max_pending: int | None = None,
    ) -> None:
        self.actor_key = actor_key
        self.max_pending = max_pending
        self.method = method
        self.is_generator = is_generator
        self.__name__ = f"{cls_name}.{method}"

    def __repr__(self) -> str:
        return f"<daskgen.ActorMethod {self.__name__} of {self.actor_key}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        worker = get_worker()
        instance = _compat.actor_instance(worker, self.actor_key)
        if instance is None:
            raise ActorDiedError(
                f"actor {self.actor_key!r} is not on worker {worker.address} any "
                "more: its worker restarted, or the actor was released. Dask does "
                "not restart actors; create a new one."
            )
        method = getattr(instance, self.method)
        ctx = contextvars.copy_context()  # daskgen.print's call, in every step
        loop = _compat.event_loop(worker)
        if inspect.isasyncgenfunction(method):
            return _steps_on_loop(method(*args, **kwargs), loop)
        if inspect.isgeneratorfunction(method):
            return _steps_in_thread(method(*args, **kwargs), worker, ctx)
        if inspect.iscoroutinefunction(method):
            return asyncio.run_coroutine_threadsafe(
                method(*args, **kwargs), loop
            ).result()
        return (
            _compat.actor_executor(worker)
            .submit(ctx.run, method, *args, **kwargs)
            .result()
        )


def _step(gen: Iterator[Any]) -> tuple[bool, Any]:
    try:
        return False, next(gen)
    except StopIteration:
        return True, None


def _steps_in_thread(gen: Any, worker: Worker, ctx: contextvars.Context) -> Any:
    """``gen``, each step run in the worker's actor thread."""
    executor = _compat.actor_executor(worker)
    try:
        while True:
            done, value = executor.submit(ctx.run, _step, gen).result()
            if done:
                return
            yield value
            del value
    finally:
        executor.submit(ctx.run, gen.close).result()


async def _anext(agen: Any) -> tuple[bool, Any]:
    try:
        return False, await agen.__anext__()
    except StopAsyncIteration:
        return True, None


def _steps_on_loop(agen: Any, loop: asyncio.AbstractEventLoop) -> Any:
    """``agen``, each step run on the worker's event loop (from this thread:
    the step's task copies this thread's context, daskgen.print's call too)."""
    try:
        while True:
            done, value = asyncio.run_coroutine_threadsafe(_anext(agen), loop).result()
            if done:
                return
            yield value
            del value
    finally:
        asyncio.run_coroutine_threadsafe(agen.aclose(), loop).result()


def print(*args: Any, sep: str = " ", end: str = "\n", file: Any = None) -> None:
    """Print on the caller's console, prefixed like Ray: ``(name pid=123) ...``.

    Inside a daskgen task the text goes only to the client that submitted the
    call (Dask's own ``distributed.print`` goes to every client), and to the
    worker's log at debug level; elsewhere this is the built-in print.

    Examples
    --------
    >>> def produce(n):
    ...     for i in range(n):
    ...         yield i
    ...         daskgen.print(f"yielded return value {i}")
    """
    import builtins
    import sys

    call = current_call.get()
    if call is None:
        builtins.print(*args, sep=sep, end=end, file=file)
        return
    text = sep.join(str(a) for a in args) + end
    logger.debug("(%s pid=%d) %s", call.name, call.pid, text.rstrip("\n"))
    worker = get_worker()
    worker.log_event(
        print_topic(call.client),
        {
            "name": call.name,
            "pid": call.pid,
            "text": text,
            "stderr": file is sys.stderr,
        },
    )
