"""The machine's floor for large yields: np.ones with and without earlier items alive.

No Dask, no Ray: one process builds 20 arrays of 100 MiB, as the generator of
bench_yield's (d) does, and

- ``bare``: drops each array before building the next (the bare loop of (d));
- ``held k``: hands each array to a second thread that keeps the last ``k``
  alive (any consumer of yields keeps an item alive while the next is built;
  daskgen keeps about one: the item travels to the caller and its release
  back while the generator builds the next).

It prints the total time of each, its ratio to ``bare``, and the slowest single
``np.ones``. On this machine a process that grows into memory it has not used
recently pays for it page by page (single ``np.ones`` calls of 100-240 ms
instead of ~11 ms), which is why (d) swings between runs.

Run::

    python benchmarks/bench_alloc.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import queue
import threading
import time

import numpy as np

MiB = 2**20


def bare(n: int, mib: int) -> list[float]:
    stamps = []
    for _ in range(n):
        t0 = time.perf_counter()
        a = np.ones(mib * MiB // 8)
        stamps.append(time.perf_counter() - t0)
        del a
    return stamps


def held(n: int, mib: int, keep: int) -> list[float]:
    q: queue.Queue[np.ndarray | None] = queue.Queue()

    def consumer() -> None:
        alive: list[np.ndarray] = []
        while (x := q.get()) is not None:
            alive.append(x)
            del alive[:-keep]
        alive.clear()

    th = threading.Thread(target=consumer)
    th.start()
    stamps = []
    for _ in range(n):
        t0 = time.perf_counter()
        a = np.ones(mib * MiB // 8)
        stamps.append(time.perf_counter() - t0)
        q.put(a)
        del a
    q.put(None)
    th.join()
    return stamps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--mib", type=int, default=100)
    args = p.parse_args()
    variants = {"bare": lambda: bare(args.n, args.mib)}
    for k in (1, 3):
        variants[f"held {k}"] = lambda k=k: held(args.n, args.mib, k)
    runs: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for _ in range(args.repeat):  # interleaved, so that drift hits all alike
        for name, f in variants.items():
            t0 = time.perf_counter()
            stamps = f()
            runs[name].append((time.perf_counter() - t0, max(stamps)))
    base = sorted(t for t, _ in runs["bare"])[args.repeat // 2]
    print(f"{args.n} x np.ones({args.mib} MiB), {args.repeat} runs each, interleaved")
    print("| loop | median | /bare | each run (ms) | slowest np.ones per run (ms) |")
    print("|---|---|---|---|---|")
    for name, rs in runs.items():
        med = sorted(t for t, _ in rs)[args.repeat // 2]
        each = " ".join(f"{t * 1e3:.0f}" for t, _ in rs)
        worst = " ".join(f"{m * 1e3:.0f}" for _, m in rs)
        print(f"| {name} | {med * 1e3:.0f} ms | {med / base:.2f}x | {each} | {worst} |")


if __name__ == "__main__":
    main()
