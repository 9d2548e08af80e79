"""Dashboard page and Prometheus metrics for daskgen.

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

and these metrics to the scheduler's ``/metrics`` (if ``prometheus_client`` is
installed), under Dask's namespace (``distributed.dashboard.prometheus.namespace``,
``dask`` by default):

``dask_daskgen_generators{state="..."}``
    Gauge: generator calls by state, live calls plus the finished ones the
    scheduler still remembers (``daskgen.history``).
``dask_daskgen_items_yielded_total``, ``dask_daskgen_bytes_yielded_total``
    Counters: items yielded (and their sizes) since the scheduler started.
``dask_daskgen_backpressure_pauses_total``, ``dask_daskgen_backpressure_paused_seconds_total``
    Counters: how often generators waited on a slow consumer, and how long.

The metrics collector is registered once per process in
``prometheus_client.REGISTRY``; if one process runs several schedulers with
daskgen (tests do), their values are summed.

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

import html
import json
import logging
import re
import threading
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dask.config
from distributed.http.utils import RequestHandler

from daskgen import _compat
from daskgen._core import ENDED, PLUGIN_NAME, State

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

#: Most rows the page shows (the JSON endpoint returns all unless ``?limit=``).
PAGE_ROWS = 1000

# Plugins that installed themselves and have not closed: what the metrics
# collector reports and what the handlers accept as "installed".
_live: weakref.WeakSet[GeneratorSchedulerPlugin] = weakref.WeakSet()
_lock = threading.Lock()
_collector: _Collector | None = None


# ------------------------------------------------------------------ install


def install(scheduler: Any, plugin: GeneratorSchedulerPlugin) -> None:
    """Serve daskgen's page, JSON and metrics from ``scheduler``'s HTTP server.

    Called by :class:`~daskgen.GeneratorSchedulerPlugin` when it starts.
    Installing twice on one scheduler adds the routes once. A scheduler
    without an HTTP server gets the metrics collector only.

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
        _register_collector()
    except Exception:  # pragma: no cover - a prometheus_client problem
        logger.warning("daskgen: Prometheus metrics not registered", exc_info=True)
    try:
        _add_routes(scheduler)
    except Exception:  # pragma: no cover - an unexpected tornado/distributed change
        logger.warning("daskgen: /daskgen dashboard page not added", exc_info=True)
    try:
        _add_bokeh_page(scheduler)
    except Exception:  # pragma: no cover - an unexpected bokeh/distributed change
        logger.warning(
            "daskgen: Generators page not added to the Dask dashboard", exc_info=True
        )


def _add_bokeh_page(scheduler: Any) -> None:
    """The Generators page in the Dask dashboard, if the scheduler runs one."""
    app = getattr(scheduler, "http_application", None)
    if app is None or not _compat.has_bokeh_dashboard(scheduler):
        return  # no bokeh, or dashboard=False: then bokeh need not be importable
    from daskgen import dashboard_bokeh

    dashboard_bokeh.register(scheduler, _http_prefix(app))


def _add_routes(scheduler: Any) -> None:
    app = getattr(scheduler, "http_application", None)
    if app is None or _has_routes(app):
        return
    prefix = _http_prefix(app)
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


def _http_prefix(app: Any) -> str:
    """The ``http_prefix`` the scheduler was started with, e.g. ``/`` or ``/dask/``.

    The scheduler does not keep it, so it is read off a route that the
    scheduler added under it.
    """
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
    return {
        "installed": plugin is not None,
        "scheduler": getattr(server, "address", None),
        "time": time.time(),
        "total": len(data),
        "counts": counts,
        "totals": _totals(plugin) if plugin is not None else {},
        "workers": worker_bytes(server, plugin) if plugin is not None else {},
        "generators": data if limit is None else data[:limit],
    }


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


def _totals(plugin: GeneratorSchedulerPlugin) -> dict[str, float]:
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


