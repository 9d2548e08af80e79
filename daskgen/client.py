"""The client half of daskgen: ``submit``, ``remote`` and the stream handle."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import inspect
import logging
import sys
import threading
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import timedelta
from enum import Enum
from typing import Any, Literal, TypeAlias

from dask.base import annotate
from dask.utils import funcname, parse_timedelta
from distributed import Client, Future, KilledWorker, as_completed, get_client
from distributed.utils import log_errors

from daskgen import _compat, _config, _console
from daskgen._core import (
    ANNOTATION,
    PLUGIN_NAME,
    CallSpec,
    Mode,
    Op,
    completed,
    print_topic,
)
from daskgen.exceptions import (
    DaskgenError,
    GeneratorCancelledError,
    InvalidStateError,
    StreamTimeoutError,
    killed_error,
)
from daskgen.scheduler import GeneratorSchedulerPlugin
from daskgen.worker import ActorMethod, run_driver

NumReturns: TypeAlias = "int | Literal['streaming', 'dynamic'] | None"
Timeout: TypeAlias = "float | str | timedelta | None"

#: The method of distributed.as_completed that iterates its input.
_AS_COMPLETED_UPDATE = as_completed.update.__code__

logger = logging.getLogger(__name__)


class ClientExtension:
    """What daskgen keeps for one client: ``client.extensions["daskgen"]``.

    Set up by :func:`install` (or as the client starts); its presence means
    daskgen's plugins are installed on the client's cluster.
    """

    def __init__(self, client: Client) -> None:
        self.client_id = client.id
        #: The calls whose handle is alive and that have not ended: gen_id -> state.
        self.streams: dict[str, CallState] = {}
        #: Plain functions submitted through daskgen: key -> (name, max_retries).
        self.plain: dict[Any, tuple[str, int]] = {}
        self.lock = threading.Lock()

    def add_stream(self, state: CallState) -> None:
        with self.lock:
            self.streams[state.gen_id] = state

    def forget_stream(self, state: CallState) -> None:
        with self.lock:
            if self.streams.get(state.gen_id) is state:
                del self.streams[state.gen_id]

    def add_plain(self, fut: Future[Any], name: str, max_retries: int) -> None:
        self.plain[fut.key] = (name, max_retries)
        weakref.finalize(fut, self.plain.pop, fut.key, None)

    def handle_items(self, gen_id: str, produced: int, end: str | None = None) -> None:
        """``daskgen-items`` from the scheduler: a stream's items up to
        ``produced`` exist, or (``end``) the call ended."""
        state = self.streams.get(gen_id)
        if state is not None:
            state.on_items(produced, end)

    def reword_killed(self, key: Any, exc: BaseException) -> Any:
        """Dask's KilledWorker for a plain function submitted through daskgen
        counts the cluster's allowed-failures; say what max_retries allowed."""
        info = self.plain.get(key)
        if (
            info is None
            or not isinstance(exc, KilledWorker)
            or isinstance(exc, DaskgenError)
        ):
            return None
        name, max_retries = info
        worker = getattr(getattr(exc, "last_worker", None), "address", None)
        return killed_error(name, key, max_retries + 1, max_retries, worker)


def _extension(client: Client) -> ClientExtension | None:
    ext = client.extensions.get(PLUGIN_NAME)
    return ext if isinstance(ext, ClientExtension) else None


# ----------------------------------------------------------------- installation


def install(client: Client | None = None) -> Any:
    """Install daskgen's scheduler and worker plugins on ``client``'s cluster.

    A client started after ``import daskgen`` has done it as it started (a
    client preload). Otherwise ``submit`` does it on first use with a
    synchronous client, and an asynchronous client awaits it once (``await
    daskgen.install(client)``). Installing twice is harmless.

    Examples
    --------
    >>> client = Client(LocalCluster())  # doctest: +SKIP
    >>> daskgen.install(client)  # doctest: +SKIP
    """
    client = client or default_client()
    if client.asynchronous:
        return _install_async(client)
    if _extension(client) is None:
        client.register_plugin(GeneratorSchedulerPlugin(), name=PLUGIN_NAME)
        _setup_client(client)
    return None


async def _install_async(client: Client) -> None:
    if _extension(client) is None:
        await _compat.register_scheduler_plugin(client, GeneratorSchedulerPlugin())
        _setup_client(client)


