"""The /daskgen dashboard page, its JSON, the Prometheus metrics and progress()."""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import dask
import pytest
from _helpers import boom, gated, produce
from distributed import Event, Scheduler
from distributed.comm import get_address_host
from distributed.utils_test import async_poll_for, gen_cluster, gen_test
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

import daskgen
from daskgen import _compat, dashboard
from daskgen.progress import progress

DASHBOARD = {"dashboard": True, "dashboard_address": ":0"}
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


async def fetch(s: Scheduler, path: str, **kwargs: Any) -> Any:
    host = get_address_host(s.address)
    url = f"http://{host}:{s.http_server.port}{path}"
    return await AsyncHTTPClient().fetch(url, **kwargs)


async def fetch_json(s: Scheduler, path: str = "/daskgen/api/v1/generators") -> Any:
    resp = await fetch(s, path)
    assert resp.headers["Content-Type"].startswith("application/json")
    return json.loads(resp.body)


async def get_row(s: Scheduler, gen_id: str) -> dict[str, Any]:
    data = await fetch_json(s)
    assert data["installed"] is True
    (row,) = [r for r in data["generators"] if r["gen_id"] == gen_id]
    return row


async def poll_row(s: Scheduler, gen_id: str, **expected: Any) -> dict[str, Any]:
    """Fetch the row until its fields have the expected values."""
    deadline = time.monotonic() + 10
    while True:
        row = await get_row(s, gen_id)
        if all(row[k] == v for k, v in expected.items()):
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"row never matched {expected}: {row}")
        await asyncio.sleep(0.05)


def produced(ext: Any, gen_id: str) -> int | None:
    g = ext.generators.get(gen_id)
    return None if g is None else g.produced


def state(ext: Any, gen_id: str) -> str | None:
    g = ext.generators.get(gen_id)
    return None if g is None else g.state


def metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, labels): value}`` of the daskgen metrics in ``text``."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("dask_daskgen_"):
                out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


# ------------------------------------------------------------------- the page


@gen_cluster(client=True, scheduler_kwargs=DASHBOARD)
async def test_page_and_json(c, s, a, b):
    await daskgen.install(c)
    ev = Event("dash-go")
    gen = daskgen.submit(gated, 5, "dash-go", 3)
    gen_id = gen._state.gen_id
    ext = s.extensions["daskgen"]
    await async_poll_for(lambda: produced(ext, gen_id) == 3, timeout=10)

    # The page is a static file; what it shows comes from the JSON alone.
    resp = await fetch(s, "/daskgen")
    assert resp.headers["Content-Type"].startswith("text/html")
    assert resp.body == dashboard.PAGE_FILE.read_bytes()
    assert b"daskgen/api/v1/generators" in resp.body

    row = await poll_row(s, gen_id, yielded=3)
    assert row["display"]["yielded"] == "3" and row["display"]["name"] == "gated"
    assert row["state"] == "running"
    assert row["mode"] == "streaming"
    assert row["name"] == "gated"
    assert row["client"] == c.id
    assert row["worker"] in (a.address, b.address)
    assert row["taken"] == 0
    assert row["bytes"] > 0
    assert row["error"] is None

    await gen.__anext__()
    await gen.__anext__()
    await poll_row(s, gen_id, taken=2)

    await ev.set()
    assert [await f async for f in gen] == [2, 3, 4]
    row = await poll_row(s, gen_id, state="finished", taken=5)
    assert row["yielded"] == 5

    # Once the call is forgotten, its row comes from the history.
    del gen
    await async_poll_for(lambda: not ext.generators, timeout=10)
    row = await get_row(s, gen_id)
    assert row["state"] == "finished"
    assert row["yielded"] == 5
    assert row["released"] == 5