class GeneratorsPageHandler(_Handler):
    """``GET /daskgen``: the page (rendered here, then refreshed by its script)."""

    def get(self) -> None:
        trailing = self.request.path.endswith("/")
        api = API_PATH[len(PAGE_PATH) + 1 :] if trailing else API_PATH
        status = "../status" if trailing else "status"
        snap = snapshot(self.server, PAGE_ROWS)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(render_page(snap, api_url=api, status_url=status))


#: For ``distributed.scheduler.http.routes`` (see the module docstring).
routes: list[tuple[str, type[RequestHandler], dict[str, Any]]] = [
    (PAGE_PATH + "/?", GeneratorsPageHandler, {}),
    (API_PATH, GeneratorsJSONHandler, {}),
]


# ------------------------------------------------------------------ page


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.50 kiB'`` (the page's script formats the same way)."""
    for prefix, k in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("ki", 2**10)):
        if n >= k * 0.9:
            return f"{n / k:.2f} {prefix}B"
    return f"{int(n)} B"


def format_rate(r: float) -> str:
    """Items per second: ``'12.5/s'``, ``'1234/s'``."""
    return f"{r:.1f}/s" if r < 100 else f"{r:.0f}/s"


def format_seconds(t: float) -> str:
    """``'4.2 s'``, ``'3m 07s'``, ``'2h 05m'``."""
    if t < 60:
        return f"{t:.1f} s"
    s = int(t)
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def _mode(r: dict[str, Any]) -> str:
    mode = str(r["mode"])
    if r.get("num_returns") is not None and mode == "static":
        mode += f" ({r['num_returns']})"
    if r.get("backpressure") is not None:
        mode += f", backpressure {r['backpressure']}"
    return mode


def _cells(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(class, text, title)`` of each cell of a row."""
    error = r.get("error") or ""
    return [
        ("name", str(r["name"]), str(r["key"])),
        ("client", str(r["client"]), str(r["client"])),
        ("worker", str(r["worker"] or ""), str(r["worker"] or "")),
        ("mode", _mode(r), ""),
        (
            "state",
            str(r["state"]),
            f"attempts {r['attempts']}, backpressure pauses {r['pauses']} "
            f"({format_seconds(r['paused_seconds'])})",
        ),
        ("yielded num", str(r["yielded"]), ""),
        ("taken num", str(r["taken"]), ""),
        ("released num", str(r["released"]), ""),
        ("bytes num", format_bytes(r["bytes"]), f"{r['bytes']} bytes"),
        ("rate num", format_rate(r["rate"]), ""),
        ("elapsed num", format_seconds(r["elapsed"]), ""),
        ("error", error.splitlines()[0] if error else "", error),
    ]


def _row_html(r: dict[str, Any]) -> str:
    gid = html.escape(str(r["gen_id"]), quote=True)
    state = html.escape(str(r["state"]), quote=True)
    tds = "".join(
        f'<td class="{cls}"'
        + (f' title="{html.escape(title, quote=True)}"' if title else "")
        + f">{html.escape(text)}</td>"
        for cls, text, title in _cells(r)
    )
    return f'<tr id="gen-{gid}" data-gen-id="{gid}" data-state="{state}">{tds}</tr>'


_COLUMNS = (
    ("Function", ""),
    ("Caller", ""),
    ("Worker", ""),
    ("Mode", ""),
    ("State", ""),
    ("Yielded", "num"),
    ("Taken", "num"),
    ("Released", "num"),
    ("Bytes yielded", "num"),
    ("Rate", "num"),
    ("Elapsed", "num"),
    ("Error", ""),
)


def _summary_text(snap: dict[str, Any]) -> str:
    if not snap["installed"]:
        return ""
    counts = ", ".join(f"{n} {s}" for s, n in snap["counts"].items() if n)
    t = snap["totals"]
    return (
        f"{snap['total']} calls ({counts or 'none yet'}) · "
        f"{int(t.get('items', 0))} items, {format_bytes(t.get('bytes', 0))} yielded · "
        f"{int(t.get('pauses', 0))} backpressure pauses "
        f"({format_seconds(t.get('paused_seconds', 0.0))})"
    )


