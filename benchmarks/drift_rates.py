"""How often the report's drift verdicts are wrong: false alarms on reference samples, misses on a real shift.

For each batch size, draws batches (a) from the reference rows themselves (no drift: any flag is a false
alarm) and (b) only from one habitat (woods, then paths: a real shift). Each batch is compared with the
whole reference through Evidently's stat-test functions (``monitoring.column_scores``), judged by two policies in the same run:

* ``before``: the policy of main before issue 12 (any batch size; scipy's chi-square on the features and
  K-S on the PCA components, a column drifts at p < 0.05; from 1000 rows Jensen-Shannon / Wasserstein
  distances >= 0.1; the dataset drifts when >= 30% of the 25 columns do);
* ``after``: the library's policy (``monitoring.judge_drift``: no verdict under ``MIN_DRIFT_ROWS`` rows;
  Monte Carlo chi-square and K-S at the Bonferroni level 0.05/25; the same distances and 30% rule).

Two rates per cell: "dataset" (the dataset-level flag) and "column" (at least one column named drifted,
which the report shows to the user). ``run() -> list[dict]`` for benchmarks/run_all.py; runnable alone:
``.venv/bin/python benchmarks/drift_rates.py [--draws N]``. Needs the real dataset.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import dataset_path, trained_home  # noqa: E402

SIZES = (1, 5, 10, 20, 30, 50, 100, 300, 1000)
SHIFTS = {"reference": None, "habitat=woods": "d", "habitat=paths": "p"}


def before_policy(scores: dict, n: int) -> tuple[bool, list[str]]:
    """main before issue 12: every batch judged, p < 0.05 (or distance >= 0.1) per column."""
    from mushroom_lib.monitoring import DISTANCE, DRIFT_SHARE, LARGE_SAMPLE, P_VALUE

    if n < LARGE_SAMPLE:
        drifted = [c for c, v in scores.items() if v < P_VALUE]
    else:
        drifted = [c for c, v in scores.items() if v >= DISTANCE]
    return len(drifted) / len(scores) >= DRIFT_SHARE, drifted


def after_policy(scores: dict, n: int) -> tuple[bool, list[str]]:
    from mushroom_lib.monitoring import judge_drift

    verdict = judge_drift(scores, n)
    if verdict is None:
        return False, []
    return verdict["dataset_drift"], verdict["drifted"]


def _frames(home: Path):
    from mushroom_lib import monitoring as mon
    from mushroom_lib.core.settings import get_settings
    from mushroom_lib.registry.versions import Registry
    from mushroom_lib.scoring.scorer import Scorer

    settings = get_settings(home)
    registry = Registry(settings)
    scorer = Scorer(registry.load(registry.champion()))
    raw = mon.load_reference(settings.ref_path)
    return mon.score_frame(scorer, raw, raw["target"])


def measure(draws: int = 30, sizes=SIZES, seed: int = 2024) -> list[dict]:
    """One row per (batch kind, size): rates under both policies and the seconds spent."""
    from mushroom_lib import monitoring as mon

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="drift-rates-") as tmp:
        ref = _frames(trained_home(Path(tmp), dataset_path("drift_rates")))
    rng = np.random.default_rng(seed)
    rows = []
    for kind, habitat in SHIFTS.items():
        pool = ref if habitat is None else ref[ref["habitat"] == habitat]
        for n in sizes:
            start = time.perf_counter()
            counts = {"before": [0, 0], "after": [0, 0]}
            for _ in range(draws):
                batch = pool.sample(n, replace=n > len(pool), random_state=int(rng.integers(2**31)))
                after = mon.column_scores(ref, batch)  # from LARGE_SAMPLE rows both use the same distances
                scores = {"before": mon.column_scores(ref, batch, cat_method="chisquare")
                          if n < mon.LARGE_SAMPLE else after, "after": after}
                for name, policy in (("before", before_policy), ("after", after_policy)):
                    dataset, drifted = policy(scores[name], n)
                    counts[name][0] += bool(dataset)
                    counts[name][1] += bool(drifted)
            rows.append({"batch": kind, "rows": n, "draws": draws,
                         **{f"{p}_{what}": counts[p][i] / draws for p in counts
                            for i, what in enumerate(("dataset", "column"))},
                         "seconds": round(time.perf_counter() - start, 1)})
    return rows


def run(draws: int = 30) -> list[dict]:
    """Rows for benchmarks/run_all.py: false alarms (reference) and detection (habitat) per size."""
    out = []
    for r in measure(draws):
        shift = r["batch"] != "reference"
        what = "detection" if shift else "false alarms"
        out.append({"figure": f"drift {what}, {r['batch']} batches of {r['rows']} rows "
                              f"(share of {r['draws']} draws, dataset flag / any column named)",
                    "naive": f"{r['before_dataset']:.2f} / {r['before_column']:.2f}",
                    "ours": f"{r['after_dataset']:.2f} / {r['after_column']:.2f}",
                    "ratio": "", "goal": "high" if shift else f"0 under {min_rows()} rows, low above"})
    return out


def min_rows() -> int:
    from mushroom_lib.monitoring import MIN_DRIFT_ROWS

    return MIN_DRIFT_ROWS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=30, help="batches per kind and size (default 30)")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES), help="batch sizes (rows)")
    args = parser.parse_args()
    print("| batch | rows | before: dataset | before: any column | after: dataset | after: any column |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in measure(args.draws, tuple(args.sizes)):
        print(f"| {r['batch']} | {r['rows']} | {r['before_dataset']:.2f} | {r['before_column']:.2f} | "
              f"{r['after_dataset']:.2f} | {r['after_column']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