async def install_on_start(client: Client) -> None:
    """Install daskgen as ``client`` starts: daskgen is one of the client
    preloads (``distributed.client.preload``) of a process that imported it,
    so an asynchronous client needs no ``await daskgen.install(client)``, and
    the plugin is there before the client sends anything. A scheduler that
    cannot take the plugin (daskgen not installed there) does not stop the
    client: ``submit`` then says what to do."""
    try:
        await _install_async(client)
    except Exception as e:  # noqa: BLE001 - the client works without daskgen
        logger.warning(
            "daskgen could not install its plugins as the client started (is "
            "daskgen installed where the scheduler runs?): %r",
            e,
        )


def _setup_client(client: Client) -> None:
    ext = ClientExtension(client)
    _compat.register_client_handler(client, Op.ITEMS, log_errors(ext.handle_items))
    _compat.register_client_handler(
        client, Op.REJECTED, log_errors(functools.partial(_rejected, client))
    )
    client.subscribe_topic(print_topic(client.id), _print_event)
    # Guard the console now, before a task's line can arrive mid-line.
    _console.install()
    _compat.wrap_task_erred(client, ext.reword_killed)
    client.extensions[PLUGIN_NAME] = ext


def _rejected(client: Client, prefix: str, n: int, name: str) -> None:
    """The scheduler rejected a static call's graph: fail its item Futures."""
    exc = DaskgenError(
        f"generator call {name!r} never started: the scheduler did not accept its "
        "task, most often because it could not deserialize the task graph (the "
        "scheduler lacks a module or object the client has: install the same "
        "packages on the scheduler and the workers). The scheduler's log has the "
        "cause."
    )
    for i in range(n):
        _compat.fail_future(client, (prefix, i), exc)


def _print_event(event: tuple[float, dict[str, Any]]) -> None:
    _, msg = event
    prefix = f"({msg['name']} pid={msg['pid']}) "
    lines = msg["text"].splitlines(keepends=True)
    text = "".join(prefix + line for line in lines)
    if not text.endswith("\n"):
        text += "\n"  # print(..., end="") in a task: still a line of its own
    # Between the caller's own lines, never inside one.
    _console.emit(text, stderr=bool(msg.get("stderr")))


def default_client() -> Client:
    try:
        return get_client()
    except ValueError:
        raise ValueError(
            "daskgen needs a Dask client, and none is running. Start one first:\n"
            "    from distributed import Client, LocalCluster\n"
            "    client = Client(LocalCluster())\n"
            "or pass client= to daskgen.submit."
        ) from None


# -------------------------------------------------------------------- validation


def _is_generator_function(func: Any) -> bool:
    if isinstance(func, ActorMethod):
        return func.is_generator
    while isinstance(func, functools.partial):
        func = func.func
    func = inspect.unwrap(func)
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        return True
    if inspect.isroutine(func) or not callable(func):
        return False
    # A callable object: look at its class's __call__.
    call = type(func).__call__
    return inspect.isgeneratorfunction(call) or inspect.isasyncgenfunction(call)


def _check(
    func: Any,
    num_returns: Any,
    backpressure: Any,
    max_retries: Any,
    retry_exceptions: Any,
) -> Mode:
    """Validate the options of a call; return its mode."""
    if not callable(func):
        raise TypeError(
            f"daskgen.submit needs a callable, got {type(func).__name__} {func!r}. "
            "Pass the function itself: daskgen.submit(produce, 10)."
        )
    is_gen = _is_generator_function(func)
    ok = num_returns in (None, "streaming", "dynamic") or (
        isinstance(num_returns, int)
        and not isinstance(num_returns, bool)
        and num_returns >= 0
    )
    if not ok:
        raise ValueError(
            f"num_returns={num_returns!r} is not valid. Use None (the default), "
            "'streaming', 'dynamic', or an int >= 0, e.g. num_returns=3."
        )
    if num_returns in ("streaming", "dynamic") and not is_gen:
        raise ValueError(
            f"num_returns={num_returns!r} needs a generator function, and "
            f"{funcname(func)!r} is not one. Make it yield its values, or pass "
            "num_returns=N if it returns a sequence of N values."
        )
    mode = (
        Mode.STREAMING
        if num_returns in (None, "streaming") and is_gen
        else Mode.DYNAMIC
        if num_returns == "dynamic"
        else Mode.PLAIN
        if num_returns is None
        else Mode.STATIC
    )
    if backpressure is not None:
        if (
            not isinstance(backpressure, int)
            or isinstance(backpressure, bool)
            or backpressure <= 0
        ):
            raise ValueError(
                f"backpressure={backpressure!r} is not valid: it is how many items "
                "the generator may run ahead of the consumer, an int >= 1, e.g. "
                "backpressure=4."
            )
        if mode is not Mode.STREAMING:
            raise ValueError(
                "backpressure only applies to streaming calls (a generator function "
                f"with num_returns=None or 'streaming'), not num_returns={num_returns!r}: "
                "drop backpressure=, or use a streaming call."
            )
    if max_retries is not None and (
        not isinstance(max_retries, int)
        or isinstance(max_retries, bool)
        or max_retries < 0
    ):
        raise ValueError(
            f"max_retries={max_retries!r} is not valid: use an int >= 0, e.g. "
            "max_retries=0 to fail on the first worker death."
        )
    if not isinstance(retry_exceptions, bool):
        types = (
            retry_exceptions
            if isinstance(retry_exceptions, (list, tuple))
            else [retry_exceptions]
        )
        if not types or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in types
        ):
            raise ValueError(
                f"retry_exceptions={retry_exceptions!r} is not valid: use True, "
                "False, or a list of exception classes, e.g. [ConnectionError]."
            )
    return mode


