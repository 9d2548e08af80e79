"""daskgen on several "hosts": Linux network namespaces joined by a bridge.

Each host is a network namespace with its own IPv4 address, joined to a Linux
bridge by a veth pair (``tests/_netns.py``)::

    test process (bridge dgmh-<pid>-br) 10.213.0.1/24
      s  10.213.0.10  dask scheduler --preload daskgen, port 8786
      a  10.213.0.11  dask worker --nanny (1 thread, 300 MiB)
      b  10.213.0.12  dask worker --nanny
      c  10.213.0.13  dask worker --nanny
      k  10.213.0.20  a client process (test_stream_client_in_own_namespace)
      xs/xa/xb 10.213.0.30-32  a second cluster, for the network cut

The subnet exists only inside this machine: no namespace has a default route
and IP forwarding is left off, so traffic only goes between the namespaces and
the host end of the bridge. Processes are started as a deployment starts them
(``ip netns exec NS dask scheduler ...`` / ``dask worker ...``); the test
process talks to the cluster through the bridge's own address, except the
first test, whose client runs as a separate process inside namespace ``k``.

Links: ``tbf rate 100mbit burst 128kb latency 100ms`` on both ends of every
veth (so each direction of each link is limited to 100 Mbit/s). **No added
latency**: this kernel has no ``netem`` (nor ``fq``, ``fq_codel``, ``cake``,
``sfq``, ``codel``, ``pie``, ``etf``, ``taprio``; the ``gact`` and ``bpf`` tc
actions are not built either, only htb/tbf/ingress/fifo qdiscs), so there is
no qdisc or action that delays packets; only the rate limit is applied
here. On a kernel with netem, every link gets ``netem delay 2ms rate 100mbit``
instead (a 4 ms round trip between any two hosts), and the tests say so.
``test_static_items_move_between_hosts`` checks that the limit is in force.

Needs root, iproute2 and network namespaces; skipped with the reason
otherwise. Every namespace, link and process is removed by the ``net``
fixture's finalizer, also when a test fails; leftovers of crashed earlier runs
(``dgmh-<pid>-*`` whose pid is gone) are removed at the start. Generators are
gated with ``distributed.Event``, never with sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _netns  # tests/_netns.py (tests/ is on sys.path, as for every test module)
import pytest
from _diag import scheduler_states  # tests/ is on sys.path
from _helpers import assert_clean, wait_until
from distributed import Client, Event, KilledWorker, get_worker, wait

import daskgen

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

DASK = str(Path(sys.executable).with_name("dask"))
PORT = 8786
MiB = 2**20


# ------------------------------------------------------------------ helpers


def _skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "needs Linux network namespaces"
    if os.geteuid() != 0:
        return "needs root to create network namespaces, veths and a bridge"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"needs iproute2 ({tool!r} not found)"
    if not Path(DASK).exists():
        return f"the dask command line is not at {DASK}"
    return None


def _probe_netns() -> str | None:
    probe = f"{_netns.PREFIX}{os.getpid()}-probe"
    p = subprocess.run(
        ["ip", "netns", "add", probe], capture_output=True, text=True, check=False
    )
    if p.returncode:
        return f"cannot create a network namespace: {p.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def process_env(**extra: str) -> dict[str, str]:
    """The environment of the scheduler, workers and client processes: they
    import this module's functions by reference, as a deployment imports the
    user's code, so they get this interpreter's sys.path."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
        DASK_DISTRIBUTED__SCHEDULER__VALIDATE="True",
        DASK_DISTRIBUTED__WORKER__VALIDATE="True",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Cluster:
    """A scheduler and workers, each started with ``ip netns exec`` in its host."""

    def __init__(
        self,
        net: _netns.Net,
        sched: _netns.Host,
        workers: list[_netns.Host],
        env: dict[str, str],
    ):
        self.net = net
        self.sched = sched
        self.workers = workers
        self.env = env
        self.address = f"tcp://{sched.ip}:{PORT}"
        self.procs = [
            sched.start(
                f"scheduler-{sched.tag}",
                [
                    DASK, "scheduler", "--host", sched.ip, "--port", str(PORT),
                    "--preload", "daskgen", "--dashboard-address", ":0",
                ],
                env,
            )
        ]  # fmt: skip
        self._wait_port(sched.ip, PORT, self.procs[0])
        for h in workers:
            self.procs.append(
                h.start(
                    f"worker-{h.tag}",
                    [
                        DASK, "worker", self.address, "--host", h.ip,
                        "--name", h.tag, "--nworkers", "1", "--nthreads", "1",
                        "--memory-limit", "300MiB", "--nanny",
                        "--dashboard-address", ":0",
                    ],
                    env,
                )
            )  # fmt: skip
        self.client = Client(self.address, timeout=30)
        try:
            self.client.wait_for_workers(len(workers), timeout=40)
        except TimeoutError as e:
            self.client.close(timeout=10)
            raise AssertionError(
                f"{len(workers)} workers did not join {self.address}: {e}\n"
                + self.logs()
            ) from None

    def _wait_port(self, ip: str, port: int, proc: _netns.Proc) -> None:
        def up() -> bool:
            assert proc.popen.poll() is None, f"{proc.name} exited:\n{proc.tail()}"
            with socket.socket() as s:
                s.settimeout(1)
                return s.connect_ex((ip, port)) == 0

        wait_until(up, lambda: f"scheduler not listening on {ip}:{port}\n{proc.tail()}")

    def logs(self, lines: int = 40) -> str:
        return "\n".join(p.tail(lines) for p in self.procs)

    def worker_on(self, host: _netns.Host) -> str:
        """The address of the (current) worker of ``host``."""
        addrs = [
            a for a in worker_addrs(self.client) if a.startswith(f"tcp://{host.ip}:")
        ]
        assert len(addrs) == 1, f"workers on {host}: {addrs}"
        return addrs[0]

    def close(self) -> None:
        self.client.close(timeout=10)
        for p in reversed(self.procs):
            p.stop()