def render_page(snap: dict[str, Any], *, api_url: str, status_url: str) -> str:
    """The HTML of the page for one :func:`snapshot`.

    Parameters
    ----------
    snap : dict
        From :func:`snapshot`.
    api_url, status_url : str
        Links (relative to the page) to the JSON data and Dask's status page.
    """
    body = "".join(_row_html(r) for r in snap["generators"])
    notice = (
        ""
        if snap["installed"]
        else "daskgen is not installed on this scheduler yet: call "
        "daskgen.install(client) or start it with dask scheduler --preload daskgen."
    )
    head = "".join(
        f'<th class="{cls}">{name}</th>' if cls else f"<th>{name}</th>"
        for name, cls in _COLUMNS
    )
    replacements: dict[str, str] = {
        "__API__": html.escape(api_url, quote=True),
        "__STATUS__": html.escape(status_url, quote=True),
        "__HEAD__": head,
        "__ROWS__": body,
        "__NOTICE__": html.escape(notice),
        "__NOTICE_HIDDEN__": "" if notice else "hidden",
        "__SUMMARY__": html.escape(_summary_text(snap)),
        "__LIMIT__": str(PAGE_ROWS),
        "__NCOLS__": str(len(_COLUMNS)),
        "__EMPTY_HIDDEN__": "hidden" if snap["generators"] else "",
    }
    # One pass, so that text from the rows is never taken for a placeholder.
    return re.sub(r"__[A-Z_]+__", lambda m: replacements.get(m[0], m[0]), _PAGE)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>daskgen: generator calls</title>