@gen_cluster(client=True, scheduler_kwargs=DASHBOARD)
async def test_page_static_and_erred(c, s, a, b):
    await daskgen.install(c)
    refs = daskgen.submit(produce, 3, num_returns=3)
    assert await c.gather(refs) == [0, 10, 20]
    gen = daskgen.submit(boom, 2)
    futs = [f async for f in gen]
    with pytest.raises(ZeroDivisionError):
        await futs[-1]
    data = await fetch_json(s)
    rows = {r["name"]: r for r in data["generators"]}
    assert rows["produce"]["mode"] == "static"
    assert rows["produce"]["num_returns"] == 3
    assert rows["produce"]["yielded"] == 3
    # A streaming call's error is its last item, and the call shows as erred.
    row = await poll_row(s, rows["boom"]["gen_id"], state="erred")
    assert row["yielded"] == 3
    assert "boom after yields" in (row["error"] or "")
    assert data["counts"]["finished"] == 1

    assert rows["produce"]["display"]["mode"] == "static (3)"
    assert row["display"]["error"] == "ZeroDivisionError: boom after yields"
    assert (await fetch(s, "/daskgen/")).code == 200  # trailing slash


@gen_cluster(client=True, scheduler_kwargs=DASHBOARD)
async def test_json_limit(c, s, a, b):
    await daskgen.install(c)
    gens = [daskgen.submit(produce, 2) for _ in range(3)]
    for gen in gens:
        assert len([f async for f in gen]) == 2
    data = await fetch_json(s, "/daskgen/api/v1/generators?limit=2")
    assert data["total"] == 3
    assert len(data["generators"]) == 2
    assert data["counts"]["finished"] + data["counts"]["running"] == 3
    with pytest.raises(HTTPClientError) as e:
        await fetch(s, "/daskgen/api/v1/generators?limit=x")
    assert e.value.code == 400


@gen_cluster(client=True, scheduler_kwargs=DASHBOARD)
async def test_install_is_idempotent(c, s, a, b):
    await daskgen.install(c)
    ext = s.extensions["daskgen"]
    dashboard.install(s, ext)
    dashboard.install(s, ext)
    assert _count_routes(s.http_application) == 2
    assert (await fetch(s, "/daskgen")).code == 200


def _count_routes(app: Any) -> int:
    ours = (dashboard.GeneratorsPageHandler, dashboard.GeneratorsJSONHandler)
    n = 0
    seen: set[int] = set()

    def walk(router: Any) -> None:
        nonlocal n
        if id(router) in seen:
            return
        seen.add(id(router))
        for rule in router.rules:
            if isinstance(rule.target, type) and issubclass(rule.target, ours):
                n += 1
            elif hasattr(rule.target, "rules"):
                walk(rule.target)

    walk(app.default_router)
    walk(app.wildcard_router)
    return n


@gen_test()
async def test_routes_from_config_and_prefix():
    """``daskgen.dashboard`` in the route modules, and a dashboard prefix."""
    modules = dask.config.get("distributed.scheduler.http.routes")
    with dask.config.set(
        {"distributed.scheduler.http.routes": [*modules, "daskgen.dashboard"]}
    ):
        async with Scheduler(
            dashboard_address=":0", http_prefix="/dask", validate=True
        ) as s:
            # Before the plugin: a notice, an empty list.
            assert (await fetch(s, "/dask/daskgen")).code == 200
            data = await fetch_json(s, "/dask/daskgen/api/v1/generators")
            assert data == {**data, "installed": False, "generators": []}
            assert "not installed" in data["summary"]

            plugin = daskgen.GeneratorSchedulerPlugin()
            await s.register_scheduler_plugin(plugin, name="daskgen", idempotent=True)
            assert _count_routes(s.http_application) == 2  # not added twice
            data = await fetch_json(s, "/dask/daskgen/api/v1/generators")
            assert data["installed"] is True
            assert "not installed" not in data["summary"]
        assert plugin not in dashboard.live_plugins()


