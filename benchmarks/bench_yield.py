"""Per-yield cost, first-item latency, large items, CPU-bound and scale: daskgen vs Ray.

Run (about 2-3 minutes; ``--quick`` about 1 minute)::

    . .venv/bin/activate
    python benchmarks/bench_yield.py            # default sizes, with Ray if importable
    python benchmarks/bench_yield.py --quick    # smaller sizes, fewer repeats
    python benchmarks/bench_yield.py --no-ray   # daskgen and the bare loop only

Measurements (each a median of ``--repeat`` runs unless noted):

a. streaming (the default mode), 5000 tiny items; the consumer iterates the
   Futures without fetching values: total time / 5000.
b. static ``num_returns=5000``; wait for every item (``distributed.wait`` /
   ``ray.wait(fetch_local=False)``): total time / 5000.
c. time from submit until the first item is done, for a generator that sleeps
   before each item. daskgen static N=1000 at 50 ms/item (the rest is then
   cancelled), N=10 and N=10000 with only the first item taking 50 ms, and
   streaming. Ray's static items are all ready only when the task ends, so
   Ray's static run uses a smaller N (40 items: 2 s).
d. 20 items of 100 MiB (``np.ones``): time until all were produced; each item
   is dropped by the caller as soon as it is done.
e. CPU-bound: 200 yields of 3 ms pure-Python work each.
f. scale: 10, 50, 200 concurrent streaming generators of 100 tiny items on two
   workers: aggregate yields/s and scheduler CPU per yield. This uses a
   scheduler in its own process (``dask scheduler`` + ``dask worker``) so its
   CPU time is not mixed with the client's: in a LocalCluster the client,
   scheduler and nannies share one process and one event loop.

"bare loop" is the same generator consumed by a plain ``client.submit`` task in
the worker process (each item dropped at once), timed from the client: the
floor a generator-task system can approach.

Clusters: a-e use ``LocalCluster(n_workers=1, threads_per_worker=2,
processes=True, memory_limit="6GiB")``; Ray uses ``ray.init(num_cpus=2)`` and
runs after the Dask clusters are closed, so they never compete for the CPUs.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import sys
import time
from typing import Any

import numpy as np
from distributed import Client, LocalCluster, as_completed, wait

import daskgen

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _util import (  # noqa: E402
    MiB,
    busy_warning,
    fmt_ratio,
    fmt_time,
    log,
    median,
    print_header,
    print_table,
    ratio,
    repeat,
    subprocess_cluster,
    try_import_ray,
    wait_idle,
)

# ------------------------------------------------------------------ task bodies
# Defined here (not in _util) so cloudpickle ships them by value to workers.


def tiny(n):
    for i in range(n):  # noqa: UP028 - the loop a user would write
        yield i


def slow(n, first, rest):
    """Sleep ``first`` s before item 0 and ``rest`` s before each other item."""
    time.sleep(first)
    yield 0
    for i in range(1, n):
        if rest:
            time.sleep(rest)
        yield i


def large(n, mib):
    for _ in range(n):
        yield np.ones(mib * MiB // 8)


def busy(iters):
    x = 0
    for i in range(iters):
        x += i
    return x


def cpu(n, iters):
    for _ in range(n):
        yield busy(iters)


def bare(genfunc, *args):
    """Consume a generator locally, dropping each item; return the loop's time."""
    t0 = time.perf_counter()
    for x in genfunc(*args):
        del x
    return time.perf_counter() - t0


def bare_held(genfunc, *args):
    """Like ``bare``, but each item lives until the next one is built: what
    any consumer of yields sees, since an item must outlive its ``yield``."""
    t0 = time.perf_counter()
    prev = None
    for x in genfunc(*args):
        prev = x  # noqa: F841 - kept alive while the next item is built
        del x
    del prev
    return time.perf_counter() - t0


def calibrate(seconds):
    """Iterations of ``busy`` that take ``seconds`` in this process."""
    iters = 10_000
    while True:
        t0 = time.perf_counter()
        busy(iters)
        dt = time.perf_counter() - t0
        if dt > 0.05:
            break
        iters *= 2
    best = min(_timeit(busy, iters) for _ in range(5))
    return int(iters * seconds / best)


def set_worker_log_level(level):
    """Cancelled drivers err, and the worker logs that as "Compute Failed"."""
    import logging

    logging.getLogger("distributed.worker").setLevel(level)


