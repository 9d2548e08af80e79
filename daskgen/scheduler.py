"""The scheduler half of daskgen: owns every generator call's shared state.

A generator call is one *driver* task plus one *item* task per yield. The
driver runs the generator on a worker (see :mod:`daskgen.worker`), stores each
yielded value in that worker's data and reports batches of them here; this
plugin then moves the matching item tasks to memory on that worker. Item
tasks depend on the driver, so Dask's own machinery gives lineage (a lost item
waits for the driver to run again), error propagation and ownership.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from distributed.diagnostics.plugin import SchedulerPlugin

from daskgen import _compat, _config

if TYPE_CHECKING:
    from distributed.scheduler import Scheduler, TaskState

logger = logging.getLogger(__name__)

PLUGIN_NAME = "daskgen"
ANNOTATION = "daskgen"

#: States a generator call goes through, as shown on the dashboard.
STATES = ("waiting", "running", "paused", "finished", "erred", "cancelled")


@dataclass
class GenState:
    """What the scheduler knows about one generator call."""

    gen_id: str
    driver: Any
    prefix: str
    client: str
    name: str
    mode: str  # "static", "dynamic" or "streaming"
    num_returns: int | None
    backpressure: int | None
    max_retries: int
    pseudo: str | None
    submitted: float = field(default_factory=time.time)
    state: str = "waiting"
    worker: str | None = None
    run_id: int | None = None
    attempts: int = 0
    produced: int = 0  # items reported, highest index + 1 over all attempts
    final: int | None = None  # item count of an attempt that ran to its end
    taken: int = 0
    released: int = 0
    abandoned: bool = False
    cancelled: bool = False
    nbytes: int = 0
    started: float | None = None
    stopped: float | None = None
    pauses: int = 0
    paused_since: float | None = None
    paused_total: float = 0.0
    error: str | None = None
    ended: bool = False
    declared: int = 0  # static items created so far
    _spec: Any = None

    def item_key(self, i: int) -> tuple[str, int]:
        return (self.prefix, i)

    def item_spec(self) -> Any:
        """The run spec of every item of this call: one shared object.

        An item only runs its spec if its value was lost while the finished
        driver stays in memory; sharing it spares a Task (three objects for
        the garbage collector) per item.
        """
        if self._spec is None:
            self._spec = _compat.Task(
                f"{self.prefix}-item", _unproduced_item, _compat.TaskRef(self.driver)
            )
        return self._spec

    @property
    def limit(self) -> int | None:
        """Highest index + 1 the driver may produce before the consumer takes more."""
        if self.backpressure is None:
            return None
        return self.taken + self.backpressure

    def info(self) -> dict[str, Any]:
        now = time.time()
        end = self.stopped or now
        elapsed = end - self.started if self.started else 0.0
        paused = self.paused_total + (
            now - self.paused_since if self.paused_since else 0.0
        )
        return {
            "gen_id": self.gen_id,
            "key": str(self.driver),
            "name": self.name,
            "client": self.client,
            "worker": self.worker,
            "mode": self.mode,
            "num_returns": self.num_returns,
            "backpressure": self.backpressure,
            "state": self.state,
            "attempts": self.attempts,
            "yielded": self.produced,
            "taken": self.taken,
            "released": self.released,
            "bytes": self.nbytes,
            "rate": self.produced / elapsed if elapsed > 0 else 0.0,
            "elapsed": elapsed,
            "pauses": self.pauses,
            "paused_seconds": paused,
            "error": self.error,
            "submitted": self.submitted,
        }


class GeneratorSchedulerPlugin(SchedulerPlugin):
    """Scheduler plugin that completes generator items in bulk.

    Installed by :func:`daskgen.install` (done on first use by every
    ``daskgen.submit``) or by ``dask scheduler --preload daskgen``. It installs
    :class:`~daskgen.worker.GeneratorWorkerPlugin` on the workers.
    """

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self) -> None:
        self.scheduler: Scheduler | None = None
        self.generators: dict[str, GenState] = {}
        self.by_driver: dict[Any, GenState] = {}
        self.by_prefix: dict[str, GenState] = {}
        self.history: deque[dict[str, Any]] = deque(maxlen=_config.get("history"))
        self.totals: dict[str, float] = {
            "items": 0,
            "bytes": 0,
            "pauses": 0,
            "paused_seconds": 0.0,
        }

    # ----------------------------------------------------------------- lifecycle

    async def start(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        scheduler.handlers.update(
            {
                "daskgen_produced": self.produced,
                "daskgen_info": self.get_info,
            }
        )
        scheduler.stream_handlers.update(
            {
                "daskgen-take": self.take,
                "daskgen-cancel": self.cancel_handler,
                "daskgen-abandon": self.abandon,
                "daskgen-declare": self.declare,
            }
        )
        scheduler.extensions["daskgen"] = self
        from daskgen import dashboard
        from daskgen.worker import GeneratorWorkerPlugin

        dashboard.install(scheduler, self)
        from distributed.protocol import pickle

        await scheduler.register_worker_plugin(
            None,
            pickle.dumps(GeneratorWorkerPlugin()),
            name=PLUGIN_NAME,
            idempotent=True,
        )

    async def close(self) -> None:
        from daskgen import dashboard

        dashboard.uninstall(self)

    # ---------------------------------------------------------------- submission

    def update_graph(
        self,
        scheduler: Scheduler,
        *,
        client: str,
        keys: set[Any],
        tasks: list[Any],
        annotations: dict[str, dict[Any, Any]],
        priority: dict[Any, tuple[Any, ...]],
        stimulus_id: str,
        **kwargs: Any,
    ) -> None:
        metas = annotations.get(ANNOTATION)
        if not metas:
            return
        for key, meta in metas.items():
            ts = scheduler.tasks.get(key)
            if ts is None or key in self.by_driver:
                continue
            _compat.set_allowed_deaths(
                ts, scheduler.allowed_failures, int(meta["max_retries"])
            )
            if meta["mode"] == "plain":
                continue
            g = GenState(
                gen_id=meta["gen_id"],
                driver=key,
                prefix=meta["prefix"],
                client=client,
                name=meta["name"],
                mode=meta["mode"],
                num_returns=meta.get("num_returns"),
                backpressure=meta.get("backpressure"),
                max_retries=int(meta["max_retries"]),
                pseudo=None
                if meta["mode"] == "dynamic"
                else f"daskgen-{meta['gen_id']}",
            )
            self.generators[g.gen_id] = g
            self.by_driver[key] = g
            self.by_prefix[g.prefix] = g
            if g.pseudo:
                # Ray semantics: the call runs to its end even if the caller
                # drops every handle. The pseudo-client lets go when it ends.
                scheduler.client_desires_keys([key], g.pseudo)

    async def declare(
        self,
        gen_id: str,
        client: str | None = None,
        prefix: str | None = None,
        n: int = 0,
        name: str = "",
        driver: Any = None,
    ) -> None:
        """Create a static call's N item tasks (a client stream handler).

        The client sends this right after the driver's update-graph. The
        scheduler awaits a coroutine stream handler before it reads that
        client's next message, so every item exists, and is wanted by the
        caller, before anything else the caller sends (a task depending on an
        item, a release) is handled. Creating them in chunks lets the driver,
        already sent to its worker, start meanwhile; an item it produces
        before its chunk exists is created on the spot. Items stay released
        until produced (moving 10,000 tasks to waiting up front would only
        cost time); those never produced err with the driver.
        """
        s = self.scheduler
        g = self.generators.get(gen_id)
        if (
            s is not None
            and g is None
            and driver is not None
            and driver not in s.tasks
            and client in s.clients
        ):
            # The call never reached this plugin and its driver does not
            # exist: the scheduler rejected its graph (the driver's Future
            # says why). Its items would never exist; the client fails them.
            # (A call that reused the key of a live call is skipped by
            # update_graph too, but its driver key exists: nothing to do.)
            s.client_send(
                client,
                {"op": "daskgen-rejected", "prefix": prefix, "n": n, "name": name},
            )
            return
        if s is None or g is None or g.mode != "static" or not g.num_returns:
            return
        dts = s.tasks.get(g.driver)
        if dts is None:
            return
        prio = dts.priority or (0, 0, 0)
        # Let the driver's compute-task, queued by update-graph just before,
        # leave for its worker before the first chunk.
        await asyncio.sleep(0)
        chunk = 16  # a quarter of a millisecond: the event loop stays responsive
        for start in range(0, g.num_returns, chunk):
            keys = []
            for i in range(start, min(start + chunk, g.num_returns)):
                key = g.item_key(i)
                if key not in s.tasks:
                    spec = g.item_spec()
                    _compat.create_item(s, key, spec, dts, (*prio, i))
                keys.append(key)
            s.client_desires_keys(keys, g.client)
            g.declared = start + len(keys)
            if dts.state == "erred":
                # The driver failed before this message arrived (a busy
                # scheduler may read it late): these items err with it too.
                self._err_unproduced(g)
            if g.declared < g.num_returns:
                await asyncio.sleep(0)
        if dts.state in ("memory", "erred"):
            self._release_pseudo(g)  # it waited for the declaration

    # ------------------------------------------------------- driver -> scheduler

    def produced(
        self,
        gen_id: str,
        run_id: int,
        worker: str,
        items: list[tuple[int, int, bytes | None, str]],
        end: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Handle a batch of stored yields from a driver (an RPC).

        ``items`` holds ``(index, nbytes, pickled type, type name)``. The reply
        says which indices to drop from the worker's data (no one needs them),
        whether to stop, and the backpressure limit.
        """
        s = self.scheduler
        assert s is not None
        g = self.generators.get(gen_id)
        dts = s.tasks.get(g.driver) if g else None
        if (
            g is None
            or dts is None
            or dts.state != "processing"
            or dts.processing_on is None
            or dts.processing_on.address != worker
            or dts.run_id != run_id
        ):
            # A stale attempt: the driver was rescheduled, released or forgotten.
            return {
                "stop": True,
                "stale": True,
                "drop": [i for i, *_ in items],
                "limit": None,
            }
        ws = dts.processing_on
        stimulus_id = f"daskgen-produced-{time.time()}"
        drop: list[int] = []
        complete: list[tuple[TaskState, int, bytes | None, str]] = []
        new: list[TaskState] = []
        inconsistent = None
        start_produced = g.produced
        for i, nbytes, typ, typename in items:
            if g.final is not None and i >= g.final:
                inconsistent = i + 1
                drop.append(i)
                continue
            key = g.item_key(i)
            ts = s.tasks.get(key)
            if ts is None and g.mode == "static" and i >= g.declared:
                # produced before `declare` reached it: create it now, wanted
                # by the caller (declare skips existing keys)
                ts = _compat.create_item(
                    s,
                    key,
                    g.item_spec(),
                    dts,
                    (*(dts.priority or ()), i),
                )
                s.client_desires_keys([key], g.client)
                new.append(ts)
                complete.append((ts, nbytes, typ, typename))
            elif ts is None:
                if g.mode == "static" or i < g.produced or g.abandoned:
                    drop.append(i)  # released before it was produced
                else:
                    ts = _compat.create_item(
                        s,
                        key,
                        g.item_spec(),
                        dts,
                        (*(dts.priority or ()), i),
                    )
                    new.append(ts)
                    complete.append((ts, nbytes, typ, typename))
            elif ts.state == "waiting" and ts.waiting_on == {dts}:
                complete.append((ts, nbytes, typ, typename))
            elif ts.state == "released" and (ts.who_wants or ts.waiters):
                new.append(ts)
                complete.append((ts, nbytes, typ, typename))
            else:
                drop.append(i)  # a replayed duplicate, or nobody wants it
            if i >= g.produced:
                g.produced = i + 1
                g.nbytes += nbytes
                self.totals["items"] += 1
                self.totals["bytes"] += nbytes
        client_msgs: dict[str, list[dict[str, Any]]] = {}
        if new:
            if g.mode != "static" and not g.abandoned:
                s.client_desires_keys(
                    [ts.key for ts in new if not ts.who_wants], g.client
                )
            s.transitions({ts.key: "waiting" for ts in new}, stimulus_id)
        if g.mode != "static" and g.produced > start_produced and not g.abandoned:
            # The caller makes its Futures before their key-in-memory arrives.
            client_msgs[g.client] = [
                {"op": "daskgen-items", "gen_id": gen_id, "produced": g.produced}
            ]
        complete = [c for c in complete if c[0].state == "waiting"]
        _compat.complete_items(s, dts, ws, complete, stimulus_id, client_msgs)
        s.send_all(client_msgs, {})

        reply: dict[str, Any] = {"stop": g.cancelled, "drop": drop, "limit": g.limit}
        if inconsistent is not None:
            reply["error"] = _replay_message(g, inconsistent)
        if end is not None:
            reply.update(self._end(g, dts, end))
        self._update_pause(g)
        return reply

    def _end(self, g: GenState, dts: TaskState, end: dict[str, Any]) -> dict[str, Any]:
        """The driver's generator ended (returned or raised)."""
        count = end["count"]
        error = end.get("error")
        if end.get("replay"):
            return {}
        if end.get("cancelled"):
            g.error = end.get("text")
            dts.retries = 0
            return {"raise": True}
        if error is None and g.final is not None and count != g.final:
            return {"error": _replay_message(g, count)}
        if error is None and count < g.produced:
            return {"error": _replay_message(g, count)}
        if error is None:
            g.final = count
            return {}
        g.error = end.get("text")
        retry = bool(end.get("retryable")) and (dts.retries or 0) > 0
        if not end.get("retryable"):
            dts.retries = 0
        if g.mode != "streaming" or retry:
            return {"raise": True}
        # Streaming: the error becomes one more item, after the last value.
        g.final = count + 1
        s = self.scheduler
        assert s is not None
        key = g.item_key(count)
        if key not in s.tasks and not g.abandoned:
            spec = _compat.Task(key, _raise_error, _compat.TaskRef(dts.key), error)
            ts = _compat.create_item(s, key, spec, dts, (*(dts.priority or ()), count))
            s.client_desires_keys([key], g.client)
            s.transitions({key: "waiting"}, f"daskgen-error-{time.time()}")
            s.client_send(
                g.client,
                {"op": "daskgen-items", "gen_id": g.gen_id, "produced": count + 1},
            )
            del ts
        g.produced = max(g.produced, count + 1)
        return {"raise": False}

    # ------------------------------------------------------- client -> scheduler

    def take(self, gen_id: str, taken: int, client: str | None = None) -> None:
        """The consumer took items up to ``taken`` (backpressure and dashboard)."""
        g = self.generators.get(gen_id)
        if g is None or taken <= g.taken:
            return
        g.taken = taken
        if g.backpressure is not None and g.worker and g.state in ("running", "paused"):
            assert self.scheduler is not None
            self.scheduler.worker_send(
                g.worker,
                {"op": "daskgen-limit", "gen_id": gen_id, "limit": g.limit},
            )
        self._update_pause(g)

    def abandon(self, gen_id: str, client: str | None = None) -> None:
        """The caller dropped its handle: free items as soon as they're produced."""
        g = self.generators.get(gen_id)
        if g is not None:
            g.abandoned = True
            if g.backpressure is not None:
                g.backpressure = None  # nobody will take: let it run to its end
                self.take(gen_id, g.taken + 1)

    def cancel_handler(self, gen_id: str, client: str | None = None) -> None:
        g = self.generators.get(gen_id)
        if g is not None:
            self.cancel(g)

    def cancel(self, g: GenState) -> None:
        """Stop the generator at its next yield; its driver then errs."""
        if g.cancelled or g.state in ("finished", "erred"):
            return
        g.cancelled = True
        assert self.scheduler is not None
        dts = self.scheduler.tasks.get(g.driver)
        if dts is not None and dts.state == "processing" and dts.processing_on:
            self.scheduler.worker_send(
                dts.processing_on.address, {"op": "daskgen-stop", "gen_id": g.gen_id}
            )
        elif dts is None or dts.state in ("released", "forgotten"):
            self._release_pseudo(g)

    # ------------------------------------------------------------------- hooks

    def transition(
        self,
        key: Any,
        start: str,
        finish: str,
        *args: Any,
        stimulus_id: str = "",
        **kwargs: Any,
    ) -> None:
        g = self.by_driver.get(key)
        if g is not None:
            self._driver_transition(g, start, finish, stimulus_id, kwargs)
            return
        if type(key) is tuple and key and key[0] in self.by_prefix:
            g = self.by_prefix[key[0]]
            if finish == "forgotten" or (start == "memory" and finish == "released"):
                g.released += 1
            if (
                finish in ("released", "forgotten")
                and stimulus_id.startswith("cancel-key")
                and g.mode == "static"
            ):
                self.cancel(g)

    def _driver_transition(
        self, g: GenState, start: str, finish: str, stimulus_id: str, kw: dict[str, Any]
    ) -> None:
        s = self.scheduler
        assert s is not None
        now = time.time()
        if finish == "processing":
            dts = s.tasks[g.driver]
            g.attempts += 1
            g.state = "running"
            g.worker = dts.processing_on.address if dts.processing_on else None
            g.run_id = dts.run_id
            g.started = g.started or now
            if g.cancelled and g.worker:
                s.worker_send(g.worker, {"op": "daskgen-stop", "gen_id": g.gen_id})
        elif finish in ("memory", "erred"):
            self._end_pause(g, now)
            g.stopped = now
            if finish == "memory":
                g.state = "finished"
            else:
                g.state = "cancelled" if g.cancelled else "erred"
                g.error = g.error or _error_text(s.tasks.get(g.driver), kw)
            if g.mode != "static" and not g.ended:
                g.ended = True
                s.client_send(
                    g.client,
                    {
                        "op": "daskgen-items",
                        "gen_id": g.gen_id,
                        "produced": g.produced,
                        "end": finish,
                    },
                )
            if finish == "erred":
                g.error = (
                    self._explain_killed(g.driver, g.name, g.max_retries, kw) or g.error
                )
                self._orphan(g)
                asyncio.get_running_loop().call_soon(self._err_unproduced, g)
            asyncio.get_running_loop().call_soon(self._release_pseudo, g)
        elif finish == "forgotten":
            self._forget(g)
        elif start == "processing" and finish in ("released", "waiting"):
            self._end_pause(g, now)
            cur = s.tasks.get(g.driver)
            if cur is not None and not cur.who_wants and not cur.waiters:
                # Nobody wants it any more (a dropped or cancelled dynamic call):
                # the worker cancels the driver, which stops at its next yield.
                g.cancelled = True
                g.state = "cancelled"
            else:
                g.state = "waiting"  # worker died or retry: runs again

    def _explain_killed(
        self, key: Any, name: str, max_retries: int, kw: dict[str, Any]
    ) -> str | None:
        """Replace Dask's KilledWorker, which counts the global allowed-failures,
        with one that counts this call's max_retries (before the items err)."""
        from distributed.protocol import pickle

        from daskgen.exceptions import GeneratorKilledError

        exc = kw.get("exception")
        if not isinstance(exc, bytes) or b"KilledWorker" not in exc:
            return None
        s = self.scheduler
        ts = s.tasks.get(key) if s else None
        if ts is None or cast(Any, ts.exception) is not exc:
            return None
        deaths = max_retries + 1
        new = GeneratorKilledError(
            f"the worker running {name!r} (task {key!r}) died "
            f"{deaths} time{'s' if deaths > 1 else ''}, and max_retries="
            f"{max_retries} allows {max_retries} re-run"
            f"{'s' if max_retries != 1 else ''}. The last worker was "
            f"{kw.get('worker')}. A worker usually dies for exceeding its memory "
            "limit: check the worker logs, yield smaller values, or give workers "
            "more memory. See https://distributed.dask.org/en/stable/killed.html"
        )
        ts.exception = pickle.dumps(new)
        ts.exception_text = repr(new)
        return f"GeneratorKilledError: {new}"

    def _err_unproduced(self, g: GenState) -> None:
        """Items never produced (still released) err with the driver's error,
        as the waiting ones did through the dependency."""
        s = self.scheduler
        dts = s.tasks.get(g.driver) if s else None
        if s is None or dts is None or dts.state != "erred":
            return
        recs: dict[Any, Any] = {}
        for ts in dts.dependents:
            if ts.state == "released" and (ts.who_wants or ts.waiters):
                ts.exception_blame = dts.exception_blame or dts
                recs[ts.key] = "erred"
        s.transitions(recs, f"daskgen-unproduced-{time.time()}")

    def _orphan(self, g: GenState) -> None:
        """The driver failed for good: its produced items cannot be recomputed."""
        s = self.scheduler
        dts = s.tasks.get(g.driver) if s else None
        if s is None or dts is None or dts.state != "erred":
            return
        reason = g.error or "its generator failed"
        _compat.orphan_items(
            s, dts, lambda key: _compat.Task(key, _lost_item, str(key), g.name, reason)
        )

    def _release_pseudo(self, g: GenState) -> None:
        s = self.scheduler
        if s is None or g.pseudo is None:
            return
        if g.mode == "static" and g.declared < (g.num_returns or 0):
            return  # keep the call alive until `declare` made its items
        if g.pseudo in s.clients:
            s.client_releases_keys(
                keys=[g.driver],
                client=g.pseudo,
                stimulus_id=f"daskgen-release-{time.time()}",
            )
            cs = s.clients.get(g.pseudo)
            if cs is not None and not cs.wants_what:
                del s.clients[g.pseudo]
        if g.driver not in s.tasks:
            self._forget(g)

    def _forget(self, g: GenState) -> None:
        if self.generators.pop(g.gen_id, None) is None:
            return
        self.by_driver.pop(g.driver, None)
        self.by_prefix.pop(g.prefix, None)
        if g.state not in ("finished", "erred", "cancelled"):
            g.state = "cancelled" if g.cancelled else "finished"
        g.stopped = g.stopped or time.time()
        self.history.append(g.info())

    def remove_client(self, scheduler: Scheduler, client: str) -> None:
        for g in list(self.generators.values()):
            if g.client == client:
                g.abandoned = True
                self.cancel(g)

    def restart(self, scheduler: Scheduler) -> None:
        for g in list(self.generators.values()):
            self._forget(g)

    # ------------------------------------------------------------- backpressure

    def _update_pause(self, g: GenState) -> None:
        limit = g.limit
        now = time.time()
        if limit is not None and g.produced >= limit and g.state == "running":
            g.state = "paused"
            g.pauses += 1
            g.paused_since = now
            self.totals["pauses"] += 1
        elif g.state == "paused" and (limit is None or g.produced < limit):
            self._end_pause(g, now)
            g.state = "running"

    def _end_pause(self, g: GenState, now: float) -> None:
        if g.paused_since is not None:
            d = now - g.paused_since
            g.paused_total += d
            self.totals["paused_seconds"] += d
            g.paused_since = None

    # ---------------------------------------------------------------- queries

    def get_info(self, history: bool = True) -> list[dict[str, Any]]:
        live = [g.info() for g in self.generators.values()]
        return live + (list(self.history) if history else [])