# ------------------------------------------------------------------------ submit


def submit(
    func: Callable[..., Any],
    *args: Any,
    num_returns: NumReturns = None,
    client: Client | None = None,
    key: str | None = None,
    workers: str | Sequence[str] | None = None,
    resources: dict[str, float] | None = None,
    priority: int = 0,
    allow_other_workers: bool = False,
    max_retries: int | None = None,
    retry_exceptions: bool | Sequence[type[BaseException]] = False,
    backpressure: int | None = None,
    **kwargs: Any,
) -> Any:
    """Run ``func(*args, **kwargs)`` on the cluster; each yield becomes a Future.

    Parameters
    ----------
    func : callable
        A generator function (``def f(): yield ...``), an async generator
        function, or a plain function (which must return a sequence of
        ``num_returns`` values when ``num_returns`` is an int).
    *args, **kwargs
        Arguments of ``func``; Futures among them are resolved first, as with
        ``client.submit``.
    num_returns : None, int, 'streaming' or 'dynamic'
        ``None``: a :class:`FutureGenerator` for a generator function, one
        Future for a plain function. ``'streaming'``: a
        :class:`FutureGenerator`. ``'dynamic'``: one :class:`DynamicFuture`
        whose result is the list of item Futures. An int ``N``: a list of N
        Futures made at once (one Future for N == 1, None for N == 0), each
        ready as soon as its value is yielded.
    client : Client, optional
        Defaults to the current client (``distributed.get_client()``).
    key : str, optional
        Name of the call; the items are ``(key, i)``. Defaults to
        ``<function name>-<random token>``.
    workers, resources, priority, allow_other_workers
        As in ``client.submit``, for the task that runs the generator.
    max_retries : int, optional
        How many times the generator is re-run after its worker died (default
        ``daskgen.max-retries``, 3). Already delivered items are not repeated.
    retry_exceptions : bool or list of exception classes
        Also re-run the generator when it raises (all exceptions, or these).
    backpressure : int, optional
        Streaming only: the generator never runs more than this many items
        ahead of what the consumer has taken with ``next()``.

    Examples
    --------
    >>> def produce(n):
    ...     for i in range(n):
    ...         yield i * 10
    >>> a, b, c = daskgen.submit(produce, 3, num_returns=3)  # doctest: +SKIP
    >>> a.result()  # doctest: +SKIP
    0
    >>> [f.result() for f in daskgen.submit(produce, 3)]  # doctest: +SKIP
    [0, 10, 20]
    """
    mode = _check(func, num_returns, backpressure, max_retries, retry_exceptions)
    client = client or default_client()
    max_retries = _config.get("max-retries", max_retries)
    if client.asynchronous and _extension(client) is None:
        raise InvalidStateError(
            "daskgen's plugins are not installed on this asynchronous client's "
            "cluster yet: a client started after `import daskgen` installs them "
            "as it starts, unless the config distributed.client.preload leaves "
            "daskgen out (see the logs if installing failed). Run `await "
            "daskgen.install(client)` once before submitting."
        )
    if not client.asynchronous:
        install(client)
    name = funcname(func)
    token = uuid.uuid4().hex
    if key is not None and not isinstance(key, str):
        raise TypeError(f"key must be a str, got {type(key).__name__}: {key!r}")
    prefix = key or f"{name}-{token}"
    driver_key = f"{prefix}-generator" if key else f"{name}-generator-{token}"
    end_key = f"{prefix}-completed" if key else f"{name}-completed-{token}"
    gen_id = token
    n = num_returns if isinstance(num_returns, int) else None
    has_end = mode in (Mode.STREAMING, Mode.DYNAMIC)
    spec = CallSpec(
        gen_id=gen_id,
        prefix=prefix,
        mode=mode,
        name=name,
        client=client.id,
        max_retries=max_retries,
        num_returns=n,
        backpressure=backpressure,
        end_key=end_key if has_end else None,
        actor=func.actor_key if isinstance(func, ActorMethod) else None,
        actor_limit=func.max_pending if isinstance(func, ActorMethod) else None,
        retry_exceptions=_retry_spec(retry_exceptions),
    )
    ext = _extension(client)
    assert ext is not None
    submit_kwargs: dict[str, Any] = dict(
        workers=workers,
        resources=resources,
        priority=priority,
        allow_other_workers=allow_other_workers,
        pure=False,
    )
    if mode is Mode.PLAIN:
        with annotate(**{ANNOTATION: spec.to_annotation()}):
            fut = client.submit(
                func,
                *args,
                key=key,
                retries=max_retries if retry_exceptions else None,
                **submit_kwargs,
                **kwargs,
            )
        ext.add_plain(fut, name, max_retries)
        return fut
    state = None
    if has_end:
        state = CallState(client, gen_id, prefix)
        ext.add_stream(state)
    with annotate(**{ANNOTATION: spec.to_annotation()}):
        driver = client.submit(
            run_driver,
            func,
            list(args),
            kwargs,
            spec,
            key=driver_key,
            **submit_kwargs,
        )
    if has_end:
        assert state is not None
        # The caller holds the call's end marker, a task that depends on the
        # driver, never the driver itself: so a finished driver is released
        # (nothing holds its result) and re-runs when a lost item needs it.
        end = client.submit(completed, driver, key=end_key, pure=False)
        # Held until the call ends (or the handle is dropped), to see its
        # error if the scheduler rejects the graph and daskgen never sees it.
        state.driver = driver
        if client.loop is not None:
            client.loop.add_callback(
                _end_with_driver, _compat.future_state(driver), state
            )
        del driver
        if mode is Mode.STREAMING:
            return FutureGenerator(state, end, name, driver_key, backpressure)
        return DynamicFuture(end_key, client, stream=state, _end=end)
    assert n is not None
    if n:
        _compat.send_to_scheduler(
            client,
            {
                "op": Op.DECLARE,
                "gen_id": gen_id,
                # for an error if the scheduler rejected the call's graph
                "driver": driver_key,
                "prefix": prefix,
                "n": n,
                "name": name,
            },
        )
    items: list[Future[Any]] = [Future(spec.item_key(i), client) for i in range(n)]
    del driver  # the scheduler keeps the driver running for us
    if n == 0:
        return None
    if n == 1:
        return items[0]
    return items


