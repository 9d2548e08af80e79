"""One large array streamed in chunks, as a Dask array, on a small worker.

A generator produces a 2 GB array in 100 MB chunks on a worker whose memory
limit is 1 GiB. Every chunk is its own Future, stored (and spilled) on that
worker; ``daskgen.as_array`` turns them into a dask array whose graph refers
to the chunks in place, and a reduction runs where they live. The result is
checked against numpy on the same data.

    python examples/stream_array.py            # 2 GB in 100 MB chunks, 1 GiB worker
    python examples/stream_array.py --small    # 160 MB in 8 MB chunks, 256 MiB worker
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _peak import PeakRSS, spilled_bytes
from dask.utils import format_bytes, parse_bytes
from distributed import Client, LocalCluster, wait

import daskgen


def chunk(i: int, rows: int, cols: int) -> np.ndarray:
    return np.random.default_rng(i).standard_normal((rows, cols), dtype=np.float32)


def chunks(n: int, rows: int, cols: int):
    for i in range(n):
        yield chunk(i, rows, cols)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--total", default="2GB")
    p.add_argument("--chunk", default="100MB")
    p.add_argument("--memory-limit", default="1GiB")
    p.add_argument("--small", action="store_true", help="160 MB in 8 MB chunks")
    args = p.parse_args(argv)
    if args.small:
        args.total, args.chunk, args.memory_limit = "160MB", "8MB", "256MiB"
    cols = 1000
    rows = parse_bytes(args.chunk) // (4 * cols)
    n = parse_bytes(args.total) // (rows * cols * 4)
    print(
        f"{n} chunks of {format_bytes(rows * cols * 4)} "
        f"({format_bytes(n * rows * cols * 4)}) on a worker with "
        f"memory_limit={args.memory_limit}"
    )
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            memory_limit=args.memory_limit,
            processes=True,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        t0 = time.time()
        with PeakRSS() as rss:
            refs = daskgen.submit(chunks, n, rows, cols, num_returns=n)
            wait(refs)
            x = daskgen.as_array(refs, axis=0)
            print(f"dask array {x.shape} {x.dtype}, {x.numblocks[0]} chunks")
            total, sq = client.compute(
                [x.sum(dtype=np.float64), (x**2).sum(dtype=np.float64)]
            )
            total, sq = total.result(), sq.result()
        elapsed = time.time() - t0
        spilled = spilled_bytes(client)
        del refs, x

    expected = sum(chunk(i, rows, cols).sum(dtype=np.float64) for i in range(n))
    expected_sq = sum(
        (chunk(i, rows, cols).astype(np.float64) ** 2).sum() for i in range(n)
    )
    ok = np.isclose(total, expected, rtol=1e-6) and np.isclose(
        sq, expected_sq, rtol=1e-6
    )
    print(
        f"sum {total:.6g} (numpy {expected:.6g}), sum of squares {sq:.6g} "
        f"(numpy {expected_sq:.6g}): {'match' if ok else 'MISMATCH'}"
    )
    print(
        f"peak worker RSS {format_bytes(rss.peak)} (limit {args.memory_limit}), "
        f"spilled {format_bytes(spilled)}, {elapsed:.1f} s"
    )
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
