"""Every use of a private or semi-private distributed API, in one module.

daskgen completes item tasks from outside the scheduler's transition engine
(see docs/design.md). The calls below are pinned by the ``mindeps`` and latest
tox environments; when a distributed release breaks daskgen it breaks here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from time import time
from typing import TYPE_CHECKING, Any, cast

from dask._task_spec import Task, TaskRef
from distributed.diagnostics.progress import Progress
from distributed.scheduler import Transition
from distributed.worker_state_machine import FreeKeysEvent

if TYPE_CHECKING:
    from distributed import Client, Worker
    from distributed.scheduler import Scheduler, TaskState, WorkerState

__all__ = [
    "Task",
    "TaskRef",
    "actor_executor",
    "actor_parts",
    "event_loop",
    "actor_instance",
    "clean_exception",
    "complete_items",
    "detach",
    "create_item",
    "driver_run_id",
    "fail_future",
    "fail_task",
    "free_local",
    "held_nbytes",
    "future_state",
    "gather",
    "register_client_handler",
    "register_scheduler_plugin",
    "blame",
    "drop_idle_client",
    "replace_exception",
    "set_retries",
    "set_suspicious",
    "store_local",
    "worker_task_state",
    "wrap_task_erred",
]


# --------------------------------------------------------------------- scheduler


def create_item(
    scheduler: Scheduler,
    key: Any,
    run_spec: Any,
    driver: TaskState,
    priority: tuple[Any, ...],
) -> TaskState:
    """Create a released item task that depends on ``driver``.

    The caller transitions it (usually to ``waiting``) once every item of a
    batch exists.
    """
    ts = scheduler.new_task(key, run_spec, "released")
    ts.add_dependency(driver)
    ts.priority = priority
    tg = ts.group
    if tg.span_id is None and driver.group.span_id is not None:
        # Items belong to the driver's span (what update_graph does for tasks
        # a client submits); workers report metrics per span.
        tg.span_id = driver.group.span_id
        spans = scheduler.extensions.get("spans")
        if spans is not None and tg.span_id in spans.spans:
            spans.spans[tg.span_id].groups.add(tg)
    return ts


def complete_items(
    scheduler: Scheduler,
    driver: TaskState,
    ws: WorkerState,
    items: Iterable[tuple[TaskState, int, bytes | None, str]],
    stimulus_id: str,
    client_msgs: dict[str, list[dict[str, Any]]],
) -> None:
    """Move waiting item tasks to memory on ``ws``, where the driver stored them.

    This is what ``processing -> memory`` does, without the processing part:
    the value was put into the worker's data by the driver, not by executing
    the item's own run_spec. Other plugins' ``transition`` hooks are called by
    hand since the scheduler's transition engine does not see this move.
    """
    recommendations: dict[Any, Any] = {}
    plugins: list[tuple[Any, Any]] = [
        # distributed.progress counts a key done when it goes processing ->
        # memory: tell its plugins so (an item is done as if computed); the
        # others hear the true start, waiting.
        (p, "processing" if isinstance(p, Progress) else "waiting")
        for p in scheduler.plugins.values()
    ]
    now = time()
    for ts, nbytes, typ, typename in items:
        if ts.waiting_on:
            ts.waiting_on.discard(driver)
        if driver.waiters:
            driver.waiters.discard(ts)
        ts.set_nbytes(nbytes)
        msgs: dict[str, list[dict[str, Any]]] = {}
        # _add_to_memory *assigns* client_msgs[client] = [msg]; merge per key.
        scheduler._add_to_memory(
            ts, ws, recommendations, msgs, type=cast(bytes, typ), typename=typename
        )
        for client, ms in msgs.items():
            client_msgs.setdefault(client, []).extend(ms)
        # Keep Scheduler.story() complete for these keys.
        scheduler.transition_log.append(
            Transition(ts.key, "waiting", "memory", {}, stimulus_id, now)
        )
        for plugin, start in plugins:
            try:
                plugin.transition(
                    ts.key,
                    start,
                    "memory",
                    stimulus_id=stimulus_id,
                    worker=ws.address,
                    nbytes=nbytes,
                    typename=typename,
                )
            except Exception:  # pragma: no cover - a third-party plugin's bug
                import logging

                logging.getLogger(__name__).exception("plugin transition hook")
        if scheduler.validate:
            scheduler.validate_key(ts.key)
    # The driver is still running, so nothing above releases it; what is left
    # are items nobody wants (freed at once) and dependents that became ready.
    scheduler.transitions(recommendations, stimulus_id)


def detach(scheduler: Scheduler, key: Any, run_spec: Any) -> None:
    """Cut task ``key`` loose from its dependencies and give it ``run_spec``.

    Called from a transition hook, before the recommendations of the same
    event run: a lost item that cannot be rebuilt then runs ``run_spec``
    (which raises why) instead of waiting for a driver that will not produce
    it; a finished call's end marker becomes a task that is rebuilt alone.
    """
    ts = scheduler.tasks[key]
    for dts in ts.dependencies:
        dts.dependents.discard(ts)
        if dts.waiters:
            dts.waiters.discard(ts)
    ts.dependencies.clear()
    if ts.waiting_on:
        ts.waiting_on.clear()
    ts.run_spec = run_spec


def set_suspicious(ts: TaskState, value: int) -> None:
    """Set the worker-death count the scheduler compares to allowed-failures."""
    ts.suspicious = value


# ------------------------------------------------------------------------ worker


def replace_exception(ts: TaskState, exc: BaseException) -> None:
    """Make an erred task raise ``exc`` for whoever asks from now on (the
    scheduler sends the erred task's exception to clients and dependents)."""
    from distributed.protocol import pickle

    ts.exception = pickle.dumps(exc)
    ts.exception_text = repr(exc)


def blame(ts: TaskState, dts: TaskState) -> None:
    """``ts`` errs with the error of ``dts`` (its dependency) when transitioned
    to erred outside the scheduler's own propagation."""
    ts.exception_blame = dts.exception_blame or dts


def drop_idle_client(scheduler: Scheduler, client: str) -> None:
    """Forget a scheduler-side client (daskgen's per-call pseudo-client) that
    wants no key any more; a real client is removed by its own disconnect."""
    cs = scheduler.clients.get(client)
    if cs is not None and not cs.wants_what:
        del scheduler.clients[client]


def fail_task(scheduler: Scheduler, key: Any, exc: BaseException) -> bool:
    """Err a task that waits for a worker it cannot have (``no-worker``,
    ``queued``) as if it had raised ``exc``: Dask then errs its dependents,
    also those that come later. False if it is in another state."""
    from distributed.protocol import pickle

    ts = scheduler.tasks.get(key)
    if ts is None or ts.state not in ("no-worker", "queued"):
        return False
    stimulus_id = f"daskgen-fail-{time()}"
    recs, client_msgs, worker_msgs = scheduler._transition(
        key,
        "erred",
        stimulus_id,
        cause=key,
        exception=pickle.dumps(exc),
        traceback=None,
        exception_text=f"{type(exc).__name__}: {exc}",
        traceback_text="",
    )
    scheduler._transitions(recs, client_msgs, worker_msgs, stimulus_id)
    scheduler.send_all(client_msgs, worker_msgs)
    return True


def set_retries(ts: TaskState, value: int) -> None:
    """How many more times Dask re-runs the task when it errs."""
    ts.retries = value


def store_local(worker: Worker, data: dict[Any, Any], stimulus_id: str) -> None:
    """Put values into the worker's data without a copy (scatter's local path)."""
    worker.update_data(data, stimulus_id=stimulus_id)


def free_local(worker: Worker, keys: list[Any], stimulus_id: str) -> None:
    """Forget keys this worker stored but the scheduler did not take."""
    worker.handle_stimulus(FreeKeysEvent(keys=keys, stimulus_id=stimulus_id))


def worker_task_state(worker: Worker, key: Any) -> str | None:
    ts = worker.state.tasks.get(key)
    return None if ts is None else str(ts.state)


def actor_instance(worker: Worker, key: Any) -> Any:
    """The object of the Dask actor ``key`` on this worker, or None."""
    return worker.state.actors.get(key)


def actor_executor(worker: Worker) -> Any:
    """The worker's thread for actor methods (one thread: Dask runs an
    actor's sync methods there, one at a time)."""
    return worker.executors["actor"]


def event_loop(worker: Worker) -> Any:
    """The asyncio loop of the worker's event loop (where Dask runs actors'
    coroutine methods)."""
    return cast(Any, worker.loop).asyncio_loop


def actor_parts(proxy: Any) -> tuple[Any, Any, Any, Any]:
    """``(class, worker address, key, client)`` of a ``distributed.Actor`` proxy
    (Nones for anything else)."""
    from distributed.actor import Actor

    if not isinstance(proxy, Actor):
        return None, None, None, None
    return proxy._cls, proxy._address, proxy.key, proxy._client


def held_nbytes(worker: Worker, key: Any) -> int:
    """Size of ``key`` if this worker holds it in memory, else -1."""
    ts = worker.state.tasks.get(key)
    if ts is None or ts.state != "memory":
        return -1
    return int(ts.nbytes or 0)


def driver_run_id(worker: Worker, key: Any) -> int | None:
    ts = worker.state.tasks.get(key)
    return None if ts is None else ts.run_id


# ------------------------------------------------------------------------ client


async def register_scheduler_plugin(client: Client, plugin: Any) -> None:
    """Install a scheduler plugin from inside the client's event loop (a
    synchronous client's ``register_plugin`` cannot be awaited there)."""
    from distributed.protocol.pickle import dumps

    scheduler: Any = client.scheduler
    await scheduler.register_scheduler_plugin(
        plugin=dumps(plugin), name=plugin.name, idempotent=True
    )


def register_client_handler(
    client: Client, op: str, handler: Callable[..., Any]
) -> None:
    """Let the scheduler send ``{"op": op, ...}`` messages to this client."""
    client._stream_handlers[op] = handler


def wrap_task_erred(
    client: Client, reword: Callable[[Any, BaseException], BaseException | None]
) -> None:
    """Let ``reword(key, exception)`` replace the exception of a task-erred
    message before the client's Future gets it (None: keep it)."""
    from distributed.core import clean_exception

    handlers: dict[str, Any] = client._stream_handlers
    orig = handlers["task-erred"]

    def handler(key: Any = None, exception: Any = None, traceback: Any = None) -> Any:
        try:
            _, exc, tb = clean_exception(exception, traceback)
            new = reword(key, exc) if exc is not None else None
        except Exception:  # pragma: no cover - keep Dask's own message
            new = None
        if new is not None:
            exception, traceback = new, tb
        return orig(key=key, exception=exception, traceback=traceback)

    handlers["task-erred"] = handler


def gather(client: Client, futures: list[Any], timeout: float | None) -> Any:
    """``client.gather(futures)`` with a timeout (which Client.gather lacks)."""
    return client.sync(client._gather, futures, callback_timeout=timeout)


def clean_exception(
    exception: Any, traceback: Any = None, **kwargs: Any
) -> tuple[Any, BaseException | None, Any]:
    """An exception as a task's error dict holds it (pickled), made raisable."""
    from distributed.core import clean_exception as clean

    return clean(exception, traceback, **kwargs)


def fail_future(client: Client, key: Any, exc: BaseException) -> None:
    """Make the client's Future for ``key`` (if any) raise ``exc``."""
    client._handle_task_erred(key=key, exception=exc, traceback=None)


def send_to_scheduler(client: Client, msg: dict[str, Any]) -> None:
    client._send_to_scheduler(msg)


def future_state(fut: Any) -> Any:
    """A Future's client-side state (``status``, ``await state.wait()``).

    Holding it does not keep the key wanted, unlike holding the Future.
    """
    fut._bind_late()
    return fut._state


async def future_done(fut: Any) -> Any:
    """Wait for a Future to finish; return its client-side state.

    The state has ``status``, ``exception`` and ``traceback``; waiting on it
    does not fetch the value.
    """
    fut._bind_late()
    await fut._state.wait()
    return fut._state


# --------------------------------------------------------------------- dashboard
# distributed's Bokeh dashboard: these import bokeh, so only
# daskgen.dashboard_bokeh calls them, and only on a scheduler that runs one.


def has_bokeh_dashboard(scheduler: Any) -> bool:
    """Whether ``scheduler`` serves the Bokeh dashboard (bokeh is installed and
    the scheduler was started with ``dashboard=True``)."""
    app = getattr(scheduler, "http_application", None)
    return any(
        "BokehTornado" in type(a).__name__ for a in getattr(app, "applications", ())
    )


def add_dashboard_page(
    scheduler: Any, prefix: str, name: str, doc: Callable[[Any, Any, Any], None]
) -> None:
    """Serve ``doc(scheduler, extra, bokeh_document)`` at ``prefix + name`` as a
    Bokeh application, the way ``distributed.dashboard.scheduler.connect`` serves
    the dashboard's own pages, and list ``name`` in the navigation bar."""
    from distributed.dashboard.core import BokehApplication
    from distributed.dashboard.scheduler import template_variables
    from tornado.ioloop import IOLoop

    variables = template_variables(scheduler)  # memoized per scheduler
    pages: list[str] = variables["pages"]  # shared with every page's template
    if name not in pages:
        pages.insert(pages.index("info") if "info" in pages else len(pages), name)
    app = BokehApplication(
        {"/" + name: doc}, scheduler, prefix=prefix, template_variables=variables
    )
    scheduler.http_application.add_application(app)
    app.initialize(IOLoop.current())
    app.start()


def dashboard_template() -> Any:
    """The Jinja template of the dashboard's plain pages (navigation bar on top)."""
    from distributed.dashboard.components.scheduler import env

    return env.get_template("simple.html")


def dashboard_theme() -> Any:
    from distributed.dashboard.components.scheduler import BOKEH_THEME

    return BOKEH_THEME


def add_periodic_callback(doc: Any, component: Any, interval: int) -> None:
    """Call ``component.update()`` every ``interval`` ms while the page is open
    (without keeping the component alive, as the dashboard's pages do)."""
    from distributed.dashboard.components import add_periodic_callback as add

    add(doc, component, interval)


def update_source(source: Any, data: dict[str, list[Any]]) -> None:
    """Set a ColumnDataSource's data, skipping an update that changes nothing."""
    from distributed.dashboard.utils import update

    update(source, data)