@gen_test()
async def test_prefix_without_config():
    async with Scheduler(
        dashboard=True, dashboard_address=":0", http_prefix="/dask", validate=True
    ) as s:
        await s.register_scheduler_plugin(
            daskgen.GeneratorSchedulerPlugin(), name="daskgen", idempotent=True
        )
        data = await fetch_json(s, "/dask/daskgen/api/v1/generators")
        assert data["installed"] is True
        assert (await fetch(s, "/dask/daskgen")).code == 200
        # The Dask dashboard's Generators page, under the prefix too.
        page = (await fetch(s, "/dask/generators")).body.decode()
        assert "Bokeh.embed" in page and 'href="generators"' in page


_SETUP_BROKEN = "idempotent" not in inspect.getsource(daskgen.dask_setup)


@pytest.mark.xfail(
    _SETUP_BROKEN,
    reason="daskgen.dask_setup must pass idempotent=True to register_scheduler_plugin",
    strict=True,
)
@gen_test()
async def test_preload():
    """``dask scheduler --preload daskgen`` serves the page and the metrics."""
    async with Scheduler(
        dashboard_address=":0", preload=["daskgen"], validate=True
    ) as s:
        assert "daskgen" in s.extensions
        data = await fetch_json(s)
        assert data["installed"] is True
        assert s.extensions["daskgen"] in dashboard.live_plugins()


def test_columns_text():
    """Each column's text, with Dask's formatters; the summary line."""
    row = {
        "gen_id": "abcdef0123456789",
        "key": "k",
        "name": "<script>x</script>",
        "client": "Client-1",
        "worker": None,
        "mode": "streaming",
        "num_returns": None,
        "backpressure": 2,
        "state": "waiting",
        "attempts": 0,
        "yielded": 0,
        "taken": 0,
        "released": 0,
        "bytes": 3 * 2**20,
        "rate": 1234.5,
        "elapsed": 75.0,
        "pauses": 0,
        "paused_seconds": 0.0,
        "error": "KeyError: 'x'\nmore",
        "submitted": 0.0,
    }
    text = dashboard.display(row)
    assert list(text) == [f for f, *_ in dashboard.COLUMNS]
    assert text["name"] == "<script>x</script>"  # the page sets it as text
    assert text["gen_id"] == "abcdef012345"
    assert text["bytes"] == "3.00 MiB"
    assert text["elapsed"] == "75.00 s"
    assert text["rate"] == "1,234.5"
    assert text["mode"] == "streaming, backpressure 2"
    assert text["worker"] == ""
    assert text["error"] == "KeyError: 'x'"
    static = {**row, "mode": "static", "num_returns": 3, "backpressure": None}
    assert dashboard.display(static)["mode"] == ("static (3)")
    snap = {
        "installed": True,
        "total": 2,
        "counts": {"waiting": 1, "erred": 1, "running": 0},
        "totals": {"items": 5, "bytes": 2048, "pauses": 2, "paused_seconds": 1.5},
        "generators": [row],
    }
    assert dashboard.summary(snap) == (
        "2 generator calls (1 waiting, 1 erred) · 5 items and 2.00 kiB yielded "
        "since the scheduler started · 2 backpressure pauses (1.50 s) · showing "
        "the first 1"
    )
    assert "not installed" in dashboard.summary({**snap, "installed": False})


# ------------------------------------------------------------------ metrics


