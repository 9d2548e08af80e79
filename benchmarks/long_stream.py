"""Long streams stay flat: RSS of the client+scheduler and of the worker over 1M tiny items.

Run (about 12 minutes for both phases at 1M items on 2 cores; ``--items
100000 --flat-from 30000`` in about one)::

    . .venv/bin/activate
    python benchmarks/long_stream.py                    # 1,000,000 items
    python benchmarks/long_stream.py --items 300000 --flat-from 100000 --phases stream

One worker (one thread, ``--memory-limit`` 400 MiB, under a nanny) of a
``LocalCluster``, whose scheduler shares this process with the client, runs:

stream  one streaming call of ``--items`` tiny items (the index, an int). The
        consumer takes each item's Future and drops it at once; every
        ``--fetch-every``-th (1000) it fetches the value and checks it, and it
        checks every key's index, so a lost or repeated item is seen without
        paying a round trip per item. ``--backpressure k`` (1000) bounds how
        far the generator may run ahead of the consumer; ``--backpressure 0``
        runs it without a bound. Without one, a generator faster than its
        consumer keeps every item it is ahead by: a tiny item costs about
        2 KiB on the worker and 4 KiB on the scheduler and client (its
        task, its Future, its messages), so memory follows the lag, not the
        length (300k items of ``range`` ran 270k ahead of a consumer on this
        2-core machine: 666 MiB worker, 1.1 GiB client+scheduler). That is
        what backpressure is for, in Ray as here.
static  ``--items`` items as static calls of ``--chunk`` (20,000) items each,
        one call at a time; each item's Future is released as soon as it is
        done (``as_completed``), its value checked every ``--fetch-every``.

At 10k, 100k, 1M items (and the points between) it samples the RSS of this
process (client and scheduler) and of the worker, the scheduler's task count
and the items/s so far. Python seldom gives memory back, so RSS only grows:
flat means the growth from ``--flat-from`` (300k) items to the end is small.
Before that, bounded caches of Dask's own fill up: dask's ``key_split`` cache
(100,000 entries in every process) and, above all, the last 1,000 batches of
messages every batched comm keeps for debugging
(``distributed.admin.low-level-log-length``): a static call's burst of
per-key messages (``client-releases-keys``, ``free-keys``, ``key-in-memory``)
makes those batches large, so they hold a few hundred thousand messages once
full. Run with ``DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH=100`` to see
memory flat from 100k items on. The script exits 1 when either process's RSS
at the end is more than ``--max-growth`` (1.5) times its RSS at
``--flat-from``, or when an item was lost, repeated or wrong, or anything is
left on the scheduler or the worker afterwards.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from typing import Any

import psutil
from distributed import Client, LocalCluster, as_completed

import daskgen

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _util import MiB, busy_warning, log, print_header, print_table  # noqa: E402

# ------------------------------------------------------------------ task bodies


def tiny(n):
    yield from range(n)


def _scheduler_counts(dask_scheduler):
    ext = dask_scheduler.extensions.get("daskgen")
    return {
        "tasks": len(dask_scheduler.tasks),
        "generators": len(ext.generators) if ext is not None else 0,
        "ahead": max(
            (g.produced - g.released for g in ext.generators.values()), default=0
        )
        if ext is not None
        else 0,
        "pseudo": sum(str(c).startswith("daskgen-") for c in dask_scheduler.clients),
    }


def _worker_counts(dask_worker):
    ext = dask_worker.extensions.get("daskgen")
    return {
        "data": len(dask_worker.data),
        "drivers": len(ext.drivers) if ext is not None else 0,
    }


def worker_status(client: Client) -> dict[str, Any]:
    """The worker's status (a paused worker starts no task) and RSS."""
    try:
        return {
            a: {
                "status": w.get("status"),
                "memory": f"{w['metrics']['memory'] / MiB:.0f} MiB",
            }
            for a, w in client.scheduler_info()["workers"].items()
        }
    except Exception as e:  # noqa: BLE001
        return {"error": repr(e)}


# ------------------------------------------------------------------------ phases


def checkpoints(total: int) -> list[int]:
    pts = [
        p
        for p in (10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000, 10_000_000)
        if p < total
    ]
    return [*pts, total]


