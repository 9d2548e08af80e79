"""Ray's "generators to reduce heap memory" pattern, on Dask with daskgen.

A task that *returns* many large values holds them all at once and is killed
by the worker's nanny for exceeding its memory limit; the same task written as
a generator finishes, because each yielded value is stored (and can be freed
or spilled) before the next one is built. Ray documents this as "Pattern: Using generators to reduce heap memory
usage".

    python examples/large_values.py            # 10 x 50 MB on a 400 MiB worker
    python examples/large_values.py --full     # Ray's size: 100 x 100 MB
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _peak import PeakRSS, spilled_bytes
from dask.utils import format_bytes, parse_bytes
from distributed import Client, KilledWorker, LocalCluster, wait

import daskgen


@daskgen.remote(max_retries=0)
def large_values(num_returns, item_bytes):
    return [
        np.random.randint(np.iinfo(np.int8).max, size=(item_bytes, 1), dtype=np.int8)
        for _ in range(num_returns)
    ]


@daskgen.remote(max_retries=0)
def large_values_generator(num_returns, item_bytes):
    for i in range(num_returns):
        yield np.random.randint(
            np.iinfo(np.int8).max, size=(item_bytes, 1), dtype=np.int8
        )
        daskgen.print(f"yielded return value {i}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-returns", type=int, default=10)
    p.add_argument("--item-mb", type=float, default=50)
    p.add_argument("--memory-limit", default="400MiB")
    p.add_argument(
        "--full",
        action="store_true",
        help="Ray's size: 100 items of 100 MB on a 2 GiB worker",
    )
    args = p.parse_args(argv)
    if args.full:
        args.num_returns, args.item_mb, args.memory_limit = 100, 100, "2GiB"
    num_returns = args.num_returns
    item_bytes = int(args.item_mb * 1e6)
    limit = parse_bytes(args.memory_limit)
    print(
        f"{num_returns} values of {format_bytes(item_bytes)} "
        f"({format_bytes(num_returns * item_bytes)} in all) on one worker "
        f"with memory_limit={format_bytes(limit)}"
    )

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            memory_limit=limit,
            processes=True,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        # Worker will likely OOM using normal returns.
        print("Using normal functions...")
        with PeakRSS() as rss:
            t0 = time.time()
            try:
                large_values.options(num_returns=num_returns).remote(
                    num_returns, item_bytes
                )[0].result()
            except KilledWorker:
                print("Worker failed with normal function")
            else:
                print("Normal function finished (raise --num-returns or --item-mb)")
        print(
            f"  peak worker RSS {format_bytes(rss.peak)} "
            f"(limit {format_bytes(limit)}), {time.time() - t0:.1f} s, "
            f"spilled {format_bytes(spilled_bytes(client))}"
        )

        # Using a generator will allow the worker to finish. The first value
        # is ready as soon as it is yielded (Ray waits for the whole task);
        # we also wait for the last one, so the task has run to its end.
        print("Using generators...")
        client.wait_for_workers(1)
        spilled_before = spilled_bytes(client)
        with PeakRSS() as rss:
            t0 = time.time()
            refs = large_values_generator.options(num_returns=num_returns).remote(
                num_returns, item_bytes
            )
            first, last = refs[0], refs[-1]
            del refs  # the items in between are freed as soon as they exist
            first.result()
            wait(last)
            time.sleep(0.5)  # let the worker's prints arrive
        print("Success!")
        print(
            f"  peak worker RSS {format_bytes(rss.peak)} "
            f"(limit {format_bytes(limit)}), {time.time() - t0:.1f} s, "
            f"spilled {format_bytes(spilled_bytes(client) - spilled_before)}"
        )


if __name__ == "__main__":
    main()