@gen_cluster(client=True, scheduler_kwargs=DASHBOARD)
async def test_metrics(c, s, a, b):
    pytest.importorskip("prometheus_client")
    await daskgen.install(c)
    ext = s.extensions["daskgen"]
    assert dashboard.live_plugins() == [ext]
    gen = daskgen.submit(produce, 6, backpressure=2)
    gen_id = gen._state.gen_id
    await async_poll_for(lambda: state(ext, gen_id) == "paused", timeout=10)
    await async_poll_for(lambda: ext.totals["items"] == 2, timeout=10)

    resp = await fetch(s, "/metrics")
    m = metrics(resp.body.decode())
    assert m["dask_daskgen_generators", (("state", "paused"),)] == 1
    assert m["dask_daskgen_generators", (("state", "finished"),)] == 0
    assert m["dask_daskgen_items_yielded_total", ()] == 2
    assert m["dask_daskgen_bytes_yielded_total", ()] == ext.totals["bytes"] > 0
    assert m["dask_daskgen_backpressure_pauses_total", ()] == 1
    # A pause that is still going on counts.
    assert m["dask_daskgen_backpressure_paused_seconds_total", ()] > 0

    assert [await f async for f in gen] == [0, 10, 20, 30, 40, 50]
    # The stream ends before its driver task returns; once finished, the call
    # may be forgotten at once (the metrics count the scheduler's history too).
    await async_poll_for(
        lambda: any(
            i["gen_id"] == gen_id and i["state"] == "finished" for i in ext.get_info()
        ),
        timeout=10,
    )
    m = metrics((await fetch(s, "/metrics")).body.decode())
    assert m["dask_daskgen_generators", (("state", "finished"),)] == 1
    assert m["dask_daskgen_generators", (("state", "paused"),)] == 0
    assert m["dask_daskgen_items_yielded_total", ()] == 6
    assert m["dask_daskgen_backpressure_pauses_total", ()] >= 1
    paused = m["dask_daskgen_backpressure_paused_seconds_total", ()]
    assert paused == pytest.approx(ext.totals["paused_seconds"])


@gen_cluster(client=True, scheduler_kwargs=DASHBOARD)
async def test_two_schedulers_one_process(c, s, a, b):
    pytest.importorskip("prometheus_client")
    await daskgen.install(c)
    assert [await f async for f in daskgen.submit(produce, 3)] == [0, 10, 20]
    async with Scheduler(dashboard_address=":0", validate=True) as s2:
        plugin2 = daskgen.GeneratorSchedulerPlugin()
        await s2.register_scheduler_plugin(plugin2, name="daskgen", idempotent=True)
        assert set(dashboard.live_plugins()) == {s.extensions["daskgen"], plugin2}
        for sched in (s, s2):
            m = metrics((await fetch(sched, "/metrics")).body.decode())
            assert m["dask_daskgen_items_yielded_total", ()] == 3  # summed
        assert (await fetch_json(s2))["generators"] == []
    assert dashboard.live_plugins() == [s.extensions["daskgen"]]
    m = metrics((await fetch(s, "/metrics")).body.decode())
    assert m["dask_daskgen_items_yielded_total", ()] == 3


# ----------------------------------------------------------------- progress


@gen_cluster(client=True)
async def test_progress_async(c, s, a, b):
    await daskgen.install(c)
    gen = daskgen.submit(produce, 5, 0.02)
    buf = io.StringIO()
    await progress(gen, file=buf, interval=0.01)
    out = buf.getvalue()
    assert out.startswith("\r[daskgen] produce: ")
    assert out.endswith("\n")
    last = out.rstrip("\n").split("\r")[-1]
    assert "produce: 5 items yielded, 0 taken (finished)" in last
    assert last.rstrip().endswith("| finished")
    assert len([f async for f in gen]) == 5

    dyn = daskgen.submit(produce, 3, num_returns="dynamic")
    gen2 = daskgen.submit(produce, 2)
    buf = io.StringIO()
    await progress([dyn, gen2], file=buf)
    last = buf.getvalue().rstrip("\n").split("\r")[-1]
    assert "3 items yielded (finished)" in last
    assert "produce: 2 items yielded, 0 taken (finished)" in last

    ev = Event("progress-async")
    refs = daskgen.submit(gated, 2, "progress-async", 1, num_returns=2)
    buf = io.StringIO()
    task = asyncio.ensure_future(progress(refs, file=buf, interval=0.01))
    await async_poll_for(lambda: "1/2 items" in buf.getvalue(), timeout=10)
    assert not task.done()
    await ev.set()
    await task
    last = buf.getvalue().rstrip("\n").split("\r")[-1]
    assert last.startswith(f"[daskgen] [{'#' * 40}] 2/2 items |")

    err = daskgen.submit(boom, 1, num_returns=2)
    buf = io.StringIO()
    await progress(err, file=buf)
    last = buf.getvalue().rstrip("\n").split("\r")[-1]
    assert "2/2 items, 1 failed" in last
    assert last.endswith("| failed")


