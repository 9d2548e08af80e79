"""A short chaos soak: benchmarks/soak.py's core for 45 s with 4 workers.

Concurrent daskgen calls of every mode (streaming with and without
backpressure, held, dropped and cancelled streams, static, dynamic; sync and
async generators) while a worker process is SIGKILLed every 1-5 s. Every
item must arrive exactly once with its value, every call must survive
(max_retries=10), and the cluster must be left with nothing and a valid state.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


def load_soak():
    """Import benchmarks/soak.py as ``soak``. Its directory goes on sys.path,
    which the workers' processes inherit (multiprocessing spawn), so they can
    import its task functions by reference too."""
    if str(SOAK.parent) not in sys.path:
        sys.path.insert(0, str(SOAK.parent))
    return importlib.import_module("soak")


def test_soak():
    soak = load_soak()
    R = soak.run(0.75, workers=4, seed=20261201, call_budget=90.0)
    summary = {
        k: R[k]
        for k in (
            "calls_total", "calls_ok", "calls_failed", "items_total", "kills",
            "reruns", "lost", "duplicates", "corrupt", "leftovers",
            "validate_final", "hung_consumers",
        )
    }  # fmt: skip
    detail = (
        f"{summary}\nfailures: {R['failure_reasons']}\nproblems: {R['problems']}\n"
        f"left on the scheduler: {R['leftover_scheduler']}\n"
        f"left on the workers: {R['leftover_workers']}"
    )
    assert R["lost"] == 0, detail
    assert R["duplicates"] == 0, detail
    assert R["corrupt"] == 0, detail
    assert R["calls_failed"] == 0, detail
    assert not R["hung_consumers"], detail
    assert R["leftover_scheduler"].get("tasks") == 0, detail
    assert R["leftover_scheduler"].get("generators") == 0, detail
    assert not R["leftover_scheduler"].get("pseudo_clients"), detail
    assert not R["leftover_workers"], detail
    assert R["leftovers"] == 0, detail
    assert R["validate_final"] == "ok", detail
    assert not R["validation_failures_during"], detail
    assert all(v == "ok" for v in R["validate_workers"].values()), detail
    # the chaos happened, and every mode ran through it
    assert R["kills"] >= 4, detail
    assert all(R["ok"][m] >= 1 for m in soak.MODES), (R["ok"], detail)
    assert not soak.failures(R), detail
