"""daskgen: generator tasks for Dask, where every yield is its own Future.

Examples
--------
>>> import daskgen
>>> @daskgen.remote
... def produce(n):
...     for i in range(n):
...         yield i
>>> [f.result() for f in produce.remote(3)]  # doctest: +SKIP
[0, 1, 2]
"""

from __future__ import annotations

from daskgen import _config  # noqa: F401  (registers daskgen.* config defaults)
from daskgen.actors import ActorClass, ActorHandle, actor, remote
from daskgen.client import (
    DynamicFuture,
    FutureGenerator,
    RemoteFunction,
    StreamStatus,
    install,
    submit,
)
from daskgen.collections import as_array, as_bag, as_dataframe
from daskgen.exceptions import (
    ActorDiedError,
    DaskgenError,
    GeneratorCancelledError,
    GeneratorKilledError,
    InvalidStateError,
    ItemLostError,
    NumReturnsError,
    ReplayInconsistentError,
    StreamTimeoutError,
)
from daskgen.progress import progress
from daskgen.scheduler import GeneratorSchedulerPlugin
from daskgen.waiting import get, wait
from daskgen.worker import GeneratorWorkerPlugin, print

__version__ = "0.1.0"

__all__ = [
    "ActorClass",
    "ActorDiedError",
    "ActorHandle",
    "DaskgenError",
    "DynamicFuture",
    "FutureGenerator",
    "GeneratorCancelledError",
    "GeneratorKilledError",
    "GeneratorSchedulerPlugin",
    "GeneratorWorkerPlugin",
    "InvalidStateError",
    "ItemLostError",
    "NumReturnsError",
    "RemoteFunction",
    "ReplayInconsistentError",
    "StreamStatus",
    "StreamTimeoutError",
    "actor",
    "as_array",
    "as_bag",
    "as_dataframe",
    "get",
    "install",
    "print",
    "progress",
    "remote",
    "submit",
    "wait",
]


async def dask_setup(server: object) -> None:
    """Install the plugins as a scheduler or a client starts.

    ``dask scheduler --preload daskgen`` runs it with the scheduler; every
    client of a process that imported daskgen runs it (daskgen adds itself to
    the default of ``distributed.client.preload``).
    """
    from distributed import Client, Scheduler

    if isinstance(server, Scheduler):
        await server.register_scheduler_plugin(
            GeneratorSchedulerPlugin(), name="daskgen", idempotent=True
        )
    elif isinstance(server, Client):
        from daskgen.client import install_on_start

        await install_on_start(server)
