"""`mushroom predict 'parts/*.csv' --engine dask` on a real cluster (`dask scheduler` + 1 or 2 `dask worker`
processes of one thread each, on loopback, through DASK_SCHEDULER_ADDRESS), in rows/s, beside the local
engine on the same rows in one file.

PARTS files of ROWS_PER_PART rows resampled from the dataset; each figure is the best of REPEAT runs of the
whole command (its start-up, the champion's load and the writing of the output included); the outputs are
checked to be the same bytes. On this 2-core machine the driver, the scheduler and the workers share the
cores, so 2 workers cannot double 1; on several machines each worker brings its own.
``run() -> list[dict]`` for benchmarks/run_all.py; alone: ``.venv/bin/python benchmarks/bench_dask.py``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from common import dataset_path, trained_home
from helpers.cli import cli_env, mushroom_cmd
from helpers.cluster import DaskCluster

PARTS, ROWS_PER_PART, REPEAT = 8, 125_000, 2


def write_parts(data: Path, folder: Path, rows_per_part: int) -> tuple[str, Path, int]:
    import pandas as pd

    df = pd.read_csv(data, dtype=str)
    (folder / "parts").mkdir()
    whole = folder / "whole.csv"
    for i in range(PARTS):
        part = df.sample(n=rows_per_part, replace=True, random_state=i)
        part.to_csv(folder / "parts" / f"part{i:02d}.csv", index=False)
        part.to_csv(whole, index=False, header=i == 0, mode="a")
    return str(folder / "parts" / "*.csv"), whole, PARTS * rows_per_part


def timed(home: Path, source: str, out: Path, env: dict | None = None, engine: str = "local") -> float:
    """Best wall time of REPEAT runs of `mushroom predict`."""
    best = float("inf")
    for _ in range(REPEAT):
        start = time.perf_counter()
        subprocess.run([*mushroom_cmd(), "--home", str(home), "predict", source, "--engine", engine, "-o", str(out)],
                       env=cli_env(env), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
        best = min(best, time.perf_counter() - start)
    return best


def measure(folder: Path, rows_per_part: int = ROWS_PER_PART) -> dict:
    data = dataset_path("bench_dask")
    home = trained_home(folder, data)
    pattern, whole, rows = write_parts(data, folder, rows_per_part)
    out = {"rows": rows, "load_before": os.getloadavg()}
    out["local"] = timed(home, str(whole), folder / "local.csv")
    for workers in (1, 2):
        with DaskCluster(workers=workers, log_dir=folder / f"cluster{workers}") as cluster:
            out[f"dask{workers}"] = timed(home, pattern, folder / f"dask{workers}.csv", engine="dask",
                                          env={"DASK_SCHEDULER_ADDRESS": cluster.address})
        if (folder / f"dask{workers}.csv").read_bytes() != (folder / "local.csv").read_bytes():
            raise RuntimeError(f"the {workers}-worker cluster's output differs from the local engine's")
    out["load_after"] = os.getloadavg()
    return out


def run(rows_per_part: int = ROWS_PER_PART) -> list[dict]:
    """Figures for benchmarks/run_all.py."""
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        m = measure(Path(tmp), rows_per_part)
    load = f"load {m['load_before'][0]:.1f} -> {m['load_after'][0]:.1f} on {os.cpu_count()} cores"
    local = m["rows"] / m["local"]
    rows = []
    for workers in (1, 2):
        rate = m["rows"] / m[f"dask{workers}"]
        rows.append({"figure": f"mushroom predict --engine dask, {workers} worker(s) x 1 thread, rows/s "
                               f"({m['rows']:,} rows in {PARTS} files, same bytes as local; anchor: the local "
                               f"engine on one file; {load})",
                     "naive": round(local), "ours": round(rate), "ratio": round(rate / local, 2),
                     "goal": "information (2 cores shared by driver, scheduler and workers)"})
    return rows


def main() -> int:
    from bench_speed import print_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-part", type=int, default=ROWS_PER_PART)
    args = parser.parse_args()
    print_table(run(args.rows_per_part))
    print(f"load average now: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