def _retry_spec(r: Any) -> bool | tuple[type[BaseException], ...]:
    if isinstance(r, bool):
        return r
    return tuple(r) if isinstance(r, (list, tuple)) else (r,)


# ------------------------------------------------------------------------ remote


class RemoteFunction:
    """A function wrapped by :func:`remote`: call ``.remote(...)`` to submit it.

    Examples
    --------
    >>> @daskgen.remote(num_returns=2)
    ... def pair():
    ...     yield 1
    ...     yield 2
    >>> a, b = pair.remote()  # doctest: +SKIP
    >>> three = pair.options(num_returns=3)  # doctest: +SKIP
    """

    def __init__(self, func: Callable[..., Any], **options: Any) -> None:
        if not callable(func):
            raise TypeError(
                f"@daskgen.remote needs a function, got {type(func).__name__}."
            )
        _check(
            func,
            options.get("num_returns"),
            options.get("backpressure"),
            options.get("max_retries"),
            options.get("retry_exceptions", False),
        )
        self._func = func
        self._options = options
        functools.update_wrapper(self, func)

    def options(self, **overrides: Any) -> RemoteFunction:
        """A new RemoteFunction with some submit options replaced."""
        unknown = set(overrides) - SUBMIT_OPTIONS
        if unknown:
            raise TypeError(
                f"unknown option(s) {sorted(unknown)}; valid options are "
                f"{sorted(SUBMIT_OPTIONS)}"
            )
        return RemoteFunction(self._func, **{**self._options, **overrides})

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Submit the function; returns what :func:`submit` returns."""
        return submit(self._func, *args, **self._options, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Remote function {funcname(self._func)!r} cannot be called directly. "
            f"Use {funcname(self._func)}.remote(...) to run it on the cluster."
        )

    def __repr__(self) -> str:
        return f"<daskgen.RemoteFunction {funcname(self._func)} {self._options}>"


SUBMIT_OPTIONS = {
    "num_returns",
    "client",
    "key",
    "workers",
    "resources",
    "priority",
    "allow_other_workers",
    "max_retries",
    "retry_exceptions",
    "backpressure",
}


def remote(func: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Decorator, Ray style: ``@daskgen.remote`` or ``@daskgen.remote(num_returns=3)``.

    Examples
    --------
    >>> @daskgen.remote
    ... def produce(n):
    ...     yield from range(n)
    >>> for f in produce.remote(3):  # doctest: +SKIP
    ...     print(f.result())
    """
    unknown = set(options) - SUBMIT_OPTIONS
    if unknown:
        raise TypeError(
            f"unknown option(s) {sorted(unknown)} for @daskgen.remote; valid "
            f"options are {sorted(SUBMIT_OPTIONS)}"
        )
    if func is None:
        return lambda f: RemoteFunction(f, **options)
    return RemoteFunction(func, **options)


