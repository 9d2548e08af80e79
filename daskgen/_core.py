"""The vocabulary every part of daskgen shares: call spec, modes, states, names.

The client builds one :class:`CallSpec` per call; the scheduler plugin reads
it from the driver task's annotation, the worker driver gets it as an
argument. The plugin name, the annotation, the message ops and the item keys
are defined here once, so the client, the scheduler plugin and the worker
plugin cannot disagree. This module imports nothing from daskgen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "ANNOTATION",
    "ENDED",
    "PLUGIN_NAME",
    "CallSpec",
    "Mode",
    "Op",
    "State",
    "completed",
    "item_key",
    "print_topic",
]

#: Name of the scheduler plugin, the worker plugin, the scheduler extension
#: and the client extension.
PLUGIN_NAME = "daskgen"

#: Annotation of a driver task (and of a plain function submitted through
#: daskgen) that carries its :meth:`CallSpec.to_annotation`.
ANNOTATION = "daskgen"


class _StrEnum(str, Enum):
    """A str that prints as its value (``enum.StrEnum`` is Python >= 3.11)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Mode(_StrEnum):
    """How a call hands out its items (Ray's ``num_returns``)."""

    STATIC = "static"  # num_returns=N: N Futures at submit
    DYNAMIC = "dynamic"  # num_returns="dynamic": one Future of the list of items
    STREAMING = "streaming"  # a FutureGenerator, items as they are yielded
    PLAIN = "plain"  # a plain function submitted through daskgen (max_retries)


class State(_StrEnum):
    """A generator call's state, as the dashboard and the metrics show it."""

    WAITING = "waiting"  # not running: not started yet, or to run again
    RUNNING = "running"
    PAUSED = "paused"  # backpressure: as far ahead of the consumer as allowed
    FINISHED = "finished"
    ERRED = "erred"  # the generator raised (a stream: its error is its last item)
    CANCELLED = "cancelled"


#: States a call does not leave.
ENDED = frozenset({State.FINISHED, State.ERRED, State.CANCELLED})


class Op:
    """Names of the messages between the three parts (``{"op": ...}``)."""

    # client -> scheduler (stream handlers)
    DECLARE = "daskgen-declare"  # a static call's N items
    TAKE = "daskgen-take"  # the consumer took items up to n (backpressure)
    CANCEL = "daskgen-cancel"
    ABANDON = "daskgen-abandon"  # the caller dropped its handle
    # scheduler -> client
    ITEMS = "daskgen-items"  # a stream's items up to n exist (or it ended)
    REJECTED = "daskgen-rejected"  # the scheduler did not accept the call's graph
    # scheduler -> worker
    STOP = "daskgen-stop"
    LIMIT = "daskgen-limit"  # the backpressure limit moved
    REBUILD = "daskgen-rebuild"  # yield these lost items again
    # RPCs on the scheduler
    PRODUCED = "daskgen_produced"  # worker: a batch of stored yields
    INFO = "daskgen_info"
    WHERE = "daskgen_where"


def print_topic(client_id: str) -> str:
    """The event topic of ``daskgen.print`` lines for one client."""
    return f"daskgen-print-{client_id}"


def item_key(prefix: str, index: int) -> tuple[str, int]:
    """The key of a call's item ``index``: its own task, as Dask arrays name chunks."""
    return (prefix, index)


def completed(*_: Any) -> None:
    """Run spec of a call's end marker (``completed()``, a DynamicFuture's key):
    done when the driver is, with nothing to hold."""
    return None


@dataclass(frozen=True)
class CallSpec:
    """One generator call, as the client submitted it."""

    gen_id: str
    prefix: str  # item i has key (prefix, i)
    mode: Mode
    name: str  # the function's name, for messages and the dashboard
    client: str  # the submitting client's id
    max_retries: int
    num_returns: int | None = None  # static calls
    backpressure: int | None = None  # streaming calls
    end_key: str | None = None  # streaming and dynamic: the call's end marker
    actor: str | None = None  # a method of this Dask actor (its key)
    # An actor's streams together hold at most this many items yielded and
    # not taken (ActorClass.options(max_pending=...)).
    actor_limit: int | None = None
    # Worker side only (classes are not sent in the annotation).
    retry_exceptions: bool | tuple[type[BaseException], ...] = field(
        default=False, compare=False
    )

    def item_key(self, index: int) -> tuple[str, int]:
        return item_key(self.prefix, index)

    @property
    def granted(self) -> bool:
        """A stream whose limit the scheduler grants from its actor's budget:
        its driver waits for a first grant before its first yield."""
        return self.actor_limit is not None and self.mode is Mode.STREAMING

    @property
    def pseudo_client(self) -> str:
        """The scheduler-side client that keeps the call running after the
        caller dropped its handles (Ray semantics); see the scheduler plugin."""
        return f"daskgen-{self.gen_id}"

    def to_annotation(self) -> dict[str, Any]:
        """Plain data for the driver's annotation, read by the scheduler."""
        return {
            "gen_id": self.gen_id,
            "prefix": self.prefix,
            "mode": self.mode.value,
            "name": self.name,
            "client": self.client,
            "max_retries": self.max_retries,
            "num_returns": self.num_returns,
            "backpressure": self.backpressure,
            "end": self.end_key,
            "actor": self.actor,
            "actor_limit": self.actor_limit,
        }

    @classmethod
    def from_annotation(cls, meta: dict[str, Any]) -> CallSpec:
        return cls(
            gen_id=meta["gen_id"],
            prefix=meta["prefix"],
            mode=Mode(meta["mode"]),
            name=meta["name"],
            client=meta["client"],
            max_retries=int(meta["max_retries"]),
            num_returns=meta.get("num_returns"),
            backpressure=meta.get("backpressure"),
            end_key=meta.get("end"),
            actor=meta.get("actor"),
            actor_limit=meta.get("actor_limit"),
        )
