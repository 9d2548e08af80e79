"""Chaos soak: many concurrent daskgen calls of every mode while workers are SIGKILLed.

Run (``--minutes`` of chaos, then a drain and the checks, about a minute)::

    . .venv/bin/activate
    python benchmarks/soak.py --minutes 3                 # 6 workers
    python benchmarks/soak.py --minutes 10 --workers 8 --seed 7

A ``LocalCluster`` with nanny processes (``processes=True``, one thread and
``--memory-limit`` (400 MiB) per worker) runs ``--consumers`` threads of one
synchronous client, each submitting daskgen calls one after another for
``--minutes``: streaming (with and without ``backpressure=``, holding every
item to the end, dropping or cancelling the stream part-way), static
``num_returns=N`` (waited for as a whole, or released one by one through
``as_completed``) and ``"dynamic"``, each with a sync and an async generator.
Every item's value is ``(call id, index)``; the consumer checks each value, and
that a stream delivers every index exactly once, in order.

Meanwhile a killer thread SIGKILLs the process of a random connected worker
(never the last one) every ``--kill-interval`` seconds (uniform in the range);
the nannies start new ones. Calls use ``max_retries=10``, so each call is
expected to survive its workers' deaths.

At the end it stops the killer, lets the running calls finish, drops every
handle and checks that the cluster is left with nothing: no task on the
scheduler, no daskgen generator state, no ``daskgen-*`` pseudo-client, no value
in any worker's data, no daskgen driver on any worker; and that
``Scheduler.validate_state()`` (also run every ``--validate-every`` seconds
during the chaos) and each ``Worker.validate_state()`` pass.

Exit status 1 if an item was lost, delivered twice or with a wrong value, a
call failed or hung, anything was left behind, or a validation failed.

``run(minutes, workers, seed)`` is the same without printing, for
``tests/test_soak.py``; it returns the figures as a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import logging
import os
import random
import signal
import sys
import threading
import time
from typing import Any

import cloudpickle
import dask
import psutil
from distributed import Client, LocalCluster, as_completed, wait
from distributed.diagnostics.plugin import SchedulerPlugin

import daskgen

if __name__ != "__main__":
    # Imported (by the test): workers that cannot import this module get its
    # task functions by value from cloudpickle.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])

MiB = 2**20

#: (kind, weight). Each kind runs with a sync and an async generator.
KINDS = (
    ("stream", 3),  # take each item, fetch its value, drop it
    ("stream-bp", 2),  # the same with backpressure=1..8 and a slowish consumer
    ("stream-hold", 1),  # keep every item; re-check all values at the end
    ("stream-drop", 1),  # drop the handle, or cancel(), after a random prefix
    ("static", 3),  # num_returns=N
    ("dynamic", 2),  # num_returns="dynamic"
)
GEN_KINDS = ("sync", "async")
MODES = [f"{k}/{g}" for k, _ in KINDS for g in GEN_KINDS]


# ------------------------------------------------------------------ task bodies


def gen_items(cid, n, delay):
    for i in range(n):
        if delay:
            time.sleep(delay)
        yield (cid, i)


async def agen_items(cid, n, delay):
    for i in range(n):
        if delay:
            await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)
        yield (cid, i)


class SoakPlugin(SchedulerPlugin):
    """Counts worker removals and driver starts on the scheduler."""

    name = "daskgen-soak"

    def __init__(self) -> None:
        self.removed: list[tuple[float, str, str]] = []
        self.driver_starts = 0
        self.drivers: set[str] = set()

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        self.removed.append(
            (time.time(), worker, str(kwargs.get("stimulus_id", ""))[:80])
        )

    def transition(self, key: Any, start: str, finish: str, *a: Any, **kw: Any) -> None:
        if finish == "processing" and "-generator-" in str(key):
            self.driver_starts += 1
            self.drivers.add(str(key))


def _plugin_counts(dask_scheduler):
    p = dask_scheduler.plugins.get("daskgen-soak")
    if p is None:
        return {"removed": [], "driver_starts": 0, "drivers": 0}
    return {
        "removed": list(p.removed),
        "driver_starts": p.driver_starts,
        "drivers": len(p.drivers),
    }


def _validate_scheduler(dask_scheduler):
    try:
        dask_scheduler.validate_state()
    except Exception as e:  # noqa: BLE001 - reported
        return f"{type(e).__name__}: {str(e)[:300]}"
    return "ok"


def _validate_worker(dask_worker):
    try:
        dask_worker.validate_state()
    except Exception as e:  # noqa: BLE001 - reported
        return f"{type(e).__name__}: {str(e)[:300]}"
    return "ok"


def _story(dask_scheduler, *keys):
    """The scheduler's transition log of ``keys``, short."""
    t0 = None
    out = []
    for key, start, finish, recs, stim, ts in dask_scheduler.story(*keys)[-30:]:
        t0 = t0 or ts
        k = str(key)
        k = "driver" if "-generator-" in k else "end" if "-completed-" in k else k
        rec = ",".join(f"{str(a)[-12:]}:{b}" for a, b in list(recs.items())[:3])
        out.append(
            f"+{ts - t0:.3f}s {k} {start}->{finish} [{stim.rsplit('-', 1)[0]}] {rec}"
        )
    return out


