"""Feedback history growth: status, one feedback row and a retrain with 100,000 history rows vs 100; P3 cold/warm.

The history is resampled from the dataset (so at most 8,124 distinct mushrooms), correctly labelled,
written through ``ModelService.submit_feedback`` with K out of reach. In the same run and on the same
machine: ``svc.status()`` (median of 20), ``submit_feedback`` of one row (median of 20, no retrain due) and
a retrain (the rows read + ``training.train`` on them, as the worker does; median of 3, not promoted).
"naive" holds the 100-row figure, "ours" the 100k-row one; the ratio is ours / naive (lower is better).
P3 through the background worker: K=10 rows sent with ``wait=True`` until a prediction comes from the new
model, with the worker started by that submission (cold: interpreter + training stack imports) and with the
worker already running from an earlier row (warm: how a home with trickling feedback sees it).

    .venv/bin/python benchmarks/bench_scale.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import dataset_path, trained_home


def _median_time(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _worker_ready(settings, timeout: float = 300) -> None:
    """Steady state: the background worker the first feedback started has done its imports (they would
    compete for the CPU with the figures measured next)."""
    if not hasattr(settings, "worker_dir"):  # the code before the worker: nothing to wait for
        return
    from mushroom_lib.feedback import queue as jobs

    pid, deadline = jobs.paths(settings)["pid"], time.monotonic() + timeout
    while not pid.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def measure(template: Path, folder: Path, history: int, data: Path) -> dict:
    """Times for one home holding ``history`` feedback rows."""
    import pandas as pd

    from mushroom_lib.core.settings import get_settings
    from mushroom_lib.feedback.store import FeedbackStore
    from mushroom_lib.service import ModelService
    from mushroom_lib.training.train import train

    home = folder / f"h{history}"
    shutil.copytree(template, home)
    settings = get_settings(home, k=10**9, report_on_promote=False)
    df = pd.read_csv(data, dtype=str, keep_default_na=False)
    svc = ModelService(settings=settings)
    svc.submit_feedback(df.sample(history, replace=True, random_state=1), source="history")
    svc.status()  # a first call may build what later calls reuse
    _worker_ready(settings)
    one = [df.iloc[[i]] for i in range(40)]
    it = iter(one)
    res = {"status": _median_time(svc.status, 20),
           "row": _median_time(lambda: svc.submit_feedback(next(it), source="bench"), 20)}

    def retrain():
        train(settings, trigger="feedback", promote=False, feedback=FeedbackStore(settings).read())

    res["retrain"] = _median_time(retrain, 3)
    svc.close()
    shutil.rmtree(home, ignore_errors=True)
    return res


def p3(template: Path, folder: Path, data: Path, warm: bool, repeat: int = 3) -> list[float]:
    """Seconds from submit_feedback of the K-th row to a prediction by the new model (promoted runs)."""
    import pandas as pd

    from mushroom_lib.service import ModelService

    df = pd.read_csv(data, dtype=str, keep_default_na=False)
    out = []
    for i in range(repeat):
        home = folder / f"p3-{int(warm)}-{i}"
        shutil.copytree(template, home)
        svc = ModelService(home)
        rows = df.sample(10, random_state=100 + i)
        if warm:
            svc.submit_feedback(rows.iloc[:1])  # starts the worker
            _worker_ready(svc.settings)
            rows = rows.iloc[1:]
        t = time.perf_counter()
        receipt = svc.submit_feedback(rows, wait=True)
        served = svc.predict(df.drop(columns="class").iloc[[0]])["model_version"].iloc[0]
        if receipt.promoted and served == receipt.candidate_version:
            out.append(time.perf_counter() - t)
        shutil.rmtree(home, ignore_errors=True)  # its worker sees the home gone and exits
    return out


def run(rows: int = 100_000) -> list[dict]:
    data = dataset_path("bench_scale")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        folder = Path(tmp)
        template = trained_home(folder, data)
        cold = p3(template, folder, data, warm=False)
        warm = p3(template, folder, data, warm=True)
        small = measure(template, folder, 100, data)
        big = measure(template, folder, rows, data)
    k = f"{rows // 1000}k"
    goals = {"status": "<= 5x", "row": "<= 2x", "retrain": "<= 2x"}
    names = {"status": "svc.status()", "row": "submit_feedback of one row (no retrain due)",
             "retrain": "retrain: read feedback + training.train (not promoted)"}
    med = statistics.median
    out = [{"figure": f"{names[key]}, ms: 100 history rows (naive column) vs {k} (ours)",
            "naive": round(small[key] * 1000, 2), "ours": round(big[key] * 1000, 2),
            "ratio": round(big[key] / small[key], 2), "goal": goals[key]} for key in ("status", "row", "retrain")]
    for name, runs in (("cold worker (started by this submission)", cold), ("warm worker", warm)):
        out.append({"figure": f"P3 K=10 feedback -> predictions from the new model, s, {name} "
                              f"(median of {len(runs)} promoted runs)",
                    "naive": None, "ours": round(med(runs), 2) if runs else None, "ratio": None, "goal": "<= 1 s"})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    for row in run(args.rows):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
