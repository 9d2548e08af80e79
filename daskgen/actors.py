"""Generator methods of Dask actors: Ray's actor generators, on Dask.

A Dask actor (``client.submit(Cls, actor=True)``) is one object living on one
worker. Through daskgen a method call of it becomes a daskgen call whose task
runs on that worker, on that object (:class:`daskgen.worker.ActorMethod`):
a generator method gives the same handles as a generator function (streaming
by default, ``num_returns=N``, ``"dynamic"``, ``backpressure=``), every item a
caller-owned Future stored on the actor's worker; a plain method gives one
Future of its result.

Two ways in::

    @daskgen.remote                       # Ray's shape
    class Model:
        def generate(self, prompt):
            yield ...

    model = Model.remote()                # creates the actor
    for fut in model.generate.remote("hi"):
        ...

    fut = client.submit(Model, actor=True)   # Dask's shape
    model = daskgen.actor(fut)
    model.generate.options(num_returns=3).remote("hi")

What runs concurrently is said in :class:`daskgen.worker.ActorMethod`: each
step of a method runs where Dask runs that actor's methods (sync code in the
worker's one actor thread, async code on the worker's event loop), and
nothing is held between steps. An actor is never restarted: when its worker
dies, every call of it raises :class:`~daskgen.ActorDiedError`.
"""

from __future__ import annotations

import inspect
from typing import Any

from distributed import Client, Future

from daskgen import _compat
from daskgen.client import SUBMIT_OPTIONS, default_client, submit
from daskgen.exceptions import actor_died_error
from daskgen.worker import ActorMethod

__all__ = ["ActorClass", "ActorHandle", "ActorMethodCaller", "actor", "remote"]

#: Options of ``Cls.options(...)``: where the actor is created.
_ACTOR_OPTIONS = {"client", "workers", "resources", "key", "max_pending"}
#: Options of ``handle.method.options(...)``.
_METHOD_OPTIONS = {"num_returns", "backpressure", "priority", "key"}


def remote(func: Any = None, **options: Any) -> Any:
    """Ray's decorator: on a function, :func:`daskgen.client.remote`; on a
    class, an :class:`ActorClass` (``Cls.remote(...)`` creates an actor)."""
    if func is None:
        _unknown(options, SUBMIT_OPTIONS | _ACTOR_OPTIONS, "@daskgen.remote")
        return lambda f: remote(f, **options)
    if inspect.isclass(func):
        return ActorClass(func, **options)
    from daskgen.client import remote as remote_function

    return remote_function(func, **options)


def _unknown(options: dict[str, Any], valid: set[str], what: str) -> None:
    unknown = set(options) - valid
    if unknown:
        raise TypeError(
            f"unknown option(s) {sorted(unknown)} for {what}; valid options are "
            f"{sorted(valid)}"
        )


