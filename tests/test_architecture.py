"""The package's module graph: no import cycle, and docs/design.md shows it as it is."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "daskgen"


def _imports(path: Path) -> set[str]:
    """daskgen modules that ``path`` imports when it runs (at import time or in
    a function; not under ``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "daskgen":
                found.update(a.name for a in node.names)
            elif node.module.startswith("daskgen."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("daskgen."):
                    found.add(a.name.split(".")[1])
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return found & modules - {path.stem}


def graph() -> dict[str, set[str]]:
    return {
        p.stem: _imports(p)
        for p in sorted(PACKAGE.glob("*.py"))
        if p.stem != "__init__"
    }


def test_no_import_cycle():
    g = graph()
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, f"import cycle: {' -> '.join((*path, m))}"
        if m in done:
            return
        for dep in sorted(g[m]):
            visit(dep, (*path, m))
        done.add(m)

    for m in g:
        visit(m, ())


def test_design_doc_shows_the_module_graph():
    text = (ROOT / "docs" / "design.md").read_text()
    block = re.search(r"<!-- module graph -->\n```\n(.*?)```", text, re.S)
    assert block, "docs/design.md lost its module graph block"
    documented = {}
    for line in block[1].splitlines():
        name, _, deps = line.partition("->")
        documented[name.strip()] = {d.strip() for d in deps.split(",") if d.strip()}
    actual = {m: deps for m, deps in graph().items()}
    assert documented == actual, (
        "docs/design.md's module graph is not the code's; it should read:\n"
        + "\n".join(f"{m} -> {', '.join(sorted(d))}" for m, d in actual.items())
    )
