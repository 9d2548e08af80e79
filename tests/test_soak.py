"""A short chaos soak: benchmarks/soak.py's core for 45 s with 4 workers.

Concurrent daskgen calls of every mode (streaming with and without
backpressure, held, dropped and cancelled streams, static, dynamic; sync and
async generators) while a worker process is SIGKILLed every 1-5 s. Every
item must arrive exactly once with its value, every call must survive
(max_retries=10), and the cluster must be left with nothing and a valid state.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


def load_soak():
    name = "daskgen_benchmarks_soak"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # soak.py ships itself by value to the workers
    spec.loader.exec_module(module)
    return module


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