def _timeit(f, *a):
    t0 = time.perf_counter()
    f(*a)
    return time.perf_counter() - t0


# ------------------------------------------------------------------ configuration


def config(quick: bool) -> dict[str, Any]:
    if quick:
        return dict(
            repeat=2, n_tiny=1000, n_first=1000, ray_n_first=10,
            first_extra=(10, 2000), n_large=5, large_mib=100,
            n_cpu=50, cpu_s=0.003, scale=(10, 50), scale_items=50,
        )  # fmt: skip
    return dict(
        repeat=5, n_tiny=5000, n_first=1000, ray_n_first=40,
        first_extra=(10, 10000), n_large=20, large_mib=100,
        n_cpu=200, cpu_s=0.003, scale=(10, 50, 200), scale_items=100,
    )  # fmt: skip


# ------------------------------------------------------------------------ daskgen


class GCPauses:
    """Full (generation 2) garbage collections of this process, and their length.

    In a LocalCluster this process also runs the scheduler.
    """

    def __enter__(self) -> GCPauses:
        self.pauses: list[float] = []
        self._t = 0.0
        gc.callbacks.append(self._cb)
        return self

    def __exit__(self, *exc: Any) -> None:
        gc.callbacks.remove(self._cb)

    def _cb(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._t)


class DaskRuns:
    def __init__(self, client: Client, cfg: dict[str, Any]) -> None:
        self.c = client
        self.cfg = cfg

    def _idle(self) -> None:
        gc.collect()
        if not wait_idle(self.c, 60):
            log("WARNING: the scheduler still holds tasks 60 s after a run")

    def bare(self, genfunc: Any, *args: Any, loop: Any = bare) -> tuple[float, float]:
        """(client-side wall time, in-task loop time) of the bare loop."""
        t0 = time.perf_counter()
        inner = self.c.submit(loop, genfunc, *args, pure=False).result()
        wall = time.perf_counter() - t0
        self._idle()
        return wall, inner

    def stream(self, genfunc: Any, *args: Any) -> float:
        t0 = time.perf_counter()
        g = daskgen.submit(genfunc, *args, client=self.c)
        for f in g:
            del f
        dt = time.perf_counter() - t0
        del g
        self._idle()
        return dt

    def static_all(self, n: int, genfunc: Any, *args: Any) -> float:
        """Submit with num_returns=n; wait for every item, dropping each when done."""
        t0 = time.perf_counter()
        refs = daskgen.submit(genfunc, *args, num_returns=n, client=self.c)
        ac = as_completed(refs)
        del refs
        for f in ac:
            del f
        dt = time.perf_counter() - t0
        del ac
        self._idle()
        return dt

    def static_wait(self, n: int, genfunc: Any, *args: Any) -> float:
        """Submit with num_returns=n; distributed.wait on all of them."""
        t0 = time.perf_counter()
        refs = daskgen.submit(genfunc, *args, num_returns=n, client=self.c)
        wait(refs)
        dt = time.perf_counter() - t0
        del refs
        self._idle()
        return dt

    def first_static(self, n: int, first: float, rest: float) -> float:
        t0 = time.perf_counter()
        refs = daskgen.submit(slow, n, first, rest, num_returns=n, client=self.c)
        wait(refs[0])
        dt = time.perf_counter() - t0
        if rest:
            self.c.cancel(refs)  # stops the generator at its next yield
        del refs
        self._idle()
        return dt

    def first_stream(self, n: int, first: float, rest: float) -> float:
        t0 = time.perf_counter()
        g = daskgen.submit(slow, n, first, rest, client=self.c)
        f = next(g)
        wait(f)
        dt = time.perf_counter() - t0
        g.cancel()
        del f, g
        self._idle()
        return dt


