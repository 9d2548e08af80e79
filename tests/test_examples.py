"""The examples, as users run them, at a small scale."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples")


def run(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, script), *args],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_large_values_demo():
    out = run(
        "large_values.py",
        "--num-returns",
        "8",
        "--item-mb",
        "40",
        "--memory-limit",
        "300MiB",
    )
    lines = out.splitlines()
    assert "Worker failed with normal function" in lines
    assert "Success!" in lines
    prints = [ln for ln in lines if ln.startswith("(large_values_generator pid=")]
    assert [ln.split(") ", 1)[1] for ln in prints] == [
        f"yielded return value {i}" for i in range(8)
    ]
    assert lines.index("Using generators...") < lines.index(prints[0])


def test_stream_array_small():
    out = run("stream_array.py", "--small")
    assert ": match" in out
    assert "peak worker RSS" in out


def test_actor_stream():
    out = run("actor_stream.py", "--requests", "3", "--tokens", "8")
    lines = out.splitlines()
    served = [ln for ln in lines if ln.startswith("request ")]
    assert len(served) == 3
    for ln in served:
        assert ": 8 tokens, first after " in ln and "tokens/s" in ln
    # one actor: the three requests stream from it at once
    assert "3 concurrent requests, 24 tokens in" in out
    assert lines[-1] == "the actor served 3 requests"