def test_progress_sync(client, capsys):
    gen = daskgen.submit(produce, 4, 0.02, client=client)
    progress(gen, interval=0.01)
    err = capsys.readouterr().err
    assert "produce: 4 items yielded, 0 taken (finished)" in err.split("\r")[-1]
    assert [f.result() for f in gen] == [0, 10, 20, 30]

    # Items are stored, not processed: distributed.progress would never see
    # them done, so progress() follows the Futures themselves.
    ev = Event("progress-static", client=client)
    refs = daskgen.submit(gated, 3, "progress-static", 1, client=client, num_returns=3)
    client.submit(ev.set, pure=False)  # after progress() has started, probably
    progress(refs, interval=0.01)
    last = capsys.readouterr().err.split("\r")[-1]
    assert f"[daskgen] [{'#' * 40}] 3/3 items" in last
    assert last.rstrip().endswith("| finished")
    assert client.gather(refs) == [0, 1, 2]

    with pytest.raises(TypeError, match="mixed"):
        progress([daskgen.submit(produce, 1, client=client), refs[0]])


# ------------------------------------------------- the Dask dashboard's page


@gen_cluster(client=True, scheduler_kwargs=DASHBOARD)
async def test_generators_page_in_dask_dashboard(c, s, a, b):
    pytest.importorskip("bokeh")
    from daskgen.dashboard_bokeh import GeneratorsPage

    await daskgen.install(c)
    # In the navigation bar of the dashboard's own pages, before Info.
    status = (await fetch(s, "/status")).body.decode()
    assert status.index('href="generators"') < status.index('href="info"')
    # A Bokeh page (its plots come over the session's websocket).
    page = (await fetch(s, "/generators")).body.decode()
    assert "Bokeh.embed" in page and 'href="generators"' in page

    refs = daskgen.submit(produce, 3, num_returns=3, workers=[a.address])
    assert await c.gather(refs) == [0, 10, 20]
    gen = daskgen.submit(boom, 2, workers=[b.address])
    futs = [f async for f in gen]
    with pytest.raises(ZeroDivisionError):
        await futs[-1]
    ext = s.extensions["daskgen"]
    await async_poll_for(
        lambda: (
            sorted(g.state for g in ext.generators.values()) == ["erred", "finished"]
        ),
        timeout=10,
    )

    comp = GeneratorsPage(s)
    comp.update()
    data = comp.progress_source.data
    bars = dict(zip(data["label"], data["state"], strict=True))
    assert sorted(bars.values()) == ["erred", "finished"]
    static = data["label"].index(next(k for k in bars if k.startswith("produce")))
    assert (data["yielded"][static], data["total"][static]) == (3, 3)
    assert comp.progress.y_range.factors == data["label"][::-1]
    # The bytes per worker: the static items are on a, the stream's on b.
    data = comp.workers_source.data
    held = dict(zip(data["worker"], data["bytes"], strict=True))
    assert held[a.address] == sum(a.state.tasks[r.key].nbytes for r in refs)
    assert held[b.address] > 0
    assert "data-state='erred'" in comp.table.text
    assert "ZeroDivisionError: boom after yields" in comp.table.text
    assert "1 erred" in comp.summary.text and "1 finished" in comp.summary.text

    # Throughput: one sample per update after the first.
    assert comp.rate_source.data["rate"] == []
    more = daskgen.submit(produce, 4, num_returns=4)
    await c.gather(more)
    comp.update()
    (rate,) = comp.rate_source.data["rate"]
    assert rate > 0
    del refs, more, gen, futs