<style>
  body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
         margin: 0; color: #222; background: #fff; font-size: 14px; }
  header { display: flex; align-items: baseline; gap: 1.5em; padding: 10px 16px;
           border-bottom: 1px solid #ddd; background: #f7f7f7; }
  header h1 { font-size: 18px; margin: 0; }
  header a { color: #1a5fb4; text-decoration: none; }
  header a:hover { text-decoration: underline; }
  #updated { margin-left: auto; color: #777; font-size: 12px; }
  #updated.stale { color: #b00; }
  main { padding: 8px 16px; }
  #summary { color: #444; margin: 6px 0 10px; }
  #notice { background: #fff4d6; border: 1px solid #e5c07b; padding: 8px; margin: 8px 0; }
  table { border-collapse: collapse; width: 100%; }
  th, td { padding: 4px 8px; border-bottom: 1px solid #eee; text-align: left;
           white-space: nowrap; }
  th { position: sticky; top: 0; background: #fff; border-bottom: 2px solid #ccc;
       font-weight: 600; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.client, td.worker { max-width: 16em; overflow: hidden; text-overflow: ellipsis;
                         font-family: ui-monospace, Menlo, Consolas, monospace;
                         font-size: 12px; }
  td.error { max-width: 28em; overflow: hidden; text-overflow: ellipsis; color: #b00; }
  td.state { font-weight: 600; }
  tr[data-state="running"] td.state { color: #1a7f37; }
  tr[data-state="paused"] td.state { color: #b35900; }
  tr[data-state="waiting"] td.state { color: #666; }
  tr[data-state="finished"] td.state { color: #1a5fb4; }
  tr[data-state="erred"] td.state, tr[data-state="cancelled"] td.state { color: #b00; }
  tr[data-state="finished"], tr[data-state="erred"], tr[data-state="cancelled"] {
    color: #555; }
  #empty td { color: #777; text-align: center; padding: 16px; }
</style>
</head>
<body>
<header>
  <h1>daskgen: generator calls</h1>
  <a href="__STATUS__">&larr; Dask dashboard</a>
  <a href="__API__">JSON</a>
  <span id="updated"></span>
</header>
<main>
<div id="notice" __NOTICE_HIDDEN__>__NOTICE__</div>
<div id="summary">__SUMMARY__</div>
<table id="generators">
<thead><tr>__HEAD__</tr></thead>
<tbody id="rows">__ROWS__</tbody>
<tbody><tr id="empty" __EMPTY_HIDDEN__><td colspan="__NCOLS__">No generator calls yet.</td></tr></tbody>
</table>
</main>
<script>
(function () {
  "use strict";
  var API = "__API__", LIMIT = __LIMIT__;
  var STATES = ["waiting", "running", "paused", "finished", "erred", "cancelled"];
  var UNITS = [["Ti", Math.pow(2, 40)], ["Gi", Math.pow(2, 30)],
               ["Mi", Math.pow(2, 20)], ["ki", 1024]];
  function bytes(n) {
    for (var i = 0; i < UNITS.length; i++) {
      if (n >= UNITS[i][1] * 0.9) { return (n / UNITS[i][1]).toFixed(2) + " " + UNITS[i][0] + "B"; }
    }
    return Math.floor(n) + " B";
  }
  function rate(r) { return (r < 100 ? r.toFixed(1) : r.toFixed(0)) + "/s"; }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function seconds(t) {
    if (t < 60) { return t.toFixed(1) + " s"; }
    var s = Math.floor(t);
    if (s < 3600) { return Math.floor(s / 60) + "m " + pad(s % 60) + "s"; }
    return Math.floor(s / 3600) + "h " + pad(Math.floor(s % 3600 / 60)) + "m";
  }
  function mode(r) {
    var m = String(r.mode);
    if (r.num_returns !== null && r.num_returns !== undefined && m === "static") { m += " (" + r.num_returns + ")"; }
    if (r.backpressure !== null && r.backpressure !== undefined) { m += ", backpressure " + r.backpressure; }
    return m;
  }
  function cells(r) {
    var err = r.error || "";
    return [
      ["name", String(r.name), String(r.key)],
      ["client", String(r.client), String(r.client)],
      ["worker", r.worker || "", r.worker || ""],
      ["mode", mode(r), ""],
      ["state", String(r.state), "attempts " + r.attempts + ", backpressure pauses " +
        r.pauses + " (" + seconds(r.paused_seconds) + ")"],
      ["yielded num", String(r.yielded), ""],
      ["taken num", String(r.taken), ""],
      ["released num", String(r.released), ""],
      ["bytes num", bytes(r.bytes), r.bytes + " bytes"],
      ["rate num", rate(r.rate), ""],
      ["elapsed num", seconds(r.elapsed), ""],
      ["error", err ? err.split("\\n")[0] : "", err]
    ];
  }
  function setCell(td, c) {
    if (td.className !== c[0]) { td.className = c[0]; }
    if (td.textContent !== c[1]) { td.textContent = c[1]; }
    if (c[2]) { if (td.title !== c[2]) { td.title = c[2]; } }
    else if (td.hasAttribute("title")) { td.removeAttribute("title"); }
  }
  function render(data) {
    var tbody = document.getElementById("rows");
    var old = {};
    Array.prototype.forEach.call(tbody.rows, function (tr) { old[tr.dataset.genId] = tr; });
    var prev = null;
    data.generators.forEach(function (r) {
      var tr = old[r.gen_id], cs = cells(r), i;
      if (tr) { delete old[r.gen_id]; }
      else {
        tr = document.createElement("tr");
        tr.id = "gen-" + r.gen_id;
        tr.dataset.genId = r.gen_id;
        for (i = 0; i < cs.length; i++) { tr.appendChild(document.createElement("td")); }
      }
      if (tr.dataset.state !== r.state) { tr.dataset.state = r.state; }
      for (i = 0; i < cs.length; i++) { setCell(tr.cells[i], cs[i]); }
      var want = prev ? prev.nextSibling : tbody.firstChild;
      if (want !== tr) { tbody.insertBefore(tr, want); }
      prev = tr;
    });
    Object.keys(old).forEach(function (k) { tbody.removeChild(old[k]); });
    document.getElementById("empty").hidden = data.generators.length > 0;
    var notice = document.getElementById("notice");
    notice.hidden = data.installed;
    if (!data.installed) {
      notice.textContent = "daskgen is not installed on this scheduler yet: call " +
        "daskgen.install(client) or start it with dask scheduler --preload daskgen.";
    }
    var summary = "";
    if (data.installed) {
      var counts = STATES.filter(function (s) { return data.counts[s]; })
        .map(function (s) { return data.counts[s] + " " + s; }).join(", ");
      var t = data.totals;
      summary = data.total + " calls (" + (counts || "none yet") + ") \\u00b7 " +
        Math.floor(t.items || 0) + " items, " + bytes(t.bytes || 0) + " yielded \\u00b7 " +
        Math.floor(t.pauses || 0) + " backpressure pauses (" +
        seconds(t.paused_seconds || 0) + ")";
      if (data.total > data.generators.length) {
        summary += " \\u00b7 showing the first " + data.generators.length;
      }
    }
    document.getElementById("summary").textContent = summary;
  }
  var updated = document.getElementById("updated");
  function tick() {
    fetch(API + "?limit=" + LIMIT, {cache: "no-store"})
      .then(function (resp) {
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        return resp.json();
      })
      .then(function (data) {
        render(data);
        updated.className = "";
        updated.textContent = "updated " + new Date().toLocaleTimeString();
      })
      .catch(function (e) {
        updated.className = "stale";
        updated.textContent = "cannot reach the scheduler (" + e.message + ")";
      })
      .then(function () { setTimeout(tick, 1000); });
  }
  tick();
})();
</script>
</body>
</html>
"""


# ---------------------------------------------------------------- metrics


class _Collector:
    """Prometheus collector over every live plugin of this process."""

    def _families(self, plugins: list[GeneratorSchedulerPlugin]) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        ns = dask.config.get("distributed.dashboard.prometheus.namespace", "dask")

        def name(n: str) -> str:
            return "_".join(p for p in (ns, "daskgen", n) if p)

        counts = dict.fromkeys((st.value for st in State), 0)
        totals: dict[str, float] = dict.fromkeys(
            ("items", "bytes", "pauses", "paused_seconds"), 0
        )
        for plugin in plugins:
            for g in list(plugin.generators.values()):
                counts[g.state] = counts.get(g.state, 0) + 1
            for info in list(plugin.history):
                counts[info["state"]] = counts.get(info["state"], 0) + 1
            for k, v in _totals(plugin).items():
                totals[k] = totals.get(k, 0) + v
        gens = GaugeMetricFamily(
            name("generators"),
            "Generator calls by state: live ones plus the finished ones the "
            "scheduler remembers (daskgen.history)",
            labels=["state"],
        )
        for state, n in counts.items():
            gens.add_metric([state], n)
        yield gens
        yield CounterMetricFamily(
            name("items_yielded"),
            "Items yielded by generator calls",
            value=totals["items"],
        )
        yield CounterMetricFamily(
            name("bytes_yielded"),
            "Bytes (sizeof) of the items yielded by generator calls",
            value=totals["bytes"],
        )
        yield CounterMetricFamily(
            name("backpressure_pauses"),
            "Times a streaming generator paused because its consumer was behind",
            value=totals["pauses"],
        )
        yield CounterMetricFamily(
            name("backpressure_paused_seconds"),
            "Seconds streaming generators spent paused by backpressure",
            value=totals["paused_seconds"],
        )

    def describe(self) -> list[Any]:
        """The metric names, without values (saves a collect at registration)."""
        return list(self._families([]))

    def collect(self) -> Iterator[Any]:
        """The metrics, summed over the daskgen schedulers of this process."""
        plugins = live_plugins()
        if plugins:
            yield from self._families(plugins)


def _register_collector() -> None:
    """Add :class:`_Collector` to ``prometheus_client.REGISTRY``, once."""
    global _collector
    with _lock:
        if _collector is not None:
            return
        try:
            from prometheus_client import REGISTRY
        except ImportError:
            return
        collector = _Collector()
        try:
            REGISTRY.register(collector)
        except ValueError as e:  # names taken, e.g. this module was reloaded
            logger.warning("daskgen: Prometheus metrics not registered: %s", e)
        _collector = collector
