"""The Generators page of the Dask dashboard, built with Bokeh like Dask's own pages.

:func:`register` (called by :func:`daskgen.dashboard.install` when daskgen's
scheduler plugin starts) adds one Bokeh application, ``/generators``, to the
scheduler's HTTP server beside the dashboard's own ones, and the entry
"Generators" to the dashboard's navigation bar. The page shows, refreshed
twice a second:

- a summary line: calls by state, items and bytes yielded since the scheduler
  started, backpressure pauses;
- **progress per call**: one bar per call (the newest active ones first) with
  its items yielded, taken by the caller and, for a static call, its N;
- **throughput**: items yielded per second, all calls together, over the last
  minutes;
- **bytes per worker**: what the items in memory hold on each worker;
- the **calls table**: one row per call, as the JSON API
  (``/daskgen/api/v1/generators``) has it.

Every figure is computed from the same data as the JSON API
(:func:`daskgen.dashboard.snapshot`), so the page, the JSON and the metrics
agree. The page needs bokeh, as the Dask dashboard does
(``pip install 'daskgen[dashboard]'``); without it the scheduler has no
dashboard, and this module is not imported.
"""

from __future__ import annotations

import html
import weakref
from typing import Any

from bokeh.layouts import column, row
from bokeh.models import (
    ColumnDataSource,
    DatetimeTickFormatter,
    Div,
    HoverTool,
    NumeralTickFormatter,
)
from bokeh.plotting import figure
from dask.utils import format_bytes
from distributed.utils import log_errors

from daskgen import _compat, dashboard

__all__ = ["PAGE", "GeneratorsPage", "generators_doc", "register"]

#: Path of the page, relative to the dashboard's prefix; also its name in the
#: navigation bar ("Generators").
PAGE = "generators"

#: Calls drawn in the progress plot (the table has them all).
BARS = 20

#: Throughput samples kept (two a second: five minutes).
SAMPLES = 600

COLORS = {
    "waiting": "#bbbbbb",
    "running": "#1f77b4",
    "paused": "#ff7f0e",
    "finished": "#2ca02c",
    "erred": "#d62728",
    "cancelled": "#7f7f7f",
}


def _label(r: dict[str, Any]) -> str:
    return f"{r['name']} {r['gen_id'][:8]}"


