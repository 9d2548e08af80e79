"""daskgen's pages on the scheduler's HTTP server, and the JSON they show.

When daskgen's scheduler plugin starts (on the first ``daskgen.submit``, on
``daskgen.install(client)``, or with ``dask scheduler --preload daskgen``), it
calls :func:`install`, which adds to the scheduler's HTTP server (the one that
serves the Dask dashboard, port 8787 by default):

``/generators``
    The Generators page of the Dask dashboard, in its navigation bar (a Bokeh
    application: :mod:`daskgen.dashboard_bokeh`), if the scheduler runs the
    Bokeh dashboard (bokeh installed, ``dashboard=True``).
``/daskgen``
    A plain page that needs no bokeh, with one row per generator call: the live ones and the last
    ``daskgen.history`` (300) finished ones. It refreshes itself every second.
``/daskgen/api/v1/generators``
    The same data as JSON: ``{"installed": true, "generators": [...], ...}``,
    where each entry is a ``GenState.info()`` dict. ``?limit=N`` keeps the
    first N rows (active calls come first, newest first).

The Prometheus metrics on ``/metrics`` are :mod:`daskgen.metrics`.

Routes from configuration
-------------------------
The routes are added when the plugin starts. To serve ``/daskgen`` from the
start instead, even before the first client connects, add this module to the
scheduler's HTTP route modules (the list replaces Dask's default, so repeat
it)::

    # daskgen.yaml, in a Dask config directory
    distributed:
      scheduler:
        http:
          routes:
            - distributed.http.scheduler.prometheus
            - distributed.http.scheduler.info
            - distributed.http.scheduler.json
            - distributed.http.health
            - distributed.http.proxy
            - distributed.http.statics
            - daskgen.dashboard

and start the scheduler with the plugin preloaded::

    dask scheduler --preload daskgen

(``--preload daskgen`` alone is enough for both the page and the metrics: the
plugin adds the routes when it starts. The page shows a notice until the
plugin is installed.) ``--dashboard-prefix`` is honoured both ways.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dask.utils import format_bytes, format_time
from distributed.http.utils import RequestHandler

from daskgen._core import ENDED, PLUGIN_NAME, Mode, State

if TYPE_CHECKING:
    from daskgen.scheduler import GeneratorSchedulerPlugin

logger = logging.getLogger(__name__)

__all__ = [
    "GeneratorsJSONHandler",
    "GeneratorsPageHandler",
    "install",
    "routes",
    "uninstall",
]

#: Path of the page and of its JSON data, relative to the dashboard's prefix.
PAGE_PATH = "daskgen"
API_PATH = "daskgen/api/v1/generators"

_ENDED = tuple(st.value for st in ENDED)

# Plugins that installed themselves and have not closed: what the metrics
# collector reports and what the handlers accept as "installed".
_live: weakref.WeakSet[GeneratorSchedulerPlugin] = weakref.WeakSet()
_lock = threading.Lock()


# ------------------------------------------------------------------ install


def install(scheduler: Any, plugin: GeneratorSchedulerPlugin) -> None:
    """Serve daskgen's page, JSON and metrics from ``scheduler``'s HTTP server.

    Called by :class:`~daskgen.GeneratorSchedulerPlugin` when it starts.
    Installing twice on one scheduler adds the routes once. (The Prometheus
    metrics are :mod:`daskgen.metrics`.)

    Parameters
    ----------
    scheduler : distributed.Scheduler
        The scheduler the plugin runs on.
    plugin : GeneratorSchedulerPlugin
        The plugin whose state is shown.
    """
    with _lock:
        _live.add(plugin)
    # Monitoring must never keep the plugin from starting.
    try:
        _add_routes(scheduler)
    except Exception:  # pragma: no cover - an unexpected tornado/distributed change
        logger.warning("daskgen: /daskgen dashboard page not added", exc_info=True)


def _add_routes(scheduler: Any) -> None:
    app = getattr(scheduler, "http_application", None)
    if app is None or _has_routes(app):
        return
    prefix = http_prefix(scheduler)
    app.add_handlers(
        r".*",
        [
            (
                prefix + PAGE_PATH + "/?",
                GeneratorsPageHandler,
                {"dask_server": scheduler},
            ),
            (prefix + API_PATH, GeneratorsJSONHandler, {"dask_server": scheduler}),
        ],
    )


def uninstall(plugin: GeneratorSchedulerPlugin) -> None:
    """Stop reporting ``plugin`` (its scheduler is closing).

    The routes stay (they go with the scheduler's HTTP server); the page then
    says that daskgen is not installed.

    Parameters
    ----------
    plugin : GeneratorSchedulerPlugin
        A plugin passed to :func:`install` before.
    """
    with _lock:
        _live.discard(plugin)


def live_plugins() -> list[GeneratorSchedulerPlugin]:
    """The plugins installed in this process that have not closed."""
    with _lock:
        return list(_live)


def _has_routes(app: Any) -> bool:
    """Whether ``app`` already routes to our handlers (from config or install)."""
    ours = (GeneratorsPageHandler, GeneratorsJSONHandler)
    seen: set[int] = set()

    def walk(router: Any) -> bool:
        if router is None or id(router) in seen:
            return False
        seen.add(id(router))
        for rule in list(getattr(router, "rules", ())):
            target = rule.target
            if isinstance(target, type) and issubclass(target, ours):
                return True
            if hasattr(target, "rules") and walk(target):
                return True
        return False

    return walk(getattr(app, "default_router", None)) or walk(
        getattr(app, "wildcard_router", None)
    )


# Routes every Dask scheduler serves under its ``http_prefix``.
_KNOWN_ROUTES = ("health$", "metrics$", "sitemap.json$")


def http_prefix(scheduler: Any) -> str:
    """The ``http_prefix`` the scheduler was started with, e.g. ``/`` or ``/dask/``.

    The scheduler does not keep it, so it is read off a route that the
    scheduler added under it.
    """
    app = getattr(scheduler, "http_application", None)
    router = getattr(app, "wildcard_router", None)
    for tail in _KNOWN_ROUTES:
        for rule in list(getattr(router, "rules", ())):
            regex = getattr(rule.matcher, "regex", None)
            pattern = getattr(regex, "pattern", "")
            if isinstance(pattern, str) and pattern.endswith("/" + tail):
                prefix = pattern[: -len(tail)]
                if prefix.startswith("/"):
                    return prefix
    return "/"


# ------------------------------------------------------------------- data


def _plugin_of(server: Any) -> GeneratorSchedulerPlugin | None:
    """The live daskgen plugin of a scheduler, if any."""
    extensions = getattr(server, "extensions", None) or {}
    plugin = extensions.get(PLUGIN_NAME)
    if plugin is None or plugin not in live_plugins():
        return None
    return plugin


def rows(plugin: GeneratorSchedulerPlugin) -> list[dict[str, Any]]:
    """All calls the plugin knows, newest first: active, live ended, forgotten.

    Active calls (waiting, running or paused) come first, then the calls that
    ended but whose driver task the scheduler still holds, then the history.

    Parameters
    ----------
    plugin : GeneratorSchedulerPlugin

    Returns
    -------
    list of dict
        ``GenState.info()`` dicts.
    """
    live = [g.info() for g in list(plugin.generators.values())]
    live.sort(key=lambda r: (r["state"] in _ENDED, -r["submitted"]))
    return live + list(reversed(plugin.history))


def snapshot(server: Any, limit: int | None = None) -> dict[str, Any]:
    """What the JSON endpoint returns for ``server``.

    Parameters
    ----------
    server : distributed.Scheduler
    limit : int, optional
        Keep at most this many rows.

    Returns
    -------
    dict
        ``installed``, ``scheduler`` (address), ``time``, ``total`` (number of
        rows before ``limit``), ``counts`` (rows by state), ``totals`` (the
        plugin's counters), ``workers`` (bytes the items in memory hold, per
        worker: :func:`worker_bytes`) and ``generators`` (the rows).
    """
    plugin = _plugin_of(server)
    data = rows(plugin) if plugin is not None else []
    counts = dict.fromkeys((st.value for st in State), 0)
    for r in data:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    shown = data if limit is None else data[:limit]
    snap = {
        "installed": plugin is not None,
        "scheduler": getattr(server, "address", None),
        "time": time.time(),
        "total": len(data),
        "counts": counts,
        "totals": totals(plugin) if plugin is not None else {},
        "workers": worker_bytes(server, plugin) if plugin is not None else {},
        "generators": [dict(r, display=display(r)) for r in shown],
        "columns": [[f, title, cls] for f, title, cls, _ in COLUMNS],
    }
    snap["summary"] = summary(snap)
    return snap


# ---------------------------------------------------------------- columns
# Both pages show these columns, from the JSON alone: each is defined here
# once, its text made with Dask's own formatters.


def _mode(r: dict[str, Any]) -> str:
    mode = str(r["mode"])
    if r.get("num_returns") is not None and mode == Mode.STATIC:
        mode += f" ({r['num_returns']})"
    if r.get("backpressure") is not None:
        mode += f", backpressure {r['backpressure']}"
    if r.get("actor"):
        mode += ", actor"
    return mode


def _error(e: str | None) -> str:
    return e.splitlines()[0] if e else ""


#: (field of a row, title, CSS class, its text): the calls table.
COLUMNS: tuple[tuple[str, str, str, Callable[[dict[str, Any]], str]], ...] = (
    ("name", "Function", "", lambda r: str(r["name"])),
    ("gen_id", "Call", "id", lambda r: str(r["gen_id"])[:12]),
    ("client", "Caller", "addr", lambda r: str(r["client"])),
    ("worker", "Worker", "addr", lambda r: str(r["worker"] or "")),
    ("mode", "Mode", "", _mode),
    ("state", "State", "", lambda r: str(r["state"])),
    ("yielded", "Yielded", "num", lambda r: str(r["yielded"])),
    ("taken", "Taken", "num", lambda r: str(r["taken"])),
    ("released", "Released", "num", lambda r: str(r["released"])),
    ("bytes", "Bytes yielded", "num", lambda r: format_bytes(r["bytes"])),
    ("rate", "Items/s", "num", lambda r: f"{r['rate']:,.1f}"),
    ("elapsed", "Running for", "num", lambda r: format_time(r["elapsed"])),
    ("attempts", "Runs", "num", lambda r: str(r["attempts"])),
    ("pauses", "Pauses", "num", lambda r: str(r["pauses"])),
    ("error", "Error", "", lambda r: _error(r["error"])),
)


def display(r: dict[str, Any]) -> dict[str, str]:
    """The text of each column for one row."""
    return {f: text(r) for f, _, _, text in COLUMNS}


def summary(snap: dict[str, Any]) -> str:
    """The line above the table: calls by state, items, bytes, pauses."""
    if not snap["installed"]:
        return (
            "daskgen is not installed on this scheduler yet: call "
            "daskgen.install(client) or start it with dask scheduler --preload daskgen."
        )
    counts = ", ".join(f"{n} {s}" for s, n in snap["counts"].items() if n)
    t = snap["totals"]
    n = int(t.get("pauses", 0))
    pauses = (
        f"{n} backpressure pauses ({format_time(t.get('paused_seconds', 0.0))})"
        if n
        else "no backpressure pause"
    )
    text = (
        f"{snap['total']} generator calls ({counts or 'none yet'}) · "
        f"{int(t.get('items', 0))} items and {format_bytes(int(t.get('bytes', 0)))} "
        f"yielded since the scheduler started · {pauses}"
    )
    if snap["total"] > len(snap["generators"]):
        text += f" · showing the first {len(snap['generators'])}"
    return text


def worker_bytes(server: Any, plugin: GeneratorSchedulerPlugin) -> dict[str, int]:
    """Bytes held by the items in memory of the calls the scheduler has, per worker.

    Every worker of the cluster is listed, with 0 if it holds no item.
    """
    prefixes = {g.prefix for g in list(plugin.generators.values())}
    out: dict[str, int] = {}
    for address, ws in list(getattr(server, "workers", {}).items()):
        out[address] = sum(
            ts.nbytes
            for ts in list(ws.has_what)
            if isinstance(ts.key, tuple) and ts.key[0] in prefixes and ts.nbytes > 0
        )
    return out


def totals(plugin: GeneratorSchedulerPlugin) -> dict[str, float]:
    """The plugin's counters, with the time of pauses still going on."""
    totals = dict(plugin.totals)
    now = time.time()
    totals["paused_seconds"] += sum(
        now - g.paused_since
        for g in list(plugin.generators.values())
        if g.paused_since is not None
    )
    return totals


# ---------------------------------------------------------------- handlers


class _Handler(RequestHandler):
    server: Any

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")


class GeneratorsJSONHandler(_Handler):
    """``GET /daskgen/api/v1/generators``: the calls as JSON (see :func:`snapshot`)."""

    def get(self) -> None:
        arg = self.get_argument("limit", None)
        limit: int | None = None
        if arg is not None:
            try:
                limit = int(arg)
            except ValueError:
                limit = -1
            if limit < 0:
                self.set_status(400)
                self.write({"error": f"limit must be an int >= 0, got {arg!r}"})
                return
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(snapshot(self.server, limit), default=str))


#: The page: a static file that renders the JSON API (no server-side HTML).
PAGE_FILE = Path(__file__).with_name("static") / "generators.html"


class GeneratorsPageHandler(_Handler):
    """``GET /daskgen``: the page, ``static/generators.html``, which fetches
    the JSON API every second and shows what it says."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(PAGE_FILE.read_bytes())


#: For ``distributed.scheduler.http.routes`` (see the module docstring).
routes: list[tuple[str, type[RequestHandler], dict[str, Any]]] = [
    (PAGE_PATH + "/?", GeneratorsPageHandler, {}),
    (API_PATH, GeneratorsJSONHandler, {}),
]