# --------------------------------------------------------------------- helpers


def _unproduced_item(driver_result: Any) -> Any:
    """Run spec of an item: it only runs if its driver ended without storing it."""
    raise RuntimeError(
        "this item of a generator call was lost, and its generator could not "
        "be re-run because its finished driver task is still held in memory "
        "(for example by completed() or a dynamic call's outer Future). Release "
        "that Future to let a lost item be recomputed."
    )


def _lost_item(key: str, name: str, reason: str) -> Any:
    """Run spec of an item lost after its generator failed for good."""
    from daskgen.exceptions import ItemLostError

    raise ItemLostError(
        f"item {key} of {name!r} was lost with its worker, and its generator "
        f"cannot run again to recompute it because it failed: {reason}"
    )


def _raise_error(driver_result: Any, error: dict[str, Any]) -> Any:
    """Run spec of a stream's error item: raise the generator's exception."""
    from distributed.core import clean_exception

    _, exc, tb = clean_exception(**error)
    assert exc is not None
    raise exc.with_traceback(tb)


def _replay_message(g: GenState, count: int) -> str:
    return (
        f"a re-run of generator {g.name!r} (attempt {g.attempts}) yielded "
        f"{count} items, but an earlier run yielded "
        f"{g.final if g.final is not None else 'at least ' + str(g.produced)}. "
        "Make the generator deterministic in its length, or submit it with "
        "max_retries=0."
    )


def _error_text(ts: TaskState | None, kw: dict[str, Any]) -> str | None:
    if ts is not None and ts.exception_text:
        return str(ts.exception_text)
    exc = kw.get("exception")
    if isinstance(exc, bytes):  # e.g. KilledWorker from remove_worker
        try:
            from distributed.protocol import pickle

            e = pickle.loads(exc)
            return f"{type(e).__name__}: {e}"
        except Exception:
            return None
    return None
