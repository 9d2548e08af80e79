"""A stateful actor that loads a model once and streams tokens per request.

The pattern of streaming services on Ray (Ray Serve's streaming responses): an
actor holds something expensive to load, and each request is a generator
method whose tokens reach the caller one by one, as they are made. With
daskgen the actor is a Dask actor and every token is a Future stored on the
actor's worker; several callers stream from the one actor at once, each
with ``async for``, and the actor interleaves their requests token by token.

    python examples/actor_stream.py                 # 4 concurrent requests
    python examples/actor_stream.py --requests 8 --tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import time

from distributed import Client, LocalCluster

import daskgen


@daskgen.remote
class TextGenerator:
    """A toy language model: "loads" a vocabulary once, then generates."""

    def __init__(self, vocab_size: int, load_seconds: float) -> None:
        time.sleep(load_seconds)  # the expensive part, done once per actor
        self.vocab = [f"tok{i}" for i in range(vocab_size)]
        self.requests = 0

    async def generate(self, prompt: str, n_tokens: int, token_seconds: float):
        """Stream ``n_tokens`` tokens for ``prompt`` (an async generator method:
        it runs on the worker's event loop, and other requests run while it
        awaits)."""
        self.requests += 1
        offset = sum(map(ord, prompt))
        for i in range(n_tokens):
            await asyncio.sleep(token_seconds)  # the model "thinking"
            yield self.vocab[(offset + i * 7919) % len(self.vocab)]

    def served(self) -> int:
        return self.requests


async def one_request(model, prompt: str, n_tokens: int, token_seconds: float):
    start = time.perf_counter()
    first = None
    tokens = []
    async for fut in model.generate.remote(prompt, n_tokens, token_seconds):
        tokens.append(await fut)
        if first is None:
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    return prompt, tokens, first, total


async def main(args: argparse.Namespace) -> None:
    async with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            memory_limit=args.memory_limit,
            processes=True,
            dashboard_address=":0",
            asynchronous=True,
        ) as cluster,
        Client(cluster, asynchronous=True) as client,
    ):
        t = time.perf_counter()
        model = await TextGenerator.options(client=client).remote(
            args.vocab, args.load_seconds
        )
        print(f"actor {model.key} loaded in {time.perf_counter() - t:.2f} s")
        prompts = [f"request {i}" for i in range(args.requests)]
        t = time.perf_counter()
        results = await asyncio.gather(
            *(one_request(model, p, args.tokens, args.token_seconds) for p in prompts)
        )
        wall = time.perf_counter() - t
        for prompt, tokens, first, total in results:
            print(
                f"{prompt}: {len(tokens)} tokens, first after {first * 1000:.0f} ms, "
                f"{len(tokens) / total:.1f} tokens/s: {' '.join(tokens[:4])} ..."
            )
        n = sum(len(tokens) for _, tokens, _, _ in results)
        print(
            f"{len(results)} concurrent requests, {n} tokens in {wall:.2f} s: "
            f"{n / wall:.1f} tokens/s in all (one request alone would take "
            f"{args.tokens * args.token_seconds:.2f} s)"
        )
        print(f"the actor served {await model.served.remote()} requests")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=4, help="concurrent callers")
    p.add_argument("--tokens", type=int, default=32, help="tokens per request")
    p.add_argument("--token-seconds", type=float, default=0.02)
    p.add_argument("--vocab", type=int, default=5000)
    p.add_argument("--load-seconds", type=float, default=0.5)
    p.add_argument("--memory-limit", default="400MiB")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
