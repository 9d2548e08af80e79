"""Peak worker memory against the number of large items, daskgen (and Ray with --ray).

Run (about 6 minutes with Ray; ``--quick`` well under one)::

    . .venv/bin/activate
    python benchmarks/bench_memory.py                 # daskgen only
    python benchmarks/bench_memory.py --ray           # and Ray side by side
    python benchmarks/bench_memory.py --quick --ray

One worker with one thread and a 1 GiB ``memory_limit`` under a Nanny
(``LocalCluster(processes=True)``; the Nanny restarts the worker at 95 %), and
N items of ``--item-mb`` MiB (``np.ones``) for each N in ``--n``:

(i)   list: a plain function returning a list of N arrays, submitted with
      ``num_returns=N, max_retries=0``. The whole list is in the heap at once:
      past ~1 GiB the Nanny kills the worker and the caller gets KilledWorker.
(ii)  static: a generator with ``num_returns=N``; the caller holds every
      Future, so the worker must spill the items to disk.
(iii) stream bp=2: a streaming generator with ``backpressure=2``; the consumer
      fetches each item (``f.result()``) and drops it.
(iv)  stream: the same without backpressure (the generator runs ahead of the
      consumer; whatever it runs ahead by must be held or spilled).

The worker's RSS is sampled every 20 ms from this process with psutil (by the
pid ``client.run(os.getpid)`` returns). "private" is RSS minus shared pages
(shared libraries, and Ray's object store mapped into its workers). Spilled
bytes come from the worker's SpillBuffer: ``data.spilled_total.disk`` while
the caller holds every item, and the cumulative ``("disk-write", "bytes")``
of ``data.cumulative_metrics``.

With ``--ray``: the same with ``ray.init(num_cpus=1, object_store_memory=512
MiB)`` and ``max_retries=0``. Ray has no per-worker memory limit (only a
node-wide OOM killer at 95 % of the machine's RAM), so the list scenario is
skipped where it would need more than ``--ray-max-heap-mb`` of heap.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
import time
from typing import Any

import numpy as np
import psutil
from distributed import Client, KilledWorker, LocalCluster, wait

import daskgen

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _util import (  # noqa: E402
    MiB,
    RSSSampler,
    busy_warning,
    fmt_time,
    log,
    print_header,
    print_table,
    ray_worker_procs,
    try_import_ray,
    wait_idle,
)

SCENARIOS = ("list", "static", "stream_bp2", "stream")
LABELS = {
    "list": "(i) list, num_returns=N",
    "static": "(ii) static generator, all held",
    "stream_bp2": "(iii) streaming, backpressure=2, drop each",
    "stream": "(iv) streaming, no backpressure, drop each",
}


# ------------------------------------------------------------------ task bodies


def large_values(n, mib):
    return [np.ones(mib * MiB // 8) for _ in range(n)]


def gen_values(n, mib):
    for _ in range(n):
        yield np.ones(mib * MiB // 8)


def spill_stats(dask_worker):
    data = dask_worker.data
    total = getattr(data, "spilled_total", None)
    metrics = getattr(data, "cumulative_metrics", {})
    return {
        "disk": total.disk if total is not None else 0,
        "written": metrics.get(("disk-write", "bytes"), 0),
    }


# ------------------------------------------------------------------------ daskgen


def worker_pid(client: Client, timeout: float = 60) -> int:
    """The pid of the (only) worker, once it is up (it may be restarting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.wait_for_workers(1, timeout=timeout)
            pids = list(client.run(os.getpid).values())
            if len(pids) == 1 and psutil.pid_exists(pids[0]):
                return int(pids[0])
        except Exception:  # noqa: BLE001 - a worker that is just dying
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def _first_error(refs: list[Any]) -> BaseException | None:
    """The first error among ``refs``, without raising it.

    Raising a Future's stored exception would link the frames holding the
    Futures to it, which keeps their keys alive in distributed.
    """
    for f in refs:
        if f.status != "finished":
            return f.exception()
    return None


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _error_name(e: BaseException) -> str:
    name = type(e).__name__
    if isinstance(e, KilledWorker) and name != "KilledWorker":
        name += " (a KilledWorker)"
    elif not isinstance(e, KilledWorker):
        name += f": {str(e)[:60]}"
    return name


def run_dask_case(client: Client, kind: str, n: int, mib: int) -> dict[str, Any]:
    pid = worker_pid(client)
    proc = psutil.Process(pid)
    base = proc.memory_info().rss
    s0 = next(iter(client.run(spill_stats).values()))
    out: dict[str, Any] = {"base": base}
    refs: Any = None
    with RSSSampler(lambda: [proc]) as sampler:
        t0 = time.perf_counter()
        try:
            if kind in ("list", "static"):
                func = large_values if kind == "list" else gen_values
                refs = daskgen.submit(
                    func, n, mib, num_returns=n, max_retries=0, client=client
                )
                wait(refs)
                err = _first_error(refs)
                if err is not None:
                    out["status"] = _error_name(err)
                    del err
                else:
                    s1 = next(iter(client.run(spill_stats).values()))
                    out["spilled"] = s1["disk"]
                    out["written"] = s1["written"] - s0["written"]
            else:
                bp = 2 if kind == "stream_bp2" else None
                gen = daskgen.submit(
                    gen_values, n, mib, backpressure=bp, max_retries=0, client=client
                )
                for f in gen:
                    f.result()
                    del f
                del gen
                s1 = next(iter(client.run(spill_stats).values()))
                out["written"] = s1["written"] - s0["written"]
            out.setdefault("status", "ok")
        except Exception as e:  # noqa: BLE001 - reported in the table
            out["status"] = _error_name(e)
            e.__traceback__ = None  # see _first_error
        out["time"] = time.perf_counter() - t0
        if out["status"] != "ok":  # the error can reach us before the process ends
            deadline = time.monotonic() + 10
            while _alive(proc) and time.monotonic() < deadline:
                time.sleep(0.05)
    out["peak"] = sampler.peak
    out["peak_private"] = sampler.peak_private
    if not _alive(proc):
        out["killed_at"] = sampler.last.get(pid)
    del refs
    gc.collect()
    if out["status"] == "ok":
        wait_idle(client, 60)
    else:
        worker_pid(client)  # let the Nanny bring the worker back
        wait_idle(client, 60)
    return out


def run_dask(args: argparse.Namespace) -> dict[tuple[str, int], dict[str, Any]]:
    R: dict[tuple[str, int], dict[str, Any]] = {}
    log(
        f"starting LocalCluster(n_workers=1, threads_per_worker=1, memory_limit={args.memory_limit})"
    )
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            memory_limit=args.memory_limit,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        for f in daskgen.submit(gen_values, 2, 1, client=client):  # warm up
            f.result()
        del f
        wait_idle(client)
        for kind in args.scenarios:
            for n in args.n:
                log(f"daskgen {kind} N={n}")
                R[kind, n] = r = run_dask_case(client, kind, n, args.item_mb)
                log(f"  -> {r['status']}, peak RSS {r['peak'] / MiB:.0f} MiB")
    return R


# ---------------------------------------------------------------------------- Ray


def _ray_spilled(ray: Any) -> int:
    """Bytes Ray has spilled so far in this session (from its memory summary)."""
    try:
        from ray._private.internal_api import memory_summary

        text = memory_summary(stats_only=True)
    except Exception:  # noqa: BLE001
        return 0
    m = re.search(r"Spilled (\d+) MiB", text)
    return int(m.group(1)) * MiB if m else 0


def run_ray(
    ray: Any, args: argparse.Namespace
) -> dict[tuple[str, int], dict[str, Any]]:
    R: dict[tuple[str, int], dict[str, Any]] = {}
    log("starting Ray: ray.init(num_cpus=1, object_store_memory=512 MiB)")
    ray.init(
        num_cpus=1,
        object_store_memory=512 * MiB,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="warning",
    )
    try:
        r_list = ray.remote(large_values)
        r_gen = ray.remote(gen_values)
        for ref in r_gen.options(max_retries=0).remote(2, 1):  # warm up
            ray.get(ref)
        del ref
        mib = args.item_mb
        for kind in args.scenarios:
            for n in args.n:
                if kind == "list" and n * mib > args.ray_max_heap_mb:
                    R[kind, n] = {
                        "status": f"skipped (> {args.ray_max_heap_mb} MiB heap)"
                    }
                    continue
                log(f"Ray {kind} N={n}")
                gc.collect()
                sp0 = _ray_spilled(ray)
                out: dict[str, Any] = {}
                with RSSSampler(ray_worker_procs, refresh=0.2) as sampler:
                    t0 = time.perf_counter()
                    try:
                        if kind in ("list", "static"):
                            rf = r_list if kind == "list" else r_gen
                            refs = rf.options(num_returns=n, max_retries=0).remote(
                                n, mib
                            )
                            ray.wait(refs, num_returns=n, fetch_local=False)
                            ray.get(refs[-1])  # raises the task's error, if any
                            out["spilled"] = _ray_spilled(ray) - sp0
                            del refs
                        else:
                            opts: dict[str, Any] = {"max_retries": 0}
                            if kind == "stream_bp2":
                                opts["_generator_backpressure_num_objects"] = 2
                            for ref in r_gen.options(**opts).remote(n, mib):
                                ray.get(ref)
                                del ref
                            out["spilled"] = _ray_spilled(ray) - sp0
                        out["status"] = "ok"
                    except Exception as e:  # noqa: BLE001 - OOM, worker crash...
                        out["status"] = type(e).__name__
                    out["time"] = time.perf_counter() - t0
                out["peak"] = sampler.peak
                out["peak_private"] = sampler.peak_private
                R[kind, n] = out
                log(f"  -> {out['status']}, peak RSS {out['peak'] / MiB:.0f} MiB")
    finally:
        ray.shutdown()
    return R


# -------------------------------------------------------------------------- report


def _mib(x: Any) -> str:
    return "-" if x is None else f"{x / MiB:,.0f}"


def _status(r: dict[str, Any]) -> str:
    st = r.get("status", "-")
    if r.get("killed_at"):
        st += f" (killed at ~{r['killed_at'] / MiB:,.0f} MiB)"
    return st


def report(
    args: argparse.Namespace,
    D: dict[tuple[str, int], dict[str, Any]],
    Y: dict[tuple[str, int], dict[str, Any]] | None,
) -> None:
    print(
        f"## daskgen: 1 worker, 1 thread, memory_limit={args.memory_limit}, "
        f"items of {args.item_mb} MiB"
    )
    print()
    rows = []
    for kind in args.scenarios:
        for n in args.n:
            r = D.get((kind, n), {})
            rows.append(
                [
                    LABELS[kind], n, f"{n * args.item_mb:,}", _status(r),
                    _mib(r.get("peak")), _mib(r.get("peak_private")),
                    _mib(r.get("spilled")), _mib(r.get("written")),
                    fmt_time(r.get("time")),
                ]
            )  # fmt: skip
    print_table(
        ["scenario", "N", "data MiB", "outcome", "peak RSS MiB", "peak private MiB",
         "on disk at end MiB", "written to disk MiB", "time"],
        rows,
    )  # fmt: skip
    print(
        "'on disk at end' is the SpillBuffer's spilled_total.disk while the caller "
        "holds all N Futures;\n'written to disk' the bytes spilled during the run "
        "(cumulative disk-write).\n"
    )
    if Y is None:
        return
    print("## Ray: num_cpus=1, object_store_memory=512 MiB, max_retries=0")
    print()
    rows = []
    for kind in args.scenarios:
        for n in args.n:
            r = Y.get((kind, n), {})
            rows.append(
                [
                    LABELS[kind], n, f"{n * args.item_mb:,}", _status(r),
                    _mib(r.get("peak")), _mib(r.get("peak_private")),
                    _mib(r.get("spilled")), fmt_time(r.get("time")),
                ]
            )  # fmt: skip
    print_table(
        ["scenario", "N", "data MiB", "outcome", "peak worker RSS MiB",
         "peak private MiB", "spilled MiB", "time"],
        rows,
    )  # fmt: skip
    print(
        "Ray's worker RSS counts the pages of its shared-memory object store the "
        "worker touched;\n'private' leaves those out. 'spilled' is from Ray's "
        "memory summary (whole session, difference over the run).\n"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="N = 10, 50 only")
    p.add_argument("--ray", action="store_true", help="also run the scenarios on Ray")
    p.add_argument("--item-mb", type=int, default=32, help="item size in MiB")
    p.add_argument("--n", type=int, nargs="+", help="item counts (default 10 100 1000)")
    p.add_argument("--memory-limit", default="1GiB", help="worker memory_limit")
    p.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    p.add_argument("--ray-max-heap-mb", type=int, default=2048,
                   help="skip Ray's list scenario above this much heap")  # fmt: skip
    args = p.parse_args()
    if args.n is None:
        args.n = [10, 50] if args.quick else [10, 100, 1000]
    ray = try_import_ray() if args.ray else None
    print_header("daskgen bench_memory" + (" (quick)" if args.quick else ""))
    if args.ray and ray is None:
        print("note: --ray given but Ray is not importable; Ray is skipped.\n")
    t0 = time.perf_counter()
    D = run_dask(args)
    Y = run_ray(ray, args) if ray is not None else None
    report(args, D, Y)
    print(f"total benchmark time: {time.perf_counter() - t0:.0f} s")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    busy_warning()


if __name__ == "__main__":
    main()
