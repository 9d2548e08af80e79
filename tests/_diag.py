"""What the scheduler holds for keys a test waited for in vain: a slow run is
told from a lost item by the message of the timeout."""

from __future__ import annotations

from typing import Any


def _states(keys: list[Any], dask_scheduler: Any = None) -> dict[str, str]:
    out = {}
    for k in keys:
        ts = dask_scheduler.tasks.get(k)
        if ts is None:
            out[str(k)] = "not on the scheduler"
            continue
        where = sorted(ws.address for ws in ts.who_has or ())
        on = f" on {where}" if where else ""
        if ts.processing_on is not None:
            on = f" on {ts.processing_on.address}"
        waiting = (
            f", waiting for {sorted(str(d.key) for d in ts.waiting_on)}"
            if ts.waiting_on
            else ""
        )
        out[str(k)] = f"{ts.state}{on}{waiting}"
    return out


def scheduler_states(client: Any, futs: list[Any], limit: int = 10) -> str:
    """The scheduler's state of the first ``limit`` Futures that are not done."""
    pending = [f.key for f in futs if not f.done()]
    try:
        states = client.run_on_scheduler(_states, pending[:limit])
    except Exception as e:  # noqa: BLE001 - a message, not a check
        return f"{len(pending)} not done (scheduler unreachable: {e!r})"
    return f"{len(pending)} not done; the scheduler holds: {states}"