def task_states(dask_scheduler: Any, keys: list[Any]) -> list[str | None]:
    """The scheduler's state of each of ``keys`` (None: it has no such task)."""
    return [
        ts.state if (ts := dask_scheduler.tasks.get(k)) is not None else None
        for k in keys
    ]


def worker_addrs(client: Client) -> list[str]:
    """The workers the scheduler knows now."""
    return client.run_on_scheduler(
        lambda dask_scheduler: sorted(dask_scheduler.workers)
    )


def where(x: Any) -> tuple[Any, str]:
    return x, get_worker().address


def describe(item: tuple[str, bytes]) -> tuple[str, int, bytes, bytes, str]:
    made_on, x = item
    return made_on, len(x), x[:1], x[-1:], get_worker().address


def total_len(items: list[tuple[str, bytes]]) -> int:
    return sum(len(x) for _, x in items)


def blobs(n: int, size: int) -> Iterator[tuple[str, bytes]]:
    """n values of ``size`` bytes, each with the address it was made on."""
    addr = get_worker().address
    for i in range(n):
        yield addr, bytes([i]) * size


def gate(event_name: str) -> None:
    if not Event(event_name).wait(timeout=45):
        raise RuntimeError(f"gate {event_name!r} was not opened within 45 s")


def gated_static(n: int, event_name: str) -> Iterator[tuple[int, str]]:
    """Yield 0, wait for the Event, then 10, 20, ...; each with the address
    it was made on."""
    addr = get_worker().address
    yield 0, addr
    gate(event_name)
    for i in range(1, n):
        yield i * 10, addr


def gated_stream(n: int, k: int, event_name: str) -> Iterator[int]:
    """Yield k items, wait for the Event, then the rest (values i * 10)."""
    for i in range(n):
        if i == k:
            gate(event_name)
        yield i * 10


def take(gen: Any, n: int, timeout: float = 30) -> list[Any]:
    """The next ``n`` item Futures of a stream, each within ``timeout``."""
    futs = []
    for i in range(n):
        try:
            futs.append(gen.next(timeout=timeout))
        except daskgen.StreamTimeoutError:
            raise AssertionError(
                f"item {len(futs)} of {gen!r} not yielded within {timeout} s "
                f"({i} of {n} taken in this call)"
            ) from None
    return futs


def gather(client: Client, futs: list[Any], timeout: float = 30) -> list[Any]:
    """``client.gather``, failing if not all are done within ``timeout``."""
    try:
        wait(futs, timeout=timeout)
    except TimeoutError:
        raise AssertionError(
            f"Futures not done within {timeout} s, of {len(futs)}: "
            f"{scheduler_states(client, futs)}"
        ) from None
    return client.gather(futs)


def take_rest(gen: Any, timeout: float = 30) -> list[Any]:
    futs = []
    while True:
        try:
            futs.append(gen.next(timeout=timeout))
        except StopIteration:
            return futs
        except daskgen.StreamTimeoutError:
            raise AssertionError(
                f"{gen!r}: neither an item nor the end within {timeout} s "
                f"after {len(futs)} more items"
            ) from None