class GeneratorsPage:
    """Every plot of the Generators page, updated from :func:`dashboard.snapshot`."""

    def __init__(self, scheduler: Any, width: int = 1200) -> None:
        self.scheduler = scheduler
        self.last: tuple[float, float] | None = None  # (time, items) of last update

        self.summary = Div(text="", width=width)

        self.progress_source = ColumnDataSource(
            {
                k: []
                for k in (
                    "label",
                    "yielded",
                    "taken",
                    "total",
                    "state",
                    "color",
                    "of",
                )
            }
        )
        self.progress = figure(
            title="Progress per call: yielded (light), taken (dark), of N (outline)",
            y_range=[],
            height=360,
            width=width // 2,
            tools="",
            toolbar_location=None,
        )
        src = self.progress_source
        self.progress.hbar(
            y="label", right="total", height=0.8, source=src,
            fill_alpha=0, line_color="color",
        )  # fmt: skip
        self.progress.hbar(
            y="label", right="yielded", height=0.8, source=src,
            color="color", alpha=0.35,
        )  # fmt: skip
        self.progress.hbar(
            y="label", right="taken", height=0.5, source=src, color="color"
        )
        self.progress.x_range.start = 0
        self.progress.add_tools(
            HoverTool(
                tooltips=[
                    ("call", "@label"),
                    ("state", "@state"),
                    ("yielded", "@yielded"),
                    ("taken", "@taken"),
                    ("of", "@of"),
                ]
            )
        )

        self.rate_source = ColumnDataSource({"time": [], "rate": []})
        self.rate = figure(
            title="Items yielded per second (all calls)",
            x_axis_type="datetime",
            height=170,
            width=width // 2,
            tools="",
            toolbar_location=None,
        )
        self.rate.line(x="time", y="rate", source=self.rate_source, line_width=2)
        self.rate.y_range.start = 0
        self.rate.xaxis.formatter = DatetimeTickFormatter(
            milliseconds="%H:%M:%S", seconds="%H:%M:%S", minsec="%H:%M:%S"
        )

        self.workers_source = ColumnDataSource({"worker": [], "bytes": [], "text": []})
        self.workers = figure(
            title="Bytes held by items, per worker",
            y_range=[],
            height=170,
            width=width // 2,
            tools="",
            toolbar_location=None,
        )
        self.workers.hbar(
            y="worker", right="bytes", height=0.8, source=self.workers_source
        )
        self.workers.x_range.start = 0
        self.workers.xaxis[0].formatter = NumeralTickFormatter(format="0.0 b")
        self.workers.add_tools(
            HoverTool(tooltips=[("worker", "@worker"), ("bytes", "@text")])
        )

        # A Div, not a DataTable: bokeh 3.9.1 and 3.9.2 do not redraw a
        # DataTable when its data changes (bokeh/bokeh#15328).
        self.table = Div(text="", width=width)

        self.root = column(
            self.summary,
            row(self.progress, column(self.rate, self.workers)),
            self.table,
        )

    @log_errors
    def update(self) -> None:
        snap = dashboard.snapshot(self.scheduler)
        rows = snap["generators"]
        self.summary.text = (
            f"{html.escape(snap['summary'])} &middot; "
            "<a href='daskgen'>plain table</a>, "
            "<a href='daskgen/api/v1/generators'>JSON</a>"
        )

        bars = rows[:BARS]
        labels = [_label(r) for r in bars]
        self.progress.y_range.factors = labels[::-1]
        _compat.update_source(
            self.progress_source,
            {
                "label": labels,
                "yielded": [r["yielded"] for r in bars],
                "taken": [r["taken"] for r in bars],
                "total": [r["num_returns"] or 0 for r in bars],
                "state": [r["state"] for r in bars],
                "color": [COLORS.get(r["state"], "#bbbbbb") for r in bars],
                "of": [
                    "" if r["num_returns"] is None else r["num_returns"] for r in bars
                ],
            },
        )

        now, items = snap["time"], float(snap["totals"].get("items", 0))
        if self.last is not None and now > self.last[0]:
            rate = max(items - self.last[1], 0) / (now - self.last[0])
            self.rate_source.stream(
                {"time": [now * 1000], "rate": [rate]}, rollover=SAMPLES
            )
        self.last = (now, items)

        held = snap["workers"]
        addresses = sorted(held)
        self.workers.y_range.factors = addresses
        _compat.update_source(
            self.workers_source,
            {
                "worker": addresses,
                "bytes": [held[a] for a in addresses],
                "text": [format_bytes(held[a]) for a in addresses],
            },
        )

        self.table.text = _table(rows)


def _table(rows: list[dict[str, Any]]) -> str:
    """The calls table (:data:`daskgen.dashboard.COLUMNS`), one
    ``<tr data-gen-id=... data-state=...>`` per call."""
    columns = dashboard.COLUMNS
    head = "".join(f"<th>{title}</th>" for _, title, _, _ in columns)
    body = []
    for r in rows:
        cells = "".join(
            f"<td class='{f} {cls}'>{html.escape(r['display'][f])}</td>"
            for f, _, cls, _ in columns
        )
        color = COLORS.get(r["state"], "#bbbbbb")
        body.append(
            f"<tr data-gen-id='{html.escape(r['gen_id'])}' data-state='{r['state']}' "
            f"style='border-left: 4px solid {color}'>{cells}</tr>"
        )
    return (
        "<style>.daskgen-calls td, .daskgen-calls th {padding: 2px 8px; "
        "text-align: left; border-bottom: 1px solid #ddd; white-space: nowrap}"
        ".daskgen-calls td.num {text-align: right}"
        ".daskgen-calls td.error {white-space: normal}</style>"
        f"<table class='daskgen-calls'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def generators_doc(scheduler: Any, extra: dict[str, Any], doc: Any) -> None:
    """Build one browser session's Generators page (a Bokeh ``FunctionHandler``)."""
    page = GeneratorsPage(scheduler)
    page.update()
    _compat.add_periodic_callback(doc, page, 500)
    doc.title = "Dask: Generators"
    doc.add_root(page.root)
    doc.template = _compat.dashboard_template()
    doc.template_variables.update(extra)
    doc.theme = _compat.dashboard_theme()


def register(scheduler: Any, prefix: str) -> bool:
    """Serve the Generators page from ``scheduler``'s dashboard and list it in its navigation.

    Does nothing (and returns False) if the scheduler runs no Bokeh dashboard,
    or if the page is already there.
    """
    if scheduler in _served or not _compat.has_bokeh_dashboard(scheduler):
        return False
    _compat.add_dashboard_page(scheduler, prefix, PAGE, generators_doc)
    _served.add(scheduler)
    return True


# Schedulers whose dashboard has the page (a plugin restarts on the same one).
_served: weakref.WeakSet[Any] = weakref.WeakSet()