# ------------------------------------------------------------------ stream state


class CallState:
    """Client-side record of a streaming or dynamic call (lives on the client)."""

    def __init__(self, client: Client, gen_id: str, prefix: str) -> None:
        self.client = client
        self.gen_id = gen_id
        self.prefix = prefix
        self.produced = 0
        self.futures: dict[int, Future[Any]] = {}
        self.end: str | None = None
        self.driver: Future[Any] | None = None
        self.error: Any = None  # the driver's state, if the scheduler rejected it
        self.abandoned = False
        self.changed: asyncio.Event | None = None

    def event(self) -> asyncio.Event:
        if self.changed is None:
            self.changed = asyncio.Event()
        return self.changed

    def on_items(self, produced: int, end: str | None) -> None:
        keys = []
        for i in range(self.produced, produced):
            key = (self.prefix, i)
            if self.abandoned:
                keys.append(key)
            else:
                self.futures[i] = Future(key, self.client)
        self.produced = max(self.produced, produced)
        if keys:  # the handle is gone: nobody will take these
            _compat.send_to_scheduler(
                self.client,
                {"op": "client-releases-keys", "keys": keys, "client": self.client.id},
            )
        if end is not None:
            self.end = end
            if self.error is None:  # else completed() gives the driver's error
                self.driver = None
            self.forget()
        if self.changed is not None:
            self.changed.set()

    def forget(self) -> None:
        ext = _extension(self.client)
        if ext is not None:
            ext.forget_stream(self)

    def release_untaken(self) -> None:
        """Free the items no ``next`` can hand out any more (the stream was
        cancelled or dropped), and those that come after."""
        self.abandoned = True
        self.futures.clear()

    def abandon(self) -> None:
        """The handle was dropped: free what it did not take, and what comes."""
        self.release_untaken()
        self.driver = None
        if self.end is None and self.client.status == "running":
            _compat.send_to_scheduler(
                self.client, {"op": Op.ABANDON, "gen_id": self.gen_id}
            )


# --------------------------------------------------------------- FutureGenerator


class StreamStatus(Enum):
    """Lifecycle of a :class:`FutureGenerator`."""

    running = "running"
    finished = "finished"
    cancelled = "cancelled"


