"""Every Python block of the README and the docs runs as written.

Each block is pasted into a file of its own and run with this interpreter, as
a user would, and what it prints is checked where the text says what it
prints. A block that is added without an entry in ``EXPECTED`` fails, so that
whoever adds one says what it prints.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: (file, index of the block in it) -> the lines it prints, in order
EXPECTED = {
    ("README.md", 0): ["30", "0", "10", "20", "30", "40"],
    ("docs/tools.md", 0): ["(4000, 10) 60000"],
}


def blocks() -> list[tuple[str, int, str]]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for i, m in enumerate(re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S)):
            found.append((str(path.relative_to(ROOT)), i, m[1]))
    return found


def test_every_block_has_its_output():
    assert {(f, i) for f, i, _ in blocks()} == set(EXPECTED)


@pytest.mark.parametrize(
    "name, index, code", blocks(), ids=[f"{f}[{i}]" for f, i, _ in blocks()]
)
def test_block_runs_as_written(tmp_path, name, index, code):
    script = tmp_path / "block.py"
    script.write_text(code)
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == EXPECTED[(name, index)], proc.stderr