def _gen_diag(driver, dask_scheduler=None):
    """What the scheduler knows of one call (for a hung or left-over call)."""
    ext = dask_scheduler.extensions.get("daskgen")
    g = ext.by_driver.get(driver) if ext is not None else None
    if g is None:
        return {"driver": str(driver), "genstate": None,
                "story": _story(dask_scheduler, driver)}  # fmt: skip
    dts = dask_scheduler.tasks.get(g.driver)
    info = g.info()
    return {
        "driver": str(driver),
        "genstate": {
            k: info[k]
            for k in (
                "mode",
                "state",
                "attempts",
                "yielded",
                "taken",
                "released",
                "backpressure",
                "worker",
                "error",
            )
        },  # fmt: skip
        "limit": getattr(g, "limit", None),
        "run_produced": g.run_produced,
        "final": g.final,
        "ended": g.ended,
        "driver_task": None
        if dts is None
        else {
            "state": dts.state,
            "processing_on": dts.processing_on.address if dts.processing_on else None,
            "who_wants": sorted(str(c.client_key) for c in dts.who_wants or ()),
            "dependents": len(dts.dependents),
        },
        "end_in_tasks": g.end_key in dask_scheduler.tasks,
        "workers": list(dask_scheduler.workers),
        "story": _story(dask_scheduler, g.driver, g.end_key),
    }


def _scheduler_leftovers(dask_scheduler):
    ext = dask_scheduler.extensions.get("daskgen")
    tasks = list(dask_scheduler.tasks.items())
    return {
        "tasks": len(tasks),
        "task_sample": {str(k): ts.state for k, ts in tasks[:8]},
        "generators": len(ext.generators) if ext is not None else 0,
        "generator_sample": [
            {k: g.info()[k] for k in ("key", "mode", "state", "attempts", "yielded")}
            for g in list(ext.generators.values())[:5]
        ]
        if ext is not None
        else [],
        "pseudo_clients": sorted(
            c for c in dask_scheduler.clients if str(c).startswith("daskgen-")
        ),
        "diagnosis": [
            _gen_diag(g.driver, dask_scheduler)
            for g in list(ext.generators.values())[:3]
        ]
        if ext is not None
        else [],
    }


def _worker_leftovers(dask_worker):
    ext = dask_worker.extensions.get("daskgen")
    return {
        "data": len(dask_worker.data),
        "data_sample": [str(k) for k in list(dask_worker.data)[:5]],
        "drivers": len(ext.drivers) if ext is not None else 0,
        "tasks": len(dask_worker.state.tasks),
    }


# --------------------------------------------------------------------- tallies