class FutureGenerator:
    """The Futures of a streaming generator call, in index order.

    Iterate with ``for`` (synchronous client) or ``async for`` (asynchronous
    client); each step returns the next item's ``distributed.Future`` as soon
    as the generator has yielded it. When the generator raises, one more
    Future is returned that raises the same exception, then iteration stops.
    When the call fails for a system reason (its worker died more often than
    ``max_retries`` allows: ``KilledWorker``) or is cancelled, ``next`` raises
    that error once the items yielded before it have been returned.

    Not picklable: it is bound to the client that submitted the call.
    Dropping it frees the items it has not returned; the generator still runs
    to its end (Ray semantics), unless :meth:`cancel` is called.

    Examples
    --------
    >>> gen = daskgen.submit(produce, 3)  # doctest: +SKIP
    >>> for fut in gen:  # doctest: +SKIP
    ...     print(fut.result())
    """

    def __init__(
        self,
        state: CallState,
        end: Future[Any],
        name: str,
        key: Any,
        backpressure: int | None,
    ) -> None:
        self._state = state
        self._end = end
        self._key = key
        self._client = state.client
        self._name = name
        self._backpressure = backpressure
        self._index = 0
        self._status = StreamStatus.running
        self._raised = False
        self._take_scheduled = False
        weakref.finalize(self, state.abandon)

    # ---------------------------------------------------------------- public

    @property
    def key(self) -> Any:
        """Key of the task that runs the generator."""
        return self._key

    @property
    def status(self) -> StreamStatus:
        return self._status

    @property
    def name(self) -> str:
        """The generator function's name."""
        return self._name

    @property
    def client(self) -> Client:
        return self._client

    @property
    def taken(self) -> int:
        """How many items ``next()`` has handed out."""
        return self._index

    @property
    def call(self) -> CallState:
        """The call's client-side state (what daskgen's own tools read)."""
        return self._state

    def completed(self) -> Future[Any]:
        """A Future that is done when the generator task has ended.

        Its result is ``None``. It raises if the task failed for a system
        reason (e.g. ``KilledWorker``) or was cancelled; an exception raised
        by the generator itself is delivered as an item instead.
        """
        if self._state.error is not None and self._state.driver is not None:
            return self._state.driver  # the scheduler rejected the call
        return self._end

    def is_finished(self) -> bool:
        """True once the generator task has ended, every item was returned,
        and no error is still to be raised by ``next``."""
        s = self._state
        if self._status is StreamStatus.cancelled:
            return self._raised  # once next() raised the cancellation
        return (
            s.end is not None
            and self._index >= s.produced
            and (s.end != "erred" or self._raised)
        )

    def next_ready(self) -> bool:
        """True if ``next`` would return at once: an item is ready, the stream
        has ended (``next`` stops or raises), or it was cancelled."""
        return (
            self._status is StreamStatus.cancelled
            or self._index < self._state.produced
            or self._state.end is not None
        )

    def cancel(self) -> None:
        """Stop the generator at its next yield (its ``finally`` blocks run).

        Items already returned stay valid; ``next`` raises
        :class:`~daskgen.GeneratorCancelledError` from now on, so the items
        yielded and not yet returned are freed.
        """
        if self._status is StreamStatus.running:
            self._status = StreamStatus.cancelled
            _compat.send_to_scheduler(
                self._client, {"op": Op.CANCEL, "gen_id": self._state.gen_id}
            )
            # On the event loop, where the items' Futures are made.
            loop = self._client.loop
            if loop is not None:
                loop.add_callback(self._state.release_untaken)

    def next(self, timeout: Timeout = None) -> Any:
        """The next item's Future, waiting at most ``timeout``.

        Parameters
        ----------
        timeout : number or string or timedelta, optional
            Time in seconds after which to raise
            :class:`~daskgen.StreamTimeoutError` (a ``TimeoutError``).
        """
        try:
            return self._client.sync(self._next, timeout=parse_timedelta(timeout))
        except StopAsyncIteration:
            if self._client.asynchronous:
                raise
            raise StopIteration from None

    # ------------------------------------------------------------- protocols

    def __iter__(self) -> Iterator[Future[Any]]:
        if self._client.asynchronous:
            raise InvalidStateError(
                "this FutureGenerator belongs to an asynchronous client: use "
                "`async for fut in gen`."
            )
        if sys._getframe(1).f_code is _AS_COMPLETED_UPDATE:
            # as_completed reads its input holding a lock that its own
            # callbacks on the event loop wait for, and next() needs the loop:
            # it would hang for good. Say so at once.
            raise TypeError(
                "distributed.as_completed cannot take a FutureGenerator: its "
                "items come one by one, and as_completed wants all its Futures "
                "at once. A stream already gives items as they finish "
                "(`for fut in gen`); to mix them with other Futures, add each "
                "one: `ac = as_completed(others)`, then `ac.add(fut)` for each "
                "`fut` of the stream."
            )
        return self

    def __next__(self) -> Future[Any]:
        if self._client.asynchronous:
            raise InvalidStateError(
                "this FutureGenerator belongs to an asynchronous client: use "
                "`await gen.__anext__()` or `async for`."
            )
        if self._status is StreamStatus.running and self._index < self._state.produced:
            return self._take()  # ready: no round trip through the event loop
        try:
            return self._client.sync(self._next, timeout=None)
        except StopAsyncIteration:
            raise StopIteration from None

    def __aiter__(self) -> AsyncIterator[Future[Any]]:
        if not self._client.asynchronous:
            raise InvalidStateError(
                "async iteration needs an asynchronous client "
                "(Client(asynchronous=True)); use a plain `for` loop here."
            )
        return self

    async def __anext__(self) -> Future[Any]:
        if not self._client.asynchronous:
            raise InvalidStateError(
                "async iteration needs an asynchronous client; use `for` here."
            )
        return await self._next(timeout=None)

    def send(self, value: Any) -> None:
        raise NotImplementedError("FutureGenerator does not support send().")

    def throw(self, *args: Any) -> None:
        raise NotImplementedError("FutureGenerator does not support throw().")

    def __reduce__(self) -> Any:
        raise TypeError(
            "a FutureGenerator cannot be pickled: it is bound to the client that "
            "submitted the call and receives its items. Pass the item Futures, "
            "or a list of them, to other tasks instead."
        )

    # client.submit(f, gen) tokenizes its arguments first: say it there, not
    # under distributed's "Could not serialize object of type ...".
    __dask_tokenize__ = __reduce__

    def __dask_graph__(self) -> Any:
        """Not a Dask collection: say so to whoever asks (``distributed.wait``,
        ``distributed.progress``, ``dask.compute``, ``client.persist`` look
        for Futures in collections and would find none in a stream)."""
        raise TypeError(
            "a FutureGenerator is not a Dask collection, so distributed.wait, "
            "distributed.progress, dask.compute and client.persist cannot take "
            "it. Wait for the call with `distributed.wait(gen.completed())` (done "
            "once every item was yielded) or `daskgen.wait([gen])` (its next "
            "item), show its progress with `daskgen.progress(gen)`, and pass the "
            "item Futures that `next(gen)` returns to other functions."
        )

    def __repr__(self) -> str:
        s = self._state
        return (
            f"<FutureGenerator {self._name}: {self._status.value}, "
            f"{self._index} taken of {s.produced} yielded"
            f"{', ended' if s.end else ''}>"
        )

    # --------------------------------------------------------------- internal

    async def _where(self) -> str:
        """Where the call stands, for a timeout's message ("" if unknown)."""
        scheduler: Any = self._client.scheduler
        try:
            w = await asyncio.wait_for(
                getattr(scheduler, Op.WHERE)(
                    gen_id=self._state.gen_id, index=self._index
                ),
                5,
            )
        except Exception:  # noqa: BLE001 - the message is a courtesy
            return ""
        return _describe_where(w, self._index)

    def _take(self) -> Future[Any]:
        """Return the next item's Future; tell the scheduler (for backpressure
        and the dashboard) in one message per event-loop turn, not per item."""
        fut = self._state.futures.pop(self._index)
        self._index += 1
        loop = self._client.loop
        if not self._take_scheduled and loop is not None:
            self._take_scheduled = True
            loop.add_callback(self._send_taken)
        return fut

    def _send_taken(self) -> None:
        self._take_scheduled = False
        if self._client.status == "running":
            _compat.send_to_scheduler(
                self._client,
                {
                    "op": Op.TAKE,
                    "gen_id": self._state.gen_id,
                    "taken": self._index,
                },
            )

    async def _next(self, timeout: float | None) -> Future[Any]:
        if self._status is StreamStatus.cancelled:
            self._raised = True
            raise GeneratorCancelledError(
                f"this stream was cancelled; {self._index} items were returned."
            )
        s = self._state
        deadline = (
            None if timeout is None else asyncio.get_running_loop().time() + timeout
        )
        while True:
            if self._index < s.produced:
                return self._take()
            if s.end is not None:
                self._status = StreamStatus.finished
                if s.end == "erred" and not self._raised:
                    self._raised = True
                    raise await _driver_error(self._end, s)
                raise StopAsyncIteration
            event = s.event()
            event.clear()
            remaining = None
            if deadline is not None:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    raise StreamTimeoutError(
                        f"no item {self._index} of {self._name!r} within {timeout} "
                        f"s{await self._where()}"
                    )
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                continue


