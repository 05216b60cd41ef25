"""Run every benchmark and print one table: figure, naive anchor, ours, ratio, goal.

    .venv/bin/python benchmarks/run_all.py            # or: make bench
    .venv/bin/python benchmarks/run_all.py --only speed --rows 200000 --repeat 1   # a quick look

Modules: ``bench_speed`` (P1 1M-row predict, P2 one-row latency, P3 K=10 retrain; see its docstring),
and, when present, ``bench_report``, ``bench_dashboard``, ``bench_inputs``, ``bench_api``, ``bench_scale`` (feedback history growth,
P3 through the worker), ``bench_load`` (Locust at 50 and 200 users) and ``bench_dask`` (a real dask cluster). Each exposes ``run() -> list[dict]`` with the
keys figure, naive, ours, ratio, goal. A module whose dependency is missing (e.g. chromium for the
dashboard) is skipped with the reason. Benchmarks are not part of the test suite (``tests/`` only).
Every figure is measured in the same run as its anchor; other load on the machine moves both.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MUSHROOM_REPORT_ON_PROMOTE", "0")

MODULES = ["bench_speed", "bench_report", "bench_dashboard", "bench_inputs", "bench_api", "bench_scale", "bench_load",
           "bench_dask"]


def run_module(name: str, speed_args: dict) -> tuple[list[dict], str | None]:
    """(rows, None) or ([], why it was skipped)."""
    if not (HERE / f"{name}.py").exists():
        return [], "not present"
    try:
        mod = importlib.import_module(name)
    except ImportError as exc:
        return [], f"missing dependency: {exc}"
    except SystemExit as exc:
        return [], str(exc)
    try:
        rows = mod.run(**speed_args) if name == "bench_speed" else mod.run()
    except SystemExit as exc:  # the modules say why they cannot run (no chromium, no dataset)
        return [], str(exc) or "exited"
    except (ImportError, FileNotFoundError) as exc:
        return [], f"missing dependency: {exc}"
    except Exception as exc:  # a failing benchmark must not hide the others' figures
        traceback.print_exc(file=sys.stderr)
        return [], f"failed: {exc.__class__.__name__}: {exc}"
    return list(rows), None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=[m.removeprefix("bench_") for m in MODULES],
                        help="run only these (default: all)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the P1 file (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of P1 (ours) and P3 (default 3)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args()

    from bench_speed import print_table

    chosen = [m for m in MODULES if not args.only or m.removeprefix("bench_") in args.only]
    table, notes = [], []
    for name in chosen:
        start = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows, skipped = run_module(name, {"rows": args.rows, "repeat": args.repeat})
        took = time.perf_counter() - start
        if skipped:
            notes.append(f"{name}: skipped ({skipped})")
        else:
            notes.append(f"{name}: {len(rows)} figures in {took:.0f} s")
        table += [{**r, "figure": r.get("figure", "?")} for r in rows]
    print()
    print_table(table)
    print()
    for note in notes:
        print(note)
    try:
        load = os.getloadavg()
        print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the end")
    except OSError:
        pass
    if args.json:
        args.json.write_text(json.dumps(table, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
