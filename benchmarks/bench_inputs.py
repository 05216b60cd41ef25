"""Peak memory of refusing oversized `mushroom data` sources: a zip bomb and a zip of too many valid rows.

Each figure is the child process's own peak resident memory (``os.wait4``), next to a naive anchor measured in
the same run: a Python child that reads the same zip member whole, as `mushroom data` did before the caps.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from common import dataset_path

GOAL_MIB = 300
MEMBER = "agaricus-lepiota.data"
_NAIVE = "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).read(sys.argv[2])"


def _zip(path: Path, piece: bytes, repeat: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open(MEMBER, "w", force_zip64=True) as fh:
            for _ in range(repeat):
                fh.write(piece)
    return path


def peak_mib(argv: list[str]) -> tuple[float, int]:
    """(peak resident MiB of the child, exit status)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MUSHROOM_DATA", "MUSHROOM_HOME")}
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env) as proc:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, proc.returncode


def run() -> list[dict]:
    """Figures for benchmarks/run_all.py."""
    import pandas as pd

    mushroom = str(Path(sys.executable).with_name("mushroom"))
    rows = pd.read_csv(dataset_path("bench_inputs"), dtype=str, keep_default_na=False).head(200)
    block = rows.to_csv(index=False, header=False, lineterminator="\n").encode() * 100
    out = []
    with tempfile.TemporaryDirectory(prefix="bench-inputs-") as tmp:
        cases = {
            "a 0.5 MB zip of 500 MB of zeros": _zip(Path(tmp) / "bomb.zip", b"0" * (1 << 20), 500),
            "a zip of 500 MB of valid rows": _zip(Path(tmp) / "rows.zip", block, 500_000_000 // len(block)),
        }
        for name, path in cases.items():
            naive, _ = peak_mib([sys.executable, "-c", _NAIVE, str(path), MEMBER])
            ours, code = peak_mib([mushroom, "--home", str(Path(tmp) / "home"), "data", "--source", str(path)])
            assert code == 2, f"{name}: exit {code}, expected a refusal"
            out.append({"figure": f"`mushroom data` refusing {name}: peak RSS (MiB)", "naive": round(naive),
                        "ours": round(ours), "ratio": round(ours / naive, 3), "goal": f"ours < {GOAL_MIB} MiB"})
    return out


if __name__ == "__main__":
    for row in run():
        print(row)