# ----------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_netns.Net]:
    reason = _skip_reason() or _probe_netns()
    if reason:
        pytest.skip(reason)
    stale = _netns.remove_stale()
    if stale:
        print(f"removed leftovers of earlier runs: {stale}")
    in_use = _netns.subnet_in_use()
    if in_use:
        pytest.skip(f"test subnet {_netns.SUBNET} is already in use here: {in_use}")
    logdir = tmp_path_factory.mktemp("multihost-logs")
    try:
        n = _netns.Net(logdir)
    except RuntimeError as e:
        _netns.run("ip", "link", "del", f"{_netns.PREFIX}{os.getpid()}-br", check=False)
        pytest.skip(f"cannot create a bridge: {e}")
    try:
        yield n
    finally:
        problems = n.close()
        assert not problems, problems


@pytest.fixture(scope="module")
def hosts(net: _netns.Net) -> dict[str, _netns.Host]:
    for tag, ip in [
        ("s", "10.213.0.10"),
        ("a", "10.213.0.11"),
        ("b", "10.213.0.12"),
        ("c", "10.213.0.13"),
        ("k", "10.213.0.20"),
    ]:
        net.add_host(tag, ip)
    return net.hosts


@pytest.fixture(scope="module")
def cluster(net: _netns.Net, hosts: dict[str, _netns.Host]) -> Iterator[Cluster]:
    c = Cluster(
        net, hosts["s"], [hosts["a"], hosts["b"], hosts["c"]], env=process_env()
    )
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def gates() -> Iterator[Callable[[Client, str], tuple[str, Event]]]:
    """Make gate Events (``gates(client, prefix)`` -> name, Event); each is
    set at the end of the test, so a failed test leaves no generator waiting."""
    made: list[Event] = []

    def make(client: Client, prefix: str) -> tuple[str, Event]:
        name = f"{prefix}-{uuid.uuid4().hex}"
        made.append(Event(name, client=client))
        return name, made[-1]

    yield make
    for ev in made:
        with contextlib.suppress(Exception):
            ev.set()