@gen_cluster(client=True)
async def test_no_generators_page_without_dashboard(c, s, a, b):
    await daskgen.install(c)
    assert not _compat.has_bokeh_dashboard(s)
    assert (await fetch(s, "/daskgen")).code == 200
    with pytest.raises(HTTPClientError) as e:
        await fetch(s, "/generators")
    assert e.value.code == 404


# ------------------------------------------------------------------ browser


def _chromium() -> str | None:
    """The system Chromium: ``$DASKGEN_CHROMIUM``, else ``chromium`` on PATH."""
    path = os.environ.get("DASKGEN_CHROMIUM")
    if path:
        return path if os.path.exists(path) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _assert_counts_up(page: Any, selector: str) -> None:
    """The number in ``selector`` appears, then grows while the page is open."""
    cell = page.locator(selector)  # a locator sees into Bokeh's shadow DOM
    cell.wait_for(timeout=10_000)
    deadline = time.monotonic() + 10
    while (first := int(cell.inner_text())) == 0:
        assert time.monotonic() < deadline, f"{selector} stays 0"
        time.sleep(0.1)
    time.sleep(2.5)
    second = int(cell.inner_text())
    assert second > first, (selector, first, second)


@pytest.mark.slow
@pytest.mark.browser
def test_browser_page_updates():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the browser test needs playwright"
    )
    chromium = _chromium()
    if chromium is None:
        pytest.skip(
            "the browser test needs a system Chromium: install it (apt-get install "
            "chromium) or point $DASKGEN_CHROMIUM at one"
        )
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=True,
            memory_limit="300MiB",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        gen = daskgen.submit(produce, 400, 0.05, client=client)
        gen_id = gen._state.gen_id
        done = daskgen.submit(produce, 2, num_returns=2, client=client)
        assert client.gather(done) == [0, 10]
        failed = daskgen.submit(boom, 2, client=client)
        with pytest.raises(ZeroDivisionError):
            client.gather(list(failed))
        failed_id = failed._state.gen_id
        base = cluster.dashboard_link.rsplit("/", 1)[0]
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                # daskgen's plain page
                page.goto(f"{base}/daskgen")
                _assert_counts_up(page, f'tr[data-gen-id="{gen_id}"] td.yielded')
                row = page.locator(f"#gen-{gen_id}")
                assert row.get_attribute("data-state") == "running"
                assert row.locator("td.name").inner_text() == "produce"
                assert "Dask dashboard" in page.locator("header a").first.inner_text()
                assert page.locator("tr[data-gen-id]").count() == 3
                erred = page.locator(f"#gen-{failed_id}")
                assert erred.get_attribute("data-state") == "erred"
                assert erred.locator("td.error").inner_text() == (
                    "ZeroDivisionError: boom after yields"
                )
                assert "1 erred" in page.locator("#summary").inner_text()
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(
                    path=str(ARTIFACTS / "daskgen-page.png"), full_page=True
                )

                # The Generators page of the Dask dashboard, from its navigation.
                page.goto(f"{base}/status")
                page.get_by_role("link", name="Generators", exact=True).click()
                page.wait_for_url("**/generators")
                _assert_counts_up(page, f"tr[data-gen-id='{gen_id}'] td.yielded")
                state = page.locator(f"tr[data-gen-id='{failed_id}']")
                assert state.get_attribute("data-state") == "erred"
                assert "boom after yields" in state.locator("td.error").inner_text()
                assert page.locator("tr[data-gen-id]").count() == 3
                # progress, throughput and bytes per worker: three plots
                assert page.locator("canvas").count() >= 3
                page.screenshot(
                    path=str(ARTIFACTS / "generators-page.png"), full_page=True
                )
            finally:
                browser.close()
        gen.cancel()
