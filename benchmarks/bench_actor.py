"""Actor streams: per-yield cost and time to first item, next to function streams and Ray.

Run (about a minute)::

    python benchmarks/bench_actor.py            # with Ray if importable
    python benchmarks/bench_actor.py --no-ray

Measured in one run, each a median of ``--repeat`` runs:

- per yield: a stream of ``--items`` tiny items, the consumer iterating the
  Futures without fetching values; total time / items;
- first item: from the call until the first item's Future is done, for a
  generator whose first item is ready at once.

for a generator *function* (daskgen's ordinary stream), a sync generator
*method* of an actor, an async generator method of an actor, and a bare loop
(``client.submit`` of a task that runs the same generator in the worker, each
item dropped at once: the floor). Ray runs the same function and actor after
the Dask cluster is closed (``ray.init(num_cpus=2)``), so they never compete
for the CPUs. Dask: ``LocalCluster(n_workers=1, threads_per_worker=2)``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from distributed import Client, LocalCluster, wait

import daskgen

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _util import (  # noqa: E402
    busy_warning,
    fmt_ratio,
    fmt_time,
    log,
    median,
    print_header,
    print_table,
    ratio,
    try_import_ray,
)


def tiny(n):
    # Not `yield from range(n)`: Ray's generator tasks call .send() on it.
    for i in range(n):  # noqa: UP028
        yield i


def bare(n):
    for x in tiny(n):
        del x
    return n


class Streamer:
    def tiny(self, n):
        for i in range(n):  # noqa: UP028
            yield i

    async def atiny(self, n):
        for i in range(n):
            yield i

    def ping(self):
        return 0


def _stream(make: Any) -> tuple[float, float]:
    """(total seconds, seconds to the first item done) for one stream."""
    t0 = time.perf_counter()
    first = None
    for fut in make():
        if first is None:
            wait(fut)
            first = time.perf_counter() - t0
        del fut
    return time.perf_counter() - t0, first or 0.0


def run_dask(args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    n = args.items
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=True,
            memory_limit="2GiB",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        actor = daskgen.remote(Streamer).remote()
        actor.ping.remote().result()
        cases = {
            "function": lambda: daskgen.submit(tiny, n, client=client),
            "actor, sync method": lambda: actor.tiny.remote(n),
            "actor, async method": lambda: actor.atiny.remote(n),
        }
        for name, make in cases.items():
            _stream(make)  # warm-up
            runs = [_stream(make) for _ in range(args.repeat)]
            out[name] = (median([r[0] for r in runs]), median([r[1] for r in runs]))
            log(f"daskgen {name}: {fmt_time(out[name][0] / n)} per yield")

        def bare_run() -> float:
            t0 = time.perf_counter()
            client.submit(bare, n, pure=False).result()
            return time.perf_counter() - t0

        bare_run()
        out["bare loop"] = (median([bare_run() for _ in range(args.repeat)]), 0.0)
    return out


def run_ray(ray: Any, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    n = args.items
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        r_tiny = ray.remote(tiny)
        actor = ray.remote(Streamer).remote()
        ray.get(actor.ping.remote())

        def stream(make: Any) -> tuple[float, float]:
            t0 = time.perf_counter()
            first = None
            for ref in make():
                if first is None:
                    ray.wait([ref], fetch_local=False)
                    first = time.perf_counter() - t0
                del ref
            return time.perf_counter() - t0, first or 0.0

        cases = {
            "function": lambda: r_tiny.remote(n),
            "actor, sync method": lambda: actor.tiny.remote(n),
            "actor, async method": None,  # a Ray actor is sync or async, not both
        }
        for name, make in cases.items():
            if make is None:
                continue
            stream(make)
            runs = [stream(make) for _ in range(args.repeat)]
            out[name] = (median([r[0] for r in runs]), median([r[1] for r in runs]))
            log(f"Ray {name}: {fmt_time(out[name][0] / n)} per yield")

        @ray.remote
        class AsyncStreamer:
            async def atiny(self, n):
                for i in range(n):
                    yield i

        a2 = AsyncStreamer.remote()
        stream(lambda: a2.atiny.remote(n))
        runs = [stream(lambda: a2.atiny.remote(n)) for _ in range(args.repeat)]
        out["actor, async method"] = (
            median([r[0] for r in runs]),
            median([r[1] for r in runs]),
        )
    finally:
        ray.shutdown()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-ray", action="store_true")
    args = p.parse_args(argv)
    print_header("daskgen actor streams")
    busy_warning()
    t0 = time.perf_counter()
    dg = run_dask(args)
    ray = None if args.no_ray else try_import_ray()
    rr = run_ray(ray, args) if ray is not None else {}
    n = args.items
    fn = dg["function"][0]
    rows = []
    for name in ("function", "actor, sync method", "actor, async method"):
        total, first = dg[name]
        r_total, r_first = rr.get(name, (None, None))
        rows.append(
            [
                name,
                fmt_time(total / n),
                fmt_time(first),
                fmt_ratio(ratio(total, fn)),
                fmt_ratio(ratio(total, dg["bare loop"][0])),
                fmt_time(r_total / n) if r_total else "-",
                fmt_time(r_first) if r_first else "-",
                fmt_ratio(ratio(total, r_total)),
            ]
        )
    print(f"\n{n} tiny items per stream, median of {args.repeat}\n")
    print_table(
        [
            "stream",
            "daskgen per yield",
            "daskgen first item",
            "/ function stream",
            "/ bare loop",
            "Ray per yield",
            "Ray first item",
            "daskgen / Ray",
        ],
        rows,
    )
    print(
        f"\nbare loop: {fmt_time(dg['bare loop'][0] / n)} per item (client.submit of the loop)"
    )
    if not rr:
        print("Ray columns are empty: Ray was not importable or --no-ray was given.")
    print(f"total benchmark time: {time.perf_counter() - t0:.0f} s")
    busy_warning()


if __name__ == "__main__":
    main()