@pytest.fixture
def logs_on_failure(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster; its processes' logs are in the report of a failed test."""
    yield cluster
    print(cluster.logs())


# -------------------------------------------------------------------- tests

CLIENT_SCRIPT = r"""
import json, sys
from distributed import Client, get_worker
import daskgen

def squares(n):
    addr = get_worker().address
    for i in range(n):
        yield i * i, addr

def total(pairs):
    return sum(v for v, _ in pairs), get_worker().address

def peer(dask_scheduler, cid):
    return dask_scheduler.client_comms[cid].comm.peer_address

sched, host_a, host_b, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with Client(sched, timeout=30) as c:
    gen = daskgen.submit(squares, n, workers=[host_a])
    futs, values = [], []
    for f in gen:
        futs.append(f)
        values.append(f.result(timeout=30))
    out = {
        "client_peer": c.run_on_scheduler(peer, cid=c.id),
        "keys": [list(f.key) for f in futs],
        "values": values,
        "who_has": {str(k): v for k, v in c.who_has(futs).items()},
        "total_on_b": c.submit(total, futs, workers=[host_b]).result(timeout=30),
    }
    print("RESULT " + json.dumps(out), flush=True)
"""


def test_stream_client_in_own_namespace(logs_on_failure, tmp_path):
    """Check 1: a client process in its own namespace streams from a generator
    on host A; it takes every item, and a task on host B sums them all."""
    cl = logs_on_failure
    a, b, k = (cl.net.hosts[t] for t in "abk")
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    n = 40
    args = k.exec_args([sys.executable, str(script), cl.address, a.ip, b.ip, str(n)])
    try:
        p = subprocess.run(
            args, capture_output=True, text=True, timeout=50, env=cl.env, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(
            f"the client in namespace {k.ns} did not finish within 50 s; "
            f"output: {e.stdout!r} {e.stderr!r}"
        ) from None
    lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    assert p.returncode == 0 and lines, (
        f"client in {k.ns} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    )
    out = json.loads(lines[-1][len("RESULT ") :])
    # the client really talked to the scheduler from its own host
    assert out["client_peer"].startswith(f"tcp://{k.ip}:"), out["client_peer"]
    assert [i for _, i in out["keys"]] == list(range(n))
    assert len({p for p, _ in out["keys"]}) == 1
    assert [v for v, _ in out["values"]] == [i * i for i in range(n)]
    # every item was produced on host A, and stays there
    assert {addr.rsplit(":", 1)[0] for _, addr in out["values"]} == {f"tcp://{a.ip}"}
    for key, addrs in out["who_has"].items():
        assert any(x.startswith(f"tcp://{a.ip}:") for x in addrs), (key, addrs)
    total, where_b = out["total_on_b"]
    assert total == sum(i * i for i in range(n))
    assert where_b.startswith(f"tcp://{b.ip}:")


def test_static_items_move_between_hosts(logs_on_failure):
    """Check 2: static items made on host A are fetched by tasks pinned to
    host B (over the rate-limited links) and used there."""
    cl = logs_on_failure
    c = cl.client
    a, b = cl.net.hosts["a"], cl.net.hosts["b"]
    n, size = 4, 8 * MiB
    start = time.monotonic()
    items = daskgen.submit(blobs, n, size, num_returns=n, workers=[a.ip])
    uses = [c.submit(describe, f, workers=[b.ip], pure=False) for f in items]
    both = c.submit(total_len, items, workers=[b.ip], pure=False)
    got = gather(c, uses + [both])
    elapsed = time.monotonic() - start
    *described, total = got
    addr_a = cl.worker_on(a)
    for i, (made_on, length, first, last, used_on) in enumerate(described):
        assert (length, first, last) == (size, bytes([i]), bytes([i])), i
        assert made_on == addr_a, (i, made_on)
        assert used_on.startswith(f"tcp://{b.ip}:"), (i, used_on)
    assert total == n * size
    # (who_has is not checked: Dask's active memory manager may drop A's copy)
    if cl.net.shaping.startswith("tbf"):
        # 32 MiB from A to B over 100 Mbit/s take at least 2.7 s
        assert elapsed > 2.0, (
            f"32 MiB moved in {elapsed:.2f} s: the rate limit is not in force"
        )
    print(
        f"links: {cl.net.shaping}; delay qdisc: {cl.net.delay or 'none available'}; "
        f"32 MiB moved A -> B in {elapsed:.2f} s"
    )
    del items, uses, both


def test_unproduced_static_item_dependency_on_third_host(logs_on_failure, gates):
    """Check 3: a task on host C depends on a static item not yet produced on
    host A; it waits, and runs once the item is yielded."""
    cl = logs_on_failure
    c = cl.client
    a, cc = cl.net.hosts["a"], cl.net.hosts["c"]
    name, ev = gates(c, "mh-dep")
    items = daskgen.submit(gated_static, 3, name, num_returns=3, workers=[a.ip])
    dep = c.submit(where, items[1], workers=[cc.ip], pure=False)
    # item 0 is there, so the generator runs and waits at the gate
    addr_a = cl.worker_on(a)
    assert items[0].result(timeout=30) == (0, addr_a)
    # the scheduler has the dependent task (its submission may still be on
    # its way: run_on_scheduler can overtake the client's batched stream)
    keys = [dep.key, items[1].key]

    def known() -> list[str | None] | None:
        states = c.run_on_scheduler(task_states, keys=keys)
        return states if states[0] is not None else None

    states = wait_until(known, f"the scheduler never got the task {dep.key!r}")
    # the item is not produced yet: released, or waiting now that a task needs it
    assert states[0] == "waiting" and states[1] in ("released", "waiting"), states
    assert dep.status == "pending" and items[1].status == "pending"
    ev.set()
    value, ran_on = dep.result(timeout=30)
    assert value == (10, addr_a)
    assert ran_on.startswith(f"tcp://{cc.ip}:"), ran_on
    assert gather(c, items) == [(0, addr_a), (10, addr_a), (20, addr_a)]
    del items, dep


def test_worker_sigkilled_mid_stream(logs_on_failure, gates):
    """Check 4: the worker on host A is SIGKILLed inside its namespace while
    its generator waits at a gate; the call re-runs, and the stream gives
    every item once, in order, with the right values."""
    cl = logs_on_failure
    c = cl.client
    a = cl.net.hosts["a"]
    name, ev = gates(c, "mh-kill")
    n, k = 30, 5
    gen = daskgen.submit(
        gated_stream, n, k, name,
        workers=[a.ip], allow_other_workers=True, max_retries=2,
    )  # fmt: skip
    first = take(gen, k)
    assert [f.result(timeout=30) for f in first] == [i * 10 for i in range(k)]
    victim = c.run_on_scheduler(
        lambda dask_scheduler, key=gen.key: (
            dask_scheduler.tasks[key].processing_on.address
        )
    )
    assert victim == cl.worker_on(a), victim
    pid = c.run(os.getpid, workers=[victim])[victim]
    assert _netns.run("ip", "netns", "identify", str(pid)).strip() == a.ns
    a.run("kill", "-KILL", str(pid))
    wait_until(
        lambda: victim not in worker_addrs(c),
        f"the scheduler still lists the killed worker {victim}",
    )
    ev.set()
    rest = take_rest(gen)
    futs = first + rest
    keys = [f.key for f in futs]
    assert len(set(keys)) == len(keys) == n, keys
    assert [i for _, i in keys] == list(range(n))
    # the items lost with A (0 .. k-1) are rebuilt; the others are fine
    assert gather(c, futs) == [i * 10 for i in range(n)]
    del gen, first, rest, futs


def test_nothing_left_afterwards(logs_on_failure):
    """Check 6 (runs after checks 1-4 on the same cluster): no task, no
    daskgen generator state, no daskgen-* pseudo-client, no stored value."""
    cl = logs_on_failure
    c = cl.client
    got = gather(c, daskgen.submit(blobs, 2, 10, num_returns=2))
    assert [x for _, x in got] == [b"\x00" * 10, b"\x01" * 10]
    assert_clean(c)


@pytest.fixture
def cut_cluster(net: _netns.Net) -> Iterator[Cluster]:
    """A second cluster (its own three hosts) with short network timeouts."""
    hosts = [
        net.add_host(tag, ip)
        for tag, ip in [
            ("xs", "10.213.0.30"),
            ("xa", "10.213.0.31"),
            ("xb", "10.213.0.32"),
        ]
    ]
    # distributed asserts timeouts.tcp >= 11 s (10 keepalive probes + 1)
    env = process_env(
        DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP="12s",
        DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="5s",
        DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL="5s",
    )
    cl = None
    try:
        cl = Cluster(net, hosts[0], hosts[1:], env)
        yield cl
        print(cl.logs())
    finally:
        if cl is not None:
            cl.close()
        for h in hosts:
            net.remove_host(h.tag)


@pytest.mark.parametrize("max_retries", [1, 0], ids=["retry", "no-retry"])
def test_host_cut_off_mid_generator(cut_cluster, max_retries, gates):
    """Check 5: host A's link goes down while its generator waits at a gate.
    With a re-run left the call finishes on host B; without one it fails with
    daskgen's KilledWorker (GeneratorKilledError). Either within a bound: it
    never hangs."""
    cl = cut_cluster
    c = cl.client
    a, b = cl.workers
    name, ev = gates(c, "mh-cut")
    n, k = 20, 4
    gen = daskgen.submit(
        gated_stream, n, k, name,
        workers=[a.ip], allow_other_workers=True, max_retries=max_retries,
    )  # fmt: skip
    first = take(gen, k)
    assert [f.result(timeout=30) for f in first] == [i * 10 for i in range(k)]
    addr_a = cl.worker_on(a)
    assert (
        c.run_on_scheduler(
            lambda dask_scheduler, key=gen.key: (
                dask_scheduler.tasks[key].processing_on.address
            )
        )
        == addr_a
    )
    cut_at = time.monotonic()
    a.cut()
    ev.set()  # only the scheduler and B can hear it now
    bound = 40  # 12 s TCP timeout / 5 s worker TTL, so ~15 s are expected
    deadline = cut_at + bound
    rest: list[Any] = []
    error: BaseException | None = None
    while True:
        try:
            rest.append(gen.next(timeout=max(0.1, deadline - time.monotonic())))
        except StopIteration:
            break
        except daskgen.StreamTimeoutError:
            raise AssertionError(
                f"{gen!r}: neither an item, the end nor an error within {bound} s "
                f"of cutting host A off ({len(rest)} items after the cut)\n" + cl.logs()
            ) from None
        except KilledWorker as e:
            error = e
            break
    if max_retries:
        assert error is None, f"failed although a re-run was left: {error!r}"
        futs = first + rest
        assert [f.key[1] for f in futs] == list(range(n))
        # the items lost with A are rebuilt on B
        values = gather(c, futs, timeout=max(1, deadline - time.monotonic()))
        assert values == [i * 10 for i in range(n)]
        del futs
        outcome = "finished on B"
    else:
        assert isinstance(error, daskgen.GeneratorKilledError), repr(error)
        assert "max_retries=0" in str(error), str(error)
        assert rest == [], rest
        # the items produced on A are lost with it and cannot be rebuilt
        lost = [f.exception(timeout=max(1, deadline - time.monotonic())) for f in first]
        assert all(isinstance(e, daskgen.ItemLostError) for e in lost), lost
        del lost
        outcome = f"failed: {error}"
    took = time.monotonic() - cut_at
    assert took < bound, f"the call ended only {took:.1f} s after the cut"
    print(f"host cut off: {took:.1f} s after the cut, the call {outcome}")
    # A is gone from the scheduler, B is still there
    workers = worker_addrs(c)
    assert addr_a not in workers and cl.worker_on(b) in workers, list(workers)
    del gen, first, rest, error
    assert_clean(c)