def run_dask(cfg: dict[str, Any], memory_limit: str) -> dict[str, Any]:
    R: dict[str, Any] = {}
    rep = cfg["repeat"]
    R["repeat"] = rep
    log("starting LocalCluster(n_workers=1, threads_per_worker=2)")
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        d = DaskRuns(client, cfg)
        # warm up: plugin install, function shipping, thread pools
        d.stream(tiny, 100)
        d.static_wait(100, tiny, 100)
        d.bare(tiny, 100)

        n = cfg["n_tiny"]
        log(f"a/b: {n} tiny items")
        R["a_dg"] = repeat(lambda: d.stream(tiny, n), rep) / n
        walls = [d.bare(tiny, n) for _ in range(rep)]
        R["a_bare"] = sorted(w for w, _ in walls)[len(walls) // 2] / n
        R["a_bare_inner"] = sorted(i for _, i in walls)[len(walls) // 2] / n
        R["b_dg"] = repeat(lambda: d.static_wait(n, tiny, n), rep) / n

        log("c: first-item latency")
        client.run(set_worker_log_level, logging.CRITICAL)
        n1 = cfg["n_first"]
        R["c_dg"] = repeat(lambda: d.first_static(n1, 0.05, 0.05), rep)
        big = max(cfg["first_extra"])
        for m in cfg["first_extra"]:
            with GCPauses() as gcp:
                R[f"c_dg_{m}"] = repeat(lambda m=m: d.first_static(m, 0.05, 0.0), rep)
        R["c_gc"] = gcp.pauses  # those of the largest N
        R["c_dg_big_slow"] = repeat(lambda: d.first_static(big, 0.05, 0.05), rep)
        R["c_dg_stream"] = repeat(lambda: d.first_stream(n1, 0.05, 0.05), rep)
        client.run(set_worker_log_level, logging.INFO)

        nl, mib = cfg["n_large"], cfg["large_mib"]
        log(f"d: {nl} x {mib} MiB")
        # warm up (the first large allocations of a process are slower), then
        # interleave the three variants so that drift hits them alike
        d.bare(large, 2, mib)
        d.static_all(2, large, 2, mib)
        d.stream(large, 2, mib)
        runs: dict[str, list[float]] = {
            "d_bare": [], "d_held": [], "d_dg": [], "d_dg_stream": []
        }  # fmt: skip
        for _ in range(rep):
            runs["d_bare"].append(d.bare(large, nl, mib)[0])
            runs["d_held"].append(d.bare(large, nl, mib, loop=bare_held)[0])
            runs["d_dg"].append(d.static_all(nl, large, nl, mib))
            runs["d_dg_stream"].append(d.stream(large, nl, mib))

        log("e: CPU-bound")
        iters = client.submit(calibrate, cfg["cpu_s"], pure=False).result()
        R["cpu_iters"] = iters
        nc = cfg["n_cpu"]
        runs.update(e_bare=[], e_dg=[], e_dg_static=[])
        for _ in range(rep):
            runs["e_bare"].append(d.bare(cpu, nc, iters)[0])
            runs["e_dg"].append(d.stream(cpu, nc, iters))
            runs["e_dg_static"].append(d.static_wait(nc, cpu, nc, iters))
        R.update({k: median(v) for k, v in runs.items()})
    return R


def run_dask_scale(cfg: dict[str, Any]) -> dict[str, Any]:
    R: dict[str, Any] = {}
    items = cfg["scale_items"]
    log("f: scale, scheduler in its own process, 2 workers x 2 threads")
    with (
        subprocess_cluster(2, 2, "2GiB") as (address, sched),
        Client(address) as client,
    ):
        client.wait_for_workers(2, timeout=60)
        g = daskgen.submit(tiny, 10, client=client)  # warm up
        for f in g:
            del f
        del g
        wait_idle(client)
        n = cfg["n_tiny"]
        log(f"a': {n} tiny items, streaming, scheduler in its own process")
        times, cpus = [], []
        for _ in range(cfg["repeat"]):
            c0 = sched.cpu_times()
            t0 = time.perf_counter()
            g = daskgen.submit(tiny, n, client=client)
            for f in g:
                del f
            times.append((time.perf_counter() - t0) / n)
            del g
            gc.collect()
            wait_idle(client)
            c1 = sched.cpu_times()
            cpus.append((c1.user - c0.user + c1.system - c0.system) / n)
        R["a_sep"] = median(times)
        R["a_sep_cpu"] = median(cpus)
        log("c': first-item latency, scheduler in its own process")
        d = DaskRuns(client, cfg)
        for m in cfg["first_extra"]:
            R[f"c_sep_{m}"] = repeat(
                lambda m=m: d.first_static(m, 0.05, 0.0), cfg["repeat"]
            )
        for k in cfg["scale"]:
            gc.collect()
            c0 = sched.cpu_times()
            t0 = time.perf_counter()
            gens = [daskgen.submit(tiny, items, client=client) for _ in range(k)]
            wait([g.completed() for g in gens])
            t_prod = time.perf_counter() - t0
            for g in gens:
                for f in g:
                    del f
            t_all = time.perf_counter() - t0
            del gens, g
            wait_idle(client)
            c1 = sched.cpu_times()
            cpu = (c1.user - c0.user) + (c1.system - c0.system)
            total = k * items
            R[k] = dict(prod=total / t_prod, all=total / t_all, sched_cpu=cpu / total)
            log(f"  {k} generators: {total / t_all:.0f} yields/s")
    return R


# ---------------------------------------------------------------------------- Ray


def run_ray(ray: Any, cfg: dict[str, Any], iters: int | None) -> dict[str, Any]:
    R: dict[str, Any] = {}
    rep = cfg["repeat"]
    log("starting Ray: ray.init(num_cpus=2, object_store_memory=3 GiB)")
    ray.init(
        num_cpus=2,
        object_store_memory=3 * 2**30,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="warning",
    )
    try:
        r_tiny = ray.remote(tiny)
        r_slow = ray.remote(slow)
        r_large = ray.remote(large)
        r_cpu = ray.remote(cpu)
        r_bare = ray.remote(bare)

        def stream(rf: Any, *args: Any) -> float:
            t0 = time.perf_counter()
            for ref in rf.remote(*args):
                del ref
            return time.perf_counter() - t0

        def static(rf: Any, n: int, *args: Any) -> float:
            t0 = time.perf_counter()
            refs = rf.options(num_returns=n).remote(*args)
            ray.wait(refs, num_returns=len(refs), fetch_local=False)
            dt = time.perf_counter() - t0
            del refs
            return dt

        def first_static(n: int) -> float:
            t0 = time.perf_counter()
            refs = r_slow.options(num_returns=n).remote(n, 0.05, 0.05)
            ray.wait(refs[:1], num_returns=1, fetch_local=False)
            dt = time.perf_counter() - t0
            del refs
            return dt

        def first_stream(n: int) -> float:
            t0 = time.perf_counter()
            gen = r_slow.remote(n, 0.05, 0.05)
            ref = next(gen)
            ray.wait([ref], fetch_local=False)
            dt = time.perf_counter() - t0
            ray.cancel(gen)
            with contextlib.suppress(Exception):  # TaskCancelledError expected
                ray.get(gen.completed())
            del ref, gen
            return dt

        # warm up: worker processes, function export
        ray.get([ray.remote(lambda: 1).remote() for _ in range(4)])
        stream(r_tiny, 100)
        static(r_tiny, 100, 100)
        ray.get(r_bare.remote(tiny, 10))
        stream(r_large, 2, cfg["large_mib"])
        static(r_large, 2, 2, cfg["large_mib"])
        stream(r_cpu, 2, 10)
        stream(r_slow, 2, 0, 0)

        n = cfg["n_tiny"]
        log(f"Ray a/b: {n} tiny items")
        R["a_ray"] = repeat(lambda: stream(r_tiny, n), rep) / n
        R["b_ray"] = repeat(lambda: static(r_tiny, n, n), rep) / n

        log("Ray c: first-item latency")
        r3 = max(1, min(rep, 3))
        R["c_ray"] = repeat(lambda: first_static(cfg["ray_n_first"]), r3)
        R["c_ray_stream"] = repeat(lambda: first_stream(cfg["n_first"]), rep)

        nl, mib = cfg["n_large"], cfg["large_mib"]
        log(f"Ray d: {nl} x {mib} MiB")
        ds, dm = [], []
        for _ in range(rep):
            ds.append(static(r_large, nl, nl, mib))
            dm.append(stream(r_large, nl, mib))
        R["d_ray"], R["d_ray_stream"] = median(ds), median(dm)

        if iters:
            log("Ray e: CPU-bound")
            R["e_ray"] = repeat(lambda: stream(r_cpu, cfg["n_cpu"], iters), rep)

        items = cfg["scale_items"]
        for k in cfg["scale"]:
            t0 = time.perf_counter()
            gens = [r_tiny.remote(items) for _ in range(k)]
            for g in gens:
                for ref in g:
                    del ref
            R[f"f_{k}"] = k * items / (time.perf_counter() - t0)
            del gens
    finally:
        ray.shutdown()
    return R


# -------------------------------------------------------------------------- report


def rep_n(R: dict[str, Any]) -> str:
    return str(R.get("repeat", "the"))


def fmt_pauses(p: list[float]) -> str:
    if not p:
        return "-"
    return f"{fmt_time(median(p))} median, {fmt_time(max(p))} the longest"


def report(
    R: dict[str, Any], S: dict[Any, Any], cfg: dict[str, Any], has_ray: bool
) -> None:
    g = R.get
    n, n1 = cfg["n_tiny"], cfg["n_first"]
    nl, mib, nc = cfg["n_large"], cfg["large_mib"], cfg["n_cpu"]
    ms = cfg["cpu_s"] * 1e3

    def row(name, dg, b, ry, target="", met=None):
        return [
            name,
            fmt_time(dg),
            fmt_time(b),
            fmt_time(ry),
            fmt_ratio(ratio(dg, b)),
            fmt_ratio(ratio(dg, ry)),
            fmt_ratio(ratio(ry, dg)),
            target,
            "-" if met is None else ("yes" if met else "NO"),
        ]

    def le(x, lim):
        return None if x is None else x <= lim

    def ge(x, lim):
        return None if x is None else x >= lim

    lat_ok = lambda x: le(None if x is None else x - 0.05, 0.020)  # noqa: E731
    rows = [
        row(f"a. streaming, per yield ({n} tiny)", g("a_dg"), g("a_bare"), g("a_ray"),
            "dg/Ray <= 1.0", le(ratio(g("a_dg"), g("a_ray")), 1.0)),
        row("a'. as a, scheduler in its own process", S.get("a_sep"), g("a_bare"),
            g("a_ray"), "dg/Ray <= 1.0", le(ratio(S.get("a_sep"), g("a_ray")), 1.0)),
        row(f"b. static num_returns={n}, per yield", g("b_dg"), g("a_bare"), g("b_ray")),
        row(f"c. first item, static N={n1}, 50 ms/item (Ray: N={cfg['ray_n_first']})",
            g("c_dg"), 0.05, g("c_ray"), "<= 50+20 ms", lat_ok(g("c_dg"))),
        *[
            row(f"c. first item, static N={m}, 50 ms first item", g(f"c_dg_{m}"), 0.05,
                None, "<= 50+20 ms", lat_ok(g(f"c_dg_{m}")))
            for m in cfg["first_extra"]
        ],
        *[
            row(f"c'. as c, N={m}, scheduler in its own process", S.get(f"c_sep_{m}"),
                0.05, None, "<= 50+20 ms", lat_ok(S.get(f"c_sep_{m}")))
            for m in cfg["first_extra"]
        ],
        row(f"c. first item, static N={max(cfg['first_extra'])}, 50 ms/item",
            g("c_dg_big_slow"), 0.05, None, "<= 50+20 ms", lat_ok(g("c_dg_big_slow"))),
        row("c. first item, streaming, 50 ms/item", g("c_dg_stream"), 0.05,
            g("c_ray_stream"), "<= 50+20 ms", lat_ok(g("c_dg_stream"))),
        row(f"d. {nl} x {mib} MiB, bare loop holding the previous item", g("d_held"),
            g("d_bare"), None),
        row(f"d. {nl} x {mib} MiB, static N={nl}, all produced", g("d_dg"),
            g("d_bare"), g("d_ray"), "dg/bare <= 1.2, Ray/dg >= 2",
            None if g("d_dg") is None else (
                le(ratio(g("d_dg"), g("d_bare")), 1.2)
                and (not has_ray or ge(ratio(g("d_ray"), g("d_dg")), 2.0)))),
        row(f"d. {nl} x {mib} MiB, streaming, all produced", g("d_dg_stream"),
            g("d_bare"), g("d_ray_stream"), "dg/bare <= 1.2, Ray/dg >= 2",
            None if g("d_dg_stream") is None else (
                le(ratio(g("d_dg_stream"), g("d_bare")), 1.2)
                and (not has_ray or ge(ratio(g("d_ray_stream"), g("d_dg_stream")), 2.0)))),
        row(f"e. CPU-bound, {nc} x {ms:.0f} ms, streaming", g("e_dg"), g("e_bare"),
            g("e_ray"), "dg/bare <= 1.15", le(ratio(g("e_dg"), g("e_bare")), 1.15)),
        row(f"e. CPU-bound, {nc} x {ms:.0f} ms, static", g("e_dg_static"), g("e_bare"),
            None, "dg/bare <= 1.15", le(ratio(g("e_dg_static"), g("e_bare")), 1.15)),
    ]  # fmt: skip
    print("## a-e: one worker (2 threads) / Ray num_cpus=2; time, lower is better")
    print()
    print_table(
        ["measurement", "daskgen", "bare loop", "Ray", "dg/bare", "dg/Ray", "Ray/dg",
         "target", "met"],
        rows,
    )  # fmt: skip
    print(
        "a': the same stream with the scheduler in its own process (the cluster of "
        "f), so that\nthe client and the scheduler do not share one process, GIL "
        "and event loop as in a LocalCluster. The scheduler process used "
        f"{fmt_time(S.get('a_sep_cpu'))} of CPU per yield.\n"
        f"bare loop in (a) is client.submit of the loop, end to end / {n}; the loop "
        f"itself takes {fmt_time(g('a_bare_inner'))} per item in the task.\n"
        f"c: 'bare loop' is the 50 ms the first item takes to make; Ray's static "
        f"items are ready only when its task ends, hence its N={cfg['ray_n_first']} "
        f"({cfg['ray_n_first'] * 50} ms of work). '50 ms first item': the later items "
        "cost nothing, so the\ngenerator has yielded thousands more by the time the "
        "first is reported; '50 ms/item': every item\ntakes 50 ms (the rest is "
        "cancelled once the first is done).\n"
        f"c: during the {rep_n(R)} runs at N={max(cfg['first_extra'])} (50 ms first item) "
        "the process running the client and the\nscheduler made "
        f"{len(R.get('c_gc', []))} full garbage collections (CPython generation 2) of "
        f"{fmt_pauses(R.get('c_gc', []))};\na run with one inside its 50 ms window is "
        "that much late. In c' the scheduler has its own process.\n"
        "d: 'holding the previous item' is the bare loop with each item alive "
        "until the next one is built, as\nit must be for any consumer to get it; "
        "on a machine slow to supply fresh memory this alone costs\nmore than the "
        f"1.2x target. daskgen against it: static {fmt_ratio(ratio(g('d_dg'), g('d_held')))}, "
        f"streaming {fmt_ratio(ratio(g('d_dg_stream'), g('d_held')))}.\n"
        f"e: {R.get('cpu_iters')} loop iterations per item (~{ms:.0f} ms in the "
        "worker process).\n"
    )
    if not has_ray:
        print("Ray columns are empty: Ray was not importable or --no-ray was given.\n")

    print(
        f"## f: {cfg['scale_items']} tiny items per generator, all submitted at once; "
        "2 workers x 2 threads (scheduler in its own process) / Ray num_cpus=2"
    )
    print()
    srows = []
    for k in cfg["scale"]:
        s = S.get(k, {})
        ry = R.get(f"f_{k}")
        srows.append(
            [
                k,
                f"{s.get('prod', 0):,.0f}",
                f"{s.get('all', 0):,.0f}",
                fmt_time(s.get("sched_cpu")),
                f"{ry:,.0f}" if ry else "-",
                fmt_ratio(ratio(s.get("all"), ry)),
            ]
        )
    print_table(
        ["generators", "daskgen yields/s (all ended)", "daskgen yields/s (consumed)",
         "scheduler CPU / yield", "Ray yields/s (consumed)", "dg/Ray throughput"],
        srows,
    )  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    p.add_argument("--no-ray", action="store_true", help="skip the Ray columns")
    p.add_argument("--repeat", type=int, help="runs per measurement (median)")
    p.add_argument("--memory-limit", default="6GiB", help="worker memory_limit (a-e)")
    p.add_argument("--skip-scale", action="store_true", help="skip (f)")
    args = p.parse_args()
    cfg = config(args.quick)
    if args.repeat:
        cfg["repeat"] = args.repeat
    ray = None if args.no_ray else try_import_ray()
    print_header("daskgen bench_yield" + (" (quick)" if args.quick else ""))
    if ray is None and not args.no_ray:
        print("note: Ray is not importable; Ray columns are skipped.\n")
    t0 = time.perf_counter()
    R = run_dask(cfg, args.memory_limit)
    S = {} if args.skip_scale else run_dask_scale(cfg)
    if args.skip_scale:
        cfg["scale"] = ()
    if ray is not None:
        R.update(run_ray(ray, cfg, R.get("cpu_iters")))
    report(R, S, cfg, ray is not None)
    print(f"total benchmark time: {time.perf_counter() - t0:.0f} s")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    busy_warning()


if __name__ == "__main__":
    main()
