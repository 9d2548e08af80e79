"""Run the test suite while another process keeps one core busy.

A test that only passes on a quiet machine is a defect: this is how to find
one. It starts one busy-looping process, runs ``python -m pytest`` (with the
arguments given after ``--``) ``--runs`` times in a row, prints each run's
result line and duration, stops the busy process and exits non-zero if any
run failed. Each run's whole output goes to ``--log-dir`` (test-artifacts/),
so a failure that comes once in a while can be read afterwards.

    python benchmarks/loaded_suite.py                 # 3 runs of the whole suite
    python benchmarks/loaded_suite.py --runs 1 -- tests/test_failures.py -x
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

BUSY = "while True: pass"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs in a row (3)")
    parser.add_argument(
        "--log-dir", default="test-artifacts", help="where each run's output goes"
    )
    parser.add_argument("pytest_args", nargs="*", help="arguments for pytest")
    args = parser.parse_args()
    os.makedirs(args.log_dir, exist_ok=True)

    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    failed = 0
    try:
        for run in range(1, args.runs + 1):
            start = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
                + args.pytest_args,
                capture_output=True,
                text=True,
            )
            took = time.monotonic() - start
            log = os.path.join(args.log_dir, f"loaded-run-{run}.log")
            with open(log, "w") as f:
                f.write(proc.stdout + proc.stderr)
            lines = proc.stdout.strip().splitlines()
            summary = lines[-1] if lines else "(no output)"
            print(
                f"run {run}: exit {proc.returncode} in {took:.0f} s: {summary} ({log})"
            )
            if proc.returncode:
                failed += 1
                for line in lines:
                    if line.startswith(("FAILED", "ERROR")):
                        print("   ", line)
            sys.stdout.flush()
    finally:
        busy.kill()
        busy.wait()
    print(f"{args.runs - failed} of {args.runs} runs passed with one core busy")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