def _describe_where(w: dict[str, Any] | None, index: int) -> str:
    """The scheduler's view of a stream whose next item is late, in words."""
    if w is None:
        return "; the scheduler does not know the call (it ended or was released)"
    if w["driver"] == "processing":
        run = (
            f"the call's generator task is processing on {w['worker']} "
            f"(run {w['attempts']} of {w['budget']})"
        )
        status = w.get("worker_status")
        if status == "paused":
            run += (
                ", and that worker is paused: its memory is above "
                "distributed.worker.memory.pause, and a paused worker starts "
                "no task until memory is freed"
            )
        elif status not in (None, "running"):
            run += f", and that worker is {status}"
    elif w["driver"] in ("waiting", "queued", "no-worker", "released"):
        run = (
            f"the call is waiting to run ({w['driver']}; "
            f"{w['attempts']} of {w['budget']} runs used)"
        )
    else:
        run = f"the call's generator task is {w['driver']}"
    n = w["yielded"]
    parts = [run, f"{n} item{'' if n == 1 else 's'} yielded"]
    if w["run_yielded"] < w["yielded"] and w["driver"] == "processing":
        parts.append(f"this run has replayed {w['run_yielded']} of them")
    if w["limit"] is not None:
        paused = w["state"] == "paused"  # the scheduler's own accounting
        parts.append(
            f"backpressure limit {w['limit']}{' (paused there)' if paused else ''}"
        )
    if w["item"] is not None:
        held = f" on {', '.join(w['item_on'])}" if w["item_on"] else ""
        parts.append(f"item {index} is {w['item']}{held}")
    else:
        parts.append(f"item {index} is not yielded yet")
    return "; " + "; ".join(parts)