class ActorClass:
    """A class wrapped by :func:`remote`: ``Cls.remote(*args)`` creates an actor.

    Examples
    --------
    >>> @daskgen.remote
    ... class Counter:
    ...     def count(self, n):
    ...         yield from range(n)
    >>> counter = Counter.remote()  # doctest: +SKIP
    >>> [f.result() for f in counter.count.remote(3)]  # doctest: +SKIP
    [0, 1, 2]
    """

    def __init__(self, cls: type, **options: Any) -> None:
        _unknown(options, _ACTOR_OPTIONS, f"actor class {cls.__name__}")
        self._cls = cls
        self._options = options

    def options(self, **overrides: Any) -> ActorClass:
        """The same class, created with other options (``workers=``,
        ``resources=``, ``client=``, ``key=``)."""
        return ActorClass(self._cls, **{**self._options, **overrides})

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Create the actor (``Cls(*args, **kwargs)`` on a worker); returns its
        :class:`ActorHandle` (with an asynchronous client, an awaitable)."""
        opts = dict(self._options)
        client = opts.pop("client", None) or default_client()
        max_pending = opts.pop("max_pending", None)
        fut = client.submit(self._cls, *args, actor=True, pure=False, **opts, **kwargs)
        return actor(fut, client=client, max_pending=max_pending)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = self._cls.__name__
        raise TypeError(
            f"Actor class {name!r} cannot be instantiated directly. Use "
            f"{name}.remote(...) to create the actor on the cluster."
        )

    def __repr__(self) -> str:
        return f"<daskgen.ActorClass {self._cls.__name__}>"


def actor(x: Any, client: Client | None = None, max_pending: int | None = None) -> Any:
    """An :class:`ActorHandle` for a Dask actor: the Future of
    ``client.submit(Cls, actor=True)``, or the ``Actor`` it gives.

    ``max_pending``: the actor's streams (through this handle) together hold
    at most this many items yielded and not yet taken; a stream then waits
    for its consumer, or for the other streams' consumers, before it yields
    more (each stream's own ``backpressure=`` applies too). With an
    asynchronous client this returns an awaitable.
    """
    if max_pending is not None and (
        not isinstance(max_pending, int)
        or isinstance(max_pending, bool)
        or max_pending < 1
    ):
        raise ValueError(
            f"max_pending={max_pending!r} is not valid: it is how many items the "
            "actor's streams may hold yielded and not taken, an int >= 1, e.g. "
            "max_pending=16."
        )
    if isinstance(x, Future):
        client = client or x.client
        if client.asynchronous:
            return _actor_async(x, client, max_pending)
        return _handle(x, x.result(), client, max_pending)
    cls, _, key, bound = _compat.actor_parts(x)
    if cls is None:
        raise TypeError(
            "daskgen.actor takes the Future of client.submit(Cls, actor=True) or the "
            f"Actor it gives, not {type(x).__name__}"
        )
    client = client or bound or default_client()
    return actor(Future(key, client), client=client, max_pending=max_pending)


async def _actor_async(
    fut: Future[Any], client: Client, max_pending: int | None
) -> ActorHandle:
    return _handle(fut, await fut, client, max_pending)


def _handle(
    fut: Future[Any], proxy: Any, client: Client, max_pending: int | None
) -> ActorHandle:
    cls, address, _, _ = _compat.actor_parts(proxy)
    return ActorHandle(fut, cls, address, client, max_pending)


class ActorHandle:
    """A Dask actor, for daskgen calls: ``handle.method.remote(...)``.

    Holding the handle keeps the actor alive (it holds the actor's Future).
    ``handle.actor`` is Dask's own ``Actor`` proxy, for Dask's calls.
    """

    def __init__(
        self,
        future: Future[Any],
        cls: type,
        worker: str,
        client: Client,
        max_pending: int | None = None,
    ) -> None:
        self.future = future
        self.cls = cls
        self.worker = worker  # the actor never moves
        self.client = client
        self.max_pending = max_pending

    @property
    def key(self) -> str:
        return str(self.future.key)

    @property
    def actor(self) -> Any:
        """Dask's ``Actor`` proxy of the same object."""
        return self.future.result()

    def __getattr__(self, name: str) -> ActorMethodCaller:
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self.cls, name, None)
        if attr is None or not callable(attr):
            raise AttributeError(
                f"actor class {self.cls.__name__!r} has no method {name!r}"
            )
        return ActorMethodCaller(self, name)

    def check_alive(self) -> None:
        """Raise :class:`~daskgen.ActorDiedError` if the actor is gone."""
        if self.future.status in ("error", "lost", "cancelled"):
            raise actor_died_error(self.key, self.cls.__name__, self.worker)

    def __reduce__(self) -> Any:
        raise TypeError(
            "a daskgen ActorHandle cannot be sent to a task; pass handle.actor (Dask's "
            "Actor proxy) and call its methods there"
        )

    # client.submit tokenizes its arguments first: say it there, not buried
    # under distributed's "Could not serialize object of type ...".
    __dask_tokenize__ = __reduce__

    def __repr__(self) -> str:
        return (
            f"<daskgen.ActorHandle {self.cls.__name__} key={self.key} on {self.worker}>"
        )


class ActorMethodCaller:
    """``handle.method``: ``.remote(*args)`` calls it, ``.options(...)`` sets
    ``num_returns=`` / ``backpressure=`` for the call."""

    def __init__(self, handle: ActorHandle, name: str, **options: Any) -> None:
        _unknown(options, _METHOD_OPTIONS, f"{handle.cls.__name__}.{name}")
        self._handle = handle
        self._name = name
        self._options = options

    def options(self, **overrides: Any) -> ActorMethodCaller:
        return ActorMethodCaller(
            self._handle, self._name, **{**self._options, **overrides}
        )

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Call the method on the actor; returns what :func:`daskgen.submit`
        returns for a function of the same kind (a plain method: a Future)."""
        h = self._handle
        h.check_alive()
        method = getattr(h.cls, self._name)
        is_gen = inspect.isgeneratorfunction(method) or inspect.isasyncgenfunction(
            method
        )
        func = ActorMethod(h.key, self._name, h.cls.__name__, is_gen, h.max_pending)
        return submit(
            func,
            *args,
            client=h.client,
            workers=[h.worker],
            allow_other_workers=False,
            # The actor is one object on one worker: a re-run elsewhere has no
            # actor to run on (Dask does not restart actors).
            max_retries=0,
            **self._options,
            **kwargs,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Actor method {self._handle.cls.__name__}.{self._name} cannot be called "
            f"directly. Use .{self._name}.remote(...)."
        )

    def __repr__(self) -> str:
        return f"<daskgen actor method {self._handle.cls.__name__}.{self._name}>"
