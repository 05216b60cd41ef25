"""The shape of the library: the layer contract, no import cycle, settings read in one place."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mushroom_lib"


def test_the_layer_contract_is_kept():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    out = subprocess.run([exe or "lint-imports", "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert re.search(r"Contracts: (\d+) kept, 0 broken", out.stdout), out.stdout[-500:]


def _cycles(graph) -> list[list[str]]:
    """Strongly connected groups of more than one module (imports inside functions included)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_between_modules():
    assert _cycles(grimp.build_graph("mushroom_lib")) == []


def test_mushroom_variables_are_read_only_through_settings():
    """Every MUSHROOM_* variable is a Settings field; nothing else reads one (handing one to a child is fine)."""
    reader = re.compile(r"""environ\.get\(\s*["']MUSHROOM_|getenv\(\s*["']MUSHROOM_"""
                        r"""|environ\[\s*["']MUSHROOM_\w*["']\s*\](?!\s*=[^=])""")
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path in PACKAGE.rglob("*.py")
                 if path.name != "settings.py"
                 for n, line in enumerate(path.read_text().splitlines(), 1) if reader.search(line)]
    assert offenders == []