class Tally:
    """What the consumers saw, per mode; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = collections.Counter()  # started
        self.ok = collections.Counter()  # ended as expected
        self.failed = collections.Counter()
        self.items = collections.Counter()  # delivered with the right value
        self.lost = 0  # indices skipped or missing without an error
        self.dup = 0  # indices delivered more than once
        self.corrupt = 0  # wrong value, or wrong key for the index
        self.undelivered = 0  # items not delivered because their call failed
        self.reasons = collections.Counter()  # "mode: Type: message" -> count
        self.examples: list[str] = []  # first problems, in words

    def problem(self, text: str) -> None:
        with self.lock:
            if len(self.examples) < 40:
                self.examples.append(text)


def _reason(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg[:160]}"


def _forget_traceback(e: BaseException) -> None:
    """Raising a Future's stored exception links our frames (and the Futures
    they hold) to it, which would keep their keys alive."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.__traceback__ = None
        e = e.__cause__ or e.__context__


class Call:
    """One call's bookkeeping: the next expected index, what went wrong."""

    def __init__(self, tally: Tally, mode: str, cid: int, n: int) -> None:
        self.tally, self.mode, self.cid, self.n = tally, mode, cid, n
        self.expect = 0
        self.items = self.lost = self.dup = self.corrupt = 0

    def check(self, key: Any, value: Any) -> None:
        """An item of a stream / list, in delivery order."""
        idx = key[1] if isinstance(key, tuple) else None
        if value != (self.cid, idx):
            self.corrupt += 1
            self.tally.problem(
                f"{self.mode} call {self.cid}: item {key!r} has value {value!r}"
            )
            return
        if idx < self.expect:
            self.dup += 1
            self.tally.problem(
                f"{self.mode} call {self.cid}: index {idx} delivered again "
                f"(expected {self.expect})"
            )
            return
        if idx > self.expect:
            self.lost += idx - self.expect
            self.tally.problem(
                f"{self.mode} call {self.cid}: indices {self.expect}..{idx - 1} skipped"
            )
        self.expect = idx + 1
        self.items += 1

    def missing_at_end(self) -> None:
        if self.expect < self.n:
            self.lost += self.n - self.expect
            self.tally.problem(
                f"{self.mode} call {self.cid}: ended after {self.expect} of "
                f"{self.n} items without an error"
            )
        elif self.expect > self.n:
            self.corrupt += self.expect - self.n
            self.tally.problem(
                f"{self.mode} call {self.cid}: {self.expect} items, expected {self.n}"
            )

    def done(self, error: str | None = None) -> None:
        t = self.tally
        with t.lock:
            t.items[self.mode] += self.items
            t.lost += self.lost
            t.dup += self.dup
            t.corrupt += self.corrupt
            if error is None:
                t.ok[self.mode] += 1
            else:
                t.failed[self.mode] += 1
                t.undelivered += max(0, self.n - self.items)
                t.reasons[f"{self.mode}: {error}"] += 1
        if error is not None:
            t.problem(f"{self.mode} call {self.cid} failed: {error}")


# ------------------------------------------------------------------- consumers