class Recorder:
    def __init__(self, client: Client, worker_pid: int, total: int) -> None:
        self.client = client
        self.me = psutil.Process()
        self.worker = psutil.Process(worker_pid)
        self.points = checkpoints(total)
        self.next = 0
        self.rows: list[dict[str, Any]] = []
        self.t0 = time.perf_counter()
        self.restarts = 0

    def maybe(self, done: int) -> None:
        while self.next < len(self.points) and done >= self.points[self.next]:
            self.next += 1
            self.sample(done)

    def sample(self, done: int) -> None:
        elapsed = time.perf_counter() - self.t0
        counts = self.client.run_on_scheduler(_scheduler_counts)
        try:
            worker_rss = self.worker.memory_info().rss
        except psutil.Error:  # the nanny restarted it (memory limit)
            log("  the worker process was restarted")
            self.restarts += 1
            self.worker = psutil.Process(
                next(iter(self.client.run(os.getpid).values()))
            )
            worker_rss = self.worker.memory_info().rss
        row = {
            "items": done,
            "client_rss": self.me.memory_info().rss,
            "worker_rss": worker_rss,
            "tasks": counts["tasks"],
            "ahead": counts["ahead"],
            "elapsed": elapsed,
            "rate": done / elapsed if elapsed else 0.0,
        }
        self.rows.append(row)
        log(
            f"  {done:>9,} items: client+scheduler {row['client_rss'] / MiB:6.0f} MiB, "
            f"worker {row['worker_rss'] / MiB:5.0f} MiB, {counts['tasks']:,} tasks, "
            f"{row['rate']:,.0f} items/s"
        )


