"""Shared helpers of the daskgen benchmarks (tables, timing, RSS sampling, clusters).

Task functions do not live here: the benchmark scripts define them so that
cloudpickle ships them by value to Dask and Ray workers, which cannot import
this module.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cloudpickle
import psutil

# Workers and separately started schedulers cannot import this module: ship
# its functions (e.g. those given to run_on_scheduler) by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

REPO = Path(__file__).resolve().parent.parent
MiB = 2**20


# ---------------------------------------------------------------------- versions


def try_import_ray() -> Any:
    """The ray module, or None if it cannot be imported."""
    try:
        import ray
    except Exception:  # noqa: BLE001 - any import problem means "no Ray"
        return None
    return ray


def versions() -> dict[str, str]:
    import dask
    import distributed
    import numpy

    import daskgen

    out = {
        "python": platform.python_version(),
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "numpy": numpy.__version__,
        "daskgen": getattr(daskgen, "__version__", "?"),
    }
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "daskgen"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        if rev:
            out["daskgen"] += f" (git {rev}{'+dirty' if dirty else ''})"
    except Exception:  # noqa: BLE001
        pass
    ray = try_import_ray()
    out["ray"] = ray.__version__ if ray is not None else "not installed"
    return out


def machine() -> str:
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, "
        f"load avg {' '.join(f'{x:.2f}' for x in os.getloadavg())} at start"
    )


_start_load = os.getloadavg()[0]


def busy_warning(limit: float = 1.0) -> None:
    """Say so when other processes competed for the CPUs during the run.

    The benchmark itself keeps about one to two cores busy; a 1-minute load
    average well above that at the start or the end means something else ran.
    """
    start, end = _start_load, os.getloadavg()[0]
    if start > limit or end > 2.5:
        print(
            f"WARNING: the machine was busy (load {start:.2f} at the start, "
            f"{end:.2f} at the end): other processes competed for the CPUs, so "
            "times and ratios are less reliable than usual."
        )


def print_header(title: str) -> None:
    print(f"# {title}")
    print(f"machine: {machine()}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    print(flush=True)


# ------------------------------------------------------------------------ timing


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def repeat(fn: Callable[[], float], n: int) -> float:
    """Median of ``n`` calls of ``fn`` (each returns a measurement)."""
    return median([fn() for _ in range(max(1, n))])


def fmt_time(s: float | None) -> str:
    if s is None or s != s:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def fmt_ratio(x: float | None) -> str:
    if x is None or x != x:
        return "-"
    return f"{x:.2f}x"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a != a or b != b or b == 0:
        return None
    return a / b


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Markdown table (readable in a terminal, pasteable into docs)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return (
            "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
        )

    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells[1:]:
        print(line(r))
    print(flush=True)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------- RSS sampling


class RSSSampler:
    """Sample the RSS of some processes every ``interval`` seconds in a thread.

    ``procs`` returns the processes to sample; it is called again every
    ``refresh`` seconds (so it can discover Ray workers that start later).
    ``peak`` is the highest RSS of any single process seen; ``peak_private``
    the highest RSS minus its shared pages (shared libraries and mapped
    shared memory, e.g. Ray's object store); ``last`` the RSS of each process
    at its last sample (its size when it died, if it did).
    """

    def __init__(
        self,
        procs: Callable[[], list[psutil.Process]],
        interval: float = 0.02,
        refresh: float = 0.5,
    ) -> None:
        self._procs_fn = procs
        self.interval = interval
        self.refresh = refresh
        self.peak = 0
        self.peak_private = 0
        self.last: dict[int, int] = {}
        self.died: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss")

    def _run(self) -> None:
        procs: list[psutil.Process] = []
        next_refresh = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_refresh:
                with contextlib.suppress(Exception):
                    procs = self._procs_fn()
                next_refresh = now + self.refresh
            for p in procs:
                if p.pid in self.died:
                    continue
                try:
                    mi = p.memory_info()
                except (
                    psutil.NoSuchProcess,
                    psutil.ZombieProcess,
                    psutil.AccessDenied,
                ):
                    self.died.add(p.pid)
                    continue
                if mi.rss == 0:  # exiting: its memory is already torn down
                    continue
                self.last[p.pid] = mi.rss
                self.peak = max(self.peak, mi.rss)
                self.peak_private = max(self.peak_private, mi.rss - mi.shared)
            self._stop.wait(self.interval)

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def ray_worker_procs() -> list[psutil.Process]:
    """Ray task worker processes started under this process (``ray::...``)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if p.name().startswith("ray::") or (
                p.cmdline() and p.cmdline()[0].startswith("ray::")
            ):
                out.append(p)
    return out


# ---------------------------------------------------------------- Dask clusters


def wait_idle(client: Any, timeout: float = 30.0) -> bool:
    """Wait until the scheduler holds no task; False (and a log line) on timeout.

    Erred tasks are not counted: they hold no data, and distributed keeps a
    Future whose ``result()`` raised alive (its stored exception's traceback
    references the frames that held it), so their keys can linger.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.run_on_scheduler(_n_tasks) == 0:
            return True
        time.sleep(0.02)
    left = client.run_on_scheduler(_task_states)
    log(f"WARNING: scheduler not idle after {timeout} s: {left}")
    return False


def _n_tasks(dask_scheduler: Any) -> int:
    return sum(ts.state != "erred" for ts in list(dask_scheduler.tasks.values()))


def _task_states(dask_scheduler: Any) -> dict[str, str]:
    tasks = [
        (k, ts) for k, ts in list(dask_scheduler.tasks.items()) if ts.state != "erred"
    ]
    return {str(k): ts.state for k, ts in tasks[:10]}


@contextlib.contextmanager
def subprocess_cluster(
    n_workers: int, nthreads: int, memory_limit: str
) -> Iterator[tuple[str, psutil.Process]]:
    """A scheduler and nanny-managed workers, each in its own process.

    Unlike LocalCluster (whose scheduler shares the client's process and event
    loop), this lets the scheduler's CPU time be measured on its own. Yields
    ``(address, scheduler process)``; stops only the processes it started.
    """
    tmp = tempfile.mkdtemp(prefix="daskgen-bench-")
    sched_file = os.path.join(tmp, "scheduler.json")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            subprocess.Popen(
                [
                    sys.executable, "-m", "distributed.cli.dask_scheduler",
                    "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                    "--scheduler-file", sched_file,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=tmp,
            )
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not os.path.exists(sched_file):
            if time.monotonic() > deadline or procs[0].poll() is not None:
                raise RuntimeError("dask scheduler did not start")
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written in one go, but be safe
        import json

        with open(sched_file) as f:
            address = json.load(f)["address"]
        procs.append(
            subprocess.Popen(
                [
                    sys.executable, "-m", "distributed.cli.dask_worker", address,
                    "--nworkers", str(n_workers), "--nthreads", str(nthreads),
                    "--memory-limit", memory_limit, "--nanny", "--no-dashboard",
                    "--local-directory", tmp,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=tmp,
            )
        )  # fmt: skip
        yield address, psutil.Process(procs[0].pid)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