async def _end_with_driver(driver: Any, stream: CallState) -> None:
    """End a stream whose driver failed without telling it (normally the
    scheduler's end notification comes first): e.g. the scheduler could not
    load the call's graph, so daskgen's plugin never saw the call."""
    await driver.wait()
    # Not on "cancelled": client.cancel(gen.completed()) cancels only the
    # caller's Future while the generator runs on (docs/semantics.md).
    if driver.status == "error" and stream.end is None:
        stream.error = driver
        stream.on_items(stream.produced, "erred")


async def _driver_error(
    end: Future[Any], stream: CallState | None = None
) -> BaseException:
    """The exception of a call whose driver erred or was cancelled (its end
    marker's, or its driver's if the scheduler never accepted the call)."""
    if stream is not None and stream.error is not None:
        st = stream.error
    else:
        st = await _compat.future_done(end)
    if st.status == "error":
        # Raise a copy: raising the stored exception would chain this frame's
        # traceback (and so the Futures it references) into the client's state.
        exc: BaseException = st.exception
        with contextlib.suppress(Exception):
            exc = copy.copy(exc)
        if st.traceback is not None:
            exc = exc.with_traceback(st.traceback)
        return exc
    return GeneratorCancelledError(f"generator call {end.key!r} was cancelled")


# ----------------------------------------------------------------- DynamicFuture


class DynamicFuture(Future):  # type: ignore[type-arg]  # Future is generic only in newer distributed
    """The one Future of a ``num_returns='dynamic'`` call.

    Its :meth:`result` is the list of item Futures, once the generator has
    ended; it raises the generator's exception if it raised. Dropping or
    cancelling it stops the generator (nobody could get its items).

    Examples
    --------
    >>> ref = daskgen.submit(produce, 3, num_returns="dynamic")  # doctest: +SKIP
    >>> [f.result() for f in ref.result()]  # doctest: +SKIP
    [0, 10, 20]
    """

    def __init__(
        self,
        key: Any,
        client: Client,
        *,
        stream: CallState,
        _end: Future[Any],
    ) -> None:
        super().__init__(key, client)
        self._stream = stream
        self._keep = _end
        # Dropped: free the items the stream state holds for it.
        weakref.finalize(self, stream.abandon)

    @property
    def call(self) -> CallState:
        """The call's client-side state (what daskgen's own tools read)."""
        return self._stream

    def result(self, timeout: Timeout = None) -> Any:
        """The list of item Futures (waits for the generator to end)."""
        return self.client.sync(self._items, callback_timeout=parse_timedelta(timeout))

    async def _items(self) -> list[Future[Any]]:
        s = self._stream
        st = _compat.future_state(self._keep)
        # The end notification precedes the end marker's key-in-memory; the
        # marker alone says when the call was cancelled with client.cancel.
        while s.end is None and st.status not in ("error", "cancelled"):
            event = s.event()
            event.clear()
            waits = [
                asyncio.ensure_future(event.wait()),
                asyncio.ensure_future(st.wait()),
            ]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
        if s.end == "erred" or st.status == "error":
            raise await _driver_error(self._keep, s)
        if s.end != "memory" or st.status == "cancelled":
            raise GeneratorCancelledError(f"dynamic call {self.key!r} was cancelled")
        return [s.futures[i] for i in range(s.produced)]

    def cancel(self, reason: Any = None, msg: Any = None, **kwargs: Any) -> Any:
        """Stop the generator at its next yield."""
        _compat.send_to_scheduler(
            self.client, {"op": Op.CANCEL, "gen_id": self._stream.gen_id}
        )
        return None

    def __reduce__(self) -> Any:
        raise TypeError(
            "a DynamicFuture cannot be pickled: pass the item Futures of its "
            "result() to other tasks instead."
        )

    def __repr__(self) -> str:
        s = self._stream
        state = {None: "running", "memory": "finished"}.get(s.end, s.end)
        return f"<DynamicFuture {self.key}: {state}, {s.produced} items yielded>"
