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
from distributed.protocol import pickle as _pickle
from distributed.utils import log_errors

from daskgen import _compat, _config, _rules, dashboard, metrics
from daskgen._core import (
    ANNOTATION,
    ENDED,
    PLUGIN_NAME,
    CallSpec,
    Mode,
    Op,
    State,
    completed,
)
from daskgen._rules import End, Item, ItemView
from daskgen.exceptions import actor_died_error, killed_error
from daskgen.worker import GeneratorWorkerPlugin

if TYPE_CHECKING:
    from distributed.scheduler import Scheduler, TaskState

logger = logging.getLogger(__name__)

#: States a generator call goes through, as shown on the dashboard.
STATES = tuple(State)


@dataclass
class GenState:
    """What the scheduler knows about one generator call."""

    spec: CallSpec
    driver: Any  # the driver task's key
    backpressure: int | None  # the spec's, until the caller drops its handle
    submitted: float = field(default_factory=time.time)
    state: State = State.WAITING
    worker: str | None = None
    run_id: int | None = None
    attempts: int = 0  # runs started: the first, and each re-run (max_retries)
    deaths: int = 0  # runs ended by the death of their worker
    base: int = 0  # the driver's TaskState.suspicious when its run started
    run_produced: int = 0  # highest index + 1 reported by the current run
    # items lost while the current run had passed them: to ask the driver for
    # (one rebuild pass per event-loop turn), and asked for in this run
    pending_rebuild: set[int] = field(default_factory=set)
    rebuilding: set[int] = field(default_factory=set)
    produced: int = 0  # items reported, highest index + 1 over all attempts
    final: int | None = None  # item count of an attempt that ran to its end
    taken: int = 0
    released: int = 0
    # Requests and events, not states (``state`` says where the call is):
    abandoned: bool = False  # the caller dropped its handle: drop items as produced
    cancelled: bool = False  # a cancel was asked for: the state follows when it stops
    nbytes: int = 0
    started: float | None = None
    stopped: float | None = None
    pauses: int = 0
    paused_since: float | None = None
    paused_total: float = 0.0
    error: str | None = None
    raised: bool = False  # the last run raised: a stream ends with an error item
    ended: bool = False  # the handle was told the call ended (told once)
    declared: int = 0  # static items created so far
    actor_worker: str | None = None  # an actor call: where its actor lives
    grant: int = 0  # a granted stream (spec.granted): its limit, never lowered
    _spec: Any = None

    @classmethod
    def from_spec(cls, spec: CallSpec, driver: Any) -> GenState:
        return cls(spec=spec, driver=driver, backpressure=spec.backpressure)

    # What the client submitted, by name (GenState.spec).

    @property
    def gen_id(self) -> str:
        return self.spec.gen_id

    @property
    def prefix(self) -> str:
        return self.spec.prefix

    @property
    def client(self) -> str:
        return self.spec.client

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def mode(self) -> Mode:
        return self.spec.mode

    @property
    def num_returns(self) -> int | None:
        return self.spec.num_returns

    @property
    def max_retries(self) -> int:
        return self.spec.max_retries

    @property
    def end_key(self) -> str | None:
        return self.spec.end_key

    @property
    def pseudo(self) -> str:
        """The scheduler-side client that keeps the call running (Ray semantics)."""
        return self.spec.pseudo_client

    def item_key(self, i: int) -> tuple[str, int]:
        return self.spec.item_key(i)

    @property
    def budget(self) -> int:
        """How many runs the call may have: the first and max_retries re-runs."""
        return self.max_retries + 1

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
        if self.spec.granted:
            return None if self.abandoned else self.grant
        return _rules.limit(self.taken, self.backpressure)

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
            "mode": self.mode.value,
            "num_returns": self.num_returns,
            "backpressure": self.backpressure,
            "state": self.state.value,
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
            "actor": self.spec.actor,
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
        self.by_end: dict[Any, GenState] = {}
        #: Granted streams per actor key, oldest first (see _regrant).
        self.by_actor: dict[str, list[GenState]] = {}
        #: Plain functions submitted through daskgen: key -> max_retries.
        self.plain: dict[Any, int] = {}
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
        # log_errors: a failing handler names itself in the scheduler's log.
        scheduler.handlers.update(
            {
                Op.PRODUCED: log_errors(self.produced),
                Op.INFO: log_errors(self.get_info),
                Op.WHERE: log_errors(self.where),
            }
        )
        scheduler.stream_handlers.update(
            {
                Op.TAKE: log_errors(self.take),
                Op.CANCEL: log_errors(self.cancel_handler),
                Op.ABANDON: log_errors(self.abandon),
                Op.DECLARE: log_errors(self.declare),
            }
        )
        scheduler.extensions[PLUGIN_NAME] = self
        _KilledLogFilter.install(self)

        dashboard.install(scheduler, self)
        if _compat.has_bokeh_dashboard(scheduler):
            _add_generators_page(scheduler)
        try:  # monitoring must never keep the plugin from starting
            metrics.register()
        except Exception:  # pragma: no cover - a prometheus_client problem
            logger.warning("daskgen: Prometheus metrics not registered", exc_info=True)
        from distributed.protocol import pickle

        await scheduler.register_worker_plugin(
            None,
            pickle.dumps(GeneratorWorkerPlugin()),
            name=PLUGIN_NAME,
            idempotent=True,
        )

    async def close(self) -> None:
        _KilledLogFilter.uninstall(self)
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
        for key in keys if self.by_end else ():
            g = self.by_end.get(key)
            if g is not None:
                # The end marker comes after its driver (a second submit): if
                # the driver has returned already, the marker needs it no more.
                self._detach_end(g)
        metas = annotations.get(ANNOTATION)
        if not metas:
            return
        for key, meta in metas.items():
            ts = scheduler.tasks.get(key)
            if ts is None or key in self.by_driver:
                continue
            spec = CallSpec.from_annotation(meta)
            if spec.mode is Mode.PLAIN:
                _compat.set_suspicious(  # Dask fails it after max_retries + 1 deaths
                    ts, scheduler.allowed_failures - spec.max_retries
                )
                self.plain[key] = spec.max_retries
                continue
            g = GenState.from_spec(spec, key)
            if spec.actor is not None:
                g.actor_worker = self._actor_worker(g)
                if g.actor_worker is None:  # the actor died before the call came
                    asyncio.get_running_loop().call_soon(self._fail_actor_call, g, None)
            self.generators[g.gen_id] = g
            self.by_driver[key] = g
            self.by_prefix[g.prefix] = g
            if g.end_key is not None:
                self.by_end[g.end_key] = g
            if spec.granted:
                assert spec.actor is not None
                self.by_actor.setdefault(spec.actor, []).append(g)
            if g.mode is not Mode.DYNAMIC:
                # Ray semantics: the call runs to its end even if the caller
                # drops every handle. The pseudo-client lets go when it ends.
                # (Dropping a DynamicFuture stops its first run: nobody could
                # ever get its items.)
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
        if self._graph_rejected(gen_id, client, driver):
            assert client is not None
            self._tell_rejected(client, prefix, n, name)
            return
        g = self.generators.get(gen_id)
        dts = self._static_driver(g)
        if g is None or dts is None:
            return
        # Let the driver's compute-task, queued by update-graph just before,
        # leave for its worker before the first chunk.
        await asyncio.sleep(0)
        await self._declare_items(g, dts)
        if dts.state in ("memory", "erred"):
            self._release_pseudo(g)  # it waited for the declaration

    def _graph_rejected(self, gen_id: str, client: str | None, driver: Any) -> bool:
        """The call never reached this plugin and its driver does not exist:
        the scheduler rejected its graph (the driver's Future says why).

        (A call that reused the key of a live call is skipped by update_graph
        too, but its driver key exists: nothing to do.)
        """
        s = self.scheduler
        return (
            s is not None
            and gen_id not in self.generators
            and driver is not None
            and driver not in s.tasks
            and client in s.clients
        )

    def _tell_rejected(
        self, client: str, prefix: str | None, n: int, name: str
    ) -> None:
        """Its items will never exist: the client fails their Futures."""
        assert self.scheduler is not None
        self.scheduler.client_send(
            client, {"op": Op.REJECTED, "prefix": prefix, "n": n, "name": name}
        )

    def _static_driver(self, g: GenState | None) -> TaskState | None:
        """The driver task of a static call with items to declare, if any."""
        s = self.scheduler
        if s is None or g is None or g.mode is not Mode.STATIC or not g.num_returns:
            return None
        return s.tasks.get(g.driver)

    async def _declare_items(self, g: GenState, dts: TaskState) -> None:
        """Create the N items in chunks, each wanted by the caller; yield to
        the event loop between chunks."""
        s = self.scheduler
        assert s is not None and g.num_returns is not None
        prio = dts.priority or (0, 0, 0)
        chunk = 16  # a quarter of a millisecond: the event loop stays responsive
        for start in range(0, g.num_returns, chunk):
            keys = []
            for i in range(start, min(start + chunk, g.num_returns)):
                key = g.item_key(i)
                if key not in s.tasks:
                    _compat.create_item(s, key, g.item_spec(), dts, (*prio, i))
                keys.append(key)
            s.client_desires_keys(keys, g.client)
            g.declared = start + len(keys)
            if dts.state == "erred":
                # The driver failed before this message arrived (a busy
                # scheduler may read it late): these items err with it too.
                self._err_unproduced(g)
            if g.declared < g.num_returns:
                await asyncio.sleep(0)

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

        ``items`` holds ``(index, nbytes, pickled type, type name)``; nbytes
        is -1 when the worker does not hold that value (it was fetching a copy
        of it). The reply says which indices to drop from the worker's data
        (no one needs them; the worker frees only values this attempt stored),
        whether to stop, and the backpressure limit.
        """
        run = self._current_run(gen_id, run_id, worker)
        if run is None:
            # A stale attempt: the driver was rescheduled, released or forgotten.
            return {"stop": True, "stale": True, "drop": [i for i, *_ in items]}
        g, dts = run
        g.worker = worker  # (work stealing may have moved a driver not started)
        batch = self._sort_items(g, dts, items)
        self._store_items(g, dts, batch)
        if g.spec.granted:
            self._regrant(g)  # it yielded: its next step of grant
        reply = self._reply(g, dts, batch, end)
        self._update_pause(g)
        return reply

    def _current_run(
        self, gen_id: str, run_id: int, worker: str
    ) -> tuple[GenState, TaskState] | None:
        """The call and its driver task, if the report is from the driver's
        current run (its run_id, on the worker it is processing on)."""
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
            return None
        return g, dts

    def _sort_items(
        self,
        g: GenState,
        dts: TaskState,
        items: list[tuple[int, int, bytes | None, str]],
    ) -> _Batch:
        """Decide each yield's fate (:func:`daskgen._rules.classify`), create the
        new item tasks, and count what the call produced."""
        s = self.scheduler
        assert s is not None
        batch = _Batch(produced_before=g.produced)
        for i, nbytes, typ, typename in items:
            g.run_produced = max(g.run_produced, i + 1)
            key = g.item_key(i)
            ts = s.tasks.get(key)
            what = _rules.classify(
                mode=g.mode,
                index=i,
                held=nbytes >= 0,
                item=None if ts is None else _item_view(ts, dts),
                final=g.final,
                produced=g.produced,
                declared=g.declared,
                abandoned=g.abandoned,
            )
            if what is Item.PAST_END:
                batch.past_end = i + 1
                batch.drop.append(i)
                continue
            if what is Item.DROP:
                batch.drop.append(i)
            elif what in (Item.CREATE, Item.CREATE_WANTED):
                prio = (*(dts.priority or ()), i)
                ts = _compat.create_item(s, key, g.item_spec(), dts, prio)
                if what is Item.CREATE_WANTED:  # declare skips existing keys
                    s.client_desires_keys([key], g.client)
                batch.new.append(ts)
            elif what is Item.REVIVE:
                batch.new.append(cast("TaskState", ts))
            elif what is Item.COMPLETE:
                g.rebuilding.discard(i)
            if what in _rules.STORED:
                batch.complete.append((cast("TaskState", ts), nbytes, typ, typename))
            if i >= g.produced:
                g.produced = i + 1
                g.nbytes += max(nbytes, 0)
                self.totals["items"] += 1
                self.totals["bytes"] += max(nbytes, 0)
        return batch

    def _store_items(self, g: GenState, dts: TaskState, batch: _Batch) -> None:
        """New items to waiting, the caller told of a stream's new items, and
        every stored item to memory on the driver's worker, in one go."""
        s = self.scheduler
        assert s is not None and dts.processing_on is not None
        stimulus_id = f"daskgen-produced-{time.time()}"
        streaming = g.mode is not Mode.STATIC and not g.abandoned
        if batch.new:
            if streaming:
                s.client_desires_keys(
                    [ts.key for ts in batch.new if not ts.who_wants], g.client
                )
            s.transitions({ts.key: "waiting" for ts in batch.new}, stimulus_id)
        client_msgs: dict[str, list[dict[str, Any]]] = {}
        if streaming and g.produced > batch.produced_before:
            # The caller makes its Futures before their key-in-memory arrives.
            client_msgs[g.client] = [
                {"op": Op.ITEMS, "gen_id": g.gen_id, "produced": g.produced}
            ]
        complete = [c for c in batch.complete if c[0].state == "waiting"]
        _compat.complete_items(
            s, dts, dts.processing_on, complete, stimulus_id, client_msgs
        )
        s.send_all(client_msgs, {})

    def _reply(
        self, g: GenState, dts: TaskState, batch: _Batch, end: dict[str, Any] | None
    ) -> dict[str, Any]:
        """What the driver is told: values to drop, whether to stop, the
        backpressure limit and, after its last report, how its run ends."""
        reply: dict[str, Any] = {
            "stop": g.cancelled,
            "drop": batch.drop,
            "limit": g.limit,
        }
        if batch.past_end is not None:
            reply["error"] = _replay_message(g, batch.past_end)
        if end is not None:
            reply.update(self._end(g, dts, end))
            if not (end.get("replay") or reply.get("error") or reply.get("raise")):
                reply["completed"] = self._complete_end(g, dts, dts.processing_on)
        return reply

    def _complete_end(self, g: GenState, dts: TaskState, ws: Any) -> bool:
        """The run ended and its driver will return: the end marker is done
        now, on the worker that stored its ``None`` with the final report, so
        ``completed()`` is done when the stream says it ended."""
        s = self.scheduler
        assert s is not None
        ets = s.tasks.get(g.end_key) if g.end_key is not None else None
        if ets is None or ets.state != "waiting" or ets.waiting_on != {dts}:
            return False
        if g.pseudo:
            # Keep the driver until it returns (the end marker stops wanting it).
            s.client_desires_keys([g.driver], g.pseudo)
        # The handle hears of the end before the marker is done (one stream,
        # in order): a caller who waited for completed() finds it ended.
        self._send_end(g, "memory")
        client_msgs: dict[str, list[dict[str, Any]]] = {}
        _compat.complete_items(
            s,
            dts,
            ws,
            [(ets, 16, _NONE_TYPE, "builtins.NoneType")],
            f"daskgen-completed-{time.time()}",
            client_msgs,
        )
        s.send_all(client_msgs, {})
        return True

    def _end(self, g: GenState, dts: TaskState, end: dict[str, Any]) -> dict[str, Any]:
        """The driver's generator ended (returned or raised)."""
        count = end["count"]
        outcome = _rules.end_outcome(
            mode=g.mode,
            count=count,
            raised=end.get("error") is not None,
            retryable=bool(end.get("retryable")),
            replay=bool(end.get("replay")),
            cancelled=bool(end.get("cancelled")),
            final=g.final,
            produced=g.produced,
            attempts=g.attempts,
            budget=g.budget,
        )
        if outcome is End.IGNORE:
            return {}
        if outcome is End.INCONSISTENT:
            return {"error": _replay_message(g, count)}
        if outcome is End.FINISHED:
            g.final = count
            return {}
        g.error = end.get("text")
        _compat.set_retries(dts, 1 if outcome is End.RETRY else 0)
        if outcome is End.ERROR_ITEM:
            self._add_error_item(g, dts, count, end["error"])
        return _rules.end_reply(outcome)

    def _add_error_item(
        self, g: GenState, dts: TaskState, count: int, error: dict[str, Any]
    ) -> None:
        """A stream's error becomes one more item, after the last value
        delivered (a re-run may fail before it caught up with an earlier one)."""
        s = self.scheduler
        assert s is not None
        # Lost items this run was to rebuild and did not reach raise the error.
        self._detach_waiting(
            g, dts, lambda key: _compat.Task(key, _raise_error, None, error), count
        )
        count = max(count, g.produced)
        g.final = count + 1
        g.raised = True
        key = g.item_key(count)
        if key not in s.tasks and not g.abandoned:
            spec = _compat.Task(key, _raise_error, _compat.TaskRef(dts.key), error)
            _compat.create_item(s, key, spec, dts, (*(dts.priority or ()), count))
            s.client_desires_keys([key], g.client)
            s.transitions({key: "waiting"}, f"daskgen-error-{time.time()}")
            s.client_send(
                g.client,
                {"op": Op.ITEMS, "gen_id": g.gen_id, "produced": count + 1},
            )
        g.produced = max(g.produced, count + 1)

    # ------------------------------------------------------- client -> scheduler

    def take(self, gen_id: str, taken: int, client: str | None = None) -> None:
        """The consumer took items up to ``taken`` (backpressure and dashboard)."""
        g = self.generators.get(gen_id)
        if g is None or taken <= g.taken:
            return
        g.taken = taken
        if g.spec.granted:
            self._regrant(g)
        elif g.backpressure is not None:
            self._send_limit(g)
        self._update_pause(g)

    def _send_limit(self, g: GenState) -> None:
        """Send the backpressure limit to the worker the driver runs on now.

        Not to ``g.worker``: work stealing moves a driver that has not
        started to another worker without a transition this plugin sees, and
        a limit sent to the first worker would leave the run paused for good.
        """
        s = self.scheduler
        assert s is not None
        dts = s.tasks.get(g.driver)
        if dts is not None and dts.state == "processing" and dts.processing_on:
            s.worker_send(
                dts.processing_on.address,
                {"op": Op.LIMIT, "gen_id": g.gen_id, "limit": g.limit},
            )

    def abandon(self, gen_id: str, client: str | None = None) -> None:
        """The caller dropped its handle: free items as soon as they're produced."""
        g = self.generators.get(gen_id)
        if g is None:
            return
        g.abandoned = True
        if g.spec.granted:
            self._send_limit(g)  # lifted: nobody takes, it runs to its end
            self._update_pause(g)
            self._regrant(g)  # its share goes to the actor's other streams
        elif g.backpressure is not None:
            # Nobody will take: lift the limit so that it runs to its end.
            g.backpressure = None
            self._send_limit(g)
            self._update_pause(g)

    def cancel_handler(self, gen_id: str, client: str | None = None) -> None:
        g = self.generators.get(gen_id)
        if g is not None:
            self.cancel(g)

    def cancel(self, g: GenState) -> None:
        """Stop the generator at its next yield; its driver then errs.

        A driver that is not running (waiting for its inputs, queued, or with
        no worker to run on) never will: the caller's Futures of the call that
        are not done err with GeneratorCancelledError at once, and every key
        the call holds is released.
        """
        if g.cancelled or g.state in (State.FINISHED, State.ERRED):
            return
        g.cancelled = True
        s = self.scheduler
        assert s is not None
        dts = s.tasks.get(g.driver)
        if dts is not None and dts.state == "processing" and dts.processing_on:
            s.worker_send(
                dts.processing_on.address, {"op": Op.STOP, "gen_id": g.gen_id}
            )
            return
        if dts is not None and dts.state in ("waiting", "queued", "no-worker"):
            self._cancel_not_started(g, dts)
        self._release_pseudo(g)

    def _cancel_not_started(self, g: GenState, dts: TaskState) -> None:
        from daskgen.exceptions import GeneratorCancelledError

        exc = GeneratorCancelledError(
            f"generator call {g.name!r} was cancelled before it started "
            f"(its task {g.driver!r} was {dts.state})"
        )
        self._fail_not_started(g, dts, exc, State.CANCELLED, "cancelled")

    def _fail_not_started(
        self, g: GenState, dts: TaskState, exc: BaseException, state: State, end: str
    ) -> None:
        """A call whose driver never ran (and never will): its Futures that the
        caller holds and that are not done err with ``exc``, and the keys are
        released."""
        s = self.scheduler
        assert s is not None
        g.state = state
        g.stopped = time.time()
        g.error = g.error or f"{type(exc).__name__}: {exc}"
        keys = [
            ts.key
            for ts in dts.dependents
            if ts.state in ("released", "waiting")
            and any(cs.client_key == g.client for cs in ts.who_wants or ())
        ]
        if g.client in s.clients and keys:
            from distributed.protocol import pickle

            blob = pickle.dumps(exc)
            for key in keys:
                s.client_send(
                    g.client,
                    {
                        "op": "task-erred",
                        "key": key,
                        "exception": blob,
                        "traceback": None,
                    },
                )
            self._send_end(g, end)
            s.client_releases_keys(
                keys=keys,
                client=g.client,
                stimulus_id=f"daskgen-{state.value}-{time.time()}",
            )

    # ----------------------------------------------------------------- actors

    def _actor_worker(self, g: GenState) -> str | None:
        """Where the call's actor lives (None: it is gone)."""
        s = self.scheduler
        ats = s.tasks.get(g.spec.actor) if s is not None and g.spec.actor else None
        if ats is None or ats.state != "memory" or not ats.who_has:
            return None
        return str(next(iter(ats.who_has)).address)

    def _fail_actor_call(self, g: GenState, worker: str | None) -> None:
        """The call's actor is gone (Dask does not restart actors): a call that
        has not started errs with ActorDiedError. (A running one errs when its
        worker's death is handled: see _explain_killed.)"""
        s = self.scheduler
        dts = s.tasks.get(g.driver) if s is not None else None
        if dts is None or g.state in ENDED:
            return
        assert s is not None
        exc = actor_died_error(str(g.spec.actor), g.name, worker)
        if not _compat.fail_task(s, g.driver, exc) and dts.state in (
            "waiting",
            "released",
        ):
            # not placed yet (it waits for its inputs): try again shortly
            asyncio.get_running_loop().call_later(0.1, self._fail_actor_call, g, worker)

    def remove_worker(self, scheduler: Scheduler, worker: str, **kwargs: Any) -> None:
        gone = [g for g in self.generators.values() if g.actor_worker == worker]
        if gone:
            loop = asyncio.get_running_loop()
            for g in gone:
                loop.call_soon(self._fail_actor_call, g, worker)

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
        g = self.by_end.get(key)
        if g is not None:
            if finish == "memory":
                # Done: a lost copy is rebuilt without the generator.
                assert self.scheduler is not None
                _compat.detach(self.scheduler, key, _compat.Task(key, completed, None))
            elif finish == "forgotten":
                self.by_end.pop(key, None)
            return
        if type(key) is tuple and key and key[0] in self.by_prefix:
            g = self.by_prefix[key[0]]
            if finish == "forgotten" or (start == "memory" and finish == "released"):
                g.released += 1
            if (
                finish in ("released", "forgotten")
                and stimulus_id.startswith("cancel-key")
                and g.mode is Mode.STATIC
            ):
                self.cancel(g)
            elif start == "memory" and finish == "released":
                self._item_lost(g, key)
            elif (
                start == "released"
                and finish == "waiting"
                and not stimulus_id.startswith("daskgen-produced")  # being completed
            ):
                self._item_needed(g, key)
            return
        if finish == "forgotten":
            self.plain.pop(key, None)

    def _item_lost(self, g: GenState, key: Any) -> None:
        """An item's last copy is gone (its worker died). If someone still
        wants it, it is rebuilt by re-running the generator (Dask lineage: it
        waits for the driver), unless that cannot happen: then it is cut loose
        from the driver with a run spec that raises why."""
        s = self.scheduler
        assert s is not None
        ts = s.tasks[key]
        dts = s.tasks.get(g.driver)
        if (
            not (ts.who_wants or ts.waiters)
            or dts is None
            or ts.run_spec is not g._spec
        ):
            return
        reason = None
        if g.cancelled:
            reason = "its generator call was cancelled"
        elif (
            self._passed(g, dts, key)
            and g.attempts >= g.budget
            or dts.state == "released"
            and g.attempts >= g.budget
        ):
            reason = _budget_reason(g)
        elif dts.state == "memory":
            # The driver's run just ended and its result is still held:
            # release it once this transition is through, so it runs again.
            asyncio.get_running_loop().call_soon(self._rerun, g)
        if reason is not None:
            _compat.detach(
                s, key, _compat.Task(key, _lost_item, str(key), g.name, reason)
            )

    def _passed(self, g: GenState, dts: TaskState, key: Any) -> bool:
        """The driver's running attempt has already yielded this item."""
        s = self.scheduler
        return (
            s is not None
            and dts.state == "processing"
            and dts.processing_on is not None
            and dts.processing_on.address in s.workers  # else it runs again
            and key[1] < g.run_produced
        )

    def _item_needed(self, g: GenState, key: Any) -> None:
        """An item waits for its driver again (lost, or freed and needed by a
        task being recomputed). If the running attempt has passed it, waiting
        for that run's end could wait forever (an endless stream, or one
        paused by backpressure until this very item is taken): the driver runs
        a second instance of the generator up to it at once, a re-run of the
        max_retries budget (one for the items of one event-loop turn)."""
        s = self.scheduler
        assert s is not None
        dts = s.tasks.get(g.driver)
        ts = s.tasks[key]
        if dts is None or ts.run_spec is not g._spec or not self._passed(g, dts, key):
            return
        if key[1] in g.rebuilding or key[1] in g.pending_rebuild:
            return
        if not g.pending_rebuild:
            if g.attempts >= g.budget:
                return  # _item_lost gave it its error (see there)
            g.attempts += 1
            asyncio.get_running_loop().call_soon(self._send_rebuild, g)
        g.pending_rebuild.add(key[1])

    def _send_rebuild(self, g: GenState) -> None:
        s = self.scheduler
        dts = s.tasks.get(g.driver) if s else None
        indices, g.pending_rebuild = sorted(g.pending_rebuild), set()
        if s is None or dts is None or dts.processing_on is None or not indices:
            return
        g.rebuilding.update(indices)
        s.worker_send(
            dts.processing_on.address,
            {"op": Op.REBUILD, "gen_id": g.gen_id, "indices": indices},
        )

    def _rerun(self, g: GenState) -> None:
        """Run a finished driver again for items that wait for it (lost while
        its last run was ending), if max_retries allows one more run."""
        s = self.scheduler
        dts = s.tasks.get(g.driver) if s else None
        if s is None or dts is None or dts.state != "memory":
            return
        if not any(
            ts.state in ("waiting", "processing", "queued", "no-worker")
            and ts.run_spec is g._spec
            for ts in dts.dependents
        ):
            return
        if g.attempts < g.budget:
            s.transitions({dts.key: "released"}, f"daskgen-rerun-{time.time()}")
            return
        reason = _budget_reason(g)
        self._detach_waiting(
            g,
            dts,
            lambda key: _compat.Task(key, _lost_item, str(key), g.name, reason),
            0,
        )

    def _detach_waiting(
        self, g: GenState, dts: TaskState, spec: Any, start: int
    ) -> None:
        """Items from ``start`` on that wait for ``dts`` but will not get a
        value from it run ``spec(key)`` instead (which raises why)."""
        s = self.scheduler
        assert s is not None
        recs: dict[Any, Any] = {}
        for ts in list(dts.dependents):
            if (
                ts.state == "waiting"
                and ts.run_spec is g._spec
                and cast(Any, ts.key)[1] >= start
            ):
                _compat.detach(s, ts.key, spec(ts.key))
                recs[ts.key] = "processing"
        if recs:
            s.transitions(recs, f"daskgen-unreachable-{time.time()}")

    def _driver_transition(
        self, g: GenState, start: str, finish: str, stimulus_id: str, kw: dict[str, Any]
    ) -> None:
        s = self.scheduler
        assert s is not None
        now = time.time()
        dts = s.tasks.get(g.driver)
        if finish == "processing":
            assert dts is not None
            g.attempts += 1
            g.run_produced = 0
            g.rebuilding.clear()
            g.state = State.RUNNING
            g.worker = dts.processing_on.address if dts.processing_on else None
            g.run_id = dts.run_id
            g.started = g.started or now
            # Dask fails the task once its deaths exceed allowed-failures:
            # start this run's count so that happens when no re-run is left.
            g.base = s.allowed_failures - max(g.budget - g.attempts, 0)
            _compat.set_suspicious(dts, g.base)
            if g.cancelled and g.worker:
                s.worker_send(g.worker, {"op": Op.STOP, "gen_id": g.gen_id})
            if g.spec.granted:
                self._send_limit(g)  # its driver waits for its grant
                self._regrant(g)
        elif start == "released" and finish == "waiting" and g.attempts:
            # A re-run (a rebuild of lost items): it runs to its end, whoever
            # still holds a handle, so its length is checked.
            g.state = State.WAITING
            if g.pseudo and dts is not None:
                s.client_desires_keys([g.driver], g.pseudo)
        elif finish in ("memory", "erred"):
            self._end_pause(g, now)
            g.stopped = now
            if finish == "memory":
                # A stream whose generator raised ends "memory": its error is
                # its last item.
                g.state = State.ERRED if g.raised else State.FINISHED
            else:
                g.state = State.CANCELLED if g.cancelled else State.ERRED
                g.error = g.error or _error_text(dts, kw)
            self._send_end(g, finish)
            if finish == "memory":
                # The generator returned: its end marker, if it has not run yet,
                # needs it no more (a worker death now must not re-run it).
                self._detach_end(g)
            if g.spec.granted:
                self._regrant(g)  # the unused part of its grant is free again
            loop = asyncio.get_running_loop()
            if finish == "erred":
                g.error = self._explain_killed(g, kw) or g.error
                self._orphan(g)
                loop.call_soon(self._err_unproduced, g)
            else:
                loop.call_soon(self._rerun, g)
            loop.call_soon(self._release_pseudo, g)
        elif finish == "forgotten":
            self._forget(g)
        elif start == "processing" and finish in ("released", "waiting"):
            self._end_pause(g, now)
            if dts is not None and (dts.suspicious or 0) > g.base:
                g.deaths += 1  # remove_worker counted a death
            if dts is not None and not dts.who_wants and not dts.waiters:
                # Nobody wants it any more (a dropped dynamic call): the
                # worker cancels the driver, which stops at its next yield.
                g.state = State.CANCELLED
            else:
                g.state = State.WAITING  # worker died or retry: runs again

    def _detach_end(self, g: GenState) -> None:
        """Cut the end marker loose from a driver that has returned, so that it
        is done (or rebuilt) without the generator."""
        s = self.scheduler
        if s is None or g.end_key is None:
            return
        ets, dts = s.tasks.get(g.end_key), s.tasks.get(g.driver)
        if (
            ets is not None
            and dts is not None
            and dts.state == "memory"
            and ets.state in ("released", "waiting")
            and ets.dependencies == {dts}
        ):
            _compat.detach(s, g.end_key, _compat.Task(g.end_key, completed, None))

    def _send_end(self, g: GenState, end: str) -> None:
        """Tell a stream's or dynamic call's handle that the call ended."""
        if g.mode is not Mode.STATIC and not g.ended and self.scheduler is not None:
            g.ended = True
            self.scheduler.client_send(
                g.client,
                {
                    "op": Op.ITEMS,
                    "gen_id": g.gen_id,
                    "produced": g.produced,
                    "end": end,
                },
            )

    def _explain_killed(self, g: GenState, kw: dict[str, Any]) -> str | None:
        """Replace Dask's KilledWorker, which counts the global allowed-failures,
        with one that counts this call's max_retries (before the items err)."""
        exc = kw.get("exception")
        if not isinstance(exc, bytes) or b"KilledWorker" not in exc:
            return None
        s = self.scheduler
        ts = s.tasks.get(g.driver) if s else None
        if ts is None or cast(Any, ts.exception) is not exc:
            return None
        g.deaths += 1
        new: Exception
        if g.spec.actor is not None:
            new = actor_died_error(g.spec.actor, g.name, kw.get("worker"))
        else:
            new = killed_error(
                g.name, g.driver, g.deaths, g.max_retries, kw.get("worker"), g.attempts
            )
        _compat.replace_exception(ts, new)
        return f"{type(new).__name__}: {new}"

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
                _compat.blame(ts, dts)
                recs[ts.key] = "erred"
        s.transitions(recs, f"daskgen-unproduced-{time.time()}")

    def _orphan(self, g: GenState) -> None:
        """The driver failed for good: its produced items cannot be recomputed."""
        s = self.scheduler
        dts = s.tasks.get(g.driver) if s else None
        if s is None or dts is None or dts.state != "erred":
            return
        reason = f"its generator failed: {g.error or 'see its driver task'}"
        for ts in list(dts.dependents):
            if ts.state == "memory" and ts.run_spec is g._spec:
                _compat.detach(
                    s,
                    ts.key,
                    _compat.Task(ts.key, _lost_item, str(ts.key), g.name, reason),
                )

    def _release_pseudo(self, g: GenState) -> None:
        s = self.scheduler
        if s is None or g.pseudo is None:
            return
        if (
            g.mode is Mode.STATIC
            and g.declared < (g.num_returns or 0)
            and not g.cancelled
        ):
            return  # keep the call alive until `declare` made its items
        if g.pseudo in s.clients:
            s.client_releases_keys(
                keys=[g.driver],
                client=g.pseudo,
                stimulus_id=f"daskgen-release-{time.time()}",
            )
            _compat.drop_idle_client(s, g.pseudo)
        if g.driver not in s.tasks:
            self._forget(g)

    def _forget(self, g: GenState) -> None:
        if self.generators.pop(g.gen_id, None) is None:
            return
        self.by_driver.pop(g.driver, None)
        self.by_prefix.pop(g.prefix, None)
        if g.spec.granted and g.spec.actor in self.by_actor:
            calls = self.by_actor[g.spec.actor]
            if g in calls:
                calls.remove(g)
            if not calls:
                del self.by_actor[g.spec.actor]
            else:
                self._regrant(calls[0])
        if g.state not in ENDED:
            g.state = State.CANCELLED if g.cancelled else State.FINISHED
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
        self.by_end.clear()
        self.plain.clear()

    # ------------------------------------------------------------- backpressure

    def _regrant(self, g: GenState) -> None:
        """Share what is free of the budget of ``g``'s actor among its streams
        (:func:`daskgen._rules.share`), and tell the drivers whose limit rose."""
        calls = [c for c in self.by_actor.get(str(g.spec.actor), []) if not c.abandoned]
        if not calls:
            return
        budget = int(calls[0].spec.actor_limit or 0)
        holds = {
            c.gen_id: _rules.held(c.grant, c.taken, c.produced, c.state in ENDED)
            for c in calls
        }
        # Only running (or waiting) streams can use more.
        able = [c for c in calls if c.state not in ENDED]
        # A grant runs at most a fair step ahead of what its stream yielded,
        # so that a stream alone does not take the budget that later ones
        # will need (a grant is never taken back).
        step = max(1, budget // len(able)) if able else 1
        wants: list[int | None] = [
            min(
                c.produced + step - c.grant,
                c.taken + c.backpressure - c.grant
                if c.backpressure is not None
                else budget,
            )
            for c in able
        ]
        shares = _rules.share(
            budget - sum(holds.values()), wants, [holds[c.gen_id] for c in able]
        )
        for c, k in zip(able, shares, strict=True):
            if k:
                c.grant += k
                self._send_limit(c)
                self._update_pause(c)

    def _update_pause(self, g: GenState) -> None:
        step = _rules.pause_step(g.state, g.produced, g.limit)
        now = time.time()
        if step is _rules.Pause.PAUSE:
            g.state = State.PAUSED
            g.pauses += 1
            g.paused_since = now
            self.totals["pauses"] += 1
        elif step is _rules.Pause.RESUME:
            self._end_pause(g, now)
            g.state = State.RUNNING

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

    def where(self, gen_id: str, index: int) -> dict[str, Any] | None:
        """Where a call and one of its items stand (for a timeout's message:
        a slow run told from a lost item)."""
        g = self.generators.get(gen_id)
        s = self.scheduler
        if g is None or s is None:
            return None
        dts = s.tasks.get(g.driver)
        its = s.tasks.get(g.item_key(index))
        return {
            "state": g.state.value,
            "attempts": g.attempts,
            "budget": g.budget,
            "yielded": g.produced,
            "run_yielded": g.run_produced,
            "taken": g.taken,
            "limit": g.limit,
            "driver": None if dts is None else dts.state,
            "worker": (
                dts.processing_on.address
                if dts is not None and dts.processing_on is not None
                else None
            ),
            # a paused worker starts no task: a call assigned to it waits
            "worker_status": (
                dts.processing_on.status.name
                if dts is not None and dts.processing_on is not None
                else None
            ),
            "item": None if its is None else its.state,
            "item_on": (
                [] if its is None else sorted(ws.address for ws in its.who_has or ())
            ),
        }


# --------------------------------------------------------------------- helpers


@dataclass
class _Batch:
    """One report's yields, sorted (:meth:`GeneratorSchedulerPlugin._sort_items`)."""

    produced_before: int
    new: list[TaskState] = field(default_factory=list)  # to move to waiting
    complete: list[tuple[TaskState, int, bytes | None, str]] = field(
        default_factory=list
    )  # to move to memory on the driver's worker
    drop: list[int] = field(default_factory=list)  # for the worker to free
    past_end: int | None = None  # an inconsistent re-run: index + 1


def _item_view(ts: TaskState, dts: TaskState) -> ItemView:
    return ItemView(
        state=ts.state,
        waits_only_on_driver=ts.state == "waiting" and ts.waiting_on == {dts},
        wanted=bool(ts.who_wants or ts.waiters),
    )


def _unproduced_item(driver_result: Any) -> Any:
    """Run spec of an item: it only runs if its driver's result is held in
    memory while the item waits (a user holds a Future of the driver's own
    key); daskgen's handles never do."""
    raise RuntimeError(
        "this item of a generator call was lost, and its generator could not "
        "be re-run because its finished driver task is still held in memory by "
        "a Future of the driver's key. Release that Future to let a lost item be "
        "recomputed."
    )


_NONE_TYPE = _pickle.dumps(type(None))


def _add_generators_page(scheduler: Scheduler) -> None:
    """The Generators page in the Dask dashboard (which runs: bokeh is installed)."""
    try:
        from daskgen import dashboard_bokeh  # imports bokeh

        dashboard_bokeh.register(scheduler, dashboard.http_prefix(scheduler))
    except Exception:  # pragma: no cover - an unexpected bokeh/distributed change
        logger.warning(
            "daskgen: Generators page not added to the Dask dashboard", exc_info=True
        )


class _KilledLogFilter(logging.Filter):
    """Reword the scheduler's "marked as failed because N workers died" for
    daskgen tasks, where N counts the offset daskgen gives the death count,
    not deaths: say how often the worker died and what max_retries allows."""

    PREFIX = "Task %s marked as failed because %d workers died"

    def __init__(self, plugin: GeneratorSchedulerPlugin) -> None:
        super().__init__()
        self.plugin = plugin

    @classmethod
    def install(cls, plugin: GeneratorSchedulerPlugin) -> None:
        logging.getLogger("distributed.scheduler").addFilter(cls(plugin))

    @classmethod
    def uninstall(cls, plugin: GeneratorSchedulerPlugin) -> None:
        log = logging.getLogger("distributed.scheduler")
        for f in list(log.filters):
            if isinstance(f, cls) and f.plugin is plugin:
                log.removeFilter(f)

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.PREFIX):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        if not args:
            return True
        key, p, s = args[0], self.plugin, self.plugin.scheduler
        try:
            g = p.by_driver.get(key)
            plain = p.plain.get(key)
        except TypeError:  # unhashable
            return True
        if g is not None:
            deaths, max_retries = g.deaths, g.max_retries
        elif plain is not None and s is not None and key in s.tasks:
            max_retries = plain
            deaths = (s.tasks[key].suspicious or 0) - (s.allowed_failures - plain)
        else:
            return True
        record.msg = (
            "Task %s marked as failed because its worker died %d time(s), and "
            "daskgen's max_retries=%d allows %d re-run(s)"
        )
        record.args = (key, deaths, max_retries, max_retries)
        return True


def _lost_item(key: str, name: str, reason: str) -> Any:
    """Run spec of an item lost with its worker that cannot be rebuilt."""
    from daskgen.exceptions import ItemLostError

    raise ItemLostError(
        f"item {key} of {name!r} was lost with its worker, and its generator "
        f"cannot run again to rebuild it: {reason}"
    )


def _raise_error(driver_result: Any, error: dict[str, Any]) -> Any:
    """Run spec of a stream's error item: raise the generator's exception."""
    _, exc, tb = _compat.clean_exception(**error)
    assert exc is not None
    raise exc.with_traceback(tb)


def _budget_reason(g: GenState) -> str:
    return (
        f"rebuilding it needs another run of the generator, and "
        f"max_retries={g.max_retries} allows {g.max_retries} re-run"
        f"{'s' if g.max_retries != 1 else ''} (it ran {g.attempts} "
        f"time{'s' if g.attempts != 1 else ''}: worker deaths, retried "
        "exceptions and rebuilt items each use one)"
    )


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