class Remaining:
    """Seconds left of a call's time budget (a hang is a failure, not a wait)."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def __call__(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the call's time budget ran out (hang?)")
        return left


def run_stream(client, rng, call, func, delay, kind, max_retries, budget):
    n, cid = call.n, call.cid
    left = Remaining(budget)
    bp = rng.randint(1, 8) if kind == "stream-bp" else None
    hold = kind == "stream-hold"
    drop = rng.choice(("abandon", "cancel")) if kind == "stream-drop" else None
    stop_after = rng.randint(0, n) if drop else None
    pause = 0.002 if bp is not None else 0.0
    gen = daskgen.submit(
        func, cid, n, delay, backpressure=bp, max_retries=max_retries, client=client
    )
    held = []
    while True:
        if stop_after is not None and call.expect >= stop_after:
            break
        try:
            f = gen.next(timeout=left())
        except StopIteration:
            break
        except TimeoutError:
            diag = client.run_on_scheduler(_gen_diag, gen.key)
            call.tally.problem(f"{call.mode} call {cid} hung: {gen!r}: {diag}")
            raise
        v = f.result(timeout=left())
        call.check(f.key, v)
        if hold:
            held.append(f)
        del f
        if pause and rng.random() < 0.5:
            time.sleep(pause)
    if drop == "cancel":
        gen.cancel()
        try:
            gen.next(timeout=left())
        except daskgen.GeneratorCancelledError:
            pass
        else:
            raise AssertionError("next() after cancel() did not raise")
    elif drop is None:
        call.missing_at_end()
        # the end marker is done, and None
        if gen.completed().result(timeout=left()) is not None:
            raise AssertionError("completed() is not None")
        if not gen.is_finished():
            raise AssertionError(f"is_finished() is False after the end: {gen!r}")
    del gen
    if held:
        # Items lost with their worker since they were taken are rebuilt.
        wait(held, timeout=left())
        for i, f in enumerate(held):
            v = f.result(timeout=left())
            if v != (cid, i) or f.key[1] != i:
                call.corrupt += 1
                call.tally.problem(
                    f"{call.mode} call {cid}: held item {f.key!r} is now {v!r}"
                )
        del held[:]


def run_static(client, rng, call, func, delay, max_retries, budget):
    n, cid = call.n, call.cid
    left = Remaining(budget)
    refs = daskgen.submit(
        func, cid, n, delay, num_returns=n, max_retries=max_retries, client=client
    )
    if len(refs) != n or [f.key[1] for f in refs] != list(range(n)):
        raise AssertionError(f"static call gave {len(refs)} Futures for N={n}")
    got: dict[int, Any] = {}
    if rng.random() < 0.5:
        # release each item as soon as it is done
        ac = as_completed(refs, timeout=left())
        del refs
        for f in ac:
            got[f.key[1]] = f.result(timeout=left())
            del f
        del ac
    else:
        wait(refs, timeout=left())
        for f in refs:
            got[f.key[1]] = f.result(timeout=left())
        del refs, f
    for i in range(n):
        if i in got:
            call.check(("", i), got[i])
    call.missing_at_end()


def run_dynamic(client, rng, call, func, delay, max_retries, budget):
    n, cid = call.n, call.cid
    left = Remaining(budget)
    d = daskgen.submit(
        func,
        cid,
        n,
        delay,
        num_returns="dynamic",
        max_retries=max_retries,
        client=client,
    )
    futs = d.result(timeout=left())
    del d
    wait(futs, timeout=left())
    for f in futs:
        call.check(f.key, f.result(timeout=left()))
    del futs, f
    call.missing_at_end()


def consumer(client, tally, rng, deadline, ids, max_retries, budget, pick):
    while time.monotonic() < deadline:
        with tally.lock:
            cid = next(ids)
            # the first calls go through every mode once, then by weight
            kind, gkind = MODES[cid].split("/") if cid < len(MODES) else pick(rng)
            mode = f"{kind}/{gkind}"
            tally.calls[mode] += 1
        func = gen_items if gkind == "sync" else agen_items
        if rng.random() < 0.3:
            n, delay = rng.randint(200, 1500), 0.0
        else:
            n, delay = rng.randint(2, 150), rng.choice((0.0, 0.001, 0.005))
        call = Call(tally, mode, cid, n)
        try:
            if kind.startswith("stream"):
                run_stream(client, rng, call, func, delay, kind, max_retries, budget)
            elif kind == "static":
                run_static(client, rng, call, func, delay, max_retries, budget)
            else:
                run_dynamic(client, rng, call, func, delay, max_retries, budget)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            _forget_traceback(e)
            call.done(_reason(e))
        else:
            call.done()
        del call


# ---------------------------------------------------------------------- killer


def _connected_worker_pids(cluster) -> dict[str, int]:
    """address -> pid of the workers connected to the (in-process) scheduler."""
    for _ in range(5):
        try:
            return {
                a: ws.pid for a, ws in list(cluster.scheduler.workers.items()) if ws.pid
            }
        except RuntimeError:  # dict changed size during iteration
            time.sleep(0.01)
    return {}


def killer(cluster, rng, stop, interval, kills, mine):
    lo, hi = interval
    while not stop.wait(rng.uniform(lo, hi)):
        pids = _connected_worker_pids(cluster)
        if len(pids) < 2:
            continue  # never kill the last worker
        addr = rng.choice(sorted(pids))
        pid = pids[addr]
        if pid not in mine():  # only processes this script started
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        kills.append((time.time(), addr, pid))


# ------------------------------------------------------------------------- run


def run(
    minutes: float,
    workers: int = 6,
    seed: int = 0,
    *,
    consumers: int | None = None,
    # A worker pauses (starts no task) at 80 % of its limit, and a fresh
    # worker of Python 3.10 with the oldest distributed already holds 165 MiB:
    # at 200 MiB every worker paused as it started and the first call waited.
    memory_limit: str = "400MiB",
    kill_interval: tuple[float, float] = (1.0, 5.0),
    max_retries: int = 10,
    call_budget: float = 240.0,
    validate_every: float = 15.0,
    progress: Any = None,
    log_level: int = logging.WARNING,
) -> dict[str, Any]:
    """The soak; returns its figures (see ``report``)."""
    say = progress or (lambda msg: None)
    consumers = consumers or max(4, workers + 2)
    master = random.Random(seed)
    me = psutil.Process()

    def mine() -> set[int]:
        return {p.pid for p in me.children(recursive=True)}

    R: dict[str, Any] = {
        "minutes": minutes,
        "workers": workers,
        "seed": seed,
        "consumers": consumers,
        "memory_limit": memory_limit,
        "kill_interval": kill_interval,
        "max_retries": max_retries,
    }
    tally = Tally()
    kills: list[tuple[float, str, int]] = []
    peak = {"worker": 0, "client": 0}
    validations: list[str] = []
    t_start = time.monotonic()
    with (
        # LocalCluster closes a nanny for good when no worker of its name has
        # been back for lost-worker-timeout (15 s) after a removal: with kills
        # every few seconds a restarted worker is often killed again within
        # that window, and the cluster shrinks. Keep every nanny.
        dask.config.set({"distributed.deploy.lost-worker-timeout": "1h"}),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=":0",
            silence_logs=log_level,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(SoakPlugin(), name="daskgen-soak")
        daskgen.install(client)
        # Warm up every worker (imports, plugin) before the chaos. Bounded:
        # a warm-up that hangs says where the call stands, not a bare timeout.
        warm = daskgen.submit(gen_items, -1, 3, 0.0, client=client)
        while True:
            try:
                f = warm.next(timeout=60)
            except StopIteration:
                break
            f.result(timeout=60)
        del f, warm
        say(f"cluster up in {time.monotonic() - t_start:.1f} s: {workers} workers")

        stop_rss = threading.Event()

        def sample_rss() -> None:
            procs: dict[int, psutil.Process] = {}
            while not stop_rss.wait(0.1):
                with contextlib.suppress(Exception):
                    for pid in _connected_worker_pids(cluster).values():
                        if pid not in procs:
                            procs[pid] = psutil.Process(pid)
                for pid, p in list(procs.items()):
                    try:
                        peak["worker"] = max(peak["worker"], p.memory_info().rss)
                    except psutil.Error:
                        del procs[pid]
                peak["client"] = max(peak["client"], me.memory_info().rss)

        rss_thread = threading.Thread(target=sample_rss, daemon=True, name="rss")
        rss_thread.start()

        kinds = [k for k, _ in KINDS]
        weights = [w for _, w in KINDS]

        def pick(rng: random.Random) -> tuple[str, str]:
            return rng.choices(kinds, weights)[0], rng.choice(GEN_KINDS)

        ids = iter(range(10**9))
        stop = threading.Event()
        t0 = time.monotonic()
        deadline = t0 + minutes * 60
        threads = [
            threading.Thread(
                target=consumer,
                args=(
                    client, tally, random.Random(master.random()), deadline, ids,
                    max_retries, call_budget, pick,
                ),
                name=f"consumer-{i}",
                daemon=True,
            )
            for i in range(consumers)
        ]  # fmt: skip
        kthread = threading.Thread(
            target=killer,
            args=(
                cluster, random.Random(master.random()), stop, kill_interval, kills,
                mine,
            ),
            name="killer",
            daemon=True,
        )  # fmt: skip
        for t in threads:
            t.start()
        kthread.start()
        next_validate = t0 + validate_every
        next_report = t0 + 30
        while time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            now = time.monotonic()
            if now >= next_validate:
                next_validate = now + validate_every
                with contextlib.suppress(Exception):
                    validations.append(client.run_on_scheduler(_validate_scheduler))
            if now >= next_report:
                next_report = now + 30
                with tally.lock:
                    say(
                        f"{now - t0:5.0f} s: {sum(tally.ok.values())} calls ok, "
                        f"{sum(tally.failed.values())} failed, "
                        f"{sum(tally.items.values())} items, {len(kills)} kills"
                    )
        stop.set()
        kthread.join()
        chaos_seconds = time.monotonic() - t0
        say(f"chaos over after {chaos_seconds:.0f} s, {len(kills)} kills; draining")
        drain_deadline = time.monotonic() + call_budget + 30
        for t in threads:
            t.join(max(0.0, drain_deadline - time.monotonic()))
        hung = [t.name for t in threads if t.is_alive()]
        R["drain_seconds"] = time.monotonic() - t0 - chaos_seconds
        gc.collect()

        # every worker back, then nothing may be left
        with contextlib.suppress(Exception):
            client.wait_for_workers(workers, timeout=120)
        left_s: dict[str, Any] = {}
        left_w: dict[str, Any] = {}
        settle = time.monotonic() + 60
        while True:
            gc.collect()
            try:
                left_s = client.run_on_scheduler(_scheduler_leftovers)
                left_w = client.run(_worker_leftovers)
            except Exception as e:  # noqa: BLE001
                left_s = {"error": _reason(e)}
            clean = (
                left_s.get("tasks") == 0
                and left_s.get("generators") == 0
                and not left_s.get("pseudo_clients")
                and not any(w["data"] or w["drivers"] for w in left_w.values())
            )
            if clean or time.monotonic() > settle:
                break
            time.sleep(0.25)
        R["settle_seconds"] = 60 - max(0.0, settle - time.monotonic())
        R["validate_final"] = client.run_on_scheduler(_validate_scheduler)
        R["validate_workers"] = client.run(_validate_worker)
        R["plugin"] = client.run_on_scheduler(_plugin_counts)
        stop_rss.set()
        rss_thread.join()
        R["workers_at_end"] = len(client.scheduler_info()["workers"])

    tot_items = sum(tally.items.values())
    R.update(
        chaos_seconds=chaos_seconds,
        calls={m: tally.calls[m] for m in MODES},
        ok={m: tally.ok[m] for m in MODES},
        failed_per_mode={m: tally.failed[m] for m in MODES},
        items={m: tally.items[m] for m in MODES},
        calls_total=sum(tally.calls.values()),
        calls_ok=sum(tally.ok.values()),
        calls_failed=sum(tally.failed.values()),
        items_total=tot_items,
        items_per_second=tot_items / chaos_seconds if chaos_seconds else 0.0,
        kills=len(kills),
        lost=tally.lost,
        duplicates=tally.dup,
        corrupt=tally.corrupt,
        undelivered_by_failed_calls=tally.undelivered,
        failure_reasons=dict(tally.reasons.most_common()),
        problems=list(tally.examples),
        hung_consumers=hung,
        validations_during=len(validations),
        validation_failures_during=[v for v in validations if v != "ok"],
        leftover_scheduler=left_s,
        leftover_workers={
            a: w for a, w in left_w.items() if w["data"] or w["drivers"] or w["tasks"]
        },
        peak_worker_rss=peak["worker"],
        peak_client_rss=peak["client"],
    )
    p = R["plugin"]
    R["reruns"] = p["driver_starts"] - p["drivers"]
    # worker removals not caused by a kill (nanny memory restarts, time-outs)
    killed = {addr for _, addr, _ in kills}
    R["unexpected_worker_removals"] = [
        (
            time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}",
            w,
            why,
        )
        for t, w, why in p["removed"]
        if w not in killed
    ]
    R["leftovers"] = (
        (left_s.get("tasks") or 0)
        + (left_s.get("generators") or 0)
        + len(left_s.get("pseudo_clients") or [])
        + sum(w["data"] + w["drivers"] for w in left_w.values())
        + (1 if "error" in left_s else 0)
    )
    R["passed"] = not failures(R)
    return R


def failures(R: dict[str, Any]) -> list[str]:
    """What makes the soak fail, in words (empty: it passed)."""
    out = []
    for k in ("lost", "duplicates", "corrupt", "calls_failed", "leftovers"):
        if R[k]:
            out.append(f"{k} = {R[k]}")
    if R["hung_consumers"]:
        out.append(f"hung consumers: {R['hung_consumers']}")
    if R["validate_final"] != "ok":
        out.append(f"validate_state: {R['validate_final']}")
    bad = {a: v for a, v in R["validate_workers"].items() if v != "ok"}
    if bad:
        out.append(f"worker validate_state: {bad}")
    if R["validation_failures_during"]:
        out.append(
            f"validate_state during the chaos: {R['validation_failures_during']}"
        )
    return out


# ---------------------------------------------------------------------- report


def report(R: dict[str, Any]) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _util import print_table

    print(
        f"## daskgen soak: {R['chaos_seconds'] / 60:.1f} min of chaos, "
        f"{R['workers']} workers (1 thread, memory_limit={R['memory_limit']}), "
        f"{R['consumers']} consumer threads, seed {R['seed']}, "
        f"max_retries={R['max_retries']}, a kill every "
        f"{R['kill_interval'][0]:g}-{R['kill_interval'][1]:g} s"
    )
    print()
    rows = [
        [m, R["calls"][m], R["ok"][m], R["failed_per_mode"][m], f"{R['items'][m]:,}"]
        for m in MODES
    ]
    rows.append(
        ["total", R["calls_total"], R["calls_ok"], R["calls_failed"],
         f"{R['items_total']:,}"]
    )  # fmt: skip
    print_table(["mode", "calls", "completed", "failed", "items checked"], rows)
    ls = R["leftover_scheduler"]
    lines = [
        ("calls completed", f"{R['calls_ok']:,} of {R['calls_total']:,}"),
        ("items completed", f"{R['items_total']:,} ({R['items_per_second']:,.0f}/s)"),
        ("kills survived", f"{R['kills']} (SIGKILL of a worker process)"),
        ("generator re-runs", f"{R['reruns']} (driver starts beyond the first)"),
        (
            "other worker removals",
            f"{len(R['unexpected_worker_removals'])} (not by a kill: "
            "nanny restarts, lost connections)",
        ),
        ("items lost", f"{R['lost']}"),
        ("duplicates delivered", f"{R['duplicates']}"),
        ("wrong values", f"{R['corrupt']}"),
        ("calls failed", f"{R['calls_failed']}"),
        ("  items not delivered by them", f"{R['undelivered_by_failed_calls']}"),
        ("hung consumers", f"{R['hung_consumers'] or 'none'}"),
        (
            "validate_state",
            f"{R['validate_final']} at the end; "
            f"{R['validations_during'] - len(R['validation_failures_during'])} of "
            f"{R['validations_during']} ok during the chaos; workers: "
            + (
                "all ok"
                if all(v == "ok" for v in R["validate_workers"].values())
                else str(R["validate_workers"])
            ),
        ),
        (
            "left on the scheduler",
            f"{ls.get('tasks')} tasks, {ls.get('generators')} daskgen generators, "
            f"{len(ls.get('pseudo_clients') or [])} daskgen-* clients"
            + (f" ({ls['error']})" if "error" in ls else ""),
        ),
        (
            "left on the workers",
            "nothing" if not R["leftover_workers"] else str(R["leftover_workers"]),
        ),
        ("peak worker RSS", f"{R['peak_worker_rss'] / MiB:.0f} MiB"),
        ("peak client+scheduler RSS", f"{R['peak_client_rss'] / MiB:.0f} MiB"),
        (
            "drain / settle",
            f"{R['drain_seconds']:.1f} s / {R['settle_seconds']:.1f} s",
        ),
    ]
    w = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k.ljust(w)}  {v}")
    if ls.get("tasks") or ls.get("generators"):
        print(f"\nleft tasks (sample): {ls.get('task_sample')}")
        print(f"left generators (sample): {ls.get('generator_sample')}")
        for d in ls.get("diagnosis") or []:
            print(
                f"  {d['driver']}: " + str({k: v for k, v in d.items() if k != "story"})
            )
            for line in d["story"]:
                print(f"    {line}")
    if R["unexpected_worker_removals"]:
        print("\nworker removals not caused by a kill (time, worker, stimulus):")
        for r in R["unexpected_worker_removals"][:10]:
            print(f"  {r}")
    if R["failure_reasons"]:
        print("\nfailed calls, by reason:")
        for reason, n in R["failure_reasons"].items():
            print(f"  {n:4d} x {reason}")
    if R["problems"]:
        print("\nfirst problems seen:")
        for p in R["problems"]:
            print(f"  - {p}")
    bad = failures(R)
    print()
    print("RESULT: " + ("PASS" if not bad else "FAIL: " + "; ".join(bad)))
    sys.stdout.flush()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=3.0, help="minutes of chaos (3)")
    p.add_argument("--workers", type=int, default=6, help="worker processes (6)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--consumers", type=int, help="consumer threads (workers + 2)")
    p.add_argument("--memory-limit", default="400MiB", help="per worker (400MiB)")
    p.add_argument(
        "--kill-interval", default="1,5",
        help="seconds between kills, uniform in LO,HI (1,5)",
    )  # fmt: skip
    p.add_argument("--max-retries", type=int, default=10)
    p.add_argument(
        "--log", default=None,
        help="file for the cluster's log (the processes' stderr); default: a "
        "file in the temp directory, named at the end",
    )  # fmt: skip
    args = p.parse_args()
    lo, hi = (float(x) for x in args.kill_interval.split(","))

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _util import print_header

    print_header(f"daskgen soak ({args.minutes:g} min)")
    # Every kill makes the nannies, the scheduler and the workers log
    # tracebacks: send the processes' stderr (fd 2, inherited by the workers)
    # to a file and keep the terminal for the progress lines and the summary.
    import tempfile

    log_path = args.log or os.path.join(
        tempfile.gettempdir(), f"daskgen-soak-{os.getpid()}.log"
    )
    tty = os.fdopen(os.dup(2), "w", buffering=1)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    logging.getLogger("distributed").setLevel(logging.WARNING)

    def say(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=tty, flush=True)

    try:
        R = run(
            args.minutes,
            args.workers,
            args.seed,
            consumers=args.consumers,
            memory_limit=args.memory_limit,
            kill_interval=(lo, hi),
            max_retries=args.max_retries,
            progress=say,
            log_level=logging.INFO,
        )
    finally:
        os.dup2(tty.fileno(), 2)  # our own errors go to the terminal again
    report(R)
    with open(log_path, errors="replace") as f:
        text = f.read()
    print(
        f"\ncluster log: {log_path} ({text.count(chr(10)):,} lines, "
        f"{text.count('Traceback'):,} tracebacks, "
        f"{sum('daskgen' in ln and ('ERROR' in ln or 'Error' in ln) for ln in text.splitlines()):,} "
        "daskgen error lines)"
    )
    return 0 if R["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