def run_stream(client: Client, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    n = args.items
    rec = Recorder(client, pid, n)
    bad = 0
    gen = daskgen.submit(tiny, n, backpressure=args.backpressure or None, client=client)
    i = 0
    while True:
        try:
            f = gen.next(timeout=args.stall)
        except StopIteration:
            break
        except TimeoutError:
            log(f"stream: no item {i} within {args.stall} s: {worker_status(client)}")
            gen.cancel()
            bad += n - i
            break
        if f.key[1] != i:
            bad += 1
            log(f"stream: item {i} has key {f.key!r}")
            i = f.key[1]
        try:
            if i % args.fetch_every == 0 and f.result() != i:
                bad += 1
        except Exception as e:  # noqa: BLE001 - e.g. the worker died too often
            log(f"stream: item {i} raised {type(e).__name__}: {str(e)[:200]}")
            e.__traceback__ = None
            del e, f
            gen.cancel()
            bad += n - i
            break
        del f
        i += 1
        if rec.next < len(rec.points) and i >= rec.points[rec.next]:
            rec.maybe(i)
    if gen.status.value != "cancelled" and gen.completed().result() is not None:
        bad += 1
    if gen.status.value == "cancelled":
        i = n  # counted in bad already
    del gen
    if i != n:
        log(f"stream: {i} items of {n}")
        bad += abs(n - i)
    rec.maybe(i)
    return {"rows": rec.rows, "bad": bad, "restarts": rec.restarts,
            "total": rec.rows[-1]["elapsed"] if rec.rows else 0}  # fmt: skip


def run_static(client: Client, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    n = args.items
    rec = Recorder(client, pid, n)
    bad = 0
    done = 0
    start = 0
    while start < n:
        m = min(args.chunk, n - start)
        refs = daskgen.submit(tiny, m, num_returns=m, client=client)
        if m == 1:
            refs = [refs]
        ac = as_completed(refs, timeout=args.stall)
        del refs
        seen = 0
        try:
            for f in ac:
                j = f.key[1]
                if (start + j) % args.fetch_every == 0 and f.result() != j:
                    bad += 1
                if f.status != "finished":
                    bad += 1
                del f
                seen += 1
                done += 1
                if rec.next < len(rec.points) and done >= rec.points[rec.next]:
                    rec.maybe(done)
        except TimeoutError:
            log(f"static: stalled for {args.stall} s after {done:,} items: "
                f"{worker_status(client)}")  # fmt: skip
            del ac
            bad += n - done
            break
        del ac
        bad += abs(m - seen)
        start += m
    rec.maybe(done)
    return {"rows": rec.rows, "bad": bad, "restarts": rec.restarts,
            "total": rec.rows[-1]["elapsed"] if rec.rows else 0}  # fmt: skip


# ------------------------------------------------------------------------ report


def growth(rows: list[dict[str, Any]], key: str, base_items: int) -> float | None:
    base = next((r for r in rows if r["items"] >= base_items), None)
    if base is None or base is rows[-1]:
        return None
    return rows[-1][key] / base[key]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=1_000_000,
                   help="items per phase (1M)")  # fmt: skip
    p.add_argument("--stall", type=float, default=120.0,
                   help="fail a phase when no item arrives for this many seconds")  # fmt: skip
    p.add_argument("--phases", nargs="+", choices=("stream", "static"),
                   default=["stream", "static"])  # fmt: skip
    p.add_argument("--chunk", type=int, default=20_000,
                   help="num_returns of each static call (20k; the caller holds "
                        "a call's items until they finish: about 2 KiB each on "
                        "the worker)")  # fmt: skip
    p.add_argument("--fetch-every", type=int, default=1000,
                   help="fetch and check every k-th value (1000)")  # fmt: skip
    p.add_argument("--backpressure", type=int, default=1000,
                   help="how far the stream may run ahead (1000; 0: no bound)")  # fmt: skip
    p.add_argument("--memory-limit", default="400MiB")
    p.add_argument("--flat-from", type=int, default=300_000,
                   help="items after which RSS must stay flat (300k)")  # fmt: skip
    p.add_argument("--max-growth", type=float, default=1.5,
                   help="fail if RSS at the end > this x RSS at --flat-from (1.5)")  # fmt: skip
    args = p.parse_args()
    print_header(f"daskgen long_stream ({args.items:,} items)")

    results: dict[str, dict[str, Any]] = {}
    leftovers: dict[str, Any] = {}
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            memory_limit=args.memory_limit,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        pid = next(iter(client.run(os.getpid).values()))
        for f in daskgen.submit(tiny, 10, client=client):  # warm up
            f.result()
        del f
        for phase in args.phases:
            gc.collect()
            log(f"{phase}: {args.items:,} items")
            fn = run_stream if phase == "stream" else run_static
            results[phase] = fn(client, pid, args)
            gc.collect()
            deadline = time.monotonic() + 30
            while True:
                s = client.run_on_scheduler(_scheduler_counts)
                w = next(iter(client.run(_worker_counts).values()))
                if (not s["tasks"] and not s["generators"] and not s["pseudo"]
                        and not w["data"] and not w["drivers"]) or time.monotonic() > deadline:  # fmt: skip
                    break
                time.sleep(0.1)
            leftovers[phase] = {**s, **w}
            log(f"{phase}: left {leftovers[phase]}")

    failed: list[str] = []
    for phase, R in results.items():
        rows = R["rows"]
        mode = (
            f"streaming, backpressure={args.backpressure or None}"
            if phase == "stream"
            else f"static, num_returns={args.chunk:,} per call, as_completed"
        )
        print(f"## {phase}: {mode}; 1 worker, memory_limit={args.memory_limit}")
        print()
        print_table(
            ["items", "client+scheduler RSS MiB", "worker RSS MiB",
             "scheduler tasks", "produced - released", "time", "items/s so far"],
            [
                [f"{r['items']:,}", f"{r['client_rss'] / MiB:.0f}",
                 f"{r['worker_rss'] / MiB:.0f}", f"{r['tasks']:,}",
                 f"{r['ahead']:,}", f"{r['elapsed']:.1f} s", f"{r['rate']:,.0f}"]
                for r in rows
            ],
        )  # fmt: skip
        last = rows[-1]["items"]
        for base in sorted({100_000, args.flat_from}):
            gc_ = growth(rows, "client_rss", base)
            gw = growth(rows, "worker_rss", base)
            if gc_ is None or gw is None:
                print(f"growth: fewer than {base:,} items, not measured")
                continue
            bound = base == args.flat_from
            print(
                f"growth from {base:,} to {last:,} items: client+scheduler "
                f"{gc_:.2f}x, worker {gw:.2f}x"
                + (f" (bound {args.max_growth}x)" if bound else "")
            )
            for who, g in (("client+scheduler", gc_), ("worker", gw)):
                if bound and g > args.max_growth:
                    failed.append(f"{phase}: {who} RSS grew {g:.2f}x")
        print(f"rate: {last / R['total']:,.0f} items/s over {R['total']:.0f} s")
        if R["restarts"]:
            failed.append(f"{phase}: the worker was restarted {R['restarts']} time(s)")
        if R["bad"]:
            failed.append(f"{phase}: {R['bad']} items lost, repeated or wrong")
        left = leftovers[phase]
        print(f"left afterwards: {left}")
        if any(left.values()):
            failed.append(f"{phase}: left {left}")
        print()
    print("RESULT: " + ("PASS" if not failed else "FAIL: " + "; ".join(failed)))
    busy_warning()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
