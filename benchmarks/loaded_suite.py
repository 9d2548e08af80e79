"""Run the test suite while another process keeps one core busy.

A test that only passes on a quiet machine is a defect: this is how to find
one. It starts one busy-looping process, runs ``python -m pytest`` (with the
arguments given after ``--``) ``--runs`` times in a row, prints each run's
result line and duration, stops the busy process and exits non-zero if any
run failed.

    python benchmarks/loaded_suite.py                 # 3 runs of the whole suite
    python benchmarks/loaded_suite.py --runs 1 -- tests/test_failures.py -x
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

BUSY = "while True: pass"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs in a row (3)")
    parser.add_argument("pytest_args", nargs="*", help="arguments for pytest")
    args = parser.parse_args()

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
            lines = proc.stdout.strip().splitlines()
            summary = lines[-1] if lines else "(no output)"
            print(f"run {run}: exit {proc.returncode} in {took:.0f} s: {summary}")
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
